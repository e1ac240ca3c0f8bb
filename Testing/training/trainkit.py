"""Helpers for the trainer tests (a module of its own: `from conftest import` is ambiguous across folders)."""
from __future__ import annotations


def tiny_config(**training) -> dict:
    return {"network": {"depth": 3, "channels": 8, "n_convs": 1},
            "training": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "warmup_steps": 2, **training}}


def preprocessed(ds, names):
    """The named cases of ``ds`` preprocessed with the default config (what the trainer gets)."""
    from AutoSegCore.config import make_config
    from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor

    pre = Preprocessor(make_config()["preprocessing"]).fit(ds.subset(names))
    return PreprocessCache(pre).get_many([ds.case(n) for n in names])
