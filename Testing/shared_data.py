"""Where the shared real datasets live: $AUTOSEG_SHARED_DATA, else ../shared/data beside the checkout
(how CI lays it out), else /work/shared/data."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def _find() -> Path:
    candidates = [os.environ.get("AUTOSEG_SHARED_DATA"), _REPO.parent / "shared" / "data", "/work/shared/data"]
    for c in candidates:
        if c and (Path(c) / "Task04_Hippocampus" / "dataset.json").is_file():
            return Path(c)
    raise RuntimeError("shared data not found: set AUTOSEG_SHARED_DATA to the folder holding Task04_Hippocampus")


DATA_ROOT = _find()
REPO = _REPO
HIPPO = DATA_ROOT / "Task04_Hippocampus"
SPLEEN = DATA_ROOT / "Task09_Spleen_crop"
BRATS = DATA_ROOT / "BRATS2015_DeepMedicExamples"
SPINE = DATA_ROOT / "SpinalCord_spinegeneric_unf01"
TS_CT = DATA_ROOT / "TotalSegmentatorExampleCT"
TS_MR = DATA_ROOT / "TotalSegmentatorExampleMR"
ALL_DATASETS = [HIPPO, SPLEEN, BRATS, SPINE, TS_CT, TS_MR]


def make_subset(root: Path, n: int, source: Path = HIPPO) -> Path:
    """An MSD dataset folder with the first ``n`` cases of ``source``, linked (not copied) into its imagesTr/ and
    labelsTr/: dataset.json entries stay inside their folder, as the engine requires."""
    meta = json.loads((source / "dataset.json").read_text())
    entries = sorted(meta["training"], key=lambda e: e["image"])[:n]
    meta["training"] = []
    for e in entries:
        row = {}
        for key, sub in (("image", "imagesTr"), ("label", "labelsTr")):
            target = (source / e[key]).resolve()
            (root / sub).mkdir(parents=True, exist_ok=True)
            link = root / sub / target.name
            if not link.exists():
                link.symlink_to(target)
            row[key] = f"./{sub}/{target.name}"
        meta["training"].append(row)
    meta["numTraining"] = n
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def copy_msd_subset(dest: Path, n: int, source: Path = HIPPO) -> Path:
    """Copy the first ``n`` cases (by image name) of an MSD dataset — files and a trimmed dataset.json — to ``dest``."""
    meta = json.loads((source / "dataset.json").read_text())
    entries = sorted(meta["training"], key=lambda e: e["image"])[:n]
    for sub in ("imagesTr", "labelsTr"):
        (dest / sub).mkdir(parents=True)
    for e in entries:
        shutil.copyfile(source / e["image"], dest / e["image"])
        shutil.copyfile(source / e["label"], dest / e["label"])
    meta["training"], meta["numTraining"] = entries, len(entries)
    (dest / "dataset.json").write_text(json.dumps(meta, indent=1))
    return dest
