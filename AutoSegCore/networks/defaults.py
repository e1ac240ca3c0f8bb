"""The network section's choices and defaults (torch-free): owned here, read by ``AutoSegCore.config``.

``AutoSegCore.config`` merges ``NETWORK_DEFAULTS`` into ``DEFAULT_CONFIG["network"]`` and checks the keys with
``NETWORK_CHOICES``; ``networks.validate`` checks a whole network section with the same lists.
"""
from __future__ import annotations

from typing import Any

NETWORK_DEFAULTS: dict[str, Any] = {
    "arch": "unet",          # unet | segnas | emonas
    "depth": 4,              # number of resolution levels (the U-Net search paper: 2–6)
    "channels": 16,          # channels in the first level (2^3–2^7)
    "multiplier": 2.0,       # channel multiplier per level (0.5–3, channels floored)
    "conv": "3d",            # 3d | 2d (k×k×1 kernels)
    "n_convs": 2,            # convolutions per level; 0 = one convolution without residual path
    "norm": "instance",      # instance | batch
    "deep_supervision": False,
    "max_channels": 320,
    "dropout": 0.0,
    # unet only, None = what conv implies: per-level kernel triples (depth of them, odd 1–7) and per-pooling stride
    # triples (depth − 1, each 1 or 2), as nnU-Net's planner gives them for anisotropic spacings
    "kernels": None,
    "strides": None,
}

NETWORK_CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ("unet", "segnas", "emonas"),
    "conv": ("3d", "2d"),
    "norm": ("instance", "batch"),
}

# Defaults of the arch-specific sub-sections (SegNAS: V-Net-like n=16, p=4, residual, a 2-conv block;
# ops are the 4×4 upper triangle, of which nodes = 3 use (0,1) and (1,2): two cascaded conv(3,1), as SegNAS4;
# EMONAS: the Hippocampus optimum of its slides, 7 cells, 32 filters).
ARCH_DEFAULTS: dict[str, dict] = {
    "segnas": {"filters": 16, "poolings": 4, "residual": True, "nodes": 3, "ops": [2, 0, 0, 2, 0, 0]},
    "emonas": {"inputs": [0, 1, 1], "ops": ["conv3d_3", "p3d_3", "p3d_3", "conv2d_5"], "n_c": 3, "n_f": 5},
}
