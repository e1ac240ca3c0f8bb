"""What a study holds, for people and for the command's exit: counts, best trial, last real failure."""
from __future__ import annotations

import optuna

from AutoSegCore.strategies.penalty import FINISHED, state_counts, was_requeued

PLANNED_ATTR = "planned"        # user attribute of the trial that trains the planned recipe


def describe_summary(summary: dict) -> str:
    """One line for people: "8 complete, 37 pruned, 2 stopped and re-queued after 2244 s; best trial 26 (0.8359)"."""
    counts = dict(summary["counts"])
    requeued = counts.pop("REQUEUED", 0)
    counts["FAIL"] = counts.get("FAIL", 0) - requeued
    names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
    parts = [f"{counts[k]} {name}" for k, name in names.items() if counts.get(k)]
    parts += [f"{requeued} stopped and re-queued"] if requeued else []
    if counts.get("WAITING"):
        parts.append(f"{counts['WAITING']} queued")
    text = f"{', '.join(parts) or 'no trials'} after {summary['seconds']:.0f} s"
    best = summary.get("best")
    if best:
        text += f"; best trial {best['number']} ({best['value']:.4f})"
    return text


def counted(trials) -> int:
    """Trials that use up ``--trials``: finished or running; one failed as "re-queued" is replaced by its re-run."""
    return sum(t.state == optuna.trial.TrialState.RUNNING or (t.state in FINISHED and not was_requeued(t))
               for t in trials)


def study_summary(p, seconds: float) -> dict:
    """Counts per state, the best trial (single objective) and the last real failure of the prepared study ``p``
    (``prepare.PreparedStudy``) after ``seconds`` of running."""
    trials = p.study.get_trials(deepcopy=False)
    counts = state_counts(trials)
    best = None
    if len(p.directions) == 1:
        try:
            bt = p.study.best_trial
            best = {"number": bt.number, "planned": bool(bt.user_attrs.get(PLANNED_ATTR)), "value": bt.value,
                    "params": bt.params, "val_dice_per_class": bt.user_attrs.get("val_dice_per_class"),
                    "folder": str(p.folder.trial(bt.number))}
        except ValueError:
            best = None
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL and not was_requeued(t)]
    last_error = ({"trial": failed[-1].number, "error": failed[-1].user_attrs.get("error", "unknown"),
                   "folder": str(p.folder.trial(failed[-1].number))} if failed else None)
    return {"study": p.settings.study_name, "out": str(p.folder.root), "counts": counts, "best": best,
            "seconds": seconds, "last_error": last_error}
