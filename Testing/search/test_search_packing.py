"""Longest-first packing of a random search on several jobs: real trials on real Hippocampus cases.

The queued points must be exactly what the seeded random sampler draws (only the order changes), started from
the most to the least estimated compute, and a resumed run packs only its new trials without redrawing.  (The
planned first trial, off here, is packed around in test_plan_first.)"""
import optuna

from AutoSegCore.events import EventWriter
from AutoSegCore.search.runner import SearchRunner
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.spaces import get_space


def run(dataset, out, trials: int, jobs: int = 2):
    settings = SearchSettings(data=str(dataset), out=str(out), space="unet-pipeline", strategy="random",
                              proxy_net="levels=3,width=0.125", trials=trials, jobs=jobs, epochs=1, min_epochs=1,
                              steps_per_epoch=1, seed=3, final=False, plan_trial=False)
    log: list[dict] = []
    events = EventWriter(None)
    events.listeners.append(log.append)
    runner = SearchRunner(settings, events)
    runner.prepare()
    runner.run_trials()
    return runner, log


def sampler_stream(n: int, seed: int) -> list[dict]:
    space = get_space("unet-pipeline")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.suggest(study.ask()) for _ in range(n)]


def key(params: dict) -> str:
    return repr(sorted(params.items()))


def test_random_search_on_two_jobs_starts_the_costliest_trials_first(dataset, tmp_path):
    runner, log = run(dataset, tmp_path / "s", trials=4)
    trials = runner.prepared.study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    # the same four points as the seeded sampler's stream, only reordered
    assert sorted(map(key, (t.params for t in trials))) == sorted(map(key, sampler_stream(4, seed=3)))
    started = [r["trial"] for r in log if r["event"] == "trial_started"]
    costs = [trials[n].user_attrs["packed_cost"] for n in started]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1] > 0
    assert any("longest first" in r.get("message", "") for r in log if r["event"] == "log")

    # resuming with more trials packs only the new ones, drawn from a fresh (offset) stream
    runner, log = run(dataset, tmp_path / "s", trials=6)
    trials = runner.prepared.study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert len({key(t.params) for t in trials}) == 6
    started = [r["trial"] for r in log if r["event"] == "trial_started"]
    assert started == [4, 5] and trials[4].user_attrs["packed_cost"] >= trials[5].user_attrs["packed_cost"]


def test_one_job_keeps_the_sampling_order_and_packs_nothing(dataset, tmp_path):
    runner, log = run(dataset, tmp_path / "one", trials=3, jobs=1)
    trials = runner.prepared.study.get_trials(deepcopy=False)
    assert [key(t.params) for t in trials] == list(map(key, sampler_stream(3, seed=3)))
    assert all("packed_cost" not in t.user_attrs for t in trials)
    assert not any("longest first" in r.get("message", "") for r in log if r["event"] == "log")
