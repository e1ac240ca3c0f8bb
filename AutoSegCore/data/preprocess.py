"""Preprocessing (crop to the nonzero box → normalise → resample, in nnU-Net's order) and its exact inverse.

Every step records in ``meta`` what ``Preprocessor.invert`` needs to map a prediction back onto the ORIGINAL
image grid, and the ``PreprocessCache`` keeps results in memory (and optionally on disk) so that repeated
trials on the same data never redo the file reading.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from AutoSegCore.config import CHOICES, DEFAULT_CONFIG, deep_merge
from AutoSegCore.data.dataset import Case, CaseArrays, Dataset, read_case
from AutoSegCore.data.fingerprint import compute_fingerprint, nonzero_box
from AutoSegCore.errors import ConfigError
from AutoSegCore.utils.io import atomic_path

STATE_VERSION = 1
EXTRA_DEFAULTS = {
    "zscore_nonzero": False,     # zscore statistics over nonzero voxels only (zeros stay 0), as nnU-Net for MR
    "target_spacing": None,      # explicit [x, y, z] mm used instead of the fingerprint's median/mean (if resampling)
    "image_order": 1,            # spline order for resampling images: 1 (linear, fast) or 3 (cubic, as nnU-Net)
}


@dataclass
class PreprocessedCase:
    """A case on the network's grid: ``image`` float32 (C, X', Y', Z'), ``label`` uint8 (X', Y', Z')."""
    name: str
    image: np.ndarray
    label: np.ndarray | None
    meta: dict


def _resize(array: np.ndarray, shape: tuple[int, ...], mode: str) -> np.ndarray:
    """Resample channel-first ``array`` to spatial ``shape``: 'linear', 'cubic' (scipy spline) or 'nearest'."""
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    if mode == "cubic":
        from scipy.ndimage import zoom
        factors = [n / o for n, o in zip(shape, array.shape[1:])]
        out = [zoom(c.astype(np.float32), factors, order=3, mode="nearest", grid_mode=True) for c in array]
        return np.stack(out).astype(np.float32)
    # torch's interpolate is the resampler MONAI's Resize wraps; called directly to stay in numpy/float32
    # (imported here so that loading/validating data does not pay torch's import time).
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    if mode == "nearest":
        out = F.interpolate(t, size=tuple(shape), mode="nearest-exact")
    else:
        out = F.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=False)
    return out[0].numpy()


def _grid_affine(affine: np.ndarray, start: list[int], old_shape, new_shape) -> np.ndarray:
    """Affine of the cropped-then-resampled grid (voxel centres, align_corners=False convention)."""
    shift = np.eye(4)
    shift[:3, 3] = start
    scale = np.eye(4)
    s = np.asarray(old_shape, dtype=np.float64) / np.asarray(new_shape, dtype=np.float64)
    scale[:3, :3] = np.diag(s)
    scale[:3, 3] = (s - 1.0) / 2.0
    return np.asarray(affine, dtype=np.float64) @ shift @ scale


class Preprocessor:
    """Configured by ``config["preprocessing"]``; ``fit`` takes the dataset-level numbers from a fingerprint."""

    def __init__(self, pre_cfg: dict | None = None, fingerprint: dict | None = None) -> None:
        self.cfg = deep_merge({**DEFAULT_CONFIG["preprocessing"], **EXTRA_DEFAULTS}, pre_cfg or {})
        self._check_cfg()
        self.target_spacing: list[float] | None = None
        self.intensity: list[dict] | None = None
        if self.cfg["target_spacing"] is not None:
            self.target_spacing = [float(v) for v in self.cfg["target_spacing"]]
        if fingerprint is not None:
            self._fit_fingerprint(fingerprint)

    def _check_cfg(self) -> None:
        for key in ("normalization", "resampling"):
            allowed = CHOICES[("preprocessing", key)]
            if self.cfg[key] not in allowed:
                raise ConfigError(f"preprocessing.{key} = {self.cfg[key]!r} is not one of {list(allowed)}",
                                  f"set preprocessing.{key} to one of {', '.join(allowed)}")
        win = self.cfg["ct_window"]
        if not (isinstance(win, (list, tuple)) and len(win) == 2 and float(win[0]) < float(win[1])):
            raise ConfigError(f"preprocessing.ct_window = {win!r} must be [low, high] with low < high",
                              "e.g. ct_window: [-1000, 1000]")
        if self.cfg["image_order"] not in (1, 3):
            raise ConfigError(f"preprocessing.image_order = {self.cfg['image_order']!r} must be 1 or 3", "e.g. image_order: 1")
        ts = self.cfg["target_spacing"]
        if ts is not None and not (isinstance(ts, (list, tuple)) and len(ts) == 3 and all(float(v) > 0 for v in ts)):
            raise ConfigError(f"preprocessing.target_spacing = {ts!r} must be three positive numbers (mm)",
                              "e.g. target_spacing: [1.5, 1.5, 3.0]")

    # ----------------------------------------------------------------------------------------- fitting
    def _fit_fingerprint(self, fp: dict) -> None:
        how = self.cfg["resampling"]
        if self.cfg["target_spacing"] is not None:
            self.target_spacing = [float(v) for v in self.cfg["target_spacing"]]
        elif how != "none":
            self.target_spacing = [float(v) for v in fp["spacing"][how]]
        self.intensity = [{k: ch.get(k) for k in ("mean", "std", "p0.5", "p99.5")} for ch in fp["intensity"]]

    def fit(self, ds: Dataset, fingerprint: dict | None = None) -> "Preprocessor":
        """Take target spacing and intensity statistics from ``ds`` (or its fingerprint); same data → same state."""
        self._fit_fingerprint(fingerprint if fingerprint is not None else compute_fingerprint(ds))
        return self

    @property
    def is_fitted(self) -> bool:
        needs_spacing = self.cfg["resampling"] != "none" and self.target_spacing is None
        needs_stats = self.cfg["normalization"] == "percentile_zscore" and self.intensity is None
        return not (needs_spacing or needs_stats)

    def state(self) -> dict:
        return {"version": STATE_VERSION, "config": copy.deepcopy(self.cfg),
                "target_spacing": self.target_spacing, "intensity": copy.deepcopy(self.intensity)}

    @classmethod
    def from_state(cls, state: dict) -> "Preprocessor":
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ConfigError("preprocessor state is missing or from another version",
                              "retrain the model (its saved preprocessing is not readable by this version)")
        pre = cls(state["config"])
        pre.target_spacing = state.get("target_spacing")
        pre.intensity = state.get("intensity")
        return pre

    # ----------------------------------------------------------------------------------------- forward
    def _normalise(self, image: np.ndarray) -> np.ndarray:
        how = self.cfg["normalization"]
        out = np.empty_like(image, dtype=np.float32)
        for c, ch in enumerate(image):
            ch = ch.astype(np.float32)
            if how == "zscore":
                mask = ch != 0 if self.cfg["zscore_nonzero"] else None
                vals = ch[mask] if mask is not None and mask.any() else ch
                res = (ch - vals.mean()) / max(float(vals.std()), 1e-8)
                if mask is not None:
                    res = np.where(mask, res, 0.0)
            elif how == "percentile_zscore":
                st = self.intensity[c] if self.intensity and c < len(self.intensity) else None
                if st is None or st.get("p0.5") is None:
                    raise ConfigError(f"preprocessing: no intensity statistics for channel {c}",
                                      "fit the preprocessor on the dataset (Preprocessor(...).fit(ds))")
                res = (np.clip(ch, st["p0.5"], st["p99.5"]) - st["mean"]) / max(float(st["std"]), 1e-8)
            elif how == "minmax":
                lo, hi = float(ch.min()), float(ch.max())
                res = (ch - lo) / (hi - lo) if hi > lo else np.zeros_like(ch)
            elif how == "ct_window":
                lo, hi = (float(v) for v in self.cfg["ct_window"])
                res = (np.clip(ch, lo, hi) - lo) / (hi - lo)
            else:
                res = ch
            out[c] = res
        return out

    def __call__(self, arrays: CaseArrays) -> PreprocessedCase:
        if not self.is_fitted:
            raise ConfigError(f"preprocessing ({self.cfg['resampling']} resampling, {self.cfg['normalization']}) "
                              "needs dataset statistics", "call Preprocessor.fit(dataset) or pass the fingerprint")
        image, label = arrays.image, arrays.label
        original_shape = [int(s) for s in image.shape[1:]]
        box = nonzero_box(image) if self.cfg["crop_foreground"] else tuple((0, s) for s in original_shape)
        sl = tuple(slice(s, e) for s, e in box)
        image = image[(slice(None),) + sl]
        label = label[sl] if label is not None else None
        cropped_shape = [int(s) for s in image.shape[1:]]
        image = self._normalise(image)
        source_spacing = [float(s) for s in arrays.spacing]
        target = self.target_spacing if self.cfg["resampling"] != "none" else None
        if target is not None:
            new_shape = [max(1, int(round(n * s / t))) for n, s, t in zip(cropped_shape, source_spacing, target)]
        else:
            new_shape = list(cropped_shape)
        image = _resize(image, new_shape, "cubic" if self.cfg["image_order"] == 3 else "linear")
        if label is not None:
            label = _resize(label[None].astype(np.float32), new_shape, "nearest")[0]
            label = np.rint(label).astype(np.uint8 if arrays.label.dtype == np.uint8 else arrays.label.dtype)
        meta = {
            "name": arrays.name,
            "original_shape": original_shape,
            "original_affine": np.asarray(arrays.affine, dtype=np.float64).tolist(),
            "crop_box": [[int(s), int(e)] for s, e in box],
            "cropped_shape": cropped_shape,
            "source_spacing": source_spacing,
            "target_spacing": [float(v) for v in target] if target is not None else source_spacing,
            "preprocessed_shape": [int(s) for s in new_shape],
            "preprocessed_affine": _grid_affine(arrays.affine, [s for s, _ in box], cropped_shape, new_shape).tolist(),
        }
        return PreprocessedCase(name=arrays.name, image=np.ascontiguousarray(image, dtype=np.float32),
                                label=label, meta=meta)

    # ----------------------------------------------------------------------------------------- inverse
    def invert(self, label_or_probs: np.ndarray, meta: dict) -> np.ndarray:
        """Map a prediction on the preprocessed grid back to the original grid.

        ``(X', Y', Z')`` labels are resampled with nearest neighbour, ``(C, X', Y', Z')`` probabilities
        linearly; the cropped-away border becomes background (label 0 / probability 1 for channel 0).
        """
        arr = np.asarray(label_or_probs)
        is_label = arr.ndim == 3
        spatial = list(arr.shape if is_label else arr.shape[1:])
        if arr.ndim not in (3, 4) or spatial != list(meta["preprocessed_shape"]):
            raise ValueError(f"prediction shape {arr.shape} does not match the preprocessed grid "
                             f"{meta['preprocessed_shape']} of case {meta.get('name')}")
        cropped = meta["cropped_shape"]
        if is_label:
            back = _resize(arr[None].astype(np.float32), cropped, "nearest")[0]
            out = np.zeros(meta["original_shape"], dtype=arr.dtype)
            out[tuple(slice(s, e) for s, e in meta["crop_box"])] = np.rint(back).astype(arr.dtype)
            return out
        back = _resize(arr.astype(np.float32), cropped, "linear")
        out = np.zeros([arr.shape[0]] + list(meta["original_shape"]), dtype=np.float32)
        out[0] = 1.0
        out[(slice(None),) + tuple(slice(s, e) for s, e in meta["crop_box"])] = back
        return out


# --------------------------------------------------------------------------------------------- cache

CACHE_VERSION = 1


def _file_identity(path: Path, hash_contents: bool) -> list:
    p = Path(path).resolve()
    if hash_contents:
        h = hashlib.sha1()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return [str(p), h.hexdigest()]
    st = os.stat(p)
    return [str(p), st.st_size, st.st_mtime_ns]


class PreprocessCache:
    """Preprocessed cases in memory (always) and as ``.npz`` in ``cache_dir`` (optional, shared across runs).

    The key hashes the case's files (path + size + mtime, or their bytes' SHA-1 with ``hash_contents``) with
    the preprocessor's state, so a changed file or setting never returns a stale result.  Returned arrays are
    shared with the cache: treat them as read-only (copy before augmenting in place).
    """

    def __init__(self, preprocessor: Preprocessor, cache_dir: Path | str | None = None, *,
                 hash_contents: bool = False) -> None:
        self.preprocessor = preprocessor
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.hash_contents = hash_contents
        self._memory: dict[str, PreprocessedCase] = {}
        self._state_text = json.dumps(preprocessor.state(), sort_keys=True)
        self.stats = {"memory_hits": 0, "disk_hits": 0, "computed": 0}

    def key(self, case: Case) -> str:
        files = [_file_identity(p, self.hash_contents) for p in case.images]
        files.append(_file_identity(case.label, self.hash_contents) if case.label is not None else None)
        text = json.dumps({"v": CACHE_VERSION, "name": case.name, "files": files, "state": self._state_text},
                          sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def _disk_path(self, case: Case, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case.name)
        return self.cache_dir / f"{safe}-{key[:20]}.npz"

    def get(self, case: Case) -> PreprocessedCase:
        key = self.key(case)
        hit = self._memory.get(key)
        if hit is not None:
            self.stats["memory_hits"] += 1
            return hit
        path = self._disk_path(case, key)
        result = self._load(path) if path is not None and path.is_file() else None
        if result is not None:
            self.stats["disk_hits"] += 1
        else:
            result = self.preprocessor(read_case(case))
            self.stats["computed"] += 1
            if path is not None:
                self._save(path, result)
        self._memory[key] = result
        return result

    def get_many(self, cases: Iterable[Case]) -> list[PreprocessedCase]:
        return [self.get(c) for c in cases]

    def clear_memory(self) -> None:
        self._memory.clear()

    @staticmethod
    def _save(path: Path, pc: PreprocessedCase) -> None:
        arrays = {"image": pc.image, "meta": np.array(json.dumps(pc.meta)), "name": np.array(pc.name)}
        if pc.label is not None:
            arrays["label"] = pc.label
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @staticmethod
    def _load(path: Path) -> PreprocessedCase | None:
        """A damaged cache file is ignored (and later overwritten), never an error."""
        try:
            with np.load(path, allow_pickle=False) as z:
                label = z["label"] if "label" in z.files else None
                return PreprocessedCase(name=str(z["name"]), image=z["image"], label=label,
                                        meta=json.loads(str(z["meta"])))
        except (OSError, ValueError, KeyError, EOFError):
            return None
