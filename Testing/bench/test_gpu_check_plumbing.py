"""`make gpu-check` cannot pass a crash: its stage runner on real tiny processes, no GPU needed.

A stage passes only on exit 0 (a Python crash exits 1, as a bench's FAIL verdict does), and a stage past its limit
is stopped whole — its grandchildren too, also one in a session of its own as a search's trials are — and reads
exit 124."""
from __future__ import annotations

import importlib.util
import sys
import time

import psutil

from shared_data import REPO

_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)

SLEEPER = ("import subprocess, sys, time; "
           "a = subprocess.Popen(['sleep', '300']); "
           "b = subprocess.Popen(['sleep', '300'], start_new_session=True); "
           "print(a.pid, b.pid, flush=True); time.sleep(300)")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_exit_status_is_the_stages_own(tmp_path):
    assert gpu_check.run_stage("ok", [sys.executable, "-c", "print('fine')"], tmp_path, 60)[0] == 0
    assert gpu_check.run_stage("crash", [sys.executable, "-c", "raise SystemExit(1)"], tmp_path, 60)[0] == 1
    assert "fine" in (tmp_path / "ok.txt").read_text()


def test_a_stage_past_its_limit_is_killed_with_its_grandchildren(tmp_path):
    limit = 3.0
    started = time.monotonic()
    rc, _ = gpu_check.run_stage("hang", [sys.executable, "-c", SLEEPER], tmp_path, limit)
    took = time.monotonic() - started
    log = (tmp_path / "hang.txt").read_text()
    pids = [int(p) for p in log.splitlines()[1].split()]
    try:
        deadline = time.monotonic() + 2.0
        while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]
        assert rc == gpu_check.TIMED_OUT == 124
        assert took < limit + gpu_check.GRACE_SECONDS + 2, took
        assert "stopped after the stage's limit of 3 s" in log
    finally:                           # the test's own sleepers, should it fail
        for p in pids:
            if not _gone(p):
                psutil.Process(p).kill()


def test_a_crashing_stage_fails_the_summary_and_a_clean_one_passes(tmp_path):
    # search_speedup on a missing dataset crashes with exit 1, which the search stage used to count as a pass
    code = gpu_check.main(["--dry-run", "--skip", "pytest,throughput,fp16,bohb", "--data", str(tmp_path / "none"),
                           "--out", str(tmp_path / "out")])
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert code == 1
    assert [ln.split()[0] for ln in summary if ln.startswith(("PASS", "FAIL"))] == ["PASS", "FAIL"], summary
    assert "`autoseg doctor`" in summary[-3] and "search_speedup" in summary[-2] and "exit 1" in summary[-2]
    assert summary[-1].startswith("RESULT: FAIL")
    assert "--device auto" in (tmp_path / "out" / "doctor.txt").read_text()


def test_the_stage_limits_fit_eight_minutes_on_a_gpu():
    assert sum(gpu for gpu, _ in gpu_check.LIMITS.values()) <= 8
