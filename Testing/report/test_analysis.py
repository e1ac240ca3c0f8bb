"""AutoSegCore.report.analysis on real Optuna studies, checked against SciPy and hand-computed cases."""
from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
from scipy import stats

from AutoSegCore.report import analysis as A


def _study_from_curves(curves: dict[int, list[float]], finals: dict[int, float]) -> optuna.Study:
    """A study whose trial i reports curves[i] per epoch and ends with finals[i] (in-memory, real trials)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        i = trial.number
        trial.suggest_float("x", 0, 1)
        for epoch, v in enumerate(curves[i], start=1):
            trial.report(v, epoch)
        return finals[i]

    study.optimize(objective, n_trials=len(finals))
    return study


def test_bohb_thesis_worked_example():
    # the BOHB thesis §4.2.1: τ = 0.31 with N = 50 gives z = 3.17
    assert A.tau_z_score(0.31, 50) == pytest.approx(3.17, abs=0.01)
    # Eq. 3.1 by hand for N = 12, τ = 1: 3·√132 / √58
    assert A.tau_z_score(1.0, 12) == pytest.approx(3 * math.sqrt(132) / math.sqrt(58))


def test_consistent_rankings_give_tau_one_every_epoch():
    finals = {i: 0.5 + 0.02 * i for i in range(12)}
    curves = {i: [finals[i] * (1 - math.exp(-e / 2)) for e in range(1, 6)] for i in range(12)}
    rows = A.kendall_tau_over_epochs(_study_from_curves(curves, finals))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    for r in rows:
        assert r["n"] == 12 and r["tau"] == pytest.approx(1.0)
        assert r["z"] == pytest.approx(3 * math.sqrt(12 * 11) / math.sqrt(2 * 29))
        assert r["significant"] and r["p_z"] == pytest.approx(2 * stats.norm.sf(r["z"]))


def test_reversed_ranking_gives_tau_minus_one():
    finals = {i: 0.5 + 0.02 * i for i in range(8)}
    curves = {i: [1.0 - finals[i]] * 3 for i in range(8)}
    rows = A.kendall_tau_over_epochs(_study_from_curves(curves, finals))
    assert all(r["tau"] == pytest.approx(-1.0) and r["z"] < -1.96 and not r["significant"] for r in rows)


def test_random_rankings_give_small_z():
    rng = np.random.default_rng(7)
    n = 40
    finals = {i: float(v) for i, v in enumerate(rng.uniform(0.5, 0.9, n))}
    curves = {i: list(rng.uniform(0.1, 0.9, 6)) for i in range(n)}
    rows = A.kendall_tau_over_epochs(_study_from_curves(curves, finals))
    assert len(rows) == 6
    zs = [abs(r["z"]) for r in rows]
    assert max(zs) < 2.58 and np.mean(zs) < 1.5
    assert not any(r["significant"] and r["tau"] > 0.3 for r in rows)


def test_tau_matches_scipy_on_search_study(single_work):
    study = optuna.load_study(study_name="single", storage=f"sqlite:///{single_work / 'study.db'}")
    rows = A.kendall_tau_over_epochs(study)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert rows and rows[-1]["epoch"] == 6
    for r in rows:
        x = [t.intermediate_values[r["epoch"]] for t in done]
        y = [t.value for t in done]
        ref = stats.kendalltau(x, y)
        assert r["n"] == len(done) and r["tau"] == pytest.approx(ref.statistic) and r["p_scipy"] == pytest.approx(ref.pvalue)
        assert r["z"] == pytest.approx(A.tau_z_score(ref.statistic, len(done)))
    # the last epoch's value is the final value: the rankings are identical
    assert rows[-1]["tau"] == pytest.approx(1.0)


def test_too_few_trials_give_no_tau():
    study = _study_from_curves({0: [0.1, 0.2], 1: [0.2, 0.3]}, {0: 0.2, 1: 0.3})
    assert A.kendall_tau_over_epochs(study) == []


def test_anova_finds_real_effect_and_not_noise(single_work):
    study = optuna.load_study(study_name="single", storage=f"sqlite:///{single_work / 'study.db'}")
    rows = {r["param"]: r for r in A.anova_one_at_a_time(study)}
    assert set(rows) == {"depth", "loss", "lr", "noise_param"}
    assert rows["depth"]["significant"] and rows["depth"]["p_bonferroni"] < 0.001
    assert not rows["noise_param"]["significant"] and rows["noise_param"]["p_bonferroni"] > 0.05
    # categorical parameter: exactly scipy's one-way ANOVA over the groups, Bonferroni × 4 tested params
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    groups = {}
    for t in done:
        groups.setdefault(t.params["loss"], []).append(t.value)
    ref = stats.f_oneway(*[groups[k] for k in sorted(groups)])
    assert rows["loss"]["F"] == pytest.approx(ref.statistic) and rows["loss"]["p"] == pytest.approx(ref.pvalue)
    assert rows["loss"]["p_bonferroni"] == pytest.approx(min(1.0, 4 * ref.pvalue))
    # integer depth: one group per value; float noise_param: 4 quantile bins covering every trial
    assert sorted(g["label"] for g in rows["depth"]["groups"]) == sorted({str(t.params["depth"]) for t in done})
    assert len(rows["noise_param"]["groups"]) == 4 and rows["noise_param"]["n"] == len(done)


def test_anova_paper_style_last_five_scores(single_work):
    study = optuna.load_study(study_name="single", storage=f"sqlite:///{single_work / 'study.db'}")
    rows = {r["param"]: r for r in A.anova_one_at_a_time(study, samples_per_trial=5)}
    n_done = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert rows["depth"]["n"] == 5 * n_done and rows["depth"]["significant"]


def test_anova_single_valued_param_is_not_tested():
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: t.suggest_categorical("c", ["only"]) and t.suggest_float("x", 0, 1), n_trials=6)
    rows = {r["param"]: r for r in A.anova_one_at_a_time(study)}
    assert rows["c"]["p"] is None and rows["c"]["note"] == "only one value was tried"
    assert rows["x"]["p"] is not None and rows["x"]["p_bonferroni"] == pytest.approx(rows["x"]["p"])  # m = 1


def test_importance_on_search_study(single_work):
    study = optuna.load_study(study_name="single", storage=f"sqlite:///{single_work / 'study.db'}")
    imp = A.importance(study)
    assert imp["method"] == "FanovaImportanceEvaluator" and imp["note"] is None
    assert set(imp["importances"]) == {"depth", "loss", "lr", "noise_param"}
    assert sum(imp["importances"].values()) == pytest.approx(1.0)
    assert imp["importances"]["depth"] > imp["importances"]["noise_param"]


def test_importance_degrades_gracefully():
    one = optuna.create_study()
    one.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert A.importance(one)["importances"] == {} and "at least 2" in A.importance(one)["note"]
    fixed = optuna.create_study()
    fixed.optimize(lambda t: t.suggest_int("d", 3, 3) * 1.0, n_trials=4)
    res = A.importance(fixed)
    assert res["importances"] == {} and "more than one value" in res["note"]


def test_proxy_vs_full_matches_scipy():
    members = [{"trial": i, "proxy_val_dice": p, "full_val_dice": f}
               for i, (p, f) in enumerate([(0.80, 0.86), (0.78, 0.85), (0.70, 0.84), (0.82, 0.88), (0.60, 0.80)])]
    res = A.proxy_vs_full({"members": members})
    x, y = [m["proxy_val_dice"] for m in members], [m["full_val_dice"] for m in members]
    assert res["n"] == 5 and res["note"] is None
    assert res["pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert res["spearman_r"] == pytest.approx(stats.spearmanr(x, y).statistic)
    # hand case: a perfectly linear relation
    lin = A.proxy_vs_full({"members": [{"trial": i, "proxy_val_dice": 0.1 * i, "full_val_dice": 0.2 * i + 0.1}
                                       for i in range(1, 5)]})
    assert lin["pearson_r"] == pytest.approx(1.0) and lin["spearman_r"] == pytest.approx(1.0)
    assert A.proxy_vs_full(None)["pearson_r"] is None and "missing" in A.proxy_vs_full(None)["note"]
    assert "at least 3" in A.proxy_vs_full({"members": members[:2]})["note"]


def test_best_so_far_tracks_running_best(single_work):
    study = optuna.load_study(study_name="single", storage=f"sqlite:///{single_work / 'study.db'}")
    res = A.best_so_far(study)
    pts = res["points"]
    assert res["maximize"] and len(pts) == len(study.trials)
    running = None
    for p in pts:
        if p["value"] is not None:
            running = p["value"] if running is None else max(running, p["value"])
        assert p["best"] == running
    assert pts[-1]["best"] == pytest.approx(study.best_value)
    # completed trials trained 6 epochs each; failed ones crashed before the first epoch
    assert pts[-1]["cumulative_epochs"] == 6 * len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert all(b["elapsed_seconds"] >= a["elapsed_seconds"] for a, b in zip(pts, pts[1:]))
    assert all(b["cumulative_seconds"] > a["cumulative_seconds"] for a, b in zip(pts, pts[1:]))
    assert {p["state"] for p in pts} == {"COMPLETE", "FAIL"}


def test_best_so_far_minimize():
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 0.5) ** 2, n_trials=15)
    bests = [p["best"] for p in A.best_so_far(study)["points"]]
    assert bests == list(np.minimum.accumulate([t.value for t in study.trials]))


def test_pareto_front_is_non_dominated(multi_work):
    study = optuna.load_study(study_name="multi", storage=f"sqlite:///{multi_work / 'study.db'}")
    front = A.pareto_front(study)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert front and {p["trial"] for p in front} == {t.number for t in study.best_trials}

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    front_vals = [p["values"] for p in front]
    for p in front:
        assert not any(dominates(t.values, p["values"]) for t in done)
        assert p["params"] and p["val_dice"] is not None
    for t in done:
        if t.number not in {p["trial"] for p in front}:
            assert any(dominates(v, t.values) for v in front_vals)
    assert front_vals == sorted(front_vals)
    single = optuna.create_study()
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert A.pareto_front(single) == []


def test_summarize_is_strict_json(single_work, multi_work):
    for work, name in ((single_work, "single"), (multi_work, "multi")):
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{work / 'study.db'}")
        s = A.summarize(study, work)
        json.dumps(s, allow_nan=False)
        for key in ("counts", "best", "kendall_tau", "anova", "importance", "best_so_far", "pareto_front",
                    "proxy_vs_full", "total_epochs", "total_trial_seconds", "missing"):
            assert key in s
        assert s["counts"]["COMPLETE"] + s["counts"]["FAIL"] == len(study.trials)
        assert s["space"] == study.user_attrs["space"]
    single = A.summarize(optuna.load_study(study_name="single", storage=f"sqlite:///{single_work / 'study.db'}"))
    assert single["best"]["number"] == optuna.load_study(
        study_name="single", storage=f"sqlite:///{single_work / 'study.db'}").best_trial.number
    assert single["counts"]["FAIL"] == 3 and all("simulated crash" in f["error"] for f in single["failures"])
    multi = A.summarize(optuna.load_study(study_name="multi", storage=f"sqlite:///{multi_work / 'study.db'}"))
    assert multi["best"]["number"] in {p["trial"] for p in multi["pareto_front"]}
    assert multi["kendall_tau"], "multi-objective trials carry their curve in the history user attribute"
