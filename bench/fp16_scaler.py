"""fp16 training whose first steps overflow on purpose: GradScaler's skips are calibration, not divergence (issue 29).

``training.amp: fp16`` trains with a GradScaler, which skips every step whose scaled gradients overflow and halves
its scale.  ``Trainer._train_step`` counts a skip while the scale is ≥ 1 as the scaler's calibration; only runs of
``MAX_BAD_STEPS`` bad steps in a row declare a run diverged.  Here the scaler starts at 2^48 (torch's default is
2^16), so the first ≈ 30 steps overflow in a row — more than ``MAX_BAD_STEPS`` — and the run must still finish
every epoch, undeclared diverged, with those skips counted.  The init scale is no config key, so this builds the
Trainer and replaces its scaler before ``fit``; on a GPU the layout is fixed, so no precision calibration runs.

On the CPU (``gpu_check.py --dry-run``, ``make bench``) the engine refuses ``training.amp: fp16``; the script then
sets the trainer's autocast type to fp16 itself, with a CPU GradScaler: the same overflows, skips and counting.

    .venv/bin/python bench/fp16_scaler.py --device cuda      # a stage of make gpu-check
    .venv/bin/python bench/fp16_scaler.py --device cpu --epochs 2

Prints one verdict line (``fp16 scaler: PASS|FAIL …``); exit status 0 on PASS, 1 on FAIL or a crash.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from AutoSegCore.config import make_config  # noqa: E402
from AutoSegCore.data.dataset import load_dataset, read_case  # noqa: E402
from AutoSegCore.data.preprocess import PreprocessedCase  # noqa: E402
from AutoSegCore.errors import TrainingDiverged  # noqa: E402
from AutoSegCore.training.process import prepare_process  # noqa: E402
from AutoSegCore.training.trainer import MAX_BAD_STEPS, Trainer  # noqa: E402
from AutoSegCore.utils.device import pick_device  # noqa: E402

DEFAULT_DATA = os.environ.get("AUTOSEG_HIPPO", "/work/shared/data/Task04_Hippocampus")
INIT_SCALE = 2.0**48
LABELS = {0: "background", 1: "anterior", 2: "posterior"}


def load_cases(data: str, n: int) -> list[PreprocessedCase]:
    """The first ``n`` cases by name, z-scored per case."""
    ds = load_dataset(data, deep=False)
    cases = []
    for case in sorted(ds.cases, key=lambda c: c.name)[:n]:
        arr = read_case(case)
        img = arr.image.astype(np.float32)
        img = (img - img.mean()) / max(float(img.std()), 1e-8)
        cases.append(PreprocessedCase(case.name, np.ascontiguousarray(img), arr.label.astype(np.uint8), {}))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="Hippocampus (MSD Task04)")
    ap.add_argument("--device", default="auto", help="cuda or cuda:N; cpu: fp16 autocast forced, a check of the script")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=25, help="steps per epoch")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    cases = load_cases(args.data, 8)
    cfg = make_config({"network": {"depth": 3, "channels": 8, "n_convs": 1},
                       "training": {"epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": 2,
                                    "patch_size": [24, 24, 24], "seed": 0,
                                    **({"amp": "fp16", "channels_last": "off"} if device.type == "cuda" else
                                       {"amp": "off"})}})
    with tempfile.TemporaryDirectory() as tmp:
        prepare_process(str(device), seed=0)            # kernels and seeds as train_model sets them
        trainer = Trainer(cfg, cases[1:], cases[:1], labels=LABELS, out_dir=tmp, in_channels=1, device=str(device))
        if device.type == "cpu":        # the engine trains fp16 on CUDA only: a check of this script forces it
            trainer.amp = torch.float16
        trainer.scaler = torch.amp.GradScaler(device.type, init_scale=INIT_SCALE)
        try:
            result = trainer.fit(resume=False)
        except TrainingDiverged as exc:
            print(f"fp16 scaler: FAIL — declared diverged: {exc.message} (init scale 2^{np.log2(INIT_SCALE):.0f})")
            return 1
    skipped, scale = trainer.skipped_steps, float(trainer.scaler.get_scale())
    finished = result.epochs_done == args.epochs and np.isfinite(result.val_dice)
    ok = finished and skipped >= MAX_BAD_STEPS
    print(f"fp16 scaler: {'PASS' if ok else 'FAIL'} — {device}, fp16 autocast: "
          f"{result.epochs_done}/{args.epochs} epochs × {args.steps} steps, not diverged; {skipped} steps skipped "
          f"(the first ones in a row; ≥ {MAX_BAD_STEPS} needed to test the calibration rule) while the scale fell "
          f"from 2^{np.log2(INIT_SCALE):.0f} to 2^{np.log2(scale):.0f}; val Dice {result.val_dice:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
