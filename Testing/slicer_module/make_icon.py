"""Render the extension/module icon (128x128 PNG) with matplotlib: an image slice, a coloured mask, a search lens.

Run: python Testing/slicer_module/make_icon.py  (writes Resources/Icons/ and AutoSegSearch/Resources/Icons/)."""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, FancyBboxPatch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TARGETS = [REPO / "Resources" / "Icons" / "AutoSegSearch.png",
           REPO / "AutoSegSearch" / "Resources" / "Icons" / "AutoSegSearch.png"]


def draw(path: Path) -> None:
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 128)
    ax.set_ylim(0, 128)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((4, 4), 120, 120, boxstyle="round,pad=0,rounding_size=18",
                                facecolor="#1f2a36", edgecolor="none"))
    # an MR-like slice: smooth blob with texture, as RGBA so the rounded background shows around it
    y, x = np.mgrid[0:96, 0:96]
    r = np.hypot((x - 48) / 42, (y - 48) / 36)
    grey = np.clip(1.15 - r, 0, 1) * (0.7 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0))
    rgba = np.dstack([grey, grey, grey, np.clip((1.0 - r) * 6, 0, 1)])
    ax.imshow(rgba, extent=(10, 106, 18, 114), interpolation="bilinear", zorder=1)
    # two predicted structures
    ax.add_patch(Circle((46, 72), 15, facecolor="#e69f00", alpha=0.8, edgecolor="#ffd27f", lw=1.5, zorder=2))
    ax.add_patch(Circle((66, 58), 11, facecolor="#56b4e9", alpha=0.8, edgecolor="#b5e3ff", lw=1.5, zorder=2))
    # search lens with its handle towards the lower right
    ax.add_patch(Circle((82, 44), 18, facecolor="none", edgecolor="white", lw=4.5, zorder=3))
    ax.plot([95, 114], [31, 12], color="white", lw=7, solid_capstyle="round", zorder=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, transparent=True)
    plt.close(fig)


if __name__ == "__main__":
    for target in TARGETS:
        draw(target)
        print(target)
    sys.exit(0)
