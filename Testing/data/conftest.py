"""Shared fixtures for the data-layer tests: the real datasets in /work/shared/data, torch on one thread."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from shared_data import HIPPO  # noqa: E402


@pytest.fixture(scope="session")
def hippo():
    from AutoSegCore.data.dataset import load_dataset
    return load_dataset(HIPPO)
