"""Shared fixtures for the data-layer tests: the real datasets in /work/shared/data, torch on one thread."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

DATA = Path("/work/shared/data")
HIPPO = DATA / "Task04_Hippocampus"
SPLEEN = DATA / "Task09_Spleen_crop"
BRATS = DATA / "BRATS2015_DeepMedicExamples"
SPINE = DATA / "SpinalCord_spinegeneric_unf01"
TS_CT = DATA / "TotalSegmentatorExampleCT"
TS_MR = DATA / "TotalSegmentatorExampleMR"
ALL_DATASETS = [HIPPO, SPLEEN, BRATS, SPINE, TS_CT, TS_MR]


@pytest.fixture(scope="session")
def hippo():
    from AutoSegCore.data.dataset import load_dataset
    return load_dataset(HIPPO)


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
