"""Helpers for the data-layer tests (a module of its own: `from conftest import` is ambiguous across folders)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from shared_data import HIPPO


def make_msd_copy(dest: Path, source: Path = HIPPO, n: int = 3) -> Path:
    """Copy the first ``n`` cases of an MSD dataset (files + a trimmed dataset.json) into ``dest``."""
    meta = json.loads((source / "dataset.json").read_text())
    entries = sorted(meta["training"], key=lambda e: e["image"])[:n]
    (dest / "imagesTr").mkdir(parents=True)
    (dest / "labelsTr").mkdir()
    for e in entries:
        shutil.copy(source / e["image"], dest / e["image"])
        shutil.copy(source / e["label"], dest / e["label"])
    meta["training"] = entries
    meta["numTraining"] = len(entries)
    (dest / "dataset.json").write_text(json.dumps(meta, indent=1))
    return dest
