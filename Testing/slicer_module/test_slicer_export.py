"""Scene volumes + label maps / segmentations -> MSD dataset folder, checked with nibabel; bad inputs refused."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import slicer

from AutoSegCore.errors import DatasetError
from AutoSegSearchLib.logic import CasePair
from slicer_testkit import HIPPO, SPLEEN, load_pair, node_ids

CASES = ["hippocampus_003", "hippocampus_007", "hippocampus_008"]


def named_label_table(scene, names):
    """What a user does in the Colors module: a table that names the label values."""
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "HippocampusLabels")
    table.SetTypeToUser()
    table.SetNumberOfColors(len(names) + 1)
    table.SetColor(0, "background", 0, 0, 0, 0)
    for value, name in enumerate(names, start=1):
        table.SetColor(value, name, 0.2 * value, 0.5, 1 - 0.2 * value, 1)
    return table


def test_export_labelmaps_keeps_geometry_and_label_values(logic, tmp_path):
    table = named_label_table(logic.scene, ["Anterior", "Posterior"])
    pairs = []
    for case in CASES:
        volume, label = load_pair(logic, HIPPO, case)
        label.GetDisplayNode().SetAndObserveColorNodeID(table.GetID())
        pairs.append(CasePair(volume, label))
    before = node_ids(logic.scene)

    result = logic.exporter.export_dataset(pairs, tmp_path / "ds", name="Hippo", modality="MRI")

    assert node_ids(logic.scene) == before, "export must not add or remove scene nodes"
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "Anterior", "2": "Posterior"}
    assert meta["modality"] == {"0": "MRI"} and meta["numTraining"] == 3
    assert result.cases == CASES
    for case in CASES:
        src_img = nib.load(HIPPO / "imagesTr" / f"{case}.nii.gz")
        src_lab = nib.load(HIPPO / "labelsTr" / f"{case}.nii.gz")
        out_img = nib.load(tmp_path / "ds" / "imagesTr" / f"{case}.nii.gz")
        out_lab = nib.load(tmp_path / "ds" / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_allclose(out_img.affine, src_img.affine, atol=1e-4)
        np.testing.assert_allclose(out_lab.affine, src_img.affine, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(out_img.dataobj), np.asarray(src_img.dataobj))
        np.testing.assert_array_equal(np.asarray(out_lab.dataobj), np.asarray(src_lab.dataobj).astype(np.uint8))
        assert set(np.unique(np.asarray(out_lab.dataobj))) == {0, 1, 2}


def test_export_segmentation_uses_segment_names_on_anisotropic_ct(logic, tmp_path):
    volume, seg = load_pair(logic, SPLEEN, "spleen_2", as_segmentation=True)
    seg.GetSegmentation().GetNthSegment(0).SetName("spleen")
    before = node_ids(logic.scene)

    logic.exporter.export_dataset([(volume, seg)], tmp_path / "spleen_ds")

    assert node_ids(logic.scene) == before
    meta = json.loads((tmp_path / "spleen_ds" / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "spleen"}
    src = nib.load(SPLEEN / "labelsTr" / "spleen_2.nii.gz")
    out = nib.load(tmp_path / "spleen_ds" / "labelsTr" / "spleen_2.nii.gz")
    np.testing.assert_allclose(out.affine, src.affine, atol=1e-4)
    np.testing.assert_allclose(out.header.get_zooms()[:3], (0.795, 0.795, 5.0), atol=1e-3)
    np.testing.assert_array_equal(np.asarray(out.dataobj), np.asarray(src.dataobj).astype(np.uint8))


def test_segment_label_values_follow_names_across_cases(logic, tmp_path):
    """Two segmentations listing the same structures in different orders still get one value per name."""
    v1, s1 = load_pair(logic, HIPPO, "hippocampus_003", as_segmentation=True)
    v2, s2 = load_pair(logic, HIPPO, "hippocampus_007", as_segmentation=True)
    for seg, names in ((s1, ("Anterior", "Posterior")), (s2, ("Anterior", "Posterior"))):
        for i, name in enumerate(names):
            seg.GetSegmentation().GetNthSegment(i).SetName(name)
    # reverse the order of the segments in the second case
    s2.GetSegmentation().SetSegmentIndex(s2.GetSegmentation().GetNthSegmentID(1), 0)
    logic.exporter.export_dataset([(v1, s1), (v2, s2)], tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "Anterior", "2": "Posterior"}
    for case in ("hippocampus_003", "hippocampus_007"):
        src = np.asarray(nib.load(HIPPO / "labelsTr" / f"{case}.nii.gz").dataobj)
        out = np.asarray(nib.load(tmp_path / "ds" / "labelsTr" / f"{case}.nii.gz").dataobj)
        np.testing.assert_array_equal(out, src.astype(np.uint8))


def _assert_refused(logic, pairs, out_dir, *words):
    before_ids, before_mtime = node_ids(logic.scene), logic.scene.GetMTime()
    with pytest.raises(DatasetError) as info:
        logic.exporter.export_dataset(pairs, out_dir)
    text = str(info.value).lower()
    for word in words:
        assert word.lower() in text, f"{word!r} missing in {text!r}"
    assert info.value.hint, "every refusal carries a hint"
    assert node_ids(logic.scene) == before_ids and logic.scene.GetMTime() == before_mtime
    assert not out_dir.exists(), "nothing partial may be written"


def test_volume_without_label_is_refused(logic, tmp_path):
    volume, _ = load_pair(logic, HIPPO, "hippocampus_003")
    _assert_refused(logic, [(volume, None)], tmp_path / "ds", "hippocampus_003", "no label")


def test_mismatched_geometry_is_refused(logic, tmp_path):
    volume, _ = load_pair(logic, HIPPO, "hippocampus_003")
    _, other_label = load_pair(logic, HIPPO, "hippocampus_007")
    good = load_pair(logic, HIPPO, "hippocampus_008")
    _assert_refused(logic, [good, (volume, other_label)], tmp_path / "ds",
                    "case 2", "hippocampus_007_label", "geometry")


def test_empty_label_is_refused(logic, tmp_path):
    volume, label = load_pair(logic, HIPPO, "hippocampus_003")
    slicer.util.arrayFromVolume(label)[:] = 0
    slicer.util.arrayFromVolumeModified(label)
    _assert_refused(logic, [(volume, label)], tmp_path / "ds", "empty")


def test_empty_segmentation_is_refused(logic, tmp_path):
    volume, seg = load_pair(logic, SPLEEN, "spleen_2", as_segmentation=True)
    seg.GetSegmentation().RemoveAllSegments()
    seg.GetSegmentation().AddEmptySegment("spleen")
    _assert_refused(logic, [(volume, seg)], tmp_path / "ds", "empty")


def test_non_empty_output_folder_is_refused(logic, tmp_path):
    pair = load_pair(logic, HIPPO, "hippocampus_003")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("user file")
    with pytest.raises(DatasetError, match="not empty"):
        logic.exporter.export_dataset([pair], tmp_path / "ds")
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["keep.txt"]
