"""The statistics of a search (the BOHB thesis): Kendall's tau of the rankings over epochs, one-way ANOVA per
hyper-parameter, Optuna's parameter importance."""
from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
from scipy import stats

from AutoSegCore.report.trials import _completed, _is_multi, _maximize, _trial_epochs, trial_curve, trial_score  # noqa: F401


# ----------------------------------------------------------------------------------------- Kendall's tau
def tau_z_score(tau: float, n: int) -> float:
    """The BOHB thesis, Eq. 3.1 (= Eq. 4.1): z = 3·τ·√(N·(N−1)) / √(2·(2N+5)).

    The normal approximation of Kendall's τ under "no correlation" (valid for N > 10, per the paper);
    z > 1.96 means the two rankings agree at the 0.05 level.  The BOHB thesis's own check: τ = 0.31, N = 50 → z = 3.17.
    """
    return 3.0 * tau * math.sqrt(n * (n - 1)) / math.sqrt(2.0 * (2 * n + 5))


def kendall_tau_over_epochs(study: optuna.Study, *, min_trials: int = 3) -> list[dict]:
    """Per epoch: Kendall's τ between the trials' ranking at that epoch and their final ranking.

    Uses the COMPLETE trials (they ran the full budget, so "final" is comparable); the final value is
    :func:`trial_score`.  τ is ``scipy.stats.kendalltau`` (τ-b, which handles ties); ``z`` is the BOHB thesis's
    Eq. 3.1 with its two-sided normal p-value ``p_z``; ``p_scipy`` is SciPy's own p-value.  Epochs at which
    fewer than ``min_trials`` trials have a value (or all values are equal) are left out.
    """
    finals: dict[int, float] = {}
    curves: dict[int, dict[int, float]] = {}
    for t in _completed(study):
        score = trial_score(study, t)
        curve = trial_curve(t)
        if score is not None and curve:
            finals[t.number], curves[t.number] = score, curve
    epochs = sorted({e for c in curves.values() for e in c})
    rows = []
    for epoch in epochs:
        numbers = [n for n in curves if epoch in curves[n]]
        if len(numbers) < max(2, min_trials):
            continue
        at_epoch = [curves[n][epoch] for n in numbers]
        final = [finals[n] for n in numbers]
        if len(set(at_epoch)) < 2 or len(set(final)) < 2:
            continue    # τ is undefined for a constant ranking
        res = stats.kendalltau(at_epoch, final)
        tau = float(res.statistic)
        if not math.isfinite(tau):
            continue
        n = len(numbers)
        z = tau_z_score(tau, n)
        p_z = float(2.0 * stats.norm.sf(abs(z)))
        rows.append({"epoch": epoch, "n": n, "tau": tau, "z": z, "p_z": p_z, "p_scipy": float(res.pvalue),
                     "significant": bool(z > 1.96), "approximation_ok": n > 10})
    return rows


# --------------------------------------------------------------------------------------------- ANOVA
MAX_INT_GROUPS = 8


def _groups_for(values: list, *, bins: int) -> tuple[str, list[str], list[str]]:
    """``(kind, group label of each value, group labels in order)`` for one parameter's values.

    Categories are their own groups, and so are integers with at most ``MAX_INT_GROUPS`` distinct values
    (e.g. depth 2..6) and numbers with at most ``bins`` distinct values; other numbers are cut at their
    quantiles into ``bins`` groups of roughly equal size (edges de-duplicated, so heavy ties give fewer
    groups).  Quantile bins keep every group populated whatever the sampler did.
    """
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)
    if not numeric:
        labels = [str(v) for v in values]
        return "categorical", labels, sorted(set(labels))
    distinct = sorted({float(v) for v in values})
    integers = all(isinstance(v, (int, np.integer)) for v in values)
    if len(distinct) <= bins or (integers and len(distinct) <= MAX_INT_GROUPS):
        return "numeric", [f"{float(v):g}" for v in values], [f"{v:g}" for v in distinct]
    arr = np.asarray(values, dtype=float)
    edges = np.unique(np.quantile(arr, np.linspace(0.0, 1.0, bins + 1)))
    names = [f"[{edges[i]:.4g}, {edges[i + 1]:.4g}{']' if i == len(edges) - 2 else ')'}" for i in range(len(edges) - 1)]
    idx = np.clip(np.searchsorted(edges, arr, side="right") - 1, 0, len(edges) - 2)
    return "numeric", [names[i] for i in idx], names


def anova_one_at_a_time(study: optuna.Study, *, bins: int = 4, samples_per_trial: int = 1,
                        alpha: float = 0.05) -> list[dict]:
    """One-way ANOVA per hyper-parameter (``scipy.stats.f_oneway``) with Bonferroni correction (the BOHB thesis §3.3.2).

    The BOHB thesis changed one hyper-parameter at a time from a standard configuration; in a search every trial
    varies several, so here each parameter is tested marginally: the COMPLETE trials are grouped by that
    parameter's value (categories as they are, numbers in ``bins`` quantile groups — see ``_groups_for``) and
    the groups' Dice (:func:`trial_score`) compared.  ``samples_per_trial=5`` reproduces the paper's use of
    the last 5 validation scores of each run as samples.  Bonferroni: ``p × m`` (capped at 1) over the ``m``
    parameters that could be tested; ``significant`` means corrected p < ``alpha``.
    """
    samples: list[tuple[dict, list[float]]] = []
    for t in _completed(study):
        score = trial_score(study, t)
        if score is None:
            continue
        if samples_per_trial > 1:
            curve = list(trial_curve(t).values())[-samples_per_trial:]
            vals = curve if curve else [score]
        else:
            vals = [score]
        samples.append((t.params, vals))
    names = sorted({k for params, _ in samples for k in params})
    rows = []
    for name in names:
        have = [(p[name], v) for p, v in samples if name in p]
        kind, labels, order = _groups_for([x for x, _ in have], bins=bins) if have else ("categorical", [], [])
        groups: dict[str, list[float]] = {k: [] for k in order}
        for label, (_, vals) in zip(labels, have):
            groups[label].extend(vals)
        groups = {k: g for k, g in groups.items() if g}
        row = {"param": name, "kind": kind, "n": sum(len(g) for g in groups.values()),
               "groups": [{"label": k, "n": len(g), "mean": float(np.mean(g))} for k, g in groups.items()],
               "F": None, "p": None, "p_bonferroni": None, "significant": False, "note": None}
        total = sum(len(g) for g in groups.values())
        if len(groups) < 2:
            row["note"] = "only one value was tried"
        elif total <= len(groups):
            row["note"] = "too few trials per value"
        else:
            with warnings.catch_warnings():     # degenerate groups → NaN, handled just below
                warnings.simplefilter("ignore")
                res = stats.f_oneway(*groups.values())
            if math.isfinite(float(res.statistic)):
                row["F"], row["p"] = float(res.statistic), float(res.pvalue)
            else:
                row["note"] = "no variance within the groups"
        rows.append(row)
    m = sum(r["p"] is not None for r in rows)
    for r in rows:
        if r["p"] is not None:
            r["p_bonferroni"] = min(1.0, r["p"] * m)
            r["significant"] = bool(r["p_bonferroni"] < alpha)
    rows.sort(key=lambda r: (r["p"] is None, r["p"] if r["p"] is not None else 1.0))
    return rows


# ---------------------------------------------------------------------------------------- importance
FEW_TRIALS = 10


def importance(study: optuna.Study, *, evaluator=None) -> dict:
    """``optuna.importance.get_param_importances`` (fANOVA unless ``evaluator`` is given), never raising.

    Returns ``{"method", "importances": {param: share}, "note"}``; with fewer than 2 completed trials, no
    parameter that varied, or an evaluator error, ``importances`` is empty and ``note`` says why.  Multi-objective
    studies are scored on :func:`trial_score` (validation Dice) when the trials carry it.
    """
    if evaluator is None:
        # Optuna 5's own default is PED-ANOVA; fANOVA (seeded, so reports are reproducible) is what the
        # AutoML literature reports and needs no "lower is better" convention.
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    method = type(evaluator).__name__
    done = _completed(study)
    out = {"method": method, "importances": {}, "note": None}
    if len(done) < 2:
        out["note"] = f"needs at least 2 completed trials (have {len(done)})"
        return out
    varying = {k for k in {k for t in done for k in t.params} if len({repr(t.params.get(k)) for t in done}) > 1}
    if not varying:
        out["note"] = "no parameter took more than one value"
        return out
    target = None
    if _is_multi(study):
        if all(t.user_attrs.get("val_dice") is not None for t in done):
            target = lambda t: float(t.user_attrs["val_dice"])  # noqa: E731
            out["target"] = "val_dice"
        else:
            target = lambda t: float(t.values[0])  # noqa: E731
            out["target"] = "objective 0"
    params = sorted(varying & set.intersection(*(set(t.params) for t in done)))
    if not params:
        out["note"] = "no varying parameter is present in every completed trial"
        return out
    try:
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator, params=params, target=target)
        out["importances"] = {k: float(v) for k, v in imp.items()}
        if len(done) < FEW_TRIALS:
            out["note"] = f"only {len(done)} completed trials: the importances are a rough guide"
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        out["note"] = f"importance could not be computed: {exc}"
    return out
