"""Segmentation networks of the three searched families and what the search needs to know about them.

``build_network(config["network"], in_channels, out_channels)`` returns a ``torch.nn.Module`` whose forward maps
(B, C, X, Y, Z) to logits (B, out, X, Y, Z); in train mode with ``deep_supervision`` it returns
``[full-resolution logits, 1/2-resolution logits, ...]``.  X, Y, Z must be multiples of ``size_divisor``.

- ``unet``   paper b's U-Net knobs (``unet.py``, MONAI blocks)
- ``segnas`` paper c's DAG-block network (``segnas.py``; sub-section ``network.segnas``)
- ``emonas`` paper d's cell network (``emonas.py``; sub-section ``network.emonas``)
"""
from __future__ import annotations

from torch import nn

from AutoSegCore.errors import ConfigError
from AutoSegCore.networks.emonas import EMONAS
from AutoSegCore.networks.measure import count_parameters, flops_per_voxel
from AutoSegCore.networks.proxy import proxy_network
from AutoSegCore.networks.segnas import SegNAS, segnas_is_legal, segnas_matrix
from AutoSegCore.networks.unet import UNet, unet_channels
from AutoSegCore.networks.validate import ARCH_DEFAULTS, validate_network, with_arch_defaults

ARCHS = {"unet": UNet, "segnas": SegNAS, "emonas": EMONAS}


def build_network(net_cfg: dict, in_channels: int, out_channels: int) -> nn.Module:
    """Build the network described by ``net_cfg`` (= ``config["network"]``); ``ConfigError`` if it cannot be built."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not (isinstance(value, int) and value >= 1):
            raise ConfigError(f"{name} = {value!r} must be a positive integer",
                              "pass the number of image channels / label classes (incl. background)")
    cfg = validate_network(net_cfg)
    return ARCHS[cfg["arch"]](cfg, in_channels, out_channels)


def size_divisor(net_cfg: dict) -> tuple[int, int, int]:
    """Every spatial size of a patch must be a multiple of this (2^number of poolings; 1 on the 2D slice axis)."""
    cfg = validate_network(net_cfg)
    arch = cfg["arch"]
    if arch == "unet":
        d = 2 ** (cfg["depth"] - 1)
        return (d, d, 1) if cfg["conv"] == "2d" else (d, d, d)
    d = 2 ** (cfg["segnas"]["poolings"] if arch == "segnas" else cfg["emonas"]["n_c"])
    return (d, d, d)


__all__ = ["build_network", "size_divisor", "count_parameters", "flops_per_voxel", "proxy_network",
           "segnas_is_legal", "segnas_matrix", "unet_channels", "validate_network", "with_arch_defaults",
           "ARCH_DEFAULTS", "UNet", "SegNAS", "EMONAS"]
