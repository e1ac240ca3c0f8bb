"""Measure NIfTI reading through nibabel and through SimpleITK on the shared cases (figures in docs/benchmarks.md, "Readers").

Run: .venv/bin/python bench/readers.py [N_CASES]   (best of 3 per case, one thread, warm file cache)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
from shared_data import DATA_ROOT  # noqa: E402


def best(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def header_nib(f):
    img = nib.load(str(f))
    return img.shape, img.affine


def header_sitk(f):
    r = sitk.ImageFileReader()
    r.SetFileName(str(f))
    r.ReadImageInformation()
    return r.GetSize(), r.GetDirection()


def main(n: int = 10) -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    print(f"{'dataset':22s} {'cases':>5s} {'header nib':>11s} {'header sitk':>12s} {'voxels nib':>11s} {'voxels sitk':>12s}  (ms/case)")
    for name in ("Task04_Hippocampus", "Prostate_PROMISE12"):
        files = sorted((DATA_ROOT / name / "imagesTr").glob("*.nii.gz"))[:n]
        cols = {k: [] for k in ("hn", "hs", "vn", "vs")}
        for f in files:
            cols["hn"].append(best(lambda: header_nib(f)))
            cols["hs"].append(best(lambda: header_sitk(f)))
            cols["vn"].append(best(lambda: np.asarray(nib.load(str(f)).dataobj)))
            cols["vs"].append(best(lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(f)))))
        ms = {k: 1000 * float(np.mean(v)) for k, v in cols.items()}
        print(f"{name:22s} {len(files):5d} {ms['hn']:11.2f} {ms['hs']:12.2f} {ms['vn']:11.2f} {ms['vs']:12.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
