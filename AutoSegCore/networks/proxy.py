"""Proxy networks (paper a §3.2): shrink any network config to a cheap stand-in that ranks like the full one.

Paper a's rule for its U-Net: first-level channels → 4, residual units → 1, levels → 5, 4 or 3; everything
else (2D/3D, norm, multiplier, deep supervision, dropout) is kept.  The analogous shrink for the NAS spaces:
SegNAS filters n → 4 and poolings p → levels − 1 (block structure, residual and supervision kept);
EMONAS first-level filters 2^n_f → 4 (n_f = 2) and n_c → levels − 1, i.e. 2·levels − 1 cells (cell kept).
"""
from __future__ import annotations

import copy

from AutoSegCore.errors import ConfigError
from AutoSegCore.networks.validate import with_arch_defaults

PROXY_CHANNELS = 4
PROXY_RESIDUAL_UNITS = 1
# The config keys ``proxy_network`` overwrites, per architecture.  A search that trains proxy networks cannot
# rank these (every trial trains the same value), so it does not search them (paper a searches training
# hyper-parameters for a fixed architecture); the final network takes them from the base config.
PROXY_KEYS = {
    "unet": ("network.channels", "network.n_convs", "network.depth"),
    "segnas": ("network.segnas.filters", "network.segnas.poolings"),
    "emonas": ("network.emonas.n_f", "network.emonas.n_c"),
}


def proxy_network(net_cfg: dict, levels: int = 3) -> dict:
    """Return a shrunk copy of ``net_cfg`` with ``levels`` resolution levels (paper a: 5, 4 or 3)."""
    if not (isinstance(levels, int) and 2 <= levels <= 6):
        raise ConfigError(f"proxy levels = {levels!r} must be an integer in 2–6", "paper a uses 5, 4 or 3")
    out = with_arch_defaults(copy.deepcopy(net_cfg))
    arch = out.get("arch", "unet")
    if arch == "unet":
        out.update(channels=PROXY_CHANNELS, n_convs=PROXY_RESIDUAL_UNITS, depth=levels)
    elif arch == "segnas":
        out["segnas"].update(filters=PROXY_CHANNELS, poolings=levels - 1)
    elif arch == "emonas":
        out["emonas"].update(n_f=2, n_c=levels - 1)
    else:
        raise ConfigError(f"network.arch = {arch!r} has no proxy rule", "use unet, segnas or emonas")
    return out
