"""MRML node helpers shared by export and import: geometry, voxels <-> numpy, files <-> nodes outside the scene.

Qt-free (MRML classes, storage nodes, vtk, numpy only) so it runs in the desktop app, headless and in the browser.
Reading and writing happen on nodes that are not in the scene, so a failure leaves no trace there.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .errors import DatasetError

# Distinct, colour-blind-friendly segment colours (Okabe-Ito, then tab10) used when a file carries none.
PALETTE = [(0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26), (0.0, 0.45, 0.70),
           (0.84, 0.37, 0.0), (0.80, 0.47, 0.65), (0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17),
           (0.84, 0.15, 0.16), (0.58, 0.40, 0.74)]


def check_volume_file(path, role: str) -> None:
    """The engine's header check (``volumes.read_header``: memory limit, decompression bomb, geometry) before a
    storage node reads ``path`` in this process, so one hostile file is an error, not a dead Slicer or web server.
    Slicer's own readers allocate whatever a header asks.  Without the engine in this Python (Slicer before
    Install) there is no check to call: the storage node reads unchecked, as Slicer's own Add Data does."""
    try:
        from AutoSegCore.data.volumes import file_ending, read_header
    except ImportError:
        return
    if file_ending(Path(path).name) is not None:
        read_header(path, role=role)


def ijk_to_ras(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def node_dims(node) -> tuple[int, int, int] | None:
    image = node.GetImageData() if node is not None else None
    return tuple(image.GetDimensions()) if image is not None else None


def voxel_array(node) -> np.ndarray:
    """Voxels as numpy (k, j, i), without slicer.util (which pulls in Qt-only helpers in some builds)."""
    image = node.GetImageData()
    arr = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    comps = image.GetNumberOfScalarComponents()
    shape = tuple(reversed(image.GetDimensions()))
    return arr.reshape(shape + ((comps,) if comps > 1 else ()))


def image_from_array(arr: np.ndarray) -> vtk.vtkImageData:
    arr = np.ascontiguousarray(arr)
    image = vtk.vtkImageData()
    image.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    scalars = numpy_support.numpy_to_vtk(arr.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def same_grid(a_matrix: np.ndarray, a_dims, b_matrix: np.ndarray, b_dims, tol: float = 1e-3) -> bool:
    return tuple(a_dims) == tuple(b_dims) and np.allclose(a_matrix, b_matrix, atol=tol)


def node_label(node) -> str:
    return f"'{node.GetName()}'" if node is not None else "(none)"


def safe_case_name(name: str) -> str:
    """A file-system safe case name from a node name ("CT chest 1" -> "CT_chest_1")."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "").strip("._")
    return cleaned or "case"


def case_name_from_file(path: str | Path) -> str:
    """The engine's <case> convention: the file name without .nii.gz / .nii / .seg.nrrd / .nrrd."""
    name = Path(path).name
    for suffix in (".seg.nrrd", ".nii.gz", ".nii", ".nrrd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


class SceneNodes:
    """Node I/O bound to one scene (and, optionally, the Volumes module's logic, which loads volumes the way the app
    does), shared by the panel logic's parts."""

    def __init__(self, scene, volumes_logic=None) -> None:
        self.scene, self.volumes_logic = scene, volumes_logic

    def write_volume(self, volume, path: Path) -> None:
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()   # not added to the scene: no trace left there
        storage.SetFileName(str(path))
        storage.SetUseCompression(True)
        if not storage.WriteData(volume):
            raise DatasetError(f"could not write {path}", "check the folder is writable and has free space")

    def read_volume(self, path: Path, labelmap: bool = False):
        """Read a volume file into a node that is NOT in the scene (so a failure leaves no trace)."""
        check_volume_file(path, "label" if labelmap else "image")
        node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        if labelmap:
            storage.SetCenterImage(False)
        if not storage.ReadData(node) or node_dims(node) is None:
            raise DatasetError(f"could not read {path}", "pass a NIfTI (.nii/.nii.gz) or NRRD file")
        return node

    def add_volume(self, node, path: Path, name: str):
        """Add a volume read by :meth:`read_volume` to the scene, with display and storage nodes."""
        if self.volumes_logic is not None:
            loaded = self.volumes_logic.AddArchetypeVolume(str(path), self.unique_name(name), 0)
            if loaded is not None:
                return loaded
        node.SetName(self.unique_name(name))
        self.scene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        storage = self.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        node.SetAndObserveStorageNodeID(storage.GetID())
        return node

    def unique_name(self, name: str) -> str:
        """``name`` itself when free, else Slicer's numbered variant (GenerateUniqueName always numbers)."""
        return name if self.scene.GetFirstNodeByName(name) is None else self.scene.GenerateUniqueName(name)

    def remove_node(self, node) -> None:
        if node is None or node.GetScene() is None:
            return
        count = node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0
        helpers = [node.GetNthDisplayNode(i) for i in range(count)]
        helpers.append(node.GetStorageNode() if hasattr(node, "GetStorageNode") else None)
        self.scene.RemoveNode(node)
        for helper in helpers:
            if helper is not None and helper.GetScene() is not None:
                self.scene.RemoveNode(helper)

    def segmentation_to_array(self, segmentation_node, reference_volume,
                               value_of: dict[str, int] | None) -> tuple[np.ndarray, dict[int, tuple]]:
        """Segments -> one label array on the reference volume's grid; returns (array, {value: (name, colour)}).

        Hand-written because ExportSegmentsToLabelmapNode needs its nodes in the scene, and this must not touch it.
        Later segments win where segments overlap (the same rule as Slicer's export).
        """
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        reference = logic.CreateOrientedImageDataFromVolumeNode(reference_volume)
        shape = tuple(reversed(reference.GetDimensions()))
        out = np.zeros(shape, np.int16)
        info: dict[int, tuple] = {}
        seg = segmentation_node.GetSegmentation()
        for i in range(seg.GetNumberOfSegments()):
            segment, segment_id = seg.GetNthSegment(i), seg.GetNthSegmentID(i)
            value = (value_of or {}).get(segment.GetName(), i + 1)
            layer = slicer.vtkOrientedImageData()
            if not logic.GetSegmentBinaryLabelmapRepresentation(segmentation_node, segment_id, layer, False):
                continue
            resampled = slicer.vtkOrientedImageData()
            slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
                layer, reference, resampled, False, True)
            voxels = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(shape)
            # segments share layers: this segment is where the layer holds its label value
            out[voxels == segment.GetLabelValue()] = value
            info[value] = (segment.GetName(), tuple(segment.GetColor()))
        return out, info
