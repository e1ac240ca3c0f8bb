"""Predicting NRRD and MetaImage scans: outputs in the input's own format (--format input) or a chosen one, on the
input's exact grid (size, spacing, origin, direction cosines — an oblique scan stays oblique), the same voxels as
predicted from the NIfTI original; and the .seg.nrrd with its input volume loaded in real MRML (slicer-core)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DEMO

NRRD_CASE, MHA_CASE = "hippocampus_003", "hippocampus_026"
# an oblique scan: the MHA's axes turned 30° about z and 10° about x, its origin moved
_C, _S = np.cos(np.radians(30)), np.sin(np.radians(30))
_c, _s = np.cos(np.radians(10)), np.sin(np.radians(10))
OBLIQUE = (np.array([[_C, -_S, 0], [_S, _C, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, _c, -_s], [0, _s, _c]]))


def geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """A plain folder holding a real demo scan as .nrrd and another as an oblique .mha (written with SimpleITK)."""
    folder = tmp_path_factory.mktemp("scans")
    nrrd = sitk.ReadImage(str(DEMO / "imagesTr" / f"{NRRD_CASE}.nii.gz"))
    sitk.WriteImage(nrrd, str(folder / f"{NRRD_CASE}.nrrd"), useCompression=True)
    mha = sitk.ReadImage(str(DEMO / "imagesTr" / f"{MHA_CASE}.nii.gz"))
    for key in mha.GetMetaDataKeys():                       # NIfTI header fields MetaImage cannot store
        mha.EraseMetaData(key)
    mha.SetDirection(tuple(OBLIQUE.ravel()))
    mha.SetOrigin((12.5, -40.25, 7.0))
    sitk.WriteImage(mha, str(folder / f"{MHA_CASE}.mha"))
    return folder


@pytest.fixture(scope="module")
def predicted(model, scans, tmp_path_factory):
    """``autoseg predict MODEL FOLDER --format input`` (in process: the CLI's entry point)."""
    from AutoSegCore.cli import main

    out = tmp_path_factory.mktemp("pred")
    assert main(["predict", str(model), str(scans), "--out", str(out), "--format", "input"]) == 0
    return out


def test_outputs_are_in_the_inputs_format_on_their_exact_grid(scans, predicted):
    assert sorted(p.name for p in predicted.iterdir()) == sorted([f"{MHA_CASE}.mha", f"{MHA_CASE}.seg.nrrd",
                                                                  f"{NRRD_CASE}.nrrd", f"{NRRD_CASE}.seg.nrrd"])
    for case, ending in ((NRRD_CASE, ".nrrd"), (MHA_CASE, ".mha")):
        src = sitk.ReadImage(str(scans / f"{case}{ending}"))
        label = sitk.ReadImage(str(predicted / f"{case}{ending}"))
        assert geometry(label) == geometry(src), case                    # exactly, not approximately
        seg = sitk.ReadImage(str(predicted / f"{case}.seg.nrrd"))     # the Slicer segmentation: same grid
        assert seg.GetSize()[:3] == src.GetSize()
        np.testing.assert_allclose(seg.GetSpacing()[:3], src.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(seg.GetOrigin()[:3], src.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(np.reshape(seg.GetDirection(), (-1, len(seg.GetSpacing())))[:3, :3],
                                   np.reshape(src.GetDirection(), (3, 3)), atol=1e-6)
    mha = sitk.ReadImage(str(predicted / f"{MHA_CASE}.mha"))
    np.testing.assert_allclose(np.reshape(mha.GetDirection(), (3, 3)), OBLIQUE, atol=1e-9)


def test_the_same_voxels_as_predicted_from_the_nifti_originals(model, predicted, tmp_path):
    from AutoSegCore.prediction import predict_files

    results = predict_files(model, [DEMO / "imagesTr" / f"{c}.nii.gz" for c in (NRRD_CASE, MHA_CASE)],
                            tmp_path / "nifti", device="cpu")
    assert [r["status"] for r in results] == ["predicted", "predicted"]
    for case, ending in ((NRRD_CASE, ".nrrd"), (MHA_CASE, ".mha")):
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(predicted / f"{case}{ending}")))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "nifti" / f"{case}.nii.gz")))
        assert ours.any() or ref.any()
        np.testing.assert_array_equal(ours, ref)


def test_a_chosen_format_and_a_re_run_in_another_format(model, scans, predicted, tmp_path):
    """--format mha from an .nrrd input: the .mha lies on the input's grid; the cases of a folder predicted as
    .nrrd are not "done" for --format nifti (its label maps are missing), so they are predicted again."""
    from AutoSegCore.prediction import predict_files

    out = tmp_path / "mha"
    predict_files(model, scans / f"{NRRD_CASE}.nrrd", out, output_format="mha", device="cpu")
    assert sorted(p.name for p in out.iterdir()) == [f"{NRRD_CASE}.mha", f"{NRRD_CASE}.seg.nrrd"]
    assert geometry(sitk.ReadImage(str(out / f"{NRRD_CASE}.mha"))) == geometry(
        sitk.ReadImage(str(scans / f"{NRRD_CASE}.nrrd")))
    again = predict_files(model, scans / f"{NRRD_CASE}.nrrd", out, output_format="nifti", device="cpu")
    assert again[0]["status"] == "predicted" and (out / f"{NRRD_CASE}.nii.gz").is_file()
    assert predict_files(model, scans / f"{NRRD_CASE}.nrrd", out, output_format="mha",
                         device="cpu")[0]["status"] == "skipped"


@pytest.mark.slicer
def test_the_seg_nrrd_and_its_input_load_in_mrml_on_the_same_grid_voxel_for_voxel(scans, predicted):
    """What a Slicer user does: load the scan and the prediction's .seg.nrrd; exported onto the scan's geometry,
    the segments are the label map's voxels exactly (the oblique .mha included)."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install 'slicer-core==5.11.0.6')")
    import vtk
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    for case, ending in ((NRRD_CASE, ".nrrd"), (MHA_CASE, ".mha")):
        volume = slicer.vtkMRMLScalarVolumeNode()
        scene.AddNode(volume)
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        scene.AddNode(storage)
        storage.SetFileName(str(scans / f"{case}{ending}"))
        assert storage.ReadData(volume), case
        seg = slicer.vtkMRMLSegmentationNode()
        scene.AddNode(seg)
        seg_storage = slicer.vtkMRMLSegmentationStorageNode()
        scene.AddNode(seg_storage)
        seg_storage.SetFileName(str(predicted / f"{case}.seg.nrrd"))
        assert seg_storage.ReadData(seg), case
        labelmap = slicer.vtkMRMLLabelMapVolumeNode()
        scene.AddNode(labelmap)
        segmentation = seg.GetSegmentation()
        ids = vtk.vtkStringArray()
        segmentation.GetSegmentIDs(ids)
        values = [segmentation.GetSegment(ids.GetValue(i)).GetLabelValue() for i in range(ids.GetNumberOfValues())]
        assert values == sorted(values) and values[0] == 1
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(seg, ids, labelmap, volume)
        a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(a)
        labelmap.GetIJKToRASMatrix(b)
        np.testing.assert_allclose([[a.GetElement(r, c) for c in range(4)] for r in range(4)],
                                   [[b.GetElement(r, c) for c in range(4)] for r in range(4)], atol=1e-5)
        dims = volume.GetImageData().GetDimensions()
        assert labelmap.GetImageData().GetDimensions() == dims
        exported = numpy_support.vtk_to_numpy(labelmap.GetImageData().GetPointData().GetScalars())
        exported = exported.reshape(dims[::-1])                     # (k, j, i), as SimpleITK's array
        # segment i of the file → exported value i+1; the file's label values are 1..N in the same order
        exported = np.asarray(values)[exported - 1] * (exported > 0) if exported.any() else exported
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(predicted / f"{case}{ending}")))
        assert ours.any(), case
        np.testing.assert_array_equal(exported, ours)


@pytest.fixture(scope="module")
def formatkit():
    import sys

    # by path, not `from conftest import REPO`: under xdist 'conftest' may be another folder's module by then
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    return pytest.importorskip("formatkit", reason="Testing/data/formatkit.py (DICOM writer) is not there")


def test_dicom_series_in_a_folder_are_cases_and_several_series_need_series(model, formatkit, tmp_path, capsys):
    """A plain folder holding a NIfTI scan and a DICOM series subfolder: both predicted, the series named after its
    folder, its label map on the series' grid.  A folder of two series is refused with their UIDs (exit 2, nothing
    written) until --series picks one."""
    from AutoSegCore.cli import main
    from AutoSegCore.data.volumes import read_header

    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / f"{NRRD_CASE}.nii.gz").write_bytes((DEMO / "imagesTr" / f"{NRRD_CASE}.nii.gz").read_bytes())
    formatkit.dicom_series(DEMO / "imagesTr" / f"{MHA_CASE}.nii.gz", scans / "patient_b")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", str(model), str(scans), "--out", str(out), "--format", "input"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{NRRD_CASE}.nii.gz", f"{NRRD_CASE}.seg.nrrd",
                                                            "patient_b.nii.gz", "patient_b.seg.nrrd"])
    series = read_header(scans / "patient_b")
    label = sitk.ReadImage(str(out / "patient_b.nii.gz"))
    assert label.GetSize() == tuple(series.shape[:3])
    np.testing.assert_allclose(read_header(out / "patient_b.nii.gz").affine, series.affine, atol=1e-4)

    two = tmp_path / "two"
    uid_a = formatkit.dicom_series(DEMO / "imagesTr" / f"{NRRD_CASE}.nii.gz", two, description="first")
    uid_b = formatkit.dicom_series(DEMO / "imagesTr" / f"{MHA_CASE}.nii.gz", two, description="second")
    capsys.readouterr()
    assert main(["predict", str(model), str(two), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert uid_a in err and uid_b in err and "hint:" in err, err
    assert not (tmp_path / "o2").exists()
    assert main(["predict", str(model), str(two), "--out", str(tmp_path / "o2"), "--series", uid_b]) == 0
    written = sorted(p.name for p in (tmp_path / "o2").iterdir())
    assert written == ["two.nii.gz", "two.seg.nrrd"], written
    assert sitk.ReadImage(str(tmp_path / "o2" / "two.nii.gz")).GetSize() == sitk.ReadImage(
        str(DEMO / "imagesTr" / f"{MHA_CASE}.nii.gz")).GetSize()
