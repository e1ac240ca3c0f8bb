"""What a finished (or running) search tells us: plain-data analyses of an Optuna study.

Every function takes an ``optuna.Study`` (any storage) and returns plain, JSON-serialisable Python data, so
the HTML report, the Slicer module and the browser UI can all show the same numbers.

* :func:`kendall_tau_over_epochs` — does the ranking after *e* epochs predict the final ranking?  (paper b §3.4.2,
  the prerequisite of BOHB/Hyperband; z-score of its Eq. 3.1)
* :func:`anova_one_at_a_time` — which hyper-parameter changes the Dice? (paper b §3.3.2, one-way ANOVA +
  Bonferroni)
* :func:`importance` — Optuna's parameter importance (fANOVA by default)
* :func:`proxy_vs_full` — do proxy-fidelity Dice scores predict the full-fidelity ones? (paper a)
* :func:`best_so_far` — convergence against wall-clock and against epochs spent
* :func:`pareto_front` — the non-dominated trials of a multi-objective study
* :func:`summarize` — all of the above plus counts, timings and the best trial
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from AutoSegCore.strategies.penalty import state_counts

__all__ = ["kendall_tau_over_epochs", "tau_z_score", "anova_one_at_a_time", "importance", "proxy_vs_full",
           "best_so_far", "pareto_front", "summarize", "trial_curve", "trial_score", "json_safe"]


# ------------------------------------------------------------------------------------------------ helpers
def json_safe(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python values and NaN/inf into ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _is_multi(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def _maximize(study: optuna.Study) -> bool:
    return (not _is_multi(study)) and study.direction == optuna.study.StudyDirection.MAXIMIZE


def trial_curve(trial: FrozenTrial) -> dict[int, float]:
    """Validation Dice per epoch: the reported intermediate values, else the ``history`` user attribute.

    Multi-objective studies cannot ``trial.report``; there the history (written by the trial) is the curve.
    """
    if trial.intermediate_values:
        return {int(k): float(v) for k, v in sorted(trial.intermediate_values.items())
                if v is not None and math.isfinite(v)}
    out: dict[int, float] = {}
    for rec in trial.user_attrs.get("history") or []:
        if isinstance(rec, dict) and rec.get("val_dice") is not None and rec.get("epoch") is not None:
            out[int(rec["epoch"])] = float(rec["val_dice"])
    return out


def trial_score(study: optuna.Study, trial: FrozenTrial) -> float | None:
    """The quality of one trial on a common "higher is better Dice" scale when possible.

    Single objective: the study's value (validation Dice).  Multi-objective: the ``val_dice`` user attribute
    (the objectives themselves mix error and size), else ``None``.
    """
    if not _is_multi(study) and trial.state == TrialState.COMPLETE and trial.value is not None:
        return float(trial.value)
    v = trial.user_attrs.get("val_dice")
    return float(v) if v is not None else None


def _trial_epochs(trial: FrozenTrial) -> int:
    if trial.user_attrs.get("epochs") is not None:
        return int(trial.user_attrs["epochs"])
    if trial.user_attrs.get("history"):
        return len(trial.user_attrs["history"])
    return len(trial.intermediate_values)


def _trial_seconds(trial: FrozenTrial) -> float:
    if trial.user_attrs.get("seconds") is not None:
        return float(trial.user_attrs["seconds"])
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return 0.0


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


# ----------------------------------------------------------------------------------------- Kendall's tau
def tau_z_score(tau: float, n: int) -> float:
    """Paper b, Eq. 3.1 (= Eq. 4.1): z = 3·τ·√(N·(N−1)) / √(2·(2N+5)).

    The normal approximation of Kendall's τ under "no correlation" (valid for N > 10, per the paper);
    z > 1.96 means the two rankings agree at the 0.05 level.  Paper b's own check: τ = 0.31, N = 50 → z = 3.17.
    """
    return 3.0 * tau * math.sqrt(n * (n - 1)) / math.sqrt(2.0 * (2 * n + 5))


def kendall_tau_over_epochs(study: optuna.Study, *, min_trials: int = 3) -> list[dict]:
    """Per epoch: Kendall's τ between the trials' ranking at that epoch and their final ranking.

    Uses the COMPLETE trials (they ran the full budget, so "final" is comparable); the final value is
    :func:`trial_score`.  τ is ``scipy.stats.kendalltau`` (τ-b, which handles ties); ``z`` is paper b's
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
    """One-way ANOVA per hyper-parameter (``scipy.stats.f_oneway``) with Bonferroni correction (paper b §3.3.2).

    Paper b changed one hyper-parameter at a time from a standard configuration; in a search every trial
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


# ------------------------------------------------------------------------------------- proxy vs full
def proxy_vs_full(final_summary: dict | None) -> dict:
    """Pearson and Spearman correlation of proxy-fidelity vs full-fidelity validation Dice of retrained trials.

    ``final_summary`` is ``DIR/final/summary.json``; each member with both ``proxy_val_dice`` and
    ``full_val_dice`` is a pair.  Correlations need ≥ 3 pairs with some spread, else ``note`` says why.
    """
    members = (final_summary or {}).get("members") or []
    pairs = [(float(m["proxy_val_dice"]), float(m["full_val_dice"]), m.get("trial")) for m in members
             if m.get("proxy_val_dice") is not None and m.get("full_val_dice") is not None]
    out = {"n": len(pairs), "pairs": [{"trial": t, "proxy": p, "full": f} for p, f, t in pairs],
           "pearson_r": None, "pearson_p": None, "spearman_r": None, "spearman_p": None, "note": None}
    if not final_summary:
        out["note"] = "no final training (final/summary.json missing)"
    elif len(pairs) < 3:
        out["note"] = f"needs at least 3 retrained trials with both Dice values (have {len(pairs)})"
    elif len({p for p, _, _ in pairs}) < 2 or len({f for _, f, _ in pairs}) < 2:
        out["note"] = "all proxy or all full Dice values are equal"
    else:
        x, y = [p for p, _, _ in pairs], [f for _, f, _ in pairs]
        pr, sr = stats.pearsonr(x, y), stats.spearmanr(x, y)
        out.update(pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue),
                   spearman_r=float(sr.statistic), spearman_p=float(sr.pvalue))
    return out


# ------------------------------------------------------------------------------------------ best so far
def best_so_far(study: optuna.Study) -> dict:
    """Best value vs wall-clock and vs epochs spent, one point per finished trial in completion order.

    ``elapsed_seconds`` is real wall-clock since the first trial started (parallel trials overlap);
    ``cumulative_seconds`` sums the trials' own durations (compute spent); ``cumulative_epochs`` sums the
    epochs every trial trained, pruned and failed ones included — the budget a proxy or a pruner saves.
    The tracked value is the study's objective (single) or the validation Dice (multi-objective).
    """
    finished = [t for t in study.get_trials(deepcopy=False)
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    t0 = min(starts) if starts else None
    finished.sort(key=lambda t: (t.datetime_complete or t.datetime_start or t0, t.number))
    maximize = _maximize(study) or _is_multi(study)
    best, cum_s, cum_e, points = None, 0.0, 0, []
    for t in finished:
        value = trial_score(study, t) if t.state == TrialState.COMPLETE else None
        if value is not None and (best is None or (value > best if maximize else value < best)):
            best = value
        cum_s += _trial_seconds(t)
        cum_e += _trial_epochs(t)
        end = t.datetime_complete or t.datetime_start
        points.append({"trial": t.number, "state": t.state.name, "value": value, "best": best,
                       "seconds": _trial_seconds(t), "epochs": _trial_epochs(t),
                       "elapsed_seconds": (end - t0).total_seconds() if (end and t0) else cum_s,
                       "cumulative_seconds": cum_s, "cumulative_epochs": cum_e})
    return {"maximize": maximize, "metric": "val_dice" if _is_multi(study) else "objective", "points": points}


# ----------------------------------------------------------------------------------------------- Pareto
def pareto_front(study: optuna.Study) -> list[dict]:
    """The non-dominated COMPLETE trials of a multi-objective study (``study.best_trials``), sorted by the
    first objective; ``[]`` for single-objective studies."""
    if not _is_multi(study):
        return []
    front = sorted(study.best_trials, key=lambda t: tuple(t.values))
    return [{"trial": t.number, "values": [float(v) for v in t.values], "params": dict(t.params),
             "val_dice": t.user_attrs.get("val_dice"), "num_params": t.user_attrs.get("num_params")}
            for t in front]


# ----------------------------------------------------------------------------------------------- summary
def _best_trial(study: optuna.Study) -> dict | None:
    done = _completed(study)
    if not done:
        return None
    if _is_multi(study):
        scored = [t for t in done if trial_score(study, t) is not None]
        if not scored:
            return None
        front = {x.number for x in study.best_trials}
        on_front = [x for x in scored if x.number in front]
        t = max(on_front or scored, key=lambda x: trial_score(study, x))
        how = "highest validation Dice on the Pareto front" if on_front else "highest validation Dice"
    else:
        t, how = study.best_trial, "best objective"
    ua = t.user_attrs
    return json_safe({"number": t.number, "chosen_by": how, "value": t.value if not _is_multi(study) else None,
                      "values": list(t.values), "params": dict(t.params), "val_dice": ua.get("val_dice"),
                      "val_dice_per_class": ua.get("val_dice_per_class"), "num_params": ua.get("num_params"),
                      "seconds": ua.get("seconds"), "epochs": _trial_epochs(t), "fidelity": ua.get("fidelity"),
                      "config": ua.get("full_config") or ua.get("config")})


def _read_final(work_dir: Path | None) -> dict | None:
    import json

    if work_dir is None:
        return None
    path = Path(work_dir) / "final" / "summary.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def summarize(study: optuna.Study, work_dir: str | Path | None = None) -> dict:
    """Everything above in one JSON-serialisable dict (what ``summary.json`` of the report holds).

    Keys: study, directions, space/strategy/proxy fidelity (study user attributes), counts per state (and
    REQUEUED: the FAILs that were trials stopped and queued again),
    total epochs / trial seconds / elapsed wall-clock, best trial, kendall_tau, anova, importance, best_so_far,
    pareto_front, final (``DIR/final/summary.json`` when present), proxy_vs_full and ``missing`` (what could not
    be analysed and why).
    """
    trials = study.get_trials(deepcopy=False)
    counts = state_counts(trials)
    convergence = best_so_far(study)
    final = _read_final(Path(work_dir) if work_dir else None)
    attrs = study.user_attrs
    missing = []
    summary: dict[str, Any] = {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "space": attrs.get("space"), "strategy": attrs.get("strategy"),
        "proxy_data": attrs.get("proxy_data"), "proxy_net": attrs.get("proxy_net"),
        "counts": counts,
        "n_trials": len(trials),
        "total_epochs": sum(_trial_epochs(t) for t in trials),
        "total_trial_seconds": sum(_trial_seconds(t) for t in trials if t.state != TrialState.RUNNING),
        "elapsed_seconds": convergence["points"][-1]["elapsed_seconds"] if convergence["points"] else 0.0,
        "best": _best_trial(study),
        "kendall_tau": kendall_tau_over_epochs(study),
        "anova": anova_one_at_a_time(study),
        "importance": importance(study),
        "best_so_far": convergence,
        "pareto_front": pareto_front(study),
        "final": final,
        "proxy_vs_full": proxy_vs_full(final),
        "failures": [{"trial": t.number, "error": t.user_attrs.get("error")} for t in trials
                     if t.state == TrialState.FAIL],
    }
    if not counts["COMPLETE"]:
        missing.append("no completed trial yet")
    if not summary["kendall_tau"]:
        missing.append("Kendall's τ: needs ≥ 3 completed trials with per-epoch validation Dice")
    if not summary["importance"]["importances"]:
        missing.append(f"importance: {summary['importance']['note']}")
    if final is None:
        missing.append("final training: final/summary.json not found (search run without final training?)")
    summary["missing"] = missing
    return json_safe(summary)
