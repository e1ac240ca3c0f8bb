"""Shared layer choices of the three architectures, so norm/activation names are spelled in one place.

Every convolution is a MONAI ``Convolution`` (conv → norm → activation, MONAI's "NDA" order); we only pick the
MONAI names here.
"""
from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Norm
from torch import nn

SPATIAL_DIMS = 3


class InstanceNormKeepLayout(nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` whose output keeps a channels-last input's memory format.

    torch's ``instance_norm`` returns NCDHW whatever the input; in a channels-last net (the CPU default,
    docs/performance.md) the next convolution then copies it back, and a residual add or a gradient that mixes
    the two layouts runs ≈ 10× slower than one in a single layout (3.8 vs 0.3 ms at 4 × 3 × 48 × 64 × 48, bf16).
    Same function and (empty) state dict as ``nn.InstanceNorm3d``."""

    def forward(self, x):
        out = super().forward(x)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
            out = out.contiguous(memory_format=torch.channels_last_3d)
        return out


if "INSTANCE_KEEP_LAYOUT" not in Norm.names:
    Norm.add_factory_callable("INSTANCE_KEEP_LAYOUT", lambda dim: InstanceNormKeepLayout if dim == 3 else
                              Norm["INSTANCE", dim])
NORMS = {"instance": "INSTANCE_KEEP_LAYOUT", "batch": "BATCH"}
LEAKY_RELU = ("LEAKYRELU", {"negative_slope": 0.01, "inplace": True})
RELU = ("RELU", {"inplace": True})
# The U-Net's activation: a LeakyReLU with slope 0.2 (MONAI's PReLU starts at 0.25).  Its top decoder level has as
# many channels as classes (MONAI's layout); nnU-Net's 0.01 turns that into a near-ReLU bottleneck.  Measured in a
# plain loop on Hippocampus (docs/performance.md), validation Dice after 200 steps, two seeds: full net 0.32/0.35
# with 0.01 vs 0.81/0.81 with 0.2 (PReLU 0.81/0.81); 4-channel proxy network 0.29/0.30 (ReLU 0.25/0.30) vs 0.59/0.65.
UNET_LEAKY_RELU = ("LEAKYRELU", {"negative_slope": 0.2, "inplace": True})


def monai_norm(name: str) -> str:
    return NORMS[name]


def conv_norm_act(cin: int, cout: int, kernel: int | Sequence[int] = 3, *, norm: str, act=LEAKY_RELU,
                  dilation: int = 1, dropout: float = 0.0) -> nn.Module:
    """A 'same'-padded convolution followed by normalisation and activation."""
    return Convolution(SPATIAL_DIMS, cin, cout, kernel_size=kernel, dilation=dilation, norm=monai_norm(norm),
                       act=act, dropout=dropout or None)


def up_conv(cin: int, cout: int, *, norm: str, act=LEAKY_RELU) -> nn.Module:
    """×2 transposed-convolution upsampling (kernel 2, stride 2: each input voxel paints one 2³ output cell)."""
    return Convolution(SPATIAL_DIMS, cin, cout, strides=2, kernel_size=2, norm=monai_norm(norm), act=act,
                       is_transposed=True, padding=0, output_padding=0)


def head(cin: int, cout: int) -> nn.Module:
    """1×1×1 convolution to class logits (no norm, no activation)."""
    return Convolution(SPATIAL_DIMS, cin, cout, kernel_size=1, conv_only=True)


class SkipEncoderDecoder(nn.Module):
    """The U-shaped forward shared by SegNAS and EMONAS: ``encoder`` blocks with ``pool`` between them, then per
    level ``ups`` → concatenation with the skip → ``decoder`` block, ``out`` at full resolution, and in train mode
    with ``deep_supervision`` the ``heads`` of the lower decoder levels (returned full resolution first)."""

    encoder: nn.ModuleList
    decoder: nn.ModuleList
    ups: nn.ModuleList
    heads: nn.ModuleList
    pool: nn.Module
    out: nn.Module
    deep_supervision: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        want_heads = self.deep_supervision and self.training
        lower = []
        for level in range(len(self.decoder) - 1, -1, -1):
            x = self.decoder[level](torch.cat([skips[level], self.ups[level](x)], dim=1))
            if want_heads and level >= 1:
                lower.append(self.heads[level - 1](x))
        logits = self.out(x)
        return [logits] + lower[::-1] if want_heads else logits
