"""Dataset fingerprint: the per-case geometry and intensity statistics nnU-Net records before planning.

It is what later stages decide from (target spacing, CT normalisation statistics, patch size, which labels
are small) and it is plain JSON, so it can be cached next to a study and shown to the user.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from AutoSegCore.data.dataset import NIFTI_ENDINGS, Dataset, read_case
from AutoSegCore.errors import DatasetError
from AutoSegCore.utils.io import read_json, write_json

FINGERPRINT_VERSION = 1
ANISOTROPY_THRESHOLD = 3.0          # nnU-Net treats max/min spacing > 3 as anisotropic
SAMPLES_PER_CASE = 10_000           # foreground voxels sampled per case and channel (as nnU-Net)
READ_WORKERS = 4                    # most threads reading cases at once


def _intensity_stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {k: None for k in ("mean", "std", "min", "max", "p0.5", "p50", "p99.5")}
    v = values.astype(np.float64)
    p = np.percentile(v, [0.5, 50.0, 99.5])
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max()),
            "p0.5": float(p[0]), "p50": float(p[1]), "p99.5": float(p[2])}


def nonzero_box(image: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Bounding box ``((start, end), ...)`` of voxels nonzero in any channel (nnU-Net's crop); full box if none are.

    Same result as MONAI's ``generate_spatial_bounding_box(select_fn=x != 0)``, written in numpy because importing
    ``monai.transforms`` costs ~3 s per CLI start (``autoseg validate`` must stay quick).
    """
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return tuple((0, int(s)) for s in mask.shape)
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append((int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _read_workers(cases: list) -> int:
    """Threads that read cases at once: AUTOSEG_THREADS (else the cores), at most 4 and one per case; one when a
    file is not NIfTI (the ITK readers silence stderr by swapping file descriptor 2, which threads would race on)."""
    if not all(str(p).lower().endswith(NIFTI_ENDINGS) for c in cases for p in [*c.images, c.label] if p is not None):
        return 1
    try:
        n = int(os.environ.get("AUTOSEG_THREADS", "0"))
    except ValueError:
        n = 0
    return max(1, min(n or (os.cpu_count() or 1), READ_WORKERS, len(cases)))


def _case_part(case) -> tuple[tuple, list[int], tuple, np.ndarray, np.ndarray | None, list[int] | None]:
    """What the fingerprint needs of one case, read in a worker thread: spacing, shape, nonzero box, every
    channel's foreground voxels ``(C, n)`` in voxel order, the label counts (None without a label) and the
    extent of the labelled box (None without foreground).  No randomness here, so the cases may be read in any
    order and the sampling stays the same."""
    arr = read_case(case)
    box = nonzero_box(arr.image)
    has_fg = arr.label is not None and (arr.label > 0).any()
    fg = arr.label > 0 if has_fg else np.any(arr.image != 0, axis=0)
    values = arr.image.reshape(arr.image.shape[0], -1)[:, np.flatnonzero(fg)]
    counts = np.bincount(arr.label.ravel().astype(np.int64)) if arr.label is not None else None
    label_box = [e - s for s, e in nonzero_box(fg[None])] if has_fg else None
    return arr.spacing, list(arr.image.shape[1:]), box, values, counts, label_box


def _case_parts(cases: list, workers: int):
    """``_case_part`` of every case, in the cases' order; at most ``2 × workers`` cases held at once."""
    if workers <= 1:
        yield from map(_case_part, cases)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fingerprint") as pool:
        pending: deque = deque()
        for case in cases:
            pending.append(pool.submit(_case_part, case))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def compute_fingerprint(ds: Dataset | str | Path, *, samples_per_case: int = SAMPLES_PER_CASE, seed: int = 0,
                        workers: int | None = None) -> dict:
    """Per case spacing/shape/label volumes and per channel foreground intensity statistics (JSON-ready).

    ``ds``: a ``Dataset`` or a dataset folder (validated first).  Returns what nnU-Net records: ``spacing`` /
    ``shape`` / ``cropped_shape`` (median, min, max), ``anisotropic``, ``intensity`` per channel (foreground
    percentiles, mean, std), ``label_stats`` per label (cases present, volume in mm³), per case the extent of its
    labelled box (``label_box``: how big a patch must be to hold the structures), ``num_cases``,
    ``modality``, ``channel_names``, ``dataset``.

    Each case is read once, by ``workers`` threads (default ``_read_workers``: NIfTI decompression releases the
    GIL); the foreground samples are drawn from one seeded stream in the cases' order, so the result does not depend
    on ``workers``."""
    if not isinstance(ds, Dataset):
        from AutoSegCore.data.dataset import load_dataset

        ds = load_dataset(ds, min_cases=1)
    if not ds.cases:
        raise DatasetError(f"dataset '{ds.name}' has no cases", "add labelled cases before computing a fingerprint")
    rng = np.random.default_rng(seed)
    cases, samples = [], [[] for _ in range(ds.num_channels)]
    label_cases: dict[int, list[tuple[int, float]]] = {v: [] for v in ds.foreground_labels}
    workers = _read_workers(ds.cases) if workers is None else max(1, int(workers))
    for case, (spacing, shape, box, values, counts, label_box) in zip(ds.cases, _case_parts(list(ds.cases), workers)):
        voxel_mm3 = float(np.prod(spacing))
        if values.shape[1] > samples_per_case:
            # the same draw as rng.choice(foreground_indices, ...): choice picks positions, then takes them
            values = values[:, rng.choice(values.shape[1], samples_per_case, replace=False)]
        per_channel = []
        for c in range(values.shape[0]):
            samples[c].append(values[c])
            per_channel.append(_intensity_stats(values[c]))
        entry = {"name": case.name, "shape": shape, "spacing": list(spacing),
                 "cropped_shape": [e - s for s, e in box], "intensity": per_channel}
        if label_box is not None:
            entry["label_box"] = label_box
        if counts is not None:
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


def save_fingerprint(fp: dict, path: str | Path) -> Path:
    """Write the fingerprint as JSON atomically (no partial file on error)."""
    return write_json(path, fp)


def load_fingerprint(path: str | Path) -> dict:
    p = Path(path)
    try:
        fp = read_json(p)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{p}: cannot read fingerprint ({exc.__class__.__name__})",
                           "recompute it with `autoseg fingerprint DATA --out FILE`") from None
    if not isinstance(fp, dict) or fp.get("version") != FINGERPRINT_VERSION:
        raise DatasetError(f"{p}: not a version-{FINGERPRINT_VERSION} fingerprint",
                           "recompute it with `autoseg fingerprint DATA --out FILE`")
    return fp
