"""What our samplers share: the unit-cube relaxation of the intersection search space, random sampling of
parameters outside it, one seeded random stream, a lock for threads, and reading finished trials as
minimisation values (failed trials get the worst value, see penalty.py; trials the runner stopped and
re-queued are not read at all)."""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from AutoSegCore.strategies.encoding import UnitCube, decode_value
from AutoSegCore.strategies.penalty import FINISHED, failure_value, was_requeued



class UnitCubeSampler(BaseSampler):
    """Base for relative samplers on [0, 1]^n.  Subclasses implement ``_sample(study, trial, cube)``."""

    multi_objective = False     # single-objective-only samplers raise ValueError on multi-objective studies

    def __init__(self, *, seed: int | None = None) -> None:
        self._seed = seed
        self._rng = np.random.RandomState(seed)
        self._lock = threading.RLock()
        self._intersection = IntersectionSearchSpace(include_pruned=True)

    # ---------------------------------------------------------------- BaseSampler API
    def reseed_rng(self) -> None:
        with self._lock:
            self._rng.seed()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._check_directions(study)
        with self._lock:
            space = self._intersection.calculate(study)
        return {name: dist for name, dist in space.items() if not dist.single()}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self._check_directions(study)
        if not search_space:
            return {}
        with self._lock:
            return self._sample(study, trial, UnitCube(search_space))

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        self._check_directions(study)
        with self._lock:
            return decode_value(param_distribution, float(self._rng.uniform()))

    # ---------------------------------------------------------------- helpers
    def _sample(self, study: Study, trial: FrozenTrial, cube: UnitCube) -> dict[str, Any]:
        raise NotImplementedError

    def _check_directions(self, study: Study) -> None:
        if not self.multi_objective and len(study.directions) > 1:
            raise ValueError(f"{type(self).__name__} optimises one objective, the study has "
                             f"{len(study.directions)}; use the 'moead' or 'nsga2' strategy for several objectives")

    @staticmethod
    def _signs(study: Study) -> np.ndarray:
        return np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions])

    @staticmethod
    def _finished(study: Study) -> list[FrozenTrial]:
        return [t for t in study._get_trials(deepcopy=False, states=FINISHED, use_cache=True) if not was_requeued(t)]

    def _scalar_values(self, study: Study, trials: list[FrozenTrial]) -> list[float]:
        """One minimisation value per trial: value, else last intermediate value (pruned), else failure value."""
        sign = self._signs(study)[0]
        raw: list[float | None] = []
        for t in trials:
            v = None
            if t.state == TrialState.COMPLETE and t.values is not None:
                v = t.values[0]
            elif t.state == TrialState.PRUNED and t.intermediate_values:
                v = t.intermediate_values[max(t.intermediate_values)]
            raw.append(sign * v if v is not None and math.isfinite(v) else None)
        worst = failure_value(r for r in raw if r is not None)
        return [worst if r is None else r for r in raw]

    @staticmethod
    def _set_trial_attr(study: Study, trial: FrozenTrial, key: str, value: Any) -> None:
        study._storage.set_trial_system_attr(trial._trial_id, key, value)

