"""Proxy networks (the proxy paper §3.2): shrink any network config to a cheap stand-in that ranks like the full one.

Two rules, chosen with ``--proxy-net``:

**Fixed rule** (``levels=N``, the proxy paper's setting).  The proxy paper's rule for its U-Net: first-level
channels → 4, residual units → 1, levels → 5, 4 or 3; everything else (2D/3D, norm, multiplier, deep supervision,
dropout) is kept.  The analogous shrink for the NAS spaces: SegNAS filters n → 4 and poolings p → levels − 1 (block
structure, residual and supervision kept); EMONAS first-level filters 2^n_f → 4 (n_f = 2) and n_c → levels − 1,
i.e. 2·levels − 1 cells (cell kept).  The rule overwrites the network's SIZE with constants, so every proxy trial
trains the same size: it cannot rank sizes, and a search under it leaves the size keys (``PROXY_KEYS``) at the base
config's values.  Right for the proxy paper's question — training/pipeline choices for a fixed architecture.

**Width rule** (``width=F``, optionally ``levels=N,width=F``).  Why a second rule: a space that searches the size
itself (``unet-pipeline``: depth, channels, n_convs; SegNAS n, p; EMONAS n_c, n_f) cannot be searched on the fixed
rule's proxy networks, because they all have one size.  The width rule shrinks each sampled network relative to ITS
OWN size with monotone (non-decreasing) maps, so a bigger sampled net stays a bigger (or equal) proxy network and
the order of sizes survives; the search keeps every parameter (it samples the same space, so with the same seed it
proposes the same configurations as a full-fidelity search), and the final network is the searched one.  The price:
a proxy trial's cost depends on the sampled size.

- U-Net: channels → min(channels, max(4, round(channels·F))); n_convs → min(n_convs, 1) (0 = one conv without
  residual path stays 0, 1–3 residual sub-units → 1 as the proxy paper's single residual unit); depth kept, or
  min(depth, N) with levels=N; max_channels shrinks like channels (every level is then ≈ F × its full width).
  Multiplier, 2D/3D, norm, dropout, deep supervision kept.
- SegNAS: filters → min(filters, max(4, round(filters·F))); poolings kept, or min(poolings, N − 1).
- EMONAS: first-level filters are 2^n_f, so n_f → min(n_f, max(2, n_f − round(log2(1/F)))); n_c kept, or
  min(n_c, N − 1).

A U-Net's per-level ``kernels`` / ``strides`` (when given) follow its new depth: a shallower proxy drops the
deepest levels' entries, a deeper one (the fixed rule on a shallow net) repeats the deepest entry, so the
pattern of the planner (e.g. an unpooled slice axis) carries on.

``round`` is half-up (x.5 → up).  The ``min(original, …)`` only matters for nets already below the floor
(e.g. 2 channels): a proxy network is never bigger than its network.  Capping depth / poolings / n_c never
raises the patch-size divisor (``size_divisor``), so a shrunk net accepts every patch its full net accepts
(never larger ones).
"""
from __future__ import annotations

import copy
import math

from AutoSegCore.errors import ConfigError
from AutoSegCore.networks.validate import with_arch_defaults

PROXY_CHANNELS = 4
PROXY_RESIDUAL_UNITS = 1
PROXY_EMONAS_NF = 2          # 2^2 = 4 first-level filters, as PROXY_CHANNELS
DEFAULT_LEVELS = 3           # proxy_network(cfg) without a rule = the proxy paper's smallest rung
# The ``--proxy-net`` presets the front ends offer (through ``AutoSegCore.choices.engine_choices``): no proxy, the
# fixed rule's three rungs, the width rule alone and with capped levels.  Every other spelling that
# ``AutoSegCore.proxy.fidelity.Fidelity.parse`` accepts (levels=2–6, any width in (0, 1]) works as well.
PROXY_NETS = ("full", "levels=5", "levels=4", "levels=3", "width=0.25", "levels=3,width=0.25")
# The config keys the FIXED rule overwrites, per architecture.  A search that trains fixed-rule proxy networks
# cannot rank these (every trial trains the same value), so it does not search them (the proxy paper searches training
# hyper-parameters for a fixed architecture); the final network takes them from the base config.  The width
# rule shrinks the same keys relative to each sampled value, so under it they stay in the search.
PROXY_KEYS = {
    "unet": ("network.channels", "network.n_convs", "network.depth"),
    "segnas": ("network.segnas.filters", "network.segnas.poolings"),
    "emonas": ("network.emonas.n_f", "network.emonas.n_c"),
}


def _check_levels(levels) -> None:
    if not (isinstance(levels, int) and not isinstance(levels, bool) and 2 <= levels <= 6):
        raise ConfigError(f"proxy network levels = {levels!r} must be an integer in 2–6",
                          "the proxy paper uses 5, 4 or 3")


def _check_width(width) -> None:
    if not (isinstance(width, (int, float)) and not isinstance(width, bool) and math.isfinite(width)
            and 0 < width <= 1):
        raise ConfigError(f"proxy network width = {width!r} must be a number in (0, 1]", "e.g. width=0.25")


def _round(x: float) -> int:
    """Half-up rounding: 4.5 → 5 where Python's banker's ``round`` gives 4 (both are monotone)."""
    return int(math.floor(x + 0.5))


def _shrink(value: int, width: float, floor: int) -> int:
    """A monotone shrink of ``value`` by ``width`` that stays ≥ ``floor`` and never exceeds ``value``."""
    return min(value, max(floor, _round(value * width)))


def proxy_network(net_cfg: dict, levels: int | None = None, width: float | None = None) -> dict:
    """Return a shrunk copy of ``net_cfg``.

    ``width`` None: the proxy paper's fixed rule with ``levels`` resolution levels (5, 4 or 3; 3 when neither is given).
    ``width`` F in (0, 1]: the rank-preserving width rule, depth / poolings / n_c capped at ``levels`` if given.
    """
    if width is None and levels is None:
        levels = DEFAULT_LEVELS
    if levels is not None:
        _check_levels(levels)
    if width is not None:
        _check_width(width)
    out = with_arch_defaults(copy.deepcopy(net_cfg))
    arch = out.get("arch", "unet")
    if arch not in PROXY_KEYS:
        raise ConfigError(f"network.arch = {arch!r} has no proxy-network rule", "use unet, segnas or emonas")
    if width is None:
        _fixed_rule(out, arch, levels)
    else:
        _width_rule(out, arch, float(width), levels)
    return out


def _set_unet_depth(out: dict, depth: int) -> None:
    """``depth`` levels, with ``kernels`` (depth) and ``strides`` (depth − 1) cut or extended to match."""
    out["depth"] = depth
    for key, count in (("kernels", depth), ("strides", depth - 1)):
        given = out.get(key)
        if isinstance(given, (list, tuple)) and given:        # else validate_network names what is wrong
            out[key] = list(given[:count]) + [copy.deepcopy(given[-1]) for _ in range(count - len(given))]


def _fixed_rule(out: dict, arch: str, levels: int) -> None:
    if arch == "unet":
        out.update(channels=PROXY_CHANNELS, n_convs=PROXY_RESIDUAL_UNITS)
        _set_unet_depth(out, levels)
    elif arch == "segnas":
        out["segnas"].update(filters=PROXY_CHANNELS, poolings=levels - 1)
    else:
        out["emonas"].update(n_f=PROXY_EMONAS_NF, n_c=levels - 1)


def _width_rule(out: dict, arch: str, width: float, levels: int | None) -> None:
    if arch == "unet":
        out.update(channels=_shrink(int(out["channels"]), width, PROXY_CHANNELS),
                   n_convs=min(int(out["n_convs"]), PROXY_RESIDUAL_UNITS))
        if out.get("max_channels"):      # the cap scales too, or deep levels of wide nets would not shrink
            out["max_channels"] = _shrink(int(out["max_channels"]), width, PROXY_CHANNELS)
        if levels is not None:
            _set_unet_depth(out, min(int(out["depth"]), levels))
    elif arch == "segnas":
        s = out["segnas"]
        s["filters"] = _shrink(int(s["filters"]), width, PROXY_CHANNELS)
        if levels is not None:
            s["poolings"] = min(int(s["poolings"]), levels - 1)
    else:
        e = out["emonas"]
        n_f = int(e["n_f"])
        e["n_f"] = min(n_f, max(PROXY_EMONAS_NF, n_f - _round(math.log2(1 / width))))
        if levels is not None:
            e["n_c"] = min(int(e["n_c"]), levels - 1)
