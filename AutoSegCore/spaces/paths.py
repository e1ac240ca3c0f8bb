"""Dotted config keys (``training.augmentation.intensity_shift_prob``, ``network.segnas.ops.3``): which exist,
and setting them.  A numeric part indexes a list."""
from __future__ import annotations

from typing import Any

from AutoSegCore.config import DEFAULT_CONFIG, deep_merge
from AutoSegCore.networks import ARCH_DEFAULTS

# every key a space may map to: the config defaults plus the arch sub-sections of the network section
KNOWN_CONFIG = deep_merge(DEFAULT_CONFIG, {"network": ARCH_DEFAULTS})


def _step(node: Any, part: str) -> tuple[bool, Any]:
    if isinstance(node, dict):
        return (part in node), node.get(part)
    if isinstance(node, list) and part.isdigit():
        i = int(part)
        return i < len(node), (node[i] if i < len(node) else None)
    return False, None


def known_key(path: str) -> bool:
    try:
        get_key(KNOWN_CONFIG, path)
    except KeyError:
        return False
    return True


def get_key(cfg: dict, path: str) -> Any:
    """The value at ``path`` in ``cfg`` (``KeyError`` naming the path if absent)."""
    node: Any = cfg
    for part in path.split("."):
        ok, node = _step(node, part)
        if not ok:
            raise KeyError(path)
    return node


def set_key(cfg: dict, path: str, value: Any) -> None:
    """Set ``path`` in ``cfg`` in place, creating missing dict levels; list indices must exist."""
    parts = path.split(".")
    node: Any = cfg
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
