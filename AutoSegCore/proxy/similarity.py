"""Pairwise similarity of cases for proxy-data selection (the proxy paper, §3): mutual information and local NCC.

Both measures compare two volumes voxel by voxel, so every case is first brought to a common cube
(``prepare_volume``): either the whole image, or — with ``roi="label"`` — the bounding box of its foreground
label plus a margin, each resampled (trilinear) to ``size``³ and z-scored per channel.

* **MI** (Eq. 1): the intensities of each volume are quantised once into ``bins`` equal-width bins between
  its own minimum and maximum (the same edges as ``numpy.histogram2d(a, b, bins, range=[[a.min(), a.max()],
  [b.min(), b.max()]])``); the joint histogram of a pair gives MI in nats.
* **local NCC** (Eq. 2, the VoxelMorph form): for every window of ``window``³ voxels that lies fully inside the
  cube, the squared local covariance divided by the two local variances, averaged over those windows.  A window
  that is flat (local variance ≤ ``FLAT_VARIANCE`` of the z-scored volume) in either volume contributes 0, so a
  volume's NCC with itself is the fraction of its non-flat windows (1 for any textured image), never NaN.
* **Multi-channel images**: each channel is compared with the same channel of the other case and the measure
  is the mean over channels.

Two backends give the same values (MI identical, NCC to float32 rounding): ``backend="native"`` — compiled
loops over 4 × 4 tiles of cases (``_native.py``, 3–6× faster) — and ``backend="torch"``, always available and
used on CUDA.  ``"auto"`` takes the compiled loops on CPU when a C compiler could build them.  Why hand-written
loops rather than one library call: no library computes *all pairs* of these measures; in torch the fastest
exact per-pair formulation measured here is ``torch.bincount`` on 16-bit joint codes and a separable box
filter done as 3 + 3 shifted adds, with pairs spread over threads (one intra-op thread each).
"""
from __future__ import annotations

import math
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.proxy import _native

DEFAULT_SIZE = 64
DEFAULT_BINS = 32
DEFAULT_WINDOW = 9
DEFAULT_MARGIN = 4
FLAT_VARIANCE = 1e-6
MEASURES = ("mi", "ncc")        # the similarity measures (selection also has "random", which needs none)
BACKENDS = ("auto", "native", "torch")
TILE = 4
ROIS = ("label", "none")
IN_MEMORY_LIMIT = 2 << 30      # larger per-case arrays (thousands of cases) go to an unlinked temp file

ProgressFn = Callable[[int, int], None]


# ----------------------------------------------------------------------------------------------- ROI + cube

def roi_bounding_box(label: np.ndarray, margin: int = DEFAULT_MARGIN, name: str = "case") -> tuple[slice, ...]:
    """Slices of the foreground (label > 0) bounding box grown by ``margin`` voxels, clipped to the volume."""
    fg = np.asarray(label) > 0
    if not fg.any():
        raise DatasetError(f"{name}: label has no foreground voxels, so it has no region of interest",
                           "fix or remove this case's label, or use roi='none' (--roi none) to compare whole images")
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(fg.any(axis=other))
        lo = max(int(idx[0]) - margin, 0)
        hi = min(int(idx[-1]) + 1 + margin, fg.shape[axis])
        box.append(slice(lo, hi))
    return tuple(box)


def prepare_volume(image: np.ndarray, label: np.ndarray | None = None, *, roi: str = "none",
                   size: int = DEFAULT_SIZE, margin: int = DEFAULT_MARGIN, name: str = "case") -> torch.Tensor:
    """(C, X, Y, Z) image → (C, size, size, size) float32 cube, cropped to the label ROI when asked, z-scored."""
    check_roi(roi)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4:
        raise DatasetError(f"{name}: image has shape {img.shape}", "images must be (C, X, Y, Z) or (X, Y, Z)")
    if roi == "label":
        if label is None:
            raise DatasetError(f"{name}: has no label, so roi='label' has no region of interest",
                               "add the label file or use roi='none' (--roi none)")
        img = img[(slice(None),) + roi_bounding_box(label, margin, name)]
    if not np.isfinite(img).all():
        raise DatasetError(f"{name}: image contains NaN or infinite values", "fix the image file (re-export it)")
    cube = F.interpolate(torch.from_numpy(np.ascontiguousarray(img))[None], size=(size,) * 3,
                         mode="trilinear", align_corners=False)[0]
    flat = cube.reshape(cube.shape[0], -1).double()
    mean = flat.mean(1)
    std = flat.std(1, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))   # a constant channel becomes all zeros
    return ((cube.double() - mean[:, None, None, None]) / std[:, None, None, None]).float()


def check_roi(roi: str) -> None:
    if roi not in ROIS:
        raise ConfigError(f"roi = {roi!r} is not one of {list(ROIS)}",
                          "use 'label' (crop to the label's bounding box) or 'none' (whole image)")


# ----------------------------------------------------------------------------------------------- helpers

def new_array(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised array; above ``IN_MEMORY_LIMIT`` bytes a memory map of an anonymous temp file, so the
    OS pages it and thousands of cases do not need their whole stack in RAM."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size <= IN_MEMORY_LIMIT:
        return np.empty(shape, dtype=dtype)
    return np.memmap(tempfile.TemporaryFile(prefix="autoseg-proxy-"), dtype=dtype, mode="w+", shape=shape)


def _as_stack(volumes) -> torch.Tensor:
    """Accept (N, C, S, S, S), (N, S, S, S) or a list of (C, S, S, S) cubes; return float32 (N, C, S, S, S)."""
    if isinstance(volumes, (list, tuple)):
        volumes = torch.stack([torch.as_tensor(v) for v in volumes])
    vols = torch.as_tensor(volumes).float()
    if vols.ndim == 4:
        vols = vols[:, None]
    if vols.ndim != 5:
        raise ConfigError(f"volumes have shape {tuple(vols.shape)}", "pass (N, C, X, Y, Z) cubes from prepare_volume")
    return vols.contiguous()


def _run_rows(rows: Sequence[int], work: Callable[[int], int], device: torch.device,
              progress: ProgressFn | None, total: int) -> None:
    """Run ``work(row)`` (returns pairs done) for each row: on CPU over threads with one intra-op thread each."""
    done = 0
    lock = threading.Lock()

    def one(row: int) -> None:
        nonlocal done
        n = work(row)
        with lock:
            done += n
            if progress is not None:
                progress(done, total)

    if device.type != "cpu":
        for r in rows:
            one(r)
        return
    workers = max(1, torch.get_num_threads())
    if workers == 1:
        for r in rows:
            one(r)
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # each worker pins its own intra-op threads to 1 (OpenMP settings are per thread)
        with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for fut in [pool.submit(one, r) for r in rows]:
                fut.result()
    finally:
        torch.set_num_threads(previous)


def _row_order(n: int) -> list[int]:
    """Rows i of the upper triangle have n-1-i pairs: interleave long and short rows to balance threads."""
    order, lo, hi = [], 0, n - 2
    while lo <= hi:
        order.append(lo)
        if hi != lo:
            order.append(hi)
        lo, hi = lo + 1, hi - 1
    return order


# ----------------------------------------------------------------------------------------------- MI (Eq. 1)

def quantize(volumes: torch.Tensor, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """Bin index of every voxel, equal-width bins between each (case, channel)'s min and max (as numpy does)."""
    n, c = volumes.shape[:2]
    flat = volumes.reshape(n, c, -1)
    q = torch.empty(flat.shape, dtype=torch.int16)

    def one(i: int) -> int:                  # one volume at a time: float64 work stays in cache
        x = flat[i].double()
        lo = x.min(1, keepdim=True).values
        hi = x.max(1, keepdim=True).values
        span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        q[i] = torch.floor((x - lo) * (bins / span)).clamp_(0, bins - 1)
        return 0

    _run_rows(range(n), one, volumes.device, None, 0)
    return q


def _mi_from_counts(counts: torch.Tensor, bins: int) -> torch.Tensor:
    """MI in nats from joint counts (K, bins*bins): H(a) + H(b) - H(a, b), with 0·log 0 = 0."""
    p = counts.double().reshape(-1, bins, bins)
    p = p / p.sum((1, 2), keepdim=True)
    pa, pb = p.sum(2), p.sum(1)
    return (torch.xlogy(p, p).sum((1, 2)) - torch.xlogy(pa, pa).sum(1) - torch.xlogy(pb, pb).sum(1))


def pairwise_mi(volumes, bins: int = DEFAULT_BINS, device: str | torch.device = "cpu",
                progress: ProgressFn | None = None, backend: str = "auto") -> np.ndarray:
    """Symmetric (N, N) matrix of mutual information (nats, mean over channels); the diagonal is each entropy."""
    if not (isinstance(bins, int) and 2 <= bins <= 128):
        raise ConfigError(f"bins = {bins!r} must be an integer in 2–128", "e.g. bins=32")
    vols = _as_stack(volumes)
    device = torch.device(device)
    n, c = vols.shape[:2]
    lib = _native_lib(backend, device)
    if lib is not None:
        arr = vols.numpy()
        codes = new_array((n, c, int(np.prod(vols.shape[-3:]))), np.uint8)
        _run_rows(range(n), lambda i: _native.quantize(lib, arr, bins, i, codes) or 0, device, None, 0)
        return _pairwise_tiles(n, device, progress, lambda ia, jb, mask: sum(
            _native.mi_tile(lib, codes, bins, ch, ia, jb, mask) for ch in range(c)) / c)
    q = quantize(vols, bins).to(device)                      # (N, C, V) int16, joint code < 2^14
    qa = q * bins
    out = torch.zeros(n, n, dtype=torch.float64)
    minlength = bins * bins

    def row(i: int) -> int:
        js = range(i + 1, n)
        if not js:
            return 0
        counts = torch.stack([torch.stack([torch.bincount(qa[i, ch] + q[j, ch], minlength=minlength)
                                           for ch in range(c)]) for j in js])      # (J, C, B*B)
        mi = _mi_from_counts(counts.reshape(-1, minlength), bins).reshape(len(js), c).mean(1).cpu()
        out[i, i + 1:] = mi
        return len(js)

    _run_rows(_row_order(n), row, device, progress, n * (n - 1) // 2)
    diag = torch.stack([torch.stack([torch.bincount(qa[i, ch] + q[i, ch], minlength=minlength)
                                     for ch in range(c)]) for i in range(n)])
    out = out + out.T
    out.diagonal().copy_(_mi_from_counts(diag.reshape(-1, minlength), bins).reshape(n, c).mean(1).cpu())
    return out.numpy()


def _native_lib(backend: str, device: torch.device):
    """The compiled kernels when allowed and available (CPU only), else None (torch path)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend = {backend!r} is not one of {list(BACKENDS)}", "use auto, native or torch")
    if backend == "torch" or device.type != "cpu":
        return None
    lib = _native.load()
    if lib is None and backend == "native":
        raise ConfigError(f"the compiled proxy-data kernels are not available ({_native.LIBRARY.build_error or 'disabled'})",
                          "install a C compiler (cc/gcc/clang) or use backend='auto'")
    return lib


def _pairwise_tiles(n: int, device: torch.device, progress: ProgressFn | None,
                    tile_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Fill the upper triangle (with the diagonal) tile by tile, ``tile_fn(rows, cols, mask)``, then mirror it.

    Tiles of ``TILE`` × ``TILE`` cases let the compiled kernels reuse every volume read from memory for
    ``TILE`` pairs; tiles run in parallel threads.
    """
    blocks = [np.arange(s, min(s + TILE, n)) for s in range(0, n, TILE)]
    tiles = [(a, b) for a in range(len(blocks)) for b in range(a, len(blocks))]
    out = np.zeros((n, n), dtype=np.float64)

    def work(k: int) -> int:
        a, b = tiles[k]
        ia, jb = blocks[a], blocks[b]
        mask = np.ones((len(ia), len(jb)), dtype=bool) if a != b else ia[:, None] <= jb[None, :]
        values = tile_fn(ia, jb, mask.astype(np.uint8))
        block = out[ia[0]:ia[-1] + 1, jb[0]:jb[-1] + 1]
        block[mask] = values[mask]
        return int(mask.sum()) - (len(ia) if a == b else 0)

    _run_rows(range(len(tiles)), work, device, progress, n * (n - 1) // 2)
    return np.triu(out) + np.triu(out, 1).T


def mutual_information(a, b, bins: int = DEFAULT_BINS) -> float:
    """MI (nats) of two prepared cubes (C, S, S, S) or (S, S, S) of the same shape."""
    return float(pairwise_mi([torch.as_tensor(a).reshape(-1, *torch.as_tensor(a).shape[-3:]),
                              torch.as_tensor(b).reshape(-1, *torch.as_tensor(b).shape[-3:])], bins)[0, 1])


# ----------------------------------------------------------------------------------------------- NCC (Eq. 2)

def _shift_sum(x: torch.Tensor, dim: int, width: int) -> torch.Tensor:
    """Sums of ``width`` consecutive entries along ``dim`` ("valid" positions only) by shifted adds.

    A width divisible by 3 (the paper's 9) is a sum of 3 then a sum of three such sums: 4 adds instead of 8.
    """
    length = x.shape[dim] - width + 1
    if width % 3 == 0 and width > 3:
        step = width // 3
        part = _shift_sum(x, dim, step)
        out = part.narrow(dim, 0, length) + part.narrow(dim, step, length)
        out += part.narrow(dim, 2 * step, length)
        return out
    if width == 1:
        return x.clone()
    out = x.narrow(dim, 0, length) + x.narrow(dim, 1, length)
    for k in range(2, width):
        out += x.narrow(dim, k, length)
    return out


def box_sum(x: torch.Tensor, window: int = DEFAULT_WINDOW) -> torch.Tensor:
    """Sum over every ``window``³ box fully inside the last three dimensions (separable)."""
    for dim in (-3, -2, -1):
        x = _shift_sum(x, x.ndim + dim, window)
    return x


def local_statistics(volumes: torch.Tensor, window: int = DEFAULT_WINDOW) -> tuple[torch.Tensor, torch.Tensor]:
    """Per volume and channel: ``r`` = 1/(local std·window^1.5) and ``u`` = local mean/local std (0 where flat).

    Computed once per volume in float64, so a pair only needs the box sum of its product:
    box(a·b)·r_a·r_b − u_a·u_b = local covariance / (std_a·std_b) = local correlation.
    """
    n3 = float(window) ** 3
    r = torch.empty(volumes.shape[:2] + tuple(s - window + 1 for s in volumes.shape[-3:]))
    u = torch.empty_like(r)

    def one(i: int) -> int:                  # one volume at a time: float64 work stays in cache
        x = volumes[i].double()
        mean = box_sum(x, window) / n3
        var = (box_sum(x * x, window) / n3 - mean * mean).clamp_min(0)
        inv_std = torch.where(var > FLAT_VARIANCE, var.clamp_min(FLAT_VARIANCE).rsqrt(), torch.zeros_like(var))
        r[i] = inv_std / math.sqrt(n3)
        u[i] = mean * inv_std
        return 0

    _run_rows(range(volumes.shape[0]), one, volumes.device, None, 0)
    return r, u


def pairwise_ncc(volumes, window: int = DEFAULT_WINDOW, device: str | torch.device = "cpu",
                 progress: ProgressFn | None = None, backend: str = "auto") -> np.ndarray:
    """Symmetric (N, N) matrix of mean squared local correlation in ``window``³ windows (mean over channels)."""
    vols = _as_stack(volumes)
    if not (isinstance(window, int) and window >= 2):
        raise ConfigError(f"window = {window!r} must be an integer ≥ 2", "e.g. window=9 as in the proxy paper")
    if min(vols.shape[-3:]) < window:
        raise ConfigError(f"cube size {tuple(vols.shape[-3:])} is smaller than the NCC window {window}",
                          f"use size ≥ {window}")
    device = torch.device(device)
    n, c = vols.shape[:2]
    lib = _native_lib(backend, device)
    if lib is not None:
        # statistics on the (X', Y', Z) grid: the kernel sums along z over full rows, padded columns weigh 0
        X, Y, Z = vols.shape[-3:]
        arrays = (vols.numpy(),) + tuple(new_array((n, c, X - window + 1, Y - window + 1, Z)) for _ in range(2))
        _run_rows(range(n), lambda i: _native.local_stats(lib, arrays[0], i, window, FLAT_VARIANCE, *arrays[1:]) or 0,
                  device, None, 0)
        return _pairwise_tiles(n, device, progress, lambda ia, jb, mask: sum(
            _native.ncc_tile(lib, *arrays, ch, ia, jb, mask, window) for ch in range(c)) / c)
    r, u = local_statistics(vols, window)
    vols, r, u = vols.to(device), r.to(device), u.to(device)
    count = float(np.prod(r.shape[-3:]))
    out = torch.zeros(n, n, dtype=torch.float64)

    def pair_value(i: int, j: int) -> float:
        total = 0.0
        for ch in range(c):
            corr = box_sum(vols[i, ch] * vols[j, ch], window)
            corr.mul_(r[i, ch]).mul_(r[j, ch]).addcmul_(u[i, ch], u[j, ch], value=-1.0)
            flat = corr.reshape(-1)
            total += float(torch.dot(flat, flat)) / count
        return total / c

    def row(i: int) -> int:
        for j in range(i + 1, n):
            out[i, j] = pair_value(i, j)
        return n - 1 - i

    _run_rows(_row_order(n), row, device, progress, n * (n - 1) // 2)
    out = out + out.T
    for i in range(n):
        out[i, i] = pair_value(i, i)
    return out.numpy()


def local_ncc(a, b, window: int = DEFAULT_WINDOW) -> float:
    """Local NCC (Eq. 2) of two prepared cubes (C, S, S, S) or (S, S, S) of the same shape."""
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    return float(pairwise_ncc([ta.reshape(-1, *ta.shape[-3:]), tb.reshape(-1, *tb.shape[-3:])], window)[0, 1])


def pairwise_similarity(volumes, method: str, *, bins: int = DEFAULT_BINS, window: int = DEFAULT_WINDOW,
                        device: str | torch.device = "cpu", progress: ProgressFn | None = None) -> np.ndarray:
    """Dispatch to ``pairwise_mi`` or ``pairwise_ncc``."""
    if method == "mi":
        return pairwise_mi(volumes, bins=bins, device=device, progress=progress)
    if method == "ncc":
        return pairwise_ncc(volumes, window=window, device=device, progress=progress)
    raise ConfigError(f"method = {method!r} is not a similarity measure", "use 'mi' or 'ncc'")
