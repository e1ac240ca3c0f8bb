"""`autoseg predict MODEL_DIR INPUT... --out DIR` → training.inference.expand_inputs + Predictor.predict_files."""
from __future__ import annotations

import argparse

from AutoSegCore.cli import add_events_option
from AutoSegCore.utils.cli_types import device


def register(sub) -> None:
    p = sub.add_parser("predict", help="segment images with a trained model (or a search's best/ folder)",
                       description="Segment NIfTI images; writes <case>.nii.gz and <case>.seg.nrrd per image into "
                                   "--out. Every input is checked before any is predicted, and nothing is written "
                                   "unless all succeed.")
    p.add_argument("model", help="model folder (from 'autoseg train' or a search's best/)")
    p.add_argument("inputs", nargs="+",
                   help="NIfTI image files (.nii or .nii.gz; a 4D file for multi-channel models; convert .nrrd/.mha "
                        "first, e.g. with 3D Slicer), or a dataset folder with dataset.json (predicts its imagesTs/ "
                        "if that holds images, else the images of imagesTr/)")
    p.add_argument("--out", required=True, help="folder for <case>.nii.gz and <case>.seg.nrrd")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation on (--tta) or off (--no-tta); default: as the model folder "
                        "decided (a search's best/ keeps it only if it scored higher on validation)")
    p.add_argument("--device", type=device, default="auto")
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.training.inference import Predictor, expand_inputs
    from AutoSegCore.utils.progress import console, epoch_progress

    predictor = Predictor(args.model, device=args.device, tta=args.tta)
    items, notes = expand_inputs(args.inputs)
    for note in notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
        events.emit("log", message=note)
    events.emit("study_started", kind="predict", model=str(args.model), n=len(items), tta=predictor.tta)
    with epoch_progress(events, len(items), "predicting"):
        results = predictor.predict_files(items, args.out, events)
    events.emit("done", predictions=results)
    return 0
