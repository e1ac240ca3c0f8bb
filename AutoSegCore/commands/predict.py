"""`autoseg predict MODEL_DIR INPUT... --out DIR` → training.inference.Predictor.predict_files."""
from __future__ import annotations

import argparse
from pathlib import Path

from AutoSegCore.cli import add_events_option


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images with a trained model (or a search's best/ folder)")
    p.add_argument("model", help="model folder (from 'autoseg train' or a search's best/)")
    p.add_argument("inputs", nargs="+", help="image files (.nii.gz/.nrrd), or a dataset folder (predicts imagesTs/ "
                   "if present, else imagesTr/)")
    p.add_argument("--out", required=True, help="folder for <case>.nii.gz and <case>.seg.nrrd")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation on (--tta) or off (--no-tta); default: as the model folder "
                        "decided (a search's best/ keeps it only if it scored higher on validation)")
    p.add_argument("--device", default="auto")
    add_events_option(p)
    p.set_defaults(func=run)


def expand_inputs(inputs: list[str]) -> list:
    """Files as given; a dataset folder becomes its cases' image lists."""
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.errors import DatasetError

    items: list = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            ds = load_dataset(p, validate=False)
            items += [c.images for c in ds.cases]
        elif p.is_file():
            items.append(p)
        else:
            raise DatasetError(f"input not found: {p}", "pass existing image files or a dataset folder")
    return items


def run(args, events) -> int:
    from AutoSegCore.training.inference import Predictor
    from AutoSegCore.utils.progress import epoch_progress

    predictor = Predictor(args.model, device=args.device, tta=args.tta)
    items = expand_inputs(args.inputs)
    events.emit("study_started", kind="predict", model=str(args.model), n=len(items), tta=predictor.tta)
    with epoch_progress(events, len(items), "predicting"):
        results = predictor.predict_files(items, args.out, events)
    events.emit("done", predictions=results)
    return 0
