"""Shared layer choices of the three architectures, so norm/activation names are spelled in one place.

Every convolution is a MONAI ``Convolution`` (conv → norm → activation, MONAI's "NDA" order); we only pick the
MONAI names here.
"""
from __future__ import annotations

from typing import Sequence

from monai.networks.blocks import Convolution
from torch import nn

SPATIAL_DIMS = 3
NORMS = {"instance": "INSTANCE", "batch": "BATCH"}
LEAKY_RELU = ("LEAKYRELU", {"negative_slope": 0.01, "inplace": True})
RELU = ("RELU", {"inplace": True})
# The U-Net's activation: a LeakyReLU with slope 0.2 (MONAI's PReLU starts at 0.25).  Its top decoder level has as
# many channels as classes (MONAI's layout); nnU-Net's 0.01 turns that into a near-ReLU bottleneck.  Measured in a
# plain loop on Hippocampus (docs/performance.md), validation Dice after 200 steps, two seeds: full net 0.32/0.35
# with 0.01 vs 0.81/0.81 with 0.2 (PReLU 0.81/0.81); 4-channel proxy 0.29/0.30 (ReLU 0.25/0.30) vs 0.59/0.65.
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
