"""Optional compiled kernels for the all-pairs MI and local NCC (a speed-up, never a requirement).

Why hand-written C: no library computes these measures for all pairs of thousands of volumes, and the torch
formulation (see ``similarity.py``) must write every intermediate volume to memory — about 20 passes per pair.
These loops do one pass per pair that stays in the CPU caches: the NCC box filter uses running sums along
x and y and 3 + 3 shifted sums along z fused with the final reduction; the
MI joint histograms of a few pairs are filled chunk by chunk with two interleaved sub-histograms each.

The C source is compiled once per machine with the system C compiler (``$CC`` or ``cc``) into the cache dir
and loaded with ``ctypes``, which releases the GIL during each call so rows run in parallel Python threads.
Without a compiler (or with ``AUTOSEG_NATIVE=0``) ``load()`` returns ``None`` and callers use the torch path,
which gives the same values to within float32 rounding (the tests check both against float64 references).
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from AutoSegCore.utils import native

SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

/* dst[p] = sum_{t<w} src[p + t*stride] for p < n (src holds n + (w-1)*stride values). */
static void window_sum(const float *restrict src, float *restrict dst, float *restrict tmp, int64_t n, int64_t stride, int w)
{
    if (w % 3 == 0 && w > 3) {               /* w = 3m: sums of m, then three of those: fewer passes */
        const int m = w / 3;
        const int64_t n3 = n + 2 * m * stride;
        for (int64_t p = 0; p < n3; ++p) tmp[p] = src[p];
        for (int t = 1; t < m; ++t)
            for (int64_t p = 0; p < n3; ++p) tmp[p] += src[p + t * stride];
        for (int64_t p = 0; p < n; ++p) dst[p] = tmp[p] + tmp[p + m * stride] + tmp[p + 2 * m * stride];
        return;
    }
    for (int64_t p = 0; p < n; ++p) dst[p] = src[p];
    for (int t = 1; t < w; ++t)
        for (int64_t p = 0; p < n; ++p) dst[p] += src[p + t * stride];
}

/* Local NCC for the pairs (ia[i], jb[j]) with mask[i*nj+j] != 0 of one tile.  vols: cases at vstride
   (X*Y*Z floats each); r, u: per case at sstride, on the (X-w+1, Y-w+1, Z) grid of window corners with
   r = 1/(local std * w^1.5), u = local mean / local std, both 0 on flat windows and for z >= Z-w+1.
   Box sums: running sums along x (planes) and y (rows), 3 + 3 shifted adds along z fused with the
   correlation and its square.  The pairs of a tile advance plane by plane together, so each plane of a
   volume and of its local statistics is read from memory once per tile, not once per pair. */
int ncc_tile(const float *vols, const float *r, const float *u, int64_t vstride, int64_t sstride,
             const int64_t *ia, int ni, const int64_t *jb, int nj, const uint8_t *mask,
             int X, int Y, int Z, int w, double *out)
{
    const int Xo = X - w + 1, Yo = Y - w + 1, Zo = Z - w + 1;
    const int64_t plane = (int64_t)Y * Z, oplane = (int64_t)Yo * Z, np = (int64_t)ni * nj;
    float *state = (float *)malloc(sizeof(float) * plane * np);
    float *sx = (float *)malloc(sizeof(float) * (plane + w));
    float *sxy = (float *)malloc(sizeof(float) * (oplane + w));
    float *sz = (float *)malloc(sizeof(float) * oplane);
    float *tmp = (float *)malloc(sizeof(float) * (plane + w));
    if (!state || !sx || !sxy || !sz || !tmp) { free(state); free(sx); free(sxy); free(sz); free(tmp); return 1; }
    for (int t = 0; t < w; ++t) { sx[plane + t] = 0.0f; sxy[oplane + t] = 0.0f; }
    for (int64_t q = 0; q < np; ++q) out[q] = 0.0;
    for (int i = 0; i < ni; ++i)
        for (int j = 0; j < nj; ++j) {
            if (!mask[i * nj + j]) continue;
            float *st = state + (int64_t)(i * nj + j) * plane;
            const float *a = vols + ia[i] * vstride, *b = vols + jb[j] * vstride;
            for (int64_t p = 0; p < plane; ++p) st[p] = 0.0f;
            for (int t = 0; t < w - 1; ++t)
                for (int64_t p = 0; p < plane; ++p) st[p] += a[t * plane + p] * b[t * plane + p];
        }
    for (int x = 0; x < Xo; ++x) {
        for (int i = 0; i < ni; ++i)
            for (int j = 0; j < nj; ++j) {
                if (!mask[i * nj + j]) continue;
                float *st = state + (int64_t)(i * nj + j) * plane;
                const float *a = vols + ia[i] * vstride, *b = vols + jb[j] * vstride;
                const float *an = a + (int64_t)(x + w - 1) * plane, *bn = b + (int64_t)(x + w - 1) * plane;
                const float *ao = a + (int64_t)x * plane, *bo = b + (int64_t)x * plane;
                for (int64_t p = 0; p < plane; ++p) {        /* running sum along x */
                    float s = st[p] + an[p] * bn[p];
                    sx[p] = s;
                    st[p] = s - ao[p] * bo[p];
                }
                /* along y: running sums over rows, vectorised along z */
                for (int z = 0; z < Z; ++z) sxy[z] = sx[z];
                for (int t = 1; t < w; ++t)
                    for (int z = 0; z < Z; ++z) sxy[z] += sx[(int64_t)t * Z + z];
                for (int y = 1; y < Yo; ++y) {
                    float *d = sxy + (int64_t)y * Z;
                    const float *prev = d - Z, *in = sx + (int64_t)(y + w - 1) * Z, *outr = sx + (int64_t)(y - 1) * Z;
                    for (int z = 0; z < Z; ++z) d[z] = prev[z] + in[z] - outr[z];
                }
                const float *rap = r + ia[i] * sstride + x * oplane, *uap = u + ia[i] * sstride + x * oplane;
                const float *rbp = r + jb[j] * sstride + x * oplane, *ubp = u + jb[j] * sstride + x * oplane;
                float acc = 0.0f;
                if (w % 3 == 0) {      /* along z as 3 sums of w/3, fused with the correlation */
                    const int m = w / 3;
                    const int64_t n3 = oplane + 2 * m;
                    if (m == 3) {                      /* the paper's 9: one fused pass */
                        for (int64_t p = 0; p < n3; ++p) tmp[p] = sxy[p] + sxy[p + 1] + sxy[p + 2];
                    } else {
                        for (int64_t p = 0; p < n3; ++p) tmp[p] = sxy[p];
                        for (int t = 1; t < m; ++t)
                            for (int64_t p = 0; p < n3; ++p) tmp[p] += sxy[p + t];
                    }
#pragma omp simd reduction(+:acc)
                    for (int64_t p = 0; p < oplane; ++p) {
                        float c = (tmp[p] + tmp[p + m] + tmp[p + 2 * m]) * rap[p] * rbp[p] - uap[p] * ubp[p];
                        acc += c * c;
                    }
                } else {
                    window_sum(sxy, sz, tmp, oplane, 1, w);
#pragma omp simd reduction(+:acc)
                    for (int64_t p = 0; p < oplane; ++p) {
                        float c = sz[p] * rap[p] * rbp[p] - uap[p] * ubp[p];
                        acc += c * c;
                    }
                }
                out[i * nj + j] += acc;
            }
    }
    for (int64_t q = 0; q < np; ++q) out[q] /= (double)Xo * Yo * Zo;
    free(state); free(sx); free(sxy); free(sz); free(tmp);
    return 0;
}

/* Mutual information (nats) for the masked pairs of a tile, from uint8 bin codes (cases at cstride). */
int mi_tile(const uint8_t *codes, int64_t cstride, const int64_t *ia, int ni, const int64_t *jb, int nj,
            const uint8_t *mask, int64_t V, int bins, double *out)
{
    const int64_t nb2 = (int64_t)bins * bins, np = (int64_t)ni * nj, chunk = 16384;
    uint32_t *h = (uint32_t *)calloc(2 * nb2 * np, sizeof(uint32_t));
    double *ha = (double *)malloc(sizeof(double) * bins), *hb = (double *)malloc(sizeof(double) * bins);
    if (!h || !ha || !hb) { free(h); free(ha); free(hb); return 1; }
    for (int64_t start = 0; start < V; start += chunk) {
        const int64_t len = V - start < chunk ? V - start : chunk;
        for (int i = 0; i < ni; ++i)
            for (int j = 0; j < nj; ++j) {
                if (!mask[i * nj + j]) continue;
                const uint8_t *qa = codes + ia[i] * cstride + start, *qb = codes + jb[j] * cstride + start;
                uint32_t *h0 = h + 2 * nb2 * (i * nj + j), *h1 = h0 + nb2;
                int64_t v = 0;
                for (; v + 2 <= len; v += 2) {   /* two sub-histograms: runs of equal bins do not stall */
                    h0[qa[v] * bins + qb[v]]++;
                    h1[qa[v + 1] * bins + qb[v + 1]]++;
                }
                for (; v < len; ++v) h0[qa[v] * bins + qb[v]]++;
            }
    }
    const double logV = log((double)V);
    for (int64_t q = 0; q < np; ++q) {
        out[q] = 0.0;
        if (!mask[q]) continue;
        const uint32_t *h0 = h + 2 * nb2 * q, *h1 = h0 + nb2;
        double sj = 0.0, sa = 0.0, sb = 0.0;
        for (int i = 0; i < bins; ++i) { ha[i] = 0.0; hb[i] = 0.0; }
        for (int i = 0; i < bins; ++i)
            for (int j = 0; j < bins; ++j) {
                const double c = (double)h0[i * bins + j] + (double)h1[i * bins + j];
                ha[i] += c; hb[j] += c;
                if (c > 0) sj += c * log(c);
            }
        for (int i = 0; i < bins; ++i) {
            if (ha[i] > 0) sa += ha[i] * log(ha[i]);
            if (hb[i] > 0) sb += hb[i] * log(hb[i]);
        }
        out[q] = (sj - sa - sb) / (double)V + logV;
    }
    free(h); free(ha); free(hb);
    return 0;
}

/* Bin codes of one volume: equal-width bins between its min and max, computed in double exactly as
   torch.floor((x - lo) * (bins / (hi - lo))) does (so both backends give identical codes). */
int quantize_u8(const float *x, int64_t V, int bins, uint8_t *out)
{
    float lo = x[0], hi = x[0];
    for (int64_t v = 1; v < V; ++v) { if (x[v] < lo) lo = x[v]; if (x[v] > hi) hi = x[v]; }
    const double span = hi > lo ? (double)hi - (double)lo : 1.0;
    const double scale = (double)bins / span;
    for (int64_t v = 0; v < V; ++v) {
        double t = floor(((double)x[v] - (double)lo) * scale);
        if (t > bins - 1) t = bins - 1;
        if (t < 0) t = 0;
        out[v] = (uint8_t)t;
    }
    return 0;
}

/* Local statistics of one volume in double: r = 1/(std * w^1.5), u = mean/std over every w^3 window
   (0 where the variance <= flat), written on the (X-w+1, Y-w+1, Z) grid with zeros for z >= Z-w+1. */
int local_stats(const float *x, int X, int Y, int Z, int w, double flat, float *r, float *u)
{
    const int Xo = X - w + 1, Yo = Y - w + 1, Zo = Z - w + 1;
    const int64_t plane = (int64_t)Y * Z;
    double *s1 = (double *)calloc(plane, sizeof(double)), *s2 = (double *)calloc(plane, sizeof(double));
    double *y1 = (double *)malloc(sizeof(double) * Z), *y2 = (double *)malloc(sizeof(double) * Z);
    if (!s1 || !s2 || !y1 || !y2) { free(s1); free(s2); free(y1); free(y2); return 1; }
    const double n3 = (double)w * w * w, norm = 1.0 / sqrt(n3);
    for (int t = 0; t < w - 1; ++t)
        for (int64_t p = 0; p < plane; ++p) { double v = x[t * plane + p]; s1[p] += v; s2[p] += v * v; }
    for (int xo = 0; xo < Xo; ++xo) {
        const float *in = x + (int64_t)(xo + w - 1) * plane, *old = x + (int64_t)xo * plane;
        for (int64_t p = 0; p < plane; ++p) { double v = in[p]; s1[p] += v; s2[p] += v * v; }
        for (int z = 0; z < Z; ++z) { y1[z] = 0.0; y2[z] = 0.0; }
        for (int t = 0; t < w - 1; ++t)
            for (int z = 0; z < Z; ++z) { y1[z] += s1[(int64_t)t * Z + z]; y2[z] += s2[(int64_t)t * Z + z]; }
        for (int yo = 0; yo < Yo; ++yo) {
            const int64_t add = (int64_t)(yo + w - 1) * Z, sub = (int64_t)yo * Z;
            for (int z = 0; z < Z; ++z) { y1[z] += s1[add + z]; y2[z] += s2[add + z]; }
            float *rr = r + ((int64_t)xo * Yo + yo) * Z, *uu = u + ((int64_t)xo * Yo + yo) * Z;
            for (int zo = 0; zo < Z; ++zo) {
                if (zo >= Zo) { rr[zo] = 0.0f; uu[zo] = 0.0f; continue; }
                double a = 0.0, b = 0.0;
                for (int t = 0; t < w; ++t) { a += y1[zo + t]; b += y2[zo + t]; }
                const double mean = a / n3;
                double var = b / n3 - mean * mean;
                if (var > flat) {
                    const double inv = 1.0 / sqrt(var);
                    rr[zo] = (float)(inv * norm); uu[zo] = (float)(mean * inv);
                } else { rr[zo] = 0.0f; uu[zo] = 0.0f; }
            }
            for (int z = 0; z < Z; ++z) { y1[z] -= s1[sub + z]; y2[z] -= s2[sub + z]; }
        }
        for (int64_t p = 0; p < plane; ++p) { double v = old[p]; s1[p] -= v; s2[p] -= v * v; }
    }
    free(s1); free(s2); free(y1); free(y2);
    return 0;
}
"""

def _declare(lib: ctypes.CDLL) -> None:
    c_long, c_int = ctypes.c_int64, ctypes.c_int
    ptr = ctypes.c_void_p
    lib.ncc_tile.restype = c_int
    lib.ncc_tile.argtypes = [ptr, ptr, ptr, c_long, c_long, ptr, c_int, ptr, c_int, ptr,
                             c_int, c_int, c_int, c_int, ptr]
    lib.quantize_u8.restype = c_int
    lib.quantize_u8.argtypes = [ptr, c_long, c_int, ptr]
    lib.local_stats.restype = c_int
    lib.local_stats.argtypes = [ptr, c_int, c_int, c_int, c_int, ctypes.c_double, ptr, ptr]
    lib.mi_tile.restype = c_int
    lib.mi_tile.argtypes = [ptr, c_long, ptr, c_int, ptr, c_int, ptr, c_long, c_int, ptr]


LIBRARY = native.NativeLibrary("proxy_kernels", SOURCE, _declare)


def load(cache_dir: str | Path | None = None) -> ctypes.CDLL | None:
    """The compiled kernels, building them on first use; ``None`` when disabled or no compiler works
    (``LIBRARY.build_error`` says why)."""
    return LIBRARY.load(cache_dir)


def _ptr(array: np.ndarray, offset: int = 0) -> int:
    return array.ctypes.data + offset * array.itemsize


def ncc_tile(lib, vols: np.ndarray, r: np.ndarray, u: np.ndarray, ch: int, ia: np.ndarray, jb: np.ndarray,
             mask: np.ndarray, window: int) -> np.ndarray:
    """Local NCC of cases ``ia`` × ``jb`` where ``mask`` (channel ``ch``); ``r``/``u`` padded along z to the cube."""
    c = vols.shape[1]
    X, Y, Z = vols.shape[-3:]
    vsize, ssize = X * Y * Z, int(np.prod(r.shape[-3:]))
    ia, jb = np.ascontiguousarray(ia, dtype=np.int64), np.ascontiguousarray(jb, dtype=np.int64)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    out = np.zeros(len(ia) * len(jb), dtype=np.float64)
    status = lib.ncc_tile(_ptr(vols, ch * vsize), _ptr(r, ch * ssize), _ptr(u, ch * ssize), c * vsize, c * ssize,
                          _ptr(ia), len(ia), _ptr(jb), len(jb), _ptr(mask), X, Y, Z, window, _ptr(out))
    if status:
        raise MemoryError("ncc_tile: out of memory")
    return out.reshape(len(ia), len(jb))


def mi_tile(lib, codes: np.ndarray, bins: int, ch: int, ia: np.ndarray, jb: np.ndarray,
            mask: np.ndarray) -> np.ndarray:
    """MI of cases ``ia`` × ``jb`` where ``mask`` (channel ``ch``) from uint8 bin codes (N, C, V)."""
    _, c, v = codes.shape
    ia, jb = np.ascontiguousarray(ia, dtype=np.int64), np.ascontiguousarray(jb, dtype=np.int64)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    out = np.zeros(len(ia) * len(jb), dtype=np.float64)
    status = lib.mi_tile(_ptr(codes, ch * v), c * v, _ptr(ia), len(ia), _ptr(jb), len(jb), _ptr(mask), v, bins,
                         _ptr(out))
    if status:
        raise MemoryError("mi_tile: out of memory")
    return out.reshape(len(ia), len(jb))


def quantize(lib, vols: np.ndarray, bins: int, i: int, codes: np.ndarray) -> None:
    """Fill ``codes[i]`` (uint8, (C, V)) with the bin codes of case ``i`` of ``vols`` (N, C, X, Y, Z)."""
    c = vols.shape[1]
    v = codes.shape[2]
    for ch in range(c):
        lib.quantize_u8(_ptr(vols, (i * c + ch) * v), v, bins, _ptr(codes, (i * c + ch) * v))


def local_stats(lib, vols: np.ndarray, i: int, window: int, flat: float, r: np.ndarray, u: np.ndarray) -> None:
    """Fill ``r[i]``/``u[i]`` ((C, Xo, Yo, Z), z-padded) with the local statistics of case ``i``."""
    c = vols.shape[1]
    X, Y, Z = vols.shape[-3:]
    ssize = int(np.prod(r.shape[-3:]))
    for ch in range(c):
        if lib.local_stats(_ptr(vols, (i * c + ch) * X * Y * Z), X, Y, Z, window, flat,
                           _ptr(r, (i * c + ch) * ssize), _ptr(u, (i * c + ch) * ssize)):
            raise MemoryError("local_stats: out of memory")
