"""Public one-call entry points: train a config on a dataset, evaluate a folder of predictions."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from AutoSegCore.config import make_config
from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.training.model_io import warm_start
from AutoSegCore.training.process import prepare_process
from AutoSegCore.training.trainer import CHECKPOINT, Trainer, TrainResult
from AutoSegCore.utils.device import GpuMemoryCap


def split_cases(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``val_fraction`` 0 trains on every case with no validation (e.g. a final model after a search)."""
    from AutoSegCore.data.splits import holdout_split

    if float(val_fraction) == 0.0:
        return sorted(names), []
    return holdout_split(sorted(names), val_fraction, seed)


def train_model(data, config: dict | None, out_dir: str | Path, *, train_cases: list[str] | None = None,
                val_cases: list[str] | None = None, val_fraction: float = 0.2, device: str = "auto",
                events: EventWriter = NULL_EVENTS, callback: Callable[[int, dict], None] | None = None,
                cache=None, cache_dir: str | Path | None = None, resume: bool = True,
                study_run: dict | None = None, plan: bool | dict = False,
                init_from: str | Path | None = None, gpu_memory: GpuMemoryCap | None = None) -> TrainResult:
    """Train ``config`` (merged over defaults) on ``data`` (a folder, pair list or ``Dataset``) into ``out_dir``.

    ``config``: a dict of the sections to change (``{"training": {"epochs": 10}}``), the path of a YAML/JSON
    config file, or None for the defaults.  ``train_cases`` / ``val_cases``: case names (one name may be given
    as a string); by default ``val_fraction`` of the cases is held out for validation.  ``out_dir`` ends up a
    model folder usable by :class:`~AutoSegCore.inference.predictor.Predictor`; an existing ``checkpoint.pt``
    there is resumed exactly, and a finished model there is refused unless ``resume=False`` (then replaced).
    ``plan``: True plans the dataset first (``AutoSegCore.planning.plan_dataset`` for ``device`` and the config's
    ``training.time_limit`` as budget; what ``autoseg train`` does) and merges ``config`` over the planned recipe;
    a plan dict (``plan.json``) is used as it is; False (default) merges ``config`` over the bare defaults.  The
    plan used is written to ``out_dir/plan.json``.  ``init_from``: a model folder of the same network whose weights
    start a fresh training (a search's final training starts from its winning trial); a resumed one ignores it.
    ``study_run``: which run of a study this training is, written into its ``epoch`` events: ``{"trial": n}`` (a
    search's or a proxy experiment's trial) or ``{"member": i}`` (the final training's i-th member).  A study
    decides ``largest_component: auto`` over its runs (the final, on its members); a plain training (None) decides
    it on its own last validation.
    ``gpu_memory``: this process's cap on its GPU's memory (a trial sharing its GPU).  The process-wide settings
    (device, memory cap, CUDA kernels, global seeds) are applied here, once (``training.process.prepare_process``).
    Returns the per-epoch history, validation Dice (mean and per class) and the model folder.
    """
    from AutoSegCore.data.dataset import Dataset, load_dataset
    from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor

    if isinstance(config, (str, Path)):
        from AutoSegCore.config import read_config

        config = read_config(config)
    elif config is not None and not isinstance(config, dict):
        raise ConfigError(f"config must be a dict of sections or a config file path, not {type(config).__name__}",
                          "e.g. {'training': {'epochs': 10}} or 'Resources/Configs/small.yaml'")
    cfg = make_config(config)              # checked before any work, with or without a plan
    out = Path(out_dir)
    if resume and (out / "model.pt").exists() and not (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a trained model", "choose another out_dir, or pass resume=False "
                          "(the command line: another --out) to replace it")
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    device = str(prepare_process(device, seed=int(cfg["training"]["seed"]), gpu_memory=gpu_memory))
    if plan is not False and plan is not None:
        cfg, plan = _with_plan(ds, config, plan, out, device, events)
    names = [c.name for c in ds.cases]
    train_cases, val_cases = _names_list(train_cases, "train_cases"), _names_list(val_cases, "val_cases")
    if train_cases is None:
        if val_cases is None:
            train_cases, val_cases = split_cases(names, val_fraction, int(cfg["training"]["seed"]))
        else:
            train_cases = [n for n in names if n not in set(val_cases)]
    val_cases = list(val_cases or [])
    missing = [n for n in list(train_cases) + val_cases if n not in set(names)]
    if missing:
        raise DatasetError(f"case(s) not in the dataset: {', '.join(missing[:5])}", "check the case names")
    if not train_cases:
        raise DatasetError("no training cases", "give train_cases, or fewer val_cases than the dataset has")
    both = sorted(set(train_cases) & set(val_cases))
    if both:     # allowed (a one-case smoke test needs it), but never silently: that Dice is not a validation
        note = (f"case(s) both in training and validation: {', '.join(both[:5])} — their validation Dice is "
                "measured on training data")
        warnings.warn(note, stacklevel=2)
        events.emit("log", message=note)
    if cache is None:
        pre = Preprocessor(cfg["preprocessing"]).fit(ds.subset(train_cases))
        cache = PreprocessCache(pre, Path(cache_dir) if cache_dir else None)
    train_pp = cache.get_many([ds.case(n) for n in train_cases])
    val_pp = cache.get_many([ds.case(n) for n in val_cases])
    trainer = Trainer(cfg, train_pp, val_pp, labels=ds.labels, out_dir=out_dir, in_channels=ds.num_channels,
                      device=device, events=events, callback=callback, study_run=study_run,
                      extra_info={"preprocessor": cache.preprocessor.state(), "channel_names": ds.channel_names,
                                  "dataset": ds.name, "train_cases": list(train_cases), "val_cases": val_cases})
    if init_from is not None and not (resume and (out / CHECKPOINT).exists()):
        why = warm_start(trainer.net, init_from, trainer.config["network"], ds.num_channels, trainer.out_classes)
        if why is None:
            trainer.extra_info["started_from"] = str(init_from)
        events.emit("log", message=f"starting from the weights of {init_from}" if why is None else
                    f"not starting from the weights of {init_from}: {why}; training from scratch")
    return trainer.fit(resume=resume)


def _with_plan(ds, config: dict | None, plan, out: Path, device: str, events: EventWriter) -> tuple[dict, dict]:
    """The planned recipe with ``config`` merged over it; the plan made now (``plan=True``) or given, or the one a
    resumed run wrote to ``out/plan.json`` (so a resumed run trains what it started, not a re-measured plan)."""
    from AutoSegCore.planning import PLAN_FILE, load_plan, plan_dataset, planned_config, save_plan

    if plan is True and (out / PLAN_FILE).is_file() and (out / "checkpoint.pt").is_file():
        plan = load_plan(out / PLAN_FILE)
    elif plan is True:
        budget = ((config or {}).get("training") or {}).get("time_limit")
        plan = plan_dataset(ds, device=device, budget=budget)
        events.emit("plan", plan=plan)
    elif not isinstance(plan, dict):
        raise ConfigError(f"plan must be True, False or a plan dict, not {type(plan).__name__}",
                          "e.g. plan=True, or plan=AutoSegCore.planning.load_plan('plan.json')")
    cfg = planned_config(plan, config)
    out.mkdir(parents=True, exist_ok=True)
    save_plan(plan, out / PLAN_FILE)
    return cfg, plan


def _names_list(value, what: str) -> list[str] | None:
    """Case names as a list: one name given as a string is one case, not its characters."""
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        return [str(value)]
    if not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{what} must be case names (strings)", "e.g. ['hippocampus_003', 'hippocampus_004']")
    return list(value)


def evaluate_folder(pred_dir: str | Path, data, cases: list[str] | None = None) -> dict:
    """Dice and HD95 per class of ``pred_dir/<case>.nii.gz`` against the dataset's labels (original geometry).

    Without ``cases`` every dataset case with a prediction is evaluated; predictions whose name is no case of
    the dataset are listed under ``"ignored"`` (the CLI warns about them).  Unreadable, truncated or misshapen
    predictions raise a ``DatasetError`` naming the file.
    """
    from AutoSegCore.data.dataset import Dataset, load_dataset, read_case
    from AutoSegCore.training.metrics import evaluate_pair

    pred_dir = Path(pred_dir)
    if not pred_dir.exists():
        raise DatasetError(f"{pred_dir}: predictions folder does not exist",
                           "check the path, or write predictions there first with 'autoseg predict MODEL IMAGES "
                           f"--out {pred_dir}'")
    if not pred_dir.is_dir():
        raise DatasetError(f"{pred_dir}: is a file, not a folder of predictions",
                           "pass the folder given to 'autoseg predict --out'")
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    found = sorted(p.name[: -len(".nii.gz")] for p in pred_dir.iterdir()
                   if p.name.endswith(".nii.gz") and not p.name.startswith(".") and p.is_file())
    known = set(ds.case_names)
    ignored = [n for n in found if n not in known]
    wanted = cases or [n for n in ds.case_names if n in set(found)]
    if not wanted:
        if ignored:
            shown = ", ".join(f"{n}.nii.gz" for n in ignored[:3]) + (" ..." if len(ignored) > 3 else "")
            raise DatasetError(f"{pred_dir}: none of its {len(ignored)} prediction(s) is a case of dataset "
                               f"'{ds.name}' ({shown})",
                               "evaluate against the dataset the images come from (predictions are named "
                               "<case>.nii.gz after its cases)")
        raise DatasetError(f"{pred_dir}: no predictions (<case>.nii.gz) in this folder",
                           "run 'autoseg predict' into this folder first")
    per_case = {}
    for name in wanted:
        path = pred_dir / f"{name}.nii.gz"
        if not path.is_file():
            raise DatasetError(f"missing prediction {path}", "predict every case you evaluate")
        arrays = read_case(ds.case(name))
        pred = _read_prediction(path)
        if pred.shape != arrays.label.shape:
            raise DatasetError(f"{path}: shape {pred.shape} differs from the label's {arrays.label.shape}",
                               "predictions must be in the original image geometry")
        per_case[name] = evaluate_pair(pred, arrays.label, ds.labels, arrays.spacing)
    classes = [ds.labels[c] for c in sorted(ds.labels) if c > 0]
    summary = {
        "cases": per_case,
        "mean_dice": float(np.mean([r["mean_dice"] for r in per_case.values()])),
        "dice_per_class": {k: float(np.mean([r["dice"][k] for r in per_case.values()])) for k in classes},
        "hd95_per_class": {k: _nanmean([r["hd95"][k] for r in per_case.values()]) for k in classes},
        "ignored": ignored,
    }
    return summary


def _read_prediction(path: Path) -> np.ndarray:
    """A predicted label map as integers (X, Y, Z); truncated/corrupt files and NaN values are ``DatasetError``s
    (the same messages ``autoseg validate`` and ``predict`` give)."""
    from AutoSegCore.data.volumes import read_voxels

    pred = read_voxels(path)
    if pred.ndim == 4 and pred.shape[3] == 1:
        pred = pred.reshape(pred.shape[:3])
    if np.issubdtype(pred.dtype, np.floating):
        if not np.isfinite(pred).all():
            raise DatasetError(f"{path}: prediction has NaN/Inf values", "predictions must be integer label maps")
        pred = np.rint(pred).astype(np.int64)
    return pred


def _nanmean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
