"""Augmentation on preloaded batch tensors (flips, rotation, scaling, translation, gamma, intensity shift).

Written against torch directly rather than MONAI dictionary transforms because it runs on whole batches
with one seeded ``torch.Generator`` (exact resume after interruption) and costs a few ms per step on CPU,
where per-sample MONAI transforms were the bottleneck of small proxy nets.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def safe_flip_axes(labels: list[np.ndarray], threshold: float = 0.9, separation: float = 1.0) -> list[int]:
    """Spatial axes (0, 1, 2) along which mirroring does not contradict the label geometry.

    With two or more foreground classes, an axis is unsafe when one class lies on the same side of another in
    ≥ ``threshold`` of the cases AND their centroids are far apart along it (mean offset > ``separation`` ×
    the foreground's spread): mirroring would then teach swapped labels (e.g. anterior/posterior hippocampus
    along axes 1 and 2; along axis 0 they overlap, offset ≈ 0.5 spread, so left-right flips stay safe).
    """
    classes = sorted({int(v) for lab in labels for v in np.unique(lab) if v > 0})
    if len(classes) < 2:
        return [0, 1, 2]
    coords = [{c: np.argwhere(lab == c) for c in classes} | {0: np.argwhere(lab > 0)} for lab in labels]
    safe = []
    for axis in range(3):
        unsafe = False
        for i, a in enumerate(classes):
            for b in classes[i + 1:]:
                offsets = []
                for cc in coords:
                    if len(cc[a]) and len(cc[b]):
                        spread = max(float(cc[0][:, axis].std()), 1e-6)
                        offsets.append((cc[a][:, axis].mean() - cc[b][:, axis].mean()) / spread)
                if offsets:
                    o = np.array(offsets)
                    consistent = max(np.mean(o > 0), np.mean(o < 0)) >= threshold
                    unsafe |= bool(consistent and np.abs(o).mean() > separation)
        if not unsafe:
            safe.append(axis)
    return safe


def _rand(gen: torch.Generator, n: int) -> torch.Tensor:
    return torch.rand(n, generator=gen)


def augment_batch(image: torch.Tensor, label: torch.Tensor, aug: dict, flip_axes: list[int],
                  gen: torch.Generator, two_d: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment ``image`` (B, C, X, Y, Z) and ``label`` (B, 1, X, Y, Z) in place where possible."""
    b = image.shape[0]
    # flips: each allowed axis with probability 0.5, per sample
    if flip_axes:
        decisions = _rand(gen, b * len(flip_axes)).view(b, len(flip_axes)) < 0.5
        for i in range(b):
            dims = [2 + ax for ax, d in zip(flip_axes, decisions[i].tolist()) if d]
            if dims:
                image[i] = image[i].flip([d - 1 for d in dims])
                label[i] = label[i].flip([d - 1 for d in dims])
    # spatial: rotation / scaling via one affine grid per sample (only when triggered)
    rot_p, scale_p = float(aug.get("rotate_prob", 0)), float(aug.get("scale_prob", 0))
    if rot_p > 0 or scale_p > 0:
        do_rot = _rand(gen, b) < rot_p
        do_scale = _rand(gen, b) < scale_p
        angles = (_rand(gen, b * 3).view(b, 3) * 2 - 1) * float(aug.get("rotate_range", 0.26))
        scales = 1 + (_rand(gen, b) * 2 - 1) * float(aug.get("scale_range", 0.1))
        for i in range(b):
            if not (do_rot[i] or do_scale[i]):
                continue
            theta = torch.eye(3)
            if do_rot[i]:
                ax = angles[i] if not two_d else torch.tensor([0.0, 0.0, float(angles[i, 2])])
                theta = _rotation(*ax.tolist())
            if do_scale[i]:
                theta = theta * float(scales[i])
            mat = torch.cat([theta, torch.zeros(3, 1)], 1).unsqueeze(0)
            # affine_grid works in (D, H, W) = (X, Y, Z) order of our tensors, reversed coordinates
            grid = F.affine_grid(mat, image[i:i + 1].shape, align_corners=False)
            image[i:i + 1] = F.grid_sample(image[i:i + 1], grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=False)
            label[i:i + 1] = F.grid_sample(label[i:i + 1].float(), grid, mode="nearest", padding_mode="zeros",
                                           align_corners=False).to(label.dtype)
    # translation by whole voxels (zero fill), as in the strong fixed recipe of baselines.md
    shift = int(aug.get("translate", 0))
    if shift > 0:
        offs = (_rand(gen, b * 3).view(b, 3) * (2 * shift + 1)).long() - shift
        for i in range(b):
            o = offs[i].tolist()
            if two_d:
                o[2] = 0
            if any(o):
                image[i] = _shift(image[i], o)
                label[i] = _shift(label[i], o)
    # intensity: scale and shift (probability = the paper-a knob), gamma
    p_shift = float(aug.get("intensity_shift_prob", 0))
    if p_shift > 0:
        on = (_rand(gen, b) < p_shift).float().view(b, 1, 1, 1, 1)
        s = float(aug.get("intensity_scale", 0.1))
        t = float(aug.get("intensity_shift", 0.1))
        scale = 1 + (_rand(gen, b).view(b, 1, 1, 1, 1) * 2 - 1) * s * on
        offset = (_rand(gen, b).view(b, 1, 1, 1, 1) * 2 - 1) * t * on
        image.mul_(scale).add_(offset)
    p_gamma = float(aug.get("gamma_prob", 0))
    if p_gamma > 0:
        lo, hi = aug.get("gamma_range", [0.8, 1.25])
        on = _rand(gen, b) < p_gamma
        gammas = lo + _rand(gen, b) * (hi - lo)
        for i in range(b):
            if on[i]:
                x = image[i]
                mn, mx = x.amin(), x.amax()
                rng = (mx - mn).clamp_min(1e-6)
                image[i] = ((x - mn) / rng).pow(float(gammas[i])) * rng + mn
    return image, label


def _rotation(a: float, b: float, c: float) -> torch.Tensor:
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rx = torch.tensor([[1, 0, 0], [0, ca, -sa], [0, sa, ca]], dtype=torch.float32)
    ry = torch.tensor([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]], dtype=torch.float32)
    rz = torch.tensor([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]], dtype=torch.float32)
    return rz @ ry @ rx


def _shift(x: torch.Tensor, offsets: list[int]) -> torch.Tensor:
    """Shift a (C, X, Y, Z) tensor by integer voxels with zero fill."""
    out = torch.zeros_like(x)
    src, dst = [slice(None)], [slice(None)]
    for o, n in zip(offsets, x.shape[1:]):
        if o >= 0:
            src.append(slice(0, n - o)); dst.append(slice(o, n))
        else:
            src.append(slice(-o, n)); dst.append(slice(0, n + o))
    out[tuple(dst)] = x[tuple(src)]
    return out
