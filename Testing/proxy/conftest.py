"""Shared fixtures for the proxy-data tests: real Hippocampus cases from /work/shared/data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

DATA_ROOT = Path(os.environ.get("AUTOSEG_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
if not DATA_ROOT.is_dir():
    DATA_ROOT = Path("/work/shared/data")
HIPPO = DATA_ROOT / "Task04_Hippocampus"


def make_subset(root: Path, n: int, source: Path = HIPPO) -> Path:
    """An MSD dataset folder whose dataset.json lists the first ``n`` cases of ``source`` by absolute path."""
    meta = json.loads((source / "dataset.json").read_text())
    entries = sorted(meta["training"], key=lambda e: e["image"])[:n]
    meta["training"] = [{"image": str((source / e["image"]).resolve()), "label": str((source / e["label"]).resolve())}
                        for e in entries]
    meta["numTraining"] = n
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="session")
def hippo20(tmp_path_factory) -> Path:
    if not HIPPO.is_dir():
        pytest.skip(f"shared data not found at {HIPPO}")
    return make_subset(tmp_path_factory.mktemp("hippo20"), 20)


@pytest.fixture(scope="session")
def hippo_cases():
    """(image, label) arrays of the first 6 Hippocampus cases, read with the project's dataset reader."""
    if not HIPPO.is_dir():
        pytest.skip(f"shared data not found at {HIPPO}")
    from AutoSegCore.data.dataset import load_dataset, read_case
    ds = load_dataset(HIPPO, deep=False)
    return [read_case(c) for c in ds.cases[:6]]
