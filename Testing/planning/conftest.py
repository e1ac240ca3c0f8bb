"""Fingerprints of every shared dataset, computed once for the planning tests."""
from __future__ import annotations

import pytest

from shared_data import DATA_ROOT


@pytest.fixture(scope="session")
def shared_fingerprints() -> dict:
    from AutoSegCore.data.fingerprint import compute_fingerprint

    return {d.name: compute_fingerprint(d) for d in sorted(DATA_ROOT.iterdir()) if (d / "dataset.json").is_file()}
