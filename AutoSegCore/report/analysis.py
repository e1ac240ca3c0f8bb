"""What a finished (or running) search tells us: plain-data analyses of an Optuna study.

Every function takes an ``optuna.Study`` (any storage) and returns plain, JSON-serialisable Python data, so
the HTML report, the Slicer module and the browser UI can all show the same numbers.

* :func:`kendall_tau_over_epochs` — does the ranking after *e* epochs predict the final ranking?  (the BOHB thesis §3.4.2,
  the prerequisite of BOHB/Hyperband; z-score of its Eq. 3.1)
* :func:`anova_one_at_a_time` — which hyper-parameter changes the Dice? (the BOHB thesis §3.3.2, one-way ANOVA +
  Bonferroni)
* :func:`importance` — Optuna's parameter importance (fANOVA by default)
* :func:`proxy_vs_full` — do proxy-fidelity Dice scores predict the full-fidelity ones? (the proxy paper)
* :func:`best_so_far` — convergence against wall-clock and against epochs spent
* :func:`pareto_front` — the non-dominated trials of a multi-objective study
* :func:`summarize` — all of the above plus counts, timings and the best trial
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from scipy import stats

from AutoSegCore.report.statistics import (FEW_TRIALS, anova_one_at_a_time, importance,  # noqa: F401
                                           kendall_tau_over_epochs, tau_z_score)
from AutoSegCore.report.trials import (_completed, _is_multi, _maximize, _trial_epochs,  # noqa: F401
                                      _trial_seconds, json_safe, trial_curve, trial_score)
from AutoSegCore.search.summary import PLANNED_ATTR
from AutoSegCore.strategies.penalty import state_counts

__all__ = ["kendall_tau_over_epochs", "tau_z_score", "anova_one_at_a_time", "importance", "proxy_vs_full",
           "best_so_far", "pareto_front", "summarize", "trial_curve", "trial_score", "json_safe"]


# ---------------------------------------------------------------------------- proxy fidelity vs full
def proxy_vs_full(final_summary: dict | None) -> dict:
    """Pearson and Spearman correlation of proxy-fidelity vs full-fidelity validation Dice of retrained trials.

    ``final_summary`` is ``DIR/final/final.json``; each member with both ``proxy_val_dice`` and
    ``full_val_dice`` is a pair.  Correlations need ≥ 3 pairs with some spread, else ``note`` says why.
    """
    members = (final_summary or {}).get("members") or []
    pairs = [(float(m["proxy_val_dice"]), float(m["full_val_dice"]), m.get("trial")) for m in members
             if m.get("proxy_val_dice") is not None and m.get("full_val_dice") is not None]
    out = {"n": len(pairs), "pairs": [{"trial": t, "proxy": p, "full": f} for p, f, t in pairs],
           "pearson_r": None, "pearson_p": None, "spearman_r": None, "spearman_p": None, "note": None}
    if not final_summary:
        out["note"] = "no final training (final/final.json missing)"
    elif len(pairs) < 3:
        out["note"] = f"needs at least 3 retrained trials with both Dice values (have {len(pairs)})"
    elif len({p for p, _, _ in pairs}) < 2 or len({f for _, f, _ in pairs}) < 2:
        out["note"] = "all proxy-fidelity or all full-fidelity Dice values are equal"
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
    epochs every trial trained, pruned and failed ones included — the budget proxy data, a proxy network or a pruner saves.
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
    return json_safe({"number": t.number, "planned": bool(ua.get(PLANNED_ATTR)), "chosen_by": how,
                      "value": t.value if not _is_multi(study) else None,
                      "values": list(t.values), "params": dict(t.params), "val_dice": ua.get("val_dice"),
                      "val_dice_per_class": ua.get("val_dice_per_class"), "num_params": ua.get("num_params"),
                      "seconds": ua.get("seconds"), "epochs": _trial_epochs(t), "fidelity": ua.get("fidelity"),
                      "config": ua.get("full_config") or ua.get("config")})


def _read_final(work_dir: Path | None) -> dict | None:
    import json

    if work_dir is None:
        return None
    from AutoSegCore.search.search_dir import SearchDir

    path = SearchDir(work_dir).final_record
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
    pareto_front, final (``DIR/final/final.json`` when present), proxy_vs_full and ``missing`` (what could not
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
        missing.append("final training: final/final.json not found (search run without final training?)")
    summary["missing"] = missing
    return json_safe(summary)
