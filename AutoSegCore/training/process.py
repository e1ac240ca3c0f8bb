"""What a training process sets once, before any network or tensor exists: its device, the cap on its share of the
GPU's memory, the CUDA kernel choices, and the seeds of the global random generators.

The trial child, the final training and ``autoseg train`` all train through
:func:`~AutoSegCore.training.api.train_model`, which calls :func:`prepare_process` once; the forecast's probe calls
it too, so that it times what a trial runs.  The :class:`~AutoSegCore.training.trainer.Trainer` itself changes
nothing process-wide (its network is initialised from its own seed, its crops drawn by its own generators)."""
from __future__ import annotations

import random

import numpy as np
import torch

from AutoSegCore.training.kernels import configure_backends, deterministic_wanted
from AutoSegCore.utils.device import GpuMemoryCap, apply_memory_cap, pick_device


def prepare_process(device: str = "auto", *, seed: int = 0, gpu_memory: GpuMemoryCap | None = None,
                    deterministic: bool | None = None) -> torch.device:
    """Resolve ``device`` (CUDA always with its index), cap this process's share of that GPU's memory
    (``gpu_memory``: a trial packed with others, ``--trial-memory-gb``), choose the CUDA kernels (TF32 and cuDNN
    autotuning, or ``deterministic`` ones: default ``AUTOSEG_DETERMINISTIC``) and seed torch's, NumPy's and
    Python's global generators with ``seed`` (libraries that draw from them: MONAI transforms, dropout).
    Returns the device."""
    dev = pick_device(str(device))
    apply_memory_cap(dev, gpu_memory)
    configure_backends(dev, deterministic_wanted() if deterministic is None else deterministic)
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    return dev
