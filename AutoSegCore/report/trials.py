"""Reading one trial of a study for the report: its learning curve, score, epochs, seconds; JSON-safe values."""
from __future__ import annotations

import math
import optuna
from optuna.trial import FrozenTrial, TrialState

from AutoSegCore.utils.io import json_safe  # noqa: F401  (report.analysis re-exports it)


# ------------------------------------------------------------------------------------------------ helpers
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
