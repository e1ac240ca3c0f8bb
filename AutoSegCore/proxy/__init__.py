"""AutoSegCore.proxy — proxy-data selection (the proxy paper): pairwise MI / local NCC, ranking, budget, preview.

Names are loaded from their module on first use (PEP 562), like ``AutoSegCore.data``: the torch-free rules
(``fidelity``: the ``--proxy-data`` spelling and its methods) can be read without loading torch.
"""
from __future__ import annotations

from AutoSegCore.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "preview": ("render_preview",),
    "selection": ("ProxySelection", "load_proxy", "load_volumes", "pairwise_matrix", "resolve_budget", "save_proxy",
                  "select_proxy_data", "split_train_val"),
    "similarity": ("local_ncc", "mutual_information", "pairwise_mi", "pairwise_ncc", "prepare_volume",
                   "roi_bounding_box"),
})
