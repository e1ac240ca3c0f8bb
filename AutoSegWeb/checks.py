"""What a client sends is checked on the server: every page value is state a client can set to anything (trame
syncs the whole state both ways), so lists come from the server's own copies (the engine's choices, the chosen
dataset's cases), never from the state, and numbers are parsed here with a message, never a traceback."""
from __future__ import annotations

import math

from AutoSegCore.errors import ConfigError, DatasetError

PROXY_UNITS = ("%", "cases")


def choice(value, allowed, what: str) -> str:
    """``value`` if it is one of ``allowed`` (the engine's list: e.g. a space name, never a path to any YAML file)."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{what} {str(value)[:80]!r} is not one of the page's choices",
                          f"pick one of: {', '.join(allowed)}")
    return value


def number(value, what: str) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = math.nan
    if not math.isfinite(result):
        raise DatasetError(f"{what} {str(value)[:80]!r} is not a number", "e.g. 30")
    return result


def positive_int(value, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(value).strip() not in (str(number), f"{number}.0"):
        raise DatasetError(f"{what} '{value}' is not a positive whole number", f"e.g. 1 or 2 {what}")
    return number


def optional_minutes(value, what: str) -> float | None:
    """A minutes field: empty means "not set"; anything else must be a positive number."""
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise DatasetError(f"{what} minutes '{text}' is not a positive number", "e.g. 30, or leave it empty")
    return number
