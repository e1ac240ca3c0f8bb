"""CUDA kernel choices of a training process: TF32, cuDNN autotuning for the fixed canvas, or deterministic kernels
(``AUTOSEG_DETERMINISTIC=1``) for a bit-exact resume."""
from __future__ import annotations

import os

import torch

DETERMINISTIC_ENV = "AUTOSEG_DETERMINISTIC"    # 1: deterministic CUDA kernels (bit-exact resume), no cudnn.benchmark


def deterministic_wanted() -> bool:
    return os.environ.get(DETERMINISTIC_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """CUDA kernel choices for a fixed-canvas run: TF32 for fp32 convolutions and matmuls, ``cudnn.benchmark``
    (the canvas never changes, so the tuned algorithm is reused every step) — or, with ``deterministic``,
    deterministic kernels and no autotuning, so that an interrupted run resumes bit-exactly on the same GPU."""
    if device.type != "cuda":
        return
    # the legacy-compatible calls: setting torch ≥ 2.9's per-backend ``fp32_precision`` instead makes every later
    # read of ``torch.backends.cuda.matmul.allow_tf32`` (profilers, inductor, libraries) raise "mix of the legacy
    # and new APIs"
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
