from __future__ import annotations

import pytest

from shared_data import DATA_ROOT

HIPPO = DATA_ROOT / "Task04_Hippocampus"
SPLEEN = DATA_ROOT / "Task09_Spleen_crop"
BRATS = DATA_ROOT / "BRATS2015_DeepMedicExamples"
SPINE = DATA_ROOT / "SpinalCord_spinegeneric_unf01"


@pytest.fixture(scope="session")
def hippo():
    from AutoSegCore.data.dataset import load_dataset

    return load_dataset(HIPPO)


def tiny_config(**training) -> dict:
    return {"network": {"depth": 3, "channels": 8, "n_convs": 1},
            "training": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "warmup_steps": 2, **training}}
