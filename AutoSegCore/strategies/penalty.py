"""The worst-value convention for failed or illegal trials (paper c §2.3).

Paper c minimises f = −ln(Dice) with Dice clipped at 1e−4, so no real segmentation scores worse than
−ln(1e−4) ≈ 9.21; illegal architectures and out-of-memory runs get ⌈9.21⌉ = 10, "worse than having the worst
segmentation".  Strategies that need a number for a failed trial use :func:`failure_value`, which is that
penalty or — for objectives on another scale — the worst value seen so far, whichever is worse.
"""
from __future__ import annotations

import math
from typing import Iterable

from optuna.study import StudyDirection

DICE_FLOOR = 1e-4
STRATEGY_PENALTY = float(math.ceil(-math.log(DICE_FLOOR)))   # 10.0


def dice_objective(dice: float) -> float:
    """Paper c's objective to minimise: −ln(Dice), Dice clipped to [1e−4, 1]."""
    return -math.log(min(max(float(dice), DICE_FLOOR), 1.0))


def _is_minimize(direction: StudyDirection | str) -> bool:
    if isinstance(direction, StudyDirection):
        return direction == StudyDirection.MINIMIZE
    text = str(direction).lower()
    if text not in ("minimize", "maximize"):
        from AutoSegCore.strategies.registry import StrategyError

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
