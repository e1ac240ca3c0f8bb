"""Helpers shared by the Slicer module tests (a uniquely named module: every Testing/ folder has a conftest)."""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import slicer

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "AutoSegSearch"
try:
    from shared_data import DATA_ROOT as DATA   # Testing/shared_data.py: $AUTOSEG_SHARED_DATA or the CI layout
except ImportError:
    DATA = Path(os.environ.get("AUTOSEG_SHARED_DATA", "/work/shared/data"))
HIPPO = DATA / "Task04_Hippocampus"
SPLEEN = DATA / "Task09_Spleen_crop"


def load_pair(logic, dataset: Path, case: str, as_segmentation: bool = False):
    """Load a real case of a shared dataset the way a user would: volume + label map (or segmentation)."""
    volumes = logic.nodes.volumes_logic
    image = volumes.AddArchetypeVolume(str(dataset / "imagesTr" / f"{case}.nii.gz"), case, 0)
    label = volumes.AddArchetypeVolume(str(dataset / "labelsTr" / f"{case}.nii.gz"), f"{case}_label", 1)
    assert image is not None and label is not None
    if as_segmentation:
        seg = logic.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{case}_seg")
        seg.CreateDefaultDisplayNodes()
        seg.SetReferenceImageGeometryParameterFromVolumeNode(image)
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label, seg)
        logic.scene.RemoveNode(label)
        return image, seg
    return image, label


def node_ids(scene) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]



def segments_of(seg_node):
    seg = seg_node.GetSegmentation()
    return {seg.GetNthSegment(i).GetName(): seg.GetNthSegment(i).GetLabelValue()
            for i in range(seg.GetNumberOfSegments())}


def labels_on_volume_grid(logic, seg_node, volume):
    """Segmentation -> label array on the volume's grid, by the segments' own label values."""
    seg = seg_node.GetSegmentation()
    value_of = {seg.GetNthSegment(i).GetName(): seg.GetNthSegment(i).GetLabelValue()
                for i in range(seg.GetNumberOfSegments())}
    array, _ = logic.nodes.segmentation_to_array(seg_node, volume, value_of)
    return array


def file_labels_kji(path):
    return np.asarray(nib.load(path).dataobj).astype(np.int16).transpose(2, 1, 0)


def put_in_study(scene, volume):
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1")
    study = sh.CreateStudyItem(patient, "MR study")
    sh.CreateItem(study, volume)
    return sh, study
