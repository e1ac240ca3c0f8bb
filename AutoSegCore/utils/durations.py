"""Durations as people read them (``58.0 s``, ``3.5 min``, ``1.25 h``): one rule for the report and the forecast."""
from __future__ import annotations


def format_duration(seconds: float | None, *, rough: bool = False) -> str:
    """Seconds below 90 s, minutes below 90 min, else hours; ``rough`` (a forecast, good to tens of per cent) shows
    whole seconds and tenths of hours; ``None`` (not measured) is a dash."""
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s" if rough else f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h" if rough else f"{seconds / 3600:.2f} h"
