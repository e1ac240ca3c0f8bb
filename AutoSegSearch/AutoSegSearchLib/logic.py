"""The AutoSegSearch module's logic: scene <-> dataset folder <-> engine <-> scene.

Qt-free on purpose: it uses only MRML classes, storage nodes, static module-logic methods, numpy and the engine's
file formats, so it runs unchanged in the desktop Slicer, headless under the ``slicer-core`` wheel (tests) and in
the browser front end (trame-slicer).  No ``slicer.app``, no ``slicer.util`` I/O helpers (they need Qt), no
parameter-node wrapper (that lives in the Widget).  Every method that could fail on user input checks everything
first and only then touches the scene, so a bad input raises :class:`DatasetError` and changes nothing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

try:
    from AutoSegCore.errors import ConfigError, DatasetError
except ImportError:  # inside Slicer before the engine is installed: same shape, so messages stay uniform
    class _AutoSegError(Exception):
        def __init__(self, message: str, hint: str = "") -> None:
            super().__init__(message)
            self.message, self.hint = message, hint

        def __str__(self) -> str:
            return f"{self.message} — {self.hint}" if self.hint else self.message

    class DatasetError(_AutoSegError):  # type: ignore[no-redef]
        pass

    class ConfigError(_AutoSegError):  # type: ignore[no-redef]
        pass

from .process import EngineProcess, ProcessState

# Distinct, colour-blind-friendly segment colours (Okabe-Ito, then tab10) used when a file carries none.
PALETTE = [(0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26), (0.0, 0.45, 0.70),
           (0.84, 0.37, 0.0), (0.80, 0.47, 0.65), (0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17),
           (0.84, 0.15, 0.16), (0.58, 0.40, 0.74)]

# what the panels offer; the engine's own lists win when it is installed (see available_spaces/strategies)
SPACES = ("unet-pipeline", "unet-recipe", "proxy-hpo", "segnas", "segnas4", "segnas7", "emonas")
STRATEGIES = ("random", "tpe", "nsga2", "bohb", "rl", "crs", "moead")
PROXY_METHODS = ("mi", "ncc", "random")


def available_spaces() -> list[str]:
    try:
        from AutoSegCore.spaces import list_spaces
    except ImportError:
        return list(SPACES)
    return list_spaces()


def available_strategies() -> list[str]:
    try:
        from AutoSegCore.strategies.registry import list_strategies
    except ImportError:
        return list(STRATEGIES)
    return list_strategies()


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


@dataclass
class ProxyCase:
    name: str
    score: float | None
    rank: int | None
    selected: bool


@dataclass
class ProxyResult:
    method: str
    roi: str
    budget: object
    cases: list[ProxyCase]
    selected: list[str]
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    preview_png: Path | None = None


# --- small geometry helpers --------------------------------------------------------------------------------------
def _ijk_to_ras(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _dims(node) -> tuple[int, int, int] | None:
    image = node.GetImageData() if node is not None else None
    return tuple(image.GetDimensions()) if image is not None else None


def _array(node) -> np.ndarray:
    """Voxels as numpy (k, j, i), without slicer.util (which pulls in Qt-only helpers in some builds)."""
    image = node.GetImageData()
    arr = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    comps = image.GetNumberOfScalarComponents()
    shape = tuple(reversed(image.GetDimensions()))
    return arr.reshape(shape + ((comps,) if comps > 1 else ()))


def _image_from_array(arr: np.ndarray) -> vtk.vtkImageData:
    arr = np.ascontiguousarray(arr)
    image = vtk.vtkImageData()
    image.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    scalars = numpy_support.numpy_to_vtk(arr.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def _same_grid(a_matrix: np.ndarray, a_dims, b_matrix: np.ndarray, b_dims, tol: float = 1e-3) -> bool:
    return tuple(a_dims) == tuple(b_dims) and np.allclose(a_matrix, b_matrix, atol=tol)


def _node_label(node) -> str:
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


class AutoSegSearchLogic:
    """Everything the module does that is not a widget. Pass plain values and nodes in; get nodes and paths out.

    ``scene`` defaults to ``slicer.mrmlScene``; ``app_logic`` (optional) lets :meth:`show_in_views` put a loaded
    case in the slice views; ``volumes_logic`` (optional) loads volumes the way the app does (window/level, colour).
    """

    def __init__(self, scene=None, app_logic=None, volumes_logic=None, python: str | None = None) -> None:
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.app_logic = app_logic
        self.volumes_logic = volumes_logic
        self.python = python
        if self.volumes_logic is None and app_logic is not None:
            self.volumes_logic = app_logic.GetModuleLogic("Volumes")

    # ============================================================================================ Data: validation
    def validate_cases(self, pairs: Sequence[CasePair | tuple]) -> list[CasePair]:
        """Check every pair; raise DatasetError naming the first bad case. Touches nothing."""
        if not pairs:
            raise DatasetError("no cases given", "add at least one image volume with its label map or segmentation")
        checked: list[CasePair] = []
        for i, pair in enumerate(pairs):
            pair = pair if isinstance(pair, CasePair) else CasePair(*pair)
            vol, lab = pair.volume, pair.label
            where = f"case {i + 1} (volume {_node_label(vol)})"
            if vol is None or not vol.IsA("vtkMRMLScalarVolumeNode") or vol.IsA("vtkMRMLLabelMapVolumeNode"):
                raise DatasetError(f"{where}: no image volume selected",
                                   "pick a scalar (image) volume in the first column")
            if _dims(vol) is None:
                raise DatasetError(f"{where}: volume has no voxels", "load the image data before exporting")
            if vol.GetImageData().GetNumberOfScalarComponents() != 1:
                raise DatasetError(f"{where}: multi-component (vector/RGB) volumes are not supported",
                                   "split the channels or pick a scalar volume")
            if lab is None:
                raise DatasetError(f"{where}: volume has no label",
                                   "pick its label map or segmentation in the second column, or remove the row")
            for node, what in ((vol, "volume"), (lab, "label")):
                if node.GetParentTransformNode() is not None:
                    raise DatasetError(f"{where}: the {what} {_node_label(node)} is under a transform",
                                       "harden the transform (Transforms module) first")
            if lab.IsA("vtkMRMLLabelMapVolumeNode"):
                if _dims(lab) is None:
                    raise DatasetError(f"{where}: label map {_node_label(lab)} has no voxels", "load the label file")
                if not _same_grid(_ijk_to_ras(vol), _dims(vol), _ijk_to_ras(lab), _dims(lab)):
                    raise DatasetError(
                        f"{where}: label map {_node_label(lab)} does not match the volume's geometry "
                        f"(size {_dims(lab)} vs {_dims(vol)}, or different spacing/origin/direction)",
                        "resample the label map onto the volume (Resample Scalar/Vector/DWI Volume) "
                        "or convert it to a segmentation")
                if not np.any(_array(lab)):
                    raise DatasetError(f"{where}: label map {_node_label(lab)} is empty (all zeros)",
                                       "draw at least one label or remove the case")
            elif lab.IsA("vtkMRMLSegmentationNode"):
                if lab.GetSegmentation().GetNumberOfSegments() == 0:
                    raise DatasetError(f"{where}: segmentation {_node_label(lab)} has no segments",
                                       "add segments in the Segment Editor or remove the case")
                label_array, _ = self._segmentation_to_array(lab, vol, None)
                if not np.any(label_array):
                    raise DatasetError(f"{where}: segmentation {_node_label(lab)} is empty inside the volume",
                                       "paint the segments over this volume or remove the case")
            else:
                raise DatasetError(f"{where}: {_node_label(lab)} is a {lab.GetClassName()}",
                                   "use a label map volume or a segmentation as label")
            checked.append(CasePair(vol, lab, pair.name))
        return checked

    # ============================================================================================ Data: export
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
                for value in np.unique(_array(pair.label)):
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
                self._write_volume(pair.volume, image_file)
                if pair.label.IsA("vtkMRMLLabelMapVolumeNode"):
                    labels = _array(pair.label)
                else:
                    labels, _ = self._segmentation_to_array(pair.label, pair.volume, value_of)
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

    def _write_volume(self, volume, path: Path) -> None:
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()   # not added to the scene: no trace left there
        storage.SetFileName(str(path))
        storage.SetUseCompression(True)
        if not storage.WriteData(volume):
            raise DatasetError(f"could not write {path}", "check the folder is writable and has free space")

    def _write_label_array(self, labels: np.ndarray, reference, path: Path) -> None:
        dtype = np.uint8 if labels.max(initial=0) < 256 and labels.min(initial=0) >= 0 else np.int16
        node = slicer.vtkMRMLLabelMapVolumeNode()
        node.SetAndObserveImageData(_image_from_array(labels.astype(dtype)))
        matrix = vtk.vtkMatrix4x4()
        reference.GetIJKToRASMatrix(matrix)
        node.SetIJKToRASMatrix(matrix)
        self._write_volume(node, path)

    def _segmentation_to_array(self, segmentation_node, reference_volume,
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

    # ============================================================================================ Proxy data
    def proxy_args(self, data_dir: str | Path, out_dir: str | Path, method: str = "mi", roi: bool = True,
                   budget: float | int = 0.25, preview: bool = True, device: str | None = None,
                   cache_dir: str | Path | None = None) -> list[str]:
        """Arguments of ``autoseg proxy`` (without the python prefix and --events)."""
        if method not in PROXY_METHODS:
            raise ConfigError(f"proxy method {method!r} is unknown", f"use one of {', '.join(PROXY_METHODS)}")
        if not (isinstance(budget, (int, float)) and budget > 0):
            raise ConfigError(f"proxy budget {budget!r} must be positive",
                              "give a case count (e.g. 10) or a fraction (e.g. 0.25)")
        args = ["proxy", str(data_dir), "--method", method, "--roi", "label" if roi else "none",
                "--budget", str(budget), "--out", str(out_dir)]
        if device and device != "auto":
            args += ["--device", device]
        if cache_dir:
            args += ["--cache-dir", str(cache_dir)]
        return args + (["--preview"] if preview else [])

    @staticmethod
    def proxy_data_spec(method: str = "mi", roi: bool = True, budget: float | int = 0.25) -> str:
        """``--proxy-data`` value of ``autoseg search``, e.g. ``mi+roi:0.25``."""
        return f"{method}{'+roi' if roi else ''}:{budget}"

    @staticmethod
    def budget_value(value: float, unit: str) -> float | int:
        """The panel's budget (a percentage or a case count) as the engine wants it (fraction or count)."""
        if unit.startswith("%"):
            if not 0 < value <= 100:
                raise ConfigError(f"proxy budget {value}% is outside 0–100%", "e.g. 25 %")
            return round(value / 100.0, 4)
        if value < 1:
            raise ConfigError(f"proxy budget of {value} cases is less than one", "e.g. 10 cases")
        return int(value)

    def read_proxy_result(self, out_dir: str | Path) -> ProxyResult:
        """Parse ``proxy.json`` written by ``autoseg proxy``; cases sorted by rank."""
        path = Path(out_dir) / "proxy.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{path} not found", "run the proxy selection first") from None
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc.msg})", "run the proxy selection again") from None
        cases = [ProxyCase(str(c.get("name")), c.get("score"), c.get("rank"), bool(c.get("selected")))
                 for c in data.get("cases", [])]
        cases.sort(key=lambda c: (c.rank is None, c.rank if c.rank is not None else 0, c.name))
        preview = Path(out_dir) / "proxy_preview.png"
        return ProxyResult(data.get("method", ""), data.get("roi", ""), data.get("budget"), cases,
                           list(data.get("selected", [])), list(data.get("train", [])), list(data.get("val", [])),
                           preview if preview.exists() else None)

    def dataset_files(self, dataset_dir: str | Path, case: str) -> tuple[Path, Path | None]:
        """(image, label) files of one case of an MSD/nnU-Net folder, found through dataset.json or by name."""
        root = Path(dataset_dir)
        meta = self.read_dataset_json(root)
        for entry in meta.get("training", []):
            image = root / entry["image"] if isinstance(entry, dict) else None
            if image is not None and case_name_from_file(image) == case:
                return image, root / entry["label"]
        for suffix in (".nii.gz", "_0000.nii.gz", ".nii", ".nrrd"):
            image = root / "imagesTr" / f"{case}{suffix}"
            if image.exists():
                label = root / "labelsTr" / f"{case}{suffix.replace('_0000', '')}"
                return image, label if label.exists() else None
        raise DatasetError(f"case '{case}' not found in {root}", "pick a case listed in the proxy table")

    def read_dataset_json(self, dataset_dir: str | Path) -> dict:
        path = Path(dataset_dir) / "dataset.json"
        if not path.exists():
            raise DatasetError(f"{path} not found", "choose a dataset folder in MSD layout (with dataset.json)")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc.msg})", "fix or re-export the dataset") from None

    def dataset_label_names(self, dataset_dir: str | Path) -> dict[int, str]:
        labels = self.read_dataset_json(dataset_dir).get("labels", {})
        out = {}
        for key, value in labels.items():
            # MSD: {"1": "name"}; nnU-Net v2: {"name": 1}
            if str(key).lstrip("-").isdigit():
                out[int(key)] = str(value)
            elif isinstance(value, int):
                out[value] = str(key)
        out.pop(0, None)
        return dict(sorted(out.items()))

    def load_case(self, dataset_dir: str | Path, case: str) -> tuple[object, object]:
        """Load one dataset case into the scene for preview: (image volume node, segmentation node of its label)."""
        image_file, label_file = self.dataset_files(dataset_dir, case)
        if label_file is None or not label_file.exists():
            raise DatasetError(f"case '{case}' has no label file in {dataset_dir}", "check labelsTr/ of the dataset")
        names = self.dataset_label_names(dataset_dir)
        image = self._read_volume(image_file)                 # read + validate before touching the scene
        volume = self._add_volume(image, image_file, case)
        try:
            segmentation = self.import_segmentation(label_file, volume, label_names=names, name=f"{case} label")
        except BaseException:
            self._remove_node(volume)
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

    # ============================================================================================ Search / train
    def search_args(self, data_dir: str | Path, out_dir: str | Path, space: str = "unet-pipeline",
                    strategy: str = "random", trials: int | None = 20, proxy_data: str | None = None,
                    proxy_net: str | None = None, storage: str | None = None, time_minutes: float | None = None,
                    device: str | None = None, epochs: int | None = None, min_epochs: int | None = None,
                    steps_per_epoch: int | None = None, final: bool = True, final_epochs: int | None = None,
                    seed: int | None = None, extra: Iterable[str] = ()) -> list[str]:
        """Arguments of ``autoseg search``. A time budget replaces the trial count (the engine takes one)."""
        if time_minutes:
            if time_minutes <= 0:
                raise ConfigError(f"time limit {time_minutes!r} min must be positive", "e.g. 60 minutes")
        elif not (isinstance(trials, int) and trials >= 1):
            raise ConfigError(f"number of trials {trials!r} must be a positive integer", "e.g. 20")
        args = ["search", str(data_dir), "--space", space, "--strategy", strategy, "--out", str(out_dir)]
        args += ["--time", f"{int(time_minutes)}m"] if time_minutes else ["--trials", str(trials)]
        optional = (("--proxy-data", proxy_data), ("--proxy-net", proxy_net), ("--storage", storage),
                    ("--epochs", epochs), ("--min-epochs", min_epochs), ("--steps-per-epoch", steps_per_epoch),
                    ("--final-epochs", final_epochs), ("--seed", seed))
        for flag, value in optional:
            if value not in (None, "", "full", "none"):
                args += [flag, str(value)]
        if device and device != "auto":
            args += ["--device", device]
        if not final:
            args.append("--no-final")
        return args + list(extra)

    @staticmethod
    def best_of(summary: dict) -> tuple[float | None, dict]:
        """(best objective value, its parameters) from ``summary.json`` or the search's ``done`` event."""
        best = summary.get("best") or {}
        return best.get("value"), dict(best.get("params") or {})

    def train_args(self, data_dir: str | Path, model_dir: str | Path, config: str | Path | None = None,
                   epochs: int | None = None, steps_per_epoch: int | None = None,
                   device: str | None = None) -> list[str]:
        """Arguments of ``autoseg train`` (one configuration, e.g. to retrain the best one on all cases)."""
        args = ["train", str(data_dir), "--out", str(model_dir)]
        if config:
            args += ["--config", str(config)]
        if epochs:
            args += ["--epochs", str(epochs)]
        if steps_per_epoch:
            args += ["--steps-per-epoch", str(steps_per_epoch)]
        if device and device != "auto":
            args += ["--device", device]
        return args

    def predict_args(self, model_dir: str | Path, images: Sequence[str | Path], out_dir: str | Path,
                     tta: bool = False, device: str = "auto") -> list[str]:
        model = self.resolve_model_dir(model_dir)
        args = ["predict", str(model), *map(str, images), "--out", str(out_dir), "--device", device]
        return args + (["--tta"] if tta else [])

    def resolve_model_dir(self, model_dir: str | Path) -> Path:
        """A model folder (model.pt), or a search output folder whose best/ holds one."""
        root = Path(model_dir)
        for candidate in (root, root / "best"):
            if (candidate / "model.pt").exists():
                return candidate
        raise DatasetError(f"{root} holds no trained model (model.pt)",
                           "pick a search output folder (with best/) or an 'autoseg train' output folder")

    def start_engine(self, args: Sequence[str], work_dir: str | Path, on_event: Callable[[dict], None] | None = None,
                     on_log: Callable[[str], None] | None = None,
                     on_finished: Callable[[EngineProcess], None] | None = None,
                     env: dict[str, str] | None = None) -> EngineProcess:
        """Start ``autoseg <args>`` as a child process writing events to ``work_dir/<command>.events.jsonl``."""
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        command = str(args[0]) if args else "engine"
        return EngineProcess(args, work / f"{command}.events.jsonl", work / f"{command}.log", on_event=on_event,
                             on_log=on_log, on_finished=on_finished, env=env, python=self.python).start()

    def run_engine(self, args: Sequence[str], work_dir: str | Path, on_event: Callable[[dict], None] | None = None,
                   timeout: float | None = None, env: dict[str, str] | None = None) -> EngineProcess:
        """Blocking variant for scripts and tests: start, wait, raise DatasetError with the engine's message."""
        proc = self.start_engine(args, work_dir, on_event=on_event, env=env)
        state = proc.wait(timeout=timeout)
        if state == ProcessState.RUNNING:
            proc.cancel()
            raise DatasetError(f"engine '{args[0]}' did not finish within {timeout} s", "allow more time")
        if state != ProcessState.SUCCEEDED:
            msg = proc.error.get("message") if proc.error else proc.failure_message()
            hint = proc.error.get("hint", "") if proc.error else f"see the log {proc.log_path}"
            raise DatasetError(f"engine '{args[0]}' failed: {msg}", hint)
        return proc

    def read_search_summary(self, out_dir: str | Path) -> dict:
        """``summary.json`` of a finished search (best value, params, trials), or {} while it does not exist."""
        path = Path(out_dir) / "summary.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}

    # ============================================================================================ Results: apply
    def write_volume_for_engine(self, volume, work_dir: str | Path) -> Path:
        """Write ``volume`` to ``work_dir/<safe name>.nii.gz`` for ``autoseg predict``."""
        self.validate_reference(volume)
        path = Path(work_dir) / f"{safe_case_name(volume.GetName())}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_volume(volume, path)
        return path

    def apply_model(self, model_dir: str | Path, volume, work_dir: str | Path, tta: bool = False,
                    device: str = "auto", label_names: dict[int, str] | None = None,
                    on_event: Callable[[dict], None] | None = None, timeout: float | None = None):
        """Blocking: run ``autoseg predict`` on ``volume`` and import its mask as a segmentation node over it."""
        image = self.write_volume_for_engine(volume, Path(work_dir) / "input")
        out = Path(work_dir) / "predictions"
        self.run_engine(self.predict_args(model_dir, [image], out, tta=tta, device=device), work_dir,
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
            raise DatasetError(f"{_node_label(volume)} is not an image volume", "select the image volume to segment")
        if _dims(volume) is None:
            raise DatasetError(f"volume {_node_label(volume)} has no voxels", "load the image first")

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
            node = self._read_volume(path, labelmap=True)
            if not _same_grid(_ijk_to_ras(node), _dims(node), _ijk_to_ras(volume), _dims(volume)):
                raise DatasetError(f"{path.name} does not lie on the grid of volume {_node_label(volume)} "
                                   f"(size {_dims(node)} vs {_dims(volume)}, or different spacing/origin/direction)",
                                   "predict on this very volume, or pick the matching volume")
            labels = np.rint(_array(node)).astype(np.int16)
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
            b = _ijk_to_ras(volume)
            extent = layer.GetExtent()
            dims = _dims(volume)
            inside = all(extent[2 * k] >= 0 and extent[2 * k + 1] < dims[k] for k in range(3)) \
                or extent[0] > extent[1]
            if not (np.allclose(a, b, atol=1e-3) and inside):
                raise DatasetError(f"{path.name} does not lie on the grid of volume {_node_label(volume)}",
                                   "predict on this very volume, or pick the matching volume")
        value_of = {seg.GetNthSegment(i).GetName(): seg.GetNthSegment(i).GetLabelValue()
                    for i in range(seg.GetNumberOfSegments())}
        return self._segmentation_to_array(seg_node, volume, value_of)

    def _add_segmentation(self, labels: np.ndarray, volume, segments: list[tuple], name: str):
        """Create the segmentation node (the only scene change of an import)."""
        labelmap = slicer.vtkMRMLLabelMapVolumeNode()           # stays out of the scene
        labelmap.SetAndObserveImageData(_image_from_array(labels.astype(np.int16)))
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        labelmap.SetIJKToRASMatrix(matrix)
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", self._unique_name(name))
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        if segments and not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node, ""):
            self._remove_node(node)
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
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
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

    # ============================================================================================ I/O helpers
    def _read_volume(self, path: Path, labelmap: bool = False):
        """Read a volume file into a node that is NOT in the scene (so a failure leaves no trace)."""
        node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        if labelmap:
            storage.SetCenterImage(False)
        if not storage.ReadData(node) or _dims(node) is None:
            raise DatasetError(f"could not read {path}", "pass a NIfTI (.nii/.nii.gz) or NRRD file")
        return node

    def _add_volume(self, node, path: Path, name: str):
        """Add a volume read by :meth:`_read_volume` to the scene, with display and storage nodes."""
        if self.volumes_logic is not None:
            loaded = self.volumes_logic.AddArchetypeVolume(str(path), self._unique_name(name), 0)
            if loaded is not None:
                return loaded
        node.SetName(self._unique_name(name))
        self.scene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        storage = self.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        node.SetAndObserveStorageNodeID(storage.GetID())
        return node

    def _unique_name(self, name: str) -> str:
        """``name`` itself when free, else Slicer's numbered variant (GenerateUniqueName always numbers)."""
        return name if self.scene.GetFirstNodeByName(name) is None else self.scene.GenerateUniqueName(name)

    def _remove_node(self, node) -> None:
        if node is None or node.GetScene() is None:
            return
        count = node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0
        helpers = [node.GetNthDisplayNode(i) for i in range(count)]
        helpers.append(node.GetStorageNode() if hasattr(node, "GetStorageNode") else None)
        self.scene.RemoveNode(node)
        for helper in helpers:
            if helper is not None and helper.GetScene() is not None:
                self.scene.RemoveNode(helper)
