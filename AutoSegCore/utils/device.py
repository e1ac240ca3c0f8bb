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
