"""The autocast dtype, the memory layout and the loss's input layout of a training, from ``training.amp`` and
``training.channels_last`` — the rules (measured once on CPUs, docs/performance.md); on a GPU ``auto`` is first
resolved by measurement (``precision.choose_precision``)."""
from __future__ import annotations

import torch

from AutoSegCore.errors import ConfigError



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
