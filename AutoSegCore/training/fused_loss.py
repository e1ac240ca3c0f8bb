"""Dice + cross-entropy and the training confusion matrix in two passes over the logits (compiled C, CPU).

Why hand-written: MONAI's ``DiceCELoss`` (softmax, log-softmax, one-hot, products and sums, then autograd
through each) makes ≈ 20 passes over the logits; on the 3-level proxy net that was ≈ 12 of a ≈ 65 ms step
(batch 4 at 48×64×48, 2 threads, docs/performance.md).  Here the forward is one pass (softmax, CE, per-class
intersections and sums) and the backward one more, with the gradient written in closed form:
``dL/dz = p ⊙ (g − Σₖ pₖ gₖ) + (p − y) / N`` with ``g = dDice/dp``.  Same value and gradient as MONAI's
(tests compare both on real logits); no library offers a fused Dice + CE.  The per-step train Dice
(``confusion``) reads the logits once instead of ``max`` + index arithmetic + ``bincount``.

Used only where it applies — float32 logits on the CPU with the compiled kernels available (``AUTOSEG_NATIVE``,
a C compiler) — and MONAI's loss otherwise.  The kernels run on the calling thread: spreading them over Python
threads was slower here (torch's OpenMP workers still spin on the other core after each op), and one thread
makes the sums independent of the thread count.
"""
from __future__ import annotations

import ctypes

import torch
from monai.losses import DiceCELoss

from AutoSegCore.utils import native

SMOOTH = 1e-5          # MONAI DiceLoss's smooth_nr = smooth_dr default inside DiceCELoss
MAX_CLASSES = 64

SOURCE = r"""
#include <stdint.h>
#if defined(__x86_64__) && defined(__GLIBC__)
/* glibc's vector maths (libmvec) without -ffast-math, which would assume no NaN/Inf in the logits */
float expf(float) __attribute__((simd("notinbranch"), nothrow, const));
float logf(float) __attribute__((simd("notinbranch"), nothrow, const));
#else
#include <math.h>
#endif
#define BLK 128
#define MAXC 64

/* Logits of one sample: class c at voxel v is z[c * cs + v * vs] (cs = V, vs = 1 for NCDHW; cs = 1, vs = C for
   channels-last).  Blocks of BLK voxels are copied to a planar buffer (zt[c * BLK + i]) so that every loop
   below runs over contiguous voxels whatever the layout. */
static void load_block(const float *restrict z, int C, int64_t cs, int64_t vs, int64_t b0, int n,
                       float *restrict zt)
{
    if (vs == 1) {
        for (int c = 0; c < C; ++c)
            _Pragma("omp simd") for (int i = 0; i < n; ++i) zt[c * BLK + i] = z[c * cs + b0 + i];
    } else {
        for (int i = 0; i < n; ++i)
            for (int c = 0; c < C; ++c) zt[c * BLK + i] = z[c * cs + (b0 + i) * vs];
    }
}

/* Voxels [v0, v1) of one sample; y: V labels.  Writes the softmax to p (planar: p[c * V + v]) and adds
   {intersection[C], sum p[C], count[C], sum CE} to stats.  Returns 1 if a label is >= C. */
int dicece_forward(const float *restrict z, const uint8_t *restrict y, int C, int64_t V, int64_t cs, int64_t vs,
                   int64_t v0, int64_t v1, float *restrict p, double *restrict stats)
{
    float zt[MAXC * BLK], m[BLK], s[BLK], zy[BLK];
    int bad = 0;
    if (C > MAXC) return 1;
    for (int64_t b0 = v0; b0 < v1; b0 += BLK) {
        const int n = (int)((v1 - b0) < BLK ? (v1 - b0) : BLK);
        const uint8_t *yb = y + b0;
        load_block(z, C, cs, vs, b0, n, zt);
        _Pragma("omp simd reduction(|:bad)") for (int i = 0; i < n; ++i) {
            m[i] = zt[i]; s[i] = 0.f; zy[i] = 0.f; bad |= yb[i] >= C;
        }
        for (int c = 1; c < C; ++c)
            _Pragma("omp simd") for (int i = 0; i < n; ++i) m[i] = zt[c * BLK + i] > m[i] ? zt[c * BLK + i] : m[i];
        for (int c = 0; c < C; ++c) {
            float *pc = p + c * V + b0;
            _Pragma("omp simd") for (int i = 0; i < n; ++i) {
                const float e = expf(zt[c * BLK + i] - m[i]); pc[i] = e; s[i] += e;
            }
        }
        _Pragma("omp simd") for (int i = 0; i < n; ++i) s[i] = 1.f / s[i];
        for (int c = 0; c < C; ++c) {
            float *pc = p + c * V + b0;
            float inter = 0.f, psum = 0.f, cnt = 0.f;
            _Pragma("omp simd reduction(+:inter,psum,cnt)") for (int i = 0; i < n; ++i) {
                const float pv = pc[i] * s[i];
                const float hit = (yb[i] == c) ? 1.f : 0.f;
                pc[i] = pv; psum += pv; inter += hit * pv; cnt += hit; zy[i] += hit * zt[c * BLK + i];
            }
            stats[c] += inter; stats[C + c] += psum; stats[2 * C + c] += cnt;
        }
        float ce = 0.f;              /* log-sum-exp minus the label's logit: m - log(1 / sum e) - z_y */
        _Pragma("omp simd reduction(+:ce)") for (int i = 0; i < n; ++i) ce += m[i] - logf(s[i]) - zy[i];
        stats[3 * C] += ce;
    }
    return bad;
}

/* g = scale * (p_c (b_c + inv - s) + [y = c] (a_y p_y - inv)),  s = a_y p_y + sum_k p_k b_k,
   where dDice/dp_c = a_c [y = c] + b_c for this sample and inv = 1 / (number of voxels in the batch).
   p is planar (as dicece_forward wrote it); g has the logits' layout (cs, vs). */
void dicece_backward(const float *restrict p, const uint8_t *restrict y, int C, int64_t V, int64_t cs, int64_t vs,
                     int64_t v0, int64_t v1, const float *restrict a, const float *restrict bb, float inv,
                     float scale, float *restrict g)
{
    float gt[MAXC * BLK], s[BLK], t[BLK];
    for (int64_t b0 = v0; b0 < v1; b0 += BLK) {
        const int n = (int)((v1 - b0) < BLK ? (v1 - b0) : BLK);
        const uint8_t *yb = y + b0;
        _Pragma("omp simd") for (int i = 0; i < n; ++i) { s[i] = 0.f; t[i] = 0.f; }
        for (int c = 0; c < C; ++c) {
            const float *pc = p + c * V + b0;
            const float ac = a[c], bc = bb[c];
            _Pragma("omp simd") for (int i = 0; i < n; ++i) {
                const float hit = (yb[i] == c) ? 1.f : 0.f;
                s[i] += pc[i] * (bc + hit * ac);
                t[i] += hit * ac * pc[i];
            }
        }
        for (int c = 0; c < C; ++c) {
            const float *pc = p + c * V + b0;
            float *gc = vs == 1 ? g + c * cs + b0 : gt + c * BLK;
            const float bc = bb[c] + inv;
            _Pragma("omp simd") for (int i = 0; i < n; ++i) {
                const float hit = (yb[i] == c) ? 1.f : 0.f;
                gc[i] = scale * (pc[i] * (bc - s[i]) + hit * (t[i] - inv));
            }
        }
        if (vs != 1)
            for (int i = 0; i < n; ++i)
                for (int c = 0; c < C; ++c) g[c * cs + (b0 + i) * vs] = gt[c * BLK + i];
    }
}

/* conf[pred * C + y] += 1 over [v0, v1) of one sample (z laid out as in load_block); pred = the first
   largest logit, as max().indices picks it.  Labels >= C are skipped (dicece_forward reports them). */
void confusion_counts(const float *restrict z, const uint8_t *restrict y, int C, int64_t cs, int64_t vs,
                      int64_t v0, int64_t v1, int64_t *restrict conf)
{
    float zt[MAXC * BLK], best[BLK];
    int arg[BLK];
    if (C > MAXC) return;
    for (int64_t b0 = v0; b0 < v1; b0 += BLK) {
        const int n = (int)((v1 - b0) < BLK ? (v1 - b0) : BLK);
        load_block(z, C, cs, vs, b0, n, zt);
        _Pragma("omp simd") for (int i = 0; i < n; ++i) { best[i] = zt[i]; arg[i] = 0; }
        for (int c = 1; c < C; ++c)
            _Pragma("omp simd") for (int i = 0; i < n; ++i) {
                const int more = zt[c * BLK + i] > best[i];
                best[i] = more ? zt[c * BLK + i] : best[i]; arg[i] = more ? c : arg[i];
            }
        for (int i = 0; i < n; ++i)
            if (y[b0 + i] < C) conf[arg[i] * C + y[b0 + i]] += 1;
    }
}
"""

def _declare(lib: ctypes.CDLL) -> None:
    ptr, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.dicece_forward.restype = i32
    lib.dicece_forward.argtypes = [ptr, ptr, i32, i64, i64, i64, i64, i64, ptr, ptr]
    lib.dicece_backward.restype = None
    lib.dicece_backward.argtypes = [ptr, ptr, i32, i64, i64, i64, i64, i64, ptr, ptr, f32, f32, ptr]
    lib.confusion_counts.restype = None
    lib.confusion_counts.argtypes = [ptr, ptr, i32, i64, i64, i64, i64, ptr]


LIBRARY = native.NativeLibrary("loss_kernels", SOURCE, _declare)
load = LIBRARY.load


def available(device: torch.device) -> bool:
    """Whether the fused kernels run for tensors on ``device`` (CPU, compiled kernels built)."""
    return device.type == "cpu" and load() is not None


def applies(logits: torch.Tensor) -> bool:
    return (logits.dtype == torch.float32 and logits.ndim >= 3 and logits.shape[1] <= MAX_CLASSES
            and available(logits.device))


def _label_error(classes: int) -> ValueError:
    return ValueError(f"a label value is outside 0..{classes - 1} for a network with {classes} output classes")


def _flat(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(B, C, V) logits without a copy when NCDHW- or channels-last-contiguous, (B, V) uint8 labels, and the
    class / voxel strides the kernels index with (keeping the layout keeps the gradient in the net's layout)."""
    b, c = logits.shape[:2]
    z = logits.detach().reshape(b, c, -1)
    v = z.shape[2]
    if z.stride() not in ((c * v, v, 1), (c * v, 1, c)):
        z = z.contiguous()
    y = target.reshape(b, -1)
    if y.shape[1] != v:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    if y.dtype != torch.uint8:                   # labels are class indices < MAX_CLASSES; uint8 reads 8× less
        if y.is_floating_point():
            y = y.round()
        if bool((y < 0).any()):
            raise _label_error(c)
        y = y.clamp(max=255).to(torch.uint8)
    return z, y.contiguous(), z.stride(1), z.stride(2)


class _DiceCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lib = load()
        z, y, cs, vs = _flat(logits, target)
        b, c, v = z.shape
        p = torch.empty((b, c, v), dtype=torch.float32)        # the softmax, planar, for the backward
        per_sample = torch.zeros(b, 3 * c + 1, dtype=torch.float64)
        for i in range(b):
            if lib.dicece_forward(z[i].data_ptr(), y[i].data_ptr(), c, v, cs, vs, 0, v, p[i].data_ptr(),
                                  per_sample[i].data_ptr()):
                raise _label_error(c)
        inter, psum, count = per_sample[:, :c], per_sample[:, c:2 * c], per_sample[:, 2 * c:3 * c]
        den = psum + count + SMOOTH
        num = 2 * inter + SMOOTH
        dice = (1 - num / den).mean()                       # MONAI: mean over samples and classes
        ce = per_sample[:, 3 * c].sum() / (b * v)           # CrossEntropyLoss: mean over voxels
        a = (-2.0 / (b * c * den)).float()                  # dDice/dp = a [y = c] + b_c
        bb = (num / (b * c * den * den)).float()
        ctx.save_for_backward(p, y, a, bb)
        ctx.logits_shape, ctx.layout = logits.shape, z.stride()
        return (dice + ce).to(logits.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        lib = load()
        p, y, a, bb = ctx.saved_tensors
        b, c, v = p.shape
        g = torch.empty_strided((b, c, v), ctx.layout, dtype=torch.float32)   # the logits' layout
        cs, vs = g.stride(1), g.stride(2)
        inv, scale = 1.0 / (b * v), float(grad_output)
        for i in range(b):
            lib.dicece_backward(p[i].data_ptr(), y[i].data_ptr(), c, v, cs, vs, 0, v, a[i].data_ptr(),
                                bb[i].data_ptr(), inv, scale, g[i].data_ptr())
        return g.view(ctx.logits_shape), None


class FusedDiceCELoss(torch.nn.Module):
    """``DiceCELoss(to_onehot_y=True, softmax=True)`` with its defaults, fused on CPU; MONAI's elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.reference = DiceCELoss(to_onehot_y=True, softmax=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if applies(logits):
            return _DiceCE.apply(logits, target)
        return self.reference(logits, target)


def confusion(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """(C, C) int64 counts, rows = predicted class (first argmax), columns = label; ``None`` if not applicable."""
    if not applies(logits):
        return None
    lib = load()
    z, y, cs, vs = _flat(logits, target)
    b, c, v = z.shape
    counts = torch.zeros(c * c, dtype=torch.int64)
    for i in range(b):
        lib.confusion_counts(z[i].data_ptr(), y[i].data_ptr(), c, cs, vs, 0, v, counts.data_ptr())
    return counts.view(c, c)
