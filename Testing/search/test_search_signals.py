"""SIGTERM and SIGHUP (timeout, systemd, job schedulers, a closed terminal) stop a search as Ctrl-C does: the
running trial is stopped at its last checkpoint and re-queued, the summary is printed, and no process of the
search (trial, fork server) outlives it."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import psutil
import pytest

from searchkit import events, load, start, wait_for

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "Resources" / "DemoData" / "Hippocampus"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signal_requeues_the_running_trial_and_leaves_no_process(tmp_path, sig):
    out, ev, log = tmp_path / "run", tmp_path / "ev.jsonl", tmp_path / "log.txt"
    # 200 short epochs: the trial is still running when the signal lands
    proc = start("search", DEMO, "--space", "proxy-hpo", "--strategy", "random", "--epochs", "200", "--min-epochs",
                 "1", "--steps-per-epoch", "2", "--proxy-net", "levels=3", "--trials", "2", "--no-final",
                 "--out", out, "--events", ev, log=log)
    try:
        wait_for(lambda: any(e["event"] == "epoch" for e in events(ev)), timeout=600)
        family = psutil.Process(proc.pid).children(recursive=True)        # fork server + the trial it forked
        trial_pid = [e for e in events(ev) if e["event"] == "trial_started"][0]["pid"]
        assert trial_pid in {p.pid for p in family}
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 128 + sig
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, [(p.pid, p.name()) for p in alive]
    text = log.read_text()
    assert "Traceback" not in text and f"autoseg search: interrupted ({sig.name})" in text
    summary = [e["message"] for e in events(ev) if e["event"] == "log" and e["message"].startswith("interrupted:")]
    assert len(summary) == 1 and "1 stopped and re-queued, 1 queued" in summary[0], summary
    search = json.loads((out / "search.json").read_text())
    study = load(search["storage"], search["study_name"])
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    stopped, queued = study.trials
    assert stopped.user_attrs["error"] == f"stopped by {sig.name}; re-queued"
    assert queued.system_attrs["fixed_params"] == stopped.params
    assert queued.user_attrs["resume_from"] == str(out.resolve() / "trials" / "0000")
    assert (out / "trials" / "0000" / "checkpoint.pt").is_file()       # what the re-run continues from
