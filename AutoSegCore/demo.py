"""`autoseg demo`: the whole product on the bundled cases, small enough for 2 CPU cores (≈ 5–10 minutes).

A proxy search (MI+ROI proxy data, 3-level proxy network, BOHB over the proxy paper's recipe space, proxy-hpo) →
retraining of the winner with the full network → predictions on held-out cases → metrics and the HTML report.
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
# final epochs of 20 steps (≈ 8–20 s on 2 CPU cores): a log line and a checkpoint that often, and a short --final-time
# still fits several epochs
DEMO_SEARCH = dict(space="proxy-hpo", strategy="bohb", proxy_data="mi+roi:8", proxy_net="levels=3", trials=6,
                   epochs=4, min_epochs=1, steps_per_epoch=20, final_steps_per_epoch=20)
# The winner trains for a wall-clock budget, not a fixed number of epochs, so the demo takes about the same time
# on any machine (≈ 1 min of search + 3 min of training on 2 CPU cores) and a faster one gets a better model.
DEMO_FINAL_SECONDS = 180.0


def demo_data_dir() -> Path:
    """The bundled demo dataset (``Resources/DemoData/Hippocampus``), or ``$AUTOSEG_DEMO_DATA``."""
    env = os.environ.get("AUTOSEG_DEMO_DATA")
    if env:                                            # an explicit choice never falls back silently
        if (Path(env) / "dataset.json").is_file():
            return Path(env)
        raise DatasetError(f"AUTOSEG_DEMO_DATA={env} holds no dataset.json",
                           "point AUTOSEG_DEMO_DATA at an MSD dataset folder, or unset it to use the bundled cases")
    bundled = Path(__file__).resolve().parents[1] / "Resources" / "DemoData" / "Hippocampus"
    if (bundled / "dataset.json").is_file():
        return bundled
    raise DatasetError("the bundled demo data was not found (Resources/DemoData/Hippocampus)",
                       "run from a source checkout or set AUTOSEG_DEMO_DATA to an MSD dataset folder")


def run_demo(out_dir: str | Path, *, events: EventWriter = NULL_EVENTS, device: str = "auto",
             trials: int | None = None, final_epochs: int | None = None, final_time: float | None = None,
             jobs: int = 1) -> dict:
    """Search on 15 bundled cases, retrain the best recipe, predict and evaluate the 5 held-out cases.

    The winner trains for ``final_time`` seconds (default ``DEMO_FINAL_SECONDS``; its lr schedule ends on it),
    or for ``final_epochs`` epochs when only those are given (both: the epochs cap the budgeted run).
    ``jobs`` runs trials in parallel.
    """
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.pipeline import run_search
    from AutoSegCore.search.search_dir import SearchDir
    from AutoSegCore.search.settings import SearchSettings
    from AutoSegCore.training.api import evaluate_folder
    from AutoSegCore.prediction import predict_files
    from AutoSegCore.inference.predictor import Predictor
    from AutoSegCore.utils.io import write_json

    out = Path(out_dir)
    data = demo_data_dir()
    ds = load_dataset(data)
    names = sorted(c.name for c in ds.cases)
    test = names[::4]                                  # never seen by the search or the final training
    opts = dict(DEMO_SEARCH)
    if trials is not None:
        opts["trials"] = trials
    if final_epochs is not None:
        opts["final_epochs"] = final_epochs
    elif final_time is None:
        final_time = DEMO_FINAL_SECONDS
    settings = SearchSettings(data=str(data), out=str(out / "search"), holdout=test, device=device,
                              base_config=DEMO_BASE, final_time=final_time, jobs=jobs, **opts)
    events.emit("log", message=f"demo: searching on {len(names) - len(test)} of the {len(names)} cases of {data} "
                               f"({opts['trials']} trials), then training the winner")
    summary = run_search(settings, events)
    events.emit("log", message=f"demo: predicting the {len(test)} held-out cases")
    predictor = Predictor(SearchDir(settings.out).best, device=device)
    # overwrite: the predictions of an earlier demo in this folder came from an earlier model
    predict_files(predictor, [ds.case(n).images for n in test], out / "predictions", events=events, overwrite=True)
    events.emit("log", message="demo: evaluating the predictions")
    metrics = evaluate_folder(out / "predictions", ds, test)
    metrics["search"] = {k: summary.get(k) for k in ("counts", "best", "seconds")}
    metrics["report"] = str(SearchDir(settings.out).report)
    metrics["final_validation"] = summary.get("final", {}).get("ensemble", {})
    write_json(out / "metrics.json", metrics)
    events.emit("artifact", kind="metrics", path=str(out / "metrics.json"))
    return metrics
