"""Event stream -> Run panel state, with the event shapes the engine emits (see AutoSegCore/events.py)."""
from __future__ import annotations

from AutoSegSearchLib.progress import RunProgress


def test_trials_rows_progress_and_errors():
    p = RunProgress()
    stream = [
        {"event": "study_started", "time": 0, "kind": "search"},
        {"event": "trial_started", "time": 1, "trial": 0, "params": {"lr": 0.001, "depth": 3}},
        {"event": "epoch", "time": 2, "trial": 0, "epoch": 1, "loss": 0.9, "val_dice": 0.41, "seconds": 1.0},
        {"event": "trial_finished", "time": 3, "trial": 0, "value": 0.41, "params": {"lr": 0.001, "depth": 3},
         "state": "COMPLETE"},
        {"event": "trial_started", "time": 4, "trial": 1, "params": {"lr": 0.01, "depth": 4}},
        {"event": "progress", "time": 5, "fraction": 0.5, "message": "1 of 2 trials"},
        {"event": "trial_finished", "time": 6, "trial": 1, "value": None, "state": "FAIL"},
        {"event": "artifact", "time": 7, "kind": "report", "path": "/x/report.html"},
    ]
    changed = [p.update(e) for e in stream]
    assert changed == [None, 0, None, 0, 1, None, 1, None]
    assert p.rows() == [("0", "depth=3, lr=0.001", "0.41", "complete"), ("1", "depth=4, lr=0.01", "", "fail")]
    assert p.fraction == 0.5 and p.artifacts == {"report": "/x/report.html"}
    p.update({"event": "error", "time": 8, "message": "storage unreachable", "hint": "check the URL"})
    assert p.error == "storage unreachable — check the URL" and p.status.startswith("failed")
    p.update({"event": "done", "time": 9})
    assert p.fraction == 1.0 and p.status == "finished"


def test_multi_objective_values_are_shown_together():
    p = RunProgress()
    p.update({"event": "trial_finished", "time": 0, "trial": 3, "values": [0.2, 12.5], "params": {}, "state": "complete"})
    assert p.rows()[0][2] == "0.2 / 12.5"


def test_a_trial_stopped_at_the_time_limit_is_not_shown_as_a_failure():
    # what the engine's runner emits when --time ends while a trial runs (search/runner.py _stop_and_requeue)
    p = RunProgress()
    p.update({"event": "trial_started", "time": 0, "trial": 4, "params": {"lr": 0.01}})
    p.update({"event": "trial_finished", "time": 1, "trial": 4, "state": "FAIL", "params": {"lr": 0.01},
              "error": "stopped at the search time limit (60 s); re-queued", "value": None})
    assert p.rows() == [("4", "lr=0.01", "", "stopped, re-queued")]
    p.update({"event": "log", "time": 2, "message": "search time limit reached: 1 running trial(s) stopped"})
    assert p.status.startswith("search time limit reached")


def test_a_requeued_trial_is_read_from_the_events_flag_not_its_wording():
    # the runner's trial_finished carries requeued=True; the error text may say anything (Ctrl-C, SIGTERM, a limit)
    p = RunProgress()
    p.update({"event": "trial_finished", "time": 1, "trial": 5, "state": "FAIL", "params": {"lr": 0.1},
              "error": "stopped by SIGTERM", "value": None, "requeued": True})
    p.update({"event": "trial_finished", "time": 2, "trial": 6, "state": "FAIL", "params": {"lr": 0.2},
              "error": "diverged", "value": None})
    assert [r[3] for r in p.rows()] == ["stopped, re-queued", "fail"]


def test_a_search_stopped_by_a_signal_is_interrupted_not_failed():
    # what `autoseg search` emits when SIGTERM lands (test_search_signals.py runs it): the summary log, then the
    # CLI's error "interrupted (SIGTERM)" — a front end whose cancel escalated to SIGTERM shows the summary
    p = RunProgress()
    p.update({"event": "log", "time": 1, "message": "interrupted: 1 stopped and re-queued, 1 queued after 5 s"})
    p.update({"event": "error", "time": 2, "message": "interrupted (SIGTERM)", "hint": "re-run the same command to resume"})
    assert p.status.startswith("interrupted: 1 stopped and re-queued") and p.error is None
    # no summary came (the engine was stopped before its trial loop): the signal and the hint, still not a failure
    p = RunProgress()
    p.update({"event": "error", "time": 2, "message": "interrupted (SIGHUP)", "hint": "re-run the same command to resume"})
    assert p.status == "interrupted (SIGHUP) — re-run the same command to resume" and p.error is None
