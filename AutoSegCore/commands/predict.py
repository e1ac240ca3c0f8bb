"""`autoseg predict MODEL_DIR INPUT... --out DIR` → AutoSegCore.prediction.predict_files."""
from __future__ import annotations

import argparse

from AutoSegCore.utils.cli_types import add_events_option
from AutoSegCore.utils.cli_types import device
from AutoSegCore.utils.folder_lock import add_private_option


def register(sub) -> None:
    from AutoSegCore.prediction import DEFAULT_FORMAT, OUTPUT_FORMATS

    p = sub.add_parser("predict", help="segment images with a trained model (or a search's best/ folder)",
                       description="Segment images; writes <case>.seg.nrrd and a label map per case into --out, "
                                   "in the input's geometry. Every input is checked before any is predicted (a "
                                   "bad one writes nothing); each case is written as soon as it is done, so "
                                   "Ctrl-C keeps the finished ones and a re-run predicts only the rest.")
    p.add_argument("model", help="model folder (from 'autoseg train' or a search's best/)")
    p.add_argument("inputs", nargs="+",
                   help="image files (a 4D file or <case>_000N channel files for multi-channel models), a folder "
                        "of images, or a dataset folder with dataset.json (predicts its imagesTs/ if that holds "
                        "images, else the images of imagesTr/)")
    p.add_argument("--out", required=True, help="folder for <case>.seg.nrrd and the label maps (created if missing)")
    p.add_argument("--format", dest="output_format", choices=list(OUTPUT_FORMATS), default=DEFAULT_FORMAT,
                   help="label map beside the .seg.nrrd: nifti (<case>.nii.gz, default), input (the input's own "
                        "format: .nii.gz/.nii, .nrrd, .mha; NIfTI for a DICOM series), nrrd (<case>.nrrd) or "
                        "mha (<case>.mha)")
    p.add_argument("--overwrite", action="store_true",
                   help="predict again the cases whose outputs already exist in --out (default: skip them)")
    p.add_argument("--series", help="DICOM SeriesInstanceUID to predict when a folder holds several series")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation on (--tta) or off (--no-tta); default: as the model folder "
                        "decided (a search's best/ keeps it only if it scored higher on validation)")
    p.add_argument("--device", type=device, default="auto")
    add_private_option(p)
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.utils.folder_lock import command_output

    with command_output(args, args.out, events):           # one run per folder: a second refuses at once
        return _run(args, events)


def _run(args, events) -> int:
    from AutoSegCore.prediction import predict_files
    from AutoSegCore.inference.predictor import Predictor
    from AutoSegCore.progress import predict_progress
    from AutoSegCore.utils.signals import stop_signals_interrupt

    with stop_signals_interrupt():                                   # SIGTERM/SIGHUP act as Ctrl-C
        predictor = Predictor(args.model, device=args.device, tta=args.tta)
        with predict_progress(events):
            events.emit("study_started", kind="predict", model=str(args.model), tta=predictor.tta)
            results = predict_files(predictor, args.inputs, args.out, output_format=args.output_format,
                                    overwrite=args.overwrite, series=args.series, events=events)
    events.emit("done", predictions=results, predicted=sum(r["status"] == "predicted" for r in results),
                skipped=sum(r["status"] == "skipped" for r in results))
    return 0
