"""Objective values of a finished trial, per space kind.

``dice``   → (val_dice,)  — mean foreground validation Dice, maximised.
``emonas`` → (f1, f2), both minimised (EMONAS-Net, SaMEA):
    f1 = α·(C − Dice_train) + (C − Dice_val) + β·(E − e_max)/E      "expected segmentation error"
    f2 = ln(#trainable parameters)
  where E = number of training epochs and e_max = the epoch with the highest validation Dice; a net whose
  validation Dice peaked early (overfitting) pays up to β, one that overfits the training set pays via α.
  C is the best attainable Dice: 1 for our mean Dice in [0, 1].  The slides do not give α and β; the defaults
  (α = 0.25, β = 0.25) are ours and can be set per space (``objective: {kind: emonas, alpha: …, beta: …}``).
"""
from __future__ import annotations

import math

KINDS = {"dice": 1, "emonas": 2}
EMONAS_DEFAULTS = {"alpha": 0.25, "beta": 0.25, "C": 1.0}


def _need(result: dict, key: str) -> float:
    if key not in result or result[key] is None:
        raise ValueError(f"trial result has no '{key}' (got keys {sorted(result)})")
    return float(result[key])


def emonas_terms(result: dict) -> tuple[float, float, int, int]:
    """(train Dice, val Dice, E, e_max) from a result dict.

    Uses ``train_dice`` (falls back to ``val_dice`` when the trainer did not measure it), and either
    ``val_dice_history`` (per-epoch list; E = its length, e_max = 1-based index of its maximum) or
    ``epochs`` + ``best_epoch``; with neither, e_max = E (no overfitting term)."""
    val = _need(result, "val_dice")
    train = float(result["train_dice"]) if result.get("train_dice") is not None else val
    history = result.get("val_dice_history")
    if history:
        values = [(-1.0 if v is None else float(v)) for v in history]
        return train, val, len(values), values.index(max(values)) + 1
    if result.get("epochs"):
        epochs = int(result["epochs"])
        return train, val, epochs, int(result.get("best_epoch") or epochs)
    return train, val, 1, 1


def compute(kind: str, options: dict, result: dict) -> tuple[float, ...]:
    if kind == "dice":
        return (_need(result, "val_dice"),)
    opts = {**EMONAS_DEFAULTS, **options}
    train, val, epochs, e_max = emonas_terms(result)
    c = float(opts["C"])
    f1 = opts["alpha"] * (c - train) + (c - val) + opts["beta"] * (epochs - e_max) / epochs
    n_params = _need(result, "num_params")
    return (float(f1), math.log(max(n_params, 1.0)))


def worst(kind: str, options: dict, num_params: int | None = None) -> tuple[float, ...]:
    """Objective values for a failed/illegal trial: Dice 0 (SegNAS3D clips Dice at 1e-4 for −ln Dice)."""
    if kind == "dice":
        return (0.0,)
    opts = {**EMONAS_DEFAULTS, **options}
    c = float(opts["C"])
    f1 = opts["alpha"] * c + c + opts["beta"]
    return (float(f1), math.log(num_params) if num_params else math.log(1e9))
