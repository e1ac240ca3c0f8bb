"""Datasets: find the cases of a labelled CT/MR dataset, check them with clear errors, and read their voxels.

Three sources are understood: a folder in the Medical Segmentation Decathlon layout (``dataset.json`` with a
``training`` list, 4D multi-channel images), a folder in the nnU-Net raw layout (``dataset.json`` with
``channel_names``/``file_ending``, one ``<case>_0000<file_ending>`` file per channel) and an explicit list of
``(image_path(s), label_path)`` pairs.  Images and labels may be in any format ``data.volumes`` reads (NIfTI,
NRRD, MetaImage); a label may be a Slicer ``.seg.nrrd`` whose segment names are the dataset's label names.  Everything a user can get wrong raises ``DatasetError`` naming the file
and the fix; validation reads headers of every case first (cheap, catches most mistakes) and voxels second.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from AutoSegCore.data.cases import Case, Dataset
from AutoSegCore.data.validation import check_dataset, dataset_warnings, validate_dataset
from AutoSegCore.data.volumes import (IMAGE_ENDINGS, IO_STATS, NIFTI_ENDINGS, CaseArrays, is_segmentation_file,
                                      read_case, read_header, read_image, read_label_values,
                                      read_voxels, strip_ending)
from AutoSegCore.errors import DatasetError
from AutoSegCore.utils.confine import confined

# the public names of the data layer, importable from here as before the reading and checking parts moved out
__all__ = ["Case", "CaseArrays", "Dataset", "IO_STATS", "NIFTI_ENDINGS", "check_dataset", "dataset_warnings",
           "guess_modality", "load_dataset", "read_case", "read_image", "strip_ending", "validate_dataset"]

_MR_WORDS = ("MR", "MRI", "T1", "T2", "FLAIR", "T1W", "T2W", "T1C", "T1CE", "T2STAR", "PD", "DWI", "ADC", "SWI", "BOLD")


# ----------------------------------------------------------------------------------------------- loading

def load_dataset(source, *, validate: bool = True, labels: dict | None = None,
                 channel_names: Sequence[str] | None = None, name: str | None = None,
                 deep: bool = True, min_cases: int = 1, require_labels: bool = True) -> Dataset:
    """Load a dataset from a folder (MSD or nnU-Net raw layout) or a list of ``(image(s), label)`` pairs.

    ``labels``/``channel_names``/``name`` are only used for pairs (a folder's ``dataset.json`` says them).
    With ``validate`` the dataset is checked (see ``validate_dataset``) and any problem raises ``DatasetError``.
    """
    if isinstance(source, Dataset):
        ds = source
    elif isinstance(source, (str, Path)):
        ds = _load_folder(Path(source))
    elif isinstance(source, (list, tuple)):
        ds = _load_pairs(source, labels=labels, channel_names=channel_names, name=name)
    else:
        raise DatasetError(f"cannot load a dataset from a {type(source).__name__}",
                           "pass a dataset folder or a list of (image_path, label_path) pairs")
    if validate:
        ds.warnings = check_dataset(ds, deep=deep, min_cases=min_cases, require_labels=require_labels)
    return ds


def _load_folder(root: Path) -> Dataset:
    if root.is_file() and root.name == "dataset.json":
        root = root.parent
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder not found",
                           "pass the folder that holds dataset.json, imagesTr/ and labelsTr/")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a dataset folder",
                           "pass the folder that holds dataset.json, imagesTr/ and labelsTr/")
    if not any(root.iterdir()):
        raise DatasetError(f"{root}: dataset folder is empty",
                           "put dataset.json, imagesTr/ and labelsTr/ in it (MSD or nnU-Net raw layout)")
    dj = root / "dataset.json"
    if not dj.is_file():
        raise DatasetError(f"{dj}: missing",
                           "add a dataset.json with 'labels', 'modality' (or 'channel_names') and a 'training' list")
    try:
        meta = json.loads(dj.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{dj}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                           "fix the JSON syntax (a JSON validator shows the spot)") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{dj}: not UTF-8 text", "save dataset.json as UTF-8 JSON") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{dj}: top level must be a JSON object", 'e.g. {"labels": {...}, "training": [...]}')
    labels = _parse_labels(meta.get("labels"), dj)
    channels = _parse_channels(meta.get("channel_names", meta.get("modality")), dj)
    if meta.get("training") == [] and not (root / "imagesTr").is_dir():
        raise DatasetError(f"{dj}: the 'training' list is empty", "list the labelled cases under 'training'")
    if meta.get("training") == [] and not any((root / "imagesTr").glob("*_0000*")):
        raise DatasetError(f"{dj}: the 'training' list is empty (0 cases)",
                           'list the labelled cases, e.g. {"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}')
    if isinstance(meta.get("training"), list) and meta["training"]:
        cases, source = _msd_cases(root, meta["training"], len(channels), dj), "msd"
    else:
        cases, source = _nnunet_cases(root, meta, len(channels), dj), "nnunet"
    cases.sort(key=lambda c: c.name)
    _name_segments(cases, labels)
    return Dataset(root=root, name=str(meta.get("name") or root.name), labels=labels, channel_names=channels,
                   cases=cases, modality=guess_modality(channels[0]), source=source)


def _parse_labels(raw, where) -> dict[int, str]:
    """MSD writes ``{"0": "background"}``, nnU-Net v2 ``{"background": 0}``; both become ``{0: "background"}``."""
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{where}: no 'labels' mapping",
                           'add e.g. "labels": {"0": "background", "1": "spleen"}')
    out: dict[int, str] = {}
    try:
        if all(is_int_text(k) for k in raw):
            out = {int(k): str(v) for k, v in raw.items()}
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in raw.values()):
            out = {int(v): str(k) for k, v in raw.items()}
        elif any(isinstance(v, list) for v in raw.values()):
            raise DatasetError(f"{where}: region-based labels (lists of values) are not supported",
                               "give each label value its own name, e.g. \"labels\": {\"0\": \"background\", \"1\": \"edema\"}")
        else:
            raise ValueError
    except ValueError:
        raise DatasetError(f"{where}: 'labels' must map integer values to names",
                           'e.g. "labels": {"0": "background", "1": "spleen"}') from None
    if any(v < 0 for v in out):
        raise DatasetError(f"{where}: negative label value in 'labels'", "use values 0 (background), 1, 2, ...")
    out.setdefault(0, "background")
    return dict(sorted(out.items()))


def _parse_channels(raw, where) -> list[str]:
    if isinstance(raw, dict) and raw and all(is_int_text(k) for k in raw):
        keys = sorted(raw, key=int)
        if [int(k) for k in keys] != list(range(len(keys))):
            raise DatasetError(f"{where}: channel numbers {keys} must be 0, 1, 2, ... without gaps",
                               'e.g. "modality": {"0": "FLAIR", "1": "T1c"}')
        return [str(raw[k]) for k in keys]
    if isinstance(raw, list) and raw:
        return [str(v) for v in raw]
    raise DatasetError(f"{where}: no 'modality' (MSD) or 'channel_names' (nnU-Net) mapping",
                       'add e.g. "modality": {"0": "CT"}')


def is_int_text(value) -> bool:
    """A label value as JSON keys hold it: an int, or text of one ("1", "-1")."""
    return isinstance(value, str) and value.strip().lstrip("-").isdigit() or isinstance(value, int)


def _msd_cases(root: Path, entries: list, num_channels: int, dj: Path) -> list[Case]:
    cases = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise DatasetError(f"{dj}: training entry {i} has no 'image' path",
                               'each entry must look like {"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}')
        hint = "give paths relative to the dataset folder, e.g. ./imagesTr/x.nii.gz"
        image = confined(root, entry["image"], f"{dj}: training entry {i}", DatasetError, hint)
        label_text = entry.get("label")
        if label_text is not None and not isinstance(label_text, str):
            raise DatasetError(f"{dj}: training entry {i} has a non-text 'label'", "give the label file's path as text")
        label = confined(root, label_text, f"{dj}: training entry {i}", DatasetError, hint) if label_text else None
        name = strip_ending(image.name)
        images = [image]
        if not image.exists():
            # nnU-Net v1 raw: dataset.json names "<case>.nii.gz", the files are "<case>_0000.nii.gz", ...
            ending = image.name[len(name):] or ".nii.gz"
            first = image.with_name(f"{name}_0000{ending}")
            if first.exists():
                images = [image.with_name(f"{name}_{c:04d}{ending}") for c in range(num_channels)]
        cases.append(Case(name=name, images=images, label=label))
    return cases


def _nnunet_cases(root: Path, meta: dict, num_channels: int, dj: Path) -> list[Case]:
    ending = str(meta.get("file_ending", ".nii.gz"))
    if ending not in IMAGE_ENDINGS:
        raise DatasetError(f"{dj}: file_ending '{ending}' is not a format AutoSegSearch reads",
                           f"use one of {', '.join(IMAGE_ENDINGS)} (convert the files, e.g. with SimpleITK)")
    images_dir = root / "imagesTr"
    if not images_dir.is_dir():
        raise DatasetError(f"{root}: no imagesTr/ folder and no 'training' list in dataset.json",
                           "put the images in imagesTr/ (nnU-Net: <case>_0000.nii.gz) or list them under 'training'")
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    names = sorted({m.group(1) for p in images_dir.iterdir() if (m := pattern.match(p.name))})
    if not names:
        raise DatasetError(f"{images_dir}: no <case>_0000{ending} files",
                           "name images <case>_0000" + ending + " (one file per channel), or add a 'training' list")
    labels_dir = root / "labelsTr"
    cases = []
    for n in names:
        label = labels_dir / f"{n}{ending}"
        if not label.exists() and (labels_dir / f"{n}.seg.nrrd").exists():
            label = labels_dir / f"{n}.seg.nrrd"           # a Slicer segmentation as the label
        cases.append(Case(name=n, images=[images_dir / f"{n}_{c:04d}{ending}" for c in range(num_channels)],
                          label=label if label.exists() else None))
    return cases


def _load_pairs(pairs, *, labels, channel_names, name) -> Dataset:
    cases = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise DatasetError(f"pairs[{i}] is not an (image, label) pair",
                               "pass a list of (image_path or [channel paths], label_path or None)")
        img, lbl = pair
        images = [Path(p) for p in img] if isinstance(img, (list, tuple)) else [Path(img)]
        if not images:
            raise DatasetError(f"pairs[{i}] has no image path", "give at least one image file")
        cname = re.sub(r"_0000$", "", strip_ending(images[0].name))
        cases.append(Case(name=cname, images=images, label=Path(lbl) if lbl is not None else None))
    if not cases:
        raise DatasetError("the list of (image, label) pairs is empty", "pass at least one pair")
    seg_names = _segment_names(cases) if labels is None else []
    first = read_header(cases[0].images[0])
    if channel_names is None:
        n = first.shape[3] if len(first.shape) == 4 and len(cases[0].images) == 1 else len(cases[0].images)
        channel_names = ["image"] if n == 1 else [f"channel_{c}" for c in range(n)]
        modality = _guess_modality_from_intensity(cases[0].images[0])
    else:
        channel_names = [str(c) for c in channel_names]
        modality = guess_modality(channel_names[0])
    if labels is None and seg_names:
        # Slicer segmentations: their segment names become the label names, numbered in first-seen order
        label_map = {0: "background", **{i + 1: n for i, n in enumerate(seg_names)}}
    elif labels is None:
        values: set[int] = {0}
        for c in cases:
            if c.label is not None:
                found = np.unique(read_label_values(c.label))
                if len(found) > MAX_INFERRED_LABELS:
                    raise DatasetError(f"{c.label}: {len(found)} distinct values, read as {len(found) - 1} classes "
                                       "(is it a scan, not a label map?)",
                                       "pass the segmentation file as the label, or the label names (labels=...)")
                values |= set(found.tolist())
        label_map = {v: ("background" if v == 0 else f"label_{v}") for v in sorted(values)}
    else:
        label_map = _parse_labels({str(k): v for k, v in labels.items()}, "labels argument")
    _name_segments(cases, label_map)
    root = cases[0].images[0].parent
    return Dataset(root=None, name=name or root.name, labels=label_map, channel_names=list(channel_names),
                   cases=cases, modality=modality, source="pairs")


# label values inferred from explicit pairs: more classes than this is a scan passed as a label (TotalSegmentator's
# largest task has 117 classes); a dataset that truly has more names them with labels=
MAX_INFERRED_LABELS = 1000


def _segment_names(cases: list[Case]) -> list[str]:
    """Segment names of the cases' ``.seg.nrrd`` labels, each once, in first-seen order (headers only)."""
    import slicerio

    names: list[str] = []
    seen: set[str] = set()
    segs = [c.label for c in cases if c.label is not None and is_segmentation_file(c.label)]
    if segs and len(segs) != sum(c.label is not None for c in cases):
        raise DatasetError(f"{segs[0]}: some labels are Slicer segmentations and some are label maps",
                           "pass the label names (labels={1: 'name', ...}) so both kinds map the same way, or use one kind")
    for path in segs:
        read_header(path)                                  # exists, readable, geometry sane: one-line errors
        try:
            segments = slicerio.read_segmentation(str(path), skip_voxels=True).get("segments", [])
        except Exception as exc:  # noqa: BLE001 — pynrrd/slicerio raise many types for a damaged header
            raise DatasetError(f"{path}: unreadable Slicer segmentation header ({exc.__class__.__name__})",
                               "re-save it from 3D Slicer as .seg.nrrd") from None
        for s in sorted(segments, key=lambda s: (int(s.get("layer", 0)), int(s.get("labelValue", 0)))):
            name = str(s.get("name", s.get("id", "")))
            if name.lower() not in seen:
                seen.add(name.lower())
                names.append(name)
    return names


def _name_segments(cases: list[Case], labels: dict[int, str]) -> None:
    """Give every ``.seg.nrrd`` label the dataset's name → value map, so segments map by name in every case."""
    values = {name: v for v, name in labels.items() if v != 0}
    for c in cases:
        if c.label is not None and is_segmentation_file(c.label):
            c.segment_values = values


def guess_modality(channel_name: str) -> str:
    """'CT' / 'MR' / the upper-cased name: decides defaults such as CT windowing."""
    words = set(re.split(r"[^A-Z0-9]+", channel_name.upper())) | {channel_name.upper()}
    if "CT" in words or channel_name.upper().startswith("CT"):
        return "CT"
    if words & set(_MR_WORDS):
        return "MR"
    return channel_name.upper() or "UNKNOWN"


def _guess_modality_from_intensity(path: Path) -> str:
    """Pairs have no dataset.json: air at about -1000 HU means CT."""
    data = read_voxels(path)
    return "CT" if float(np.min(data)) <= -500 else "MR"
