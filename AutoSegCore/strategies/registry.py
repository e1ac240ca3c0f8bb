"""Strategies by name: ``make_sampler("crs", seed=0)`` → an Optuna sampler, ``make_pruner("bohb")`` → its pruner."""
from __future__ import annotations

import inspect
from typing import Any, Callable

import optuna

from AutoSegCore.errors import StrategyError  # noqa: F401 - defined with the other errors; re-exported here


def _random(seed, **options):
    return optuna.samplers.RandomSampler(seed=seed, **options)


def _tpe(seed, **options):
    return optuna.samplers.TPESampler(seed=seed, **options)


def _nsga2(seed, **options):
    return optuna.samplers.NSGAIISampler(seed=seed, **options)


# Optuna's HyperbandPruner names for the BOHB budgets are accepted too, so one dict can configure both.
BUDGET_ALIASES = {"min_resource": "min_budget", "max_resource": "max_budget", "reduction_factor": "eta"}


def _budget_names(options: dict) -> dict:
    out = dict(options)
    for alias, name in BUDGET_ALIASES.items():
        if alias in out:
            if name in out and out[name] != out[alias]:
                raise StrategyError(f"bohb: {alias}={out[alias]!r} contradicts {name}={out[name]!r}",
                                    f"give only {name}")
            out[name] = out.pop(alias)
    return out


def _bohb(seed, **options):
    from AutoSegCore.strategies.bohb import BOHBSampler
    return BOHBSampler(seed=seed, **_budget_names(options))


def _rl(seed, **options):
    from AutoSegCore.strategies.rl import ControllerSampler
    return ControllerSampler(seed=seed, **options)


def _crs(seed, **options):
    from AutoSegCore.strategies.crs import CRSSampler
    return CRSSampler(seed=seed, **options)


def _moead(seed, **options):
    from AutoSegCore.strategies.moead import MOEADSampler
    return MOEADSampler(seed=seed, **options)


SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "random": _random, "tpe": _tpe, "nsga2": _nsga2, "bohb": _bohb, "rl": _rl, "crs": _crs, "moead": _moead,
}
MULTI_OBJECTIVE = ("random", "tpe", "nsga2", "moead")


def list_strategies() -> list[str]:
    return list(SAMPLERS)


def known_strategy(name: str) -> str:
    """``name`` as registered (trimmed, lower case); ``StrategyError`` naming the strategies if there is none."""
    key = str(name).strip().lower()
    if key not in SAMPLERS:
        raise StrategyError(f"unknown strategy '{name}'", f"use one of {', '.join(SAMPLERS)}")
    return key


def make_sampler(name: str, *, seed: int | None = None, **options: Any) -> optuna.samplers.BaseSampler:
    """The sampler registered as ``name``; ``options`` go to its constructor (unknown ones are an error)."""
    key = known_strategy(name)
    try:
        return SAMPLERS[key](seed, **options)
    except TypeError as exc:
        raise StrategyError(f"strategy '{key}': bad option ({exc})",
                            f"see docs/strategies.md for the options of '{key}'") from None


def make_pruner(name: str, *, median: bool = False, **options: Any) -> optuna.pruners.BasePruner:
    """``bohb`` → Optuna's HyperbandPruner on the same budgets as the sampler (min_budget, max_budget, eta);
    every other strategy → NopPruner, or MedianPruner(**options) when ``median=True``."""
    key = known_strategy(name)
    if key == "bohb":
        from AutoSegCore.strategies.bohb import BOHBSampler, make_hyperband_pruner
        options = _budget_names(options)
        allowed = set(inspect.signature(make_hyperband_pruner).parameters)
        sampler_only = set(inspect.signature(BOHBSampler).parameters)     # same dict may serve both
        unknown = set(options) - allowed - sampler_only
        if unknown:
            raise StrategyError(f"bohb pruner: unknown option(s) {', '.join(sorted(unknown))}",
                                "use min_budget, max_budget and eta (or min_resource, max_resource, reduction_factor)")
        return make_hyperband_pruner(**{k: v for k, v in options.items() if k in allowed})
    if median:
        try:
            return optuna.pruners.MedianPruner(**options)
        except TypeError as exc:
            raise StrategyError(f"median pruner: bad option ({exc})",
                                "use n_startup_trials, n_warmup_steps, interval_steps") from None
    return optuna.pruners.NopPruner()
