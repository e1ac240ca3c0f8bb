"""The proxy-correlation experiment of the proxy paper (§4.2, Fig. 2–4): do cheap proxies rank hyper-parameters like the
full training does?

For every point of a small hyper-parameter grid (the proxy paper's optimisers × learning rates) one model is trained at
each rung of the fidelity ladder — all training data with the full net (the reference), proxy data chosen by
MI, MI+ROI, NCC, NCC+ROI and at random (same budget, full net), and the proxy nets of 5/4/3 levels on all
data.  Every model is scored on the same held-back cases, which are never in any training set nor in the
pool the proxy data are chosen from.  The report is, per rung, the Pearson and Spearman correlation of its Dice
with the full rung's Dice across the grid, the Dice it reached and the wall-clock it took.

Each finished run leaves ``runs/<config>/<rung>/result.json``; a re-run with the same settings skips those, and
a run cut off mid-training resumes from its checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from AutoSegCore.config import make_config
from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.proxy.experiment_report import format_table, write_plots
from AutoSegCore.proxy.fidelity import Fidelity
from AutoSegCore.utils.io import read_json, write_json

__all__ = ["run_proxy_correlation", "summarise", "correlation", "grid_configs", "ladder_rungs", "format_table",
           "write_plots", "Rung", "ExperimentResult"]

FORMAT = "autoseg-proxy-correlation/1"

#: The proxy paper §4.2 explores φ = {Adam, RMSProp, Adamax, Novograd} × δ = {1e-3, 6e-4, 4e-4, 1e-4}; "small" keeps the
#: ends of the learning-rate range and three of the optimisers so the whole experiment fits 30 CPU minutes.
GRIDS: dict[str, dict[str, list]] = {
    "small": {"optimizer": ["adam", "rmsprop", "novograd"], "lr": [1e-3, 1e-4]},
    "paper": {"optimizer": ["adam", "rmsprop", "adamax", "novograd"], "lr": [1e-3, 6e-4, 4e-4, 1e-4]},
}

#: Proxy-data methods of the proxy paper: (similarity, label ROI).
DATA_METHODS: tuple[tuple[str, bool], ...] = (("mi", False), ("mi", True), ("ncc", False), ("ncc", True),
                                              ("random", False))
NET_LEVELS: tuple[int, ...] = (5, 4, 3)

#: Defaults sized so 6 configs × 9 rungs finish on Hippocampus on 2 shared CPU cores in ≤ 30 minutes.
DEFAULT_EPOCHS = 2
DEFAULT_STEPS = 30
DEFAULT_HOLDOUT = 0.2


@dataclass
class Rung:
    """One fidelity of the ladder plus the data budget it was selected with."""
    fidelity: Fidelity

    @property
    def net_tag(self) -> str | None:
        """'net3' for the proxy paper's levels rule, 'net3w0.25' / 'netw0.25' with a width rule, None for the full net."""
        f = self.fidelity
        if f.net_levels is None and f.net_width is None:
            return None
        return f"net{f.net_levels or ''}" + ("" if f.net_width is None else f"w{f.net_width:g}")

    @property
    def key(self) -> str:
        f = self.fidelity
        if f.is_full:
            return "full"
        if f.data_method is None:
            return self.net_tag
        name = f"{f.data_method}{'+roi' if f.roi else ''}@{f.budget:g}"
        return name if self.net_tag is None else f"{name}/{self.net_tag}"

    @property
    def method(self) -> str:
        """The label a table or plot groups by (budget left out)."""
        f = self.fidelity
        if f.is_full:
            return "full"
        if f.data_method is None:
            return self.net_tag
        return f"{f.data_method}{'+roi' if f.roi else ''}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.key)


@dataclass
class ExperimentResult:
    """What ``results.json`` holds, plus bookkeeping of this invocation (``trained`` / ``skipped`` runs)."""
    out_dir: Path
    data: dict[str, Any]
    trained: int = 0
    skipped: int = 0
    files: list[Path] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, dict]:
        return self.data["summary"]


# ------------------------------------------------------------------------------------------------ building blocks

def grid_configs(grid: str | dict) -> list[dict]:
    """The grid's points as ``{"id", "optimizer", "lr"}`` dicts ('small', 'paper' or an explicit mapping)."""
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ConfigError(f"grid = {grid!r} is not known", f"use one of {', '.join(GRIDS)}")
        grid = GRIDS[grid]
    if not isinstance(grid, dict) or set(grid) != {"optimizer", "lr"} or not grid["optimizer"] or not grid["lr"]:
        raise ConfigError(f"grid = {grid!r} must map 'optimizer' and 'lr' to non-empty lists",
                          "e.g. {'optimizer': ['adam', 'rmsprop'], 'lr': [1e-3]}")
    out = []
    for opt in grid["optimizer"]:
        for lr in grid["lr"]:
            make_config({"training": {"optimizer": opt, "lr": lr}})     # validates both values
            out.append({"id": f"{opt}-lr{float(lr):g}", "optimizer": opt, "lr": float(lr)})
    return out


def ladder_rungs(budgets: Sequence[float], methods=DATA_METHODS, net_levels=NET_LEVELS) -> list[Rung]:
    """Full, then proxy data per method and budget (full net), then proxy nets on all data."""
    rungs = [Rung(Fidelity())]
    for b in budgets:
        rungs += [Rung(Fidelity(m, roi, b, None)) for m, roi in methods]
    rungs += [Rung(Fidelity(None, False, None, lv)) for lv in net_levels]
    return rungs


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    """Pearson and Spearman of paired Dice values.

    NaN rule: a correlation is undefined when fewer than 2 pairs exist or either side has zero variance (all
    configs reached the same Dice); it is then reported as ``None`` (JSON null) with ``undefined`` saying why,
    never as NaN.
    """
    from scipy.stats import pearsonr, spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return {"pearson": None, "spearman": None, "undefined": "fewer than 2 configs"}
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": None, "spearman": None, "undefined": "zero variance (identical Dice for every config)"}
    out: dict[str, Any] = {"pearson": float(pearsonr(x, y)[0])}
    rho = spearmanr(x, y)[0]
    out["spearman"] = float(rho) if np.isfinite(rho) else None    # ties on one side only can still zero a rank var
    if out["spearman"] is None:
        out["undefined"] = "zero rank variance"
    return out


def _settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _check_number(name: str, value, lo: float, hi: float | None, integer: bool, hint: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer()) and value >= lo and (hi is None or value <= hi)
    if not ok:
        raise ConfigError(f"{name} = {value!r} is out of range", hint)


# ------------------------------------------------------------------------------------------------ main entry

def run_proxy_correlation(data, out_dir: str | Path, *, grid: str | dict = "small", epochs: int = DEFAULT_EPOCHS,
                          steps_per_epoch: int = DEFAULT_STEPS, budget: float | Sequence[float] = 0.25,
                          seed: int = 0, holdout: float = DEFAULT_HOLDOUT, val_fraction: float = 0.5,
                          methods: Sequence[tuple[str, bool]] = DATA_METHODS,
                          net_levels: Sequence[int] = NET_LEVELS, base_config: dict | None = None,
                          keep_models: bool = False, device: str = "auto",
                          events: EventWriter = NULL_EVENTS, show_progress: bool = False) -> ExperimentResult:
    """Train every grid config at every rung, score all on the same held-back cases, correlate with the full rung.

    ``budget``: proxy-data size(s) as a fraction (< 1) or count of the training pool; several give Fig. 4's
    Dice-vs-data curve.  The selection is split ``val_fraction`` (paper: 50/50); the model trains on the train
    half.  ``holdout``: fraction of the dataset kept back for scoring.  ``base_config``: the full net and
    recipe (default: AutoSegCore.config defaults); the grid overrides its optimiser and learning rate, and
    ``epochs`` × ``steps_per_epoch`` its length.  Writes ``results.json``, ``correlation.png`` and
    ``dice_vs_data.png`` into ``out_dir`` atomically; finished runs in ``out_dir`` are skipped.
    """
    from AutoSegCore.data.dataset import Dataset, load_dataset
    from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor
    from AutoSegCore.data.splits import holdout_split
    from AutoSegCore.proxy.selection import resolve_budget, select_proxy_data
    from AutoSegCore.training.api import train_model

    _check_number("epochs", epochs, 1, None, True, "use --epochs 1 or more")
    _check_number("steps_per_epoch", steps_per_epoch, 1, None, True, "use --steps-per-epoch 1 or more")
    _check_number("holdout", holdout, 0.01, 0.9, False, "keep back e.g. 0.2 of the cases")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed = {seed!r} must be an integer", "e.g. --seed 0")
    budgets = [budget] if isinstance(budget, (int, float)) else list(budget)
    if not budgets:
        raise ConfigError("no proxy-data budget given", "e.g. --budget 0.25")
    configs = grid_configs(grid)
    base = make_config(base_config)
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    if not ds.labels or len(ds.cases) < 6:
        raise DatasetError(f"dataset '{ds.name}' has {len(ds.cases)} labelled case(s); the experiment needs ≥ 6",
                           "use a dataset with more cases (e.g. Task04_Hippocampus)")
    pool, test = holdout_split(ds.case_names, holdout, seed)
    for b in budgets:
        resolve_budget(b, len(pool))               # clear error for a budget < 2 or > the pool, before any work
    for m, _ in methods:
        if m not in ("mi", "ncc", "random"):
            raise ConfigError(f"proxy-data method {m!r} is not known", "use mi, ncc or random")
    rungs = ladder_rungs(budgets, methods, net_levels)

    out = Path(out_dir)
    settings = {"dataset": ds.name, "cases": ds.case_names, "grid": configs, "epochs": int(epochs),
                "steps_per_epoch": int(steps_per_epoch), "budgets": budgets, "seed": seed, "holdout": holdout,
                "val_fraction": val_fraction, "base_config": base}
    digest = _settings_digest(settings)
    header_path = out / "experiment.json"
    if header_path.is_file():
        try:
            old = read_json(header_path).get("digest")
        except (OSError, ValueError, AttributeError):
            old = None
        if old != digest:
            raise ConfigError(f"{out} already holds a proxy-correlation experiment with other settings",
                              "re-run with the same options to resume, or pick a new --out folder")
    write_json(header_path, {"format": FORMAT, "digest": digest, "settings": settings})

    t_all = time.perf_counter()
    events.emit("study_started", kind="proxy-correlation", configs=len(configs), rungs=[r.key for r in rungs],
                runs=len(configs) * len(rungs), out_dir=out, pool=len(pool), test=len(test))

    # One preprocessor fitted on the pool and one cache shared by every run: no case is preprocessed twice.
    pre = Preprocessor(base["preprocessing"]).fit(ds.subset(pool))
    cache = PreprocessCache(pre, out / "cache" / "preprocessed")
    shapes = [c.image.shape[1:] for c in cache.get_many(ds.cases)]
    # One canvas (the largest case) for every run, so no rung is scored on a different canvas (../shared/docs/baselines.md).
    canvas = [int(max(s[i] for s in shapes)) for i in range(3)]

    selections: dict[str, dict] = {}
    for rung in rungs:
        f = rung.fidelity
        if f.data_method is None:
            continue
        t0 = time.perf_counter()
        sel = select_proxy_data(ds.subset(pool), f.data_method, "label" if f.roi else "none", f.budget, seed=seed,
                                val_fraction=val_fraction, cache_dir=out / "cache" / "pairwise", device=device,
                                events=events, show_progress=show_progress)
        selections[rung.key] = {"train": sel.train, "val": sel.val, "selected": sel.selected,
                                "seconds": round(time.perf_counter() - t0, 3), "cache_hit": sel.cache_hit}
    write_json(out / "selections.json", selections)

    runs: list[dict] = []
    trained = skipped = 0
    total = len(configs) * len(rungs)
    for ci, cfg_point in enumerate(configs):
        for ri, rung in enumerate(rungs):
            run_dir = out / "runs" / cfg_point["id"] / rung.slug
            done = run_dir / "result.json"
            index = ci * len(rungs) + ri + 1
            if done.is_file():
                try:
                    record = read_json(done)
                except (OSError, ValueError):
                    record = None
                if isinstance(record, dict) and record.get("digest") == digest:
                    runs.append(record)
                    skipped += 1
                    events.emit("progress", stage="runs", done=index, total=total, skipped=True,
                                config=cfg_point["id"], rung=rung.key)
                    continue
            f = rung.fidelity
            train_cases = selections[rung.key]["train"] if f.data_method else pool
            cfg = make_config(base)
            cfg["network"] = f.apply_network(cfg["network"])
            cfg["training"].update(optimizer=cfg_point["optimizer"], lr=cfg_point["lr"], epochs=int(epochs),
                                   steps_per_epoch=int(steps_per_epoch), val_every=int(epochs), seed=seed,
                                   patch_size=canvas)
            events.emit("trial_started", trial=index, config=cfg_point["id"], rung=rung.key,
                        train_cases=len(train_cases))
            result = train_model(ds, cfg, run_dir / "model", train_cases=train_cases, val_cases=test,
                                 device=device, events=events, cache=cache, resume=True,
                                 study_run={"trial": index})
            trained += 1
            record = {
                "digest": digest, "config": cfg_point["id"], "optimizer": cfg_point["optimizer"],
                "lr": cfg_point["lr"], "rung": rung.key, "method": rung.method, "fidelity": f.to_dict(),
                "budget": f.budget, "train_cases": len(train_cases),
                "data_fraction": round(len(train_cases) / len(pool), 4), "num_params": result.num_params,
                "dice": result.val_dice, "dice_per_class": result.val_dice_per_class,
                # summed per-epoch times, so a run resumed after an interruption still reports its full cost
                "seconds": round(float(sum(h.get("seconds", 0.0) for h in result.history)), 3),
                "epochs": result.epochs_done, "steps": result.epochs_done * int(steps_per_epoch),
            }
            write_json(done, record)
            if not keep_models:
                shutil.rmtree(run_dir / "model", ignore_errors=True)
            runs.append(record)
            events.emit("trial_finished", trial=index, config=cfg_point["id"], rung=rung.key, dice=record["dice"],
                        seconds=record["seconds"])
            events.emit("progress", stage="runs", done=index, total=total, skipped=False,
                        config=cfg_point["id"], rung=rung.key)

    data = {"format": FORMAT, "digest": digest, "settings": {k: v for k, v in settings.items() if k != "cases"},
            "network": {"full": base["network"],
                        **{f"net{lv}": Fidelity(None, False, None, lv).apply_network(base["network"])
                           for lv in net_levels}},
            "split": {"pool": pool, "test": test}, "canvas": canvas, "selections": selections,
            "runs": runs, "summary": summarise(runs, configs, rungs, selections),
            "seconds_this_invocation": round(time.perf_counter() - t_all, 1)}
    files = [write_json(out / "results.json", data)]
    files += write_plots(data, out)
    events.emit("artifact", path=out / "results.json", kind="results")
    events.emit("done", trained=trained, skipped=skipped, out_dir=out)
    return ExperimentResult(out, data, trained, skipped, files)


def summarise(runs: list[dict], configs: list[dict], rungs: list[Rung], selections: dict) -> dict[str, dict]:
    """Per rung: correlation with the full rung, mean/min/max Dice, mean seconds, speed-up, best-config agreement."""
    by = {(r["config"], r["rung"]): r for r in runs}
    ids = [c["id"] for c in configs]
    full = [by[(i, "full")]["dice"] for i in ids]
    full_sec = float(np.mean([by[(i, "full")]["seconds"] for i in ids]))
    best_full = ids[int(np.argmax(full))]
    out = {}
    for rung in rungs:
        dice = [by[(i, rung.key)]["dice"] for i in ids]
        secs = [by[(i, rung.key)]["seconds"] for i in ids]
        row: dict[str, Any] = {
            "method": rung.method, "budget": rung.fidelity.budget,
            "train_cases": by[(ids[0], rung.key)]["train_cases"],
            "data_fraction": by[(ids[0], rung.key)]["data_fraction"],
            "num_params": by[(ids[0], rung.key)]["num_params"],
            "dice_mean": float(np.mean(dice)), "dice_min": float(np.min(dice)), "dice_max": float(np.max(dice)),
            "seconds_mean": float(np.mean(secs)), "speedup": full_sec / max(float(np.mean(secs)), 1e-9),
            "best_config": ids[int(np.argmax(dice))], "best_matches_full": ids[int(np.argmax(dice))] == best_full,
            "selection_seconds": selections.get(rung.key, {}).get("seconds", 0.0),
        }
        if rung.key != "full":
            row.update(correlation(dice, full))
        out[rung.key] = row
    return out
