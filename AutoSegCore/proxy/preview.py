"""A PNG montage of the chosen proxy-data cases, so a user can see at a glance what the selection kept.

One tile per selected case: the middle slice (through the label's centre when there is one) of the first
channel in grey, the label in colour on top, and the case's name, rank and score in the title.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from AutoSegCore.proxy.selection import ProxySelection, _open_dataset
from AutoSegCore.utils.io import atomic_path


def _middle_slice(image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Axial (last-axis) slice through the label's centre of mass, or the volume's middle."""
    z = image.shape[-1] // 2
    if label is not None and (label > 0).any():
        z = int(round(np.nonzero(label > 0)[2].mean()))
    img = image[0, :, :, z].T
    lbl = label[:, :, z].T if label is not None else None
    return img, lbl


def render_preview(selection: ProxySelection, dataset, path: str | Path, *, columns: int | None = None) -> Path:
    """Write a montage PNG of ``selection.selected`` (images with labels overlaid) atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from AutoSegCore.data.dataset import read_case

    ds = _open_dataset(dataset)
    names = list(selection.selected)
    cols = columns or min(5, max(1, len(names)))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    colours = ListedColormap(plt.get_cmap("tab10").colors)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        arrays = read_case(ds.case(name))
        img, lbl = _middle_slice(arrays.image, arrays.label)
        lo, hi = np.percentile(img, [1, 99]) if img.size else (0, 1)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower")
        if lbl is not None and (lbl > 0).any():
            ax.imshow(np.ma.masked_where(lbl == 0, lbl % 10), cmap=colours, vmin=0, vmax=9, alpha=0.5,
                      origin="lower", interpolation="nearest")
        score = selection.scores.get(name)
        rank = selection.ranks.get(name)
        role = "val" if name in selection.val else "train"
        title = f"{name} ({role})"
        if score is not None:
            title += f"\n#{rank} {selection.method.upper()} {score:.4g}"
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"proxy data: {selection.method}, roi={selection.roi}, {len(names)} of {len(selection.cases)} cases",
                 fontsize=10)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return target
