"""SegNAS3D: blocks coded as a DAG by an upper-triangular operation matrix, connected U-Net-style.

Block (SegNAS3D §2.1): node 0 is the block input, node ``nodes-1`` its output; entry (i, j), i < j, is the
operation on the edge i → j (``OPS``); a node's value is the *sum* of its incoming edges (the paper sums because
concatenation ran out of memory).  Only node 0 may be a source and only the last node a sink, otherwise the
block cannot be built (``segnas_is_legal``).

Network (SegNAS3D §2.2, Fig. 1): ``poolings + 1`` levels of MegaBlocks (block + spatial dropout + optional
residual connection), channels ``filters · 2^level`` (doubled after each max pooling, halved after each
upsampling), optional deep supervision.  Blocks share one operation matrix.

Our choices where the paper is silent: a MegaBlock first maps its input to its channel count with a 1×1×1
conv + norm + ReLU (the block's ops keep channels, so something must change them; the residual connection adds
this projected input to the block output); upsampling is a 2×2×2 transposed conv + norm + ReLU; the decoder
concatenates the encoder skip before its MegaBlock; normalisation is the config's (paper: batch norm).

The ops list of the config is the row-major upper triangle of a k×k matrix (1, 3 or 6 entries for k = 2, 3, 4);
with ``nodes`` < k only the top-left nodes×nodes part is used (SegNAS3D Table 3: "strikethrough ops ... not used").
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from AutoSegCore.networks.layers import RELU, SkipEncoderDecoder, conv_norm_act, head, up_conv
# the block's graph rules (ops, matrix, legality) live torch-free in topology.py; re-exported for this module's users
from AutoSegCore.networks.topology import (NONE, SEGNAS_OP_NAMES as OP_NAMES, SEGNAS_OPS as OPS, SKIP,  # noqa: F401
                                          matrix_size, segnas_is_legal, segnas_matrix)


class SegNASBlock(nn.Module):
    """One block: node values are sums of the ops on their incoming edges; returns the last node."""

    def __init__(self, channels: int, matrix: np.ndarray, norm: str) -> None:
        super().__init__()
        self.nodes = matrix.shape[0]
        self.edges = nn.ModuleDict()
        for i, j in zip(*np.nonzero(matrix)):
            op = int(matrix[i, j])
            kernel_dilation = OPS[op]                 # None for SKIP
            self.edges[f"{i}_{j}"] = nn.Identity() if op == SKIP else \
                conv_norm_act(channels, channels, kernel_dilation[0], dilation=kernel_dilation[1], norm=norm, act=RELU)
        self.inputs = [[int(i) for i in np.nonzero(matrix[:, j])[0]] for j in range(self.nodes)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [x]
        for j in range(1, self.nodes):
            total = None
            for i in self.inputs[j]:
                y = self.edges[f"{i}_{j}"](values[i])
                total = y if total is None else total + y
            values.append(total)
        return values[-1]


class MegaBlock(nn.Module):
    """1×1×1 projection to ``cout`` → block → spatial dropout → (+ projected input if residual)."""

    def __init__(self, cin: int, cout: int, matrix: np.ndarray, *, residual: bool, dropout: float,
                 norm: str) -> None:
        super().__init__()
        self.project = conv_norm_act(cin, cout, 1, norm=norm, act=RELU) if cin != cout else nn.Identity()
        self.block = SegNASBlock(cout, matrix, norm)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        y = self.dropout(self.block(x))
        return y + x if self.residual else y


class SegNAS(SkipEncoderDecoder):
    """Encoder–decoder of MegaBlocks with ``poolings`` max poolings and ``filters`` first-level channels."""

    def __init__(self, net_cfg: dict, in_channels: int, out_channels: int) -> None:
        super().__init__()
        s = net_cfg["segnas"]
        matrix = segnas_matrix(s["ops"], s["nodes"])
        p, n, norm = int(s["poolings"]), int(s["filters"]), net_cfg["norm"]
        mega = dict(matrix=matrix, residual=bool(s["residual"]), dropout=float(net_cfg.get("dropout") or 0.0),
                    norm=norm)
        chans = [n * 2 ** level for level in range(p + 1)]
        self.encoder = nn.ModuleList(
            MegaBlock(in_channels if level == 0 else chans[level - 1], chans[level], **mega) for level in range(p + 1))
        self.pool = nn.MaxPool3d(2)
        self.ups = nn.ModuleList(up_conv(chans[level + 1], chans[level], norm=norm, act=RELU) for level in range(p))
        self.decoder = nn.ModuleList(MegaBlock(2 * chans[level], chans[level], **mega) for level in range(p))
        self.out = head(chans[0], out_channels)
        self.deep_supervision = bool(net_cfg.get("deep_supervision"))
        self.heads = nn.ModuleList(head(chans[level], out_channels) for level in range(1, p)) \
            if self.deep_supervision else nn.ModuleList()
