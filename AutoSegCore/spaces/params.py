"""One search-space parameter as plain data: its Optuna distribution, where it goes in the config, and when it
is active.  Conditions are data (``{param: optimizer, equals: sgd}``), never strings to evaluate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna.distributions as od

from AutoSegCore.config import CHOICES
from AutoSegCore.errors import ConfigError

OPERATORS = {
    "equals": lambda v, ref: v == ref,
    "not_equals": lambda v, ref: v != ref,
    "in": lambda v, ref: v in ref,
    "not_in": lambda v, ref: v not in ref,
    "gt": lambda v, ref: v > ref,
    "ge": lambda v, ref: v >= ref,
    "lt": lambda v, ref: v < ref,
    "le": lambda v, ref: v <= ref,
}
TYPES = ("float", "int", "categorical")
CASTS = ("bool",)
PARAM_KEYS = {"name", "type", "low", "high", "log", "step", "choices", "config", "when", "cast", "description",
              "relative"}
# relative: the value is applied to what the config holds at that key before the point is set — the dataset's
# plan, under the user's base config — so one space means the same on a 96³ CT and a 35×51×35 crop
RELATIVE = ("offset", "scale")


@dataclass(frozen=True)
class Condition:
    """``param <op> value``; false when ``param`` itself is inactive (absent)."""
    param: str
    op: str
    value: Any

    def holds(self, values: dict) -> bool:
        if self.param not in values:
            return False
        try:
            return bool(OPERATORS[self.op](values[self.param], self.value))
        except TypeError:       # e.g. "gt" between a string choice and a number
            return False

    def to_dict(self) -> dict:
        return {"param": self.param, self.op: self.value}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    distribution: od.BaseDistribution
    config: str | None = None              # dotted config path, e.g. "training.lr" or "network.segnas.ops.3"
    when: tuple[Condition, ...] = ()       # all must hold for the param to be active
    cast: str | None = None                # "bool": store 0/1 as False/True in the config
    description: str = ""
    relative: str | None = None            # "offset": planned value + v; "scale": planned value × v (lists each)

    def applied(self, value: Any, planned: Any) -> Any:
        """What the config gets: ``value`` itself, or ``value`` applied to the ``planned`` value there (None: the
        key has no value to be relative to, and keeps None)."""
        if self.relative is None:
            return value
        if planned is None or isinstance(planned, bool):
            return planned
        if isinstance(planned, list):
            return [self.applied(value, v) for v in planned]
        out = planned + value if self.relative == "offset" else planned * value
        return max(1, int(round(out))) if isinstance(planned, int) else float(out)

    def is_active(self, values: dict) -> bool:
        return all(c.holds(values) for c in self.when)

    def suggest(self, trial) -> Any:
        d = self.distribution
        if isinstance(d, od.FloatDistribution):
            return trial.suggest_float(self.name, d.low, d.high, log=d.log, step=d.step)
        if isinstance(d, od.IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_categorical(self.name, d.choices)

    def check_value(self, value: Any, source: str) -> Any:
        """Return ``value`` as the distribution's type, or raise ``ConfigError`` if it lies outside."""
        d = self.distribution
        bad = ConfigError(f"{source}: parameter '{self.name}' = {value!r} is outside its range {_range(d)}",
                          "pass a value the space allows (or fix the space)")
        if isinstance(d, od.CategoricalDistribution):
            if value not in d.choices:
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        if isinstance(d, od.IntDistribution):
            if float(value) != int(value):
                raise bad
            value = int(value)
        else:
            value = float(value)
        if not d._contains(d.to_internal_repr(value)):
            raise bad
        return value

    def to_dict(self) -> dict:
        d = self.distribution
        out: dict[str, Any] = {"name": self.name}
        if isinstance(d, od.CategoricalDistribution):
            out.update(type="categorical", choices=list(d.choices))
        else:
            out.update(type="int" if isinstance(d, od.IntDistribution) else "float", low=d.low, high=d.high)
            if d.log:
                out["log"] = True
            default_step = 1 if isinstance(d, od.IntDistribution) else None
            if d.step != default_step:
                out["step"] = d.step
        if self.config:
            out["config"] = self.config
        if self.when:
            out["when"] = [c.to_dict() for c in self.when]
        if self.cast:
            out["cast"] = self.cast
        if self.description:
            out["description"] = self.description
        if self.relative:
            out["relative"] = self.relative
        return out


def _range(d: od.BaseDistribution) -> str:
    if isinstance(d, od.CategoricalDistribution):
        return str(list(d.choices))
    return f"[{d.low}, {d.high}]" + (" (log)" if d.log else "") + (f" step {d.step}" if d.step else "")


def parse_condition(raw: Any, param: str, known: list[str], source: str) -> Condition:
    """``{param: X, <op>: value}`` where X is a parameter defined *before* ``param``."""
    where = f"{source}: parameter '{param}': when"
    if not isinstance(raw, dict) or "param" not in raw:
        raise ConfigError(f"{where} = {raw!r} must be a mapping like {{param: depth, gt: 2}}",
                          f"operators: {', '.join(OPERATORS)}")
    ops = [k for k in raw if k != "param"]
    if len(ops) != 1 or ops[0] not in OPERATORS:
        raise ConfigError(f"{where}: operator {ops or '(none)'} is not one of {list(OPERATORS)}",
                          "write exactly one operator, e.g. {param: optimizer, equals: sgd}")
    ref = raw["param"]
    if ref not in known:
        raise ConfigError(f"{where} refers to '{ref}', which is not a parameter defined above it",
                          f"refer to one of {known or 'the parameters listed before this one'}")
    op, value = ops[0], raw[ops[0]]
    if op in ("in", "not_in") and not isinstance(value, list):
        raise ConfigError(f"{where}: '{op}' needs a list, got {value!r}", f"e.g. {{param: {ref}, {op}: [a, b]}}")
    return Condition(ref, op, value)


def parse_param(raw: Any, index: int, known: list[str], source: str) -> ParamSpec:
    """Validate one entry of ``params:`` and build its ``ParamSpec``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ConfigError(f"{source}: params[{index}] = {raw!r} needs a 'name'",
                          "each parameter is a mapping like {name: lr, type: float, low: 1e-4, high: 1e-2}")
    name = raw["name"]
    where = f"{source}: parameter '{name}'"
    unknown = sorted(set(raw) - PARAM_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}", f"allowed keys: {', '.join(sorted(PARAM_KEYS))}")
    if name in known:
        raise ConfigError(f"{where} is defined twice", "give every parameter a unique name")
    kind = raw.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{where}: type = {kind!r} is not one of {list(TYPES)}",
                          "use float, int or categorical")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty 'choices' list", "e.g. choices: [adam, sgd]")
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(f"{where}: choices must be plain numbers, strings or booleans", "e.g. choices: [2d, 3d]")
        target = tuple(str(raw.get("config", "")).split("."))
        allowed = CHOICES.get(target) if len(target) == 2 else None
        wrong = [c for c in choices if allowed is not None and c not in allowed]
        if wrong:   # else every trial drawing it would fail as an "illegal architecture", and the study go on
            raise ConfigError(f"{where}: choice(s) {wrong} are not values of {raw['config']}",
                              f"use only: {', '.join(map(str, allowed))}")
        dist: od.BaseDistribution = od.CategoricalDistribution(choices)
    else:
        low, high, log, step = raw.get("low"), raw.get("high"), bool(raw.get("log", False)), raw.get("step")
        number = int if kind == "int" else (int, float)
        for key, v in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
            if isinstance(v, bool) or not isinstance(v, number):
                raise ConfigError(f"{where}: {key} = {v!r} must be {'an integer' if kind == 'int' else 'a number'}",
                                  f"give {kind} parameters numeric low and high, e.g. low: 1, high: 8")
            if not math.isfinite(v):
                raise ConfigError(f"{where}: {key} = {v!r} must be a finite number", "e.g. low: 1.0e-4, high: 1.0e-2")
        if low > high:
            raise ConfigError(f"{where}: low = {low} is greater than high = {high}", "swap low and high")
        if log and low <= 0:
            raise ConfigError(f"{where}: log scale needs low > 0, got low = {low}", "raise low or drop log: true")
        if log and step is not None and (kind == "float" or step != 1):
            raise ConfigError(f"{where}: log scale cannot be combined with step = {step}", "drop one of them")
        if step is not None and step <= 0:
            raise ConfigError(f"{where}: step = {step} must be positive", "e.g. step: 1")
        try:
            dist = (od.IntDistribution(low, high, log=log, step=step or 1) if kind == "int"
                    else od.FloatDistribution(float(low), float(high), log=log,
                                              step=None if step is None else float(step)))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}", "fix low/high/step/log") from None
    cast = raw.get("cast")
    if cast is not None and cast not in CASTS:
        raise ConfigError(f"{where}: cast = {cast!r} is not one of {list(CASTS)}", "use cast: bool or leave it out")
    when_raw = raw.get("when")
    when_list = [] if when_raw is None else when_raw if isinstance(when_raw, list) else [when_raw]
    when = tuple(parse_condition(c, name, known, source) for c in when_list)
    config = raw.get("config")
    if config is not None and not (isinstance(config, str) and config):
        raise ConfigError(f"{where}: config = {config!r} must be a dotted key like training.lr", "e.g. config: training.lr")
    relative = raw.get("relative")
    if relative is not None and (relative not in RELATIVE or kind == "categorical" or not config):
        raise ConfigError(f"{where}: relative = {relative!r} must be offset or scale, on a numeric parameter with a "
                          "config key", "e.g. {name: depth, type: int, low: -1, high: 1, relative: offset, "
                          "config: network.depth}")
    return ParamSpec(name, dist, config, when, cast, str(raw.get("description", "")), relative)
