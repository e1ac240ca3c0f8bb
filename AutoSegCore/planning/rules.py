"""The planner's rules, torch-free: target spacing, per-axis pooling and kernels, patch candidates, normalisation,
batch limits, foreground oversampling.  Each rule returns its value and a one-line why, so ``autoseg plan`` can
say what it decided and from which number of the fingerprint.

nnU-Net v2's ``ExperimentPlanner`` (read for these rules: ``determine_fullres_target_spacing``,
``get_pool_and_conv_props``, the patch-reduction loop and the 5 % batch cap) is followed where its rule holds for
any data; where we differ the docstring says why.  Arrays here are (X, Y, Z) in nibabel's order (nnU-Net's are
reversed).
"""
from __future__ import annotations

import math

import numpy as np

ANISOTROPY_THRESHOLD = 3.0        # nnU-Net: a spacing 3× the others' is anisotropic
MIN_FEATURE_MAP = 4               # nnU-Net: no pooling below 4 voxels along an axis (the bottleneck's size)
MAX_POOLS = 5                     # network.depth is 2–6 (config RULES)
REFERENCE_PATCH_VOXELS = 256 ** 3  # nnU-Net's starting patch volume, shaped like the spacing's inverse
MIN_3D_SLICES = 2 * MIN_FEATURE_MAP  # fewer slices along the coarse axis than one pooling needs: plan 2D
DATASET_SHARE = 0.05              # nnU-Net: one batch covers at most 5 % of the dataset's voxels
MIN_BATCH = 2
MASK_NORM_BELOW = 0.75            # nnU-Net: z-score inside the nonzero mask when cropping keeps < 3/4 of a case
SMALL_STRUCTURE_SHARE = 0.002     # a label whose median volume is < 0.2 % of its case's volume is "small"
STRUCTURE_PERCENTILE = 90         # a patch "holds the structures" when it spans this percentile of their boxes
SIZE_SPREAD = 1.5                 # structures this much larger in the 90th- than the 10th-percentile case: scale aug
# zoom by at most this much either way (0.63–1.6×): beyond nnU-Net's 0.7–1.4, which trusts the voxel sizes; a held-out
# Prostate gland 1.25× larger than any training one scored 0.55 Dice as it was and 0.74 shrunk to 0.6×
MAX_SCALE_RANGE = 0.6


def case_shapes_at(fp: dict, spacing) -> np.ndarray:
    """(N, 3) shapes of the cases' nonzero boxes resampled to ``spacing`` (what the network will see)."""
    cropped = np.array([c["cropped_shape"] for c in fp["cases"]], dtype=np.float64)
    spacings = np.array([c["spacing"] for c in fp["cases"]], dtype=np.float64)
    return np.maximum(1.0, np.round(cropped * spacings / np.asarray(spacing, dtype=np.float64)))


def target_spacing(fp: dict) -> tuple[list[float], str]:
    """Median spacing; along an anisotropic axis the 10th percentile of its spacings instead (nnU-Net's rule).

    Why the percentile: resampling every case to the median coarse spacing would throw away the slices of the
    finer-sliced half of the cases; the 10th percentile keeps most of them, and it never goes below the finest
    other axis (a thin-slice case does not drag the whole dataset to isotropic)."""
    spacings = np.array([c["spacing"] for c in fp["cases"]], dtype=np.float64)
    target = np.median(spacings, axis=0)
    sizes = np.median(case_shapes_at(fp, target), axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(target[others])
    aniso_voxels = sizes[worst] * ANISOTROPY_THRESHOLD < min(sizes[others])
    why = f"median spacing of {len(spacings)} case(s)"
    if aniso_spacing and aniso_voxels:
        coarse = float(np.percentile(spacings[:, worst], 10))
        coarse = max(coarse, float(max(target[others])) + 1e-5)
        why += (f"; axis {worst} is anisotropic ({target[worst]:.3g} mm vs {max(target[others]):.3g}): its 10th "
                f"percentile {coarse:.3g} mm, which keeps the slices of the finer-sliced cases")
        target[worst] = coarse
    if np.ptp(spacings, axis=0).max() == 0:
        why += " (every case has this spacing: no resampling)"
    return [round(float(v), 6) for v in target], why


def topology(spacing, patch, max_pools: int = MAX_POOLS):
    """Per-level strides and kernels for ``patch`` at ``spacing`` (nnU-Net's ``get_pool_and_conv_props``).

    An axis is pooled while it is at least 2 × ``MIN_FEATURE_MAP`` voxels and its spacing is within 2× of the
    finest; a kernel along an axis stays 1 until its spacing is within 2× of the finest (a coarse slice axis is
    seen slice by slice until in-plane pooling has caught up).  Returns (strides, kernels, patch rounded up to
    the divisor, divisor)."""
    current_spacing = [float(s) for s in spacing]
    size = [int(p) for p in patch]
    current_size = list(size)
    pools = [0, 0, 0]
    kernel = [1, 1, 1]
    strides, kernels = [], []
    while len(strides) < max_pools:
        valid = [a for a in range(3) if current_size[a] >= 2 * MIN_FEATURE_MAP]
        if not valid:
            break
        finest = min(current_spacing[a] for a in valid)
        valid = [a for a in valid if current_spacing[a] / finest < 2]
        if len(valid) == 1 and current_size[valid[0]] < 3 * MIN_FEATURE_MAP:
            break
        if not valid:
            break
        for a in range(3):
            if kernel[a] != 3 and current_spacing[a] / min(current_spacing) < 2:
                kernel[a] = 3
        stride = [1, 1, 1]
        for a in valid:
            stride[a] = 2
            pools[a] += 1
            current_spacing[a] *= 2
            current_size[a] = math.ceil(current_size[a] / 2)
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3 if k == 3 or current_spacing[a] / min(current_spacing) < 2 else 1
                    for a, k in enumerate(kernel)])       # the bottleneck (nnU-Net: always 3; see two_d)
    divisor = [2 ** p for p in pools]
    padded = [int(math.ceil(s / d) * d) for s, d in zip(size, divisor)]
    return strides, kernels, padded, divisor


def initial_patch(spacing, median_shape) -> list[int]:
    """nnU-Net's start: a 256³-voxel volume shaped like 1/spacing (equal millimetres per axis), clipped to the
    median case shape."""
    inv = 1.0 / np.asarray(spacing, dtype=np.float64)
    patch = inv * (REFERENCE_PATCH_VOXELS / np.prod(inv)) ** (1 / 3)
    return [int(max(1, round(min(p, m)))) for p, m in zip(patch, median_shape)]


def structure_extent(fp: dict, spacing, median_shape) -> list[int] | None:
    """Per axis, the voxels (at ``spacing``) a patch needs to hold a whole labelled structure: the
    ``STRUCTURE_PERCENTILE``-th percentile of the cases' labelled boxes, at most the median case.  None when the
    fingerprint has no labelled box (no labels, or one made before this field existed).

    nnU-Net shrinks its patch without looking at the labels; a patch that cuts every structure in two (a gland
    spanning 14–22 slices under a 12-slice patch) never shows the net one whole, and on a short budget we measured
    that to cost more than the extra steps a smaller patch buys (docs/planning.md)."""
    boxes = [(c["label_box"], c["spacing"]) for c in fp["cases"] if c.get("label_box")]
    if not boxes:
        return None
    mm = np.array([np.asarray(b, dtype=np.float64) * np.asarray(s, dtype=np.float64) for b, s in boxes])
    voxels = np.percentile(mm, STRUCTURE_PERCENTILE, axis=0) / np.asarray(spacing, dtype=np.float64)
    return [int(min(math.ceil(v), m)) for v, m in zip(voxels, median_shape)]


def holds(patch, extent) -> bool:
    """Whether ``patch`` spans ``extent`` (see structure_extent) on every axis; True without an extent."""
    return extent is None or all(p >= e for p, e in zip(patch, extent))


def reduce_patch(patch, median_shape, divisor, floor=None) -> list[int] | None:
    """One step down (nnU-Net): the axis largest relative to the median shape loses one divisor; None when no
    axis can shrink further.  With a ``floor`` (structure_extent) the axes above it shrink first, so the largest
    patches that still hold the structures come before any that cuts them."""
    patch = list(patch)
    order = np.argsort([p / m for p, m in zip(patch, median_shape)])[::-1]
    can = [a for a in order if patch[a] - divisor[a] >= max(divisor[a], MIN_FEATURE_MAP)]
    if floor is not None:
        keep = [a for a in can if patch[a] - divisor[a] >= floor[a]]
        can = keep or can
    if not can:
        return None
    patch[can[0]] -= divisor[can[0]]
    return patch


def two_d_axis(median_shape) -> int | None:
    """The axis a 3D net cannot see enough of: fewer than ``MIN_3D_SLICES`` slices in the median case (after
    resampling).  Then the net is planned 2D along it (kernels 1, no pooling) — nnU-Net instead trains a 2D and a
    3D net and keeps the better by cross-validation, a second training; with a few slices a 3D kernel mostly sees
    padding, so the rule decides up front."""
    axis = int(np.argmin(median_shape))
    return axis if median_shape[axis] < MIN_3D_SLICES else None


def as_two_d(strides, kernels, axis: int):
    """The same topology with no pooling and 1-wide kernels along ``axis``."""
    strides = [[1 if a == axis else s for a, s in enumerate(st)] for st in strides]
    kernels = [[1 if a == axis else k for a, k in enumerate(kn)] for kn in kernels]
    return strides, kernels


def normalization(fp: dict) -> tuple[dict, str]:
    """CT: clip to the foreground's 0.5–99.5 percentiles and z-score with its mean and std (one scale for the
    whole dataset, since HU are absolute); anything else: z-score per case, inside the nonzero mask when the
    nonzero box is a small part of the case (skull-stripped MR: the zero background must stay zero)."""
    if fp.get("modality") == "CT":
        return ({"normalization": "percentile_zscore", "zscore_nonzero": False},
                "CT: clipped to the foreground's 0.5–99.5 percentiles, then z-scored with its mean/std")
    share = median_crop_share(fp)
    masked = share < MASK_NORM_BELOW
    why = (f"{fp.get('modality', 'MR')}: z-score per case"
           + (f", inside the nonzero mask (the nonzero box is {share:.0%} of the median case, < "
              f"{MASK_NORM_BELOW:.0%})" if masked else f" (the nonzero box is {share:.0%} of the median case)"))
    return {"normalization": "zscore", "zscore_nonzero": bool(masked)}, why


def median_crop_share(fp: dict) -> float:
    shares = [float(np.prod(c["cropped_shape"]) / max(1, np.prod(c["shape"]))) for c in fp["cases"]]
    return float(np.median(shares)) if shares else 1.0


def batch_cap(fp: dict, spacing, patch) -> int:
    """The largest batch whose voxels stay within ``DATASET_SHARE`` of the dataset's (nnU-Net: median case ×
    cases; bigger batches of a small dataset only repeat the same voxels), never below ``MIN_BATCH``."""
    median = np.median(case_shapes_at(fp, spacing), axis=0)
    total = float(np.prod(median)) * len(fp["cases"])
    return max(MIN_BATCH, int(round(total * DATASET_SHARE / max(1, np.prod(patch)))))


def foreground_oversample(fp: dict, patch) -> tuple[float, str]:
    """Share of crops centred on a foreground voxel: nnU-Net's 1/3, raised to 1/2 when a label is a small part of a
    patch (thin or small structures: a random crop then rarely holds any, and the net learns mostly background)."""
    patch_voxels = float(np.prod(patch))
    smallest = None
    for stats in fp.get("label_stats", {}).values():
        voxels = stats.get("voxels_mean") or 0.0
        if voxels > 0:
            smallest = voxels if smallest is None else min(smallest, voxels)
    if smallest is not None and smallest / patch_voxels < SMALL_STRUCTURE_SHARE:
        return 0.5, (f"1/2: the smallest label is {smallest / patch_voxels:.2%} of a patch "
                     f"(< {SMALL_STRUCTURE_SHARE:.1%}: small structures)")
    return round(1 / 3, 4), "1/3 (nnU-Net's share)"


def size_augmentation(fp: dict) -> tuple[dict, str]:
    """Scaling augmentation when the labelled structures' size varies across cases (the geometric mean of each
    case's labelled box in mm, 90th over 10th percentile > ``SIZE_SPREAD``): several sites, unknown or wrong voxel
    sizes in the headers, patients of all sizes — the net must see the sizes of cases it has not.  The zoom
    reaches the square root of the whole spread (smallest to largest case) either way, so from the median case
    it reaches both extremes; at most ``MAX_SCALE_RANGE``.  Otherwise the recipe's (no scaling: on one-site data
    of one size it only slows a short budget)."""
    sizes = [float(np.exp(np.mean(np.log(np.maximum(np.asarray(c["label_box"], dtype=np.float64)
                                                     * np.asarray(c["spacing"], dtype=np.float64), 1e-6)))))
             for c in fp["cases"] if c.get("label_box")]
    if len(sizes) < 2:
        return {}, "the recipe's (fewer than 2 labelled cases to compare sizes)"
    spread = float(np.percentile(sizes, 90) / np.percentile(sizes, 10))
    if spread <= SIZE_SPREAD:
        return {}, (f"the recipe's: the structures' size varies {spread:.2f}× between cases "
                    f"(≤ {SIZE_SPREAD}×: no scaling needed)")
    whole = max(sizes) / min(sizes)
    scale = round(min(MAX_SCALE_RANGE, math.sqrt(whole) - 1), 2)
    return ({"scale_prob": 0.3, "scale_range": scale},
            f"zoom up to {1 + scale:.2f}× either way on 30 % of the batches: the structures' size varies "
            f"{spread:.2f}× between cases (10th to 90th percentile, > {SIZE_SPREAD}×), {whole:.2f}× smallest to largest")
