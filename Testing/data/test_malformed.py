"""A corpus of malformed datasets, built in tmp_path from real Hippocampus/Spine files, run through the real CLI.

Each must give exit code != 0, one error line plus a hint line on stderr, no traceback, and no --out file.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from datakit import make_msd_copy
from shared_data import SPINE

from AutoSegCore.data.dataset import load_dataset
from AutoSegCore.errors import DatasetError


def _meta(root: Path) -> dict:
    return json.loads((root / "dataset.json").read_text())


def _write_meta(root: Path, meta: dict) -> None:
    (root / "dataset.json").write_text(json.dumps(meta))


def _first(root: Path, kind: str = "label") -> Path:
    entry = sorted(_meta(root)["training"], key=lambda e: e["image"])[0]
    return (root / entry[kind]).resolve()


def _rewrite(path: Path, fn) -> None:
    """Replace a NIfTI file's voxels/affine by fn(data, affine) -> (data, affine)."""
    img = nib.load(path)
    data, affine = fn(np.asarray(img.dataobj), img.affine.copy())
    nib.save(nib.Nifti1Image(data, affine), path)


def missing_folder(root):
    return root / "does_not_exist", "not found"


def empty_folder(root):
    root.mkdir()
    return root, "empty"


def missing_dataset_json(root):
    make_msd_copy(root)
    (root / "dataset.json").unlink()
    return root, "dataset.json: missing"


def invalid_json(root):
    make_msd_copy(root)
    (root / "dataset.json").write_text('{"labels": {"0": "background",}')
    return root, "not valid JSON"


def no_labels_in_json(root):
    make_msd_copy(root)
    meta = _meta(root)
    del meta["labels"]
    _write_meta(root, meta)
    return root, "no 'labels'"


def region_labels(root):
    make_msd_copy(root)
    meta = _meta(root)
    meta["labels"] = {"background": 0, "whole": [1, 2]}
    _write_meta(root, meta)
    return root, "region-based"


def listed_image_missing(root):
    make_msd_copy(root)
    path = _first(root, "image")
    path.unlink()
    return root, path.name


def listed_label_missing(root):
    make_msd_copy(root)
    path = _first(root)
    path.unlink()
    return root, "does not exist"


def image_without_label(root):
    make_msd_copy(root)
    meta = _meta(root)
    del meta["training"][1]["label"]
    _write_meta(root, meta)
    return root, "image without label"


def duplicate_case(root):
    make_msd_copy(root)
    meta = _meta(root)
    meta["training"].append(meta["training"][0])
    _write_meta(root, meta)
    return root, "appears twice"


def shape_mismatch(root):
    make_msd_copy(root)
    _rewrite(_first(root), lambda d, a: (d[:-2], a))
    return root, "label shape"


def affine_mismatch(root):
    make_msd_copy(root)
    _rewrite(_first(root), lambda d, a: (d, a + np.diag([0, 0, 0.5, 0])))
    return root, "affine differs"


def label_not_integer(root):
    make_msd_copy(root)
    _rewrite(_first(root), lambda d, a: (d.astype(np.float32) * 0.5, a))
    return root, "not integers"


def label_value_unknown(root):
    make_msd_copy(root)
    _rewrite(_first(root), lambda d, a: (np.where(d == 2, 5, d).astype(np.uint8), a))
    return root, "[5]"


def image_with_nan(root):
    make_msd_copy(root)

    def put_nan(d, a):
        d = d.astype(np.float32)
        d[3, 4, 5] = np.nan
        return d, a
    _rewrite(_first(root, "image"), put_nan)
    return root, "NaN/Inf"


def image_with_inf(root):
    make_msd_copy(root)

    def put_inf(d, a):
        d = d.astype(np.float32)
        d[0, 0, 0] = np.inf
        return d, a
    _rewrite(_first(root, "image"), put_inf)
    return root, "NaN/Inf"


def truncated_gzip(root):
    make_msd_copy(root)
    path = _first(root, "image")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return root, "truncated or corrupt"


def not_a_nifti(root):
    make_msd_copy(root)
    path = _first(root, "image")
    path.write_bytes(gzip.compress(b"this is not an image" * 20))
    return root, "unreadable NIfTI"


def empty_file(root):
    make_msd_copy(root)
    path = _first(root)
    path.write_bytes(b"")
    return root, "0 bytes"


def image_2d(root):
    make_msd_copy(root)
    _rewrite(_first(root, "image"), lambda d, a: (d[:, :, 10], a))
    _rewrite(_first(root), lambda d, a: (d[:, :, 10], a))
    return root, "is 2D"


def singleton_dim(root):
    make_msd_copy(root)
    _rewrite(_first(root, "image"), lambda d, a: (d[:, :, 10:11], a))
    _rewrite(_first(root), lambda d, a: (d[:, :, 10:11], a))
    return root, "is 2D"


def wrong_channel_count(root):
    make_msd_copy(root)
    _rewrite(_first(root, "image"), lambda d, a: (np.stack([d, d], axis=-1).astype(np.float32), a))
    return root, "2 channels but dataset.json names 1"


def label_4d(root):
    make_msd_copy(root)
    _rewrite(_first(root), lambda d, a: (np.stack([d == 1, d == 2], axis=-1).astype(np.uint8), a))
    return root, "label is 4D"


def nnunet_missing_channel(root):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    img = nib.load(SPINE / "imagesTr" / "sub-unf01.nii.gz")
    data = np.asarray(img.dataobj)
    for case in ("a", "b"):
        for c in range(3 if case == "a" else 2):          # case b lacks b_0002
            nib.save(nib.Nifti1Image(data[..., c], img.affine), root / "imagesTr" / f"{case}_{c:04d}.nii.gz")
        nib.save(nib.load(SPINE / "labelsTr" / "sub-unf01.nii.gz"), root / "labelsTr" / f"{case}.nii.gz")
    _write_meta(root, {"channel_names": {"0": "T1w", "1": "T2star", "2": "T2w"},
                       "labels": {"background": 0, "cord": 1}, "file_ending": ".nii.gz"})
    return root, "b_0002.nii.gz: channel file missing"


def nnunet_label_missing(root):
    nnunet_missing_channel(root)
    nib.save(nib.Nifti1Image(np.asarray(nib.load(root / "imagesTr" / "a_0002.nii.gz").dataobj), nib.load(
        root / "imagesTr" / "a_0002.nii.gz").affine), root / "imagesTr" / "b_0002.nii.gz")
    (root / "labelsTr" / "a.nii.gz").unlink()
    return root, "image without label"


def no_cases(root):
    make_msd_copy(root)
    meta = _meta(root)
    meta["training"] = []
    _write_meta(root, meta)
    return root, "'training' list is empty"


def _all_files(root: Path, kind: str) -> list[Path]:
    return [(root / e[kind]).resolve() for e in _meta(root)["training"]]


def every_label_background(root):
    """No foreground anywhere: `train` used to run (exit 0) on per-case warnings and learn to predict nothing."""
    make_msd_copy(root)
    for path in _all_files(root, "label"):
        _rewrite(path, lambda d, a: (np.zeros_like(d), a))
    return root, "every label map is all background"


def no_background_anywhere(root):
    """Background stored as another class (labels shifted): every voxel foreground, trained with exit 0 before."""
    make_msd_copy(root)
    for path in _all_files(root, "label"):
        _rewrite(path, lambda d, a: (np.where(d == 0, 2, d).astype(np.uint8), a))
    return root, "no label map has a background (0) voxel"


def constant_image(root):
    make_msd_copy(root)
    _rewrite(_first(root, "image"), lambda d, a: (np.zeros_like(d), a))
    return root, "image is constant"


def spacing_in_other_units(root):
    """One case's spacing in µm instead of mm: resampled 1000× it used to blow up or vanish."""
    make_msd_copy(root)
    path = _first(root, "image")
    fix = lambda d, a: (d, np.diag([1000.0, 1000.0, 1000.0, 1.0]) @ a)  # noqa: E731
    _rewrite(path, fix)
    _rewrite(_first(root), fix)
    return root, "over 20× the dataset's median"


def nan_in_affine(root):
    make_msd_copy(root)
    def put_nan(d, a):
        a[0, 3] = np.nan
        return d, a
    _rewrite(_first(root, "image"), put_nan)
    _rewrite(_first(root), put_nan)
    return root, "geometry has NaN/Inf"


def zero_voxel_size(root):
    """A header whose voxel size is 0 along z and that has no qform/sform: nibabel reads it as 1 mm."""
    make_msd_copy(root)
    path = _first(root, "image")
    img = nib.load(path)
    hdr = img.header.copy()
    hdr.set_qform(None, code=0)
    hdr.set_sform(None, code=0)
    hdr["pixdim"][1:4] = [1.0, 1.0, 0.0]
    hdr["vox_offset"] = 352                                           # header, no extensions, then the voxels
    body = bytearray(352)                                             # written by hand: nibabel would fix it
    body[:348] = hdr.binaryblock
    path.write_bytes(gzip.compress(bytes(body) + np.asarray(img.dataobj).astype(hdr.get_data_dtype())
                                   .tobytes(order="F")))
    return root, "is zero or not a number"


def image_as_its_label(root):
    """The label points at the scan itself: integer-valued uint8 scans passed every label check."""
    make_msd_copy(root)
    meta = _meta(root)
    meta["training"][0]["label"] = meta["training"][0]["image"]
    _write_meta(root, meta)
    return root, "the same file is an image and a label"


def truncated_nrrd(root):
    from formatkit import convert_msd
    convert_msd(root, 3, image_ending=".nrrd", label_ending=".nrrd")
    path = sorted((root / "imagesTr").iterdir())[0]
    path.write_bytes(path.read_bytes()[:300])
    return root, "hippocampus_003.nrrd"


def seg_nrrd_unknown_segment(root):
    from formatkit import convert_msd
    convert_msd(root, 3, image_ending=".nrrd", label_ending=".seg.nrrd")
    meta = _meta(root)
    meta["labels"] = {"0": "background", "1": "Anterior", "2": "Tail"}
    _write_meta(root, meta)
    return root, "segment 'Posterior' is not a label of the dataset"


CORPUS = [missing_folder, empty_folder, missing_dataset_json, invalid_json, no_labels_in_json, region_labels,
          listed_image_missing, listed_label_missing, image_without_label, duplicate_case, shape_mismatch,
          affine_mismatch, label_not_integer, label_value_unknown, image_with_nan, image_with_inf, truncated_gzip,
          not_a_nifti, empty_file, image_2d, singleton_dim, wrong_channel_count, label_4d, nnunet_missing_channel,
          nnunet_label_missing, no_cases, every_label_background, no_background_anywhere, constant_image,
          spacing_in_other_units, nan_in_affine, zero_voxel_size, truncated_nrrd, seg_nrrd_unknown_segment,
          image_as_its_label]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AutoSegCore", *args], capture_output=True, text=True, encoding="utf-8", timeout=120,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def _assert_clean_error(proc, command: str, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(f"autoseg {command}: error: ") and expected in lines[0], lines[0]
    assert lines[1].startswith("  hint: ") and len(lines[1]) > 12


@pytest.mark.parametrize("build", CORPUS, ids=lambda f: f.__name__)
def test_malformed_dataset_through_cli(tmp_path, build):
    data, expected = build(tmp_path / "ds")
    with pytest.raises(DatasetError, match=None) as info:
        load_dataset(data, min_cases=2)
    assert expected in info.value.message and "\n" not in str(info.value)
    _assert_clean_error(_cli("validate", str(data)), "validate", expected)
    out = tmp_path / "out" / "fp.json"
    _assert_clean_error(_cli("fingerprint", str(data), "--out", str(out)), "fingerprint", expected)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_single_case_fails_validate_for_training_but_fingerprints(tmp_path):
    data = make_msd_copy(tmp_path / "ds", n=1)
    _assert_clean_error(_cli("validate", str(data)), "validate", "1 case(s), at least 2 needed")
    ok = _cli("validate", str(data), "--min-cases", "1")
    assert ok.returncode == 0 and ok.stdout.startswith("OK: Hippocampus: 1 cases")
    out = tmp_path / "fp.json"
    fp = _cli("fingerprint", str(data), "--out", str(out))
    assert fp.returncode == 0 and json.loads(out.read_text())["num_cases"] == 1


def test_valid_dataset_cli_and_events(tmp_path):
    data = make_msd_copy(tmp_path / "ds", n=3)
    events = tmp_path / "events.jsonl"
    proc = _cli("fingerprint", str(data), "--out", str(tmp_path / "fp.json"), "--events", str(events))
    assert proc.returncode == 0 and "Anterior" in proc.stdout
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds == ["artifact", "done"]
    assert json.loads((tmp_path / "fp.json").read_text())["num_cases"] == 3


@pytest.mark.parametrize("build", [every_label_background, no_background_anywhere, constant_image],
                         ids=lambda f: f.__name__)
def test_train_refuses_meaningless_labels_before_writing(tmp_path, build):
    """The classes `autoseg train` used to accept and train on with exit 0: now exit 2 and no model folder."""
    data, expected = build(tmp_path / "ds")
    out = tmp_path / "model"
    proc = _cli("train", str(data), "--out", str(out), "--epochs", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("[")]    # progress lines in logs
    assert len(lines) == 2 and lines[0].startswith("autoseg train: error: ") and expected in lines[0], proc.stderr
    assert not out.exists()
