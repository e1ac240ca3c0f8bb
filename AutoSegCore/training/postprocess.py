"""Largest-connected-component post-processing per class, and nnU-Net's rule for deciding it from validation."""
from __future__ import annotations

import numpy as np
import torch
from monai.transforms import KeepLargestConnectedComponent


def keep_largest_component(label: np.ndarray, classes: list[int]) -> np.ndarray:
    """Keep only the largest 26-connected component of each class in ``classes`` (others set to background)."""
    if not classes:
        return label
    t = torch.from_numpy(np.asarray(label).astype(np.int64))[None]
    out = KeepLargestConnectedComponent(applied_labels=list(classes), is_onehot=False, connectivity=3)(t)
    return np.asarray(out[0]).astype(label.dtype)


def decide_largest_component(preds: list[np.ndarray], truths: list[np.ndarray], classes: list[int]) -> list[int]:
    """Classes for which keeping the largest component does not lower mean validation Dice (as nnU-Net)."""
    from AutoSegCore.training.metrics import dice_per_class

    chosen = []
    for c in classes:
        before = np.mean([dice_per_class(p, t, [c])[c] for p, t in zip(preds, truths)])
        after = np.mean([dice_per_class(keep_largest_component(p, [c]), t, [c])[c] for p, t in zip(preds, truths)])
        if after >= before:
            chosen.append(c)
    return chosen
