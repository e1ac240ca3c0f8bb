"""The BOHB thesis's configurable U-Net, assembled from MONAI's ``Convolution`` / ``ResidualUnit`` exactly as MONAI's
``UNet`` assembles them, plus what MONAI's ``UNet`` lacks: deep-supervision heads and per-level channel lists
from a multiplier.

Why not ``monai.networks.nets.UNet`` itself: it has no deep supervision and its recursive nesting hides the
decoder outputs the heads need.  ``DynUNet`` has deep supervision but a fixed two-conv block, so it cannot
express n_convs 0–3.  The layout is MONAI's ``UNet`` block for block (same blocks, same order of stride-2
convolutions, same transposed-conv decoder, same top), so a config with MONAI's channels trains like it.

Layout (d = depth = number of resolution levels, c_l = channels of level l):

    down_0 … down_{d-2}: block(c_{l-1} → c_l, kernel k_l, stride s_l)  (the first one takes the input channels)
    bottom:              block(c_{d-2} → c_{d-1}, kernel k_{d-1}, stride 1)
    up_{d-2} … up_1:     transposed conv(cat(skip_l, x) → c_{l-1}, kernel k_l, stride s_l) [+ 1-unit residual
                         refinement, kernel k_l]
    up_0 (top):          transposed conv(cat(skip_0, x) → classes, kernel k_0, stride s_0) [+ 1-unit residual whose
                         last convolution has no norm/activation]: its output is the logits, as in MONAI's UNet.

Why MONAI's top rather than c_0 features + a 1×1×1 head (nnU-Net's): measured on Hippocampus in a plain loop
(docs/performance.md), the head layout costs ≈ 50 % more time per step on CPU (norm, activation and a head at
full resolution on c_0 channels; 2.4× the FLOPs for the 16-channel net) and the 4-channel proxy network learned slower
per step with it (validation Dice 0.28/0.43 vs 0.59/0.65 after 200 steps, two seeds).

``block`` is one conv without residual path for n_convs = 0, else a ``ResidualUnit`` with n_convs sub-units.
k_l / s_l are 3³ / 2³ in 3D; 2D mode uses 3×3×1 / (2, 2, 1), so the slice axis (last) is never pooled.
``network.kernels`` / ``network.strides`` set them per level and axis instead, as nnU-Net's planner does for
anisotropic spacings (no pooling and 1-wide kernels along a coarse axis until it is within 2× of the finest).
Odd kernels with MONAI's same-padding and output_padding = stride − 1 give every up exactly its down's input size
back, axis by axis.
"""
from __future__ import annotations

import math

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from AutoSegCore.networks.layers import SPATIAL_DIMS, UNET_LEAKY_RELU, head, monai_norm


def unet_channels(net_cfg: dict) -> list[int]:
    """c_l = floor(c0 · m^l), at least 1, at most max_channels (the BOHB thesis §3.3.1: 'rounded down')."""
    c0, m = int(net_cfg["channels"]), float(net_cfg["multiplier"])
    cap = int(net_cfg.get("max_channels") or 10 ** 9)
    # the 1e-9 keeps products like 16·1.5² = 36 from flooring to 35 through rounding error
    return [min(cap, max(1, math.floor(c0 * m ** level + 1e-9))) for level in range(int(net_cfg["depth"]))]


Triple = tuple[int, int, int]


def unet_kernels(net_cfg: dict) -> tuple[list[Triple], list[Triple]]:
    """(kernels, strides): a kernel per level (depth) and a stride per pooling (depth − 1).

    ``network.kernels`` / ``network.strides`` where given, else what ``conv`` implies: 3³ / 2³ in 3D,
    3×3×1 / 2×2×1 in 2D."""
    depth = int(net_cfg["depth"])
    kernel, stride = ((3, 3, 1), (2, 2, 1)) if net_cfg.get("conv") == "2d" else ((3, 3, 3), (2, 2, 2))
    kernels, strides = net_cfg.get("kernels"), net_cfg.get("strides")
    return ([tuple(int(v) for v in k) for k in kernels] if kernels is not None else [kernel] * depth,
            [tuple(int(v) for v in st) for st in strides] if strides is not None else [stride] * (depth - 1))


class UNet(nn.Module):
    """The BOHB thesis's U-Net knobs (depth, channels, multiplier, 2D/3D, n_convs, norm, dropout, deep supervision)."""

    def __init__(self, net_cfg: dict, in_channels: int, out_channels: int) -> None:
        super().__init__()
        channels = unet_channels(net_cfg)
        kernels, strides = unet_kernels(net_cfg)
        n_convs = int(net_cfg["n_convs"])
        common = dict(act=UNET_LEAKY_RELU, norm=monai_norm(net_cfg["norm"]),
                      dropout=float(net_cfg.get("dropout") or 0.0) or None)
        self.deep_supervision = bool(net_cfg.get("deep_supervision"))

        def block(cin: int, cout: int, kernel, stride) -> nn.Module:
            if n_convs == 0:
                return Convolution(SPATIAL_DIMS, cin, cout, strides=stride, kernel_size=kernel, **common)
            return ResidualUnit(SPATIAL_DIMS, cin, cout, strides=stride, kernel_size=kernel, subunits=n_convs, **common)

        def up(cin: int, cout: int, kernel, stride, top: bool) -> nn.Module:
            conv = Convolution(SPATIAL_DIMS, cin, cout, strides=stride, kernel_size=kernel, is_transposed=True,
                               conv_only=top and n_convs == 0, **common)
            if n_convs == 0:
                return conv
            return nn.Sequential(conv, ResidualUnit(SPATIAL_DIMS, cout, cout, strides=1, kernel_size=kernel,
                                                    subunits=1, last_conv_only=top, **common))

        depth = len(channels)
        ins = [in_channels] + channels[:-2]
        self.downs = nn.ModuleList(block(ins[i], channels[i], kernels[i], strides[i]) for i in range(depth - 1))
        self.bottom = block(channels[-2], channels[-1], kernels[-1], 1)
        ups = []
        for i in range(depth - 1):          # up_i undoes down_i: its stride, its kernel
            cin = channels[i] + (channels[i + 1] if i == depth - 2 else channels[i])
            ups.append(up(cin, out_channels if i == 0 else channels[i - 1], kernels[i], strides[i], top=i == 0))
        self.ups = nn.ModuleList(ups)
        # heads on the decoder outputs at 1/2, 1/4, ... resolution (up_1 … up_{d-2}; per axis 1/(s_0 ⋯ s_{l-1}))
        self.heads = nn.ModuleList(head(channels[i - 1], out_channels) for i in range(1, depth - 1)) \
            if self.deep_supervision else nn.ModuleList()

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.bottom(x)
        lower: list[torch.Tensor] = []
        want_heads = self.deep_supervision and self.training
        for i in range(len(self.ups) - 1, -1, -1):
            x = self.ups[i](torch.cat([skips[i], x], dim=1))
            if want_heads and i >= 1:
                lower.append(self.heads[i - 1](x))
        if want_heads:
            return [x] + lower[::-1]   # full resolution first, then 1/2, 1/4, ...
        return x
