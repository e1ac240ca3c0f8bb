"""Checking a dataset before any training: every case's headers first (cheap, catches most mistakes), then voxels.

Each problem raises a DatasetError naming the file and the fix; problems that do not stop training come back
as warnings, one line each.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from AutoSegCore.data.volumes import read_header, read_label_values, read_voxels, strip_ending
from AutoSegCore.errors import DatasetError

if TYPE_CHECKING:
    from AutoSegCore.data.cases import Case, Dataset

AFFINE_RTOL = 1e-3


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
    _check_files_unique(ds)
    headers = [_check_case_header(ds, c, where, require_labels) for c in ds.cases]
    _check_spacing_scale(ds, headers)
    warnings: list[str] = []
    if deep:
        present: list[set[int]] = []
        for c, (img_hdrs, lbl_hdr) in zip(ds.cases, headers):
            case_warnings, values = _check_case_data(ds, c, img_hdrs, lbl_hdr, where)
            warnings.extend(case_warnings)
            if values is not None:
                present.append(values)
        warnings.extend(_check_label_content(ds, present, where))
    return warnings


def _check_files_unique(ds: Dataset) -> None:
    """An image file given as a label (its own or another case's) teaches intensities as classes; integer scans
    (uint8 MR) pass every label-value check, so it is refused by path.  (The same scan listed for two cases is
    already refused: case names come from the image files.)"""
    images = {Path(p).resolve(): c.name for c in ds.cases for p in c.images}
    for c in ds.cases:
        if c.label is not None and Path(c.label).resolve() in images:
            raise DatasetError(f"{c.label}: the same file is an image and a label (of case "
                               f"'{images[Path(c.label).resolve()]}')",
                               "point the label at the segmentation file, not at the scan")


# a case whose voxel spacing is this many times the dataset's median (or 1/this) on an axis was stored in other
# units (m or µm for mm): resampling it to the median would blow it up or shrink it to a few voxels
SPACING_SCALE_LIMIT = 20.0


def _check_spacing_scale(ds: Dataset, headers) -> None:
    spacings = np.array([img_hdrs[0].spacing for img_hdrs, _ in headers], dtype=np.float64)
    if len(spacings) < 2:
        return
    median = np.median(spacings, axis=0)
    ratio = np.maximum(spacings / median, median / spacings)
    worst = int(np.argmax(ratio.max(axis=1)))
    if ratio[worst].max() > SPACING_SCALE_LIMIT:
        shown = tuple(round(float(v), 4) for v in spacings[worst])
        raise DatasetError(f"{ds.cases[worst].images[0]}: voxel spacing {shown} mm is over {SPACING_SCALE_LIMIT:g}× "
                           f"the dataset's median {tuple(round(float(v), 4) for v in median)} mm",
                           "fix the spacing in its header (stored in other units, e.g. m or µm instead of mm?)")


def _check_label_content(ds: Dataset, present: list[set[int]], where) -> list[str]:
    """Across all labelled cases: something to learn (foreground and background both seen); classes never seen."""
    if not present:
        return []
    seen = set().union(*present)
    if not seen - {0}:
        raise DatasetError(f"{where}: every label map is all background (0): {len(present)} labelled case(s), "
                           "no foreground voxel", "the labels were probably exported empty: re-export them "
                           "(or check that labelsTr/ holds the segmentations, not blank volumes)")
    if not any(0 in v for v in present):
        raise DatasetError(f"{where}: no label map has a background (0) voxel: every voxel of every case is "
                           "foreground", "store background as 0 (the labels are probably shifted by one or "
                           "inverted), or crop less tightly")
    absent = [v for v in ds.foreground_labels if v not in seen]
    if absent:
        names = ", ".join(f"{v} ({ds.labels[v]})" for v in absent[:10])
        names += f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        return [f"{where}: label(s) {names} appear in no case: the model cannot learn them and will never "
                "predict them"]
    return []


def _spatial(shape: tuple) -> tuple:
    return tuple(shape[:3])


def _check_3d(path: Path, shape: tuple, what: str) -> None:
    if len(shape) < 3 or any(s == 1 for s in shape[:3]):
        raise DatasetError(f"{path}: {what} is 2D (shape {tuple(shape)})",
                           "AutoSegSearch segments 3D volumes: give a 3D file with at least 2 voxels along x, y and z")


def _affines_match(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(1.0, float(np.abs(a).max()))
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) <= AFFINE_RTOL * scale


def _check_on_grid(path, what: str, shape: tuple, affine, ref: str, ref_shape: tuple, ref_affine,
                   shape_hint: str, affine_hint: str) -> None:
    """``path`` (a channel or a label) must lie on its reference file's voxel grid: same shape, same affine."""
    if _spatial(shape) != _spatial(ref_shape):
        raise DatasetError(f"{path}: {what} shape {_spatial(shape)} differs from {ref} {_spatial(ref_shape)}", shape_hint)
    if not _affines_match(affine, ref_affine):
        raise DatasetError(f"{path}: {what} affine differs from {ref} (tolerance {AFFINE_RTOL:g} relative)", affine_hint)


def _check_case_header(ds: Dataset, case: Case, where, require_labels: bool):
    n = ds.num_channels
    if not case.images:
        raise DatasetError(f"{where}: case '{case.name}' has no image file", "list the image file(s) of every case")
    for p in case.images:
        if not Path(p).exists():
            m = re.match(r"^(.+)_(\d{4})$", strip_ending(Path(p).name))
            if m and len(case.images) > 1:
                raise DatasetError(f"{p}: channel file missing (dataset.json names {n} channels: {', '.join(ds.channel_names)})",
                                   f"add {Path(p).name} or remove the channel from 'channel_names'/'modality'")
            raise DatasetError(f"{p}: listed in {where} but the file does not exist",
                               "fix the path in dataset.json or add the file")
    img_hdrs = [read_header(p, role="image") for p in case.images]
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
            _check_on_grid(p, "channel", s, h.affine, case.images[0].name, shape, first.affine,
                           "resample all channels of a case onto one grid",
                           "register/resample all channels of a case onto one grid")
    if case.label is None:
        if require_labels:
            raise DatasetError(f"{case.images[0]}: image without label (case '{case.name}')",
                               "add its label to labelsTr/ (and dataset.json), or remove the image")
        return img_hdrs, None
    if not Path(case.label).exists():
        raise DatasetError(f"{case.label}: label file listed in {where} does not exist",
                           "fix the 'label' path in dataset.json or add the label file")
    lbl = read_header(case.label, role="label")
    ls = tuple(lbl.shape)
    if len(ls) == 4 and ls[3] != 1 or len(ls) > 4:
        raise DatasetError(f"{case.label}: label is {len(ls)}D (shape {ls})",
                           "store one 3D volume of integer label values (0 = background), not one channel per label")
    if len(ls) < 3:
        _check_3d(case.label, ls, "label")
    if lbl.segmentation:
        _check_on_grid(case.label, "segmentation", ls, lbl.affine, "its image", shape, first.affine,
                       "in Slicer, export the segmentation with this image as reference geometry",
                       "in Slicer, export the segmentation with this image as reference geometry")
    else:
        _check_on_grid(case.label, "label", ls, lbl.affine, "its image", shape, first.affine,
                       "resample the label onto its image's grid (e.g. export the segmentation with the image as reference)",
                       "save the label with the image's geometry (same origin, spacing and direction)")
    return img_hdrs, lbl


def check_finite(path, data: np.ndarray, before: str = "training") -> None:
    """A ``DatasetError`` naming ``path`` if the image holds NaN/Inf voxels (shared by validate and predict)."""
    if np.issubdtype(data.dtype, np.floating):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise DatasetError(f"{path}: image has {bad} NaN/Inf voxel(s)",
                               f"replace them (e.g. with the background intensity) before {before}")


def _check_case_data(ds: Dataset, case: Case, img_hdrs, lbl_hdr, where) -> tuple[list[str], set[int] | None]:
    """Voxel checks of one case; returns its warnings and the label values it holds (None without a label)."""
    for p, h in zip(case.images, img_hdrs):
        data = read_voxels(p, h)
        check_finite(p, data)
        check_not_constant(p, data)
    if lbl_hdr is None:
        return [], None
    if lbl_hdr.segmentation:
        data = read_label_values(case.label, lbl_hdr, segment_values=case.segment_values)
    else:
        data = read_voxels(case.label, lbl_hdr)
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise DatasetError(f"{case.label}: label values are not integers",
                               "save labels as integer values (0 = background, 1, 2, ...), not probabilities")
        data = data.astype(np.int64)
    if data.dtype == np.uint8:
        values = _uint8_values(data)
    else:
        values = np.unique(data)
    unknown = sorted(set(int(v) for v in values) - set(ds.labels))
    if unknown:
        raise DatasetError(f"{case.label}: label value(s) {unknown[:10]} not in {where} labels {sorted(ds.labels)[:10]}",
                           "add them to 'labels' in dataset.json or fix the label file")
    values = {int(v) for v in values}
    if not values - {0}:
        return [f"{case.label}: label has no foreground (all background)"], values
    return [], values


def _uint8_values(data: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """The values present in a uint8 label map, counted in chunks: ``np.bincount`` of the whole map would make
    an int64 copy, 8× the map (2 GB for a 640³ one)."""
    flat = data.ravel(order="K")                   # a view for nibabel's Fortran-ordered arrays
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, flat.size, chunk):
        counts += np.bincount(flat[start:start + chunk], minlength=256)
    return np.flatnonzero(counts)


def check_not_constant(path, data: np.ndarray) -> None:
    """A ``DatasetError`` if an image (or one of its channels) has one value everywhere: nothing to learn from."""
    channels = [data] if data.ndim <= 3 else [data[..., c] for c in range(data.shape[-1])]
    for c, ch in enumerate(channels):
        if ch.size and float(np.min(ch)) == float(np.max(ch)):
            which = "image" if len(channels) == 1 else f"channel {c} of the image"
            raise DatasetError(f"{path}: {which} is constant (every voxel is {float(np.min(ch)):g})",
                               "re-export the image (a blank or failed export?) or remove the case")
