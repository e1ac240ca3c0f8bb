"""The report's plots as PNG data URIs (matplotlib, Agg canvas): self-contained HTML, no JS, no network.

Figures are built with ``matplotlib.figure.Figure`` + the Agg canvas directly rather than ``pyplot``, so no
global backend state or GUI is touched (safe inside Slicer or a server thread).  Each ``plot_*`` function
returns a data URI, or ``None`` when there is nothing to draw.
"""
from __future__ import annotations

import base64
import io
import math

import numpy as np
import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from AutoSegCore.report.analysis import trial_curve, trial_score

STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728"}
DPI = 90


def new_figure(width: float = 7.0, height: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _score_label(summary: dict) -> str:
    return "validation Dice" if summary["best_so_far"]["metric"] == "val_dice" or summary["directions"] == ["maximize"] \
        else "objective"


def plot_convergence(summary: dict) -> str | None:
    """Each trial's value and the best so far, against wall-clock and against epochs spent."""
    pts = summary["best_so_far"]["points"]
    if not any(p["value"] is not None for p in pts):
        return None
    fig = new_figure(9.5, 3.6)
    label = _score_label(summary)
    for ax, key, xlabel in zip(fig.subplots(1, 2), ("elapsed_seconds", "cumulative_epochs"),
                               ("wall-clock since the first trial (min)", "epochs trained, all trials")):
        scale = 60.0 if key == "elapsed_seconds" else 1.0
        for state, color in STATE_COLORS.items():
            xs = [p[key] / scale for p in pts if p["state"] == state and p["value"] is not None]
            ys = [p["value"] for p in pts if p["state"] == state and p["value"] is not None]
            if xs:
                ax.scatter(xs, ys, s=18, color=color, alpha=0.7, label=f"{state.lower()} trial")
        best = [(p[key] / scale, p["best"]) for p in pts if p["best"] is not None]
        if best:
            ax.step([b[0] for b in best], [b[1] for b in best], where="post", color="black", lw=1.6, label="best so far")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8, loc="lower right")
    return to_data_uri(fig)


def plot_slices(study: optuna.Study, max_params: int = 12) -> str | None:
    """Per-parameter slice plots: every completed trial's score against that parameter's value."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if trial_score(study, t) is not None]
    names = sorted({k for t in done for k in t.params})[:max_params]
    if not done or not names:
        return None
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = new_figure(3.0 * cols, 2.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    rng = np.random.default_rng(0)
    scores_all = [trial_score(study, t) for t in done]
    vmin, vmax = min(scores_all), max(scores_all)
    for ax, name in zip(axes, names):
        have = [t for t in done if name in t.params]
        dist = next((t.distributions[name] for t in have), None)
        ys = [trial_score(study, t) for t in have]
        numbers = [t.number for t in have]
        if isinstance(dist, CategoricalDistribution) or not all(isinstance(t.params[name], (int, float)) for t in have):
            cats = [str(c) for c in dist.choices] if isinstance(dist, CategoricalDistribution) else \
                sorted({str(t.params[name]) for t in have})
            xs = [cats.index(str(t.params[name])) + rng.uniform(-0.15, 0.15) for t in have]
            ax.set_xticks(range(len(cats)), cats, rotation=30 if max(map(len, cats)) > 6 else 0, fontsize=8)
        else:
            xs = [float(t.params[name]) for t in have]
            if isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log:
                ax.set_xscale("log")
        ax.scatter(xs, ys, c=numbers, cmap="Blues", vmin=-len(done) * 0.3, s=16, edgecolor="#333", lw=0.3)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(vmin - 0.05 * (vmax - vmin + 1e-9), vmax + 0.05 * (vmax - vmin + 1e-9))
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].set_ylabel("validation Dice" if len(study.directions) > 1 or
                       study.direction == optuna.study.StudyDirection.MAXIMIZE else "objective")
    return to_data_uri(fig)


def plot_importance(summary: dict) -> str | None:
    imp = summary["importance"]["importances"]
    if not imp:
        return None
    names = list(imp)[::-1]
    fig = new_figure(6.0, 0.45 * len(names) + 1.0)
    ax = fig.subplots()
    ax.barh(names, [imp[n] for n in names], color="#1f77b4")
    ax.set_xlabel(f"importance ({summary['importance']['method'].replace('ImportanceEvaluator', '')})")
    ax.grid(axis="x", alpha=0.3)
    return to_data_uri(fig)


def plot_tau(summary: dict) -> str | None:
    rows = summary["kendall_tau"]
    if not rows:
        return None
    fig = new_figure(6.5, 3.4)
    ax = fig.subplots()
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["tau"] for r in rows], "o-", color="#1f77b4", label="Kendall τ vs final ranking")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("τ")
    ax.axhline(0, color="grey", lw=0.8)
    ax2 = ax.twinx()
    ax2.plot(epochs, [r["z"] for r in rows], "s--", color="#2ca02c", ms=4, label="z (BOHB thesis Eq. 3.1)")
    ax2.axhline(1.96, color="#2ca02c", lw=0.8, ls=":")
    ax2.set_ylabel("z")
    lines = ax.get_lines()[:1] + ax2.get_lines()[:1]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def plot_pareto(study: optuna.Study, summary: dict) -> str | None:
    front = summary["pareto_front"]
    if len(study.directions) != 2 or not front:
        return None
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    fig = new_figure(6.0, 4.0)
    ax = fig.subplots()
    ax.scatter([t.values[0] for t in done], [t.values[1] for t in done], s=16, color="#aaa", label="trials")
    fx, fy = [p["values"][0] for p in front], [p["values"][1] for p in front]
    ax.plot(fx, fy, "o-", color="#d62728", label="Pareto front", ms=6)
    for p in front:
        ax.annotate(f"#{p['trial']}", (p["values"][0], p["values"][1]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    names = study.metric_names or ["objective 1", "objective 2"]
    ax.set_xlabel(f"{names[0]} ({study.directions[0].name.lower()})")
    ax.set_ylabel(f"{names[1]} ({study.directions[1].name.lower()})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def plot_per_class(summary: dict) -> tuple[str | None, str]:
    """Per-class Dice of the final model (ensemble and members); falls back to the best trial's search Dice
    (proxy fidelity)."""
    final = summary.get("final") or {}
    series: dict[str, dict] = {}
    source = ""
    if (final.get("ensemble") or {}).get("val_dice_per_class"):
        members = final.get("members") or []
        if len(members) > 1:
            for m in members:
                if m.get("val_dice_per_class"):
                    series[f"member trial #{m.get('trial')}"] = m["val_dice_per_class"]
        series["final model" if len(members) <= 1 else "ensemble"] = final["ensemble"]["val_dice_per_class"]
        source = "final model (full fidelity), validation cases"
    elif (summary.get("best") or {}).get("val_dice_per_class"):
        series["best trial (search fidelity)"] = summary["best"]["val_dice_per_class"]
        source = "best search trial at search fidelity — no final training found"
    if not series:
        return None, ""
    classes = list(next(iter(series.values())))
    fig = new_figure(max(4.0, 1.2 * len(classes) + 2.5) + (1.6 if len(series) > 1 else 1.2), 3.4)
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (name, per) in enumerate(series.items()):
        xs = np.arange(len(classes)) + (i - (len(series) - 1) / 2) * width
        vals = [per.get(c) or 0.0 for c in classes]
        bars = ax.bar(xs, vals, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(classes)), classes, rotation=30 if len(classes) > 5 else 0)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("Dice")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return to_data_uri(fig), source


def plot_learning_curves(study: optuna.Study, max_trials: int = 200) -> str | None:
    """Validation Dice per epoch of every trial, coloured by its final score; pruned trials dashed."""
    trials = [t for t in study.get_trials(deepcopy=False) if trial_curve(t)][:max_trials]
    if not trials:
        return None
    from matplotlib import colormaps

    cmap = colormaps["RdYlGn"]
    finals = [list(trial_curve(t).values())[-1] for t in trials]
    lo, hi = min(finals), max(finals)
    fig = new_figure(7.0, 3.8)
    ax = fig.subplots()
    for t, f in zip(trials, finals):
        c = trial_curve(t)
        pruned = t.state == TrialState.PRUNED
        ax.plot(list(c), list(c.values()), ls="--" if pruned else "-", lw=0.9 if pruned else 1.3,
                color=cmap((f - lo) / (hi - lo) if hi > lo else 1.0), alpha=0.85)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice")
    ax.set_title("green = best final score, red = worst; dashed = pruned", fontsize=8)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def plot_proxy_vs_full(summary: dict) -> str | None:
    pvf = summary["proxy_vs_full"]
    if not pvf["pairs"]:
        return None
    fig = new_figure(4.5, 4.0)
    ax = fig.subplots()
    xs, ys = [p["proxy"] for p in pvf["pairs"]], [p["full"] for p in pvf["pairs"]]
    ax.scatter(xs, ys, color="#1f77b4")
    for p in pvf["pairs"]:
        ax.annotate(f"#{p['trial']}", (p["proxy"], p["full"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    lo, hi = min(xs + ys), max(xs + ys)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("search validation Dice (proxy fidelity)")
    ax.set_ylabel("final (full) validation Dice")
    ax.grid(alpha=0.3)
    return to_data_uri(fig)
