"""EMONAS-Net: an encoder–decoder of 2·n_c + 1 identical cells with 2^n_f first-level filters.

Cell (EMONAS-Net Table 2): four nodes; node 1 reads the cell input, node k ∈ {2, 3, 4} reads I_k ∈ {0 = the cell
input, 1 … k-1 = node j}; node k applies operation O_k (``OPS``: 3D, 2D k×k×1 and pseudo-3D k×k×1 → 1×1×k
convolutions, or identity).  Each convolution is followed by the config's norm and LeakyReLU.

Our choices where the slides are silent: the cell first maps its input to its filter count with a 1×1×1
conv + norm + activation (so every node works at one width and identity is always possible); the cell output
is the sum of the nodes no other node reads (NASNet/ENAS "loose ends"; node 4 is always one); the macro
structure is a U-Net: n_c encoder cells each followed by 2×2×2 max pooling, one bottleneck cell, n_c decoder
cells each after a 2×2×2 transposed-conv upsampling concatenated with the encoder skip; filters double per level.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from AutoSegCore.networks.layers import LEAKY_RELU, SkipEncoderDecoder, conv_norm_act, head, up_conv
from AutoSegCore.networks.topology import EMONAS_NODES as N_NODES, EMONAS_OPS as OPS, loose_ends  # noqa: F401


def make_op(name: str, channels: int, norm: str) -> nn.Module:
    kind, k = OPS[name]
    if kind == "identity":
        return nn.Identity()
    if kind == "3d":
        return conv_norm_act(channels, channels, k, norm=norm, act=LEAKY_RELU)
    if kind == "2d":
        return conv_norm_act(channels, channels, (k, k, 1), norm=norm, act=LEAKY_RELU)
    return nn.Sequential(conv_norm_act(channels, channels, (k, k, 1), norm=norm, act=LEAKY_RELU),
                         conv_norm_act(channels, channels, (1, 1, k), norm=norm, act=LEAKY_RELU))


class EMONASCell(nn.Module):
    def __init__(self, cin: int, cout: int, inputs: Sequence[int], ops: Sequence[str], norm: str) -> None:
        super().__init__()
        self.project = conv_norm_act(cin, cout, 1, norm=norm, act=LEAKY_RELU) if cin != cout else nn.Identity()
        self.ops = nn.ModuleList(make_op(name, cout, norm) for name in ops)
        self.sources = [0] + [int(i) for i in inputs]   # node 1 reads the cell input
        self.outputs = loose_ends(inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [self.project(x)]
        for op, src in zip(self.ops, self.sources):
            values.append(op(values[src]))
        out = values[self.outputs[0]]
        for k in self.outputs[1:]:
            out = out + values[k]
        return out


class EMONAS(SkipEncoderDecoder):
    def __init__(self, net_cfg: dict, in_channels: int, out_channels: int) -> None:
        super().__init__()
        e, norm = net_cfg["emonas"], net_cfg["norm"]
        n_c, filters = int(e["n_c"]), 2 ** int(e["n_f"])
        chans = [filters * 2 ** level for level in range(n_c + 1)]
        cell = dict(inputs=e["inputs"], ops=e["ops"], norm=norm)
        self.encoder = nn.ModuleList(
            EMONASCell(in_channels if level == 0 else chans[level - 1], chans[level], **cell)
            for level in range(n_c + 1))                                   # the last one is the bottleneck
        self.pool = nn.MaxPool3d(2)
        self.ups = nn.ModuleList(up_conv(chans[level + 1], chans[level], norm=norm) for level in range(n_c))
        self.decoder = nn.ModuleList(EMONASCell(2 * chans[level], chans[level], **cell) for level in range(n_c))
        self.out = head(chans[0], out_channels)
        self.deep_supervision = bool(net_cfg.get("deep_supervision"))
        self.heads = nn.ModuleList(head(chans[level], out_channels) for level in range(1, n_c)) \
            if self.deep_supervision else nn.ModuleList()
