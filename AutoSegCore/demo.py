"""`autoseg demo`: the whole product on the bundled cases, small enough for 2 CPU cores."""
from __future__ import annotations

import os
from pathlib import Path

from AutoSegCore.errors import DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter

DEMO_CONFIG = {
    "network": {"depth": 4, "channels": 16, "multiplier": 2.0, "n_convs": 2},
    "training": {"epochs": 12, "steps_per_epoch": 40, "batch_size": 4, "lr": 3e-3, "warmup_steps": 40},
}


def demo_data_dir() -> Path:
    """The bundled demo dataset (``Resources/DemoData/Hippocampus``), or ``$AUTOSEG_DEMO_DATA``."""
    env = os.environ.get("AUTOSEG_DEMO_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1] / "Resources" / "DemoData" / "Hippocampus")
    for c in candidates:
        if (c / "dataset.json").is_file():
            return c
    raise DatasetError("the bundled demo data was not found (Resources/DemoData/Hippocampus)",
                       "run from a source checkout or set AUTOSEG_DEMO_DATA to an MSD dataset folder")


def run_demo(out_dir: str | Path, *, events: EventWriter = NULL_EVENTS, device: str = "auto",
             epochs: int | None = None) -> dict:
    """Train on 15 bundled cases, predict the 5 held-out ones, evaluate; returns the metrics summary."""
    from AutoSegCore.config import make_config
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.training.api import evaluate_folder, train_model
    from AutoSegCore.training.inference import Predictor
    from AutoSegCore.utils.io import write_json

    out = Path(out_dir)
    ds = load_dataset(demo_data_dir())
    names = sorted(c.name for c in ds.cases)
    test = names[::4]
    rest = [n for n in names if n not in test]
    val = rest[::4]
    train = [n for n in rest if n not in val]
    cfg = make_config(DEMO_CONFIG)
    if epochs:
        cfg["training"]["epochs"] = epochs
    result = train_model(ds, cfg, out / "model", train_cases=train, val_cases=val, device=device, events=events)
    predictor = Predictor(out / "model", device=device)
    predictor.predict_files([ds.case(n).images for n in test], out / "predictions", events)
    summary = evaluate_folder(out / "predictions", ds, test)
    summary["validation_dice"] = result.val_dice
    summary["train_seconds"] = result.seconds
    write_json(out / "metrics.json", summary)
    events.emit("artifact", kind="metrics", path=str(out / "metrics.json"))
    return summary
