"""``build_network`` and ``size_divisor``: a validated ``config["network"]`` → a ``torch.nn.Module``."""
from __future__ import annotations

import math

from torch import nn

from AutoSegCore.errors import ConfigError
from AutoSegCore.networks.emonas import EMONAS
from AutoSegCore.networks.segnas import SegNAS
from AutoSegCore.networks.unet import UNet, unet_kernels
from AutoSegCore.networks.validate import validate_network

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
    """Every spatial size of a patch must be a multiple of this: per axis the product of the U-Net's strides
    (2^number of poolings; 1 on the 2D slice axis), 2^poolings for SegNAS / EMONAS."""
    cfg = validate_network(net_cfg)
    arch = cfg["arch"]
    if arch == "unet":
        strides = unet_kernels(cfg)[1]
        return tuple(math.prod(s[axis] for s in strides) for axis in range(3))
    d = 2 ** (cfg["segnas"]["poolings"] if arch == "segnas" else cfg["emonas"]["n_c"])
    return (d, d, d)
