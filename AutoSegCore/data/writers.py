"""Prediction writers: ``<name>.nii.gz`` (label map), ``<name>.seg.nrrd`` (named, coloured Slicer segments) and
a label map in the input's own format (:func:`write_label_like`: ``.nrrd`` / ``.mha`` / ``.nii.gz``).

All are written in the ORIGINAL image geometry and atomically, so Slicer or a user never sees a half file.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import nibabel as nib
import numpy as np
import slicerio

from AutoSegCore.data.readers import lps_ras
from AutoSegCore.errors import DatasetError
from AutoSegCore.utils.io import atomic_path

# matplotlib's "tab20" palette (first 20 labels): well-known, distinct, colour-blind-friendlier than random.
_TAB20 = [
    (0.122, 0.467, 0.706), (1.000, 0.498, 0.055), (0.173, 0.627, 0.173), (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741), (0.549, 0.337, 0.294), (0.890, 0.467, 0.761), (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812), (0.682, 0.780, 0.910), (1.000, 0.733, 0.471), (0.596, 0.875, 0.541),
    (1.000, 0.596, 0.588), (0.773, 0.690, 0.835), (0.769, 0.612, 0.580), (0.969, 0.714, 0.824),
    (0.859, 0.859, 0.553), (0.620, 0.855, 0.898), (0.498, 0.498, 0.498), (0.780, 0.780, 0.780),
]


def label_colors(labels) -> dict[int, tuple[float, float, float]]:
    """A distinct RGB colour (0–1) per foreground label value, fixed by the value (not by list order)."""
    out = {}
    for v in sorted(int(k) for k in labels):
        if v == 0:
            continue
        if v <= len(_TAB20):
            rgb = _TAB20[v - 1]
        else:
            # Beyond the palette: golden-ratio hue steps, alternating saturation/value rings, so
            # colours stay distinct for label maps with 100+ classes (e.g. TotalSegmentator).
            i = v - len(_TAB20)
            hue = (i * 0.618033988749895) % 1.0
            sat = (0.55, 0.85, 0.7)[i % 3]
            val = (0.95, 0.75, 0.6)[(i // 3) % 3]
            rgb = colorsys.hsv_to_rgb(hue, sat, val)
        out[v] = tuple(round(float(c), 4) for c in rgb)
    return out


def _label_dtype(label: np.ndarray):
    if label.size and (label.min() < 0 or label.max() > 65535):
        raise DatasetError(f"prediction has label values outside 0–65535 ({label.min()}–{label.max()})",
                           "pass an integer label map with values from the dataset's labels")
    return np.uint8 if not label.size or label.max() <= 255 else np.uint16


def save_prediction(label: np.ndarray, affine: np.ndarray, labels: dict, out_dir: Path | str, name: str, *,
                    nifti: bool = True, seg_nrrd: bool = True) -> dict[str, Path]:
    """Write a label map in the original geometry; returns ``{"nifti": path, "seg_nrrd": path}`` of what it wrote."""
    label = np.asarray(label)
    if label.ndim != 3:
        raise DatasetError(f"prediction '{name}' has shape {label.shape}, expected a 3D label map",
                           "take the argmax over classes and invert preprocessing first")
    if not np.issubdtype(label.dtype, np.integer):
        label = np.rint(label)
    dtype = _label_dtype(label)
    label = label.astype(dtype)
    affine = np.asarray(affine, dtype=np.float64)
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    if nifti:
        target = out_dir / f"{name}.nii.gz"
        img = nib.Nifti1Image(label, affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header.set_intent("label")
        with atomic_path(target) as tmp:
            nib.save(img, str(tmp))
        written["nifti"] = target
    if seg_nrrd:
        target = out_dir / f"{name}.seg.nrrd"
        names = {int(k): str(v) for k, v in labels.items()}
        colors = label_colors(names)
        present = set(np.unique(label).tolist()) | set(names)
        segments = []
        for v in sorted(present):
            if v == 0:
                continue
            seg_name = names.get(v, f"label_{v}")
            mask_idx = np.nonzero(label == v)
            extent = ([int(i) for axis in mask_idx for i in (axis.min(), axis.max())] if mask_idx[0].size
                      else [0, -1, 0, -1, 0, -1])
            segments.append({"id": f"Segment_{v}", "name": seg_name, "color": list(colors.get(v, (0.5, 0.5, 0.5))),
                             "labelValue": int(v), "layer": 0, "extent": extent})
        seg = {"voxels": label, "ijkToLPS": lps_ras(affine), "segments": segments, "encoding": "gzip"}
        with atomic_path(target) as tmp:
            slicerio.write_segmentation(str(tmp), seg)
        written["seg_nrrd"] = target
    return written


# what a label map in an input's own format is written as (single files only: a .mhd/.nhdr header names its data
# file, which an atomic rename would leave pointing at the temporary name)
LABEL_ENDING = {"nifti": ".nii.gz", "nrrd": ".nrrd", "metaimage": ".mha", "dicom": ".nii.gz"}


def write_label_like(label: np.ndarray, affine: np.ndarray, reference, out_path) -> Path:
    """Write a label map ``(X, Y, Z)`` to ``out_path`` (``.nii.gz``/``.nii``/``.nrrd``/``.mha``, chosen by its
    ending) on the voxel grid of ``reference`` (the input image file or DICOM folder): ITK formats get the
    reference's spacing, origin and direction exactly as ITK read them; NIfTI gets ``affine``.  Atomic."""
    from AutoSegCore.data.volumes import read_header
    from AutoSegCore.utils.io import atomic_path

    out_path = Path(out_path)
    label = np.asarray(label)
    if label.ndim != 3:
        raise DatasetError(f"label map for {out_path.name} has shape {label.shape}, expected 3D",
                           "take the argmax over classes and invert preprocessing first")
    if not np.issubdtype(label.dtype, np.integer):
        label = np.rint(label)
    label = label.astype(_label_dtype(label))
    header = read_header(reference) if reference is not None else None
    if header is not None and tuple(header.shape[:3]) != label.shape:
        raise DatasetError(f"label map shape {label.shape} differs from {reference} {tuple(header.shape[:3])}",
                           "write the prediction in the input's original geometry (invert preprocessing first)")
    affine = np.asarray(affine if affine is not None else header.affine, dtype=np.float64)
    name = out_path.name.lower()
    if name.endswith((".nii.gz", ".nii")):
        img = nib.Nifti1Image(label, affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header.set_intent("label")
        with atomic_path(out_path) as tmp:
            nib.save(img, str(tmp))
        return out_path
    if not name.endswith((".nrrd", ".mha")) or name.endswith(".seg.nrrd"):
        raise DatasetError(f"{out_path}: cannot write a label map with this ending",
                           "use .nii.gz, .nrrd or .mha (.seg.nrrd segmentations come from save_prediction)")
    import SimpleITK as sitk

    from AutoSegCore.data.readers import affine_to_itk

    if header is not None and header.itk is not None and len(header.itk[0]) == 3:
        spacing, origin, direction = header.itk
    else:
        spacing, origin, direction = affine_to_itk(affine)
    image = sitk.GetImageFromArray(np.ascontiguousarray(label.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    with atomic_path(out_path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return out_path
