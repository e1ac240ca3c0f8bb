"""AutoSegCore.data: datasets (MSD / nnU-Net raw / pairs) with validation, fingerprint, splits, preprocessing
with its inverse and a cache, and prediction writers (NIfTI + Slicer .seg.nrrd).

Names are imported on first use (PEP 562) so that e.g. ``autoseg validate`` does not load scikit-learn or torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "dataset": ("Case", "CaseArrays", "Dataset", "check_dataset", "dataset_warnings", "load_dataset", "read_case",
                "read_image", "validate_dataset"),
    "fingerprint": ("compute_fingerprint", "load_fingerprint", "save_fingerprint"),
    "preprocess": ("PreprocessCache", "PreprocessedCase", "Preprocessor"),
    "splits": ("holdout_split", "kfold_splits"),
    "writers": ("label_colors", "save_prediction"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"AutoSegCore.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'AutoSegCore.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
