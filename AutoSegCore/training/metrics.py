"""Dice and HD95 per class (MONAI's implementations) on integer label volumes."""
from __future__ import annotations

import numpy as np
import torch
import warnings

from monai.metrics import compute_dice, compute_hausdorff_distance

warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)


def _onehot(label: np.ndarray, classes: list[int]) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(label).astype(np.int64))
    return torch.stack([(t == c) for c in classes]).unsqueeze(0).float()


def dice_per_class(pred: np.ndarray, truth: np.ndarray, classes: list[int]) -> dict[int, float]:
    """Dice per foreground class; both empty counts as 1 (MONAI ignore_empty=False)."""
    if not classes:
        return {}
    d = compute_dice(_onehot(pred, classes), _onehot(truth, classes), include_background=True, ignore_empty=False)
    return {c: float(v) for c, v in zip(classes, d[0].tolist())}


def hd95_per_class(pred: np.ndarray, truth: np.ndarray, classes: list[int],
                   spacing: tuple[float, float, float] | None = None) -> dict[int, float | None]:
    """95th-percentile Hausdorff distance in mm; None where either mask is empty (undefined)."""
    out: dict[int, float | None] = {}
    for c in classes:
        p, t = (np.asarray(pred) == c), (np.asarray(truth) == c)
        if not p.any() or not t.any():
            out[c] = None
            continue
        v = compute_hausdorff_distance(_onehot(p.astype(np.uint8), [1]), _onehot(t.astype(np.uint8), [1]),
                                       include_background=True, percentile=95,
                                       spacing=list(spacing) if spacing else None)
        out[c] = float(v[0, 0])
    return out


def evaluate_pair(pred: np.ndarray, truth: np.ndarray, labels: dict[int, str],
                  spacing: tuple[float, float, float] | None = None) -> dict:
    classes = [c for c in sorted(labels) if c > 0]
    dice = dice_per_class(pred, truth, classes)
    hd = hd95_per_class(pred, truth, classes, spacing)
    return {"dice": {labels[c]: dice[c] for c in classes}, "hd95": {labels[c]: hd[c] for c in classes},
            "mean_dice": float(np.mean(list(dice.values()))) if dice else 0.0}
