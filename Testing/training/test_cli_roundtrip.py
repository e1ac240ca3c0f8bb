"""`autoseg train` → `predict` → `evaluate` as a user runs them (child processes, events, geometry, .seg.nrrd)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from shared_data import SPLEEN

pytestmark = pytest.mark.slow


def autoseg(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "AutoSegCore", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=900, env=None if env is None else {**os.environ, **env})


def test_train_predict_evaluate_on_anisotropic_ct(tmp_path):
    """Spleen CT (0.8×0.8×5 mm): resampled to median spacing for training, predictions back in original geometry."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "network": {"depth": 3, "channels": 8, "n_convs": 1},
        "preprocessing": {"normalization": "ct_window", "ct_window": [-150, 250], "resampling": "median"},
        "training": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "patch_size": [64, 64, 16]},
    }))
    events = tmp_path / "events.jsonl"
    r = autoseg("train", SPLEEN, "--config", cfg, "--out", tmp_path / "model", "--val-fraction", "0", "--events", events)
    assert r.returncode == 0, r.stderr
    assert "no validation (--val-fraction 0)" in r.stderr and "Dice 0.0000" not in r.stderr, r.stderr[-500:]
    kinds = [json.loads(l)["event"] for l in events.read_text().splitlines()]
    assert kinds.count("epoch") == 2 and kinds[-1] == "done"
    image = SPLEEN / "imagesTr" / sorted(p.name for p in (SPLEEN / "imagesTr").glob("*.nii.gz"))[0]
    r = autoseg("predict", tmp_path / "model", image, "--out", tmp_path / "pred", "--tta")
    assert r.returncode == 0, r.stderr
    name = image.name[: -len(".nii.gz")]
    pred = nib.load(str(tmp_path / "pred" / f"{name}.nii.gz"))
    src = nib.load(str(image))
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine, atol=1e-4)
    import slicerio

    seg = slicerio.read_segmentation(str(tmp_path / "pred" / f"{name}.seg.nrrd"), skip_voxels=True)
    meta = json.loads((SPLEEN / "dataset.json").read_text())
    expected = {v for k, v in meta["labels"].items() if k != "0"}
    names = {s["name"] for s in seg["segments"]}
    assert names <= expected
    r = autoseg("evaluate", tmp_path / "pred", SPLEEN, "--out", tmp_path / "metrics.json")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m["dice_per_class"]) == expected


def test_cli_user_errors_are_one_line(tmp_path):
    r = autoseg("predict", tmp_path / "nope", tmp_path / "x.nii.gz", "--out", tmp_path / "o")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not a model folder" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {optimizer: lion}\n")
    r = autoseg("train", SPLEEN, "--config", bad, "--out", tmp_path / "m")
    assert r.returncode == 2 and "optimizer" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m").exists()
    evil = tmp_path / "evil.yaml"
    evil.write_text("training: !!python/object/apply:os.system ['touch pwned']\n")
    r = autoseg("train", SPLEEN, "--config", evil, "--out", tmp_path / "m2", cwd=tmp_path)
    assert r.returncode == 2 and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("command", ["train", "search"])
def test_an_output_path_that_is_a_file_is_a_one_line_error(tmp_path, command):
    taken = tmp_path / "results.txt"
    taken.write_text("keep me\n")
    r = autoseg(command, SPLEEN, "--out", taken)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"{taken}: File exists" in r.stderr and "not an existing file" in r.stderr
    assert taken.read_text() == "keep me\n"                       # nothing lost


def test_a_missing_file_inside_the_engine_is_a_bug_not_a_user_error(tmp_path):
    """A path error names the user's path in one line; the same error on a file of the installed engine (or with
    AUTOSEG_DEBUG=1) keeps its traceback, so a broken install or our bug is not disguised as 'check the path'."""
    from AutoSegCore import cli

    assert cli._is_user_path(tmp_path / "dataset") and cli._is_user_path("relative/out") and cli._is_user_path(None)
    assert not cli._is_user_path(Path(cli.__file__).parent / "spaces" / "gone.yaml")
    assert not cli._is_user_path(Path(subprocess.__file__))             # the standard library
    taken = tmp_path / "results.txt"
    taken.write_text("keep me\n")
    r = autoseg("train", SPLEEN, "--out", taken, env={"AUTOSEG_DEBUG": "1"})
    assert r.returncode == 1 and "Traceback" in r.stderr and "FileExistsError" in r.stderr, r.stderr[-2000:]
    assert taken.read_text() == "keep me\n"


def test_an_early_error_stands_alone_without_progress_bars(tmp_path):
    """A mistyped space is refused before the search starts anything, and its error is not printed under frozen
    '0/20' progress bars (rich prints a bar's last state when stderr is not a terminal)."""
    r = autoseg("search", SPLEEN, "--space", "unet-pipline", "--out", tmp_path / "s")
    assert r.returncode == 2 and "unknown search space 'unet-pipline'" in r.stderr
    assert r.stderr.strip().startswith("autoseg search: error:"), r.stderr
    assert "trials" not in r.stderr and "epochs" not in r.stderr
    assert not (tmp_path / "s").exists()


def test_a_fractional_case_count_is_refused(tmp_path):
    r = autoseg("search", SPLEEN, "--proxy-data", "mi+roi:2.5", "--out", tmp_path / "s")
    assert r.returncode == 2 and "must be whole" in r.stderr and "Traceback" not in r.stderr
