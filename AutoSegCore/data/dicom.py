"""DICOM series behind ``data.volumes``, through SimpleITK (GDCM): which series a folder holds, and one series as
a 3D volume header (slices sorted by position, evenly spaced, grey-scale, one file per slice).  Like
``data.readers``, only ``data.volumes`` imports it: callers go through its one door."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from AutoSegCore.data.readers import SUPPORTED_TEXT, VolumeHeader, _itk_text, _sitk, itk_affine
from AutoSegCore.errors import DatasetError

_SERIES_HINT = "pass --series UID (or series=UID) to choose one, or put each series in its own folder"


def dicom_series(folder: Path) -> list[str]:
    """The DICOM series UIDs GDCM finds in ``folder`` (not its subfolders); [] when it holds none."""
    sitk = _sitk()
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        return []


def has_dicom_files(folder: Path, look_at: int = 20) -> bool:
    """Whether some of the first files of ``folder`` are DICOM (Part 10 preamble + ``DICM``)."""
    for f in sorted(folder.iterdir())[:look_at]:
        try:
            with open(f, "rb") as fh:
                if fh.read(132)[128:] == b"DICM":
                    return True
        except OSError:
            continue
    return False


def _series_text(folder: Path, uids: list[str]) -> str:
    sitk = _sitk()
    parts = []
    for uid in uids:
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        desc = ""
        try:
            r = sitk.ImageFileReader()
            r.SetFileName(files[0])
            r.ReadImageInformation()
            if r.HasMetaDataKey("0008|103e"):
                desc = " " + r.GetMetaData("0008|103e").strip()
        except RuntimeError:
            pass
        parts.append(f"{uid} ({len(files)} file(s){desc and ','}{desc})")
    return "; ".join(parts)


def dicom_header(folder: Path, series: str | None = None) -> VolumeHeader:
    """One DICOM series of ``folder`` as a 3D volume header: slices sorted by position (GDCM), evenly spaced."""
    sitk = _sitk()
    uids = dicom_series(folder)
    if not uids and has_dicom_files(folder):
        raise DatasetError(f"{folder}: DICOM files but no image series (reports, RT structures or other non-image "
                           "objects)", "pass the folder of a CT or MR image series")
    if not uids:
        raise DatasetError(f"{folder}: folder holds no DICOM image series (and is not a dataset folder)",
                           f"pass a folder with the .dcm files of one series, or image files ({SUPPORTED_TEXT})")
    if series is None:
        if len(uids) > 1:
            raise DatasetError(f"{folder}: folder holds {len(uids)} DICOM series: {_series_text(folder, uids)}",
                               _SERIES_HINT)
        series = uids[0]
    elif series not in uids:
        raise DatasetError(f"{folder}: no DICOM series {series}; it holds {_series_text(folder, uids)}",
                           "pass one of these series UIDs")
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series))
    infos = []
    for f in files:
        r = sitk.ImageFileReader()
        r.SetFileName(f)
        try:
            r.ReadImageInformation()
        except RuntimeError as exc:
            raise DatasetError(f"{f}: not a readable DICOM image ({_itk_text(exc)})",
                               "remove non-image DICOM objects (reports, RT structures) from the series folder") from None
        infos.append(r)
    first = infos[0]
    if first.GetNumberOfComponents() > 1:
        raise DatasetError(f"{files[0]}: a colour (RGB) DICOM image, not a CT/MR slice",
                           "pass a grey-scale CT or MR series")
    if len(files) < 2:
        raise DatasetError(f"{folder}: DICOM series {series} has 1 slice (a 2D image)",
                           "AutoSegSearch segments 3D volumes: pass the folder of a 3D CT/MR series (all its slices)")
    _check_pixel_spacing(files[0], first)
    size = first.GetSize()
    if len(size) == 3 and size[2] > 1:
        raise DatasetError(f"{folder}: DICOM series {series} is stored as multi-frame files",
                           "export the series as one file per slice (classic DICOM), or as .nrrd / .nii.gz")
    d = np.asarray(first.GetDirection(), dtype=np.float64).reshape(3, 3)
    normal = d[:, 2]
    pos = np.array([np.dot(np.asarray(r.GetOrigin(), dtype=np.float64), normal) for r in infos])
    steps = np.diff(pos)
    if np.any(np.abs(steps) < 1e-6):
        raise DatasetError(f"{folder}: DICOM series {series} has two slices at the same position",
                           "the folder mixes two acquisitions of one series: export one of them")
    mean = float(np.mean(steps))
    if float(np.max(np.abs(steps - mean))) > max(1e-3, 0.01 * abs(mean)):
        gap = int(np.argmax(np.abs(steps - mean)))
        raise DatasetError(f"{folder}: DICOM series {series} has uneven slice spacing ({abs(steps[gap]):.3g} mm "
                           f"after slice {gap + 1} of {len(files)}, {abs(np.median(steps)):.3g} mm elsewhere): "
                           "slices are missing", "re-export the complete series from the scanner or PACS")
    if mean < 0:                          # keep ITK's order: slices along +normal
        files, infos = files[::-1], infos[::-1]
    spacing = (first.GetSpacing()[0], first.GetSpacing()[1], abs(mean))
    origin = infos[0].GetOrigin()
    direction = tuple(first.GetDirection())
    shape = (int(size[0]), int(size[1]), len(files))
    dtype = np.dtype(np.float32)
    pixel = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1, 1], first.GetPixelID())).dtype)
    return VolumeHeader(path=folder, format="dicom", shape=shape, affine=itk_affine(spacing, origin, direction),
                        dtype=dtype, series=series, files=[Path(f) for f in files],
                        itk=(tuple(spacing), tuple(origin), direction),
                        raw_bytes=shape[0] * shape[1] * shape[2] * pixel.itemsize,
                        stored_bytes=sum(Path(f).stat().st_size for f in files))


def _check_pixel_spacing(path, info) -> None:
    """GDCM reads a zero, negative or non-numeric Pixel Spacing (0028,0030) as 1 mm, silently: refuse it, like a
    zero voxel size in any other format (a missing tag stays GDCM's 1 mm)."""
    if not info.HasMetaDataKey("0028|0030"):
        return
    text = info.GetMetaData("0028|0030").strip()
    try:
        values = [float(v) for v in text.split("\\")]
    except ValueError:
        values = [float("nan")]
    if len(values) != 2 or not all(np.isfinite(v) and v > 1e-6 for v in values):
        raise DatasetError(f"{path}: Pixel Spacing (0028,0030) '{text}' is not two positive sizes in mm",
                           "re-export the series from the scanner or PACS (the voxel size is unknown)")
