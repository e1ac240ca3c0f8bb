"""Shared fixtures for the proxy-data tests: real Hippocampus cases from /work/shared/data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from shared_data import HIPPO, make_subset  # noqa: E402


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
