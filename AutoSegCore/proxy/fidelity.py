"""The fidelity ladder of paper (a) as one concept: which data and which network size a trial trains on.

Rungs: full data / full net → proxy data / full net → full data / proxy net → proxy data / proxy net with
5, 4 or 3 levels.  A search picks one rung with ``--proxy-data`` and ``--proxy-net``; the final model is
always retrained at the top rung (full data, full net).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from AutoSegCore.errors import ConfigError

_DATA_RE = re.compile(r"^(mi|ncc|random)(\+roi)?:([0-9.]+)$")


@dataclass(frozen=True)
class Fidelity:
    data_method: str | None = None      # None = all training data; else mi | ncc | random
    roi: bool = False                   # similarity inside the label ROI
    budget: float | None = None         # count (≥ 2) or fraction (< 1) of cases
    net_levels: int | None = None       # None = the full network; 5 / 4 / 3 = paper a's proxy network

    @classmethod
    def parse(cls, data: str | None = "full", net: str | None = "full") -> "Fidelity":
        """``data``: 'full' or 'mi+roi:0.25' / 'ncc:20' / 'random:0.25'; ``net``: 'full' or 'levels=3'."""
        method = roi = budget = None
        data = (data or "full").strip().lower()
        if data != "full":
            m = _DATA_RE.match(data)
            if not m:
                raise ConfigError(f"--proxy-data '{data}' is not understood",
                                  "use full, or METHOD[+roi]:BUDGET with METHOD mi|ncc|random, e.g. mi+roi:0.25")
            method, roi, budget = m.group(1), bool(m.group(2)), float(m.group(3))
            if budget >= 1:
                budget = int(budget)
        levels = None
        net = (net or "full").strip().lower()
        if net != "full":
            m = re.match(r"^(?:levels=)?([0-9]+)$", net)
            if not m or int(m.group(1)) not in (2, 3, 4, 5, 6):
                raise ConfigError(f"--proxy-net '{net}' is not understood", "use full or levels=5|4|3")
            levels = int(m.group(1))
        return cls(method, bool(roi), budget, levels)

    @property
    def is_full(self) -> bool:
        return self.data_method is None and self.net_levels is None

    @property
    def data_label(self) -> str:
        if self.data_method is None:
            return "full"
        return f"{self.data_method}{'+roi' if self.roi else ''}:{self.budget:g}"

    @property
    def net_label(self) -> str:
        return "full" if self.net_levels is None else f"levels={self.net_levels}"

    def describe(self) -> str:
        return f"data {self.data_label} / net {self.net_label}"

    def apply_network(self, net_cfg: dict) -> dict:
        """The network a trial trains at this rung (paper a's shrink rule when a proxy net is asked for)."""
        if self.net_levels is None:
            return dict(net_cfg)
        from AutoSegCore.networks import proxy_network

        return proxy_network(net_cfg, levels=self.net_levels)

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
