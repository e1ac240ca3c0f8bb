"""Scene -> dataset folder: check the chosen (image, label) pairs, then write them as an MSD dataset for the engine.

Every check happens before anything is written, and the folder appears complete or not at all; the scene is
never changed.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import slicer
import vtk

from .errors import DatasetError
from .nodes import SceneNodes, voxel_array, node_dims, ijk_to_ras, image_from_array, node_label, same_grid, safe_case_name


@dataclass
class CasePair:
    """One training case in the scene: an image volume and its label (labelmap volume or segmentation)."""

    volume: object
    label: object
    name: str = ""



@dataclass
class ExportedDataset:
    path: Path
    cases: list[str]
    labels: dict[int, str]



class DatasetExport:
    """Validation and MSD export of case pairs (image volume + label map or segmentation), through ``nodes``."""

    def __init__(self, nodes: SceneNodes) -> None:
        self.nodes = nodes

    def validate_cases(self, pairs: Sequence[CasePair | tuple]) -> list[CasePair]:
        """Check every pair; raise DatasetError naming the first bad case. Touches nothing."""
        if not pairs:
            raise DatasetError("no cases given", "add at least one image volume with its label map or segmentation")
        checked: list[CasePair] = []
        for i, pair in enumerate(pairs):
            pair = pair if isinstance(pair, CasePair) else CasePair(*pair)
            vol, lab = pair.volume, pair.label
            where = f"case {i + 1} (volume {node_label(vol)})"
            if vol is None or not vol.IsA("vtkMRMLScalarVolumeNode") or vol.IsA("vtkMRMLLabelMapVolumeNode"):
                raise DatasetError(f"{where}: no image volume selected",
                                   "pick a scalar (image) volume in the first column")
            if node_dims(vol) is None:
                raise DatasetError(f"{where}: volume has no voxels", "load the image data before exporting")
            if vol.GetImageData().GetNumberOfScalarComponents() != 1:
                raise DatasetError(f"{where}: multi-component (vector/RGB) volumes are not supported",
                                   "split the channels or pick a scalar volume")
            if lab is None:
                raise DatasetError(f"{where}: volume has no label",
                                   "pick its label map or segmentation in the second column, or remove the row")
            for node, what in ((vol, "volume"), (lab, "label")):
                if node.GetParentTransformNode() is not None:
                    raise DatasetError(f"{where}: the {what} {node_label(node)} is under a transform",
                                       "harden the transform (Transforms module) first")
            if lab.IsA("vtkMRMLLabelMapVolumeNode"):
                if node_dims(lab) is None:
                    raise DatasetError(f"{where}: label map {node_label(lab)} has no voxels", "load the label file")
                if not same_grid(ijk_to_ras(vol), node_dims(vol), ijk_to_ras(lab), node_dims(lab)):
                    raise DatasetError(
                        f"{where}: label map {node_label(lab)} does not match the volume's geometry "
                        f"(size {node_dims(lab)} vs {node_dims(vol)}, or different spacing/origin/direction)",
                        "resample the label map onto the volume (Resample Scalar/Vector/DWI Volume) "
                        "or convert it to a segmentation")
                if not np.any(voxel_array(lab)):
                    raise DatasetError(f"{where}: label map {node_label(lab)} is empty (all zeros)",
                                       "draw at least one label or remove the case")
            elif lab.IsA("vtkMRMLSegmentationNode"):
                if lab.GetSegmentation().GetNumberOfSegments() == 0:
                    raise DatasetError(f"{where}: segmentation {node_label(lab)} has no segments",
                                       "add segments in the Segment Editor or remove the case")
                label_array, _ = self.nodes.segmentation_to_array(lab, vol, None)
                if not np.any(label_array):
                    raise DatasetError(f"{where}: segmentation {node_label(lab)} is empty inside the volume",
                                       "paint the segments over this volume or remove the case")
            else:
                raise DatasetError(f"{where}: {node_label(lab)} is a {lab.GetClassName()}",
                                   "use a label map volume or a segmentation as label")
            checked.append(CasePair(vol, lab, pair.name))
        return checked

    def label_names_of(self, pairs: Sequence[CasePair]) -> dict[int, str]:
        """Label value -> name for the whole dataset: segment names, else the label maps' colour tables."""
        names: dict[int, str] = {}
        # label maps first: their values are fixed by the voxels
        for pair in pairs:
            if pair.label.IsA("vtkMRMLLabelMapVolumeNode"):
                colors = None
                display = pair.label.GetDisplayNode()
                if display is not None:
                    colors = display.GetColorNode()
                for value in np.unique(voxel_array(pair.label)):
                    value = int(value)
                    if value == 0 or value in names:
                        continue
                    name = colors.GetColorName(value) if colors is not None else ""
                    names[value] = name if name and name != "(none)" else f"label_{value}"
        by_name = {n: v for v, n in names.items()}
        for pair in pairs:
            if pair.label.IsA("vtkMRMLSegmentationNode"):
                seg = pair.label.GetSegmentation()
                for i in range(seg.GetNumberOfSegments()):
                    name = seg.GetNthSegment(i).GetName()
                    if name not in by_name:
                        value = max(names, default=0) + 1
                        names[value] = name
                        by_name[name] = value
        return dict(sorted(names.items()))

    def export_dataset(self, pairs: Sequence[CasePair | tuple], out_dir: str | Path, name: str = "AutoSegSearch",
                       modality: str = "CT", label_names: dict[int, str] | None = None) -> ExportedDataset:
        """Write the pairs as an MSD dataset folder (imagesTr/, labelsTr/, dataset.json) for the engine.

        Images keep their voxels and IJK->RAS geometry (NIfTI via the volume storage node); labels are written on
        the image grid with their label values (label maps as they are, segments mapped by name to values).
        The folder appears complete or not at all (written beside it, then renamed). The scene is not changed.
        """
        checked = self.validate_cases(pairs)
        out = Path(out_dir)
        if out.exists() and any(out.iterdir()):
            raise DatasetError(f"output folder {out} is not empty", "choose a new or empty folder")
        names = dict(label_names) if label_names else self.label_names_of(checked)
        value_of = {n: v for v, n in names.items()}
        case_names: list[str] = []
        for pair in checked:
            base = safe_case_name(pair.name or pair.volume.GetName())
            candidate, k = base, 1
            while candidate in case_names:
                k += 1
                candidate = f"{base}_{k}"
            case_names.append(candidate)

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            (tmp / "imagesTr").mkdir()
            (tmp / "labelsTr").mkdir()
            training = []
            for case, pair in zip(case_names, checked):
                image_file = tmp / "imagesTr" / f"{case}.nii.gz"
                label_file = tmp / "labelsTr" / f"{case}.nii.gz"
                self.nodes.write_volume(pair.volume, image_file)
                if pair.label.IsA("vtkMRMLLabelMapVolumeNode"):
                    labels = voxel_array(pair.label)
                else:
                    labels, _ = self.nodes.segmentation_to_array(pair.label, pair.volume, value_of)
                self._write_label_array(labels, pair.volume, label_file)
                training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
            dataset = {
                "name": name,
                "description": "exported from a 3D Slicer scene by AutoSegSearch",
                "tensorImageSize": "3D",
                "modality": {"0": modality},
                "labels": {"0": "background", **{str(v): n for v, n in sorted(names.items())}},
                "numTraining": len(training),
                "numTest": 0,
                "training": training,
                "test": [],
            }
            (tmp / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n", encoding="utf-8")
            if out.exists():
                out.rmdir()                      # empty (checked above)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ExportedDataset(out, case_names, names)

    def _write_label_array(self, labels: np.ndarray, reference, path: Path) -> None:
        dtype = np.uint8 if labels.max(initial=0) < 256 and labels.min(initial=0) >= 0 else np.int16
        node = slicer.vtkMRMLLabelMapVolumeNode()
        node.SetAndObserveImageData(image_from_array(labels.astype(dtype)))
        matrix = vtk.vtkMatrix4x4()
        reference.GetIJKToRASMatrix(matrix)
        node.SetIJKToRASMatrix(matrix)
        self.nodes.write_volume(node, path)
