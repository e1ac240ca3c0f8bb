"""Controlled random search with local mutation (CRS2-LM, Kaelo & Ali 2006) as an Optuna sampler — SegNAS3D §2.3.

Written by hand because NLopt's GN_CRS2_LM owns its loop (it calls f(x) itself) and cannot run as ask/tell
across processes; this follows NLopt's ``crs.c`` step for step so the two can be compared (bench/strategies.py).

- The box is the unit-cube relaxation of the search space; integers/categoricals are ``floor``-ed (encoding.py).
- Population: 10·(n+1) points.  CRS replaces the worst point whenever a trial beats it, so the population is
  always the N best points evaluated so far — it is rebuilt from the study's trials (shared by all workers).
- Trial point: reflect a random population point through the centroid of the best point and n−1 other random
  points (clipped to the box); if that fails to beat the worst point, the next trial is one local mutation
  x̃_i = (1+w_i)·best_i − w_i·x_i, w_i ~ U(0,1); if that fails too, a fresh reflection (NLopt: NUM_MUTATION = 1).
- Failed / illegal trials get the worst value (penalty.py: 10 for −ln Dice).
- Cache (SegNAS3D): a candidate whose floor(x) was already evaluated is never run again.  ``_sample`` keeps
  generating candidates; a cached one is "re-told" from the cache inside the algorithm — it joins the
  population (in this worker's memory) if it beats the worst point, else triggers the mutation step, exactly
  as a real evaluation would — and the loop goes on until a candidate maps to an unseen discretised point.
  Points another worker is running right now are claimed through a trial system attribute and skipped.
- ``max_iterations``: after that many finished trials the sampler stops ``study.optimize`` (SegNAS3D: 300).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from AutoSegCore.strategies.base import UnitCubeSampler
from AutoSegCore.strategies.encoding import UnitCube
from AutoSegCore.strategies.penalty import was_requeued

_log = logging.getLogger(__name__)
X_ATTR, KEY_ATTR = "crs:x", "crs:key"


class CRSSampler(UnitCubeSampler):
    """CRS2-LM on the floor-relaxed unit cube with an evaluation cache (single objective)."""

    def __init__(self, *, seed: int | None = None, population_size: int | None = None,
                 max_iterations: int | None = None, max_attempts: int = 2000) -> None:
        super().__init__(seed=seed)
        self.population_size = population_size
        self.max_iterations = max_iterations
        self.max_attempts = max_attempts
        self._virtual: dict[str, list[tuple[np.ndarray, float, str]]] = {}   # cache re-tells, per space
        self._pending: dict[str, Any] | None = None                          # last proposal of this worker
        self._memo: dict[tuple, dict[int, Any]] = {}

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial):
        """The intersection space of finished trials; before any trial finished, the space of the latest trial
        that already has all its parameters (e.g. another worker's running first trial), so that even the
        second trial of a study goes through the de-duplicating relative sampler."""
        space = super().infer_relative_search_space(study, trial)
        if space:
            return space
        for t in reversed(study._get_trials(deepcopy=False, use_cache=False)):
            if t.distributions and t.number != trial.number:
                return {n: d for n, d in sorted(t.distributions.items()) if not d.single()}
        return {}

    def _n_population(self, cube: UnitCube) -> int:
        return self.population_size or 10 * (cube.n_dims + 1)

    # ------------------------------------------------------------------ state from the study
    def _evaluated(self, study: Study, cube: UnitCube):
        """(x, f, key, number) of every finished trial in this space, and the cache floor(x) -> f.

        Encodings are memoised per trial number (trials do not change once finished), so a sample costs
        O(#trials) dictionary work instead of re-encoding every trial."""
        memo = self._memo.setdefault((cube.signature, id(study._storage), study._study_id), {})
        trials = self._finished(study)
        values = self._scalar_values(study, trials)
        points, cache = [], {}
        for t, f in zip(trials, values):
            if t.number not in memo:
                x = _stored_x(t, cube)
                if x is None:
                    x = cube.encode(t.params)
                memo[t.number] = None if x is None else (x, cube.key(cube.decode(x)))
            if memo[t.number] is None:
                continue
            x, key = memo[t.number]
            cache.setdefault(key, f)
            points.append((x, f, key, t.number))
        return points, cache

    def _claimed(self, study: Study, cube: UnitCube, own_id: int, everything: bool = False) -> set[str]:
        """Keys of the points other trials are running (or, with ``everything``, have run)."""
        keys = set()
        states = None if everything else (TrialState.RUNNING, TrialState.WAITING)
        for t in study._get_trials(deepcopy=False, states=states, use_cache=False):
            if t._trial_id == own_id:
                continue
            if KEY_ATTR in t.system_attrs:
                keys.add(t.system_attrs[KEY_ATTR])
            elif t.params and all(n in t.params for n in cube.names):
                x = cube.encode(t.params)
                if x is not None:
                    keys.add(cube.key_of(x))
        return keys

    # ------------------------------------------------------------------ sampling
    def _sample(self, study: Study, trial: FrozenTrial, cube: UnitCube) -> dict[str, Any]:
        # Optimistic claim: write the chosen key on this trial, then re-read the other running trials; if one
        # claims the same key (two workers chose it at once) choose again.  Whichever reads second sees the
        # other's claim, so two trials never run the same discretised point.
        claimed = self._claimed(study, cube, trial._trial_id)
        for _ in range(10):
            x, key = self._search(study, trial, cube, claimed)
            self._set_trial_attr(study, trial, X_ATTR, [float(v) for v in x])
            self._set_trial_attr(study, trial, KEY_ATTR, key)
            # Re-read every other trial, finished ones included: one that held this key may have finished
            # between our first read and now.
            now = self._claimed(study, cube, trial._trial_id, everything=True)
            if key not in now:
                return cube.decode(x)
            claimed |= now
        return cube.decode(x)

    def _search(self, study: Study, trial: FrozenTrial, cube: UnitCube, claimed: set[str]):
        n_pop = self._n_population(cube)
        points, cache = self._evaluated(study, cube)
        virtual = self._virtual.setdefault(cube.signature, [])
        pool = [(x, f) for x, f, _, _ in points] + [(x, f) for x, f, _ in virtual]
        by_number = {num: f for _, f, _, num in points}

        candidate, mutations_left = None, 0
        if len(pool) >= n_pop and self._pending and self._pending["space"] == cube.signature:
            # Outcome of this worker's previous proposal decides between a local mutation and a fresh reflection.
            f_prev = by_number.get(self._pending["number"])
            if f_prev is not None and f_prev >= self._pending["worst"] and self._pending["mutations_left"] > 0:
                best = _population(pool, n_pop)[0][0]
                candidate = self._mutate(best, self._pending["x"])
        for _ in range(self.max_attempts):
            if len(pool) < n_pop:                                   # initial population: uniform random
                candidate, mutations_left = self._rng.uniform(size=cube.n_dims), 0
            elif candidate is None:
                candidate, mutations_left = self._reflect(_population(pool, n_pop)), 1
            key = cube.key_of(candidate)
            if key in claimed:                                      # running elsewhere: not an evaluation
                candidate = None
                continue
            if key not in cache:
                return self._propose(trial, cube, candidate, key, pool, n_pop, mutations_left)
            # Re-tell the cached value: accepted if it beats the worst point, else mutate / new reflection.
            f = cache[key]
            if len(pool) < n_pop:
                candidate = None
                continue
            population = _population(pool, n_pop)
            if f < population[-1][1]:
                virtual.append((candidate.copy(), f, key))
                pool.append((candidate.copy(), f))
                candidate = None
            elif mutations_left > 0:
                candidate, mutations_left = self._mutate(population[0][0], candidate), mutations_left - 1
            else:
                candidate = None
        # The population has collapsed onto evaluated cells: fall back to uniform random unseen points.
        for _ in range(self.max_attempts):
            candidate = self._rng.uniform(size=cube.n_dims)
            key = cube.key_of(candidate)
            if key not in cache and key not in claimed:
                return self._propose(trial, cube, candidate, key, pool, n_pop, 0)
        _log.warning("CRS: no unseen discretised point found (space exhausted?); repeating one")
        return self._propose(trial, cube, candidate, key, pool, n_pop, 0)

    def _propose(self, trial, cube, x, key, pool, n_pop, mutations_left) -> tuple[np.ndarray, str]:
        worst = _population(pool, n_pop)[-1][1] if len(pool) >= n_pop else float("inf")
        self._pending = {"space": cube.signature, "number": trial.number, "x": x.copy(), "worst": worst,
                         "mutations_left": mutations_left}
        return x, key

    def _reflect(self, population: list[tuple[np.ndarray, float]]) -> np.ndarray:
        """NLopt random_trial: 2·centroid(best + n−1 random others) − (one more random point), clipped."""
        n = population[0][0].shape[0]
        others = self._rng.choice(np.arange(1, len(population)), size=n, replace=False)
        reflected = self._rng.randint(n)
        centroid = population[0][0].copy()
        for j, idx in enumerate(others):
            if j != reflected:
                centroid += population[idx][0]
        centroid /= n
        return np.clip(2.0 * centroid - population[others[reflected]][0], 0.0, 1.0)

    def _mutate(self, best: np.ndarray, x: np.ndarray) -> np.ndarray:
        w = self._rng.uniform(size=best.shape[0])
        return np.clip((1.0 + w) * best - w * x, 0.0, 1.0)

    # ------------------------------------------------------------------ stopping
    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values) -> None:
        if self.max_iterations is None:
            return
        if len(self._finished(study)) + 1 >= self.max_iterations:     # +1: this trial is not stored yet
            try:
                study.stop()
            except RuntimeError:            # ask/tell outside optimize(): the caller checks is_exhausted()
                pass

    def is_exhausted(self, study: Study) -> bool:
        """True once ``max_iterations`` trials have finished (for ask/tell loops)."""
        if self.max_iterations is None:
            return False
        finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL),
                                     use_cache=False)
        return sum(not was_requeued(t) for t in finished) >= self.max_iterations


def _population(pool: list[tuple[np.ndarray, float]], n_pop: int) -> list[tuple[np.ndarray, float]]:
    """The N best points (stable: earlier points win ties, as NLopt's tree keeps the older one)."""
    order = sorted(range(len(pool)), key=lambda i: pool[i][1])[:n_pop]
    return [pool[i] for i in order]


def _stored_x(trial: FrozenTrial, cube: UnitCube) -> np.ndarray | None:
    x = trial.system_attrs.get(X_ATTR)
    if x is None or len(x) != cube.n_dims:
        return None
    x = np.asarray(x, float)
    # Only trust the stored point when it still decodes to the trial's parameters (same space).
    try:
        if cube.key(cube.decode(x)) != cube.key(trial.params):
            return None
    except (KeyError, ValueError):
        return None
    return x

