"""The training canvas: the patch every step cuts, from the cases' shapes and the network's size divisor."""
from __future__ import annotations

import numpy as np

MAX_PATCH_VOXELS = 96 * 96 * 96   # CPU-friendly default; a user/config patch_size overrides it


def round_up(value: int, divisor: int) -> int:
    return int(-(-value // divisor) * divisor)


def choose_patch(shapes: list[tuple[int, ...]], divisor: tuple[int, int, int], requested=None,
                 max_voxels: int = MAX_PATCH_VOXELS) -> tuple[int, int, int]:
    """The training canvas: the largest case shape (whole volumes fit) unless that exceeds ``max_voxels``."""
    if requested:
        return tuple(round_up(int(s), d) for s, d in zip(requested, divisor))
    canvas = [round_up(max(s[i] for s in shapes), divisor[i]) for i in range(3)]
    while np.prod(canvas) > max_voxels:
        i = int(np.argmax(canvas))
        if canvas[i] <= divisor[i]:
            break
        canvas[i] -= divisor[i]
    return tuple(int(c) for c in canvas)
