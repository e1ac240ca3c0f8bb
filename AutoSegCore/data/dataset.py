"""Datasets: find the cases of a labelled CT/MR dataset, check them with clear errors, and read their voxels.

Three sources are understood: a folder in the Medical Segmentation Decathlon layout (``dataset.json`` with a
``training`` list, 4D multi-channel images), a folder in the nnU-Net raw layout (``dataset.json`` with
``channel_names``/``file_ending``, one ``<case>_0000.nii.gz`` file per channel) and an explicit list of
``(image_path(s), label_path)`` pairs.  Everything a user can get wrong raises ``DatasetError`` naming the file
and the fix; validation reads headers of every case first (cheap, catches most mistakes) and voxels second.
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import nibabel as nib
import numpy as np

from AutoSegCore.errors import DatasetError

NIFTI_ENDINGS = (".nii.gz", ".nii")
AFFINE_RTOL = 1e-3
# Voxel-data reads per process: lets callers (and tests) check that a cache really avoided file I/O.
IO_STATS = {"header_reads": 0, "data_reads": 0}

_MR_WORDS = ("MR", "MRI", "T1", "T2", "FLAIR", "T1W", "T2W", "T1C", "T1CE", "T2STAR", "PD", "DWI", "ADC", "SWI", "BOLD")
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError)


@dataclass
class Case:
    """One training example: its image file(s) and label file (``None`` for unlabelled images)."""
    name: str
    images: list[Path]
    label: Path | None


@dataclass
class Dataset:
    """The cases of a dataset plus what ``dataset.json`` says about them (label names, channel names)."""
    root: Path | None
    name: str
    labels: dict[int, str]
    channel_names: list[str]
    cases: list[Case]
    modality: str
    source: str = "folder"          # "msd" | "nnunet" | "pairs": which layout the cases came from
    warnings: list[str] = field(default_factory=list)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def foreground_labels(self) -> list[int]:
        return sorted(v for v in self.labels if v != 0)

    @property
    def case_names(self) -> list[str]:
        return [c.name for c in self.cases]

    def case(self, name: str) -> Case:
        for c in self.cases:
            if c.name == name:
                return c
        raise DatasetError(f"dataset '{self.name}' has no case '{name}'",
                           f"use one of: {', '.join(self.case_names[:5])}{' ...' if len(self.cases) > 5 else ''}")

    def subset(self, names: Iterable[str]) -> "Dataset":
        return replace(self, cases=[self.case(n) for n in names], warnings=list(self.warnings))


@dataclass
class CaseArrays:
    """Voxels of one case, channel first, in nibabel's voxel order (i, j, k)."""
    name: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]


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
    return Dataset(root=root, name=str(meta.get("name") or root.name), labels=labels, channel_names=channels,
                   cases=cases, modality=guess_modality(channels[0]), source=source)


def _parse_labels(raw, where) -> dict[int, str]:
    """MSD writes ``{"0": "background"}``, nnU-Net v2 ``{"background": 0}``; both become ``{0: "background"}``."""
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{where}: no 'labels' mapping",
                           'add e.g. "labels": {"0": "background", "1": "spleen"}')
    out: dict[int, str] = {}
    try:
        if all(_is_int_text(k) for k in raw):
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
    if isinstance(raw, dict) and raw and all(_is_int_text(k) for k in raw):
        keys = sorted(raw, key=int)
        if [int(k) for k in keys] != list(range(len(keys))):
            raise DatasetError(f"{where}: channel numbers {keys} must be 0, 1, 2, ... without gaps",
                               'e.g. "modality": {"0": "FLAIR", "1": "T1c"}')
        return [str(raw[k]) for k in keys]
    if isinstance(raw, list) and raw:
        return [str(v) for v in raw]
    raise DatasetError(f"{where}: no 'modality' (MSD) or 'channel_names' (nnU-Net) mapping",
                       'add e.g. "modality": {"0": "CT"}')


def _is_int_text(value) -> bool:
    return isinstance(value, str) and value.strip().lstrip("-").isdigit() or isinstance(value, int)


def _msd_cases(root: Path, entries: list, num_channels: int, dj: Path) -> list[Case]:
    cases = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise DatasetError(f"{dj}: training entry {i} has no 'image' path",
                               'each entry must look like {"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}')
        image = (root / entry["image"]).resolve()
        label_text = entry.get("label")
        if label_text is not None and not isinstance(label_text, str):
            raise DatasetError(f"{dj}: training entry {i} has a non-text 'label'", "give the label file's path as text")
        label = (root / label_text).resolve() if label_text else None
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
    first = _header(cases[0].images[0])
    if channel_names is None:
        n = first.shape[3] if len(first.shape) == 4 and len(cases[0].images) == 1 else len(cases[0].images)
        channel_names = ["image"] if n == 1 else [f"channel_{c}" for c in range(n)]
        modality = _guess_modality_from_intensity(cases[0].images[0])
    else:
        channel_names = [str(c) for c in channel_names]
        modality = guess_modality(channel_names[0])
    if labels is None:
        values: set[int] = {0}
        for c in cases:
            if c.label is not None:
                values |= set(np.unique(_read_label_values(c.label)).tolist())
        label_map = {v: ("background" if v == 0 else f"label_{v}") for v in sorted(values)}
    else:
        label_map = _parse_labels({str(k): v for k, v in labels.items()}, "labels argument")
    root = cases[0].images[0].parent
    return Dataset(root=None, name=name or root.name, labels=label_map, channel_names=list(channel_names),
                   cases=cases, modality=modality, source="pairs")


def strip_ending(filename: str) -> str:
    for ending in NIFTI_ENDINGS:
        if filename.endswith(ending):
            return filename[: -len(ending)]
    return Path(filename).stem


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
    data = _read_data(path)
    return "CT" if float(np.min(data)) <= -500 else "MR"


# ----------------------------------------------------------------------------------------------- reading

def _header(path: Path):
    """nibabel image proxy (header only) or a DatasetError that names the file."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file does not exist", "fix the path (in dataset.json or the pairs) or add the file")
    if not path.name.endswith(NIFTI_ENDINGS):
        raise DatasetError(f"{path}: not a NIfTI file", "convert it to .nii.gz (e.g. with 3D Slicer or SimpleITK)")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: file is empty (0 bytes)", "re-copy or re-export the file")
    try:
        img = nib.load(str(path))
        _ = img.shape, img.affine
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: unreadable NIfTI ({_short(exc)})",
                           "re-copy or re-export the file as .nii.gz") from None
    IO_STATS["header_reads"] += 1
    return img


def _read_data(path: Path, img=None) -> np.ndarray:
    img = img if img is not None else _header(path)
    try:
        data = np.asarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: truncated or corrupt voxel data ({_short(exc)})",
                           "re-copy or re-export the file (a download or copy was probably cut short)") from None
    IO_STATS["data_reads"] += 1
    return data


def _read_label_values(path: Path) -> np.ndarray:
    data = _read_data(path)
    return data if np.issubdtype(data.dtype, np.integer) else np.round(data).astype(np.int64)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text[:120]}"


def read_image(paths: Sequence[Path | str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one 4D file or one 3D file per channel into ``(C, X, Y, Z)`` float32 plus the 4×4 affine."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise DatasetError("no image file given", "pass at least one image path")
    channels, affine = [], None
    for p in paths:
        img = _header(p)
        data = _read_data(p, img)
        if data.ndim == 4 and len(paths) == 1:
            channels.extend(np.moveaxis(data, 3, 0))
        elif data.ndim == 3 or (data.ndim == 4 and data.shape[3] == 1):
            channels.append(data.reshape(data.shape[:3]))
        else:
            raise DatasetError(f"{p}: image has {data.ndim} dimensions {tuple(data.shape)}",
                               "use 3D volumes (one file per channel) or one 4D file (x, y, z, channel)")
        if affine is None:
            affine = np.asarray(img.affine, dtype=np.float64)
    image = np.stack([np.asarray(c, dtype=np.float32) for c in channels])
    return image, affine


def read_case(case: Case) -> CaseArrays:
    """Read a case's image(s) and label into arrays (image float32 (C,X,Y,Z); label uint8, or int16 if > 255)."""
    image, affine = read_image(case.images)
    label = None
    if case.label is not None:
        values = _read_label_values(case.label)
        values = values.reshape(values.shape[:3]) if values.ndim == 4 and values.shape[3] == 1 else values
        label = values.astype(np.uint8 if values.size == 0 or values.max() <= 255 else np.int16)
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return CaseArrays(name=case.name, image=image, label=label, affine=affine, spacing=spacing)


# ----------------------------------------------------------------------------------------------- validation

def validate_dataset(ds: Dataset, *, deep: bool = True, min_cases: int = 1, require_labels: bool = True) -> None:
    """Raise ``DatasetError`` for the first problem found (one line naming the file, plus a hint)."""
    check_dataset(ds, deep=deep, min_cases=min_cases, require_labels=require_labels)


def dataset_warnings(ds: Dataset, *, deep: bool = True) -> list[str]:
    """Problems that do not stop training (e.g. a label volume with no foreground), one line each."""
    return check_dataset(ds, deep=deep, min_cases=0, require_labels=False)


def check_dataset(ds: Dataset, *, deep: bool = True, min_cases: int = 1, require_labels: bool = True) -> list[str]:
    """Validate ``ds`` (headers of all cases first, then voxels when ``deep``); return the warnings."""
    where = ds.root / "dataset.json" if ds.root is not None else f"dataset '{ds.name}'"
    if len(ds.cases) < min_cases:
        raise DatasetError(f"{where}: {len(ds.cases)} case(s), at least {min_cases} needed",
                           "add labelled cases (training needs 2: one to train on, one to validate); "
                           "`autoseg validate --min-cases 1` checks a smaller set")
    seen: set[str] = set()
    for c in ds.cases:
        if c.name in seen:
            raise DatasetError(f"{where}: case name '{c.name}' appears twice", "give every case a unique file name")
        seen.add(c.name)
    headers = [_check_case_header(ds, c, where, require_labels) for c in ds.cases]
    warnings: list[str] = []
    if deep:
        for c, (img_hdrs, lbl_hdr) in zip(ds.cases, headers):
            warnings.extend(_check_case_data(ds, c, img_hdrs, lbl_hdr, where))
    return warnings


def _spatial(shape: tuple) -> tuple:
    return tuple(shape[:3])


def _check_3d(path: Path, shape: tuple, what: str) -> None:
    if len(shape) < 3 or any(s == 1 for s in shape[:3]):
        raise DatasetError(f"{path}: {what} is 2D (shape {tuple(shape)})",
                           "AutoSegSearch segments 3D volumes: give a 3D file with at least 2 voxels along x, y and z")


def _affines_match(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(1.0, float(np.abs(a).max()))
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) <= AFFINE_RTOL * scale


def _check_case_header(ds: Dataset, case: Case, where, require_labels: bool):
    n = ds.num_channels
    if not case.images:
        raise DatasetError(f"{where}: case '{case.name}' has no image file", "list the image file(s) of every case")
    for p in case.images:
        if not Path(p).exists():
            m = re.match(r"^(.+)_(\d{4})(\.nii(\.gz)?)$", Path(p).name)
            if m and len(case.images) > 1:
                raise DatasetError(f"{p}: channel file missing (dataset.json names {n} channels: {', '.join(ds.channel_names)})",
                                   f"add {Path(p).name} or remove the channel from 'channel_names'/'modality'")
            raise DatasetError(f"{p}: listed in {where} but the file does not exist",
                               "fix the path in dataset.json or add the file")
    img_hdrs = [_header(p) for p in case.images]
    first = img_hdrs[0]
    shape = tuple(first.shape)
    if len(case.images) == 1:
        if len(shape) == 4 and shape[3] != n and not (shape[3] == 1 and n == 1):
            raise DatasetError(f"{case.images[0]}: image has {shape[3]} channels but dataset.json names {n} ({', '.join(ds.channel_names)})",
                               "fix 'modality'/'channel_names' in dataset.json or stack the right channels")
        if len(shape) == 3 and n != 1:
            _check_3d(case.images[0], shape, "image")
            raise DatasetError(f"{case.images[0]}: image has 1 channel but dataset.json names {n} ({', '.join(ds.channel_names)})",
                               "give a 4D image (x, y, z, channel) or one <case>_000N file per channel")
        if len(shape) > 4 or len(shape) < 3:
            if len(shape) < 3:
                _check_3d(case.images[0], shape, "image")
            raise DatasetError(f"{case.images[0]}: image has {len(shape)} dimensions {shape}",
                               "use 3D (x, y, z) or 4D (x, y, z, channel) images")
        _check_3d(case.images[0], shape, "image")
    else:
        if len(case.images) != n:
            raise DatasetError(f"{case.images[0]}: case '{case.name}' has {len(case.images)} channel files but dataset.json names {n}",
                               "give one <case>_000N file per channel named in dataset.json")
        for p, h in zip(case.images, img_hdrs):
            s = tuple(h.shape)
            if not (len(s) == 3 or (len(s) == 4 and s[3] == 1)):
                _check_3d(p, s, "channel")
                raise DatasetError(f"{p}: channel file has shape {s}, expected a 3D volume", "store one 3D volume per channel file")
            _check_3d(p, s, "channel")
            if _spatial(s) != _spatial(shape):
                raise DatasetError(f"{p}: channel shape {_spatial(s)} differs from {case.images[0].name} {_spatial(shape)}",
                                   "resample all channels of a case onto one grid")
            if not _affines_match(h.affine, first.affine):
                raise DatasetError(f"{p}: channel affine differs from {case.images[0].name}",
                                   "register/resample all channels of a case onto one grid")
    if case.label is None:
        if require_labels:
            raise DatasetError(f"{case.images[0]}: image without label (case '{case.name}')",
                               "add its label to labelsTr/ (and dataset.json), or remove the image")
        return img_hdrs, None
    if not Path(case.label).exists():
        raise DatasetError(f"{case.label}: label file listed in {where} does not exist",
                           "fix the 'label' path in dataset.json or add the label file")
    lbl = _header(case.label)
    ls = tuple(lbl.shape)
    if len(ls) == 4 and ls[3] != 1 or len(ls) > 4:
        raise DatasetError(f"{case.label}: label is {len(ls)}D (shape {ls})",
                           "store one 3D volume of integer label values (0 = background), not one channel per label")
    if len(ls) < 3:
        _check_3d(case.label, ls, "label")
    if _spatial(ls) != _spatial(shape):
        raise DatasetError(f"{case.label}: label shape {_spatial(ls)} differs from image shape {_spatial(shape)}",
                           "resample the label onto its image's grid (e.g. export the segmentation with the image as reference)")
    if not _affines_match(lbl.affine, first.affine):
        raise DatasetError(f"{case.label}: label affine differs from its image's (tolerance {AFFINE_RTOL:g} relative)",
                           "save the label with the image's geometry (same origin, spacing and direction)")
    return img_hdrs, lbl


def _check_case_data(ds: Dataset, case: Case, img_hdrs, lbl_hdr, where) -> list[str]:
    for p, h in zip(case.images, img_hdrs):
        data = _read_data(p, h)
        if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise DatasetError(f"{p}: image has {bad} NaN/Inf voxel(s)",
                               "replace them (e.g. with the background intensity) before training")
    if lbl_hdr is None:
        return []
    data = _read_data(case.label, lbl_hdr)
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise DatasetError(f"{case.label}: label values are not integers",
                               "save labels as integer values (0 = background, 1, 2, ...), not probabilities")
        data = data.astype(np.int64)
    if data.dtype == np.uint8:
        values = np.flatnonzero(np.bincount(data.ravel(), minlength=1))
    else:
        values = np.unique(data)
    unknown = sorted(set(int(v) for v in values) - set(ds.labels))
    if unknown:
        raise DatasetError(f"{case.label}: label value(s) {unknown[:10]} not in {where} labels {sorted(ds.labels)[:10]}",
                           "add them to 'labels' in dataset.json or fix the label file")
    if not any(int(v) != 0 for v in values):
        return [f"{case.label}: label has no foreground (all background)"]
    return []
