"""One contract for every registered strategy: ask/tell with failed and pruned trials, seeded reproducibility,
values inside their distributions, and two workers on one storage."""
import math
import threading

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from AutoSegCore.strategies import MULTI_OBJECTIVE, list_strategies, make_pruner, make_sampler, was_requeued

SPACE = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "momentum": FloatDistribution(0.8, 0.99, step=0.01),
    "depth": IntDistribution(2, 6),
    "channels": IntDistribution(8, 128, log=True),
    "batch": IntDistribution(2, 16, step=2),
    "loss": CategoricalDistribution(["dice", "dice_ce", "focal"]),
    "norm": CategoricalDistribution([True, False]),
}
OPTIONS = {"bohb": dict(min_budget=1, max_budget=9, eta=3), "rl": dict(hidden=8),
           "moead": dict(population_size=8), "crs": dict(population_size=12)}


def objective(params: dict) -> float:
    """A smooth-ish function of every parameter (minimum near lr=1e-3, depth 4, 32 channels, dice_ce)."""
    return ((math.log10(params["lr"]) + 3) ** 2 + (params["depth"] - 4) ** 2 / 4
            + (math.log2(params["channels"]) - 5) ** 2 / 4 + params["dropout"] + abs(params["momentum"] - 0.9)
            + params["batch"] / 16 + (params["loss"] != "dice_ce") + 0.1 * params["norm"])


def run_ask_tell(name: str, seed: int, n_trials: int = 24, storage=None, study_name=None) -> optuna.Study:
    study = optuna.create_study(sampler=make_sampler(name, seed=seed, **OPTIONS.get(name, {})),
                                pruner=make_pruner(name, **OPTIONS.get(name, {})), storage=storage,
                                study_name=study_name, load_if_exists=True)
    for i in range(n_trials):
        trial = study.ask()
        params = {k: trial.suggest_categorical(k, d.choices) if isinstance(d, CategoricalDistribution)
                  else trial.suggest_int(k, d.low, d.high, step=d.step, log=d.log) if isinstance(d, IntDistribution)
                  else trial.suggest_float(k, d.low, d.high, step=d.step, log=d.log) for k, d in SPACE.items()}
        if i % 6 == 5:                      # an illegal architecture / out-of-memory run
            study.tell(trial, state=TrialState.FAIL)
        elif i % 7 == 6:                    # stopped early by a pruner after reporting one epoch
            trial.report(objective(params) + 1.0, step=1)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            for epoch in (1, 3):
                trial.report(objective(params) + 1.0 / epoch, step=epoch)
            study.tell(trial, objective(params))
    return study


def assert_in_space(trial: optuna.trial.FrozenTrial) -> None:
    for name, dist in SPACE.items():
        value = trial.params[name]
        assert trial.distributions[name] == dist
        if isinstance(dist, CategoricalDistribution):
            assert value in dist.choices
            continue
        expected_type = int if isinstance(dist, IntDistribution) else float
        assert type(value) is expected_type, (name, type(value))
        assert dist.low <= value <= dist.high, (name, value)
        if dist.step is not None:
            k = (value - dist.low) / dist.step
            assert abs(k - round(k)) < 1e-8, (name, value)


@pytest.mark.parametrize("name", list_strategies())
def test_ask_tell_with_failures_stays_in_space(name):
    study = run_ask_tell(name, seed=3)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) == 4 and states.count(TrialState.PRUNED) == 3
    assert states.count(TrialState.COMPLETE) == 17
    for t in study.trials:
        assert_in_space(t)
    assert study.best_value == min(t.value for t in study.trials if t.state == TrialState.COMPLETE)


@pytest.mark.parametrize("name", list_strategies())
def test_same_seed_same_sequence(name):
    a = [t.params for t in run_ask_tell(name, seed=11).trials]
    b = [t.params for t in run_ask_tell(name, seed=11).trials]
    c = [t.params for t in run_ask_tell(name, seed=12).trials]
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", list_strategies())
def test_two_workers_on_one_storage(name, tmp_path):
    # A journal file is the multi-process storage Optuna recommends on one machine (and is fast to test);
    # the SQLite storage is exercised by Testing/strategies/test_strategies.py for CRS with two processes.
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    optuna.create_study(storage=storage, study_name="s")          # schema + study created once (stack.md)
    errors = []

    def worker(seed):
        try:
            run_ask_tell(name, seed=seed, n_trials=10, storage=storage, study_name="s")
        except Exception as exc:            # surfaced below with the worker's traceback text
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 20
    assert len({t.number for t in study.trials}) == 20
    for t in study.trials:
        assert_in_space(t)


@pytest.mark.parametrize("name", list_strategies())
def test_multi_objective_support_is_explicit(name):
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=make_sampler(name, seed=0, **OPTIONS.get(name, {})))

    def two(trial):
        x = trial.suggest_float("x", 0, 1)
        y = trial.suggest_int("y", 0, 4)
        return x + y, (1 - x) + (4 - y)

    if name in MULTI_OBJECTIVE:
        study.optimize(two, n_trials=12)
        assert len(study.best_trials) >= 1
        assert all(t.state == TrialState.COMPLETE for t in study.trials)
    else:
        with pytest.raises(ValueError, match="one objective"):
            study.optimize(two, n_trials=2, catch=())


def _ask(study: optuna.Study) -> dict:
    trial = study.ask()
    params = {k: trial.suggest_categorical(k, d.choices) if isinstance(d, CategoricalDistribution)
              else trial.suggest_int(k, d.low, d.high, step=d.step, log=d.log) if isinstance(d, IntDistribution)
              else trial.suggest_float(k, d.low, d.high, step=d.step, log=d.log) for k, d in SPACE.items()}
    for epoch in (1, 3):
        trial.report(objective(params) + 1.0 / epoch, step=epoch)
    study.tell(trial, objective(params))
    return params


# MOEA/D is left out: it gives trial number t the subproblem t mod N, so any extra record shifts its round-robin;
# it learns only from COMPLETE trials (moead.py's replay), which a stopped trial never is
@pytest.mark.parametrize("name", [n for n in list_strategies() if n != "moead"])
def test_a_stopped_and_requeued_trial_is_no_verdict(name):
    """The runner records a trial it stopped (Ctrl-C, dead worker, the search's time limit) as FAIL "…;
    re-queued" and runs its parameters again: no strategy may learn from that record, so the proposals that
    follow are exactly those of a study without it (a real failure would count as the worst value)."""
    studies = []
    for with_stop in (False, True):
        sampler = make_sampler(name, seed=5, **OPTIONS.get(name, {}))
        study = optuna.create_study(sampler=sampler, pruner=make_pruner(name, **OPTIONS.get(name, {})))
        for _ in range(10):
            _ask(study)
        if with_stop:
            # the best point so far, stopped after one epoch at a poor intermediate value
            best = study.best_trial
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.FAIL, params=best.params, distributions=best.distributions,
                intermediate_values={1: 50.0},
                user_attrs={"error": "stopped at the search time limit (60 s); re-queued"}))
            stopped = study.trials[-1]
            assert was_requeued(stopped)
            sampler.after_trial(study, stopped, TrialState.FAIL, None)
        studies.append([_ask(study) for _ in range(8)])
    assert studies[0] == studies[1]
