"""Two runs cannot write into one folder: the second refuses at once naming the first, which finishes intact; a lock
left by a run that died is taken over; temp files and staging folders are per process (real processes, real files)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from outputkit import DEMO, LOCK, autoseg, start, train_tiny_model, tree, wait_for_lock
from shared_data import REPO

from AutoSegCore.utils import folder_lock


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("lock-model"))


def _refused(r: subprocess.CompletedProcess, command: str, pid: int, seconds: float) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[0].startswith(f"autoseg {command}: error: ") and "another autoseg run is writing" in lines[0], lines
    assert f"pid {pid} on " in lines[0] and len(lines) == 2 and lines[1].startswith("  hint: "), lines
    assert seconds < 5, f"refused after {seconds:.1f} s"


def test_two_predicts_into_one_folder_the_second_refuses_and_the_first_finishes(tiny, tmp_path):
    model, data = tiny
    out = tmp_path / "P"
    images = sorted((data / "imagesTr").iterdir())[:2]
    first = start("predict", model, *images, "--out", out, log=tmp_path / "first.log")
    record = json.loads(wait_for_lock(out, first))
    assert record["pid"] == first.pid and "predict" in record["command"] and record["host"]
    os.kill(first.pid, signal.SIGSTOP)          # held mid-run: the second surely meets a live lock
    try:
        before = tree(out)
        t0 = time.time()
        r = autoseg("predict", model, *images, "--out", out, "--overwrite")
        _refused(r, "predict", first.pid, time.time() - t0)
        assert tree(out) == before                  # it touched nothing: no file added, none changed
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
    cases = [p.name[:-len(".nii.gz")] for p in images]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{c}.nii.gz" for c in cases]      # no lock, no temp
                                                           + [f"{c}.seg.nrrd" for c in cases])
    folder_lock.release(folder_lock.acquire(out))                           # the folder is free again


@pytest.mark.slow
def test_two_searches_into_one_folder_the_second_refuses_and_the_first_finishes(tmp_path):
    sys.path.insert(0, str(REPO / "Testing" / "search"))
    from searchkit import TINY, make_subset

    data, out = make_subset(tmp_path / "data", 6), tmp_path / "run"
    args = ["search", data, *TINY, "--trials", "1", "--no-final", "--out", out]
    first = start(*args, log=tmp_path / "first.log")
    assert json.loads(wait_for_lock(out, first))["pid"] == first.pid
    os.kill(first.pid, signal.SIGSTOP)
    try:
        t0 = time.time()
        r = autoseg(*args, "--events", tmp_path / "second.jsonl")
        _refused(r, "search", first.pid, time.time() - t0)
        events = [json.loads(line) for line in (tmp_path / "second.jsonl").read_text().splitlines()]
        assert events[-1]["event"] == "error" and str(first.pid) in events[-1]["message"]
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=900) == 0, (tmp_path / "first.log").read_text()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["COMPLETE"] == 1 and (out / "report.html").is_file() and not (out / LOCK).exists()


def test_a_lock_left_by_a_dead_run_is_taken_over_with_a_notice(tmp_path):
    out = tmp_path / "proxy"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()                                  # a pid that no longer exists: a run killed with SIGKILL
    stale = {"pid": gone.pid, "host": socket.gethostname(), "started": time.time() - 60,
             "command": "autoseg proxy D --out proxy"}
    (out / LOCK).write_text(json.dumps(stale))
    r = autoseg("proxy", DEMO, "--method", "random", "--budget", "2", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"taking over {out / LOCK}: the run that held it (pid {gone.pid} on" in " ".join(r.stderr.split())
    assert sorted(p.name for p in out.iterdir()) == ["proxy.json"]


def test_a_lock_held_by_a_live_process_refuses_train_before_any_work(tiny, tmp_path):
    """The holder is another real process (flock); train refuses before reading the dataset or writing anything."""
    _, data = tiny
    out = tmp_path / "M"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom AutoSegCore.utils import folder_lock\n"
                               f"folder_lock.acquire({str(out)!r}, 'autoseg train D --out M')\nprint('held', "
                               "flush=True)\ntime.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        r = autoseg("train", data, "--out", out, "--epochs", "1")
        _refused(r, "train", holder.pid, time.time() - t0)
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    finally:
        holder.kill()
        holder.wait()
    lock = folder_lock.acquire(out)             # flock dies with its process: free at once, record taken over
    folder_lock.release(lock)
    assert not (out / LOCK).exists()


def test_the_same_process_may_take_its_own_lock_again(tmp_path):
    first = folder_lock.acquire(tmp_path)
    second = folder_lock.acquire(tmp_path)
    assert second is first
    folder_lock.release(second)
    assert (tmp_path / LOCK).exists()
    folder_lock.release(first)
    assert not (tmp_path / LOCK).exists()


def test_a_password_in_the_command_line_is_not_recorded():
    line = folder_lock.command_line(["search", "D", "--storage", "postgresql+psycopg://u:hunter2@db/x",
                                     "--storage", "postgresql://db/x?user=u&password=hunter2", "--out", "r",
                                     "--storage=postgresql://u:p@ss@db/x", "mysql://db/x?sslpassword=s3cret&pwd=two"])
    assert "u:***@db" in line and "password=***" in line and "sslpassword=***&pwd=***" in line, line
    assert not any(secret in line for secret in ("hunter2", "p@ss", "s3cret", "two")), line


def test_temp_files_of_a_live_run_are_spared_a_dead_runs_removed(tmp_path):
    from AutoSegCore.prediction import _remove_leftovers
    from AutoSegCore.utils.io import temp_name

    target = tmp_path / "case.nii.gz"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        mine = temp_name(target)
        assert mine.name.startswith(f".case.nii.gz.{os.getpid()}-") and mine.name.endswith(".nii.gz")
        theirs, gone = (mine.with_name(mine.name.replace(f".{os.getpid()}-", f".{pid}-"))
                        for pid in (live.pid, dead.pid))
        for p in (theirs, gone):
            p.write_bytes(b"partial")
        _remove_leftovers({"label": target})
        assert theirs.exists() and not gone.exists()
    finally:
        live.kill()
        live.wait()


def test_install_best_spares_another_runs_staging_and_cleans_a_dead_ones(tmp_path):
    from AutoSegCore.search.final import install_best

    member = tmp_path / "final" / "rank0"
    member.mkdir(parents=True)
    (member / "model.pt").write_bytes(b"weights")
    (member / "model.json").write_text(json.dumps({"config": {"inference": {}}}))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f".best.tmp-{live.pid}-0123abcd"
        theirs.mkdir()
        (theirs / "model.pt").write_bytes(b"another run's")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        gone = tmp_path / f".best.old-{dead.pid}-0123abcd"
        gone.mkdir()
        for _ in range(2):
            best = install_best(tmp_path, [member], {0: "background", 1: "x"}, [1], tta=True)
        assert (theirs / "model.pt").read_bytes() == b"another run's" and not gone.exists()
        assert (best / "model.pt").read_bytes() == b"weights"
        assert json.loads((best / "model.json").read_text())["config"]["inference"] == {"largest_component": [1],
                                                                                          "tta": True}
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["best", "final", theirs.name])
    finally:
        live.kill()
        live.wait()
