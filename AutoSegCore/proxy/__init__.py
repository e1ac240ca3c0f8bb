"""AutoSegCore.proxy — proxy-data selection (the proxy paper): pairwise MI / local NCC, ranking, budget, preview.

Names are loaded from their module on first use (PEP 562), like ``AutoSegCore.data``: the torch-free rules
(``fidelity``: the ``--proxy-data`` spelling and its methods) can be read without loading torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "preview": ("render_preview",),
    "selection": ("ProxySelection", "load_proxy", "load_volumes", "pairwise_matrix", "resolve_budget", "save_proxy",
                  "select_proxy_data", "split_train_val"),
    "similarity": ("local_ncc", "mutual_information", "pairwise_mi", "pairwise_ncc", "prepare_volume",
                   "roi_bounding_box"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
