"""One search's settings as every front end holds them — the Slicer panel (its parameter node), the web page (its
state), a script — as one frozen value: checked once (:meth:`SearchParameters.from_panel` against the engine's
own lists, and the value's own rules on construction) and turned into ``autoseg search`` arguments once
(:meth:`SearchParameters.search_args`).  SlicerNNUnet keeps one parameter pack with ``isValid()`` and
``asArgList()``; this is ours.

Raw panel values may be strings a browser sent (every page value is state a client can set to anything), Qt
numbers or None: each is parsed here with a message naming the field, never a traceback, and a list (a space, a
strategy…) comes from the engine's choices, never from the client.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from .errors import ConfigError, DatasetError

PROXY_UNITS = ("%", "cases")      # a proxy budget's unit as the panels offer it (a share of the cases, or a count)
_UNIT_NAMES = {"% of cases": "%"}     # the Slicer panel's wording of the same unit


def choice(value, allowed, what: str) -> str:
    """``value`` if it is one of ``allowed`` (the engine's list: e.g. a space name, never a path to any YAML file)."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{what} {str(value)[:80]!r} is not one of the page's choices",
                          f"pick one of: {', '.join(allowed)}")
    return value


def number(value, what: str) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = math.nan
    if not math.isfinite(result):
        raise DatasetError(f"{what} {str(value)[:80]!r} is not a number", "e.g. 30")
    return result


def positive_int(value, what: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or str(value).strip() not in (str(count), f"{count}.0"):
        raise DatasetError(f"{what} '{value}' is not a positive whole number", f"e.g. 1 or 2 {what}")
    return count


def optional_int(value, what: str) -> int | None:
    """A count field that may be left empty (the engine's default)."""
    return None if value is None or str(value).strip() == "" else positive_int(value, what)


def optional_minutes(value, what: str) -> float | None:
    """A minutes field: empty means "not set"; anything else must be a positive number."""
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    try:
        minutes = float(text)
    except ValueError:
        minutes = 0.0
    if not minutes > 0:
        raise DatasetError(f"{what} minutes '{text}' is not a positive number", "e.g. 30, or leave it empty")
    return minutes


def budget_value(value: float, unit: str) -> float | int:
    """The panel's proxy budget (a percentage or a case count) as the engine wants it (fraction or count)."""
    if unit.startswith("%"):
        if not 0 < value <= 100:
            raise ConfigError(f"proxy budget {value}% is outside 0–100%", "e.g. 25 %")
        return round(value / 100.0, 4)
    if value < 1:
        raise ConfigError(f"proxy budget of {value} cases is less than one", "e.g. 10 cases")
    return int(value)


def proxy_data_spec(method: str = "mi", roi: bool = True, budget: float | int = 0.25) -> str:
    """``--proxy-data`` value of ``autoseg search``, e.g. ``mi+roi:0.25``."""
    return f"{method}{'+roi' if roi else ''}:{budget}"


def parse_proxy(choices: Mapping[str, Iterable[str]], method, budget, unit) -> tuple[str, float | int]:
    """A panel's proxy-data fields — method, budget and its unit ("cases", "fraction", "%") — as the method and
    the budget the engine takes (a count of cases or a fraction), each checked with a message naming its field."""
    unit = choice(_UNIT_NAMES.get(unit, unit), PROXY_UNITS, "proxy budget unit")
    return (choice(method, list(choices["proxy_methods"]), "proxy method"),
            budget_value(number(budget, "proxy budget"), unit))


@dataclass(frozen=True)
class SearchParameters:
    """What one ``autoseg search`` runs with.  A time budget replaces the trial count (the engine takes one);
    ``final_time_minutes`` is the final training's own wall-clock budget (its lr schedule ends on it).  Frozen and
    comparable: a panel compares the value it last planned with the one it holds now to mark a shown plan stale."""

    space: str = "unet-pipeline"
    strategy: str = "random"
    trials: int | None = 20
    time_minutes: float | None = None
    final_time_minutes: float | None = None
    proxy_data: str | None = None         # "mi+roi:0.25"; None: every case
    proxy_net: str | None = None          # "levels=3"; None or "full": the full network
    device: str = "auto"
    epochs: int | None = None
    min_epochs: int | None = None
    steps_per_epoch: int | None = None
    final: bool = True
    final_epochs: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.time_minutes is not None:
            if not (isinstance(self.time_minutes, (int, float)) and self.time_minutes > 0):
                raise ConfigError(f"time limit {self.time_minutes!r} min must be positive", "e.g. 60 minutes")
        elif not (isinstance(self.trials, int) and self.trials >= 1):
            raise ConfigError(f"number of trials {self.trials!r} must be a positive integer", "e.g. 20")
        if self.final_time_minutes is not None and not (isinstance(self.final_time_minutes, (int, float))
                                                        and self.final_time_minutes > 0):
            raise ConfigError(f"final training time {self.final_time_minutes!r} min must be positive",
                              "e.g. 60 minutes")
        for name in ("epochs", "min_epochs", "steps_per_epoch", "final_epochs"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"{name.replace('_', ' ')} {value!r} must be a positive integer", "e.g. 2")

    @classmethod
    def from_panel(cls, choices: Mapping[str, Iterable[str]], *, space, strategy, trials=None, time_minutes=None,
                   final_time_minutes=None, use_proxy_data=False, proxy_method="mi", proxy_roi=True,
                   proxy_budget=25, proxy_budget_unit="%", proxy_net=None, device="auto", epochs=None,
                   steps_per_epoch=None, final_epochs=None, seed=None) -> SearchParameters:
        """A panel's raw values, each parsed and checked (lists against ``choices``, the engine's), as one value.
        Empty minutes mean "not set" (then the trial count runs); the proxy fields count only with
        ``use_proxy_data``."""
        proxy_data = None
        if use_proxy_data:
            method, budget = parse_proxy(choices, proxy_method, proxy_budget, proxy_budget_unit)
            proxy_data = proxy_data_spec(method, bool(proxy_roi), budget)
        time_minutes = optional_minutes(time_minutes, "search")
        return cls(space=choice(space, list(choices["spaces"]), "space"),
                   strategy=choice(strategy, list(choices["strategies"]), "strategy"),
                   trials=optional_int(trials, "trials") if time_minutes else positive_int(trials, "trials"),
                   time_minutes=time_minutes,
                   final_time_minutes=optional_minutes(final_time_minutes, "final training"),
                   proxy_data=proxy_data,
                   proxy_net=None if proxy_net in (None, "", "full") else choice(proxy_net,
                                                                                 list(choices["proxy_nets"]),
                                                                                 "proxy network"),
                   device=str(device or "auto"), epochs=optional_int(epochs, "epochs"),
                   steps_per_epoch=optional_int(steps_per_epoch, "steps per epoch"),
                   final_epochs=optional_int(final_epochs, "final epochs"),
                   seed=None if seed is None else int(seed))

    def search_args(self, data_dir: str | Path, out_dir: str | Path, storage: str | None = None,
                    extra: Iterable[str] = ()) -> list[str]:
        """Arguments of ``autoseg search`` (without the python prefix and --events)."""
        args = ["search", str(data_dir), "--space", self.space, "--strategy", self.strategy, "--out", str(out_dir)]
        args += ["--time", f"{self.time_minutes:g}m"] if self.time_minutes else ["--trials", str(self.trials)]
        optional = (("--proxy-data", self.proxy_data), ("--proxy-net", self.proxy_net), ("--storage", storage),
                    ("--epochs", self.epochs), ("--min-epochs", self.min_epochs),
                    ("--steps-per-epoch", self.steps_per_epoch), ("--final-epochs", self.final_epochs),
                    ("--seed", self.seed))
        for flag, value in optional:
            if value not in (None, "", "full", "none"):
                args += [flag, str(value)]
        if self.device and self.device != "auto":
            args += ["--device", self.device]
        if self.final_time_minutes and self.final:
            args += ["--final-time", f"{self.final_time_minutes:g}m"]
        if not self.final:
            args.append("--no-final")
        return args + list(extra)

    def forecast_args(self, data_dir: str | Path, out_dir: str | Path) -> list[str]:
        """Arguments of ``autoseg search --forecast-only`` for the same values: the search's own set-up, plan and
        cost forecast, no trial.  Never a ``storage``: the forecast's study is a scratch one in ``out_dir``, not
        a trial-less study in the user's database."""
        return self.search_args(data_dir, out_dir, extra=["--forecast-only"])
