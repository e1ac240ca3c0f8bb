"""`autoseg demo`: the whole product on the bundled cases, small enough for 2 CPU cores (≈ 5–10 minutes).

A proxy search (MI+ROI proxy data, 3-level proxy net, BOHB over paper a's recipe space) → retraining of the
winner with the full network → predictions on held-out cases → metrics and the HTML report.
"""
from __future__ import annotations

import os
from pathlib import Path

from AutoSegCore.errors import DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter

# Full network and recipe the winner is retrained with (the search only varies the proxy-hpo knobs).
DEMO_BASE = {
    "network": {"depth": 4, "channels": 16, "multiplier": 2.0, "n_convs": 2},
    "training": {"batch_size": 4, "warmup_steps": 40},
}
DEMO_SEARCH = dict(space="proxy-hpo", strategy="bohb", proxy_data="mi+roi:8", proxy_net="levels=3", trials=6,
                   epochs=4, min_epochs=1, steps_per_epoch=20, final_epochs=12, final_steps_per_epoch=40)


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
             trials: int | None = None, final_epochs: int | None = None) -> dict:
    """Search on 15 bundled cases, retrain the best recipe, predict and evaluate the 5 held-out cases."""
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.search.api import run_search
    from AutoSegCore.search.settings import SearchSettings
    from AutoSegCore.training.api import evaluate_folder
    from AutoSegCore.training.inference import Predictor
    from AutoSegCore.utils.io import write_json

    out = Path(out_dir)
    data = demo_data_dir()
    ds = load_dataset(data)
    names = sorted(c.name for c in ds.cases)
    test = names[::4]                                  # never seen by the search or the final training
    opts = dict(DEMO_SEARCH)
    if trials:
        opts["trials"] = trials
    if final_epochs:
        opts["final_epochs"] = final_epochs
    settings = SearchSettings(data=str(data), out=str(out / "search"), holdout=test, device=device,
                              base_config=DEMO_BASE, **opts)
    summary = run_search(settings, events)
    predictor = Predictor(out / "search" / "best", device=device)
    predictor.predict_files([ds.case(n).images for n in test], out / "predictions", events)
    metrics = evaluate_folder(out / "predictions", ds, test)
    metrics["search"] = {k: summary.get(k) for k in ("counts", "best", "seconds")}
    metrics["final_validation"] = summary.get("final", {}).get("ensemble", {})
    write_json(out / "metrics.json", metrics)
    events.emit("artifact", kind="metrics", path=str(out / "metrics.json"))
    return metrics
