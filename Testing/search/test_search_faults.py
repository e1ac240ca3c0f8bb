"""Crashed, killed, out-of-memory and hanging trials are recorded as failed and the study goes on;
a SIGKILLed study resumes with every finished trial kept; storage errors are clear."""
from __future__ import annotations

import json
import os
import signal

import pytest
import yaml

from searchkit import TINY, autoseg, events, load, start, wait_for

from AutoSegCore.report.analysis import summarize

pytestmark = pytest.mark.slow


def _study(out):
    search = json.loads((out / "search.json").read_text())
    return load(search["storage"], search["study_name"])


@pytest.mark.parametrize("fault", ["raises", "memory", "hangs"])
def test_failing_trials_are_recorded_and_study_completes(dataset, tmp_path, fault):
    cfg = {"raises": {"network": {"depth": 6}, "training": {"patch_size": [16, 16, 16]}},      # 1×1×1 bottleneck
           "memory": {"network": {"channels": 64}, "training": {"patch_size": [160, 160, 160], "batch_size": 8}},
           "hangs": {"training": {"steps_per_epoch": 1_000_000}}}[fault]
    extra = {"raises": [], "memory": ["--trial-memory-gb", "3"], "hangs": ["--trial-timeout", "20s"]}[fault]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    out, ev = tmp_path / "run", tmp_path / "ev.jsonl"
    # full network (a proxy net would shrink the faulty configs); the hang needs its huge epoch
    args = ["--space", "proxy-hpo", "--strategy", "random", "--epochs", "2", "--min-epochs", "1"]
    if fault != "hangs":
        args += ["--steps-per-epoch", "2"]
    r = autoseg("search", dataset, *args, "--config", tmp_path / "cfg.yaml", *extra, "--trials", "2", "--no-final",
                "--out", out, "--events", ev)
    study = _study(out)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    errors = [t.user_attrs["error"] for t in study.trials]
    expect = {"raises": "error: ValueError: Expected more than 1 spatial element", "memory": "out-of-memory: ",
              "hangs": "time limit"}[fault]
    assert all(expect in e for e in errors), errors
    # the trial contract both ways: a child that raised says what happened in its result.json (the parent reads no
    # log for it); a trial the parent stopped has none, and the parent's reason is what the study keeps
    kind = {"raises": "error", "memory": "out-of-memory", "hangs": "killed"}[fault]
    assert [t.user_attrs["error_kind"] for t in study.trials] == [kind, kind]
    for t in study.trials:
        result = out / "trials" / f"{t.number:04d}" / "result.json"
        if fault == "hangs":
            assert not result.exists()
        else:
            said = json.loads(result.read_text())
            assert said["status"] == "failed" and said["kind"] == kind and said["hint"], said
    # the study went on to its end; with no model to show for it the command fails, saying why and where to look
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    said = " ".join(r.stderr.split())
    assert "no trial completed (2 failed after" in said and f"trial 1: {errors[1]}" in said, said
    assert f"its log is in {out / 'trials' / '0001'}" in said and events(ev)[-1]["event"] == "error"
    assert all(t.user_attrs["penalty"] == [0.0] for t in study.trials)
    finished = [e for e in events(ev) if e["event"] == "trial_finished"]
    assert [e["state"] for e in finished] == ["FAIL", "FAIL"]
    if fault == "memory":      # the forecast refused to time the step in the parent, which has no memory cap
        said = [e["message"] for e in events(ev) if e["event"] == "log" and "no cost forecast" in e["message"]]
        assert said and "over --trial-memory-gb (3.0 GB): not timed" in said[0], said


def test_sigkilled_trial_is_failed_and_next_trial_runs(dataset, tmp_path):
    out, ev = tmp_path / "run", tmp_path / "ev.jsonl"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"training": {"steps_per_epoch": 1_000_000}}))
    proc = start("search", dataset, "--space", "proxy-hpo", "--strategy", "random", "--epochs", "1",
                 "--proxy-net", "levels=3", "--config", tmp_path / "cfg.yaml", "--trials", "1", "--no-final",
                 "--out", out, "--events", ev, log=tmp_path / "log.txt")
    started = wait_for(lambda: [e for e in events(ev) if e["event"] == "trial_started"], timeout=300)
    os.kill(started[0]["pid"], signal.SIGKILL)
    assert proc.wait(timeout=300) == 1                    # the study ended; its only trial did not complete
    t = _study(out).trials[0]
    assert t.state.name == "FAIL" and "SIGKILL" in t.user_attrs["error"]


def test_sigkill_of_the_study_resumes_with_finished_trials_kept(dataset, tmp_path):
    out, ev = tmp_path / "run", tmp_path / "ev.jsonl"
    # 12 short epochs: trial 1 must still be running when the kill lands (≈ 0.3 s per epoch on an idle machine)
    args = ["search", dataset, "--space", "proxy-hpo", "--strategy", "random", "--epochs", "12", "--min-epochs", "1",
            "--steps-per-epoch", "3", "--proxy-net", "levels=3", "--trials", "2", "--no-final", "--out", out]
    proc = start(*args, "--events", ev, log=tmp_path / "log1.txt")
    # kill the whole study (parent) once the second trial has finished an epoch: trial 0 is done by then
    wait_for(lambda: any(e["event"] == "epoch" and e["trial"] == 1 for e in events(ev)), timeout=600)
    proc.kill()
    proc.wait()
    first = _study(out)
    assert first.trials[0].state.name == "COMPLETE" and first.trials[1].state.name == "RUNNING"
    killed_params = first.trials[1].params
    r = autoseg(*args, "--events", tmp_path / "ev2.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    study = _study(out)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"], states           # finished kept; interrupted re-run
    assert study.trials[0].value == first.trials[0].value
    assert study.trials[2].params == killed_params
    resumed = [json.loads(l) for l in (out / "trials" / "0002" / "metrics.jsonl").read_text().splitlines()]
    assert resumed[0]["epoch"] >= 2                                  # continued from the checkpoint, not epoch 1


def test_storage_errors_are_clear(dataset, tmp_path):
    r = autoseg("search", dataset, *TINY, "--trials", "1", "--out", tmp_path / "a",
                "--storage", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert r.returncode == 2 and "cannot open study storage" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "study.db").write_bytes(b"this is not a database" * 100)
    r = autoseg("search", dataset, *TINY, "--trials", "1", "--out", bad)
    assert r.returncode == 2 and "not an SQLite study database" in r.stderr and "Traceback" not in r.stderr
    r = autoseg("worker", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--study", "nope")
    assert r.returncode == 2 and "no study database at" in r.stderr and not (tmp_path / "none.db").exists()


def test_time_limit_stops_running_trials_and_a_rerun_continues_them(dataset, tmp_path):
    # --time is the search's budget: a trial still running when it ends is stopped at its last checkpoint and
    # re-queued (not run to completion past the budget, not failed with a penalty); a re-run continues it
    out = tmp_path / "run"
    # 400 epochs of 0.15–0.3 s: far longer than the 15 s budget, so the first trial is cut by it
    args = ["search", dataset, "--space", "proxy-hpo", "--strategy", "random", "--epochs", "400", "--min-epochs", "1",
            "--steps-per-epoch", "3", "--proxy-net", "levels=3", "--no-final", "--out", out]
    r = autoseg(*args, "--time", "15s", "--events", tmp_path / "ev1.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "search time limit reached: 1 running trial(s) stopped" in r.stderr
    assert "no trial completed yet, so no model; re-run the same command to continue" in " ".join(r.stderr.split())
    study = _study(out)
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    stopped, queued = study.trials
    assert stopped.user_attrs["error"] == "stopped at the search time limit (15 s); re-queued"
    assert "penalty" not in stopped.user_attrs                  # not the config's fault
    assert 1 <= len(stopped.intermediate_values) < 400          # it trained, and was cut before its end
    assert queued.system_attrs["fixed_params"] == stopped.params           # enqueued: asked on the next run
    assert queued.user_attrs["resume_from"].endswith("0000")
    finished = [e for e in events(tmp_path / "ev1.jsonl") if e["event"] == "trial_finished"]
    assert [(e["trial"], e["state"]) for e in finished] == [(0, "FAIL")]
    # the re-run starts with the queued trial and continues it from the stopped trial's checkpoint
    # 30 s: on loaded CI cores the re-run's start-up took most of 15 s and its trial was stopped before an epoch
    r = autoseg(*args, "--time", "30s", "--events", tmp_path / "ev2.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    study = _study(out)
    again = study.trials[1]
    assert again.params == stopped.params and again.user_attrs["error"].startswith("stopped at the search time limit")
    resumed = [json.loads(l) for l in (out / "trials" / "0001" / "metrics.jsonl").read_text().splitlines()]
    assert 2 <= resumed[0]["epoch"] <= max(stopped.intermediate_values) + 1      # from the checkpoint, not epoch 1
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL", "WAITING"]
    counts = summarize(study)["counts"]            # the report tells them apart from failed configs
    assert counts["FAIL"] == counts["REQUEUED"] == 2


def test_ctrl_c_stops_with_a_summary_and_a_rerun_resumes(dataset, tmp_path):
    out, ev = tmp_path / "run", tmp_path / "ev.jsonl"
    args = ["search", dataset, "--space", "proxy-hpo", "--strategy", "random", "--epochs", "12", "--min-epochs", "1",
            "--steps-per-epoch", "3", "--proxy-net", "levels=3", "--trials", "2", "--no-final", "--out", out]
    log = tmp_path / "log1.txt"
    # started with SIGINT ignored, as a CI runner or `autoseg search … &` does: Ctrl-C (a front end's Cancel) still stops it
    proc = start(*args, "--events", ev, log=log, sigint_ignored=True)
    wait_for(lambda: any(e["event"] == "epoch" and e["trial"] == 1 for e in events(ev)), timeout=600)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    text = log.read_text()
    assert "Traceback" not in text and "autoseg search: interrupted" in text
    # the summary names what the study holds and its best trial so far
    summary = [e["message"] for e in events(ev) if e["event"] == "log" and e["message"].startswith("interrupted:")]
    assert len(summary) == 1 and "1 complete, 1 stopped and re-queued, 1 queued" in summary[0], summary
    assert "best trial 0" in summary[0] and summary[0] in " ".join(text.split())     # shown, wrapped
    study = _study(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "WAITING"]
    assert study.trials[1].user_attrs["error"] == "interrupted by the user; re-queued"
    r = autoseg(*args, "--events", tmp_path / "ev2.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    study = _study(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[2].params == study.trials[1].params


def test_a_live_worker_requeues_the_trial_of_a_machine_that_died(dataset, tmp_path):
    # worker A's machine dies mid-trial (its whole process tree is SIGKILLed); worker B, already running on
    # the same study, re-queues A's trial once A's heartbeats are GRACE_SECONDS old
    import psutil

    def machine_dies(pid: int) -> None:          # SIGKILL, no SIGTERM first: a SIGTERM is a clean stop (= Ctrl-C)
        tree = psutil.Process(pid)
        procs = tree.children(recursive=True) + [tree]
        for p in procs:
            p.kill()
        psutil.wait_procs(procs, timeout=10)

    out, ev_a, ev_b = tmp_path / "run", tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    # 100 epochs × 10 steps (≥ 50 s): B's own trial outlasts the grace period, so B is still running then
    args = ["search", dataset, "--space", "proxy-hpo", "--strategy", "random", "--epochs", "100", "--min-epochs", "1",
            "--steps-per-epoch", "10", "--proxy-net", "levels=3", "--trials", "3", "--no-final", "--out", out]
    a = start(*args, "--events", ev_a, log=tmp_path / "a.txt")
    wait_for(lambda: any(e["event"] == "epoch" and e["trial"] == 0 for e in events(ev_a)), timeout=600)
    search = json.loads((out / "search.json").read_text())
    b = start("worker", "--storage", search["storage"], "--study", search["study_name"], "--out", tmp_path / "b",
              "--events", ev_b, log=tmp_path / "b.txt")
    wait_for(lambda: any(e["event"] == "epoch" for e in events(ev_b)), timeout=600)
    study = _study(out)
    dead = study.trials[0]
    assert dead.state.name == "RUNNING"
    # one machine stands in for two: A's trial is marked as another host's, so only its heartbeat can tell.  Marked
    # before A dies: marked after, B could see A's pid gone on its own host first and re-queue it as "worker died"
    worker = {**dead.system_attrs["autoseg_worker"], "host": "lost-machine"}
    study._storage.set_trial_system_attr(dead._trial_id, "autoseg_worker", worker)
    machine_dies(a.pid)
    a.wait()
    wait_for(lambda: any(e["event"] == "log" and "of a dead worker" in e["message"] for e in events(ev_b)),
             timeout=300)
    b.send_signal(signal.SIGINT)
    assert b.wait(timeout=120) == 130
    study = _study(out)
    dead = study.trials[0]
    assert dead.state.name == "FAIL"
    assert dead.user_attrs["error"] == "worker on lost-machine stopped sending heartbeats; re-queued"
    queued = [t for t in study.trials if t.user_attrs.get("requeued_from") == 0]
    assert len(queued) == 1 and queued[0].system_attrs["fixed_params"] == dead.params
    assert queued[0].user_attrs["resume_from"] == worker["trial_dir"]          # continues from its checkpoint
