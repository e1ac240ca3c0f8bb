"""Format back-ends behind ``data.volumes``: NIfTI through nibabel; NRRD and MetaImage through SimpleITK (DICOM
series: ``data.dicom``); Slicer ``.seg.nrrd`` segmentations through slicerio.  Nothing outside ``data.volumes``,
``data.dicom`` and ``data.writers`` imports this module: callers go through the one door (``volumes.read_header`` /
``read_voxels`` / ``read_image``), so every format gets the same checks and the same one-line errors.

Why nibabel for NIfTI and SimpleITK for the rest (measured by bench/readers.py, figures in docs/benchmarks.md "Readers"): on the shared
Hippocampus and Prostate cases nibabel's header read is lazy (no voxel decoded) and as fast or faster than
SimpleITK's ``ReadImageInformation``, and a full read is on par; nibabel also keeps the file's sform affine as
written (ITK refuses or rounds sheared affines and picks qform/sform by its own rules), so NIfTI arrays, affines
and the preprocessing caches keyed on them stay exactly what they were.  SimpleITK (ITK's readers, GDCM for DICOM)
is the well-kept reader for everything else, and its ``ImageFileReader.ReadImageInformation`` is the same
headers-first path for those formats.

Voxel order everywhere is nibabel's: array index ``[i, j, k(, c)]`` with ``i`` fastest in the file (ITK's index
order); SimpleITK's numpy view is ``[k, j, i]`` and is transposed here.  Physical space is RAS (nibabel's);
ITK's LPS geometry is converted in exactly one place, :func:`lps_ras`.
"""
from __future__ import annotations

import os
import sys
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from AutoSegCore.data.limits import stored_size
from AutoSegCore.errors import DatasetError

# ------------------------------------------------------------------------------------------------ endings

NIFTI_ENDINGS = (".nii.gz", ".nii")
NRRD_ENDINGS = (".nrrd", ".nhdr")
METAIMAGE_ENDINGS = (".mha", ".mhd")
SEGMENTATION_ENDING = ".seg.nrrd"
IMAGE_ENDINGS = NIFTI_ENDINGS + NRRD_ENDINGS + METAIMAGE_ENDINGS
# longest first, so ".seg.nrrd" is stripped before ".nrrd" and ".nii.gz" before ".nii"
_ALL_ENDINGS = tuple(sorted(IMAGE_ENDINGS + (SEGMENTATION_ENDING,), key=len, reverse=True))
_FORMAT_OF = {**{e: "nifti" for e in NIFTI_ENDINGS}, **{e: "nrrd" for e in NRRD_ENDINGS},
              **{e: "metaimage" for e in METAIMAGE_ENDINGS}, SEGMENTATION_ENDING: "nrrd"}
SUPPORTED_TEXT = ".nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd, .seg.nrrd (labels) or a DICOM series folder"

_NIB_ERRORS = (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError)


def file_ending(name: str) -> str | None:
    """The supported ending of a file name (``.seg.nrrd`` before ``.nrrd``), or None."""
    low = name.lower()
    for ending in _ALL_ENDINGS:
        if low.endswith(ending):
            return name[len(name) - len(ending):]
    return None


def strip_ending(name: str) -> str:
    """The file name without its image ending (``a.seg.nrrd`` → ``a``, ``b.nii.gz`` → ``b``)."""
    ending = file_ending(name)
    return name[: -len(ending)] if ending else Path(name).stem


# -------------------------------------------------------------------------------------------- geometry

# RAS <-> LPS: flip x and y.  The matrix is its own inverse; this is the only place the convention is written.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_ras(matrix: np.ndarray) -> np.ndarray:
    """A 4×4 voxel-to-world matrix from LPS to RAS, or from RAS to LPS (the same flip both ways)."""
    return _FLIP @ np.asarray(matrix, dtype=np.float64)


def itk_affine(spacing, origin, direction) -> np.ndarray:
    """ITK geometry (LPS spacing, origin, row-major direction of the first 3 axes) → 4×4 RAS affine."""
    dim = len(spacing)
    d = np.asarray(direction, dtype=np.float64).reshape(dim, dim)[:3, :3]
    m = np.eye(4)
    m[:3, :3] = d * np.asarray(spacing[:3], dtype=np.float64)[None, :]
    m[:3, 3] = np.asarray(origin[:3], dtype=np.float64)
    return lps_ras(m)


def affine_to_itk(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """4×4 RAS affine → ITK ``(spacing, origin, direction)`` (LPS); the inverse of :func:`itk_affine`."""
    m = lps_ras(affine)
    spacing = np.sqrt((m[:3, :3] ** 2).sum(axis=0))
    direction = m[:3, :3] / np.where(spacing == 0, 1.0, spacing)[None, :]
    return tuple(float(s) for s in spacing), tuple(float(o) for o in m[:3, 3]), tuple(float(v) for v in direction.ravel())


# ---------------------------------------------------------------------------------------------- headers

@dataclass(eq=False)
class VolumeHeader:
    """What a header says, without voxels: ``shape`` in nibabel order ``(X, Y, Z[, C])``, the RAS ``affine``.

    ``format`` is ``"nifti"``, ``"nrrd"``, ``"metaimage"`` or ``"dicom"``; ``segmentation`` marks a Slicer
    ``.seg.nrrd``.  ``files`` lists a DICOM series' slice files (sorted); ``series`` its UID."""
    path: Path
    format: str
    shape: tuple
    affine: np.ndarray
    dtype: np.dtype
    segmentation: bool = False
    series: str | None = None
    files: list = field(default_factory=list)
    itk: tuple | None = None            # (spacing, origin, direction) exactly as ITK read it (writers reuse it)
    raw_bytes: int = 0                  # the voxels as stored, decompressed (all components / layers)
    stored_bytes: int | None = None     # bytes of the file(s) holding them (None: not known)
    _nib: object = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))


def short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text[:120]}"


def _sitk():
    import SimpleITK as sitk          # imported on use: NIfTI-only runs never need it

    sitk.ProcessObject.SetGlobalWarningDisplay(False)   # ITK prints C++ warnings to stderr; errors say it all
    return sitk


# quiet_stderr is entered by reader threads at once (proxy.selection reads cases in a thread pool): the first one in
# swaps fd 2 and the last one out restores it; without the count, one thread could save the /dev/null another had put
# there and leave stderr silent for the rest of the process
_QUIET_LOCK = threading.Lock()
_QUIET = {"depth": 0, "saved": None, "fd": None}


@contextmanager
def quiet_stderr():
    """Silence C++ code that writes to stderr itself (ITK's MetaIO/NRRD readers on a damaged file): the
    DatasetError raised after it says what went wrong, in one line.  Safe to enter from several threads."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):       # no real stderr (pytest capture, a GUI): nothing to hide
        yield
        return
    with _QUIET_LOCK:
        if _QUIET["depth"] == 0:
            sys.stderr.flush()
            _QUIET["saved"], _QUIET["fd"] = os.dup(fd), fd
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), fd)
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0:
                os.dup2(_QUIET["saved"], _QUIET["fd"])
                os.close(_QUIET["saved"])
                _QUIET["saved"] = _QUIET["fd"] = None


def _itk_text(exc: BaseException) -> str:
    """ITK's exception text is a multi-line C++ report; keep its last description line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    desc = [ln for ln in lines if ln.lower().startswith("description")]
    text = (desc[-1].split(":", 1)[-1].strip() if desc else (lines[-1] if lines else exc.__class__.__name__))
    return text[:140]


def nifti_header(path: Path) -> VolumeHeader:
    try:
        img = _quietly(nib.load, str(path))
        shape, affine = tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=np.float64)
        dtype = img.get_data_dtype()
        _check_voxel_size(path, img)
    except _NIB_ERRORS as exc:
        raise DatasetError(f"{path}: unreadable NIfTI ({short_error(exc)})",
                           "re-copy or re-export the file as .nii.gz") from None
    return VolumeHeader(path=path, format="nifti", shape=shape, affine=affine, dtype=np.dtype(dtype), _nib=img,
                        raw_bytes=_prod(shape) * np.dtype(dtype).itemsize, stored_bytes=path.stat().st_size)


def _prod(shape) -> int:
    """Voxel count in Python integers (a hostile header's 32767³ overflows nothing)."""
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _quietly(fn, *args):
    """``fn(*args)`` without nibabel's log lines for the header fixes it makes (our own checks name the problem;
    its ``LoggingOutputSuppressor`` leaves Python's last-resort handler printing them)."""
    import logging

    log = nib.imageglobals.logger
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return fn(*args)
    finally:
        log.setLevel(level)


def _check_voxel_size(path: Path, img) -> None:
    """Refuse a zero or non-finite voxel size where it is the geometry (no qform/sform): nibabel silently reads
    such a pixdim as 1 mm, so the affine it returns looks sane; the file's own header bytes are read again."""
    hdr = img.header
    if "pixdim" not in hdr or int(hdr.get("qform_code", 0)) or int(hdr.get("sform_code", 0)):
        return
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as f:
        raw = type(hdr).from_fileobj(f, check=False)
    zooms = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    if not (np.isfinite(zooms).all() and (np.abs(zooms) > 1e-6).all()):
        raise DatasetError(f"{path}: voxel size {tuple(float(z) for z in zooms)} in the header (pixdim) is zero or "
                           "not a number, and no qform/sform gives the geometry",
                           "set the real voxel size in mm (pixdim), or re-export the volume (e.g. from 3D Slicer)")


def _itk_shape(size, components: int) -> tuple:
    shape = tuple(int(s) for s in size)
    return shape + (components,) if components > 1 else shape


def itk_file_header(path: Path, fmt: str) -> VolumeHeader:
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_stderr():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        kind = {"nrrd": "NRRD", "metaimage": "MetaImage"}.get(fmt, fmt)
        raise DatasetError(f"{path}: unreadable {kind} file ({_itk_text(exc)})",
                           "re-copy or re-export the file (e.g. from 3D Slicer: Save, or SimpleITK.WriteImage)") from None
    spacing, origin, direction = reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
    size = reader.GetSize()
    segmentation = path.name.lower().endswith(SEGMENTATION_ENDING)
    components = reader.GetNumberOfComponents()
    # a .seg.nrrd's components are its layers (overlapping segments), merged into one label map when read
    shape = _itk_shape(size, 1 if segmentation else components)
    if len(size) < 3:
        affine = np.eye(4)      # 2D: the 3D check names the shape; there is no 3D geometry to report
    else:
        _check_itk_spacing(path, spacing[:3])
        affine = itk_affine(spacing, origin, direction)
    fields = _nrrd_fields(path) if fmt == "nrrd" else {}
    _check_nrrd_axes(path, fields, min(3, len(size)))
    component = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1] * len(size), reader.GetPixelID(), components)).dtype)
    dtype = component if components == 1 else np.dtype(np.float32)
    return VolumeHeader(path=path, format=fmt, shape=shape, affine=affine, dtype=dtype,
                        segmentation=segmentation,
                        itk=(tuple(spacing), tuple(origin), tuple(direction)),
                        raw_bytes=_prod(size) * components * component.itemsize,
                        stored_bytes=stored_size(path, fmt, fields.get("data file") or fields.get("datafile")))


def _check_itk_spacing(path: Path, spacing) -> None:
    """ITK keeps a zero voxel size of a MetaImage as 0 and turns an NRRD's zero space direction into NaN
    directions: name the voxel size, as for NIfTI, before the geometry check sees only NaN."""
    s = np.asarray(spacing, dtype=np.float64)
    if not (np.isfinite(s).all() and (s > 1e-6).all()):
        raise DatasetError(f"{path}: voxel size {tuple(float(v) for v in s)} in the header is zero or not a number",
                           "set the real voxel size in mm (NRRD: space directions / spacings, MetaImage: "
                           "ElementSpacing), or re-export the volume (e.g. from 3D Slicer)")


def _nrrd_fields(path: Path) -> dict:
    """The NRRD header's fields through pynrrd (slicerio's reader): where the voxels are and each axis' voxel
    size as written, which ITK does not report ({} if pynrrd cannot parse what ITK could)."""
    import nrrd

    try:
        return dict(nrrd.read_header(str(path)))
    except Exception:  # noqa: BLE001 — pynrrd is stricter than ITK on some fields; ITK's read stands then
        return {}


def _check_nrrd_axes(path: Path, fields: dict, spatial: int) -> None:
    """ITK reads a space direction ``none`` or NaN, or a NaN in ``spacings``, of a spatial axis as 1 mm, silently
    (as nibabel does a zero pixdim): refuse it.  A vector image's component axis has none, rightly."""
    for key in ("space directions", "spacings"):
        if key in fields:
            try:
                per_axis = np.asarray(fields[key], dtype=np.float64).reshape(len(fields[key]), -1)
            except (TypeError, ValueError):
                return                                   # a form pynrrd keeps as text: ITK's read stands
            known = int(np.isfinite(per_axis).all(axis=1).sum())
            if known < spatial:
                raise DatasetError(f"{path}: the header gives no voxel size for {spatial - known} of the {spatial} "
                                   f"axes ('{key}': none or NaN)", "set the real voxel size in mm (space "
                                   "directions), or re-export the volume (e.g. from 3D Slicer)")
            return


def itk_voxels(header: VolumeHeader) -> np.ndarray:
    """Voxels of an ITK-read file or DICOM series in nibabel order ``(X, Y, Z[, C])``."""
    sitk = _sitk()
    try:
        with quiet_stderr():
            if header.format == "dicom":
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames([str(f) for f in header.files])
                image = reader.Execute()
            else:
                image = sitk.ReadImage(str(header.path))
    except RuntimeError as exc:
        raise DatasetError(f"{header.path}: truncated or corrupt voxel data ({_itk_text(exc)})",
                           "re-copy or re-export the file (a download or copy was probably cut short)") from None
    arr = sitk.GetArrayFromImage(image)
    n = image.GetDimension()
    order = tuple(range(n - 1, -1, -1))
    if image.GetNumberOfComponentsPerPixel() > 1:
        order = order + (n,)
    return arr.transpose(order)


# --------------------------------------------------------------------------------------- .seg.nrrd labels

def segmentation_labels(header: VolumeHeader, segment_values: dict[str, int] | None) -> np.ndarray:
    """A Slicer ``.seg.nrrd`` as one integer label map ``(X, Y, Z)``; segments get the values ``segment_values``
    gives their names (the dataset's labels), else the label values stored in the file."""
    import slicerio

    path = header.path
    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as exc:  # noqa: BLE001 — slicerio/pynrrd raise many types for a damaged file
        raise DatasetError(f"{path}: unreadable Slicer segmentation ({short_error(exc)})",
                           "re-save it from 3D Slicer (Segmentations: Export/Save as .seg.nrrd)") from None
    segments = seg.get("segments", [])
    names = {}
    for s in segments:
        name = str(s.get("name", s.get("id", "")))
        if segment_values is not None:
            key = _segment_key(name, segment_values)
            if key is None:
                known = ", ".join(n for n in segment_values)
                raise DatasetError(f"{path}: segment '{name}' is not a label of the dataset ({known})",
                                   "rename the segment in Slicer to one of the dataset's label names, or add it to "
                                   "'labels' in dataset.json")
            names[name] = segment_values[key]
        else:
            names[name] = int(s["labelValue"])
    if len(set(names.values())) != len(names):
        raise DatasetError(f"{path}: two segments map to one label value", "give each segment its own name")
    voxels = np.asarray(seg["voxels"])
    layered = voxels.ndim == 4
    out = np.zeros(voxels.shape[1:] if layered else voxels.shape, dtype=np.uint16)   # layers come first (pynrrd)
    for s in segments:
        name = str(s.get("name", s.get("id", "")))
        layer = voxels[int(s.get("layer", 0))] if layered else voxels
        mask = layer == int(s["labelValue"])
        if np.any(out[mask]):
            raise DatasetError(f"{path}: segment '{name}' overlaps another segment",
                               "make segments exclusive (Segment Editor: Masking → 'Overwrite other segments')")
        out[mask] = names[name]
    return out


def _segment_key(name: str, segment_values: dict[str, int]) -> str | None:
    if name in segment_values:
        return name
    low = {k.strip().lower(): k for k in segment_values}
    return low.get(name.strip().lower())
