"""Continuous relaxation of any Optuna search space to the unit cube [0, 1]^n, and back by flooring.

SegNAS3D (§2.3) searches a bounded continuous box and builds the network from ``floor(x)``; CRS, MOEA/D and
BOHB's KDE all work on such a box.  Written by hand because Optuna's own transform (``optuna._transform``) is
private and one-hot encodes categoricals, whereas these algorithms need exactly one coordinate per parameter.

Per parameter (u in [0, 1]):
- categorical with k choices, int (with step), float with step: k grid cells of equal width,
  value index = min(floor(u·k), k−1);  encode() returns the cell centre (i + 0.5)/k.
- log int: continuous in [log low, log(high+1)), value = floor(exp(.)) clipped to [low, high].
- float (linear or log): the affine (or log-affine) map, no flooring.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)


class UnitCube:
    """Maps parameter dictionaries of one search space to points of [0, 1]^n and back."""

    def __init__(self, search_space: dict[str, BaseDistribution]) -> None:
        self.names = list(search_space)
        self.distributions = [search_space[n] for n in self.names]
        self.n_dims = len(self.names)
        self.cells = [_n_cells(d) for d in self.distributions]   # None = continuous dimension
        self.categorical = np.array([isinstance(d, CategoricalDistribution) for d in self.distributions], bool)

    # ------------------------------------------------------------------ signature
    @property
    def signature(self) -> str:
        """A string identifying the search space (state kept for one space is not reused for another)."""
        return json.dumps([[n, _dist_json(d)] for n, d in zip(self.names, self.distributions)])

    # ------------------------------------------------------------------ decode / encode
    def decode(self, u: np.ndarray) -> dict[str, Any]:
        """Point of the unit cube -> parameter dict with plain Python values inside the distributions."""
        return {name: decode_value(dist, float(ui)) for name, dist, ui in zip(self.names, self.distributions, u)}

    def encode(self, params: dict[str, Any]) -> np.ndarray | None:
        """Parameter dict -> a point whose decode() gives the same params; None if a parameter is missing/outside."""
        out = np.empty(self.n_dims)
        for i, (name, dist) in enumerate(zip(self.names, self.distributions)):
            if name not in params:
                return None
            value = encode_value(dist, params[name])
            if value is None:
                return None
            out[i] = value
        return out

    def key(self, params: dict[str, Any]) -> str:
        """Hashable identity of the *discretised* point (floor(x)); floats without a step keep their value."""
        return json.dumps([_key_part(d, params[n]) for n, d in zip(self.names, self.distributions)])

    def key_of(self, u: np.ndarray) -> str:
        return self.key(self.decode(u))


def _n_cells(dist: BaseDistribution) -> int | None:
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return (dist.high - dist.low) // dist.step + 1
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        return int(round((dist.high - dist.low) / dist.step)) + 1
    return None


def decode_value(dist: BaseDistribution, u: float) -> Any:
    u = min(max(u, 0.0), 1.0)
    if isinstance(dist, CategoricalDistribution):
        k = len(dist.choices)
        return dist.choices[min(int(math.floor(u * k)), k - 1)]
    if isinstance(dist, IntDistribution):
        if dist.low == dist.high:
            return int(dist.low)
        if dist.log:
            lo, hi = math.log(dist.low), math.log(dist.high + 1)
            return int(min(max(math.floor(math.exp(lo + u * (hi - lo))), dist.low), dist.high))
        k = (dist.high - dist.low) // dist.step + 1
        return int(dist.low + min(int(math.floor(u * k)), k - 1) * dist.step)
    assert isinstance(dist, FloatDistribution)
    if dist.low == dist.high:
        return float(dist.low)
    if dist.step is not None:
        k = int(round((dist.high - dist.low) / dist.step)) + 1
        idx = min(int(math.floor(u * k)), k - 1)
        return float(min(dist.low + idx * dist.step, dist.high))
    if dist.log:
        lo, hi = math.log(dist.low), math.log(dist.high)
        return float(min(max(math.exp(lo + u * (hi - lo)), dist.low), dist.high))
    return float(min(max(dist.low + u * (dist.high - dist.low), dist.low), dist.high))


def encode_value(dist: BaseDistribution, value: Any) -> float | None:
    try:
        if not dist._contains(dist.to_internal_repr(value)):
            return None
    except (ValueError, TypeError):
        return None
    if isinstance(dist, CategoricalDistribution):
        return (dist.choices.index(value) + 0.5) / len(dist.choices)
    if dist.low == dist.high:
        return 0.5
    if isinstance(dist, IntDistribution):
        if dist.log:
            lo, hi = math.log(dist.low), math.log(dist.high + 1)
            return (math.log(value + 0.5) - lo) / (hi - lo)
        k = (dist.high - dist.low) // dist.step + 1
        return ((value - dist.low) // dist.step + 0.5) / k
    if dist.step is not None:
        k = int(round((dist.high - dist.low) / dist.step)) + 1
        return (round((value - dist.low) / dist.step) + 0.5) / k
    if dist.log:
        lo, hi = math.log(dist.low), math.log(dist.high)
        return (math.log(value) - lo) / (hi - lo)
    return (value - dist.low) / (dist.high - dist.low)


def _key_part(dist: BaseDistribution, value: Any) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices.index(value)
    if isinstance(dist, IntDistribution):
        return int(value)
    if dist.step is not None:
        return int(round((value - dist.low) / dist.step))
    return float(value)


def _dist_json(dist: BaseDistribution) -> Any:
    from optuna.distributions import distribution_to_json

    return json.loads(distribution_to_json(dist))
