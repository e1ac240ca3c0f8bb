"""Masks back into the scene: label files / .seg.nrrd -> named, coloured segments over the volume; preview."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import slicer
import slicerio

from AutoSegCore.errors import DatasetError
from slicer_testkit import (HIPPO, SPLEEN, file_labels_kji, labels_on_volume_grid, load_pair, node_ids,
                            put_in_study, segments_of)

NAMES = {1: "Anterior", 2: "Posterior"}


def test_nifti_prediction_becomes_named_segments_in_the_same_study(logic, tmp_path):
    volume, _ = load_pair(logic, HIPPO, "hippocampus_003")
    sh, study = put_in_study(logic.scene, volume)
    prediction = tmp_path / "predictions" / "hippocampus_003.nii.gz"
    prediction.parent.mkdir()
    shutil.copy(HIPPO / "labelsTr" / "hippocampus_003.nii.gz", prediction)

    seg_node = logic.importer.import_prediction(prediction.parent, volume, label_names=NAMES)

    assert segments_of(seg_node) == {"Anterior": 1, "Posterior": 2}
    colors = {seg_node.GetSegmentation().GetNthSegment(i).GetColor() for i in range(2)}
    assert len(colors) == 2, "each segment gets its own colour"
    assert sh.GetItemParent(sh.GetItemByDataNode(seg_node)) == study
    # same geometry: the reference geometry is the volume's, and the voxels come back unchanged
    ref = seg_node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert ref is volume
    np.testing.assert_array_equal(labels_on_volume_grid(logic, seg_node, volume), file_labels_kji(prediction))


def test_seg_nrrd_prediction_keeps_file_names_colours_and_values(logic, tmp_path):
    """A .seg.nrrd as the engine writes it (slicerio), with label values 1 and 3 and its own names/colours."""
    volume, _ = load_pair(logic, HIPPO, "hippocampus_007")
    src = nib.load(HIPPO / "labelsTr" / "hippocampus_007.nii.gz")
    labels = np.asarray(src.dataobj).astype(np.uint8)
    labels[labels == 2] = 3
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ src.affine
    segmentation = {
        "voxels": labels, "ijkToLPS": lps, "encoding": "gzip",
        "segments": [
            {"id": "Segment_1", "labelValue": 1, "layer": 0, "name": "anterior hippocampus",
             "color": [1.0, 0.0, 0.0]},
            {"id": "Segment_3", "labelValue": 3, "layer": 0, "name": "posterior hippocampus",
             "color": [0.0, 0.0, 1.0]},
        ],
    }
    path = tmp_path / "hippocampus_007.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)

    seg_node = logic.importer.import_prediction(path, volume)

    assert segments_of(seg_node) == {"anterior hippocampus": 1, "posterior hippocampus": 3}
    seg = seg_node.GetSegmentation()
    colours = {seg.GetNthSegment(i).GetName(): tuple(round(c, 3) for c in seg.GetNthSegment(i).GetColor())
               for i in range(2)}
    assert colours == {"anterior hippocampus": (1.0, 0.0, 0.0), "posterior hippocampus": (0.0, 0.0, 1.0)}
    np.testing.assert_array_equal(labels_on_volume_grid(logic, seg_node, volume),
                                  labels.astype(np.int16).transpose(2, 1, 0))


@pytest.mark.parametrize("bad", ["other grid", "missing", "not a label file"])
def test_bad_prediction_changes_nothing(logic, tmp_path, bad):
    volume, _ = load_pair(logic, SPLEEN, "spleen_2")
    if bad == "other grid":
        path = HIPPO / "labelsTr" / "hippocampus_003.nii.gz"
    elif bad == "missing":
        path = tmp_path / "spleen_2.nii.gz"
    else:
        path = tmp_path / "spleen_2.nii.gz"
        path.write_text("not an image")
    before, mtime = node_ids(logic.scene), logic.scene.GetMTime()
    with pytest.raises(DatasetError) as info:
        logic.importer.import_prediction(path, volume)
    assert path.name in str(info.value) and info.value.hint
    assert node_ids(logic.scene) == before and logic.scene.GetMTime() == mtime


def test_proxy_preview_loads_case_with_named_labels(logic):
    before = logic.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    volume, seg_node = logic.importer.load_case(HIPPO, "hippocampus_008")
    logic.importer.show_in_views(volume, seg_node)

    assert volume.GetScene() is logic.scene and seg_node.GetScene() is logic.scene
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before + 1
    assert segments_of(seg_node) == {"Anterior": 1, "Posterior": 2}      # names from dataset.json
    image = nib.load(HIPPO / "imagesTr" / "hippocampus_008.nii.gz")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume),
                                  np.asarray(image.dataobj).transpose(2, 1, 0))
    np.testing.assert_array_equal(labels_on_volume_grid(logic, seg_node, volume),
                                  file_labels_kji(HIPPO / "labelsTr" / "hippocampus_008.nii.gz"))
    assert logic.app_logic.GetSelectionNode().GetActiveVolumeID() == volume.GetID()


def test_proxy_preview_of_unknown_case_changes_nothing(logic):
    before = node_ids(logic.scene)
    with pytest.raises(DatasetError, match="hippocampus_999"):
        logic.importer.load_case(HIPPO, "hippocampus_999")
    assert node_ids(logic.scene) == before
