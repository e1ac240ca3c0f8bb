"""Budget first: trials sized so that several finish in --time; a --time that cannot finish one trains the planned
recipe; a search with neither --trials nor --time says its budget in its first line; the log shows trial epochs."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from searchkit import autoseg, events, make_subset

from AutoSegCore.search.budget import MIN_FINISHED, MIN_STEPS, fit_trials


def settings(**kw):
    base = dict(time_limit=600.0, jobs=1, trials=None, epochs=20, min_epochs=2, steps_per_epoch=None, final=True)
    return SimpleNamespace(**{**base, **kw})


def forecast(trial_seconds, step, steps=25):
    return {"trial_seconds": trial_seconds, "steps_per_epoch": steps, "measured": {"proxy": {"step_seconds": step}}}


def test_trials_that_fit_are_left_alone():
    assert fit_trials(settings(), forecast(100.0, 0.1)) is None          # 6 trials of 100 s in 600 s
    assert fit_trials(settings(final=False), forecast(260.0, 0.5)) is None   # no final training: sizes as asked


def test_trials_shrink_until_the_minimum_count_finishes():
    # 20 epochs × 25 steps × 0.5 s + 10 s fixed = 260 s a trial: 2 fit in 600 s, 4 wanted
    fit = fit_trials(settings(), forecast(260.0, 0.5))
    assert fit["skip"] is False and fit["trials"] == MIN_FINISHED
    assert fit["trial_seconds"] * MIN_FINISHED <= 600.0 + 1e-6
    assert fit["epochs"] * fit["steps_per_epoch"] < 20 * 25 and fit["steps_per_epoch"] >= MIN_STEPS
    two_jobs = fit_trials(settings(jobs=2), forecast(260.0, 0.5))        # twice the trials in twice the compute
    assert two_jobs["trials"] == 2 * MIN_FINISHED and two_jobs["trial_seconds"] == pytest.approx(fit["trial_seconds"])


def test_a_budget_too_small_for_the_smallest_trial_skips_the_search():
    fit = fit_trials(settings(time_limit=20.0), forecast(260.0, 0.5))     # 2 epochs × 5 steps × 0.5 s + 10 s > 5 s
    assert fit["skip"] is True and "smallest size" in fit["reason"]


def test_sizing_the_trials_leaves_a_timed_final_training_its_time(tmp_path):
    """Trials shrunk to --time keep the final training at the size asked for — but a --final-time is that size: its
    epochs must not be capped at the trials' (the Hippocampus search arm's final stopped after 20 epochs, 248 s of
    its 450 s, before this)."""
    import optuna

    from AutoSegCore.search.budget import apply_fit
    from AutoSegCore.search.search_dir import SearchDir
    from AutoSegCore.search.settings import SearchSettings

    for final_time, final_epochs in ((450.0, None), (None, 20)):
        s = SearchSettings(data=str(tmp_path), out=str(tmp_path), trials=None, time_limit=600.0,
                           final_time=final_time)
        p = SimpleNamespace(settings=s, folder=SearchDir(tmp_path), plan=None, directions=["maximize"],
                            study=optuna.create_study(direction="maximize"))
        assert apply_fit(p, forecast(260.0, 0.5)) is False                # trials shrunk, the search runs
        assert s.epochs * s.steps_per_epoch < 20 * 25 and s.final_epochs == final_epochs


@pytest.mark.slow
def test_a_time_too_short_for_any_trial_still_ends_with_a_model(tmp_path):
    data = make_subset(tmp_path / "data", 8)
    out = tmp_path / "study"
    r = autoseg("search", data, "--space", "unet-recipe", "--strategy", "random", "--time", "3s",
                "--final-time", "15s", "--out", out, "--events", tmp_path / "ev.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    logs = [e.get("message", "") for e in events(tmp_path / "ev.jsonl") if e["event"] == "log"]
    assert any("no trial can finish" in m for m in logs), logs
    assert any("training the planned recipe" in m for m in logs), logs
    assert (out / "best" / "model.json").is_file() and (out / "plan.json").is_file()
    assert "the planned recipe was trained instead" in r.stderr


@pytest.mark.slow
def test_no_budget_given_says_the_chosen_one_first_and_the_log_shows_trial_epochs(tmp_path):
    data = make_subset(tmp_path / "data", 8)
    out = tmp_path / "study"
    r = autoseg("search", data, "--space", "proxy-hpo", "--strategy", "random", "--proxy-net", "levels=3",
                "--forecast-only", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("budget: neither --trials nor --time given: searching for 60.0 min"), first
    r = autoseg("search", data, "--space", "proxy-hpo", "--strategy", "random", "--proxy-net", "levels=3",
                "--trials", "1", "--epochs", "2", "--min-epochs", "1", "--steps-per-epoch", "2", "--no-final",
                "--out", tmp_path / "s2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "search: trial 0: epoch 1/2" in r.stderr and "search: trial 0: epoch 2/2" in r.stderr


def test_the_foreground_guess_and_the_learning_bar():
    from AutoSegCore.search.budget import foreground_guess, no_signal

    fingerprint = {"cases": [{"shape": [10, 10, 10]}, {"shape": [10, 10, 10]}],
                   "label_stats": {"1": {"voxels_total": 100}, "2": {"voxels_total": 0}}}
    assert foreground_guess(fingerprint) == pytest.approx((2 * 100 / 2100 + 0.0) / 2)
    assert foreground_guess({}) is None and foreground_guess(None) is None
    guess = foreground_guess(fingerprint)
    bar = guess + 0.2 * (1 - guess)
    timed = settings(epochs=20, steps_per_epoch=36)
    assert "below" in no_signal(timed, bar - 0.01, fingerprint) and "20 epochs × 36 steps" in no_signal(timed, 0.0, fingerprint)
    assert no_signal(timed, bar + 0.01, fingerprint) is None                     # it learned: the search goes on
    assert no_signal(settings(time_limit=None), 0.0, fingerprint) is None         # --trials: no time to give back
    assert no_signal(settings(final=False), 0.0, fingerprint) is None             # --no-final: nothing to give it to
    assert no_signal(timed, None, fingerprint) is None and no_signal(timed, 0.0, None) is None
