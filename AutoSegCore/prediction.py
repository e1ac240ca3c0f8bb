"""Predicting files and folders of scans: which inputs, checked before any work, one atomic write per finished case.

``autoseg predict``, the Python API (:func:`predict_files`, given a model folder or a loaded ``Predictor``), the
Slicer module and the browser UI (both run ``autoseg predict``) all go through this module, so they find, check,
skip and write cases the same way.  What a user of ``nnUNetv2_predict -i IN -o OUT`` expects:

* INPUT may be image files, a plain folder of images (every supported format), or a dataset folder (its
  ``imagesTs/``, else its ``imagesTr/``).  A ``_NNNN`` name suffix is nnU-Net's channel suffix only where it forms a
  case's full channel set for the model: the files ``<stem>_0000`` … ``<stem>_{C-1}`` of a C-channel model are one
  case ``<stem>`` (a one-channel model's ``case_0000.nii.gz`` is case ``case``); every other file is a case of its
  own, named as written (``site_9584.nii.gz`` is case ``site_9584``).  See :func:`group_channel_files`.
* Every input is checked before the first prediction: headers of all of them first (seconds, catches the common
  mistakes), then the voxels of the cases to predict (truncated data, NaN/Inf).  A bad input writes nothing.
* Each case is written as soon as it is predicted, every file through a hidden temp file renamed into place, the
  label map before the ``.seg.nrrd``: a case counts as done only when all its outputs exist, so a file that is
  there is complete, and Ctrl-C, SIGTERM, a crash or a full disk lose only the case in progress.
* A re-run skips the cases already done (and says how many); ``overwrite=True`` (``--overwrite``) redoes them.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.input_cases import (CHANNEL_FILE, CaseInput, case_name, group_channel_files,  # noqa: F401
                                     group_files)

if TYPE_CHECKING:
    import numpy as np

# --format choices → the label map's file ending ("input": the input's own format, see label_ending)
# (the data layer — SimpleITK, nibabel — is imported inside the functions: `autoseg --help` stays fast)
OUTPUT_FORMATS = {"nifti": ".nii.gz", "input": None, "nrrd": ".nrrd", "mha": ".mha"}
DEFAULT_FORMAT = "nifti"
SEG_ENDING = ".seg.nrrd"
# checked input arrays kept in memory for the prediction step (beyond it an input is read again)
KEEP_CHECKED_BYTES = 512 * 2 ** 20
def label_ending(output_format: str, first_input: Path) -> str:
    """The label map's file ending for ``output_format`` (``input``: the input's own format; NIfTI for a DICOM
    series, which has no label-map file format of its own here)."""
    from AutoSegCore.data.volumes import image_format
    from AutoSegCore.data.writers import LABEL_ENDING

    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output format '{output_format}' is not one of {', '.join(OUTPUT_FORMATS)}",
                          "use --format nifti (default), input, nrrd or mha")
    fixed = OUTPUT_FORMATS[output_format]
    if fixed is not None:
        return fixed
    ending = LABEL_ENDING[image_format(first_input)]
    return ".nii" if ending == ".nii.gz" and Path(first_input).name.lower().endswith(".nii") else ending


def output_paths(out_dir: Path, case: str, ending: str) -> dict[str, Path]:
    """The files one case writes, in the order they are written (the ``.seg.nrrd`` last: a case is done when
    all exist)."""
    return {"label": out_dir / f"{case}{ending}", "seg_nrrd": out_dir / f"{case}{SEG_ENDING}"}


# ------------------------------------------------------------------------------------------------ discovery

def find_inputs(inputs, *, channels: int, series: str | None = None) -> tuple[list[CaseInput], list[str]]:
    """The cases to predict for a ``channels``-channel model: the image files given (all of them grouped
    together by :func:`group_channel_files`); a plain folder's images (every supported format, grouped the same
    way, and DICOM series in subfolders); a dataset folder's (``dataset.json``) ``imagesTs/`` if that holds
    images, else the cases of ``imagesTr/``; a list of paths is one case's channel files as given.  Returns
    ``(cases, notes)``; the notes say what each folder gave (for the user)."""
    if isinstance(inputs, (str, Path)):          # one image, not a list of its path's characters
        inputs = [inputs]
    found: list[list[CaseInput] | Path] = []     # cases, or a file given (grouped with the others below)
    notes: list[str] = []
    for raw in inputs:
        if isinstance(raw, (list, tuple)):       # the channel files of one case
            paths = [Path(p) for p in raw]
            if not paths:
                raise DatasetError("an input has no image file", "pass at least one image path per case")
            found.append([CaseInput(case_name(paths, channels), paths)])
            continue
        p = Path(raw)
        if p.is_dir() and (p / "dataset.json").is_file():
            cases, note = _dataset_inputs(p, channels)
            found.append(cases)
            notes.append(note)
        elif p.is_dir():
            cases = _folder_inputs(p, series, channels)
            found.append(cases)
            notes.append(f"{p}: predicting its {len(cases)} image(s)")
        elif p.is_file():
            found.append(p)
        else:
            raise DatasetError(f"{p}: input not found", "pass existing image files, a folder of images or a "
                                                        "dataset folder")
    starting = dict(group_files([f for f in found if isinstance(f, Path)], channels))
    cases: list[CaseInput] = []
    n = 0
    for item in found:                           # in the order given; a channel set where its first file was
        if isinstance(item, Path):
            cases += [starting[n]] if n in starting else []
            n += 1
        else:
            cases += item
    return cases, notes


def _folder_inputs(folder: Path, series: str | None, channels: int) -> list[CaseInput]:
    """A plain folder's images (channel files grouped for the model) and DICOM series (the data layer's
    ``find_images``), sorted by case name."""
    from AutoSegCore.data.volumes import find_images

    found = find_images(folder, series, group_channels=False)
    files = group_channel_files([f.paths[0] for f in found if f.format != "dicom"], channels)
    dicom = [CaseInput(f.name, list(f.paths), f.series) for f in found if f.format == "dicom"]
    return sorted(files + dicom, key=lambda c: c.case)


def _dataset_inputs(root: Path, channels: int) -> tuple[list[CaseInput], str]:
    from AutoSegCore.data.dataset import load_dataset

    ds = load_dataset(root, validate=False)
    test = _test_images(root, ds, channels)
    if test:
        return test, f"{root}: predicting the {len(test)} image(s) of imagesTs/"
    why = "no imagesTs/" if not (root / "imagesTs").is_dir() else "imagesTs/ holds no images"
    return ([CaseInput(c.name, list(c.images)) for c in ds.cases],
            f"{root}: {why}: predicting the {len(ds.cases)} training image(s) of imagesTr/")


def _test_images(root: Path, ds, channels: int) -> list[CaseInput]:
    """``imagesTs/`` as cases: the ``<case>_000N`` channel files of each case when the dataset stores channels
    that way (nnU-Net, checked against dataset.json), else its files as :func:`group_channel_files` groups them
    for the model (MSD: one file per case); empty when it holds no images."""
    from AutoSegCore.data.volumes import is_image_file, strip_ending

    folder = root / "imagesTs"
    if not folder.is_dir():
        return []
    files = sorted(f for f in folder.iterdir() if not f.name.startswith(".") and f.is_file() and is_image_file(f))
    first = ds.cases[0] if ds.cases else None
    split = ds.source == "nnunet" or (first is not None and strip_ending(first.images[0].name) != first.name)
    if not split:
        return group_channel_files(files, channels)
    by_case: dict[str, dict[int, Path]] = {}
    for f in files:
        m = CHANNEL_FILE.match(strip_ending(f.name))
        if not m:
            raise DatasetError(f"{f}: not named <case>_0000.nii.gz like the dataset's channel files",
                               "name test images <case>_000N.nii.gz (one file per channel), as in imagesTr/")
        by_case.setdefault(m.group(1), {})[int(m.group(2))] = f
    items = []
    for case, channels in sorted(by_case.items()):
        for c in range(ds.num_channels):
            if c not in channels:
                ending = next(iter(channels.values())).name[len(case) + 5:]
                raise DatasetError(f"{folder / f'{case}_{c:04d}{ending}'}: channel file missing (dataset.json names "
                                   f"{ds.num_channels} channel(s): {', '.join(ds.channel_names)})",
                                   "add the file, or remove the case's other channel files from imagesTs/")
        extra = sorted(set(channels) - set(range(ds.num_channels)))
        if extra:
            raise DatasetError(f"{channels[extra[0]]}: channel {extra[0]} but dataset.json names "
                               f"{ds.num_channels} channel(s)", "remove the file or fix dataset.json")
        items.append(CaseInput(case, [channels[c] for c in range(ds.num_channels)]))
    return items


# ------------------------------------------------------------------------------------------------ checks

def _where(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} channel file(s))"


def check_header(predictor, item: CaseInput) -> None:
    """The cheap checks (headers only): readable, 3D (or 4D with channels last), the model's number of
    channels, channel files on one grid."""
    from AutoSegCore.data import volumes

    paths = item.paths
    shapes = [tuple(volumes.read_header(p, item.series).shape) for p in paths]
    channels = 0
    for p, shape in zip(paths, shapes):
        if len(shape) == 3 or (len(shape) == 4 and (len(paths) == 1 or shape[3] == 1)):
            channels += shape[3] if len(shape) == 4 else 1
        else:
            raise DatasetError(f"{p}: image has {len(shape)} dimensions {shape}",
                               "use 3D volumes (one file per channel) or one 4D file (x, y, z, channel)")
    for p, shape in zip(paths[1:], shapes[1:]):
        if shape[:3] != shapes[0][:3]:
            raise DatasetError(f"{p}: channel shape {shape[:3]} differs from {paths[0].name} {shapes[0][:3]}",
                               "resample all channels of a case onto one grid")
    if channels != predictor.in_channels and item.channel_error:
        raise DatasetError(*item.channel_error)
    if channels != predictor.in_channels:
        raise DatasetError(f"{_where(paths)}: image has {channels} channel(s), the model expects "
                           f"{predictor.in_channels}",
                           "give one 4D file (x, y, z, channel) or the channel files of one case, in the order "
                           "used for training")


def read_checked(predictor, item: CaseInput) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of one input, checked (intact, finite): ``(image (C, X, Y, Z), affine)``."""
    from AutoSegCore.data import volumes

    from AutoSegCore.data.validation import check_finite

    image, affine = volumes.read_image(item.paths, item.series)
    if image.shape[0] != predictor.in_channels:
        raise DatasetError(f"{_where(item.paths)}: image has {image.shape[0]} channel(s), the model expects "
                           f"{predictor.in_channels}", "give one 4D file (x, y, z, channel) or the channel files "
                                                       "of one case, in the order used for training")
    per_file = [image] if len(item.paths) == 1 else [image[c:c + 1] for c in range(len(item.paths))]
    for p, voxels in zip(item.paths, per_file):
        check_finite(p, voxels, before="predicting")
    return image, affine


def _check_out_dir(out: Path) -> None:
    for d in (out, *out.parents):
        if d.exists():
            if not d.is_dir():
                raise DatasetError(f"{d}: exists and is a file, not a folder",
                                   "choose a folder for --out (it is created if missing)")
            return


def _check_out_apart(out: Path, inputs, cases: list[CaseInput]) -> None:
    """``--out`` must not be a folder of scans given as input (its label maps would overwrite same-named
    ``.nii.gz`` scans, and a re-run would read them as scans)."""
    given = [inputs] if isinstance(inputs, (str, Path)) else inputs
    folders = {Path(p).resolve() for p in given if not isinstance(p, (list, tuple)) and Path(p).is_dir()}
    folders |= {p.parent.resolve() for c in cases for p in c.paths}
    if out.resolve() in folders:
        raise DatasetError(f"{out}: is the folder of the scans to predict",
                           "choose another --out folder (a prediction <case>.nii.gz would replace a scan of the "
                           "same name, and a re-run would read the predictions as scans)")


def _is_done(targets: dict[str, Path]) -> bool:
    return all(t.is_file() and t.stat().st_size > 0 for t in targets.values())


def _remove_leftovers(targets: dict[str, Path]) -> None:
    """Hidden temp files of a killed earlier run (``.<name>.<pid>-XXXX<ending>``, see utils.io.temp_name); a live
    process's are spared, so two runs into one folder (the Python API takes no folder lock) never delete each
    other's."""
    import psutil

    from AutoSegCore.utils.io import temp_owner

    for t in targets.values():
        if t.parent.is_dir():
            for stale in t.parent.glob(f".{_glob_escape(t.name)}.*"):
                pid = temp_owner(t, stale.name)
                if stale.is_file() and (pid is None or pid == os.getpid() or not psutil.pid_exists(pid)):
                    stale.unlink(missing_ok=True)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


# ------------------------------------------------------------------------------------------------ predicting

def predict_files(model, inputs, out_dir: str | Path, *, output_format: str = DEFAULT_FORMAT,
                  overwrite: bool = False, series: str | None = None, device: str = "auto",
                  tta: bool | None = None, events: EventWriter = NULL_EVENTS,
                  progress: Callable[[int, int, str], None] | None = None) -> list[dict]:
    """Predict image files and folders into ``out_dir``: ``<case>.seg.nrrd`` plus a label map per case
    (``output_format``: ``nifti`` → ``.nii.gz``, ``input`` → the input's own format, ``nrrd``, ``mha``), in the
    input's geometry.

    ``model`` is a model folder (or a :class:`~AutoSegCore.inference.predictor.Predictor`); ``inputs`` one path
    or a list of image files, folders of images, dataset folders, or per-channel file lists (see
    :func:`find_inputs`; ``series`` picks a DICOM series).  Every input is checked before the first
    prediction (a ``DatasetError`` naming the file, nothing written); each case is then written as soon as it is
    done (atomically), and cases whose outputs all exist are skipped unless ``overwrite``.  Returns one dict per
    case: ``case``, ``status`` (``predicted`` | ``skipped``) and the paths it has (``label``, ``seg_nrrd``, plus
    ``nifti`` when the label map is NIfTI).
    """
    from AutoSegCore.inference.predictor import Predictor

    predictor = model if isinstance(model, Predictor) else Predictor(model, device=device, tta=tta)
    out = Path(out_dir)
    cases, notes = find_inputs(inputs, channels=predictor.in_channels, series=series)
    for note in notes:
        events.emit("log", message=note)
    if not cases:
        raise DatasetError("no input images given", "pass image files, a folder of images or a dataset folder")
    _check_out_dir(out)
    _check_out_apart(out, inputs, cases)
    total = len(cases)

    # 1. headers of every input, unique names, outputs that can be written — cheap, before anything else
    plans: list[tuple[CaseInput, dict[str, Path]]] = []
    first_of: dict[str, Path] = {}
    for i, item in enumerate(cases):
        check_header(predictor, item)
        if item.case in first_of:
            raise DatasetError(f"{item.paths[0]}: same case name '{item.case}' as {first_of[item.case]}",
                               f"predict them into different --out folders, or rename one (each case writes "
                               f"<case>{SEG_ENDING} and a label map)")
        first_of[item.case] = item.paths[0]
        targets = output_paths(out, item.case, label_ending(output_format, item.paths[0]))
        for target in targets.values():
            if target.is_dir():
                raise DatasetError(f"{target}: is a folder, a prediction would replace it",
                                   "move it away or choose another --out folder")
        plans.append((item, targets))
    todo = [(item, t) for item, t in plans if overwrite or not _is_done(t)]
    skipped = total - len(todo)
    if skipped:
        events.emit("log", message=f"skipping {skipped} of {total} case(s) already predicted in {out} "
                                   "(--overwrite redoes them)")

    # 2. voxels of the cases to predict (intact, finite), kept in memory up to a budget
    kept: dict[str, tuple] = {}
    budget = KEEP_CHECKED_BYTES
    for i, (item, _) in enumerate(todo):
        image, affine = read_checked(predictor, item)
        if image.nbytes <= budget:
            budget -= image.nbytes
            kept[item.case] = (image, affine)
        events.emit("progress", fraction=0.0, stage="checking", done=i + 1, total=len(todo),
                    message=f"checked {i + 1}/{len(todo)} inputs")

    # 3. predict and write each case as soon as it is done
    results = {item.case: _result(item.case, t, "skipped") for item, t in plans}
    finished = 0
    try:
        for item, targets in todo:
            image, affine = kept.pop(item.case, None) or read_checked(predictor, item)
            label = predictor.predict_array(image, affine, item.case)
            del image
            _remove_leftovers(targets)
            write_case(label, affine, predictor.labels, item, targets)
            finished += 1
            results[item.case] = _result(item.case, targets, "predicted")
            for kind, path in targets.items():
                events.emit("artifact", kind=f"prediction_{'nifti' if kind == 'label' and _is_nifti(path) else kind}",
                            path=str(path), case=item.case)
            events.emit("progress", fraction=finished / len(todo), stage="predicting", done=finished,
                        total=len(todo), case=item.case, message=f"predicted {item.case}")
            if progress:
                progress(finished, len(todo), item.case)
    except BaseException as exc:
        left = len(todo) - finished
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
        events.emit("log", message=f"{what}: {finished} case(s) finished and kept in {out}, {skipped} skipped; "
                                   f"re-run the same command to predict the remaining {left}")
        raise
    summary = f"predicted {finished} case(s)" + (f", skipped {skipped} already predicted" if skipped else "")
    events.emit("log", message=f"{summary} → {out}")
    return [results[item.case] for item, _ in plans]


def _is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii.gz", ".nii"))


def _result(case: str, targets: dict[str, Path], status: str) -> dict:
    res = {"case": case, "status": status, **{k: str(v) for k, v in targets.items()}}
    if _is_nifti(targets["label"]):
        res["nifti"] = str(targets["label"])
    return res


def write_case(label: np.ndarray, affine: np.ndarray, labels: dict, item: CaseInput,
               targets: dict[str, Path]) -> None:
    """Write one case's label map, then its ``.seg.nrrd`` (each through a temp file renamed into place)."""
    from AutoSegCore.data.writers import save_prediction, write_label_like

    out_dir = targets["seg_nrrd"].parent
    if targets["label"].name.endswith(".nii.gz"):
        save_prediction(label, affine, labels, out_dir, item.case, nifti=True, seg_nrrd=False)
    else:          # .nrrd/.mha/.nii: on the input's exact ITK geometry
        write_label_like(label, affine, item.paths[0] if not item.series else None, targets["label"])
    save_prediction(label, affine, labels, out_dir, item.case, nifti=False, seg_nrrd=True)
