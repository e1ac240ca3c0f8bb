"""Search strategies as Optuna samplers, by name (random, tpe, nsga2, bohb, rl, crs, moead).

Everything is an Optuna study: ``make_sampler`` / ``make_pruner`` give what ``optuna.create_study`` takes, so
ask/tell, storages, several workers and the dashboard work unchanged.  See docs/strategies.md.
"""
from AutoSegCore.strategies.penalty import (STRATEGY_PENALTY, dice_objective, failure_value, penalty_value,
                                           was_requeued)
from AutoSegCore.strategies.registry import (MULTI_OBJECTIVE, StrategyError, list_strategies, make_pruner,
                                             make_sampler)

__all__ = ["make_sampler", "make_pruner", "list_strategies", "penalty_value", "failure_value",
           "dice_objective", "STRATEGY_PENALTY", "StrategyError", "MULTI_OBJECTIVE", "was_requeued"]
