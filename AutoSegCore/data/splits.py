"""Deterministic train/validation splits by case name (scikit-learn's KFold / train_test_split on sorted names).

Sorting first makes a split depend only on the set of names and the seed, not on listing order.
"""
from __future__ import annotations

from typing import Sequence

from sklearn.model_selection import KFold, train_test_split

from AutoSegCore.errors import ConfigError, DatasetError


def _names(names: Sequence[str]) -> list[str]:
    out = sorted(str(n) for n in names)
    if len(set(out)) != len(out):
        raise DatasetError("case names are not unique", "give every case a unique name")
    return out


def kfold_splits(names: Sequence[str], k: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """``k`` (train, validation) folds; every name is validated exactly once."""
    names = _names(names)
    if not isinstance(k, int) or k < 2:
        raise ConfigError(f"k = {k!r} folds: need an integer of at least 2", "use e.g. k=5")
    if k > len(names):
        raise DatasetError(f"{len(names)} case(s) cannot be split into {k} folds", f"use k <= {len(names)} or add cases")
    folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(names)
    return [([names[i] for i in sorted(tr)], [names[i] for i in sorted(va)]) for tr, va in folds]


def holdout_split(names: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) with about ``fraction`` of the cases (at least one) in validation."""
    names = _names(names)
    if not (0.0 < float(fraction) < 1.0):
        raise ConfigError(f"validation fraction = {fraction!r} must be between 0 and 1", "use e.g. 0.2")
    if len(names) < 2:
        raise DatasetError(f"{len(names)} case(s) cannot be split into training and validation",
                           "add cases (at least 2 are needed)")
    n_val = min(len(names) - 1, max(1, round(len(names) * float(fraction))))
    train, val = train_test_split(names, test_size=n_val, random_state=seed, shuffle=True)
    return sorted(train), sorted(val)
