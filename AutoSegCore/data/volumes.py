"""Reading NIfTI voxels: headers first (cheap), data second, every failure a DatasetError naming the file.

Kept apart from dataset discovery (``dataset``) and checking (``validation``): the trainer, the cache and the
predictor only ever need this part.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import nibabel as nib
import numpy as np

from AutoSegCore.errors import DatasetError

if TYPE_CHECKING:
    from AutoSegCore.data.dataset import Case

NIFTI_ENDINGS = (".nii.gz", ".nii")
# Voxel-data reads per process: lets callers (and tests) check that a cache really avoided file I/O.
IO_STATS = {"header_reads": 0, "data_reads": 0}
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError)


@dataclass
class CaseArrays:
    """Voxels of one case, channel first, in nibabel's voxel order (i, j, k)."""
    name: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]


def strip_ending(filename: str) -> str:
    for ending in NIFTI_ENDINGS:
        if filename.endswith(ending):
            return filename[: -len(ending)]
    return Path(filename).stem


def read_header(path: Path):
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
        raise DatasetError(f"{path}: unreadable NIfTI ({short_error(exc)})",
                           "re-copy or re-export the file as .nii.gz") from None
    IO_STATS["header_reads"] += 1
    return img


def read_voxels(path: Path, img=None) -> np.ndarray:
    img = img if img is not None else read_header(path)
    try:
        data = np.asarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: truncated or corrupt voxel data ({short_error(exc)})",
                           "re-copy or re-export the file (a download or copy was probably cut short)") from None
    IO_STATS["data_reads"] += 1
    return data


def read_label_values(path: Path) -> np.ndarray:
    data = read_voxels(path)
    return data if np.issubdtype(data.dtype, np.integer) else np.round(data).astype(np.int64)


def short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text[:120]}"


def read_image(paths: Sequence[Path | str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one 4D file or one 3D file per channel into ``(C, X, Y, Z)`` float32 plus the 4×4 affine."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise DatasetError("no image file given", "pass at least one image path")
    channels, affine = [], None
    for p in paths:
        img = read_header(p)
        data = read_voxels(p, img)
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
        values = read_label_values(case.label)
        values = values.reshape(values.shape[:3]) if values.ndim == 4 and values.shape[3] == 1 else values
        label = values.astype(np.uint8 if values.size == 0 or values.max() <= 255 else np.int16)
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return CaseArrays(name=case.name, image=image, label=label, affine=affine, spacing=spacing)
