"""Make the README's first picture from a well-trained model, not a barely trained one.

Trains the fixed recipe (``bench/configs/fixed-recipe.yaml``, the recipe before the planner) on the shared Hippocampus cases for a wall-clock
budget, leaving out the demo's held-out cases (so the pictured case is one the model never saw), reports the
pictured case's Dice, then predicts it through the Slicer module's Logic in a headless Slicer scene
(trame-slicer, offscreen) and writes ``Resources/Screenshots/prediction-{axial,three-views}.png``::

    .venv/bin/python scripts/make_readme_picture.py --time 15m          # ≈ 15 min of training on 2 CPU cores

A model folder that is already finished (``--model``) is reused, so the pictures can be re-shot in seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "Task04_Hippocampus"
DEMO = REPO / "Resources" / "DemoData" / "Hippocampus"
sys.path.insert(0, str(REPO / "Testing" / "slicer_module"))


def held_out_demo_cases() -> list[str]:
    """The demo's held-out cases (``names[::4]``, as ``autoseg demo`` splits): never trained on here."""
    names = sorted(p.name[: -len(".nii.gz")] for p in (DEMO / "imagesTr").glob("*.nii.gz"))
    return names[::4]


def main(argv=None) -> int:
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.training.api import train_model
    from AutoSegCore.config import load_config
    from AutoSegCore.search.settings import parse_duration

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", default="15m", help="training wall-clock budget (default 15m)")
    ap.add_argument("--model", default="/tmp/autoseg-readme-model", help="model folder (reused when finished)")
    ap.add_argument("--case", default=None, help="the pictured case (default: the first held-out demo case)")
    args = ap.parse_args(argv)

    data = SHARED if (SHARED / "dataset.json").is_file() else DEMO
    ds = load_dataset(data)
    held_out = set(held_out_demo_cases())
    case = args.case or sorted(held_out)[0]
    names = [c.name for c in ds.cases if c.name not in held_out]
    val = names[::10]
    train = [n for n in names if n not in val]
    model = Path(args.model)
    if not (model / "model.pt").is_file():
        config = load_config(REPO / "bench" / "configs" / "fixed-recipe.yaml")
        config["training"]["time_limit"] = parse_duration(args.time, "--time")
        config["training"]["epochs"] = 100_000           # a cap only (load_config filled in the default 50)
        result = train_model(data, config, model, train_cases=train, val_cases=val, device="cpu")
        print(f"trained {len(train)} cases for {args.time}: validation mean Dice {result.val_dice:.3f} "
              f"on {len(val)} cases", flush=True)
    dice = _case_dice(model, ds, case)
    print(f"pictured case {case} (never trained on): Dice {json.dumps(dice)}", flush=True)

    from slicer_screenshots import make_readme_screenshots

    image = next(c for c in ds.cases if c.name == case).images[0]
    for p in make_readme_screenshots(model, image, data, REPO / "Resources" / "Screenshots"):
        print(p)
    return 0


def _case_dice(model: Path, ds, case: str) -> dict:
    """Per-class Dice of the model on one case, scored by the engine's own evaluation."""
    import tempfile

    import nibabel as nib

    from AutoSegCore.prediction import predict_files
    from AutoSegCore.inference.predictor import Predictor
    from AutoSegCore.training.metrics import dice_per_class

    c = next(c for c in ds.cases if c.name == case)
    out_dir = Path(tempfile.mkdtemp(prefix="autoseg-readme-"))
    predict_files(Predictor(model, device="cpu"), [c.images[0]], out_dir)
    out = out_dir / f"{case}.nii.gz"
    truth = nib.load(str(c.label)).get_fdata().astype(int)
    got = nib.load(str(out)).get_fdata().astype(int)
    return {ds.labels[k]: round(float(v), 3) for k, v in dice_per_class(got, truth, ds.foreground_labels).items()}


if __name__ == "__main__":
    sys.exit(main())
