"""Behaviour of each strategy beyond the common contract: registry errors, the penalty convention, the unit-cube
relaxation, CRS's cache and stopping (also across two processes), BOHB's per-budget models and rung pruning,
the RL controller's shared state and learning, MOEA/D's bookkeeping and quality."""
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from AutoSegCore.errors import ConfigError
from AutoSegCore.strategies import (STRATEGY_PENALTY, StrategyError, dice_objective, list_strategies, make_pruner,
                                    make_sampler, penalty_value)
from AutoSegCore.strategies.encoding import UnitCube


# ------------------------------------------------------------------------------------------------ registry
def test_registry_names_and_errors():
    assert list_strategies() == ["random", "tpe", "nsga2", "bohb", "rl", "crs", "moead"]
    with pytest.raises(StrategyError, match="unknown strategy 'cmaes'") as info:
        make_sampler("cmaes")
    assert "use one of random, tpe" in info.value.hint
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    with pytest.raises(StrategyError, match="strategy 'crs': bad option"):
        make_sampler("crs", populaton_size=5)
    with pytest.raises(StrategyError, match="min_budget"):
        make_sampler("bohb", min_budget=10, max_budget=3)


def test_pruners_by_strategy():
    hb = make_pruner("bohb", min_budget=2, max_budget=18, eta=3)
    assert isinstance(hb, optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("bohb", min_budget=1, max_budget=9, random_fraction=0.2), optuna.pruners.HyperbandPruner)
    aliased = make_pruner("bohb", min_resource=2, max_resource=18)        # Optuna's names work too
    assert (aliased._min_resource, aliased._max_resource) == (2, 18)
    assert make_sampler("bohb", min_resource=2, max_resource=18).budgets == [2, 6, 18]
    # budgets not given to the sampler come from the study's HyperbandPruner
    study = optuna.create_study(sampler=make_sampler("bohb", seed=0), pruner=make_pruner("bohb", min_resource=2,
                                                                                         max_resource=20))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert study.sampler.budgets == [2, 6, 18, 20]
    with pytest.raises(StrategyError, match="mn_budget"):
        make_pruner("bohb", mn_budget=1)
    assert isinstance(make_pruner("crs"), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("tpe", median=True, n_startup_trials=3), optuna.pruners.MedianPruner)


def test_penalty_convention():
    assert STRATEGY_PENALTY == 10.0
    assert penalty_value("minimize") == 10.0 and penalty_value("maximize") == -10.0
    assert penalty_value(optuna.study.StudyDirection.MAXIMIZE) == -10.0
    assert dice_objective(1.0) == 0.0
    assert dice_objective(0.0) == pytest.approx(-math.log(1e-4)) and dice_objective(0.0) < penalty_value("minimize")
    with pytest.raises(StrategyError, match="sideways"):
        penalty_value("sideways")


# ------------------------------------------------------------------------------------------------ encoding
@pytest.mark.parametrize("dist", [
    FloatDistribution(-2.0, 3.0), FloatDistribution(1e-6, 1.0, log=True), FloatDistribution(0.0, 1.0, step=0.25),
    IntDistribution(2, 9), IntDistribution(1, 300, log=True), IntDistribution(-4, 8, step=4),
    CategoricalDistribution(["a", 2, None]),
])
def test_unit_cube_round_trip(dist):
    cube = UnitCube({"p": dist})
    for u in np.linspace(0.0, 1.0, 41):
        params = cube.decode(np.array([u]))
        assert dist._contains(dist.to_internal_repr(params["p"]))
        x = cube.encode(params)
        assert cube.decode(x) == params                     # encode gives a point that floors to the same value
        assert cube.key_of(x) == cube.key(params)
    assert cube.encode({"p": "not a value"}) is None and cube.encode({}) is None


def test_unit_cube_floors_integers_into_equal_cells():
    cube = UnitCube({"k": IntDistribution(0, 3)})
    values = [cube.decode(np.array([u]))["k"] for u in (0.0, 0.24, 0.25, 0.49, 0.5, 0.99, 1.0)]
    assert values == [0, 0, 1, 1, 2, 3, 3]


# ------------------------------------------------------------------------------------------------ CRS
def discrete_objective(trial):
    a = trial.suggest_int("a", 0, 15)
    b = trial.suggest_int("b", 0, 15)
    c = trial.suggest_categorical("c", ["x", "y", "z"])
    if a + b > 26:                                        # "illegal architecture"
        raise RuntimeError("illegal")
    return (a - 11) ** 2 + (b - 4) ** 2 + 5 * (c != "y")


def test_crs_never_reevaluates_a_discretised_point_and_gets_penalty_for_failures():
    study = optuna.create_study(sampler=make_sampler("crs", seed=0))
    study.optimize(discrete_objective, n_trials=150, catch=(RuntimeError,))
    keys = [(t.params["a"], t.params["b"], t.params["c"]) for t in study.trials]
    assert len(set(keys)) == len(keys) == 150
    assert any(t.state == TrialState.FAIL for t in study.trials)
    assert study.best_value == 0.0                         # the optimum (11, 4, 'y') of 768 points is found
    assert study.sampler._n_population(UnitCube(study.sampler.infer_relative_search_space(study, None))) == 40


def test_crs_max_iterations_stops_optimize_and_exhausted_space_does_not_hang():
    study = optuna.create_study(sampler=make_sampler("crs", seed=1, max_iterations=25))
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2 + t.suggest_float("y", -1, 1) ** 2,
                   n_trials=200)
    assert len(study.trials) == 25 and study.sampler.is_exhausted(study)
    tiny = optuna.create_study(sampler=make_sampler("crs", seed=1, max_attempts=200))
    tiny.optimize(lambda t: t.suggest_int("k", 0, 5), n_trials=9)
    assert sorted({t.params["k"] for t in tiny.trials}) == [0, 1, 2, 3, 4, 5]


WORKER = textwrap.dedent("""
    import sys, optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from AutoSegCore.strategies import make_sampler
    from AutoSegCore.search.storage import open_storage
    storage = open_storage(sys.argv[1], heartbeat=False)
    study = optuna.load_study(study_name="crs", storage=storage, sampler=make_sampler("crs", seed=int(sys.argv[2])))
    def objective(t):
        a, b = t.suggest_int("a", 0, 9), t.suggest_int("b", 0, 9)
        return (a - 7) ** 2 + (b - 2) ** 2
    study.optimize(objective, n_trials=30)
""")


@pytest.mark.slow
def test_crs_two_processes_on_one_sqlite_study_share_the_cache(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    # The first trial fixes the search space (it is sampled before any space is known, so it cannot be
    # de-duplicated against a simultaneous first trial of another worker; docs/strategies.md, known limits).
    first = optuna.create_study(storage=url, study_name="crs", sampler=make_sampler("crs", seed=9))
    first.optimize(lambda t: t.suggest_int("a", 0, 9) + t.suggest_int("b", 0, 9), n_trials=1)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), url, str(seed)], stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    errs = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    trials = optuna.load_study(study_name="crs", storage=url).trials
    keys = [(t.params["a"], t.params["b"]) for t in trials]
    assert len(trials) == 61 and len(set(keys)) == 61       # 100 points, none evaluated twice


# ------------------------------------------------------------------------------------------------ BOHB
def _add(study, params, dists, steps_values, state=TrialState.PRUNED, value=None):
    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, state=state, value=value,
                                              intermediate_values=steps_values))


def test_bohb_samples_from_the_highest_budget_with_a_model():
    dists = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    sampler = make_sampler("bohb", seed=0, min_budget=1, max_budget=9, eta=3, random_fraction=0.0)
    study = optuna.create_study(sampler=sampler)
    rng = np.random.RandomState(0)
    for _ in range(12):                                   # 12 observations at budgets 1 and 3, none at 9
        p = {"x": float(rng.uniform()), "y": float(rng.uniform())}
        _add(study, p, dists, {1: p["x"] + 1, 3: p["x"] + 0.5})
    study.ask(dists)
    assert sampler.last_model_budget == 3
    for _ in range(8):                                    # now budget 9 has observations too
        p = {"x": float(rng.uniform()), "y": float(rng.uniform())}
        _add(study, p, dists, {1: 1.0, 3: 0.8, 9: p["x"]}, state=TrialState.COMPLETE, value=p["x"])
    study.ask(dists)
    assert sampler.last_model_budget == 9
    sampler.random_fraction = 1.0
    study.ask(dists)
    assert sampler.last_model_budget is None


def test_bohb_tpe_counts_trials_stopped_below_a_budget_as_bad_there():
    dists = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    sampler = make_sampler("bohb", seed=0, min_budget=1, max_budget=9, eta=3, random_fraction=0.0)
    study = optuna.create_study(sampler=sampler)
    rng = np.random.RandomState(0)
    for _ in range(10):                                   # stopped at budget 1: bad at budgets 3 and 9
        p = {"x": float(rng.uniform(0.5, 1)), "y": float(rng.uniform())}
        _add(study, p, dists, {1: 5.0})
    for _ in range(2):                                    # N_min = 2 observations at budget 9
        p = {"x": float(rng.uniform(0, 0.5)), "y": float(rng.uniform())}
        _add(study, p, dists, {1: 1.0, 3: 0.8, 9: p["x"]}, state=TrialState.COMPLETE, value=p["x"])
    xs = [study.ask(dists).params["x"] for _ in range(10)]
    assert sampler.last_model_budget == 9
    shadow = next(s for key, (s, _) in sampler._tpe_studies.items() if key[-1] == 9)
    values = [t.value for t in shadow.trials if t.state == TrialState.COMPLETE]
    assert values.count(math.inf) == 10 and len(values) == 12 and all(v < 0.5 for v in values if v != math.inf)
    assert np.mean(np.array(xs) < 0.5) > 0.5               # away from where the stopped trials were
    with pytest.raises(StrategyError):
        make_sampler("bohb", model="gp")


@pytest.mark.parametrize("model", ["tpe", "kde"])
def test_bohb_with_hyperband_prunes_at_rungs_and_beats_random(model):
    opts = dict(min_budget=1, max_budget=9, eta=3)

    def run(strategy, seed):
        # fixed study name: HyperbandPruner picks each trial's bracket from a hash of name and trial number
        study = optuna.create_study(sampler=make_sampler(strategy, seed=seed, **({"model": model, **opts}
                                                                              if strategy == "bohb" else {})),
                                    pruner=make_pruner("bohb", **opts), study_name=f"hb-{seed}")
        for _ in range(60):
            trial = study.ask()
            x, y = trial.suggest_float("x", -3, 3), trial.suggest_float("y", -3, 3)
            final = (x - 1) ** 2 + (y + 1) ** 2
            for epoch in range(1, 10):
                trial.report(final + 2.0 / epoch, epoch)
                if trial.should_prune():
                    study.tell(trial, state=TrialState.PRUNED)
                    break
            else:
                study.tell(trial, final)
        return study

    study = run("bohb", 0)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and {max(t.intermediate_values) for t in pruned} <= {1, 3, 9}   # the rung budgets
    bohb = np.mean([run("bohb", s).best_value for s in range(3)])
    rand = np.mean([run("random", s).best_value for s in range(3)])
    if model == "tpe":          # hpbandster's KDE collapses onto its first good points here (docs/strategies.md)
        assert bohb < rand
    else:
        assert math.isfinite(bohb)


# ------------------------------------------------------------------------------------------------ RL
def test_rl_state_lives_in_the_study_and_is_shared(tmp_path):
    import torch
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    a = make_sampler("rl", seed=0, hidden=8)
    study = optuna.create_study(storage=storage, study_name="rl", sampler=a)
    study.optimize(lambda t: t.suggest_int("k", 0, 4) + (t.suggest_categorical("c", ["p", "q"]) == "q"), n_trials=12)
    state = study._storage.get_study_system_attrs(study._study_id)["rl:state"]
    assert state["updates"] == 11 and state["version"] == 11    # trial 0 is random (no space yet)
    json.dumps(state)                                           # plain JSON in the storage
    b = make_sampler("rl", seed=5, hidden=8)
    other = optuna.load_study(study_name="rl", storage=storage, sampler=b)
    other.optimize(lambda t: t.suggest_int("k", 0, 4) + (t.suggest_categorical("c", ["p", "q"]) == "q"), n_trials=1)
    assert other._storage.get_study_system_attrs(other._study_id)["rl:state"]["version"] == 12      # B loaded A's state and continued it
    for (na, pa), (nb, pb) in zip(a._model.state_dict().items(), b._model.state_dict().items()):
        assert na == nb and pa.shape == pb.shape
    assert not all(torch.equal(pa, pb) for pa, pb in zip(a._model.parameters(), b._model.parameters()))


def test_rl_finds_a_toy_categorical_optimum_faster_than_random():
    target = [3, 1, 4]

    def trials_to_optimum(strategy, seed):
        study = optuna.create_study(sampler=make_sampler(strategy, seed=seed))
        for n in range(400):
            t = study.ask()
            v = float(sum(t.suggest_categorical(f"p{i}", list(range(6))) != g for i, g in enumerate(target)))
            study.tell(t, v)
            if v == 0:
                return n + 1
        return 400

    rl = np.mean([trials_to_optimum("rl", s) for s in range(3)])
    rand = np.mean([trials_to_optimum("random", s) for s in range(3)])
    assert rl < 0.6 * rand, (rl, rand)


# ------------------------------------------------------------------------------------------------ MOEA/D
def zdt1(trial):
    x = np.array([trial.suggest_float(f"x{i}", 0, 1) for i in range(5)])
    g = 1 + 9 * x[1:].mean()
    return x[0], g * (1 - np.sqrt(x[0] / g))


@pytest.mark.slow
def test_moead_tags_subproblems_and_beats_random_hypervolume():
    from pymoo.indicators.hv import HV

    hv = HV(ref_point=np.array([1.1, 11.0]))
    scores = {}
    for name in ("moead", "random"):
        vals = []
        for seed in range(2):
            study = optuna.create_study(directions=["minimize"] * 2, sampler=make_sampler(name, seed=seed))
            study.optimize(zdt1, n_trials=120)
            vals.append(hv(np.array([t.values for t in study.trials])))
            if name == "moead":
                tags = [t.system_attrs["moead:tag"] for t in study.trials[1:]]
                assert [tag["sub"] for tag in tags] == [n % 20 for n in range(1, 120)]
                assert {tag["pool"] for tag in tags[30:]} <= {"neighbors", "all"}
        scores[name] = np.mean(vals)
    assert scores["moead"] > scores["random"]
