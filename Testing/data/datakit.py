"""Helpers for the data-layer tests (a module of its own: `from conftest import` is ambiguous across folders)."""
from __future__ import annotations

from pathlib import Path

from shared_data import HIPPO, copy_msd_subset


def make_msd_copy(dest: Path, source: Path = HIPPO, n: int = 3) -> Path:
    """The first ``n`` cases of ``source`` copied into ``dest`` (the malformed-data corpus edits such copies)."""
    return copy_msd_subset(dest, n, source)
