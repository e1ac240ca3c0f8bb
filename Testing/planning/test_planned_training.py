"""Planned training end to end on real data: a case whose spacing differs from the plan's target is resampled to
it for training and its prediction comes back on its own grid; `autoseg plan` and `autoseg train` without a
config; a resumed planned training keeps its plan."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from shared_data import REPO

DEMO = REPO / "Resources" / "DemoData" / "Hippocampus"


def thick_sliced_dataset(root, n=4, k=2):
    """The demo's first ``n`` cases; the last one re-sliced to every k-th slice (its header spacing follows)."""
    meta = json.loads((DEMO / "dataset.json").read_text())
    entries = sorted(meta["training"], key=lambda e: e["image"])[:n]
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    for i, e in enumerate(entries):
        for key in ("image", "label"):
            src = DEMO / e[key]
            dst = root / e[key]
            if i < n - 1:
                shutil.copy(src, dst)
                continue
            img = nib.load(str(src))
            affine = img.affine.copy()
            affine[:3, 2] *= k
            nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, ::k], affine), str(dst))
    meta["training"], meta["numTraining"] = entries, n
    (root / "dataset.json").write_text(json.dumps(meta))
    return root, entries[-1]


def autoseg(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "AutoSegCore", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_a_case_off_the_target_spacing_is_resampled_and_its_labels_come_back_on_its_grid(tmp_path):
    from AutoSegCore.data.dataset import load_dataset, read_case
    from AutoSegCore.data.fingerprint import compute_fingerprint
    from AutoSegCore.data.preprocess import Preprocessor
    from AutoSegCore.planning import plan_dataset
    from AutoSegCore.training.metrics import dice_per_class

    data, thick = thick_sliced_dataset(tmp_path / "data")
    fp = compute_fingerprint(data)
    plan = plan_dataset(fingerprint=fp, device="cuda", gpu_memory_gb=8, budget="1h")
    pre_cfg = plan["config"]["preprocessing"]
    assert pre_cfg["resampling"] == "median" and pre_cfg["target_spacing"] == [1.0, 1.0, 1.0]
    pre = Preprocessor(pre_cfg, fingerprint=fp)
    arr = read_case(load_dataset(data).case(thick["image"].split("/")[-1].replace(".nii.gz", "")))
    assert list(arr.spacing) == [1.0, 1.0, 2.0]
    pc = pre(arr)
    assert pc.image.shape[3] == 2 * arr.image.shape[3]                 # twice the slices at 1 mm
    back = pre.invert(pc.label, pc.meta)
    assert back.shape == arr.label.shape
    dice = dice_per_class(back, arr.label, [1, 2])
    assert min(dice.values()) > 0.95, dice


@pytest.mark.slow
def test_plan_then_train_without_a_config_predicts_on_the_inputs_exact_grid(tmp_path):
    data, thick = thick_sliced_dataset(tmp_path / "data")
    r = autoseg("plan", data, "--budget", "1m", "--out", tmp_path / "plan")
    assert r.returncode == 0, r.stderr[-2000:]
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["config"]["preprocessing"]["target_spacing"] == [1.0, 1.0, 1.0]
    assert "plan: target_spacing 1×1×1 — median spacing of 4 case(s)" in r.stderr
    r = autoseg("train", data, "--time", "20s", "--out", tmp_path / "model", "--val-fraction", "0.25")
    assert r.returncode == 0, r.stderr[-2000:]
    used = json.loads((tmp_path / "model" / "plan.json").read_text())
    assert used["config"]["preprocessing"]["target_spacing"] == [1.0, 1.0, 1.0]
    model = json.loads((tmp_path / "model" / "model.json").read_text())
    assert model["config"]["network"]["strides"] == used["config"]["network"]["strides"]
    image = data / thick["image"]
    r = autoseg("predict", tmp_path / "model", image, "--out", tmp_path / "pred")
    assert r.returncode == 0, r.stderr[-2000:]
    src, out = nib.load(str(image)), nib.load(str(tmp_path / "pred" / image.name))
    assert out.shape == src.shape and np.allclose(out.affine, src.affine)


@pytest.mark.slow
def test_a_resumed_planned_training_keeps_its_plan(tmp_path):
    from AutoSegCore.planning import load_plan
    from AutoSegCore.training.api import train_model

    cfg = {"training": {"epochs": 1, "steps_per_epoch": 2, "time_limit": None}}     # epochs, not the plan's budget
    first = train_model(DEMO, cfg, tmp_path / "m", plan=True, device="cpu", val_fraction=0.25)
    plan = load_plan(tmp_path / "m")
    (tmp_path / "m" / "model.pt").unlink()                    # as if stopped after the checkpoint
    altered = {**plan, "config": {**plan["config"], "training": {**plan["config"]["training"], "batch_size": 7}}}
    (tmp_path / "m" / "plan.json").write_text(json.dumps(altered))
    again = train_model(DEMO, {"training": {"epochs": 2, "steps_per_epoch": 2, "time_limit": None}}, tmp_path / "m",
                        plan=True,
                        device="cpu", val_fraction=0.25)
    assert again.epochs_done == 2 and first.epochs_done == 1
    assert json.loads((tmp_path / "m" / "model.json").read_text())["config"]["training"]["batch_size"] == 7
