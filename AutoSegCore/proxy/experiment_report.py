"""The proxy-correlation experiment's report: its plots (``correlation.png``, ``dice_vs_data.png``) and its
summary as a Markdown table, from the ``data`` that :func:`AutoSegCore.proxy.experiment.run_proxy_correlation`
writes (its ``runs`` and ``summary``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from AutoSegCore.utils.io import atomic_path

def write_plots(data: dict, out: Path) -> list[Path]:
    """``correlation.png`` (Dice at a proxy rung — proxy data or a proxy network — vs full Dice, one panel per
    rung) and ``dice_vs_data.png`` (Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, summary = data["runs"], data["summary"]
    full = {r["config"]: r["dice"] for r in runs if r["rung"] == "full"}
    keys = [k for k in summary if k != "full"]
    cols = min(4, max(1, len(keys)))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.1 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(full[r["config"]], r["dice"]) for r in runs if r["rung"] == key]
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, s=22)
        for r in runs:
            if r["rung"] == key:
                ax.annotate(r["config"], (full[r["config"]], r["dice"]), fontsize=5, alpha=0.7)
        p, s = summary[key].get("pearson"), summary[key].get("spearman")
        ax.set_title(f"{key}\nr={_fmt(p)}  ρ={_fmt(s)}", fontsize=8)
        ax.set_xlabel("Dice, full data / full net", fontsize=7)
        ax.set_ylabel("Dice, proxy rung", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    paths = [_save(fig, out / "correlation.png")]
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    methods = sorted({r["method"] for r in runs if r["budget"] is not None})
    full_dice = [r["dice"] for r in runs if r["rung"] == "full"]
    for m in methods:
        pts: dict[float, list[float]] = {}
        for r in runs:
            if r["method"] == m:
                pts.setdefault(r["data_fraction"], []).append(r["dice"])
        pts.setdefault(1.0, full_dice)
        xs = sorted(pts)
        ax.errorbar(xs, [np.mean(pts[x]) for x in xs], yerr=[np.std(pts[x]) for x in xs], marker="o", capsize=3,
                    label=m, alpha=0.85)
    ax.set_xlabel("fraction of the training pool trained on")
    ax.set_ylabel("held-back Dice (mean ± sd over configs)")
    ax.set_title("Dice vs data usage (proxy paper, Fig. 4)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(_save(fig, out / "dice_vs_data.png"))
    plt.close(fig)
    return paths


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def format_table(data: dict) -> str:
    """The summary as a Markdown table (what docs/experiments.md shows)."""
    lines = ["| rung | train cases | Pearson r | Spearman ρ | Dice mean (min–max) | s per run | speed-up | best config = full's |",
             "|---|---|---|---|---|---|---|---|"]
    for key, row in data["summary"].items():
        corr = "—" if key == "full" else _fmt(row.get("pearson"))
        spear = "—" if key == "full" else _fmt(row.get("spearman"))
        lines.append(f"| {key} | {row['train_cases']} | {corr} | {spear} | {row['dice_mean']:.3f} "
                     f"({row['dice_min']:.3f}–{row['dice_max']:.3f}) | {row['seconds_mean']:.1f} | "
                     f"{row['speedup']:.2f}× | {'yes' if row['best_matches_full'] else 'no'} |")
    return "\n".join(lines)
