from __future__ import annotations

import pytest

from shared_data import HIPPO


@pytest.fixture(scope="session")
def hippo():
    from AutoSegCore.data.dataset import load_dataset

    return load_dataset(HIPPO)
