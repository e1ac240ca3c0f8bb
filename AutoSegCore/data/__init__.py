"""AutoSegCore.data: datasets (MSD / nnU-Net raw / pairs) with validation, fingerprint, splits, preprocessing
with its inverse and a cache, and prediction writers (NIfTI + Slicer .seg.nrrd).

Names are imported on first use (PEP 562) so that e.g. ``autoseg validate`` does not load scikit-learn or torch.
"""
from __future__ import annotations

from AutoSegCore.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "dataset": ("Case", "CaseArrays", "Dataset", "check_dataset", "dataset_warnings", "load_dataset", "read_case",
                "read_image", "validate_dataset"),
    "fingerprint": ("compute_fingerprint", "load_fingerprint", "save_fingerprint"),
    "preprocess": ("PreprocessCache", "PreprocessedCase", "Preprocessor"),
    "splits": ("holdout_split", "kfold_splits"),
    "writers": ("label_colors", "save_prediction"),
})
