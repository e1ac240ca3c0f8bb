"""The fingerprint read by threads (issue 23's stage speed) equals the one the sequential loop computed before, on
real data: every value, the preprocessing fitted from it, and each case read once."""
from __future__ import annotations

import numpy as np
import pytest
from shared_data import BRATS, DATA_ROOT, HIPPO, SPLEEN

from AutoSegCore.data.dataset import load_dataset, read_case
from AutoSegCore.data.fingerprint import (ANISOTROPY_THRESHOLD, FINGERPRINT_VERSION, SAMPLES_PER_CASE, DatasetError,
                                          _intensity_stats, compute_fingerprint, nonzero_box)
from AutoSegCore.data.preprocess import Preprocessor
from AutoSegCore.data.volumes import IO_STATS

PROSTATE = DATA_ROOT / "Prostate_PROMISE12"


def old_compute_fingerprint(ds, *, samples_per_case: int = SAMPLES_PER_CASE, seed: int = 0) -> dict:
    """compute_fingerprint as it was before the threads (as of commit 6ef779b), verbatim below this line."""
    if not ds.cases:
        raise DatasetError(f"dataset '{ds.name}' has no cases", "add labelled cases before computing a fingerprint")
    rng = np.random.default_rng(seed)
    cases, samples = [], [[] for _ in range(ds.num_channels)]
    label_cases: dict[int, list[tuple[int, float]]] = {v: [] for v in ds.foreground_labels}
    for case in ds.cases:
        arr = read_case(case)
        voxel_mm3 = float(np.prod(arr.spacing))
        box = nonzero_box(arr.image)
        fg = arr.label > 0 if arr.label is not None and (arr.label > 0).any() else np.any(arr.image != 0, axis=0)
        idx = np.flatnonzero(fg)
        if idx.size > samples_per_case:
            idx = rng.choice(idx, samples_per_case, replace=False)
        per_channel = []
        for c in range(arr.image.shape[0]):
            vals = arr.image[c].ravel()[idx]
            samples[c].append(vals)
            per_channel.append(_intensity_stats(vals))
        entry = {"name": case.name, "shape": list(arr.image.shape[1:]), "spacing": list(arr.spacing),
                 "cropped_shape": [e - s for s, e in box], "intensity": per_channel}
        if arr.label is not None and (arr.label > 0).any():
            entry["label_box"] = [e - s for s, e in nonzero_box((arr.label > 0)[None])]
        if arr.label is not None:
            counts = np.bincount(arr.label.ravel().astype(np.int64))
            entry["label_voxels"] = {str(v): int(counts[v]) for v in range(1, counts.size) if counts[v]}
            entry["label_mm3"] = {k: n * voxel_mm3 for k, n in entry["label_voxels"].items()}
            for v in label_cases:
                n = int(counts[v]) if v < counts.size else 0
                label_cases[v].append((n, n * voxel_mm3))
        cases.append(entry)
    spacings = np.array([c["spacing"] for c in cases], dtype=np.float64)
    shapes = np.array([c["shape"] for c in cases], dtype=np.float64)
    cropped = np.array([c["cropped_shape"] for c in cases], dtype=np.float64)
    median_spacing = np.median(spacings, axis=0)
    ratio = float(median_spacing.max() / median_spacing.min())
    labels = {}
    for v, per_case in label_cases.items():
        n = np.array([p[0] for p in per_case], dtype=np.float64)
        mm3 = np.array([p[1] for p in per_case], dtype=np.float64)
        present = n > 0
        labels[str(v)] = {"name": ds.labels[v], "cases_present": int(present.sum()), "voxels_total": int(n.sum()),
                          "voxels_mean": float(n[present].mean()) if present.any() else 0.0,
                          "mm3_mean": float(mm3[present].mean()) if present.any() else 0.0,
                          "mm3_median": float(np.median(mm3[present])) if present.any() else 0.0}
    return {
        "version": FINGERPRINT_VERSION,
        "dataset": ds.name,
        "num_cases": len(cases),
        "modality": ds.modality,
        "channel_names": list(ds.channel_names),
        "labels": {str(k): v for k, v in ds.labels.items()},
        "spacing": {"median": median_spacing.tolist(), "mean": spacings.mean(axis=0).tolist(),
                    "min": spacings.min(axis=0).tolist(), "max": spacings.max(axis=0).tolist()},
        "shape": {"median": np.median(shapes, axis=0).tolist(), "min": shapes.min(axis=0).astype(int).tolist(),
                  "max": shapes.max(axis=0).astype(int).tolist()},
        "cropped_shape": {"median": np.median(cropped, axis=0).tolist(), "max": cropped.max(axis=0).astype(int).tolist()},
        "anisotropy_ratio": ratio,
        "anisotropic": ratio > ANISOTROPY_THRESHOLD,
        "intensity": [{"channel": name, **_intensity_stats(np.concatenate(s) if s else np.empty(0))}
                      for name, s in zip(ds.channel_names, samples)],
        "label_stats": labels,
        "cases": cases,
    }


# Hippocampus: every case of the bench's search; Spleen and Prostate: foregrounds above SAMPLES_PER_CASE (the
# random draw); BRATS: 4 channels
@pytest.mark.parametrize("root,n", [(HIPPO, None), (SPLEEN, None), (PROSTATE, 12), (BRATS, None)],
                         ids=lambda v: getattr(v, "name", str(v)))
def test_threaded_fingerprint_equals_the_sequential_loop(root, n):
    ds = load_dataset(root, deep=False)
    if n is not None:
        ds = ds.subset(ds.case_names[:n])
    old = old_compute_fingerprint(ds)
    reads = IO_STATS["data_reads"]
    fp = compute_fingerprint(ds, workers=4)
    assert IO_STATS["data_reads"] - reads == sum(len(c.images) + (c.label is not None) for c in ds.cases)
    assert fp == old                                              # every value exact, not approx
    assert compute_fingerprint(ds, workers=1) == old
    if root != HIPPO and root != BRATS:
        assert any(sum(e["label_voxels"].values()) > SAMPLES_PER_CASE for e in old["cases"])  # the draw was used
    for pre_cfg in ({"normalization": "percentile_zscore", "resampling": "median"}, {"resampling": "mean"}):
        assert Preprocessor(pre_cfg).fit(ds, fingerprint=fp).state() == \
            Preprocessor(pre_cfg).fit(ds, fingerprint=old).state()


def test_threads_only_for_nifti_cases(hippo, monkeypatch):
    from dataclasses import replace

    from AutoSegCore.data.fingerprint import _read_workers

    monkeypatch.setenv("AUTOSEG_THREADS", "2")
    assert _read_workers(hippo.cases) == 2
    assert _read_workers(hippo.cases[:1]) == 1
    monkeypatch.setenv("AUTOSEG_THREADS", "16")
    assert _read_workers(hippo.cases) == 4
    # an NRRD/MetaImage/DICOM file goes through ITK, whose stderr silencing swaps fd 2: read one case at a time
    nrrd = [replace(c, label=c.label.with_name(c.name + ".seg.nrrd")) for c in hippo.cases[:3]]
    assert _read_workers(hippo.cases[3:10] + nrrd) == 1
