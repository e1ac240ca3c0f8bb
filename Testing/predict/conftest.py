"""Fixtures for the prediction tests: one small model trained on real demo cases (shared by the module files)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "Resources" / "DemoData" / "Hippocampus"
os.environ.setdefault("AUTOSEG_THREADS", "1")


def autoseg_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "AutoSegCore", *map(str, args)]


def autoseg(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    """``autoseg ARGS`` as a user runs it (a child process, stderr a pipe — not a terminal)."""
    return subprocess.run(autoseg_cmd(*args), capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> Path:
    """A barely trained U-Net (1 epoch of 2 steps on 3 demo cases): predicting takes ~1 s a case, which is what
    these tests need; its accuracy does not matter here."""
    sys.path.insert(0, str(REPO / "Testing"))
    sys.path.insert(0, str(REPO / "Testing" / "training"))
    from shared_data import make_subset
    from trainkit import tiny_config

    from AutoSegCore.training.api import train_model

    root = tmp_path_factory.mktemp("predict-model")
    data = make_subset(root / "data", 3, source=DEMO)
    out = root / "M"
    train_model(data, tiny_config(epochs=1, steps_per_epoch=2), out, val_fraction=0, device="cpu")
    return out
