"""Checks of a ``config["network"]`` section, with errors that name the key and say the fix.

``AutoSegCore.config.validate_config`` checks the U-Net keys of every config; the SegNAS / EMONAS sub-sections
(``network.segnas``, ``network.emonas``) are checked here, with their defaults in ``ARCH_DEFAULTS``.
"""
from __future__ import annotations

import copy

from AutoSegCore.config import CHOICES, DEFAULT_CONFIG
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import emonas, segnas

# Defaults of the arch-specific sub-sections (paper c: V-Net-like n=16, p=4, residual, a 2-conv block;
# ops are the 4×4 upper triangle, of which nodes = 3 use (0,1) and (1,2): two cascaded conv(3,1), as SegNAS4;
# paper d: the Hippocampus optimum of its slides, 7 cells, 32 filters).
ARCH_DEFAULTS: dict[str, dict] = {
    "segnas": {"filters": 16, "poolings": 4, "residual": True, "nodes": 3, "ops": [2, 0, 0, 2, 0, 0]},
    "emonas": {"inputs": [0, 1, 1], "ops": ["conv3d_3", "p3d_3", "p3d_3", "conv2d_5"], "n_c": 3, "n_f": 5},
}


def with_arch_defaults(net_cfg: dict) -> dict:
    """Copy of ``net_cfg`` with the defaults of its architecture's sub-section filled in."""
    out = copy.deepcopy(net_cfg)
    arch = out.get("arch", "unet")
    if arch in ARCH_DEFAULTS:
        out[arch] = {**ARCH_DEFAULTS[arch], **(out.get(arch) or {})}
    return out


def _int_in(value, low: int, high: int | None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)


def validate_network(net_cfg: dict, source: str = "config") -> dict:
    """Raise ``ConfigError`` if ``net_cfg`` cannot be built; return it with the arch defaults filled in."""
    if not isinstance(net_cfg, dict):
        raise ConfigError(f"{source}: network must be a mapping", "e.g. network: {arch: unet, depth: 4}")
    cfg = with_arch_defaults({**DEFAULT_CONFIG["network"], **net_cfg})
    for key in ("arch", "conv", "norm"):
        allowed = CHOICES[("network", key)]
        if cfg[key] not in allowed:
            raise ConfigError(f"{source}: network.{key} = {cfg[key]!r} is not one of {list(allowed)}",
                              f"set network.{key} to one of {', '.join(allowed)}")
    dropout = cfg.get("dropout") or 0.0
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ConfigError(f"{source}: network.dropout = {dropout!r} must be in [0, 1)", "e.g. dropout: 0.1")
    arch = cfg["arch"]
    if arch == "unet":
        checks = [("depth", _int_in(cfg["depth"], 2, 6), "an integer in 2–6", "depth: 4"),
                  ("n_convs", _int_in(cfg["n_convs"], 0, 3), "an integer in 0–3", "n_convs: 2"),
                  ("channels", _int_in(cfg["channels"], 1, None), "a positive integer", "channels: 16"),
                  ("max_channels", _int_in(cfg["max_channels"], 1, None), "a positive integer", "max_channels: 320")]
        for key, ok, what, example in checks:
            if not ok:
                raise ConfigError(f"{source}: network.{key} = {cfg[key]!r} must be {what}", f"e.g. {example}")
        m = cfg["multiplier"]
        if not (isinstance(m, (int, float)) and 0.5 <= m <= 3.0):
            raise ConfigError(f"{source}: network.multiplier = {m!r} must be in 0.5–3", "e.g. multiplier: 2")
    elif arch == "segnas":
        _validate_segnas(cfg["segnas"], source)
    else:
        _validate_emonas(cfg["emonas"], source)
    return cfg


def _validate_segnas(s: dict, source: str) -> None:
    for key, low, high, example in (("filters", 1, None, 16), ("poolings", 1, 6, 4)):
        if not _int_in(s.get(key), low, high):
            rng = f"≥ {low}" if high is None else f"in {low}–{high}"
            raise ConfigError(f"{source}: network.segnas.{key} = {s.get(key)!r} must be an integer {rng}",
                              f"e.g. network.segnas.{key}: {example}")
    ops = s.get("ops")
    if not (isinstance(ops, (list, tuple)) and all(_int_in(o, 0, 6) for o in ops)):
        raise ConfigError(f"{source}: network.segnas.ops = {ops!r} must be a list of operation numbers 0–6",
                          "e.g. ops: [2, 0, 2] (upper triangle of the operation matrix, row by row)")
    try:
        matrix = segnas.segnas_matrix(ops, s.get("nodes"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: network.segnas nodes = {s.get('nodes')!r}, ops = {list(ops)}: {exc}",
                          "give 1, 3 or 6 ops and nodes between 2 and the matrix size") from None
    if not segnas.segnas_is_legal(matrix):
        raise ConfigError(f"{source}: network.segnas block {matrix.tolist()} is an illegal graph "
                          "(an intermediate node without input or output)",
                          "give every node before the last an outgoing op and every node after the first an incoming op")


def _validate_emonas(e: dict, source: str) -> None:
    inputs, ops = e.get("inputs"), e.get("ops")
    if not (isinstance(inputs, (list, tuple)) and len(inputs) == emonas.N_NODES - 1
            and all(_int_in(i, 0, k - 1) for k, i in zip(range(2, emonas.N_NODES + 1), inputs))):
        raise ConfigError(f"{source}: network.emonas.inputs = {inputs!r} must be [I2, I3, I4] with I_k in 0…k-1",
                          "0 = the cell input, j = node j; e.g. inputs: [0, 1, 1]")
    if not (isinstance(ops, (list, tuple)) and len(ops) == emonas.N_NODES and all(o in emonas.OPS for o in ops)):
        raise ConfigError(f"{source}: network.emonas.ops = {ops!r} must be 4 operation names",
                          f"choose from {', '.join(emonas.OPS)}")
    for key, low, high, example in (("n_c", 1, 5, 3), ("n_f", 0, 8, 5)):
        if not _int_in(e.get(key), low, high):
            raise ConfigError(f"{source}: network.emonas.{key} = {e.get(key)!r} must be an integer in {low}–{high}",
                              f"e.g. network.emonas.{key}: {example}")
