"""The worst-value convention for failed or illegal trials (SegNAS3D §2.3).

SegNAS3D minimises f = −ln(Dice) with Dice clipped at 1e−4, so no real segmentation scores worse than
−ln(1e−4) ≈ 9.21; illegal architectures and out-of-memory runs get ⌈9.21⌉ = 10, "worse than having the worst
segmentation".  Strategies that need a number for a failed trial use :func:`failure_value`, which is that
penalty or — for objectives on another scale — the worst value seen so far, whichever is worse.

Not every FAIL is a verdict on its config: a trial the runner stopped (the user's Ctrl-C, a dead worker, the
search's time limit) is recorded as FAIL and queued again with the same parameters (:func:`was_requeued`); no
strategy may learn a penalty from it.
"""
from __future__ import annotations

import math
from typing import Iterable

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

DICE_FLOOR = 1e-4
STRATEGY_PENALTY = float(math.ceil(-math.log(DICE_FLOOR)))   # 10.0
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)     # the states a trial ends in
REQUEUED = "re-queued"      # how the runner ends the error text of a trial it stopped and queued again (for people)
REQUEUED_ATTR = "requeued"  # the trial attribute (True) that says so (for code)


def was_requeued(trial: FrozenTrial) -> bool:
    """A FAIL the runner recorded for a trial it stopped and queued again, which a re-run continues from its
    last checkpoint: not the config's fault, so it carries no penalty and does not count as a finished trial.
    Read from the ``requeued`` attribute; studies written before it existed only end their error text so."""
    if trial.state != TrialState.FAIL:
        return False
    if REQUEUED_ATTR in trial.user_attrs:
        return trial.user_attrs[REQUEUED_ATTR] is True
    return str(trial.user_attrs.get("error", "")).endswith(REQUEUED)


def state_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials per state name, plus REQUEUED: how many of the FAILs were stopped and queued again."""
    trials = list(trials)
    counts = {st.name: sum(t.state == st for t in trials) for st in TrialState}
    counts["REQUEUED"] = sum(was_requeued(t) for t in trials)
    return counts


def dice_objective(dice: float) -> float:
    """SegNAS3D's objective to minimise: −ln(Dice), Dice clipped to [1e−4, 1]."""
    return -math.log(min(max(float(dice), DICE_FLOOR), 1.0))


def _is_minimize(direction: StudyDirection | str) -> bool:
    if isinstance(direction, StudyDirection):
        return direction == StudyDirection.MINIMIZE
    text = str(direction).lower()
    if text not in ("minimize", "maximize"):
        from AutoSegCore.errors import StrategyError

        raise StrategyError(f"direction {direction!r} is not 'minimize' or 'maximize'",
                            "pass 'minimize' or 'maximize' (or an optuna StudyDirection)")
    return text == "minimize"


def penalty_value(direction: StudyDirection | str = "minimize") -> float:
    """The value a failed/illegal trial is given: +10 when minimising −ln(Dice), −10 when maximising ln(Dice)."""
    return STRATEGY_PENALTY if _is_minimize(direction) else -STRATEGY_PENALTY


def failure_value(observed: Iterable[float]) -> float:
    """Value for a failed trial given observed values in the *minimisation* sense: max(10, worst observed)."""
    worst = penalty_value("minimize")
    for v in observed:
        if v is not None and math.isfinite(v):
            worst = max(worst, float(v))
    return worst
