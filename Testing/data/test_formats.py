"""Other formats in, on real files made from the shared cases: NRRD / MetaImage / an oblique NIfTI / DICOM series
read like the NIfTI originals (voxels and geometry), Slicer .seg.nrrd labels as training labels, plain folders of
inputs, and each bad input as a one-line DatasetError."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from formatkit import convert_msd, dicom_series, oblique_nifti, seg_nrrd_label, sitk_copy
from shared_data import DATA_ROOT, HIPPO, make_subset

from AutoSegCore.data import readers
from AutoSegCore.data.dataset import load_dataset, read_case
from AutoSegCore.data.volumes import (IO_STATS, find_images, image_format, is_image_file, read_header, read_image,
                                      read_label_values, strip_ending)
from AutoSegCore.data.writers import write_label_like
from AutoSegCore.errors import DatasetError

PROSTATE = DATA_ROOT / "Prostate_PROMISE12"
HIPPO_IMAGE = HIPPO / "imagesTr" / "hippocampus_003.nii.gz"
HIPPO_LABEL = HIPPO / "labelsTr" / "hippocampus_003.nii.gz"
PROSTATE_IMAGE = PROSTATE / "imagesTr" / "prostate_00.nii.gz"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The shared cases in every format, written once for the module."""
    t = tmp_path_factory.mktemp("formats")
    out = {}
    for key, src in (("hippo", HIPPO_IMAGE), ("prostate", PROSTATE_IMAGE)):
        for ending in (".nrrd", ".nhdr", ".mha", ".mhd"):
            out[key, ending] = sitk_copy(src, t / key / f"case{ending}")
    out["oblique"] = oblique_nifti(PROSTATE_IMAGE, t / "oblique" / "prostate_ob.nii.gz")
    out["oblique_nrrd"] = sitk_copy(out["oblique"], t / "oblique" / "prostate_ob.nrrd")
    out["dicom_uid"] = dicom_series(out["oblique"], t / "dicom" / "patient_1")
    out["dicom"] = t / "dicom" / "patient_1"
    out["root"] = t
    return out


def test_endings_and_formats():
    assert strip_ending("a.seg.nrrd") == "a" and strip_ending("b.nii.gz") == "b" and strip_ending("c.MHA") == "c"
    assert is_image_file("x.nrrd") and is_image_file("x.mhd") and not is_image_file("x.seg.nrrd")
    assert not is_image_file("x.dcm") and not is_image_file("x.png")
    assert [image_format(n) for n in ("a.nii.gz", "a.nhdr", "a.mha")] == ["nifti", "nrrd", "metaimage"]


@pytest.mark.parametrize("key", ["hippo", "prostate"])
@pytest.mark.parametrize("ending", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_itk_formats_read_like_the_nifti(files, key, ending):
    src = HIPPO_IMAGE if key == "hippo" else PROSTATE_IMAGE
    ref, ref_affine = read_image([src])
    image, affine = read_image([files[key, ending]])
    assert image.dtype == np.float32 and np.array_equal(image, ref)
    np.testing.assert_allclose(affine, ref_affine, atol=1e-6)
    assert read_header(files[key, ending]).shape == tuple(nib.load(src).shape)


@pytest.mark.parametrize("src", [HIPPO_IMAGE, PROSTATE_IMAGE], ids=["hippo", "prostate"])
def test_nifti_through_simpleitk_equals_nibabel(src):
    """The two NIfTI paths agree voxel for voxel and on the affine (the reason either could be chosen)."""
    via_nib = read_header(src)
    via_itk = readers.itk_file_header(src, "nifti")
    np.testing.assert_allclose(via_itk.affine, via_nib.affine, atol=1e-5)
    assert np.array_equal(readers.itk_voxels(via_itk), np.asarray(nib.load(src).dataobj))


def test_oblique_input_keeps_its_direction_cosines(files, tmp_path):
    img = nib.load(files["oblique"])
    for path in (files["oblique"], files["oblique_nrrd"]):
        header = read_header(path)
        np.testing.assert_allclose(header.affine, img.affine, atol=1e-5)
        assert abs(header.affine[0, 1]) > 0.1            # really oblique: off-diagonal direction terms
    label = (np.asarray(img.dataobj) > 300).astype(np.uint8)
    for ref in (files["oblique"], files["oblique_nrrd"]):
        for ending in (".nrrd", ".mha", ".nii.gz"):
            out = write_label_like(label, img.affine, ref, tmp_path / f"{Path(ref).name}{ending}")
            assert np.array_equal(read_label_values(out), label)
            np.testing.assert_allclose(read_header(out).affine, img.affine, atol=1e-5)
    # an ITK reference's geometry is copied as ITK read it, not recomputed from the affine (NRRD's text header
    # stores spacing × direction, so reading it back is exact to the last bits of a double)
    out = write_label_like(label, img.affine, files["oblique_nrrd"], tmp_path / "exact.nrrd")
    a, b = sitk.ReadImage(str(out)), sitk.ReadImage(str(files["oblique_nrrd"]))
    for get in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(a, get)(), getattr(b, get)(), rtol=0, atol=1e-12)


def test_dicom_series_reads_like_its_source(files):
    ref, ref_affine = read_image([files["oblique"]])
    before = dict(IO_STATS)
    image, affine = read_image(files["dicom"])
    assert IO_STATS["data_reads"] == before["data_reads"] + 1
    assert np.array_equal(image, ref)                       # Prostate is int16: lossless in DICOM
    np.testing.assert_allclose(affine, ref_affine, atol=1e-4)
    header = read_header(files["dicom"])
    assert header.format == "dicom" and header.series == files["dicom_uid"] and len(header.files) == ref.shape[3]
    assert image_format(files["dicom"]) == "dicom"


def test_find_images_in_a_plain_folder(files, tmp_path):
    folder = tmp_path / "scans"
    shutil.copytree(files["dicom"], folder / "patient_1")
    shutil.copy(files["hippo", ".nrrd"], folder / "hippo.nrrd")
    shutil.copy(HIPPO_IMAGE, folder / "h2.nii.gz")
    seg_nrrd_label(HIPPO_LABEL, folder / "hippo.seg.nrrd", {1: "Anterior", 2: "Posterior"})   # skipped
    (folder / "notes.txt").write_text("not an image")
    found = find_images(folder)
    assert [(f.name, f.format) for f in found] == [("h2", "nifti"), ("hippo", "nrrd"), ("patient_1", "dicom")]
    assert found[2].paths == [folder / "patient_1"] and found[2].series == files["dicom_uid"]
    # nnU-Net channel files are grouped per case
    chans = tmp_path / "chans"
    chans.mkdir()
    for c in range(2):
        shutil.copy(HIPPO_IMAGE, chans / f"case_{c:04d}.nii.gz")
    assert [(f.name, len(f.paths)) for f in find_images(chans)] == [("case", 2)]


def test_several_series_are_listed_and_one_can_be_chosen(files, tmp_path):
    folder = tmp_path / "two"
    shutil.copytree(files["dicom"], folder)
    other = dicom_series(HIPPO_IMAGE, folder, description="hippo T1")
    with pytest.raises(DatasetError) as info:
        read_image(folder)
    msg = str(info.value)
    assert "2 DICOM series" in msg and files["dicom_uid"] in msg and other in msg and "--series" in msg
    assert "\n" not in msg
    image, _ = read_image(folder, series=other)
    assert np.array_equal(image, np.round(read_image([HIPPO_IMAGE])[0]))
    assert [f.series for f in find_images(tmp_path, series=other)] == [other]
    with pytest.raises(DatasetError, match="2 DICOM series"):
        find_images(tmp_path)


def _error(path, **kw) -> str:
    with pytest.raises(DatasetError) as info:
        read_image(path, **kw)
    assert "\n" not in str(info.value) and info.value.hint
    return info.value.message


def test_bad_dicom_inputs_are_one_line_errors(files, tmp_path):
    gap = tmp_path / "gap"
    dicom_series(PROSTATE_IMAGE, gap, skip=(20,))
    assert "uneven slice spacing" in _error(gap) and str(gap) in _error(gap)
    one_slice = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(PROSTATE_IMAGE))[:, :, 5:6], str(one_slice))
    dicom_series(one_slice, tmp_path / "one")
    assert "1 slice (a 2D image)" in _error(tmp_path / "one")
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    report = tmp_path / "report"
    report.mkdir()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"          # Basic Text SR: no pixels
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = generate_uid(), generate_uid(), "SR"
    ds.save_as(str(report / "sr.dcm"), enforce_file_format=True)
    assert pydicom.dcmread(report / "sr.dcm").Modality == "SR"
    assert "no image series" in _error(report)
    assert "no DICOM series 1.2.3" in _error(files["dicom"], series="1.2.3")


def test_bad_files_are_one_line_errors(files, tmp_path):
    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(files["hippo", ".nrrd"].read_bytes()[:200])
    assert "broken.nrrd" in _error(broken)
    junk = tmp_path / "junk.mha"
    junk.write_text("ObjectType = Image\nNDims = 3\nthis is not metaimage\n")
    assert "unreadable MetaImage" in _error(junk)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    assert "not a supported image file" in _error(notes)


# ------------------------------------------------------------------------------------------ training data

@pytest.fixture(scope="module")
def hippo_ref(tmp_path_factory):
    return load_dataset(make_subset(tmp_path_factory.mktemp("ref") / "ds", 3), min_cases=2)


@pytest.mark.parametrize("image_ending,label_ending", [(".nrrd", ".nrrd"), (".mha", ".seg.nrrd")])
def test_msd_dataset_in_other_formats_gives_the_same_arrays(tmp_path, hippo_ref, image_ending, label_ending):
    from AutoSegCore.data.fingerprint import compute_fingerprint
    from AutoSegCore.data.preprocess import Preprocessor

    ds = load_dataset(convert_msd(tmp_path / "ds", 3, image_ending=image_ending, label_ending=label_ending),
                      min_cases=2)
    assert ds.labels == hippo_ref.labels and ds.warnings == []
    for a, b in zip(hippo_ref.cases, ds.cases):
        ra, rb = read_case(a), read_case(b)
        assert ra.name == rb.name and np.array_equal(ra.image, rb.image) and np.array_equal(ra.label, rb.label)
        np.testing.assert_allclose(ra.affine, rb.affine, atol=1e-6)
    fa, fb = compute_fingerprint(hippo_ref), compute_fingerprint(ds)
    assert json.dumps(fa, sort_keys=True) == json.dumps(fb, sort_keys=True)
    pa, pb = Preprocessor(fingerprint=fa), Preprocessor(fingerprint=fb)
    for a, b in zip(hippo_ref.cases, ds.cases):
        xa, xb = pa(read_case(a)), pb(read_case(b))
        assert np.array_equal(xa.image, xb.image) and np.array_equal(xa.label, xb.label)


def test_seg_nrrd_segments_map_by_name_across_cases(tmp_path, hippo_ref):
    """Two cases whose segments are stored in opposite order (and values) still get the dataset's label values."""
    root = convert_msd(tmp_path / "ds", 3, image_ending=".nrrd", label_ending=".seg.nrrd")
    first = hippo_ref.cases[0]
    swapped = np.asarray(nib.load(first.label).dataobj).round().astype(np.uint8)
    swapped = np.choose(swapped, [0, 2, 1]).astype(np.uint8)           # Anterior stored as 2, Posterior as 1
    target = root / "labelsTr" / f"{first.name}.seg.nrrd"
    from AutoSegCore.data.writers import save_prediction

    save_prediction(swapped, nib.load(first.label).affine, {1: "Posterior", 2: "Anterior"}, target.parent, first.name,
                    nifti=False)
    ds = load_dataset(root, min_cases=2)
    assert np.array_equal(read_case(ds.cases[0]).label, read_case(first).label)
    # pairs without label names: the segment names become the labels
    pairs = load_dataset([(c.images[0], c.label) for c in ds.cases], min_cases=2)
    assert sorted(pairs.labels.values()) == ["Anterior", "Posterior", "background"]
    by_name = {n: v for v, n in pairs.labels.items()}
    ref = read_case(first).label
    got = read_case(pairs.cases[0]).label
    assert np.array_equal(got == by_name["Anterior"], ref == 1) and np.array_equal(got == by_name["Posterior"], ref == 2)


def test_nnunet_layout_with_file_ending(tmp_path, hippo_ref):
    root = tmp_path / "nn"
    for c in hippo_ref.cases:
        sitk_copy(c.images[0], root / "imagesTr" / f"{c.name}_0000.mha")
        sitk_copy(c.label, root / "labelsTr" / f"{c.name}.mha")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "file_ending": ".mha",
                                                   "labels": {"background": 0, "Anterior": 1, "Posterior": 2}}))
    ds = load_dataset(root, min_cases=2)
    assert ds.source == "nnunet" and ds.case_names == hippo_ref.case_names
    assert all(np.array_equal(read_case(a).label, read_case(b).label) for a, b in zip(hippo_ref.cases, ds.cases))
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".png"}))
    with pytest.raises(DatasetError, match="file_ending '.png'"):
        load_dataset(root)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AutoSegCore", *map(str, args)], capture_output=True, text=True, encoding="utf-8",
                          timeout=300, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def test_seg_nrrd_on_another_grid_is_a_one_line_error(tmp_path):
    root = convert_msd(tmp_path / "ds", 2, image_ending=".nrrd", label_ending=".seg.nrrd")
    label = sorted((root / "labelsTr").iterdir())[0]
    data = np.rint(np.asarray(nib.load(HIPPO_LABEL).dataobj)).astype(np.uint8)
    shifted = nib.load(HIPPO_LABEL).affine.copy()
    shifted[:3, 3] += 5.0
    from AutoSegCore.data.writers import save_prediction

    save_prediction(data, shifted, {1: "Anterior", 2: "Posterior"}, label.parent, strip_ending(label.name), nifti=False)
    r = _cli("validate", root)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and label.name in lines[0] and "segmentation affine differs" in lines[0], r.stderr
    assert "reference geometry" in lines[1]


@pytest.mark.slow
def test_short_train_on_nrrd_and_seg_nrrd(tmp_path):
    """A few steps of `autoseg train` on a .nrrd / .seg.nrrd dataset run and write a model."""
    import yaml

    root = convert_msd(tmp_path / "ds", 3, image_ending=".nrrd", label_ending=".seg.nrrd")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"network": {"depth": 2, "channels": 4, "n_convs": 1},
                                   "training": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 1,
                                                "patch_size": [16, 16, 16]}}))
    r = _cli("train", root, "--config", cfg, "--out", tmp_path / "model", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "model" / "model.pt").is_file()
    assert json.loads((tmp_path / "model" / "model.json").read_text())["labels"] in (
        {"0": "background", "1": "Anterior", "2": "Posterior"}, {0: "background", 1: "Anterior", 2: "Posterior"})


@pytest.mark.parametrize("image_ending,label_ending", [(".nrrd", ".seg.nrrd"), (".mha", ".mha")])
def test_prostate_in_other_formats_trains_on_the_same_arrays(tmp_path, image_ending, label_ending):
    """Prostate (int16 MR, 256² × 15–54 slices): the fingerprint and preprocessed arrays a training sees from
    .nrrd/.seg.nrrd or .mha files equal those from the NIfTI originals."""
    import shutil

    from AutoSegCore.data.fingerprint import compute_fingerprint
    from AutoSegCore.data.preprocess import Preprocessor

    meta = json.loads((PROSTATE / "dataset.json").read_text())
    meta["training"] = sorted(meta["training"], key=lambda e: e["image"])[:2]
    ref_root = tmp_path / "ref"
    for e in meta["training"]:
        for kind in ("image", "label"):
            (ref_root / e[kind]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PROSTATE / e[kind], ref_root / e[kind])
    (ref_root / "dataset.json").write_text(json.dumps(meta))
    ref = load_dataset(ref_root, min_cases=2)
    ds = load_dataset(convert_msd(tmp_path / "ds", 2, image_ending=image_ending, label_ending=label_ending,
                                  source=PROSTATE), min_cases=2)
    assert [c.name for c in ds.cases] == [c.name for c in ref.cases] and ds.labels == ref.labels
    fa, fb = compute_fingerprint(ref), compute_fingerprint(ds)
    assert json.dumps(fa, sort_keys=True) == json.dumps(fb, sort_keys=True)
    pa, pb = Preprocessor(fingerprint=fa), Preprocessor(fingerprint=fb)
    for a, b in zip(ref.cases, ds.cases):
        ra, rb = read_case(a), read_case(b)
        assert np.array_equal(ra.image, rb.image) and np.array_equal(ra.label, rb.label)
        np.testing.assert_allclose(ra.affine, rb.affine, atol=1e-5)
        xa, xb = pa(ra), pb(rb)
        assert np.array_equal(xa.image, xb.image) and np.array_equal(xa.label, xb.label)


def test_a_scan_passed_as_a_label_is_refused(tmp_path):
    """Explicit pairs whose label is a copy of an int16 Prostate scan: thousands of inferred 'classes' (a net
    with one output per grey value) are refused, naming the file."""
    import shutil

    label = tmp_path / "prostate_00_label.nii.gz"
    shutil.copy(PROSTATE_IMAGE, label)
    with pytest.raises(DatasetError, match="distinct values") as info:
        load_dataset([(PROSTATE_IMAGE, label)])
    assert str(label) in info.value.message and "\n" not in info.value.message


def test_prediction_from_nrrd_mha_oblique_and_dicom_equals_the_nifti(tmp_path):
    """One tiny model trained on .nrrd/.seg.nrrd Hippocampus cases predicts a Prostate and a Hippocampus scan
    given as NIfTI, NRRD, MHA, oblique NIfTI and a DICOM series: the same label voxels every time."""
    import nibabel as nib
    import SimpleITK as sitk
    import yaml

    root = convert_msd(tmp_path / "ds", 3, image_ending=".nrrd", label_ending=".seg.nrrd")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"network": {"depth": 2, "channels": 4, "n_convs": 1},
                                   "training": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 1,
                                                "patch_size": [16, 16, 16]}}))
    model = tmp_path / "model"
    r = _cli("train", root, "--config", cfg, "--out", model, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    for key, src in (("hippo", HIPPO_IMAGE), ("prostate", PROSTATE_IMAGE)):
        scans = tmp_path / f"scans_{key}"
        sitk_copy(src, scans / f"{key}_nrrd.nrrd")
        sitk_copy(src, scans / f"{key}_mha.mha")
        oblique_nifti(src, scans / f"{key}_oblique.nii.gz")
        if key == "prostate":                       # int16: lossless in DICOM
            dicom_series(src, scans / f"{key}_dicom")
        out = tmp_path / f"pred_{key}"
        r = _cli("predict", model, src, scans, "--out", out, "--device", "cpu")
        assert r.returncode == 0, r.stderr[-2000:]
        ref = np.asarray(nib.load(str(out / src.name)).dataobj)
        assert len(np.unique(ref)) > 1                  # a real label map, not all background, to compare
        names = [f"{key}_nrrd", f"{key}_mha", f"{key}_oblique"] + ([f"{key}_dicom"] if key == "prostate" else [])
        for name in names:
            got = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name}.nii.gz"))).transpose(2, 1, 0)
            assert got.shape == ref.shape and np.array_equal(got, ref), name
