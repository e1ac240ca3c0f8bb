"""argparse value types for counts and amounts: a 0 or a negative count is refused where it is typed.

Why: without them, ``--epochs 0`` read as "not given" (a silent default) and ``--trials -1`` reached the engine.
argparse turns ``ArgumentTypeError`` into "autoseg X: error: argument --epochs: must be …" and exit code 2.
"""
from __future__ import annotations

import argparse
import math


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a {'whole ' if kind is int else ''}number") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def positive_int(text: str) -> int:
    """A count of at least 1 (epochs, steps, trials, jobs …)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """An amount above zero (GB of memory …)."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def folds(text: str) -> int:
    """k of k-fold cross-validation: 0 (none) or at least 2 (one fold would train on nothing held out)."""
    value = _number(text, int)
    if value < 0 or value == 1:
        raise argparse.ArgumentTypeError(f"must be 0 (no cross-validation) or ≥ 2, not {value}")
    return value


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N — spelled right at once (whether CUDA exists is checked where it is used)."""
    from AutoSegCore.utils.device import DEVICE_NAME

    value = text.strip().lower()
    if DEVICE_NAME.fullmatch(value):
        return value
    raise argparse.ArgumentTypeError(f"'{text}' is not a device: use auto, cpu, cuda or cuda:N")


def add_events_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", metavar="FILE|-", default=None,
                        help="write JSON-lines progress events to FILE, or to stdout with '-'")
