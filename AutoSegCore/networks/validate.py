"""Checks of a ``config["network"]`` section, with errors that name the key and say the fix.

The one owner of the network rules: ``AutoSegCore.config.validate_config`` calls ``validate_network`` for the
network section (choices and defaults in ``networks.defaults``).  A section that passed is remembered (by its JSON
text), so the builders' own ``validate_network`` calls on the config ``make_config`` returned cost a dict look-up.
"""
from __future__ import annotations

import copy
import json

from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import topology
from AutoSegCore.networks.defaults import ARCH_DEFAULTS, NETWORK_CHOICES, NETWORK_DEFAULTS

_VALID: dict[str, dict] = {}   # JSON text of a network section that passed → its checked form


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
    try:
        key = json.dumps(net_cfg, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        key = None                      # not JSON (e.g. a numpy value): checked every time
    if key is not None and key in _VALID:
        return copy.deepcopy(_VALID[key])
    cfg = _check_network(net_cfg, source)
    if key is not None and len(_VALID) < 4096:
        _VALID[key] = copy.deepcopy(cfg)
    return cfg


def _check_network(net_cfg: dict, source: str) -> dict:
    cfg = with_arch_defaults({**NETWORK_DEFAULTS, **net_cfg})
    for key in ("arch", "conv", "norm"):
        allowed = NETWORK_CHOICES[key]
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
        _validate_axes(cfg, source)
    else:
        for key in ("kernels", "strides"):
            if cfg.get(key) is not None:
                raise ConfigError(f"{source}: network.{key} is for arch unet only, not {arch}",
                                  f"remove network.{key} (or set it to null): {arch} sets its own kernels and poolings")
        if arch == "segnas":
            _validate_segnas(cfg["segnas"], source)
        else:
            _validate_emonas(cfg["emonas"], source)
    return cfg


def _triples(value, ok) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(t, (list, tuple)) and len(t) == 3 and all(ok(v) for v in t) for t in value)


def _validate_axes(cfg: dict, source: str) -> None:
    """network.kernels: one odd [x, y, z] kernel (1–7) per level; network.strides: one [x, y, z] of 1s and 2s per
    pooling (depth − 1); each None = what conv implies."""
    depth = cfg["depth"]
    for key, ok, count, what, example in (
            ("kernels", lambda v: _int_in(v, 1, 7) and v % 2 == 1, depth, "per level",
             "[[3, 3, 1], [3, 3, 3], …]"),
            ("strides", lambda v: _int_in(v, 1, 2), depth - 1, "per pooling",
             "[[2, 2, 1], [2, 2, 2], …]")):
        value = cfg.get(key)
        if value is None:
            continue
        if not _triples(value, ok):
            items = "odd integers 1–7" if key == "kernels" else "1s and 2s"
            raise ConfigError(f"{source}: network.{key} = {value!r} must be a list of [x, y, z] triples of {items}",
                              f"e.g. {key}: {example}, or null for what network.conv implies")
        if len(value) != count:
            raise ConfigError(f"{source}: network.{key} has {len(value)} entries but depth {depth} needs {count}",
                              f"give {count} [x, y, z] triples (one {what}), or change network.depth to match")


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
        matrix = topology.segnas_matrix(ops, s.get("nodes"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: network.segnas nodes = {s.get('nodes')!r}, ops = {list(ops)}: {exc}",
                          "give 1, 3 or 6 ops and nodes between 2 and the matrix size") from None
    if not topology.segnas_is_legal(matrix):
        raise ConfigError(f"{source}: network.segnas block {matrix.tolist()} is an illegal graph "
                          "(an intermediate node without input or output)",
                          "give every node before the last an outgoing op and every node after the first an incoming op")


def _validate_emonas(e: dict, source: str) -> None:
    inputs, ops = e.get("inputs"), e.get("ops")
    if not (isinstance(inputs, (list, tuple)) and len(inputs) == topology.EMONAS_NODES - 1
            and all(_int_in(i, 0, k - 1) for k, i in zip(range(2, topology.EMONAS_NODES + 1), inputs))):
        raise ConfigError(f"{source}: network.emonas.inputs = {inputs!r} must be [I2, I3, I4] with I_k in 0…k-1",
                          "0 = the cell input, j = node j; e.g. inputs: [0, 1, 1]")
    if not (isinstance(ops, (list, tuple)) and len(ops) == topology.EMONAS_NODES and all(o in topology.EMONAS_OPS for o in ops)):
        raise ConfigError(f"{source}: network.emonas.ops = {ops!r} must be 4 operation names",
                          f"choose from {', '.join(topology.EMONAS_OPS)}")
    for key, low, high, example in (("n_c", 1, 5, 3), ("n_f", 0, 8, 5)):
        if not _int_in(e.get(key), low, high):
            raise ConfigError(f"{source}: network.emonas.{key} = {e.get(key)!r} must be an integer in {low}–{high}",
                              f"e.g. network.emonas.{key}: {example}")
