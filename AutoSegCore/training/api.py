"""Public one-call entry points: train a config on a dataset, evaluate a folder of predictions."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from AutoSegCore.config import make_config
from AutoSegCore.errors import DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.training.trainer import Trainer, TrainResult


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
                trial: int | None = None) -> TrainResult:
    """Train ``config`` (merged over defaults) on ``data`` (a folder, pair list or ``Dataset``) into ``out_dir``.

    ``out_dir`` ends up a model folder usable by :class:`~AutoSegCore.training.inference.Predictor`; an existing
    ``checkpoint.pt`` there is resumed exactly.  Returns per-epoch history and validation Dice.
    """
    from AutoSegCore.data.dataset import Dataset, load_dataset
    from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor

    cfg = make_config(config)
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    names = [c.name for c in ds.cases]
    if train_cases is None:
        if val_cases is None:
            train_cases, val_cases = split_cases(names, val_fraction, int(cfg["training"]["seed"]))
        else:
            train_cases = [n for n in names if n not in set(val_cases)]
    val_cases = list(val_cases or [])
    missing = [n for n in list(train_cases) + val_cases if n not in set(names)]
    if missing:
        raise DatasetError(f"case(s) not in the dataset: {', '.join(missing[:5])}", "check the case names")
    if cache is None:
        pre = Preprocessor(cfg["preprocessing"]).fit(ds.subset(train_cases))
        cache = PreprocessCache(pre, Path(cache_dir) if cache_dir else None)
    train_pp = cache.get_many([ds.case(n) for n in train_cases])
    val_pp = cache.get_many([ds.case(n) for n in val_cases])
    trainer = Trainer(cfg, train_pp, val_pp, labels=ds.labels, out_dir=out_dir, in_channels=ds.num_channels,
                      device=device, events=events, callback=callback, trial=trial,
                      extra_info={"preprocessor": cache.preprocessor.state(), "channel_names": ds.channel_names,
                                  "dataset": ds.name, "train_cases": list(train_cases), "val_cases": val_cases})
    return trainer.fit(resume=resume)


def evaluate_folder(pred_dir: str | Path, data, cases: list[str] | None = None) -> dict:
    """Dice and HD95 per class of ``pred_dir/<case>.nii.gz`` against the dataset's labels (original geometry)."""
    import nibabel as nib

    from AutoSegCore.data.dataset import Dataset, load_dataset, read_case
    from AutoSegCore.training.metrics import evaluate_pair

    ds = data if isinstance(data, Dataset) else load_dataset(data)
    pred_dir = Path(pred_dir)
    wanted = cases or [c.name for c in ds.cases if (pred_dir / f"{c.name}.nii.gz").is_file()]
    if not wanted:
        raise DatasetError(f"no predictions named like the dataset's cases in {pred_dir}",
                           "run 'autoseg predict' into this folder first")
    per_case = {}
    for name in wanted:
        path = pred_dir / f"{name}.nii.gz"
        if not path.is_file():
            raise DatasetError(f"missing prediction {path}", "predict every case you evaluate")
        arrays = read_case(ds.case(name))
        pred = np.asarray(nib.load(str(path)).dataobj)
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
    }
    return summary


def _nanmean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
