"""Files -> scene: dataset cases for preview, and predicted masks as named, coloured segments over their volume.

All checks (file readable, on the volume's grid) happen before the scene is touched; an import adds exactly one
segmentation node, placed beside its volume in the subject hierarchy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import slicer
import vtk

from .engine_commands import EngineCommands
from .engine_outputs import EngineOutputs
from .errors import DatasetError
from .nodes import (PALETTE, SceneNodes, voxel_array, node_dims, ijk_to_ras, image_from_array, node_label, same_grid,
                    case_name_from_file, safe_case_name, check_volume_file)


class SceneImport:
    """Loading cases and predictions into the scene of ``nodes``: dataset cases found through ``outputs``, masks
    predicted by ``engine`` (``apply_model``); ``app_logic`` (optional) shows a case in the slice views."""

    def __init__(self, nodes: SceneNodes, engine: EngineCommands, outputs: EngineOutputs, app_logic=None) -> None:
        self.nodes, self.engine, self.outputs, self.app_logic = nodes, engine, outputs, app_logic

    def load_case(self, dataset_dir: str | Path, case: str) -> tuple[object, object]:
        """Load one dataset case into the scene for preview: (image volume node, segmentation node of its label)."""
        image_file, label_file = self.outputs.dataset_files(dataset_dir, case)
        if label_file is None or not label_file.exists():
            raise DatasetError(f"case '{case}' has no label file in {dataset_dir}", "check labelsTr/ of the dataset")
        names = self.outputs.dataset_label_names(dataset_dir)
        image = self.nodes.read_volume(image_file)                 # read + validate before touching the scene
        volume = self.nodes.add_volume(image, image_file, case)
        try:
            segmentation = self.import_segmentation(label_file, volume, label_names=names, name=f"{case} label")
        except BaseException:
            self.nodes.remove_node(volume)
            raise
        return volume, segmentation

    def show_in_views(self, volume, segmentation=None) -> None:
        """Put ``volume`` in the slice views' background (MRML only: works in the app and in trame-slicer)."""
        if self.app_logic is None:
            return
        selection = self.app_logic.GetSelectionNode()
        if selection is not None:
            selection.SetActiveVolumeID(volume.GetID())
            self.app_logic.PropagateVolumeSelection(0)
        if segmentation is not None and segmentation.GetDisplayNode() is not None:
            segmentation.GetDisplayNode().SetVisibility(True)

    def write_volume_for_engine(self, volume, work_dir: str | Path) -> Path:
        """Write ``volume`` to ``work_dir/<safe name>.nii.gz`` for ``autoseg predict``."""
        self.validate_reference(volume)
        path = Path(work_dir) / f"{safe_case_name(volume.GetName())}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.nodes.write_volume(volume, path)
        return path

    def apply_model(self, model_dir: str | Path, volume, work_dir: str | Path, tta: bool | None = None,
                    device: str = "auto", label_names: dict[int, str] | None = None,
                    on_event: Callable[[dict], None] | None = None, timeout: float | None = None):
        """Blocking: run ``autoseg predict`` on ``volume`` and import its mask as a segmentation node over it."""
        image = self.write_volume_for_engine(volume, Path(work_dir) / "input")
        out = Path(work_dir) / "predictions"
        self.engine.run_engine(self.engine.predict_args(model_dir, [image], out, tta=tta, device=device), work_dir,
                        on_event=on_event, timeout=timeout)
        return self.import_prediction(out, volume, label_names=label_names)

    def prediction_file(self, prediction_dir: str | Path, volume) -> Path:
        """The engine's output for ``volume``: <case>.seg.nrrd (named segments) or else <case>.nii.gz."""
        case = safe_case_name(volume.GetName())
        for suffix in (".seg.nrrd", ".nii.gz"):
            candidate = Path(prediction_dir) / f"{case}{suffix}"
            if candidate.exists():
                return candidate
        raise DatasetError(f"no prediction for '{case}' in {prediction_dir}",
                           "run Apply again; check the engine log for errors")

    def import_prediction(self, prediction: str | Path, volume, label_names: dict[int, str] | None = None,
                          name: str | None = None):
        """Import a predicted mask (file or predictions folder) as a segmentation node over ``volume``."""
        path = Path(prediction)
        if path.is_dir():
            path = self.prediction_file(path, volume)
        return self.import_segmentation(path, volume, label_names=label_names,
                                        name=name or f"{volume.GetName()} AutoSeg")

    def validate_reference(self, volume) -> None:
        if volume is None or not volume.IsA("vtkMRMLScalarVolumeNode") or volume.IsA("vtkMRMLLabelMapVolumeNode"):
            raise DatasetError(f"{node_label(volume)} is not an image volume", "select the image volume to segment")
        if node_dims(volume) is None:
            raise DatasetError(f"volume {node_label(volume)} has no voxels", "load the image first")

    def import_segmentation(self, label_file: str | Path, volume, label_names: dict[int, str] | None = None,
                            name: str | None = None):
        """A label file (.nii.gz/.nrrd label map or .seg.nrrd) -> new segmentation node over ``volume``.

        One segment per label value, named from ``label_names`` (else the file's segment names, else
        ``label_<v>``), coloured, with its label value kept (``segment.GetLabelValue()``); reference geometry =
        the volume; placed in the volume's subject-hierarchy folder/study. The file must lie on the volume's
        grid. All checks happen before the scene is touched.
        """
        self.validate_reference(volume)
        path = Path(label_file)
        if not path.exists():
            raise DatasetError(f"label file {path} not found", "check the path or run the prediction again")
        if path.name.endswith(".seg.nrrd"):
            labels, info = self._read_seg_nrrd(path, volume)
        else:
            node = self.nodes.read_volume(path, labelmap=True)
            if not same_grid(ijk_to_ras(node), node_dims(node), ijk_to_ras(volume), node_dims(volume)):
                raise DatasetError(f"{path.name} does not lie on the grid of volume {node_label(volume)} "
                                   f"(size {node_dims(node)} vs {node_dims(volume)}, or different spacing/origin/direction)",
                                   "predict on this very volume, or pick the matching volume")
            labels = np.rint(voxel_array(node)).astype(np.int16)
            info = {}
        values = [int(v) for v in np.unique(labels) if v != 0]
        segments = []
        for i, value in enumerate(values):
            file_name, file_color = info.get(value, (None, None))
            seg_name = (label_names or {}).get(value) or file_name or f"label_{value}"
            color = file_color or PALETTE[(value - 1) % len(PALETTE)]
            segments.append((value, seg_name, color))
        return self._add_segmentation(labels, volume, segments, name or f"{case_name_from_file(path)} segmentation")

    def _read_seg_nrrd(self, path: Path, volume) -> tuple[np.ndarray, dict[int, tuple]]:
        """A .seg.nrrd read without the scene -> (label array on the volume's grid, {value: (name, colour)})."""
        check_volume_file(path, "label")
        seg_node = slicer.vtkMRMLSegmentationNode()
        # The storage node creates display nodes while reading; a node outside any scene makes MRML log
        # "CreateDefaultDisplayNodes failed: Scene is invalid", so read inside a throw-away scene of our own.
        scratch = slicer.vtkMRMLScene()
        scratch.AddNode(seg_node)
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(path))
        if not storage.ReadData(seg_node) or seg_node.GetSegmentation().GetNumberOfSegments() == 0:
            raise DatasetError(f"{path} is not a readable segmentation file", "re-run the prediction")
        seg = seg_node.GetSegmentation()
        # the file's grid must be the volume's (up to cropping to the segments' extent)
        layer = seg.GetNthSegment(0).GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
        if layer is not None:
            file_matrix = vtk.vtkMatrix4x4()
            layer.GetImageToWorldMatrix(file_matrix)
            a = np.array([[file_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
            b = ijk_to_ras(volume)
            extent = layer.GetExtent()
            dims = node_dims(volume)
            inside = all(extent[2 * k] >= 0 and extent[2 * k + 1] < dims[k] for k in range(3)) \
                or extent[0] > extent[1]
            if not (np.allclose(a, b, atol=1e-3) and inside):
                raise DatasetError(f"{path.name} does not lie on the grid of volume {node_label(volume)}",
                                   "predict on this very volume, or pick the matching volume")
        value_of = {seg.GetNthSegment(i).GetName(): seg.GetNthSegment(i).GetLabelValue()
                    for i in range(seg.GetNumberOfSegments())}
        return self.nodes.segmentation_to_array(seg_node, volume, value_of)

    def _add_segmentation(self, labels: np.ndarray, volume, segments: list[tuple], name: str):
        """Create the segmentation node (the only scene change of an import)."""
        labelmap = slicer.vtkMRMLLabelMapVolumeNode()           # stays out of the scene
        labelmap.SetAndObserveImageData(image_from_array(labels.astype(np.int16)))
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        labelmap.SetIJKToRASMatrix(matrix)
        node = self.nodes.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", self.nodes.unique_name(name))
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        if segments and not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node, ""):
            self.nodes.remove_node(node)
            raise DatasetError(f"could not import the label map into {name}", "check the label file")
        seg = node.GetSegmentation()
        by_value = {value: (seg_name, color) for value, seg_name, color in segments}
        for i in range(seg.GetNumberOfSegments()):
            segment = seg.GetNthSegment(i)
            seg_name, color = by_value.get(segment.GetLabelValue(), (segment.GetName(), segment.GetColor()))
            segment.SetName(seg_name)
            segment.SetColor(*color[:3])
        self._place_beside(node, volume)
        return node

    def _place_beside(self, node, volume) -> None:
        """Put ``node`` in the same subject-hierarchy folder/study as ``volume``."""
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.nodes.scene)
        if sh is None:
            return
        volume_item = sh.GetItemByDataNode(volume)
        if not volume_item:
            return
        parent = sh.GetItemParent(volume_item)
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, parent)
        else:
            sh.CreateItem(parent, node)
