"""Loading real datasets in the MSD layout, an nnU-Net raw copy and explicit pairs; reading arrays."""
from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest
from datakit import make_msd_copy
from shared_data import ALL_DATASETS, BRATS, HIPPO, SPINE, SPLEEN, TS_CT, TS_MR

from AutoSegCore.data.dataset import (IO_STATS, dataset_warnings, load_dataset, read_case, read_image,
                                      validate_dataset)
from AutoSegCore.errors import DatasetError


@pytest.mark.parametrize("root", ALL_DATASETS, ids=lambda p: p.name)
def test_load_every_shared_dataset(root):
    meta = json.loads((root / "dataset.json").read_text())
    ds = load_dataset(root)
    assert len(ds.cases) == len(meta["training"]) == meta["numTraining"]
    assert ds.labels == {int(k): v for k, v in meta["labels"].items()}
    assert ds.num_channels == len(meta["modality"])
    assert ds.foreground_labels == sorted(int(k) for k in meta["labels"] if k != "0")
    arr = read_case(ds.cases[-1])
    img = nib.load(ds.cases[-1].images[0])
    assert arr.image.dtype == np.float32 and arr.image.shape == (ds.num_channels,) + img.shape[:3]
    assert arr.label.shape == arr.image.shape[1:]
    assert np.array_equal(arr.affine, img.affine)
    assert set(np.unique(arr.label).tolist()) <= set(ds.labels)
    assert arr.spacing == pytest.approx(img.header.get_zooms()[:3], rel=1e-5)


def test_specific_properties():
    assert len(load_dataset(HIPPO).foreground_labels) == 2
    assert load_dataset(HIPPO).modality == "MR"
    assert load_dataset(SPLEEN).modality == "CT"
    assert load_dataset(BRATS, validate=False).channel_names == ["FLAIR", "T1c"]
    assert load_dataset(SPINE).num_channels == 3
    assert len(load_dataset(TS_CT).labels) == 118
    assert load_dataset(TS_MR).modality == "MR"


def test_multichannel_image_matches_nibabel_channels():
    ds = load_dataset(SPINE)
    arr = read_case(ds.cases[0])
    raw = np.asarray(nib.load(ds.cases[0].images[0]).dataobj)
    for c in range(3):
        assert np.array_equal(arr.image[c], raw[..., c].astype(np.float32))


def test_hippocampus_deep_validation_is_fast(hippo):
    before = dict(IO_STATS)
    t = time.perf_counter()
    validate_dataset(hippo, deep=True, min_cases=2)
    elapsed = time.perf_counter() - t
    assert IO_STATS["data_reads"] - before["data_reads"] == 2 * len(hippo.cases)   # every voxel was checked
    assert elapsed < 10.0   # ≈ 0.5 s here; generous for a shared machine


def _nnunet_copy(tmp_path, source_ds, n, channel_names, labels_v2):
    root = tmp_path / "Dataset001_Test"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case in source_ds.cases[:n]:
        img = nib.load(case.images[0])
        data = np.asarray(img.dataobj)
        chans = [data] if data.ndim == 3 else [data[..., c] for c in range(data.shape[3])]
        for c, ch in enumerate(chans):
            nib.save(nib.Nifti1Image(ch, img.affine, img.header if data.ndim == 3 else None),
                     root / "imagesTr" / f"{case.name}_{c:04d}.nii.gz")
        nib.save(nib.load(case.label), root / "labelsTr" / f"{case.name}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": channel_names, "labels": labels_v2, "numTraining": n, "file_ending": ".nii.gz"}))
    return root


def test_nnunet_raw_layout_single_channel(tmp_path, hippo):
    root = _nnunet_copy(tmp_path, hippo, 4, {"0": "MRI"}, {"background": 0, "Anterior": 1, "Posterior": 2})
    ds = load_dataset(root)
    assert ds.source == "nnunet" and ds.case_names == hippo.case_names[:4]
    assert ds.labels == hippo.labels
    for case in ds.cases:
        a, b = read_case(case), read_case(hippo.case(case.name))
        assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
        assert np.allclose(a.affine, b.affine)


def test_nnunet_raw_layout_three_channels(tmp_path):
    spine = load_dataset(SPINE)
    root = _nnunet_copy(tmp_path, spine, 1, {"0": "T1w", "1": "T2star", "2": "T2w"}, {"background": 0, "cord": 1})
    ds = load_dataset(root)
    assert [p.name for p in ds.cases[0].images] == [f"sub-unf01_{c:04d}.nii.gz" for c in range(3)]
    assert np.array_equal(read_case(ds.cases[0]).image, read_case(spine.cases[0]).image)


def test_pairs_with_inferred_labels(hippo):
    pairs = [(c.images[0], c.label) for c in hippo.cases[:3]]
    ds = load_dataset(pairs)
    assert ds.source == "pairs" and ds.root is None
    assert ds.labels == {0: "background", 1: "label_1", 2: "label_2"}
    assert ds.channel_names == ["image"] and ds.modality == "MR"
    assert ds.case_names == hippo.case_names[:3]
    named = load_dataset(pairs, labels={0: "bg", 1: "anterior", 2: "posterior"}, name="mine")
    assert named.labels[2] == "posterior" and named.name == "mine"


def test_pairs_guess_ct_from_intensities():
    spleen = load_dataset(SPLEEN)
    ds = load_dataset([(spleen.cases[0].images, spleen.cases[0].label)])
    assert ds.modality == "CT"


def test_pairs_label_not_in_given_labels(hippo):
    with pytest.raises(DatasetError, match="not in"):
        load_dataset([(hippo.cases[0].images[0], hippo.cases[0].label)], labels={0: "bg", 1: "anterior"})


def test_subset_and_case(hippo):
    names = hippo.case_names[5:8]
    sub = hippo.subset(names)
    assert sub.case_names == names and sub.labels == hippo.labels and len(hippo.cases) == 182
    with pytest.raises(DatasetError, match="no case 'nope'"):
        hippo.case("nope")


def test_read_image_for_prediction(hippo):
    image, affine = read_image(hippo.cases[0].images)
    assert image.shape[0] == 1 and image.dtype == np.float32
    assert np.array_equal(affine, nib.load(hippo.cases[0].images[0]).affine)


def test_empty_label_is_a_warning_not_an_error(tmp_path):
    root = make_msd_copy(tmp_path / "ds", n=2)
    lbl = next((root / "labelsTr").iterdir())
    img = nib.load(lbl)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), lbl)
    ds = load_dataset(root, min_cases=2)
    assert len(ds.warnings) == 1 and "no foreground" in ds.warnings[0] and lbl.name in ds.warnings[0]
    assert dataset_warnings(ds) == ds.warnings
