"""How a training run uses its device, apart from the training loop (``trainer.py``): the training canvas, the
precision (``training.amp``), CUDA kernel choices, the memory layout, where the cases live (``case_bank``),
counting on the device without a host sync, and a GPU out-of-memory as a one-line fault."""
from __future__ import annotations

import os

import numpy as np
import torch

from AutoSegCore.errors import ConfigError, OutOfDeviceMemory
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.training.augment import CaseBank, host_reads_are_free

MAX_PATCH_VOXELS = 96 * 96 * 96   # CPU-friendly default; a user/config patch_size overrides it
DETERMINISTIC_ENV = "AUTOSEG_DETERMINISTIC"    # 1: deterministic CUDA kernels (bit-exact resume), no cudnn.benchmark
BANK_SHARE = 0.5            # the cases live on the GPU when they take at most this share of its free memory


def round_up(value: int, divisor: int) -> int:
    return int(-(-value // divisor) * divisor)


def choose_patch(shapes: list[tuple[int, ...]], divisor: tuple[int, int, int], requested=None,
                 max_voxels: int = MAX_PATCH_VOXELS) -> tuple[int, int, int]:
    """The training canvas: the largest case shape (whole volumes fit) unless that exceeds ``max_voxels``."""
    if requested:
        return tuple(round_up(int(s), d) for s, d in zip(requested, divisor))
    canvas = [round_up(max(s[i] for s in shapes), divisor[i]) for i in range(3)]
    while np.prod(canvas) > max_voxels:
        i = int(np.argmax(canvas))
        if canvas[i] <= divisor[i]:
            break
        canvas[i] -= divisor[i]
    return tuple(int(c) for c in canvas)


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``training.amp`` (docs/performance.md), None for fp32.

    ``auto``: on CUDA fp32 with TF32 — the trainer resolves ``auto`` first by measuring on the GPU
    (``precision.choose_precision``), so this is the unmeasured default (a probe); on CPU bf16 where the CPU has
    native bf16 (AVX-512 bf16), else fp32.  ``bf16`` and
    ``fp16`` force that type (fp16 only on CUDA, always with a GradScaler); ``on`` (older configs) is the
    device's reduced type: bf16, or fp16 on a GPU without bf16."""
    if setting == "off":
        return None
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if setting == "bf16" and not bf16:
            raise ConfigError(f"training.amp = bf16 but {torch.cuda.get_device_name(device)} has no bf16",
                              "set training.amp to fp16, off or auto")
        if setting in ("bf16", "fp16"):
            return torch.bfloat16 if setting == "bf16" else torch.float16
        if setting == "on":
            return torch.bfloat16 if bf16 else torch.float16
        return None
    if setting == "fp16":
        raise ConfigError(f"training.amp = fp16 needs a CUDA GPU (training on {device.type})",
                          "set training.amp to bf16, off or auto")
    has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    if setting in ("on", "bf16") or has_bf16:
        return torch.bfloat16
    return None


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


def use_channels_last(setting: str, device: torch.device) -> bool:
    """channels_last_3d (NDHWC) memory format: oneDNN's 3D convolutions on CPU avoid a layout reorder per call
    with it, which dominates nets with few channels (docs/performance.md); on CUDA only when asked (unmeasured)."""
    if setting == "off":
        return False
    return setting == "on" or device.type == "cpu"


def loss_layout(logits: torch.Tensor, keep_layout: bool) -> torch.Tensor:
    """fp32 logits for the loss: in the net's own layout for the fused Dice + CE (its gradient then flows back
    without a layout change), NCDHW for MONAI's losses (faster there, see ``Trainer._train_step``)."""
    if keep_layout:
        return logits.float()
    return logits.to(torch.float32, memory_format=torch.contiguous_format)


def fast_argmax(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Index of the largest value along ``dim``; ``max(dim).indices`` is ≈ 10× faster than ``argmax`` over a
    non-innermost dim on CPU (100 ms vs 10 ms for a batch of 4 here) and picks the same first maximum."""
    return logits.max(dim).indices


def add_confusion(confusion: torch.Tensor, codes: torch.Tensor, k: int) -> None:
    """``confusion`` (k, k) += counts of ``codes`` (prediction · k + label).  ``bincount`` on CPU; elsewhere
    ``index_add_`` into the fixed k² bins, because CUDA's ``bincount`` reads the largest code back to size its
    output (a host sync per step)."""
    codes = codes.flatten()
    if host_reads_are_free(codes.device):
        confusion += torch.bincount(codes, minlength=k * k).view(k, k)
    else:
        ones = torch.ones(1, dtype=confusion.dtype, device=codes.device).expand(codes.numel())
        confusion.view(-1).index_add_(0, codes, ones)


def out_of_memory(device: torch.device, epoch: int, batch: int, patch, num_params: int, exc: BaseException
                  ) -> OutOfDeviceMemory:
    """A GPU out-of-memory as one line naming what was being trained and the ways out.  In a search the trial
    fails with it (its ``result.json`` says kind "out-of-memory") and the study goes on."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
    return OutOfDeviceMemory(f"CUDA out of memory on {device} in epoch {epoch} (batch {batch}, canvas "
                        f"{'×'.join(str(p) for p in patch)}, {num_params:,} parameters): {first[:200]}",
                        "lower training.batch_size or training.patch_size, or run fewer trials per GPU (--jobs)")


def bank_fits_device(need: int, device: torch.device) -> bool:
    """Whether ``need`` bytes of cases may live on ``device``: at most ``BANK_SHARE`` of what this process may still
    allocate there (its free memory, under a packed trial's memory share)."""
    if device.type != "cuda":
        return True
    free, total = torch.cuda.mem_get_info(device)
    fraction = torch.cuda.get_per_process_memory_fraction(device)
    return need <= BANK_SHARE * min(free, fraction * total - torch.cuda.memory_reserved(device))


def case_bank(cases: list, device: torch.device, events: EventWriter = NULL_EVENTS) -> CaseBank:
    """The training cases on the training device — or, when they would take more than ``BANK_SHARE`` of the
    GPU's free memory (a large CT dataset), in pinned host memory, each batch then copied over."""
    need = sum(int(np.prod(c.image.shape)) * 4 + int(np.prod(c.label.shape)) for c in cases)
    where = device if bank_fits_device(need, device) else torch.device("cpu")
    if where != device:
        events.emit("log", message=f"training cases ({need / 2**30:.1f} GiB) kept in host memory: "
                                   f"more than {BANK_SHARE:.0%} of the GPU memory free for them")
    return CaseBank([c.image for c in cases], [c.label for c in cases], where, pin=where != device)
