"""The cost forecast (search/forecast.py): written and emitted before the first trial, within a generous factor of
the actual wall-clock on a tiny real search, and ``--forecast-only`` runs no trial (real Hippocampus cases)."""
from __future__ import annotations

import json

from searchkit import TINY, autoseg, events


def test_forecast_before_first_trial_and_near_actual(dataset, tmp_path):
    out, ev = tmp_path / "run", tmp_path / "events.jsonl"
    r = autoseg("search", dataset, *TINY, "--trials", "2", "--jobs", "1", "--out", out, "--events", ev)
    assert r.returncode == 0, r.stderr[-2000:]
    names = [e["event"] for e in events(ev)]
    assert "forecast" in names and "trial_started" in names
    assert names.index("forecast") < names.index("trial_started")          # before the first trial starts
    fc = json.loads((out / "forecast.json").read_text())
    shown = next(e for e in events(ev) if e["event"] == "forecast")
    assert shown["text"].startswith("forecast: search ≈") and shown["search_seconds"] == fc["search_seconds"]
    assert fc["trials"] == 2 and fc["forecast_cost_seconds"] < 30
    actual = fc["actual"]
    # a generous factor: the 2 loaded cores are shared, and the sampled nets differ from the measured one
    for phase in ("search", "final"):
        ratio = actual[f"{phase}_ratio"]
        assert 1 / 8 < ratio < 8, (phase, actual, fc[f"{phase}_seconds"])
    assert fc["final_winner"]["seconds"] > 0 and actual["final_winner_ratio"] > 0    # re-forecast from the winner
    report = (out / "report.html").read_text()
    assert "Cost forecast" in report and "actual / forecast" in report


def test_forecast_only_runs_no_trial(dataset, tmp_path):
    out = tmp_path / "fo"
    r = autoseg("search", dataset, *TINY, "--time", "2m", "--out", out, "--forecast-only")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "forecast: search" in r.stdout + r.stderr and "buys" in r.stdout + r.stderr
    fc = json.loads((out / "forecast.json").read_text())
    assert fc["time_budget"] == 120 and fc["trials"] >= 1
    assert not (out / "trials").exists() or not any((out / "trials").iterdir())
    assert not (out / "best").exists()
