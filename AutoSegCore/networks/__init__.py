"""Segmentation networks of the three searched families and what the search needs to know about them.

``build_network(config["network"], in_channels, out_channels)`` returns a ``torch.nn.Module`` whose forward maps
(B, C, X, Y, Z) to logits (B, out, X, Y, Z); in train mode with ``deep_supervision`` it returns
``[full-resolution logits, 1/2-resolution logits, ...]``.  X, Y, Z must be multiples of ``size_divisor``.

- ``unet``   the U-Net search's knobs (``unet.py``, MONAI blocks)
- ``segnas`` SegNAS's DAG-block network (``segnas.py``; sub-section ``network.segnas``)
- ``emonas`` EMONAS's cell network (``emonas.py``; sub-section ``network.emonas``)

This ``__init__`` imports nothing (no torch): the names below are loaded from their module on first use, so
``AutoSegCore.config`` can read the network's choices and defaults (``networks.defaults``) without torch, and
no module of the package imports the package back.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "build_network": "build", "size_divisor": "build", "ARCHS": "build",
    "count_parameters": "measure", "flops_per_voxel": "measure", "proxy_network": "proxy",
    "segnas_is_legal": "topology", "segnas_matrix": "topology", "SegNAS": "segnas", "EMONAS": "emonas",
    "unet_channels": "unet", "UNet": "unet",
    "validate_network": "validate", "with_arch_defaults": "validate", "ARCH_DEFAULTS": "defaults",
    "NETWORK_DEFAULTS": "defaults", "NETWORK_CHOICES": "defaults",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
