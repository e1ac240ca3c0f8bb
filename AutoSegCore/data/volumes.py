"""Reading volumes — the one door every reader of the engine goes through: headers first (cheap), voxels second,
every failure a DatasetError naming the file and the fix.

Formats: NIfTI (``.nii.gz``, ``.nii``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``), a DICOM series
(a folder), and Slicer ``.seg.nrrd`` segmentations as labels.  The back-ends (nibabel, SimpleITK, slicerio) live in
``data.readers``; arrays always come back in nibabel's voxel order with a RAS affine, whatever the format, so the
rest of the engine never knows which format a case came in.

Kept apart from dataset discovery (``dataset``) and checking (``validation``): the trainer, the cache and the
predictor only ever need this part.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from AutoSegCore.data.dicom import dicom_header, dicom_series
from AutoSegCore.data.limits import check_volume
from AutoSegCore.data.readers import (IMAGE_ENDINGS, METAIMAGE_ENDINGS, NIFTI_ENDINGS, NRRD_ENDINGS,
                                      SEGMENTATION_ENDING, SUPPORTED_TEXT, VolumeHeader, affine_to_itk, file_ending,
                                      itk_affine, itk_file_header, itk_voxels, lps_ras, nifti_header,
                                      segmentation_labels, short_error, strip_ending)
from AutoSegCore.errors import DatasetError

if TYPE_CHECKING:
    from AutoSegCore.data.cases import Case

__all__ = ["CaseArrays", "FoundImage", "IMAGE_ENDINGS", "IO_STATS", "METAIMAGE_ENDINGS", "NIFTI_ENDINGS",
           "NRRD_ENDINGS", "SEGMENTATION_ENDING", "VolumeHeader", "affine_to_itk", "check_geometry", "file_ending", "find_images",
           "image_format", "is_image_file", "is_segmentation_file", "itk_affine", "lps_ras", "read_case",
           "read_header", "read_image", "read_label_values", "read_voxels", "short_error", "strip_ending"]

# Header and voxel-data reads per process: lets callers (and tests) check that a cache really avoided file I/O.
IO_STATS = {"header_reads": 0, "data_reads": 0}


@dataclass
class CaseArrays:
    """Voxels of one case, channel first, in nibabel's voxel order (i, j, k)."""
    name: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]


@dataclass
class FoundImage:
    """One input found in a plain folder: its case name, its file(s) (channel files, or a DICOM folder) and format."""
    name: str
    paths: list[Path]
    format: str
    series: str | None = None


# ------------------------------------------------------------------------------------------ file kinds

def is_segmentation_file(path) -> bool:
    """A Slicer segmentation (``.seg.nrrd``): read as a label map, never predicted as an image."""
    return Path(path).name.lower().endswith(SEGMENTATION_ENDING)


def is_image_file(path) -> bool:
    """A file with a supported image ending (``.seg.nrrd`` segmentations excluded)."""
    name = Path(path).name
    return not is_segmentation_file(name) and file_ending(name) is not None


def image_format(path) -> str:
    """``"nifti"``, ``"nrrd"``, ``"metaimage"`` or ``"dicom"`` (a folder): the format outputs can be written in."""
    p = Path(path)
    if p.is_dir():
        return "dicom"
    ending = file_ending(p.name)
    if ending is None:
        raise DatasetError(f"{p}: not a supported image file", f"use one of: {SUPPORTED_TEXT}")
    low = ending.lower()
    return ("nifti" if low in NIFTI_ENDINGS else "metaimage" if low in METAIMAGE_ENDINGS else "nrrd")


# ---------------------------------------------------------------------------------------------- headers

def check_geometry(header: VolumeHeader) -> None:
    """Refuse geometry no voxel spacing can be computed from: NaN/Inf, zero spacing, collinear axes."""
    if len(header.shape) < 3:
        return
    a = np.asarray(header.affine, dtype=np.float64)
    path = header.path
    if not np.isfinite(a).all():
        raise DatasetError(f"{path}: geometry has NaN/Inf values (spacing, origin or direction)",
                           "re-export the volume with valid geometry (e.g. from 3D Slicer) or fix its header")
    spacing = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    if (spacing <= 1e-6).any():
        raise DatasetError(f"{path}: voxel spacing {tuple(round(float(s), 6) for s in spacing)} has a zero axis",
                           "fix the spacing in the header (pixdim / space directions) to the real voxel size in mm")
    unit = a[:3, :3] / spacing[None, :]
    if abs(float(np.linalg.det(unit))) < 1e-3:
        raise DatasetError(f"{path}: direction matrix is singular (two voxel axes point the same way)",
                           "fix the orientation in the header (sform/qform, space directions) or re-export the volume")


def read_header(path, series: str | None = None, *, role: str | None = None) -> VolumeHeader:
    """The header of an image file or DICOM series folder (no voxels read); a DatasetError naming it otherwise.

    Every header passes ``limits.check_volume`` here: a volume too big for memory is refused before a voxel is
    read; ``role="image"`` adds the decompression-bomb rule (label maps compress like zeros, so not them)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file does not exist", "fix the path (in dataset.json or the pairs) or add the file")
    if path.is_dir():
        header = dicom_header(path, series)
    else:
        ending = file_ending(path.name)
        if ending is None:
            raise DatasetError(f"{path}: not a supported image file (not NIfTI, NRRD, MetaImage or DICOM)",
                               f"convert it to .nii.gz or .nrrd (e.g. with 3D Slicer or SimpleITK); supported: "
                               f"{SUPPORTED_TEXT}")
        if path.stat().st_size == 0:
            raise DatasetError(f"{path}: file is empty (0 bytes)", "re-copy or re-export the file")
        fmt = image_format(path)
        header = nifti_header(path) if fmt == "nifti" else itk_file_header(path, fmt)
    check_geometry(header)
    check_volume(path, header.shape, header.dtype, header.raw_bytes, header.stored_bytes, role)
    IO_STATS["header_reads"] += 1
    return header


def read_voxels(path, header: VolumeHeader | None = None) -> np.ndarray:
    """Voxels in nibabel order ``(X, Y, Z[, C])`` with the file's own dtype (a ``.seg.nrrd``: its label values)."""
    header = header if header is not None else read_header(path)
    if header.segmentation:
        data = segmentation_labels(header, None)
    elif header.format == "nifti":
        try:
            data = np.asarray(header._nib.dataobj)
        except (OSError, EOFError, ValueError) + _zlib_errors() as exc:
            raise DatasetError(f"{path}: truncated or corrupt voxel data ({short_error(exc)})",
                               "re-copy or re-export the file (a download or copy was probably cut short)") from None
    else:
        data = itk_voxels(header)
    IO_STATS["data_reads"] += 1
    return data


def _zlib_errors() -> tuple:
    import zlib
    return (zlib.error,)


def read_label_values(path, header: VolumeHeader | None = None,
                      segment_values: dict[str, int] | None = None) -> np.ndarray:
    """A label map as integers; a ``.seg.nrrd``'s segments get the values ``segment_values`` gives their names."""
    header = header if header is not None else read_header(path, role="label")
    if header.segmentation:
        data = segmentation_labels(header, segment_values)
        IO_STATS["data_reads"] += 1
        return data
    data = read_voxels(path, header)
    return data if np.issubdtype(data.dtype, np.integer) else np.round(data).astype(np.int64)


def read_image(paths: Sequence[Path | str] | Path | str, series: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one 4D file or one 3D file per channel (or a DICOM series folder) into ``(C, X, Y, Z)`` float32 plus
    the 4×4 RAS affine."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise DatasetError("no image file given", "pass at least one image path")
    channels, affine = [], None
    for p in paths:
        header = read_header(p, series, role="image")
        data = read_voxels(p, header)
        if data.ndim == 4 and len(paths) == 1:
            channels.extend(np.moveaxis(data, 3, 0))
        elif data.ndim == 3 or (data.ndim == 4 and data.shape[3] == 1):
            channels.append(data.reshape(data.shape[:3]))
        else:
            raise DatasetError(f"{p}: image has {data.ndim} dimensions {tuple(data.shape)}",
                               "use 3D volumes (one file per channel) or one 4D file (x, y, z, channel)")
        if affine is None:
            affine = np.asarray(header.affine, dtype=np.float64)
    image = np.empty((len(channels),) + tuple(channels[0].shape), dtype=np.float32)   # one float32 copy, no more
    for c, data in enumerate(channels):
        if data.shape != image.shape[1:]:
            raise DatasetError(f"{paths[min(c, len(paths) - 1)]}: channel shape {tuple(data.shape)} differs from "
                               f"{tuple(image.shape[1:])}", "resample all channels of a case onto one grid")
        image[c] = data
    return image, affine


def read_case(case: Case) -> CaseArrays:
    """Read a case's image(s) and label into arrays (image float32 (C,X,Y,Z); label uint8, or int16 if > 255)."""
    image, affine = read_image(case.images)
    label = None
    if case.label is not None:
        values = read_label_values(case.label, segment_values=getattr(case, "segment_values", None))
        values = values.reshape(values.shape[:3]) if values.ndim == 4 and values.shape[3] == 1 else values
        label = values.astype(np.uint8 if values.size == 0 or values.max() <= 255 else np.int16)
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return CaseArrays(name=case.name, image=image, label=label, affine=affine, spacing=spacing)


# ---------------------------------------------------------------------------------------- plain folders

_CHANNEL = re.compile(r"^(.+)_(\d{4})$")
# companions of image headers and common notes: never DICOM, not worth asking GDCM about
_NOT_DICOM = (".raw", ".zraw", ".raw.gz", ".json", ".txt", ".csv", ".md", ".yaml", ".yml", ".log")


def find_images(folder, series: str | None = None, *, group_channels: bool = True) -> list[FoundImage]:
    """The inputs of a plain folder (no dataset.json): image files of the supported endings, grouped by nnU-Net's
    ``<case>_000N`` channel suffix when every file has one, and DICOM series — the folder itself or each subfolder
    holding one series (a folder with several needs ``series``).  Sorted by case name; ``.seg.nrrd`` skipped.

    ``group_channels=False``: every image file is an input of its own, named by its full name (``_000N`` kept) —
    for a caller that groups channel files itself, knowing the model's number of channels (``prediction``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder", "pass a folder of images, an image file or a dataset folder")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file() and is_image_file(p)]
    found: list[FoundImage] = []
    stems = [strip_ending(p.name) for p in files]
    if group_channels and files and all(_CHANNEL.match(s) for s in stems):
        groups: dict[str, dict[int, Path]] = {}
        for p, s in zip(files, stems):
            m = _CHANNEL.match(s)
            groups.setdefault(m.group(1), {})[int(m.group(2))] = p
        for case, chans in sorted(groups.items()):
            if sorted(chans) != list(range(len(chans))):
                missing = min(set(range(max(chans) + 1)) - set(chans))
                raise DatasetError(f"{folder}: case '{case}' has channel files {sorted(chans)}, channel {missing} is missing",
                                   f"add {case}_{missing:04d}{file_ending(chans[max(chans)].name)} or rename the files")
            paths = [chans[c] for c in sorted(chans)]
            found.append(FoundImage(case, paths, image_format(paths[0])))
    else:
        found += [FoundImage(s, [p], image_format(p)) for p, s in zip(files, stems)]
    others = [p for p in entries if p.is_file() and file_ending(p.name) is None
              and not p.name.lower().endswith(_NOT_DICOM)]
    dicom_dirs = ([folder] if others else []) + [p for p in entries if p.is_dir()]
    for d in dicom_dirs:
        uids = dicom_series(d)
        if not uids or (series is not None and series not in uids):
            continue
        header = read_header(d, series)          # several series and none chosen: the error lists them
        found.append(FoundImage(d.name, [d], "dicom", header.series))
    if series is not None and not any(f.series == series for f in found):
        raise DatasetError(f"{folder}: no DICOM series {series} in this folder or its subfolders",
                           "check the series UID (the error for a folder of several series lists them)")
    if not found:
        raise DatasetError(f"{folder}: no images found (no {', '.join(IMAGE_ENDINGS)} files, no DICOM series)",
                           f"pass a folder holding images ({SUPPORTED_TEXT}) or a dataset folder with dataset.json")
    return sorted(found, key=lambda f: f.name)
