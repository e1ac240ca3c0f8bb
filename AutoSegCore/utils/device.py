"""Device choice: CUDA when present (and asked for or 'auto'), CPU always works.

torch is imported inside the functions: ``DEVICE_NAME`` also checks a device's spelling where it is typed
(``autoseg --device``, ``SearchSettings``), which must not cost torch's import."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from AutoSegCore.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def pick_device(preference: str = "auto") -> torch.device:
    """The training device, CUDA always with its index (``cuda:N``).

    torch's per-device calls (``get_per_process_memory_fraction``, ``memory_reserved``, RNG states) reject an
    index-less ``torch.device("cuda")``; this function is the one place a device is resolved, so every later CUDA
    call gets the index."""
    import torch

    pref = (preference or "auto").lower()
    if not DEVICE_NAME.fullmatch(pref):
        raise ConfigError(f"unknown device '{preference}'", "use auto, cpu, cuda or cuda:N")
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device '{preference}' requested but CUDA is not available",
                          "use --device cpu or --device auto")
    index = int(pref[5:]) if pref.startswith("cuda:") else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"device '{preference}' does not exist ({count} GPU(s) visible)",
                          f"use cuda:0 … cuda:{count - 1}")
    return torch.device("cuda", index)


def set_threads(n: int | None = None) -> int:
    """Use ``n`` intra-op threads (default: AUTOSEG_THREADS or all cores)."""
    import torch

    if n is None:
        n = int(os.environ.get("AUTOSEG_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


# ------------------------------------------------------------------------------------ trials on GPUs
# Small proxy nets are launch-bound on a big GPU, so ``--jobs N`` packs N trials onto the GPUs; each trial gets
# its share of its GPU's memory as a cap (torch.cuda.set_per_process_memory_fraction), so that one trial's
# out-of-memory fails that trial instead of its neighbours.  The search process itself may hold memory on a GPU
# (the plan's probe, proxy selection and the forecast run there): what it keeps is taken off the trials' shares.
MEMORY_HEADROOM = 0.9          # share of a GPU's memory the trials on it may take together (CUDA contexts etc.)
CUDA_CONTEXT_BYTES = 512 * 2 ** 20   # a CUDA context's own memory, which torch's memory_reserved does not count
MPS_PIPE_ENV, MPS_DEFAULT_PIPE = "CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"


def parse_devices(devices_text: str | None, gpus: int | None = None) -> list[str]:
    """The devices a search spreads its trials over, from ``--devices``.

    ``auto`` (or None/empty): every visible GPU (``cuda:0`` … ``cuda:N-1``), else ``["cpu"]``; ``cuda``: every
    visible GPU (an error without one); ``cpu``; or a comma-separated list such as ``cuda:0,cuda:1``.
    ``gpus`` is the number of visible GPUs (default: ask torch, which does not initialise CUDA)."""
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    text = (devices_text or "auto").strip().lower()
    names = [n.strip() for n in text.split(",")]
    hint = "use auto, cpu, cuda or a list such as cuda:0,cuda:1"
    for n in names:
        if not DEVICE_NAME.fullmatch(n) or (n == "auto" and len(names) > 1):
            raise ConfigError(f"unknown device '{n}' in --devices {devices_text}", hint)
    if names == ["auto"]:
        return [f"cuda:{i}" for i in range(gpus)] or ["cpu"]
    out: list[str] = []
    for n in names:
        expanded = [f"cuda:{i}" for i in range(gpus)] if n == "cuda" else [n]
        if n == "cuda" and not gpus:
            raise ConfigError(f"--devices {devices_text}: CUDA is not available", "use --devices cpu or auto")
        for d in expanded:
            if d.startswith("cuda:") and int(d[5:]) >= gpus:
                raise ConfigError(f"--devices {devices_text}: {d} does not exist ({gpus} GPU(s) visible)",
                                  f"use cuda:0 … cuda:{gpus - 1}" if gpus else "use --devices cpu or auto")
            if d in out:
                raise ConfigError(f"--devices {devices_text}: {d} is listed twice", hint)
            out.append(d)
    return out


def next_device(devices: list[str], running: list[str]) -> str:
    """The device for the next trial: the one running the fewest trials now, the first listed on a tie — so
    trials spread round-robin, and a device whose trial ended gets the next one."""
    return min(devices, key=lambda d: (running.count(d), devices.index(d)))


def trials_per_device(devices: list[str], jobs: int) -> int:
    """The most trials ``next_device`` ever puts on one device: ⌈jobs / len(devices)⌉."""
    return -(-max(1, jobs) // max(1, len(devices)))


def memory_fraction(devices: list[str], jobs: int, device: str, parent_bytes: int = 0,
                    total_bytes: int = 0) -> float | None:
    """Each trial's cap on ``device``'s memory when ``jobs`` trials spread over ``devices``: ``MEMORY_HEADROOM``
    less what the search process keeps there (``parent_bytes`` of ``total_bytes``), shared equally; None when a
    trial has its GPU to itself or runs on the CPU."""
    if not device.startswith("cuda"):
        return None
    per_device = trials_per_device(devices, jobs)
    if per_device <= 1:
        return None
    parent_share = parent_bytes / total_bytes if total_bytes else 0.0
    fraction = round((MEMORY_HEADROOM - parent_share) / per_device, 4)
    if fraction <= 0:
        from AutoSegCore.errors import AutoSegError

        raise AutoSegError(f"the search process keeps {parent_share:.0%} of {device}'s memory: nothing is left "
                           f"for {per_device} trials on it", "run the search on a free GPU, or fewer --jobs")
    return fraction


def parent_held_bytes(reserved: int, has_context: bool) -> int:
    """What the search process keeps on a GPU: torch's cached blocks (``reserved``, after ``empty_cache``: its
    live tensors) plus its CUDA context, which no allocator statistic counts (``CUDA_CONTEXT_BYTES``)."""
    return reserved + (CUDA_CONTEXT_BYTES if has_context else 0)


def release_parent_memory(devices: list[str]) -> dict[str, tuple[int, int]]:
    """In the search process, before its first trial: free its cached GPU memory and measure what it keeps on
    each GPU of ``devices`` (its CUDA context cannot be freed in-process): ``{device: (held, total bytes)}``,
    ``{}`` when it never initialised CUDA — which is then neither imported nor initialised to find that out."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return {}
    import gc

    gc.collect()                    # tensors of the forecast's Trainer kept alive by reference cycles
    torch.cuda.empty_cache()
    # torch's own test of a device's primary context; without it every GPU counts as holding one (safe side)
    has_context = getattr(torch._C, "_cuda_hasPrimaryContext", lambda index: True)
    held = {}
    for d in devices:
        if d.startswith("cuda:"):
            index = int(d[5:])
            used = parent_held_bytes(torch.cuda.memory_reserved(index), has_context(index))
            if used:
                held[d] = (used, torch.cuda.get_device_properties(index).total_memory)
    return held


def mps_pipe_directory(environ=None) -> str | None:
    """The CUDA MPS pipe directory when a control daemon is likely running (``CUDA_MPS_PIPE_DIRECTORY``, else
    ``/tmp/nvidia-mps``, exists): trials' CUDA clients then connect to it by themselves and their kernels run
    concurrently; without it trials sharing a GPU are time-sliced."""
    env = os.environ if environ is None else environ
    path = env.get(MPS_PIPE_ENV) or MPS_DEFAULT_PIPE
    return path if os.path.isdir(path) else None


def describe_gpu_sharing(devices: list[str], jobs: int, parent: dict[str, tuple[int, int]],
                         mps_dir: str | None) -> str | None:
    """The search log's one line on trials packed on GPUs: whether MPS runs them concurrently, and what the
    search process keeps on each GPU and the trials' caps that leaves; None when no GPU is shared."""
    per_device, gpus = trials_per_device(devices, jobs), [d for d in devices if d.startswith("cuda")]
    if per_device <= 1 or not gpus:
        return None
    how = (f"through CUDA MPS (pipe directory {mps_dir})" if mps_dir else
           "without MPS (time-sliced; start nvidia-cuda-mps-control -d for concurrent kernels)")
    parts = [f"up to {per_device} trials share {', '.join(gpus)} {how}"]
    for d in gpus:
        held, total = parent.get(d, (0, 0))
        cap = memory_fraction(devices, jobs, d, held, total)
        parts.append(f"{d}: the search process keeps {held / 2 ** 30:.2f} GiB, each trial's cap is {cap:.1%}")
    return "; ".join(parts)


@dataclass(frozen=True)
class GpuMemoryCap:
    """A training process's cap on its GPU's memory: its ``share`` of a GPU packed with other trials (``--jobs``)
    and ``gigabytes`` (``--trial-memory-gb``); the smaller applies.  Part of the trial's spec, applied by
    ``training.process.prepare_process``."""
    share: float | None = None
    gigabytes: float | None = None

    def fraction(self, total_bytes: int) -> float:
        """The cap as a fraction of a GPU of ``total_bytes`` (at most the whole GPU)."""
        return min(self.share or 1.0, self.gigabytes * 2 ** 30 / total_bytes if self.gigabytes else 1.0)


def apply_memory_cap(device, cap: GpuMemoryCap | None) -> float | None:
    """Cap this process's share of its GPU's memory, so that running out fails this training (a trial) with a
    CUDA out-of-memory error instead of its neighbours on the GPU.  Returns the fraction applied, None if none."""
    if cap is None or (cap.share is None and cap.gigabytes is None) or getattr(device, "type", str(device)) != "cuda":
        return None
    import torch

    fraction = cap.fraction(torch.cuda.get_device_properties(device).total_memory)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction
