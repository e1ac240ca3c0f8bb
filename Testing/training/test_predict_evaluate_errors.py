"""`autoseg predict` / `evaluate` on bad inputs, as a user runs them: a one-line error naming the file (exit 2, no
traceback) and nothing written — NaN voxels, a truncated gzip among good images, a fake or damaged model folder,
an unreadable .nrrd, a truncated prediction, unknown or missing prediction folders; a failure while predicting
keeps the finished cases; and a dataset folder's imagesTs/."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from shared_data import REPO, copy_msd_subset, make_subset
from trainkit import tiny_config

DEMO = REPO / "Resources" / "DemoData" / "Hippocampus"
CASE = "hippocampus_003"


def autoseg(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "AutoSegCore", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def cli(capsys, *args):
    """The same entry point in this process (cheaper than a child; a traceback would fail the test): rc, stderr."""
    from AutoSegCore.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, rc, "", capsys.readouterr().err)


def assert_user_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "error:" in r.stderr and "hint:" in r.stderr, r.stderr
    for n in needles:
        assert str(n) in r.stderr, (n, r.stderr)


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) with its bytes; {} if it does not exist."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from AutoSegCore.training.api import train_model

    root = tmp_path_factory.mktemp("model")
    data = make_subset(root / "data", 3, source=DEMO)
    out = root / "M"
    train_model(data, tiny_config(epochs=1, steps_per_epoch=2), out, val_fraction=0, device="cpu")
    assert (out / "model.pt").is_file()
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """good.nii.gz (a demo image), nan.nii.gz (one NaN voxel), truncated.nii.gz (first half of the gzip bytes)."""
    d = tmp_path_factory.mktemp("inputs")
    src = DEMO / "imagesTr" / f"{CASE}.nii.gz"
    shutil.copyfile(src, d / "good.nii.gz")
    img = nib.load(str(src))
    data = np.asarray(img.dataobj).astype(np.float32)
    data[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(d / "nan.nii.gz"))
    raw = src.read_bytes()
    (d / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    return d


# ----------------------------------------------------------------------------------------------------- predict

def test_an_image_with_a_nan_voxel_is_refused(model, files, tmp_path):
    r = autoseg("predict", model, files / "nan.nii.gz", "--out", tmp_path / "p")
    assert_user_error(r, files / "nan.nii.gz", "image has 1 NaN/Inf voxel(s)")
    assert not (tmp_path / "p").exists()


def test_a_truncated_image_among_good_ones_writes_nothing(model, files, tmp_path, capsys):
    """A new --out is not created; an existing one keeps exactly its files (none added, none overwritten)."""
    r = cli(capsys, "predict", model, files / "good.nii.gz", files / "truncated.nii.gz", "--out", tmp_path / "new" / "p")
    assert_user_error(r, files / "truncated.nii.gz", "truncated or corrupt")
    assert not (tmp_path / "new").exists()

    out = tmp_path / "existing"
    out.mkdir()
    (out / "good.nii.gz").write_bytes(b"an earlier prediction")
    (out / "notes.txt").write_text("keep me\n")
    before = snapshot(out)
    r = autoseg("predict", model, files / "good.nii.gz", files / "truncated.nii.gz", "--out", out)
    assert_user_error(r, files / "truncated.nii.gz", "truncated or corrupt")
    assert snapshot(out) == before


def test_a_failure_while_predicting_keeps_finished_cases_and_a_rerun_does_the_rest(model, files, tmp_path,
                                                                                   monkeypatch):
    """What no up-front check can foresee (here: the second prediction runs out of memory) keeps the case finished
    before it, complete, and leaves no file of the failed one (not even a hidden temp file); an incomplete earlier
    output of a case is redone; a re-run predicts only what is missing."""
    from AutoSegCore.prediction import predict_files
    from AutoSegCore.inference.predictor import Predictor

    second = tmp_path / "second.nii.gz"
    shutil.copyfile(files / "good.nii.gz", second)
    predictor = Predictor(model, device="cpu")
    real = predictor.predict_array

    def failing(image, affine, name="case"):
        if name == "second":
            raise MemoryError("simulated")
        return real(image, affine, name)

    monkeypatch.setattr(predictor, "predict_array", failing)
    out = tmp_path / "existing"
    out.mkdir()
    (out / "good.nii.gz").write_bytes(b"an earlier, incomplete prediction (no good.seg.nrrd)")
    with pytest.raises(MemoryError):
        predict_files(predictor, [files / "good.nii.gz", second], out)
    assert sorted(p.name for p in out.iterdir()) == ["good.nii.gz", "good.seg.nrrd"]
    assert nib.load(str(out / "good.nii.gz")).shape == nib.load(str(files / "good.nii.gz")).shape
    monkeypatch.undo()
    done = (out / "good.seg.nrrd").stat().st_mtime_ns
    results = predict_files(predictor, [files / "good.nii.gz", second], out)
    assert [(r["case"], r["status"]) for r in results] == [("good", "skipped"), ("second", "predicted")]
    assert sorted(p.name for p in out.iterdir()) == ["good.nii.gz", "good.seg.nrrd", "second.nii.gz",
                                                      "second.seg.nrrd"]
    assert (out / "good.seg.nrrd").stat().st_mtime_ns == done


def _fake(folder: Path, model: Path, kind: str) -> Path:
    folder.mkdir()
    if kind == "empty-json":
        (folder / "model.json").write_text("{}")
        (folder / "model.pt").write_bytes(b"junk")
        return folder
    shutil.copyfile(model / "model.json", folder / "model.json")
    if kind == "junk-weights":
        (folder / "model.pt").write_bytes(b"not a checkpoint\n")
    elif kind == "other-network":
        state = torch.load(model / "model.pt", weights_only=True)
        first = next(iter(state))
        state[first] = torch.zeros(1)
        torch.save(state, folder / "model.pt")
    return folder


@pytest.mark.parametrize("kind, file, message", [
    ("empty-json", "model.json", "model.json is not a model description (missing 'config'"),
    ("junk-weights", "model.pt", "model.pt is not a PyTorch weights file"),
    ("other-network", "model.pt", "model.pt does not fit the network described in model.json"),
])
def test_a_fake_or_damaged_model_folder_is_a_one_line_error(model, files, tmp_path, capsys, kind, file, message):
    fake = _fake(tmp_path / "fakemodel", model, kind)
    run = autoseg if kind == "empty-json" else lambda *a: cli(capsys, *a)     # one child process is enough
    r = run("predict", fake, files / "good.nii.gz", "--out", tmp_path / "p")
    assert_user_error(r, fake / file, message)
    assert not (tmp_path / "p").exists()


def test_an_unreadable_nrrd_is_refused_and_the_help_names_folders_and_formats(model, files, tmp_path, capsys):
    nrrd = tmp_path / "image.nrrd"
    nrrd.write_bytes(b"NRRD0004\n")
    r = cli(capsys, "predict", model, files / "good.nii.gz", nrrd, "--out", tmp_path / "p")
    assert_user_error(r, nrrd)
    assert not (tmp_path / "p").exists()
    from AutoSegCore.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["predict"]
    text = " ".join(sub.format_help().split())
    assert "a folder of images" in text and "--format {nifti,input,nrrd,mha}" in text and "--overwrite" in text
    assert "imagesTs/ if that holds images, else the images of imagesTr/" in text


def test_a_dataset_folder_predicts_imagesTs_if_it_holds_images_else_imagesTr(model, tmp_path, capsys):
    data = copy_msd_subset(tmp_path / "data", 2, DEMO)
    (data / "imagesTs").mkdir()
    (data / "imagesTs" / ".DS_Store").write_text("")          # not an image: imagesTs/ counts as empty
    r = cli(capsys, "predict", model, data, "--out", tmp_path / "tr")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "imagesTs/ holds no images: predicting the 2 training image(s) of imagesTr/" in r.stderr
    cases = sorted(json.loads((data / "dataset.json").read_text())["training"], key=lambda e: e["image"])
    names = [Path(e["image"]).name[: -len(".nii.gz")] for e in cases]
    assert sorted(p.name for p in (tmp_path / "tr").iterdir()) == sorted(
        f"{n}{ext}" for n in names for ext in (".nii.gz", ".seg.nrrd"))

    shutil.copyfile(DEMO / "imagesTr" / "hippocampus_376.nii.gz", data / "imagesTs" / "hippocampus_376.nii.gz")
    r = autoseg("predict", model, data, "--out", tmp_path / "ts")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "predicting the 1 image(s) of imagesTs/" in r.stderr
    assert sorted(p.name for p in (tmp_path / "ts").iterdir()) == ["hippocampus_376.nii.gz",
                                                                   "hippocampus_376.seg.nrrd"]


# ---------------------------------------------------------------------------------------------------- evaluate

@pytest.fixture(scope="module")
def data3(tmp_path_factory):
    return make_subset(tmp_path_factory.mktemp("eval") / "data", 3, source=DEMO)


def test_evaluate_a_truncated_prediction_is_a_one_line_error(data3, files, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    shutil.copyfile(files / "truncated.nii.gz", preds / f"{CASE}.nii.gz")
    r = autoseg("evaluate", preds, data3, "--out", tmp_path / "metrics.json")
    assert_user_error(r, preds / f"{CASE}.nii.gz", "truncated or corrupt")
    assert not (tmp_path / "metrics.json").exists()


def test_evaluate_names_unknown_predictions_and_a_missing_folder(data3, tmp_path, capsys):
    preds = tmp_path / "preds"
    preds.mkdir()
    shutil.copyfile(DEMO / "labelsTr" / f"{CASE}.nii.gz", preds / f"{CASE}.nii.gz")      # a perfect prediction
    shutil.copyfile(DEMO / "labelsTr" / f"{CASE}.nii.gz", preds / "not_a_case.nii.gz")
    r = autoseg("evaluate", preds, data3, "--out", tmp_path / "metrics.json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 prediction(s)" in r.stderr and "not evaluated: not_a_case" in r.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["cases"]) == [CASE] and metrics["ignored"] == ["not_a_case"]
    assert metrics["mean_dice"] == pytest.approx(1.0)

    (preds / f"{CASE}.nii.gz").unlink()
    r = cli(capsys, "evaluate", preds, data3)
    assert_user_error(r, preds, "none of its 1 prediction(s) is a case of dataset", "not_a_case.nii.gz")

    r = autoseg("evaluate", tmp_path / "nowhere", data3)
    assert_user_error(r, tmp_path / "nowhere", "predictions folder does not exist")


def test_weights_that_hold_code_or_nan_are_refused_in_process(model, tmp_path):
    """The public loader behind `autoseg predict`: pickled objects are refused (weights_only=True), NaN weights too."""
    from AutoSegCore.errors import ConfigError
    from AutoSegCore.training.model_io import load_model

    code = tmp_path / "code"
    code.mkdir()
    shutil.copyfile(model / "model.json", code / "model.json")
    torch.save({"weights": Path("an object, not a tensor")}, code / "model.pt")
    with pytest.raises(ConfigError, match="holds Python objects, not only weights"):
        load_model(code)
    nan = tmp_path / "nan"
    nan.mkdir()
    shutil.copyfile(model / "model.json", nan / "model.json")
    state = torch.load(model / "model.pt", weights_only=True)
    next(v for v in state.values() if v.is_floating_point()).fill_(float("nan"))
    torch.save(state, nan / "model.pt")
    with pytest.raises(ConfigError, match="NaN/Inf weights"):
        load_model(nan)
