"""BOHB (Falkner et al. 2018; the BOHB thesis §2.5.5, §3.4): Hyperband decides how long trials run, a density model
per budget decides which configurations start.

- Budgets are epochs.  Trials report one intermediate value per epoch (``trial.report(v, epoch)``) and ask
  ``trial.should_prune()``; :func:`make_hyperband_pruner` (Optuna's HyperbandPruner) stops them at the rung
  budgets min_budget·ηᵏ ≤ max_budget.
- The sampler keeps one observation set per rung budget b: the value each trial reported at epoch b (a
  completed trial's final value counts at its last epoch).  New configurations come from the model of the
  HIGHEST budget that has one.
- ``model="tpe"`` (default): Optuna's TPESampler (univariate by default) fitted to an in-memory shadow study
  per budget.  A model exists at b once N_min (= ``min_points_in_model``, default 2) trials were observed
  at b.  Its good set l(x) is the best ⌈``top_n_percent`` % (default 25)⌉ (≥ 1) of them; its bad set g(x) is the rest AND
  every trial Hyperband stopped before reaching b (it lost a rung comparison against trials that went on, so
  at budget b it counts as worse than them — Optuna's own TPE ranks pruned trials the same way).
- ``model="kde"`` is hpbandster's BOHB unchanged: N_min defaults to d + 1, good = best max(N_min, 15 %) of the observations at b, bad =
  the rest, a model once both sets hold more than d points (statsmodels needs that many for its bandwidths),
  product kernels (Gaussian with normal-reference bandwidths on the unit cube, Aitchison–Aitken for
  categoricals; bandwidths ≥ 1e−3; 64 candidates from the good density with bandwidths × 3), max l(x)/g(x).
- With probability ``random_fraction`` (1/3 as in BOHB) — and always before any model exists — the
  configuration is uniformly random.

Why the TPE rules differ from hpbandster's (bench/strategies.py, curve benchmark, 60 seeds): hpbandster's
"both sets > d points" with a good set of ≥ d + 1 points is a requirement of its KDE; under it the model of a
newly reached budget starts from ~2(d+1) points of which half count as good, and the few points that reach the
top budget drive a narrow multivariate model that got stuck on a wrong integer/categorical value (BOHB never
reached random search's result in 3× its budget on 2 of 30 seeds; paired ratio 0.52 → 0.29 over those 30).  TPE needs neither (its prior covers an
empty region), the Hyperband stops are free information for g(x), and the univariate Parzen estimator explores
more per dimension.  See docs/strategies.md for the measured before/after.

Written here because Optuna's TPESampler alone models final values only (no per-budget models).  Differences
to hpbandster are listed in docs/strategies.md (asynchronous Hyperband; TPE's kernels and rules by default).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import truncnorm

from AutoSegCore.strategies.base import UnitCubeSampler
from AutoSegCore.strategies.encoding import UnitCube


def rung_budgets(min_budget: int, max_budget: int, eta: int) -> list[int]:
    """min_budget·ηᵏ up to max_budget, plus max_budget itself."""
    out, b = [], float(min_budget)
    while b < max_budget - 1e-9:
        out.append(int(round(b)))
        b *= eta
    out.append(int(max_budget))
    return sorted(set(out))


def make_hyperband_pruner(min_budget: int = 1, max_budget: int = 27, eta: int = 3) -> optuna.pruners.HyperbandPruner:
    """Optuna's (asynchronous) Hyperband on the same budgets as :class:`BOHBSampler`."""
    _check_budgets(min_budget, max_budget, eta)
    return optuna.pruners.HyperbandPruner(min_resource=min_budget, max_resource=max_budget, reduction_factor=eta)


def _check_budgets(min_budget: int, max_budget: int, eta: float) -> None:
    from AutoSegCore.errors import StrategyError

    if not (isinstance(min_budget, int) and isinstance(max_budget, int) and 1 <= min_budget <= max_budget):
        raise StrategyError(f"bohb budgets min_budget={min_budget!r}, max_budget={max_budget!r} are invalid",
                            "use integers with 1 ≤ min_budget ≤ max_budget (epochs)")
    if not eta > 1:
        raise StrategyError(f"bohb eta={eta!r} must be > 1", "use eta=3 (BOHB default) or 2")


class BOHBSampler(UnitCubeSampler):
    """BOHB's multi-budget kernel-density sampler (single objective); pair it with make_hyperband_pruner()."""

    def __init__(self, *, seed: int | None = None, min_budget: int | None = None, max_budget: int | None = None,
                 eta: int | None = None,
                 min_points_in_model: int | None = None, top_n_percent: int | None = None, num_samples: int = 64,
                 random_fraction: float = 1 / 3, bandwidth_factor: float = 3.0, min_bandwidth: float = 1e-3,
                 model: str = "tpe", multivariate: bool = False, stopped_as_bad: bool = True) -> None:
        super().__init__(seed=seed)
        # Budgets not given here are taken from the study's HyperbandPruner at the first sample (so one
        # make_pruner(...) call configures both), else default to 1, 27, 3.
        self._given = (min_budget, max_budget, eta)
        _check_budgets(min_budget or 1, max_budget or max(27, min_budget or 1), eta or 3)
        self.budgets = rung_budgets(min_budget or 1, max_budget or 27, eta or 3)
        if model not in ("tpe", "kde"):
            from AutoSegCore.errors import StrategyError
            raise StrategyError(f"bohb model={model!r} is unknown", "use model='tpe' (default) or 'kde' (hpbandster's)")
        self.model, self.multivariate, self.stopped_as_bad = model, multivariate, stopped_as_bad
        self._tpe_studies: dict[tuple, tuple[optuna.Study, set[int]]] = {}
        self.min_points_in_model = min_points_in_model
        # None: 25 % for TPE (measured: paired ratio 0.30 vs 0.33 with 15 % over 60 seeds), hpbandster's 15 % for KDE
        self.top_n_percent = top_n_percent if top_n_percent is not None else (25 if model == "tpe" else 15)
        self.num_samples = num_samples
        self.random_fraction = random_fraction
        self.bandwidth_factor = bandwidth_factor
        self.min_bandwidth = min_bandwidth
        self.last_model_budget: int | None = None     # budget whose model produced the last sample (None = random)

    # ------------------------------------------------------------------ observations per budget
    def observations(self, study: Study, cube: UnitCube) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{budget: (points in the unit cube, minimisation values)} from every finished or running trial."""
        sign = self._signs(study)[0]
        data: dict[int, tuple[list, list]] = {b: ([], []) for b in self.budgets}
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        for t in study._get_trials(deepcopy=False, states=states, use_cache=False):
            x = cube.encode(t.params)
            if x is None:
                continue
            values = dict(t.intermediate_values)
            if t.state == TrialState.COMPLETE and t.value is not None:
                values[max(values) if values else self.budgets[-1]] = t.value
            for b in self.budgets:
                v = values.get(b)
                if v is not None and math.isfinite(v):
                    data[b][0].append(x)
                    data[b][1].append(sign * v)
        return {b: (np.array(xs).reshape(-1, cube.n_dims), np.array(ys)) for b, (xs, ys) in data.items()}

    # ------------------------------------------------------------------ sampling
    def _budgets_from_pruner(self, study: Study) -> None:
        if None not in self._given:
            return
        pruner = study.pruner
        lo, hi, eta = 1, 27, 3
        if isinstance(pruner, optuna.pruners.HyperbandPruner):     # Optuna keeps these as private attributes
            lo = getattr(pruner, "_min_resource", lo)
            hi = getattr(pruner, "_max_resource", hi)
            eta = getattr(pruner, "_reduction_factor", eta)
            hi = hi if isinstance(hi, int) else 27                  # "auto": unknown until trials finish
        lo, hi, eta = (given if given is not None else v for given, v in zip(self._given, (lo, hi, eta)))
        self.budgets = rung_budgets(lo, max(lo, hi), eta)

    def _sample(self, study: Study, trial: FrozenTrial, cube: UnitCube) -> dict[str, Any]:
        self._budgets_from_pruner(study)
        n_min = self.min_points_in_model or (2 if self.model == "tpe" else cube.n_dims + 1)
        self.last_model_budget = None
        if self._rng.uniform() < self.random_fraction:
            return cube.decode(self._rng.uniform(size=cube.n_dims))
        obs = self.observations(study, cube)
        stopped = self._stopped_below(study, cube) if self.stopped_as_bad else {b: 0 for b in self.budgets}
        for b in reversed(self.budgets):                    # the highest budget with a model
            xs, ys = obs[b]
            if self.model == "tpe":
                n_good = self._n_good_tpe(len(ys))
                if len(ys) >= n_min and len(ys) - n_good + stopped[b] >= 1:
                    self.last_model_budget = b
                    return self._from_tpe(study, cube, b, n_good)
                continue
            good, bad = self._split(len(ys), n_min)
            # hpbandster's rule (both sets > d points); stricter than the paper's |D_b| ≥ N_min + 2, which
            # measured worse with this KDE (paired ratio 0.52 vs 0.36 on bench/strategies.py's curve benchmark).
            if good > cube.n_dims and bad > cube.n_dims:
                self.last_model_budget = b
                return cube.decode(self._from_model(cube, xs, ys, n_min))
        return cube.decode(self._rng.uniform(size=cube.n_dims))

    def _n_good_tpe(self, n: int) -> int:
        """TPE's good-set size from n observations at a budget: ⌈top_n_percent % · n⌉, at least 1."""
        return max(1, math.ceil(self.top_n_percent * n / 100))

    def _stopped_below(self, study: Study, cube: UnitCube) -> dict[int, int]:
        """{budget b: number of pruned trials whose last reported epoch is below b}."""
        out = {b: 0 for b in self.budgets}
        for t in study._get_trials(deepcopy=False, states=(TrialState.PRUNED,), use_cache=False):
            if t.intermediate_values and cube.encode(t.params) is not None:
                last = max(t.intermediate_values)
                for b in self.budgets:
                    out[b] += last < b
        return out

    def _from_tpe(self, study: Study, cube: UnitCube, budget: int, n_good: int) -> dict[str, Any]:
        """Optuna's TPE fitted on the observations at ``budget`` (good: the best ``n_good``; bad: the rest and,
        with ``stopped_as_bad``, the trials pruned before ``budget``, entered with value +inf).  Kept in an
        in-memory study per budget to which new observations are appended, so a sample costs one TPE fit."""
        key = (id(study._storage), study._study_id, cube.signature, budget)
        if key not in self._tpe_studies:
            self._tpe_studies[key] = (optuna.create_study(), set())
        shadow, added = self._tpe_studies[key]
        sign = self._signs(study)[0]
        space = dict(zip(cube.names, cube.distributions))
        new = []
        for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
                                   use_cache=False):
            if t.number in added or cube.encode(t.params) is None:
                continue
            values = dict(t.intermediate_values)
            if t.state == TrialState.COMPLETE and t.value is not None:
                values[max(values) if values else self.budgets[-1]] = t.value
            v = values.get(budget)
            if v is not None and math.isfinite(v):
                v = sign * v
            elif self.stopped_as_bad and t.state == TrialState.PRUNED and values and max(values) < budget:
                v = math.inf                   # stopped by Hyperband below this budget: ranks after every observation
            else:
                continue
            added.add(t.number)
            new.append(optuna.trial.create_trial(params={n: t.params[n] for n in cube.names}, distributions=space,
                                                 value=v))
        shadow.add_trials(new)
        with warnings.catch_warnings():          # `gamma` is deprecated in Optuna 4.9 but still honoured in 5.0
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            shadow.sampler = optuna.samplers.TPESampler(
                seed=int(self._rng.randint(2**31 - 1)), n_startup_trials=0, multivariate=self.multivariate,
                gamma=lambda n: n_good)         # good = the best n_good observed AT this budget
            trial = shadow.ask(fixed_distributions=space)
        params = dict(trial.params)
        shadow.tell(trial, state=TrialState.FAIL)     # keep the shadow study free of running trials
        return params

    def _split(self, n: int, n_min: int) -> tuple[int, int]:
        """Sizes of the good and bad sets from n observations (hpbandster's rule; model="kde")."""
        n_good = max(n_min, (self.top_n_percent * n) // 100)
        n_bad = max(n_min, ((100 - self.top_n_percent) * n) // 100)
        return min(n_good, n), max(0, min(n_bad, n - n_good))

    def _from_model(self, cube: UnitCube, xs: np.ndarray, ys: np.ndarray, n_min: int) -> np.ndarray:
        order = np.argsort(ys, kind="stable")
        n_good, n_bad = self._split(len(ys), n_min)
        good = _KDE(cube, xs[order[:n_good]], self.min_bandwidth)
        bad = _KDE(cube, xs[order[n_good:n_good + n_bad]], self.min_bandwidth)
        # Draw all candidates at once: a random good datum each, then per-dimension kernels widened by
        # bandwidth_factor (truncated to the unit cube) or, for categoricals, Aitchison–Aitken resampling.
        data = good.data[self._rng.randint(len(good.data), size=self.num_samples)]
        bw = np.maximum(good.bw * self.bandwidth_factor, self.min_bandwidth)
        a, b = (0.0 - data) / bw, (1.0 - data) / bw
        cands = truncnorm.rvs(a, b, loc=data, scale=bw, random_state=self._rng).reshape(data.shape)
        keep = self._rng.uniform(size=data.shape) < 1 - good.bw
        for d in np.where(cube.categorical)[0]:
            k = cube.cells[d]
            cells = np.where(keep[:, d], np.floor(data[:, d] * k), self._rng.randint(k, size=len(data)))
            cands[:, d] = (np.minimum(cells, k - 1) + 0.5) / k
        cands = np.clip(cands, 0.0, 1.0)
        score = good.pdf(cands) / np.maximum(bad.pdf(cands), 1e-32)
        return cands[int(np.argmax(score))]


class _KDE:
    """Product kernel density (statsmodels KDEMultivariate 'c'/'u' kernels, normal-reference bandwidths)."""

    def __init__(self, cube: UnitCube, data: np.ndarray, min_bandwidth: float) -> None:
        self.cube, self.data = cube, data
        n = max(len(data), 1)
        std = data.std(axis=0) if len(data) > 1 else np.zeros(cube.n_dims)
        iqr = (np.percentile(data, 75, axis=0) - np.percentile(data, 25, axis=0)) / 1.349 if len(data) > 1 else std
        spread = np.where(iqr > 0, np.minimum(std, iqr), std)
        bw = 1.059 * spread * n ** (-1.0 / (4 + cube.n_dims))
        bw = np.where(cube.categorical, np.minimum(bw, 1.0), bw)
        self.bw = np.maximum(bw, min_bandwidth)

    def pdf(self, points: np.ndarray) -> np.ndarray:
        dens = np.ones((len(points), len(self.data)))
        for d in range(self.cube.n_dims):
            bw = self.bw[d]
            if self.cube.categorical[d]:
                k = self.cube.cells[d]
                same = np.floor(points[:, d, None] * k) == np.floor(self.data[None, :, d] * k)
                dens *= np.where(same, 1 - bw, bw / max(k - 1, 1))
            else:
                z = (points[:, d, None] - self.data[None, :, d]) / bw
                dens *= np.exp(-0.5 * z * z) / (bw * math.sqrt(2 * math.pi))
        return dens.mean(axis=1)
