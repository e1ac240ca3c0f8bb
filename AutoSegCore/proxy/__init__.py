"""AutoSegCore.proxy — proxy-data selection (the proxy paper): pairwise MI / local NCC, ranking, budget, preview."""
from AutoSegCore.proxy.preview import render_preview
from AutoSegCore.proxy.selection import (ProxySelection, load_proxy, load_volumes, pairwise_matrix, resolve_budget,
                                         save_proxy, select_proxy_data, split_train_val)
from AutoSegCore.proxy.similarity import (local_ncc, mutual_information, pairwise_mi, pairwise_ncc,
                                          prepare_volume, roi_bounding_box)

__all__ = ["ProxySelection", "select_proxy_data", "save_proxy", "load_proxy", "render_preview", "pairwise_matrix",
           "resolve_budget", "split_train_val", "pairwise_mi", "pairwise_ncc", "mutual_information", "local_ncc",
           "prepare_volume", "roi_bounding_box", "load_volumes"]
