"""Deterministic k-fold and hold-out splits by case name."""
from __future__ import annotations

import pytest

from AutoSegCore.data.splits import holdout_split, kfold_splits
from AutoSegCore.errors import ConfigError, DatasetError


def test_kfold_deterministic_disjoint_complete(hippo):
    names = hippo.case_names
    folds = kfold_splits(names, 5, seed=0)
    assert folds == kfold_splits(list(reversed(names)), 5, seed=0)      # order of the input does not matter
    assert folds != kfold_splits(names, 5, seed=1)
    assert len(folds) == 5
    validated = []
    for train, val in folds:
        assert not set(train) & set(val) and set(train) | set(val) == set(names)
        assert 36 <= len(val) <= 37
        validated.extend(val)
    assert sorted(validated) == sorted(names)                            # each case validated exactly once


def test_kfold_errors():
    with pytest.raises(DatasetError, match="3 case"):
        kfold_splits(["a", "b", "c"], 5, seed=0)
    with pytest.raises(ConfigError):
        kfold_splits(["a", "b", "c"], 1, seed=0)
    with pytest.raises(DatasetError, match="unique"):
        kfold_splits(["a", "a", "b"], 2, seed=0)


def test_holdout(hippo):
    train, val = holdout_split(hippo.case_names, 0.2, seed=3)
    assert (train, val) == holdout_split(hippo.case_names, 0.2, seed=3)
    assert len(val) == round(182 * 0.2) and not set(train) & set(val) and len(train) + len(val) == 182
    assert holdout_split(["a", "b"], 0.01, seed=0)[1] != []              # at least one validation case
    with pytest.raises(DatasetError):
        holdout_split(["a"], 0.2, seed=0)
    with pytest.raises(ConfigError):
        holdout_split(["a", "b"], 1.5, seed=0)
