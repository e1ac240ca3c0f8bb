"""Largest-connected-component post-processing per class, and nnU-Net's rule for deciding it from validation."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def keep_largest_component(label: np.ndarray, classes: list[int]) -> np.ndarray:
    """Keep only the largest 26-connected component of each class in ``classes`` (others set to background)."""
    # SciPy rather than MONAI's KeepLargestConnectedComponent, which needs scikit-image for CPU arrays.
    if not classes:
        return label
    out = np.array(label, copy=True)
    structure = np.ones((3, 3, 3), bool)
    for c in classes:
        comps, n = ndimage.label(out == c, structure=structure)
        if n > 1:
            sizes = np.bincount(comps.ravel())
            sizes[0] = 0
            out[(comps > 0) & (comps != sizes.argmax())] = 0
    return out


def decide_largest_component(preds: list[np.ndarray], truths: list[np.ndarray], classes: list[int]) -> list[int]:
    """Classes for which keeping only the largest component raises mean validation Dice, strictly, as nnU-Net v2's
    ``determine_postprocessing`` decides (``>``): where the validation maps hold one component each, it changes
    nothing there and is not chosen, because on a held-out case whose largest predicted blob is a false positive
    it would delete the true structure (Dice 0)."""
    from AutoSegCore.training.metrics import dice_per_class

    chosen = []
    for c in classes:
        before = np.mean([dice_per_class(p, t, [c])[c] for p, t in zip(preds, truths)])
        after = np.mean([dice_per_class(keep_largest_component(p, [c]), t, [c])[c] for p, t in zip(preds, truths)])
        if after > before:
            chosen.append(c)
    return chosen
