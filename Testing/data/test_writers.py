"""Prediction writers: NIfTI and Slicer .seg.nrrd in the original geometry, with names and colours."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import slicerio
from shared_data import TS_CT

from AutoSegCore.data.dataset import load_dataset, read_case
from AutoSegCore.data.writers import label_colors, save_prediction
from AutoSegCore.errors import DatasetError


def test_round_trip_hippocampus(tmp_path, hippo):
    arr = read_case(hippo.cases[3])
    out = save_prediction(arr.label, arr.affine, hippo.labels, tmp_path / "pred", "case")
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["case.nii.gz", "case.seg.nrrd"]
    img = nib.load(out["nifti"])
    assert np.array_equal(img.affine, arr.affine)
    assert img.get_data_dtype() == np.uint8 and np.array_equal(np.asarray(img.dataobj), arr.label)
    seg = slicerio.read_segmentation(str(out["seg_nrrd"]))
    assert [(s["name"], s["labelValue"]) for s in seg["segments"]] == [("Anterior", 1), ("Posterior", 2)]
    assert np.array_equal(seg["voxels"], arr.label)
    lps = np.diag([-1, -1, 1, 1]) @ arr.affine
    assert np.allclose(seg["ijkToLPS"], lps)
    colors = label_colors(hippo.labels)
    assert [tuple(s["color"]) for s in seg["segments"]] == [colors[1], colors[2]]


def test_many_labels_and_oblique_affine(tmp_path):
    ds = load_dataset(TS_CT)
    arr = read_case(ds.cases[1])
    rot = np.array([[0.0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    affine = rot @ arr.affine
    out = save_prediction(arr.label, affine, ds.labels, tmp_path, "ts", nifti=True, seg_nrrd=True)
    assert np.allclose(nib.load(out["nifti"]).affine, affine)
    seg = slicerio.read_segmentation(str(out["seg_nrrd"]))
    assert len(seg["segments"]) == 117
    by_value = {s["labelValue"]: s["name"] for s in seg["segments"]}
    assert by_value[1] == "spleen" and by_value[5] == "liver"


def test_label_colors_distinct_and_deterministic():
    labels = {i: f"l{i}" for i in range(118)}
    colors = label_colors(labels)
    assert 0 not in colors and len(colors) == 117 and len(set(colors.values())) == 117
    assert label_colors({0: "bg", 5: "x"})[5] == colors[5]                 # fixed by value, not by order
    assert all(0.0 <= c <= 1.0 for rgb in colors.values() for c in rgb)


def test_large_values_uint16_and_bad_input(tmp_path, hippo):
    arr = read_case(hippo.cases[0])
    big = arr.label.astype(np.int32) * 300
    out = save_prediction(big, arr.affine, {0: "bg", 300: "a", 600: "p"}, tmp_path, "big", seg_nrrd=False)
    assert list(out) == ["nifti"] and nib.load(out["nifti"]).get_data_dtype() == np.uint16
    with pytest.raises(DatasetError, match="3D"):
        save_prediction(np.zeros((2, 3, 4, 5)), arr.affine, hippo.labels, tmp_path, "bad")
    with pytest.raises(DatasetError, match="outside"):
        save_prediction(-arr.label.astype(np.int16) - 1, arr.affine, hippo.labels, tmp_path, "neg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.nii.gz"]    # nothing partial written
