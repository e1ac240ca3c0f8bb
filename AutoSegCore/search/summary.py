"""What a study holds, for people and for the command's exit: counts, best trial, last real failure."""
from __future__ import annotations

import optuna

from AutoSegCore.strategies.penalty import state_counts, was_requeued

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


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


class StudySummary:
    """``study_summary`` of the runner (a mixin of :class:`~AutoSegCore.search.runner.SearchRunner`)."""

    def study_summary(self, seconds: float) -> dict:
        trials = self.study.get_trials(deepcopy=False)
        counts = state_counts(trials)
        best = None
        if len(self.directions) == 1:
            try:
                bt = self.study.best_trial
                best = {"number": bt.number, "value": bt.value, "params": bt.params,
                        "folder": str(self.work / "trials" / f"{bt.number:04d}")}
            except ValueError:
                best = None
        failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL and not was_requeued(t)]
        last_error = ({"trial": failed[-1].number, "error": failed[-1].user_attrs.get("error", "unknown"),
                       "folder": str(self.work / "trials" / f"{failed[-1].number:04d}")} if failed else None)
        return {"study": self.settings.study_name, "out": str(self.work), "counts": counts, "best": best,
                "seconds": seconds, "last_error": last_error}
