"""Three workers on one PostgreSQL study: no trial lost or run twice."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from searchkit import TINY, events, load, start, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_three_workers_share_one_postgres_study(dataset, tmp_path, postgres_url):
    import optuna

    name = "pg-study"
    leader = start("search", dataset, *TINY, "--trials", "6", "--no-final", "--storage", postgres_url,
                   "--study-name", name, "--out", tmp_path / "leader", "--events", tmp_path / "leader.jsonl",
                   log=tmp_path / "leader.log")
    wait_for(lambda: any(s.study_name == name for s in optuna.get_all_study_summaries(postgres_url))
             and load(postgres_url, name).user_attrs.get("settings"), timeout=300)
    workers = [start("worker", "--storage", postgres_url, "--study", name, "--out", tmp_path / f"w{i}",
                     "--events", tmp_path / f"w{i}.jsonl", log=tmp_path / f"w{i}.log") for i in range(2)]
    for p in [leader, *workers]:
        assert p.wait(timeout=1500) == 0, (tmp_path / "leader.log").read_text()[-2000:]
    study = load(postgres_url, name)
    states = Counter(t.state.name for t in study.trials)
    assert states["RUNNING"] == 0 and states["FAIL"] == 0
    assert 6 <= states["COMPLETE"] <= 8                   # each process may start one last trial at the boundary
    # every trial ran exactly once, each by one process
    started = [e["trial"] for f in ("leader", "w0", "w1") for e in events(tmp_path / f"{f}.jsonl")
               if e["event"] == "trial_started"]
    assert sorted(started) == sorted(t.number for t in study.trials)
    assert len(set(started)) == len(started)
    owners = {t.number: json.dumps(t.system_attrs["autoseg_worker"]["trial_dir"]) for t in study.trials}
    assert len(set(owners.values())) == len(owners)
    assert sum(1 for f in ("w0", "w1") if any(e["event"] == "trial_started" for e in events(tmp_path / f"{f}.jsonl"))) >= 1
    # each process samples its own random stream: no configuration was drawn twice
    drawn = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(set(drawn)) == len(drawn), drawn
