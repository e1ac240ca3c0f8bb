"""Case names of `autoseg predict` (a user report: `autoseg predict MODEL site_9584.nii.gz site_9669.nii.gz` with a
one-channel model was refused as "same case name 'site'").  A ``_NNNN`` name suffix is nnU-Net's channel suffix only
where a stem's files are exactly ``_0000`` … ``_{C-1}`` for the model's C channels (one case named by the stem);
every other file is a case of its own, named as written.  A multi-channel model given part of a channel set gets a
one-line error naming the files and the fix.  Real trained models: the 1-channel one of conftest, and a 2-channel
one trained here on demo scans stacked twice into 4D (MSD layout)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import DEMO, REPO

pytestmark = pytest.mark.slow
IMAGES = sorted((DEMO / "imagesTr").glob("*.nii.gz"))
TWO_CHANNEL_CONFIG = {"network": {"depth": 2, "channels": 4},
                      "training": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2}}


def autoseg_script() -> list[str]:
    """The installed ``autoseg`` console script (``.venv/bin/autoseg``), as a user types it."""
    for script in (Path(sys.executable).parent / "autoseg", REPO / ".venv" / "bin" / "autoseg"):
        if script.is_file():
            return [str(script)]
    return [sys.executable, "-m", "AutoSegCore"]


def autoseg(*args):
    import subprocess

    return subprocess.run([*autoseg_script(), *map(str, args)], capture_output=True, text=True, timeout=600)


def copy_as(folder: Path, names: list[str]) -> dict[str, Path]:
    """Demo scans copied under ``names`` (``<name>.nii.gz``), each a different scan (so each has its own shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, src in zip(names, IMAGES):
        files[name] = folder / f"{name}.nii.gz"
        shutil.copyfile(src, files[name])
    return files


def assert_outputs(out: Path, expected: dict[str, Path]) -> None:
    """``out`` holds exactly ``<case>.nii.gz`` + ``<case>.seg.nrrd`` per expected case, each label map on the grid
    of the scan the case was named after (so each name went to the right scan)."""
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{c}{e}" for c in expected
                                                           for e in (".nii.gz", ".seg.nrrd"))
    for case, scan in expected.items():
        label, src = nib.load(str(out / f"{case}.nii.gz")), nib.load(str(scan))
        assert label.shape == src.shape[:3], case
        np.testing.assert_allclose(label.affine, src.affine, atol=1e-5)


# ------------------------------------------------------------------------------------------- one-channel model

ONE_CHANNEL = {                 # file name → the case it is for a one-channel model
    "case_9584": "case_9584", "case_9669": "case_9669",                         # the report: not channels
    "scan_0000": "scan_0000", "scan_0001": "scan_0001", "scan_0002": "scan_0002",  # not one channel's set
    "solo_0000": "solo",                                                        # imagesTs layout: case 'solo'
    "plain": "plain",
}


def test_the_reported_command_predicts_both_cases_under_their_own_names(model, tmp_path):
    files = copy_as(tmp_path / "scans", ["site_9584", "site_9669"])
    out = tmp_path / "out"
    r = autoseg("predict", model, *files.values(), "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "same case name" not in r.stderr
    assert_outputs(out, {"site_9584": files["site_9584"], "site_9669": files["site_9669"]})


def test_files_given_to_predict_files_keep_a_suffix_that_is_not_a_channel_set(model, tmp_path):
    from AutoSegCore.prediction import predict_files

    files = copy_as(tmp_path / "scans", list(ONE_CHANNEL))
    out = tmp_path / "out"
    results = predict_files(model, list(files.values()), out, device="cpu")
    assert [r["case"] for r in results] == list(ONE_CHANNEL.values())            # in the order given
    assert {r["status"] for r in results} == {"predicted"}
    assert_outputs(out, {case: files[name] for name, case in ONE_CHANNEL.items()})


def test_the_cli_names_files_a_plain_folder_and_an_msd_imagesTs_the_same_way(model, tmp_path):
    files = copy_as(tmp_path / "scans", list(ONE_CHANNEL))
    expected = {case: files[name] for name, case in ONE_CHANNEL.items()}
    r = autoseg("predict", model, *files.values(), "--out", tmp_path / "files", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_outputs(tmp_path / "files", expected)

    r = autoseg("predict", model, tmp_path / "scans", "--out", tmp_path / "folder", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"predicting its {len(ONE_CHANNEL)} image(s)" in r.stderr
    assert_outputs(tmp_path / "folder", expected)

    data = tmp_path / "data"                     # an MSD dataset folder: its imagesTs/ is predicted
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    meta = json.loads((DEMO / "dataset.json").read_text())
    entry = meta["training"][0]
    for key in ("image", "label"):
        shutil.copyfile(DEMO / entry[key], data / entry[key])
    meta["training"], meta["numTraining"] = [entry], 1
    (data / "dataset.json").write_text(json.dumps(meta))
    ts = copy_as(data / "imagesTs", ["case_9584", "solo_0000"])
    r = autoseg("predict", model, data, "--out", tmp_path / "ts", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "predicting the 2 image(s) of imagesTs/" in r.stderr
    assert_outputs(tmp_path / "ts", {"case_9584": ts["case_9584"], "solo": ts["solo_0000"]})


def test_case_name_needs_the_models_channels():
    from AutoSegCore.prediction import case_name

    assert case_name("a/site_9584.nii.gz", 1) == "site_9584"
    assert case_name("a/solo_0000.nii.gz", 1) == "solo"
    assert case_name("a/solo_0000.nii.gz", 2) == "solo_0000"                   # one file of two: part of its name
    assert case_name(["a/x_0000.nrrd", "a/x_0001.nrrd"], 2) == "x"
    assert case_name(["a/x_0000.nrrd", "a/y_0001.nrrd"], 2) == "x_0000"
    assert case_name("a/plain.mha", 1) == "plain"


# ------------------------------------------------------------------------------------------- two-channel model

@pytest.fixture(scope="module")
def two_channel(tmp_path_factory) -> dict:
    """A 2-channel MSD dataset (3 demo scans, each stacked with its own ×0.5 copy into 4D) and a model trained on
    it; plus 3D channel files of two other scans."""
    from AutoSegCore.training.api import train_model

    root = tmp_path_factory.mktemp("two-channel")
    data = root / "data"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    meta = json.loads((DEMO / "dataset.json").read_text())
    entries = sorted(meta["training"], key=lambda e: e["image"])[:3]
    for e in entries:
        img = nib.load(str(DEMO / e["image"]))
        voxels = np.asarray(img.dataobj, dtype=np.float32)
        nib.save(nib.Nifti1Image(np.stack([voxels, voxels * 0.5], axis=-1), img.affine), str(data / e["image"]))
        shutil.copyfile(DEMO / e["label"], data / e["label"])
    meta.update(training=entries, numTraining=len(entries), modality={"0": "MR", "1": "MR"},
                tensorImageSize="4D")
    (data / "dataset.json").write_text(json.dumps(meta))
    model = root / "M"
    train_model(data, TWO_CHANNEL_CONFIG, model, val_fraction=0, device="cpu")

    scans = root / "scans"                       # 3D channel files x_0000 + x_0001, y_0000 + y_0001
    scans.mkdir()
    for stem, src in (("x", IMAGES[5]), ("y", IMAGES[6])):
        img = nib.load(str(src))
        voxels = np.asarray(img.dataobj, dtype=np.float32)
        for c, v in enumerate((voxels, voxels * 0.5)):
            nib.save(nib.Nifti1Image(v, img.affine), str(scans / f"{stem}_{c:04d}.nii.gz"))
    four_d = root / "site_9584.nii.gz"           # one 4D file whose name ends in _NNNN: a case of its own
    shutil.copyfile(data / entries[0]["image"], four_d)
    return {"model": model, "scans": scans, "four_d": four_d}


def test_a_two_channel_model_reads_x_0000_and_x_0001_as_one_case_x(two_channel, tmp_path):
    from AutoSegCore.prediction import predict_files
    from AutoSegCore.inference.predictor import Predictor

    model, scans = two_channel["model"], two_channel["scans"]
    assert Predictor(model, device="cpu").in_channels == 2
    out = tmp_path / "cli"
    r = autoseg("predict", model, scans / "x_0000.nii.gz", scans / "x_0001.nii.gz", two_channel["four_d"],
                "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_outputs(out, {"x": scans / "x_0000.nii.gz", "site_9584": two_channel["four_d"]})

    results = predict_files(model, scans, tmp_path / "folder", device="cpu")      # a plain folder of channel files
    assert [r["case"] for r in results] == ["x", "y"]
    assert_outputs(tmp_path / "folder", {"x": scans / "x_0000.nii.gz", "y": scans / "y_0000.nii.gz"})


def test_an_incomplete_channel_set_is_a_one_line_error_naming_the_files_and_the_fix(two_channel, tmp_path):
    from AutoSegCore.errors import DatasetError
    from AutoSegCore.prediction import predict_files

    model, scans = two_channel["model"], two_channel["scans"]
    out = tmp_path / "out"
    r = autoseg("predict", model, scans / "x_0000.nii.gz", scans / "x_0001.nii.gz", scans / "y_0000.nii.gz",
                "--out", out, "--device", "cpu")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stderr
    assert "y_0000.nii.gz" in errors[0] and "missing y_0001.nii.gz" in errors[0], errors[0]
    hint = r.stderr.split("hint:", 1)[1]
    assert "y_0000.nii.gz … y_0001.nii.gz" in hint and "4D file" in hint, r.stderr
    assert not out.exists() or not any(out.iterdir())                          # nothing predicted

    over = tmp_path / "over"                     # a folder with one channel file too many
    shutil.copytree(scans, over)
    shutil.copyfile(over / "x_0001.nii.gz", over / "x_0002.nii.gz")
    with pytest.raises(DatasetError) as info:
        predict_files(model, over, tmp_path / "api", device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and "x_0000.nii.gz, x_0001.nii.gz, x_0002.nii.gz" in msg, msg
    assert "beyond the model's channels: x_0002.nii.gz" in msg and "4D file" in msg, msg
    assert not (tmp_path / "api").exists()
