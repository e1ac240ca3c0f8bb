"""A search starts from the dataset's plan and keeps what its trials trained: real trials on real Hippocampus cases.

The first trial of a fresh study is the planned recipe (so a searched config must beat it to win, and a search too
short to find better still ends with the plan); the final training starts from the winning trial's weights when
that trial trained the same network without seeing the final's validation cases; the run's summary.json is there
for the front ends with or without a report."""
import json

import optuna
import pytest

from AutoSegCore.events import EventWriter
from AutoSegCore.planning import planned_config
from AutoSegCore.search.runner import SearchRunner
from AutoSegCore.search.search_dir import SearchDir
from AutoSegCore.search.settings import SearchSettings


def recorder():
    log: list[dict] = []
    events = EventWriter(None)
    events.listeners.append(log.append)
    return log, events


def settings(dataset, out, **kw) -> SearchSettings:
    base = dict(data=str(dataset), out=str(out), space="unet-pipeline", strategy="random", trials=3, jobs=1,
                epochs=1, min_epochs=1, steps_per_epoch=2, seed=3, final=False)
    return SearchSettings(**{**base, **kw})


def test_the_first_trial_is_the_planned_recipe_and_packing_keeps_it_first(dataset, tmp_path):
    log, events = recorder()
    runner = SearchRunner(settings(dataset, tmp_path / "s", jobs=2, proxy_net="levels=3,width=0.125"), events)
    runner.prepare()
    runner.run_trials()
    trials = runner.prepared.study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    point = runner.prepared.space.planned_point(runner.settings.base_config, runner.prepared.plan)
    assert trials[0].user_attrs.get("planned") is True and trials[0].params == point
    assert point["depth"] == 0 and point["channels"] == 1.0 and point["patch_scale"] == 1.0
    planned = runner.prepared.plan["config"]
    assert trials[0].user_attrs["full_config"]["network"]["depth"] == planned["network"]["depth"]
    assert trials[0].user_attrs["full_config"]["training"]["patch_size"] == planned["training"]["patch_size"]
    started = [r["trial"] for r in log if r["event"] == "trial_started"]
    assert started[0] == 0
    costs = [trials[n].user_attrs["packed_cost"] for n in started[1:]]      # the rest: longest first, as before
    assert len(costs) == 2 and costs == sorted(costs, reverse=True)
    assert any(r.get("message", "").startswith("first trial: the planned recipe (depth=0") for r in log)

    # a resumed study queues no second planned trial
    log, events = recorder()
    runner = SearchRunner(settings(dataset, tmp_path / "s", jobs=2, trials=4, proxy_net="levels=3,width=0.125"),
                          events)
    runner.prepare()
    runner.run_trials()
    trials = runner.prepared.study.get_trials(deepcopy=False)
    assert [bool(t.user_attrs.get("planned")) for t in trials] == [True, False, False, False]


def test_no_planned_trial_when_asked_or_when_the_space_cannot_express_it(dataset, tmp_path):
    log, events = recorder()
    runner = SearchRunner(settings(dataset, tmp_path / "off", plan_trial=False, trials=1,
                                   proxy_net="levels=3,width=0.125"), events)
    runner.prepare()
    runner.run_trials()
    assert not runner.prepared.study.trials[0].user_attrs.get("planned")
    log, events = recorder()
    runner = SearchRunner(settings(dataset, tmp_path / "dag", space="segnas4", strategy="crs", trials=1), events)
    runner.prepare()
    runner.launcher.close()
    assert not runner.prepared.study.get_trials(deepcopy=False)
    assert any("cannot express the planned recipe" in r.get("message", "") for r in log)


def test_the_final_training_starts_from_the_winning_trial_and_the_summary_needs_no_report(dataset, tmp_path):
    """Full fidelity, the search's own split: the final member starts from its trial's model; summary.json holds
    what the front ends read (best value, parameters, per-class Dice) though no report was built."""
    from AutoSegCore.pipeline import run_search

    out = tmp_path / "full"
    log, events = recorder()
    s = settings(dataset, out, trials=2, final=True, final_epochs=1, final_steps_per_epoch=2)
    summary = run_search(s, events, report=False)
    folder = SearchDir(out)
    member = json.loads(folder.final_record.read_text())["members"][0]
    assert member["started_from"] == str(folder.trial(member["trial"]))
    assert json.loads((folder.best / "model.json").read_text())["started_from"] == member["started_from"]
    assert any(r.get("message") == f"starting from the weights of {folder.trial(member['trial'])}" for r in log)
    assert not folder.report.exists()
    written = json.loads(folder.summary.read_text())
    assert written["best"]["value"] == summary["best"]["value"] and written["best"]["params"]
    assert set(written["best"]["val_dice_per_class"]) == {"Anterior", "Posterior"}
    assert written["final"]["members"][0]["started_from"] == member["started_from"]


def test_a_search_whose_planned_trial_learns_nothing_gives_its_time_to_the_planned_recipe(dataset, tmp_path):
    """Trials of 2 steps learn nothing: the planned first trial shows it (its Dice under the bar above the
    all-foreground guess), the search stops instead of ranking noise, and the rest of its time goes to the planned
    recipe's final training, which starts from that trial's weights."""
    from AutoSegCore.pipeline import run_search
    from AutoSegCore.search.budget import NO_SIGNAL_ATTR, foreground_guess

    out = tmp_path / "nosignal"
    log, events = recorder()
    # 2 trials in 60 s: 30 s each for the budget fit, so that on loaded cores the trials still fit (not skipped)
    s = settings(dataset, out, trials=2, time_limit=60.0, final=True, final_time=4.0, final_steps_per_epoch=2)
    run_search(s, events, report=False)
    folder = SearchDir(out)
    search = json.loads(folder.settings.read_text())
    study = optuna.load_study(study_name=search["study_name"], storage=search["storage"])
    trials = study.get_trials(deepcopy=False)
    decided = study.user_attrs.get(NO_SIGNAL_ATTR)
    assert decided, [(t.state.name, t.user_attrs.get("val_dice"), t.user_attrs.get("error")) for t in trials] + [
        r.get("message") for r in log if r.get("event") == "log"]
    assert decided["trial"] == 0 and trials[0].user_attrs.get("planned") is True
    assert [t.state.name for t in trials] == ["COMPLETE"]               # nothing ranked on noise after it
    guess = foreground_guess(json.loads(SearchDir(out).fingerprint.read_text()))
    assert 0 < guess < 0.2 and trials[0].user_attrs["val_dice"] < guess + 0.2 * (1 - guess)
    assert any(r.get("message", "").startswith("search stopped: the planned recipe reached validation Dice")
               for r in log)
    assert 0 < decided["seconds_left"] < 60.0
    # the search's plan was made for the 4-s final; the planned recipe gets ~10× that, so it is planned again for
    # its own time (on a CPU: the patch for that time), and starts from the trial's weights where the net is the same
    again = json.loads(folder.final_plan.read_text())
    assert again["budget_seconds"] == pytest.approx(4.0 + decided["seconds_left"])
    info = json.loads((folder.best / "model.json").read_text())
    assert 0.5 * again["budget_seconds"] <= info["config"]["training"]["time_limit"] <= again["budget_seconds"]
    assert info["config"]["training"]["patch_size"] == again["config"]["training"]["patch_size"]
    same = planned_config(again, s.base_config)["network"] == trials[0].user_attrs["full_config"]["network"]
    member = json.loads(folder.final_record.read_text())["members"][0]
    assert member["tag"] == "planned" and member["started_from"] == (str(folder.trial(0)) if same else None)
    said = [r["message"] for r in log if "planned again for that time" in r.get("message", "")]
    assert len(said) == 1 and ("from trial 0's weights" if same else "from scratch") in said[0], said
