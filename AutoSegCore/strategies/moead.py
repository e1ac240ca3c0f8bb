"""MOEA/D with penalty-based boundary intersection and a random-forest surrogate (EMONAS-Net, SaMEA; MOEA/D-DE of
Li & Zhang 2009 for δ and n_r).

- N weight vectors λ (pymoo ``get_reference_directions``; Das–Dennis for 2 objectives, Riesz energy
  otherwise), each the subproblem "minimise PBI_θ(F(x) | λ, z*)" (pymoo ``PBI``), z* the ideal point so far.
- Neighbourhood B(i): the T subproblems with the closest weights.  Trial number t works on subproblem
  i = t mod N.  The first N trials are uniform random (initial population).
- Offspring: with probability δ the parents come from B(i), otherwise from the whole population; DE/rand/1
  (F, CR) from x_i, then polynomial mutation (η_m = 20, p_m = 1/n), clipped to the unit cube.
- Surrogate (EMONAS-Net): once ``surrogate_after`` trials are evaluated, ``n_candidates`` offspring are generated
  and one RandomForestRegressor per objective (fitted on every evaluated trial, refitted after every
  ``refit_every`` new evaluations to bound the overhead) predicts their objectives; only
  the candidate with the best predicted PBI for subproblem i is evaluated.
- Update: an evaluated child replaces at most n_r solutions of the pool it was bred from whose PBI it is no
  worse than (z* updated first).
- State is replayed from the study's trials in trial-number order (each trial records its subproblem, pool and
  point as system attributes), so every worker on a storage reconstructs the same population; failed or
  pruned trials are simply not part of it.  Works for one objective too (all weights = [1]).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from pymoo.decomposition.pbi import PBI
from pymoo.util.ref_dirs import get_reference_directions
from sklearn.ensemble import RandomForestRegressor

from AutoSegCore.strategies.base import UnitCubeSampler
from AutoSegCore.strategies.encoding import UnitCube

TAG_ATTR = "moead:tag"


def reference_directions(n_objectives: int, n_points: int, seed: int = 1) -> np.ndarray:
    if n_objectives == 1:
        return np.ones((n_points, 1))
    if n_objectives == 2:
        return get_reference_directions("das-dennis", 2, n_partitions=n_points - 1)
    return get_reference_directions("energy", n_objectives, n_points=n_points, seed=seed)


class MOEADSampler(UnitCubeSampler):
    """MOEA/D-PBI with random-forest pre-screening of offspring (any number of objectives)."""

    multi_objective = True

    def __init__(self, *, seed: int | None = None, population_size: int = 20, n_neighbors: int | None = None,
                 delta: float = 0.9, n_replace: int = 2, theta: float = 5.0, surrogate: bool = True,
                 n_candidates: int = 30, surrogate_after: int | None = None, n_trees: int = 30, refit_every: int = 5,
                 de_f: float = 0.5, de_cr: float = 1.0, eta_mutation: float = 20.0) -> None:
        super().__init__(seed=seed)
        from AutoSegCore.errors import StrategyError

        if population_size < 2:
            raise StrategyError(f"moead population_size={population_size} is too small", "use ≥ 2 (e.g. 20)")
        self.population_size = population_size
        self.n_neighbors = n_neighbors or max(2, population_size // 5)
        self.delta, self.n_replace, self.theta = delta, n_replace, theta
        self.surrogate, self.n_candidates = surrogate, n_candidates
        self.surrogate_after = surrogate_after if surrogate_after is not None else population_size
        self.refit_every = max(1, refit_every)
        self.n_trees, self.de_f, self.de_cr, self.eta_mutation = n_trees, de_f, de_cr, eta_mutation
        self._decomp = PBI(theta=theta)
        self._state: dict[str, Any] | None = None
        self._forest: tuple[int, list[RandomForestRegressor]] | None = None

    # ------------------------------------------------------------------ state replay
    def _reset(self, cube: UnitCube, n_obj: int) -> None:
        w = reference_directions(n_obj, self.population_size)
        dist = ((w[:, None, :] - w[None, :, :]) ** 2).sum(-1)
        self._state = {"space": cube.signature, "study": None, "weights": w, "neigh": np.argsort(dist, axis=1, kind="stable")[:, :self.n_neighbors],
                       "pop_x": [None] * len(w), "pop_f": [None] * len(w), "ideal": np.full(n_obj, np.inf),
                       "done": set(), "X": [], "F": []}
        self._forest = None

    def _replay(self, study: Study, cube: UnitCube) -> None:
        if self._state is None or self._state["space"] != cube.signature or self._state["study"] != id(study._storage) + study._study_id:
            self._reset(cube, len(study.directions))
            self._state["study"] = id(study._storage) + study._study_id
        st, signs = self._state, self._signs(study)
        n = len(st["weights"])
        for t in sorted(self._finished(study), key=lambda t: t.number):
            if t.number in st["done"]:
                continue
            st["done"].add(t.number)
            if t.state != TrialState.COMPLETE or t.values is None or not np.all(np.isfinite(t.values)):
                continue
            tag = t.system_attrs.get(TAG_ATTR)
            x = np.asarray(tag["x"]) if tag and tag.get("space") == cube.signature else cube.encode(t.params)
            if x is None:
                continue
            f = signs * np.asarray(t.values, float)
            st["X"].append(x)
            st["F"].append(f)
            st["ideal"] = np.minimum(st["ideal"], f)
            i = tag["sub"] if tag else t.number % n
            pool = st["neigh"][i] if tag and tag["pool"] == "neighbors" else np.arange(n)
            if st["pop_x"][i] is None:
                st["pop_x"][i], st["pop_f"][i] = x, f
                continue
            rng = np.random.RandomState(t.number)        # same replacement order in every worker
            replaced = 0
            for j in rng.permutation(pool):
                if replaced >= self.n_replace:
                    break
                if st["pop_f"][j] is None or self._pbi(f[None], j)[0] <= self._pbi(st["pop_f"][j][None], j)[0]:
                    st["pop_x"][j], st["pop_f"][j] = x, f
                    replaced += 1

    def _pbi(self, F: np.ndarray, j: int) -> np.ndarray:
        st = self._state
        return np.atleast_1d(self._decomp.do(F, weights=st["weights"][j], ideal_point=st["ideal"]))

    # ------------------------------------------------------------------ sampling
    def _sample(self, study: Study, trial: FrozenTrial, cube: UnitCube) -> dict[str, Any]:
        self._replay(study, cube)
        st = self._state
        n = len(st["weights"])
        i = trial.number % n
        filled = [j for j in range(n) if st["pop_x"][j] is not None]
        if st["pop_x"][i] is None and trial.number < n or len(filled) < 3:
            x, pool_name = self._rng.uniform(size=cube.n_dims), "init"
        else:
            use_neigh = self._rng.uniform() < self.delta
            pool = [j for j in (st["neigh"][i] if use_neigh else range(n)) if st["pop_x"][j] is not None]
            if len(pool) < 2:
                pool, use_neigh = filled, False
            pool_name = "neighbors" if use_neigh else "all"
            base = st["pop_x"][i] if st["pop_x"][i] is not None else st["pop_x"][pool[self._rng.randint(len(pool))]]
            k = self.n_candidates if self.surrogate and len(st["X"]) >= self.surrogate_after else 1
            cands = np.array([self._offspring(base, pool) for _ in range(k)])
            x = cands[0] if k == 1 else cands[int(np.argmin(self._pbi(self._predict(cands), i)))]
        self._set_trial_attr(study, trial, TAG_ATTR, {"space": cube.signature, "sub": int(i), "pool": pool_name,
                                                      "x": [float(v) for v in x]})
        return cube.decode(x)

    def _offspring(self, base: np.ndarray, pool: list[int]) -> np.ndarray:
        st, n_dims = self._state, base.shape[0]
        r1, r2 = self._rng.choice(pool, size=2, replace=False)
        child = base.copy()
        cross = self._rng.uniform(size=n_dims) < self.de_cr
        cross[self._rng.randint(n_dims)] = True
        child[cross] = base[cross] + self.de_f * (st["pop_x"][r1][cross] - st["pop_x"][r2][cross])
        child = np.clip(child, 0.0, 1.0)
        # polynomial mutation (Deb), bounds [0, 1]
        eta = self.eta_mutation
        for d in np.where(self._rng.uniform(size=n_dims) < 1.0 / n_dims)[0]:
            r = self._rng.uniform()
            if r < 0.5:
                delta = (2 * r + (1 - 2 * r) * (1 - child[d]) ** (eta + 1)) ** (1 / (eta + 1)) - 1
            else:
                delta = 1 - (2 * (1 - r) + 2 * (r - 0.5) * child[d] ** (eta + 1)) ** (1 / (eta + 1))
            child[d] = np.clip(child[d] + delta, 0.0, 1.0)
        return child

    def _predict(self, cands: np.ndarray) -> np.ndarray:
        st = self._state
        X, F = np.array(st["X"]), np.array(st["F"])
        if self._forest is None or len(X) - self._forest[0] >= self.refit_every:
            seed = int(self._rng.randint(2**31 - 1))
            forests = [RandomForestRegressor(n_estimators=self.n_trees, random_state=seed, n_jobs=1).fit(X, F[:, m])
                       for m in range(F.shape[1])]
            self._forest = (len(X), forests)
        return np.stack([f.predict(cands) for f in self._forest[1]], axis=1)
