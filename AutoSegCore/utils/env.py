"""Numbers that users set in environment variables (limits, memory shares), checked where they are read.

An unset or empty variable means "not set"; anything else must be a finite number in range, or the run stops with a
one-line ``ConfigError`` naming the variable — a typo must not silently fall back to a default."""
from __future__ import annotations

import math
import os

from AutoSegCore.errors import ConfigError


def env_number(name: str, hint: str, upper: float = math.inf) -> float | None:
    """``float(os.environ[name])`` in (0, ``upper``], ``None`` when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= upper):
        where = "a positive number" if upper == math.inf else f"a number in (0, {upper:g}]"
        raise ConfigError(f"{name}={raw} must be {where}", hint)
    return value
