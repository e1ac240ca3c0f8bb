"""``SearchSpace``: a declarative search space (plain data) and the four things a search does with it —
list its distributions, sample it define-by-run, turn a point into a validated experiment config, and turn a
trial's result into objective values."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import optuna
import yaml

from AutoSegCore.config import DEFAULT_CONFIG, deep_merge, make_config
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import validate_network, with_arch_defaults
from AutoSegCore.spaces import objectives
from AutoSegCore.spaces.params import ParamSpec, parse_param
from AutoSegCore.spaces.paths import get_key, known_key, set_key

TOP_KEYS = {"name", "description", "directions", "objective", "fixed", "params"}
DIRECTIONS = ("maximize", "minimize")


# bounds of a relative parameter's result where the config has them (depth + offset stays a buildable U-Net)
CLAMP = {"network.depth": (2, 6)}


def _clamped(path: str, value: Any) -> Any:
    low, high = CLAMP.get(path, (None, None))
    return value if low is None or not isinstance(value, int) else min(high, max(low, value))


class SearchSpace:
    """Parameters (each with an Optuna distribution, a config key and an optional condition), fixed config
    values, optimisation directions and the objective kind ("dice" or "emonas")."""

    def __init__(self, name: str, params: list[ParamSpec], directions: list[str] | None = None,
                 fixed: dict | None = None, objective: dict | None = None, description: str = "",
                 source: str = "") -> None:
        self.name = name
        self.params = list(params)
        self.directions = list(directions or ["maximize"])
        self.fixed = dict(fixed or {})
        self.objective = dict(objective or {"kind": "dice"})
        self.description = description
        self.source = source or name

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "space") -> "SearchSpace":
        """Validate plain data (as read from YAML/JSON) and build the space; ``ConfigError`` names what is wrong."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a search space must be a mapping with 'name' and 'params'",
                              "see docs/spaces.md for the format")
        unknown = sorted(set(data) - TOP_KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}", f"allowed keys: {', '.join(sorted(TOP_KEYS))}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{source}: missing 'name'", "add e.g. name: my-space")
        raw_params = data.get("params")
        if not isinstance(raw_params, list) or not raw_params:
            raise ConfigError(f"{source}: 'params' must be a non-empty list", "add at least one parameter")
        params: list[ParamSpec] = []
        for i, raw in enumerate(raw_params):
            param = parse_param(raw, i, [p.name for p in params], source)
            if param.config is not None and not known_key(param.config):
                raise ConfigError(f"{source}: parameter '{param.name}': config key '{param.config}' does not exist",
                                  "map to an existing key such as training.lr or network.depth (see AutoSegCore/config.py)")
            params.append(param)
        objective = data.get("objective", {"kind": "dice"})
        if isinstance(objective, str):
            objective = {"kind": objective}
        if not isinstance(objective, dict) or objective.get("kind") not in objectives.KINDS:
            raise ConfigError(f"{source}: objective = {objective!r} is not one of {list(objectives.KINDS)}",
                              "use objective: dice (or objective: {kind: emonas, alpha: 0.25, beta: 0.25})")
        bad_opts = sorted(set(objective) - {"kind"} - set(objectives.EMONAS_DEFAULTS))
        if bad_opts or (objective["kind"] == "dice" and len(objective) > 1):
            raise ConfigError(f"{source}: objective options {bad_opts or sorted(set(objective) - {'kind'})} "
                              f"not understood for kind {objective['kind']}",
                              f"emonas takes {', '.join(objectives.EMONAS_DEFAULTS)}; dice takes none")
        n_obj = objectives.KINDS[objective["kind"]]
        directions = data.get("directions", ["maximize"] if n_obj == 1 else ["minimize"] * n_obj)
        if (not isinstance(directions, list) or len(directions) != n_obj
                or any(d not in DIRECTIONS for d in directions)):
            raise ConfigError(f"{source}: directions = {directions!r} must list {n_obj} of {list(DIRECTIONS)}",
                              f"objective '{objective['kind']}' has {n_obj} value(s)")
        fixed = data.get("fixed") or {}
        if not isinstance(fixed, dict):
            raise ConfigError(f"{source}: 'fixed' must map config keys to values", "e.g. fixed: {network.arch: unet}")
        for key in fixed:
            if not known_key(str(key)):
                raise ConfigError(f"{source}: fixed key '{key}' does not exist",
                                  "use an existing dotted config key such as network.arch")
        space = cls(name, params, directions, fixed, objective, str(data.get("description", "")), source)
        space._base_config()    # fixed values must form a valid config on their own
        return space

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out.update(directions=list(self.directions), objective=dict(self.objective))
        if self.fixed:
            out["fixed"] = copy.deepcopy(self.fixed)
        out["params"] = [p.to_dict() for p in self.params]
        return out

    def save(self, path: str | Path) -> Path:
        """Write the space as YAML (or JSON for a .json path), atomically."""
        from AutoSegCore.utils.io import write_text
        p = Path(path)
        data = self.to_dict()
        text = json.dumps(data, indent=2) + "\n" if p.suffix.lower() == ".json" else \
            yaml.safe_dump(data, sort_keys=False)
        return write_text(p, text)

    # -- what a search uses -------------------------------------------------------------------------------
    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Every parameter's distribution, conditional ones included (flat)."""
        return {p.name: p.distribution for p in self.params}

    def active_params(self, params: dict) -> list[ParamSpec]:
        """The parameters whose conditions hold for ``params``."""
        return [p for p in self.params if p.is_active(params)]

    def suggest(self, trial: optuna.Trial) -> dict:
        """Define-by-run sampling: only parameters whose condition holds are suggested."""
        values: dict = {}
        for p in self.params:
            if p.is_active(values):
                values[p.name] = p.suggest(trial)
        return values

    def without(self, config_keys) -> tuple["SearchSpace", list[str]]:
        """A copy without the parameters stored at ``config_keys`` (they keep the base config's value), and
        their names. A parameter another one's condition refers to is kept: removing it would switch that one off."""
        keys = set(config_keys)
        referenced = {c.param for p in self.params for c in p.when}
        drop = [p.name for p in self.params if p.config in keys and p.name not in referenced]
        out = copy.copy(self)
        out.params = [p for p in self.params if p.name not in drop]
        return out, drop

    def to_config(self, params: dict, base: dict | None = None, plan: dict | None = None) -> dict:
        """Full validated experiment config for a point of the space (``ConfigError`` if illegal/out of range).

        ``plan`` (the dataset's, ``AutoSegCore.planning``; else the defaults) < ``base`` (e.g. a user's config) <
        the space's ``fixed`` values < the point's active parameters; a ``relative`` parameter is applied to the
        value below it (e.g. depth = the plan's + 1), and the network is then fitted to the plan's per-axis rule.
        Inactive parameters in ``params`` are ignored; the active values are recorded under ``space``."""
        unknown = sorted(set(params) - {p.name for p in self.params})
        if unknown:
            raise ConfigError(f"space {self.name}: unknown parameter(s) {unknown}",
                              f"parameters are {[p.name for p in self.params]}")
        cfg = self._base_config(base, validate=False, plan=plan)
        used: dict = {}
        for p in self.params:
            if not p.is_active(used):      # conditions refer only to earlier parameters
                continue
            if p.name not in params:
                raise ConfigError(f"space {self.name}: active parameter '{p.name}' has no value",
                                  "pass a value for every parameter whose condition holds")
            value = p.check_value(params[p.name], f"space {self.name}")
            used[p.name] = value
            if p.config:
                try:
                    stored = p.applied(value, get_key(cfg, p.config)) if p.relative else value
                    set_key(cfg, p.config, bool(stored) if p.cast == "bool" else _clamped(p.config, stored))
                except (IndexError, ValueError, TypeError, KeyError):
                    raise ConfigError(f"space {self.name}: parameter '{p.name}' cannot be stored at '{p.config}'",
                                      "the base config's list there is too short; fix the base or the space") from None
        if plan is not None:
            from AutoSegCore.planning.planner import fit_network

            cfg = fit_network(plan, cfg)
        return self._finish(cfg, used)

    def planned_point(self, base: dict | None = None, plan: dict | None = None) -> dict | None:
        """The point whose config is the one the space starts from — the plan under ``base`` and the space's
        ``fixed`` values: relative offsets 0, scales 1, every other parameter at the value the config holds.

        A search queues it first, so the recipe ``autoseg train`` would train competes at the trials' fidelity
        and a searched config wins only by beating it.  None when the space cannot express that config (a value
        outside a range or missing from a choice list, a parameter without a config key, e.g. a DAG space)."""
        cfg = self._base_config(base, validate=False, plan=plan)
        point: dict = {}
        for p in self.params:
            if not p.is_active(point):
                continue
            if not p.config:
                return None
            if p.relative:
                value = 0 if p.relative == "offset" else 1
            else:
                try:
                    value = get_key(cfg, p.config)
                except (KeyError, IndexError, TypeError):
                    return None
                value = int(bool(value)) if p.cast == "bool" else value
            try:
                point[p.name] = p.check_value(value, "the plan")
            except ConfigError:
                return None
        try:
            self.to_config(point, base, plan)
        except ConfigError:
            return None
        return point

    def is_legal(self, params: dict) -> bool:
        """Whether the point gives a buildable network and a valid config (e.g. False for illegal SegNAS DAGs)."""
        try:
            self.to_config(params)
        except ConfigError:
            return False
        return True

    def objectives(self, result: dict) -> tuple[float, ...]:
        """Objective values (in ``directions`` order) from a trial result with val_dice, num_params, ..."""
        return objectives.compute(self.objective["kind"], self._objective_options(), result)

    def worst_objectives(self, num_params: int | None = None) -> tuple[float, ...]:
        """Values to record for a failed, out-of-memory or illegal trial (worse than any real result)."""
        return objectives.worst(self.objective["kind"], self._objective_options(), num_params)

    # -- internals ----------------------------------------------------------------------------------------
    def _objective_options(self) -> dict:
        return {k: v for k, v in self.objective.items() if k != "kind"}

    def _base_config(self, base: dict | None = None, validate: bool = True, plan: dict | None = None) -> dict:
        # a plan's own budget (training.time_limit) is for `autoseg train`: a search budgets its trials in epochs
        # and its final training with --final-time
        start = DEFAULT_CONFIG if plan is None else deep_merge(plan["config"], {"training": {
            "time_limit": None, "epochs": DEFAULT_CONFIG["training"]["epochs"]}})
        cfg = deep_merge(start, base)
        cfg.pop("space", None)
        for _ in range(2):      # again after the arch defaults exist, so fixed list items land in them
            for key, value in self.fixed.items():
                set_key(cfg, key, copy.deepcopy(value))
            cfg["network"] = with_arch_defaults(cfg["network"])
        if validate:
            self._finish(cfg, {})
        return cfg

    def _finish(self, cfg: dict, used: dict) -> dict:
        try:
            cfg = make_config(cfg)
            cfg["network"] = validate_network(cfg["network"])
        except ConfigError as exc:
            raise ConfigError(f"space {self.source}: {exc.message}", exc.hint) from None
        cfg["space"] = {"name": self.name, "params": dict(used)}
        return cfg

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.params)} params, directions={self.directions})"
