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
