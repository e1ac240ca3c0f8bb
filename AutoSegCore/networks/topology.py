"""The graphs inside SegNAS3D blocks and EMONAS-Net cells as plain data: which operations exist, how a block's
operation matrix is read from a config, which graphs can be built.

No torch here, so the checks of a network section (``validate.py``) and the lists the front ends ask for
(``AutoSegCore.choices``) need not load torch; ``segnas.py`` and ``emonas.py`` build the layers from these rules.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# ------------------------------------------------------------------------------------------ SegNAS3D blocks

# op number -> (kernel, dilation); 0 = no edge, 6 = skip (identity)   (SegNAS3D Table 1)
SEGNAS_OPS: dict[int, tuple[int, int] | None] = {0: None, 1: (1, 1), 2: (3, 1), 3: (5, 1), 4: (3, 2), 5: (5, 2), 6: None}
SEGNAS_OP_NAMES = {0: "none", 1: "conv(1,1)", 2: "conv(3,1)", 3: "conv(5,1)", 4: "conv(3,2)", 5: "conv(5,2)", 6: "skip"}
NONE, SKIP = 0, 6


def matrix_size(n_ops: int) -> int:
    """k such that a k×k upper triangle holds n_ops entries (1 → 2, 3 → 3, 6 → 4, ...); ValueError otherwise."""
    k = int(round((1 + math.sqrt(1 + 8 * n_ops)) / 2))
    if k * (k - 1) // 2 != n_ops or n_ops < 1:
        raise ValueError(f"{n_ops} ops do not fill an upper-triangular matrix (need 1, 3, 6, 10, ...)")
    return k


def segnas_matrix(ops: Sequence[int], nodes: int | None = None) -> np.ndarray:
    """Operation matrix (nodes × nodes) from the row-major upper-triangle list ``ops``."""
    k = matrix_size(len(ops))
    nodes = k if nodes is None else int(nodes)
    if not 2 <= nodes <= k:
        raise ValueError(f"nodes = {nodes} must be in 2–{k} for {len(ops)} ops")
    full = np.zeros((k, k), dtype=int)
    full[np.triu_indices(k, 1)] = [int(o) for o in ops]
    return full[:nodes, :nodes]


def segnas_is_legal(matrix) -> bool:
    """True when the block DAG can be built: square, strictly upper triangular, ops in 0–6, every intermediate
    node has an input and an output, and the last node is reachable from node 0."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        return False
    if not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() > 6 or np.tril(m).any():
        return False
    n = m.shape[0]
    has_out = (m[:-1] != NONE).any(axis=1)       # rows 0..n-2: a zero row is a sink
    has_in = (m[:, 1:] != NONE).any(axis=0)      # cols 1..n-1: a zero column is a source
    if not (has_out.all() and has_in.all()):
        return False
    reached = {0}
    for j in range(1, n):
        if any(m[i, j] != NONE and i in reached for i in range(j)):
            reached.add(j)
    return n - 1 in reached


# --------------------------------------------------------------------------------------- EMONAS-Net cells

# name -> (kind, k); the order is EMONAS-Net's Table 1
EMONAS_OPS: dict[str, tuple[str, int]] = {
    "conv3d_1": ("3d", 1), "conv3d_3": ("3d", 3), "conv3d_5": ("3d", 5),
    "conv2d_3": ("2d", 3), "conv2d_5": ("2d", 5), "conv2d_7": ("2d", 7),
    "p3d_3": ("p3d", 3), "p3d_5": ("p3d", 5), "p3d_7": ("p3d", 7),
    "identity": ("identity", 0),
}
EMONAS_NODES = 4


def loose_ends(inputs: Sequence[int]) -> list[int]:
    """Nodes (1-based) whose output no other node reads; their sum is the cell output."""
    read = {int(i) for i in inputs}
    return [k for k in range(1, EMONAS_NODES + 1) if k not in read]
