"""Helpers for the proxy tests (a module of its own: `from conftest import` is ambiguous across folders)."""
from __future__ import annotations

import json
from pathlib import Path

from shared_data import DATA_ROOT, HIPPO  # noqa: F401


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
