"""Device choice: CUDA when present (and asked for or 'auto'), CPU always works.

torch is imported inside the functions: ``DEVICE_NAME`` also checks a device's spelling where it is typed
(``autoseg --device``, ``SearchSettings``), which must not cost torch's import."""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from AutoSegCore.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def pick_device(preference: str = "auto") -> torch.device:
    import torch

    pref = (preference or "auto").lower()
    if not DEVICE_NAME.fullmatch(pref):
        raise ConfigError(f"unknown device '{preference}'", "use auto, cpu, cuda or cuda:N")
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{preference}' requested but CUDA is not available",
                              "use --device cpu or --device auto")
        return torch.device(pref)
    return torch.device("cpu")


def set_threads(n: int | None = None) -> int:
    """Use ``n`` intra-op threads (default: AUTOSEG_THREADS or all cores)."""
    import torch

    if n is None:
        n = int(os.environ.get("AUTOSEG_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


# ------------------------------------------------------------------------------------ trials on GPUs (issue 21)
# Small proxy nets are launch-bound on a big GPU, so ``--jobs N`` packs N trials onto the GPUs; each trial gets
# its share of its GPU's memory as a cap (torch.cuda.set_per_process_memory_fraction), so that one trial's
# out-of-memory fails that trial instead of its neighbours.
MEMORY_FRACTION_ENV = "AUTOSEG_GPU_MEMORY_FRACTION"
MEMORY_HEADROOM = 0.9          # share of a GPU's memory the trials on it may take together (CUDA context etc.)


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


def memory_fraction(devices: list[str], jobs: int, device: str) -> float | None:
    """Each trial's cap on ``device``'s memory when ``jobs`` trials spread over ``devices`` (``next_device``
    never puts more than ⌈jobs / len(devices)⌉ on one): ``MEMORY_HEADROOM`` shared equally; None when a trial
    has its GPU to itself or runs on the CPU."""
    if not device.startswith("cuda"):
        return None
    per_device = -(-max(1, jobs) // max(1, len(devices)))
    return None if per_device <= 1 else round(MEMORY_HEADROOM / per_device, 4)


def trial_device_env(devices: list[str], jobs: int, device: str) -> dict[str, str]:
    """Environment for a trial started on ``device``: its memory cap (read by :func:`apply_memory_cap`)."""
    fraction = memory_fraction(devices, jobs, device)
    return {MEMORY_FRACTION_ENV: str(fraction)} if fraction else {}


def apply_memory_cap(device) -> float | None:
    """In a trial: cap this process's share of its GPU's memory (``AUTOSEG_GPU_MEMORY_FRACTION``), so that
    running out fails this trial with a CUDA out-of-memory error.  Returns the cap applied, None if none."""
    raw = os.environ.get(MEMORY_FRACTION_ENV, "").strip()
    if not raw or getattr(device, "type", str(device)) != "cuda":
        return None
    import torch

    fraction = float(raw)
    if not 0 < fraction <= 1:
        raise ConfigError(f"{MEMORY_FRACTION_ENV}={raw} must be a number in (0, 1]", "e.g. 0.45")
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction
