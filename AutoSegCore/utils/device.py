"""Device choice: CUDA when present (and asked for or 'auto'), CPU always works."""
from __future__ import annotations

import os

import torch

from AutoSegCore.errors import ConfigError


def pick_device(preference: str = "auto") -> torch.device:
    pref = (preference or "auto").lower()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{preference}' requested but CUDA is not available",
                              "use --device cpu or --device auto")
        return torch.device(pref)
    if pref == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device '{preference}'", "use auto, cpu, cuda or cuda:N")


def set_threads(n: int | None = None) -> int:
    """Use ``n`` intra-op threads (default: AUTOSEG_THREADS or all cores)."""
    if n is None:
        n = int(os.environ.get("AUTOSEG_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()
