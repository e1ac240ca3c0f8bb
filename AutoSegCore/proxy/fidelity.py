"""The fidelity ladder of the proxy paper as one concept: which data and which network size a trial trains on.

Rungs: full data / full net → proxy data / full net → full data / proxy net → proxy data / proxy net with
5, 4 or 3 levels.  A search picks one rung with ``--proxy-data`` and ``--proxy-net``; the final model is
always retrained at the top rung (full data, full net).

``--proxy-net`` spellings: ``full``; ``levels=N`` (or bare ``N``) = the proxy paper's fixed proxy network, which
overwrites the network size with constants; ``width=F`` or ``levels=N,width=F`` = the rank-preserving width rule, which shrinks
each sampled network relative to its own size.  Why two: the fixed rule gives every trial the same size, so it
cannot rank sizes and the search drops the size parameters; a space that searches size needs a shrink that keeps
the order of sizes (see ``AutoSegCore.networks.proxy``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from AutoSegCore.errors import ConfigError

# how proxy data is chosen (``autoseg proxy --method``, the METHOD of ``--proxy-data METHOD[+roi]:BUDGET``):
# mutual information, local normalised cross-correlation, or the random baseline; proxy.selection runs them
SELECTION_METHODS = ("mi", "ncc", "random")
_DATA_RE = re.compile(rf"^({'|'.join(SELECTION_METHODS)})(\+roi)?:([0-9.]+)$")
_NET_PART_RE = re.compile(r"^(levels|width)\s*=\s*(\S+)$")
NET_HINT = ("use full, levels=N (N in 2–6; the proxy paper's fixed proxy network: 5|4|3), width=F (0 < F ≤ 1, "
            "shrinks each net by F and keeps the order of sizes, e.g. width=0.25) or levels=N,width=F")


@dataclass(frozen=True)
class Fidelity:
    data_method: str | None = None      # None = all training data; else mi | ncc | random
    roi: bool = False                   # similarity inside the label ROI
    budget: float | None = None         # count (≥ 2) or fraction (< 1) of cases
    net_levels: int | None = None       # None = the full network; 5 / 4 / 3 = the proxy paper's proxy network
    net_width: float | None = None      # None = no width rule; F in (0, 1] = shrink by F (levels then only caps)

    @classmethod
    def parse(cls, data: str | None = "full", net: str | None = "full") -> "Fidelity":
        """``data``: 'full' or 'mi+roi:0.25' / 'ncc:20' / 'random:0.25'; ``net``: 'full', 'levels=3' (or '3'),
        'width=0.25' or 'levels=3,width=0.25' (order-insensitive, spaces allowed)."""
        method = roi = budget = None
        data = (data or "full").strip().lower()
        if data != "full":
            m = _DATA_RE.match(data)
            if not m:
                raise ConfigError(f"--proxy-data '{data}' is not understood",
                                  f"use full, or METHOD[+roi]:BUDGET with METHOD {'|'.join(SELECTION_METHODS)}, "
                                  "e.g. mi+roi:0.25")
            method, roi, budget = m.group(1), bool(m.group(2)), float(m.group(3))
            if budget > 1 and budget != int(budget):
                raise ConfigError(f"--proxy-data '{data}': a budget above 1 is a number of cases and must be whole",
                                  "give a count such as mi+roi:20 or a fraction of the cases such as mi+roi:0.25")
            if budget >= 1 and "." not in m.group(3):
                budget = int(budget)             # a count; "1.0" stays the fraction "all cases"
        levels, width = cls._parse_net(net)
        return cls(method, bool(roi), budget, levels, width)

    @staticmethod
    def _parse_net(net: str | None) -> tuple[int | None, float | None]:
        net = (net or "full").strip().lower()
        if net == "full":
            return None, None
        bad = ConfigError(f"--proxy-net '{net}' is not understood", NET_HINT)
        if re.fullmatch(r"[0-9]+", net):               # bare N = levels=N
            net = f"levels={net}"
        values: dict[str, str] = {}
        for part in net.split(","):
            m = _NET_PART_RE.match(part.strip())
            if not m or m.group(1) in values:
                raise bad
            values[m.group(1)] = m.group(2)
        levels = width = None
        if "levels" in values:
            if not re.fullmatch(r"[0-9]+", values["levels"]) or int(values["levels"]) not in (2, 3, 4, 5, 6):
                raise bad
            levels = int(values["levels"])
        if "width" in values:
            try:
                width = float(values["width"])
            except ValueError:
                raise bad from None
            if not (math.isfinite(width) and 0 < width <= 1):
                raise bad
        return levels, width

    @property
    def is_full(self) -> bool:
        return self.data_method is None and self.net_levels is None and self.net_width is None

    @property
    def data_label(self) -> str:
        if self.data_method is None:
            return "full"
        return f"{self.data_method}{'+roi' if self.roi else ''}:{self.budget:g}"

    @property
    def net_label(self) -> str:
        """'full', 'levels=3', 'width=0.25' or 'levels=3,width=0.25'; ``parse`` reads it back to an equal value."""
        parts = [] if self.net_levels is None else [f"levels={self.net_levels}"]
        if self.net_width is not None:
            text = f"{self.net_width:g}"
            parts.append(f"width={text if float(text) == self.net_width else repr(float(self.net_width))}")
        return ",".join(parts) or "full"

    def describe(self) -> str:
        return f"data {self.data_label} / net {self.net_label}"

    def apply_network(self, net_cfg: dict) -> dict:
        """The network a trial trains at this rung: the proxy paper's fixed shrink for ``levels=N``, the width rule for
        ``width=F`` (with ``levels=N`` as a cap), the network itself at full network fidelity."""
        if self.net_levels is None and self.net_width is None:
            return dict(net_cfg)
        from AutoSegCore.networks import proxy_network

        return proxy_network(net_cfg, levels=self.net_levels, width=self.net_width)

    @property
    def fixes_network_size(self) -> bool:
        """True for the proxy paper's fixed rule: every trial trains one size, so a search cannot rank the size keys."""
        return self.net_levels is not None and self.net_width is None

    def to_dict(self) -> dict:
        return {"data": self.data_label, "net": self.net_label}


def ladder(method: str = "mi", roi: bool = True, budget: float = 0.25) -> list[Fidelity]:
    """All rungs, cheapest last, for experiments that compare them."""
    return [
        Fidelity(),
        Fidelity(method, roi, budget, None),
        *[Fidelity(None, False, None, lv) for lv in (5, 4, 3)],
        *[Fidelity(method, roi, budget, lv) for lv in (5, 4, 3)],
    ]
