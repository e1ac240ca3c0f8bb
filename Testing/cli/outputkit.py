"""Helpers for the output-folder tests (lock, disk full, --private): a tiny model, the CLI as a child process."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from shared_data import REPO, copy_msd_subset

DEMO = REPO / "Resources" / "DemoData" / "Hippocampus"
LOCK = ".autoseg.lock"


def env() -> dict:
    return {**os.environ, "AUTOSEG_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def autoseg(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AutoSegCore", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=kw.pop("env", env()), cwd=REPO, **kw)


def start(*args, log: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "AutoSegCore", *map(str, args)], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env(), cwd=REPO, **kw)


def train_tiny_model(root: Path) -> tuple[Path, Path]:
    """(model folder, dataset of 4 demo cases): 1 epoch of 2 steps, seconds; its accuracy does not matter here."""
    sys.path.insert(0, str(REPO / "Testing" / "training"))
    from trainkit import tiny_config

    from AutoSegCore.training.api import train_model

    data = copy_msd_subset(root / "data", 4, source=DEMO)
    train_model(data, tiny_config(epochs=1, steps_per_epoch=2), root / "M", val_fraction=0, device="cpu")
    return root / "M", data


def wait_for_lock(folder: Path, proc: subprocess.Popen, timeout: float = 300) -> str:
    """The lock record once ``proc`` holds ``folder`` (it must not have ended first)."""
    end = time.time() + timeout
    while time.time() < end:
        path = folder / LOCK
        text = path.read_text() if path.exists() else ""
        if text.strip():
            return text
        assert proc.poll() is None, f"exited {proc.returncode} before taking the lock"
        time.sleep(0.05)
    raise TimeoutError(f"{folder} was not locked in {timeout} s")


def tree(folder: Path) -> dict[str, tuple[int, float]]:
    """Every file under ``folder`` (hidden ones too) → (size, mtime)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}
