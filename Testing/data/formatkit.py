"""Real files in other formats made from the shared NIfTI cases: NRRD / MetaImage copies, an oblique NIfTI, DICOM
series (SimpleITK writes them slice by slice with the tags a scanner would, as in SimpleITK's "Dicom Series From
Array" example) and Slicer ``.seg.nrrd`` labels written by the engine's own writer."""
from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from shared_data import HIPPO


def sitk_copy(src: Path, dest: Path) -> Path:
    """``src`` rewritten by SimpleITK in the format of ``dest``'s ending (.nrrd, .nhdr, .mha, .mhd, .nii.gz)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.ReadImage(str(src)), str(dest), useCompression=True)
    return dest


def oblique_nifti(src: Path, dest: Path, degrees=(20.0, 0.0, 35.0)) -> Path:
    """``src`` with its affine rotated about x and z (an oblique acquisition): same voxels, new direction cosines."""
    img = nib.load(str(src))
    ax, _, az = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    affine = img.affine.copy()
    affine[:3, :3] = rz @ rx @ affine[:3, :3]
    affine[:3, 3] += [12.5, -7.25, 3.0]
    out = nib.Nifti1Image(np.asarray(img.dataobj), affine)
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, str(dest))
    return dest


_UID_ROOT = "1.2.826.0.1.3680043.2.1125.1"


def dicom_series(src: Path, folder: Path, *, series_uid: str | None = None, skip: tuple = (),
                 description: str = "T2 axial") -> str:
    """Write the 3D image ``src`` as a DICOM MR series (int16, one file per slice) into ``folder``; returns its UID.

    ``skip`` leaves slices out (a series with missing slices)."""
    image = sitk.ReadImage(str(src))
    image = sitk.Cast(sitk.Round(image) if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64) else image,
                      sitk.sitkInt16)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    uid = series_uid or f"{_UID_ROOT}.{abs(hash((str(src), description))) % 10 ** 12}"
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        if k in skip:
            continue
        s = image[:, :, k]
        pos = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0031": stamp, "0008|0021": time.strftime("%Y%m%d"), "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
            "0008|0060": "MR", "0008|103e": description, "0010|0010": "Test^Case", "0010|0020": "TEST",
            "0020|000d": f"{_UID_ROOT}.7", "0020|000e": uid, "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.10g}" for v in pos), "0020|0013": str(k + 1),
            "0018|0050": f"{image.GetSpacing()[2]:.10g}", "0008|0018": f"{uid}.{k + 1}",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
        }
        for key, value in tags.items():
            s.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{uid[-6:]}_{k:04d}.dcm"))
        writer.Execute(s)
    return uid


def seg_nrrd_label(label_nifti: Path, dest: Path, labels: dict[int, str]) -> Path:
    """A NIfTI label map as a Slicer ``.seg.nrrd`` (segments named by ``labels``), written by the engine's writer."""
    from AutoSegCore.data.writers import save_prediction

    img = nib.load(str(label_nifti))
    data = np.rint(np.asarray(img.dataobj)).astype(np.uint8)
    name = dest.name[: -len(".seg.nrrd")]
    written = save_prediction(data, img.affine, labels, dest.parent, name, nifti=False)
    return written["seg_nrrd"]


def convert_msd(dest: Path, n: int, *, image_ending: str = ".nrrd", label_ending: str = ".nrrd",
                source: Path = HIPPO) -> Path:
    """The first ``n`` cases of an MSD dataset with images / labels rewritten in other formats (``.seg.nrrd``
    labels carry the dataset's label names)."""
    meta = json.loads((source / "dataset.json").read_text())
    entries = sorted(meta["training"], key=lambda e: e["image"])[:n]
    labels = {int(k): v for k, v in meta["labels"].items()}
    training = []
    for e in entries:
        case = Path(e["image"]).name[: -len(".nii.gz")]
        image = sitk_copy(source / e["image"], dest / "imagesTr" / f"{case}{image_ending}")
        label_dest = dest / "labelsTr" / f"{case}{label_ending}"
        if label_ending == ".seg.nrrd":
            seg_nrrd_label(source / e["label"], label_dest, labels)
        else:
            sitk_copy(source / e["label"], label_dest)
        training.append({"image": f"./imagesTr/{image.name}", "label": f"./labelsTr/{label_dest.name}"})
    meta["training"], meta["numTraining"] = training, len(training)
    (dest / "dataset.json").write_text(json.dumps(meta, indent=1))
    return dest
