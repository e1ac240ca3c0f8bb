"""The experiment configuration: plain data (YAML/JSON), deep-merged over defaults and validated.

A config has four sections — ``network``, ``preprocessing``, ``training``, ``inference`` — and is what a
search-space point maps to.  Nothing here is ever evaluated as code (``yaml.safe_load`` only).  Every key of every
section is checked against ``RULES`` before any work, so a bad value is a one-line ``ConfigError`` naming the file,
the key and the fix (``validate_config``), not a traceback mid-training.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from AutoSegCore.errors import ConfigError
from AutoSegCore.networks.defaults import ARCH_DEFAULTS, NETWORK_CHOICES, NETWORK_DEFAULTS

DEFAULT_CONFIG: dict[str, Any] = {
    "network": dict(NETWORK_DEFAULTS),   # AutoSegCore.networks.defaults owns the network keys
    "preprocessing": {
        "normalization": "zscore",   # zscore | percentile_zscore | minmax | none | ct_window
        "ct_window": [-1000.0, 1000.0],
        "resampling": "none",        # none | median | mean (spacing)
        "crop_foreground": True,
    },
    "training": {
        "loss": "dice_ce",           # dice | generalized_dice | dice_ce | dice_focal | dice_topk | dice_hausdorff
        "optimizer": "adamw",        # adam | adamw | rmsprop | adamax | novograd | sgd
        "lr": 3e-3,
        "weight_decay": 1e-5,
        "momentum": 0.99,
        "scheduler": "cosine",       # cosine | poly | constant
        "warmup_steps": 200,
        "grad_clip": 12.0,           # max gradient norm (nnU-Net's 12); steps with a non-finite norm are skipped
        "epochs": 50,                # with time_limit: the most epochs the budget may buy
        "time_limit": None,          # seconds of training: the lr schedule is re-fitted to end at this budget
        "steps_per_epoch": 25,
        "batch_size": 4,
        "patch_size": None,          # None = the dataset's canvas (max shape, padded to the net's divisor)
        "augmentation": {
            "flip_axes": "auto",     # auto (decided from label geometry) | list of spatial axes
            "rotate_prob": 0.0,
            "rotate_range": 0.26,    # radians
            "scale_prob": 0.0,
            "scale_range": 0.1,
            "gamma_prob": 0.0,
            "gamma_range": [0.8, 1.25],
            "intensity_scale": 0.1,
            "intensity_shift_prob": 0.5,
            "intensity_shift": 0.1,
            "translate": 4,
            "foreground_oversample": 1 / 3,     # share of crops centred on a foreground voxel (nnU-Net's 1/3)
        },
        "amp": "auto",               # auto | off | bf16 | fp16 | on (docs/performance.md: by device and net size)
        "channels_last": "auto",     # auto (on for CPU) | on | off: NDHWC memory format (docs/performance.md)
        "seed": 0,
        "val_every": 1,
    },
    "inference": {
        "tta": False,
        "largest_component": [],     # label values to keep only the largest component of, or "auto"
        "overlap": 0.5,
    },
}

CHOICES = {
    **{("network", key): values for key, values in NETWORK_CHOICES.items()},
    ("preprocessing", "normalization"): ("zscore", "percentile_zscore", "minmax", "none", "ct_window"),
    ("preprocessing", "resampling"): ("none", "median", "mean"),
    ("training", "loss"): ("dice", "generalized_dice", "dice_ce", "dice_focal", "dice_topk", "dice_hausdorff"),
    ("training", "optimizer"): ("adam", "adamw", "rmsprop", "adamax", "novograd", "sgd"),
    ("training", "scheduler"): ("cosine", "poly", "constant"),
    ("training", "amp"): ("auto", "off", "bf16", "fp16", "on"),
    ("training", "channels_last"): ("auto", "on", "off"),
}


# a time-budgeted run's epochs when none are given: the budget decides (training.time_limit)
EPOCH_CAP_WITH_TIME_LIMIT = 100_000


def deep_merge(base: dict, override: dict | None) -> dict:
    """Return a copy of ``base`` with ``override`` merged in (nested dicts merged, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_config(override: dict | None = None) -> dict:
    """Defaults + ``override``, validated."""
    cfg = _lift_epoch_cap(deep_merge(DEFAULT_CONFIG, override), override)
    validate_config(cfg)
    return cfg


def _lift_epoch_cap(cfg: dict, override: dict | None) -> dict:
    """A config that sets training.time_limit but no epochs means "train for that long", not the default 50."""
    given = (override or {}).get("training") or {}
    if isinstance(given, dict) and given.get("time_limit") is not None and "epochs" not in given:
        cfg["training"]["epochs"] = EPOCH_CAP_WITH_TIME_LIMIT
    return cfg


# ------------------------------------------------------------------------------------------------ validation
# Hand-written rather than a schema library: neither pydantic nor jsonschema is a dependency (pyproject.toml), and
# the product needs its own one-line messages anyway — "<file>: training.val_every = 0 must be a positive integer"
# with a hint holding an example value — which a generic validator's errors would have to be re-worded into.
# One ``Rule`` per key, in ``RULES`` (a nested dict shaped like ``DEFAULT_CONFIG``); ``validate_config`` walks it.


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v) -> bool:
    """A real, finite number (not a bool, not .inf/.nan, not an integer too large for a float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _show(v) -> str:
    """A value as it is written in YAML: auto, [0.8, 1.25], null, true, 1.0e-05 (PyYAML reads 1e-05 as text)."""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + ", ".join(map(_show, v)) + "]"
    if isinstance(v, float) and "e" in repr(v) and "." not in repr(v):
        return repr(v).replace("e", ".0e")
    return json.dumps(v)


_BRIEF = reprlib.Repr()
_BRIEF.maxstring, _BRIEF.maxother = 60, 60


def _brief(v) -> str:
    """``repr(v)`` cut short, so a 400-digit number or a long list still gives a one-line message."""
    return _BRIEF.repr(v)


def _name(key) -> str:
    """A key as a message shows it: itself if a short string, else its brief repr."""
    return key if isinstance(key, str) and len(key) <= 60 and key.isprintable() else _brief(key)


@dataclass(frozen=True)
class Rule:
    """What one key accepts: ``ok(value)``; ``must`` completes "<key> = <value> …"; ``example`` is a valid value
    and ``advice`` (default "e.g. <example>") completes the hint "set <key> to …"."""
    ok: Callable[[Any], bool]
    must: str
    example: Any
    advice: str = ""

    def hint(self, path: str) -> str:
        return f"set {path} to {self.advice or 'e.g. ' + _show(self.example)}"


def choice(allowed) -> Rule:
    return Rule(lambda v: not isinstance(v, bool) and v in allowed, f"is not one of {list(allowed)}", allowed[0],
                f"one of {', '.join(map(str, allowed))}")


def integer(low: int, high: int | None = None, example: int = 1) -> Rule:
    must = ("must be a positive integer" if (low, high) == (1, None) else
            f"must be an integer ≥ {low}" if high is None else f"must be an integer in {low}–{high}")
    return Rule(lambda v: _is_int(v) and v >= low and (high is None or v <= high), must, example)


def number(low: float, high: float | None = None, example: float = 1.0, *,
           open_low: bool = False, open_high: bool = False) -> Rule:
    """A finite number in the interval; ``open_low``/``open_high`` exclude that end."""
    def ok(v) -> bool:
        return (_is_finite(v) and (v > low if open_low else v >= low)
                and (high is None or (v < high if open_high else v <= high)))
    if high is None:
        must = ("must be a positive, finite number" if (low, open_low) == (0, True) else
                f"must be a finite number {'>' if open_low else '≥'} {low}")
    else:
        must = f"must be a number in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    return Rule(ok, must, example)


def optional(rule: Rule, must: str = "", advice: str = "") -> Rule:
    """``rule`` or null."""
    return Rule(lambda v: v is None or rule.ok(v), must or f"{rule.must} or null", rule.example,
                advice or f"e.g. {_show(rule.example)}, or null")


def boolean(example: bool = False) -> Rule:
    return Rule(lambda v: isinstance(v, bool), "must be true or false", example, "true or false")


def _triple(item_ok) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) == 3 and all(item_ok(x) for x in v)


def _pair(low_ok, strict: bool) -> Callable[[Any], bool]:
    """[low, high] of finite numbers, low < high (``strict``) or low ≤ high."""
    return lambda v: (isinstance(v, list) and len(v) == 2 and all(_is_finite(x) and low_ok(x) for x in v)
                      and (v[0] < v[1] if strict else v[0] <= v[1]))


def _axes(v) -> bool:
    return v == "auto" or (isinstance(v, list) and len(set(v)) == len(v)
                           and all(_is_int(a) and 0 <= a <= 2 for a in v))


def _label_values(v) -> bool:
    return v == "auto" or (isinstance(v, list) and all(_is_int(c) and c >= 1 for c in v))


# network.segnas / network.emonas: the arch sub-sections; their keys and values are AutoSegCore.networks' (defaults
# ARCH_DEFAULTS, checks validate_network), which validate_config calls
ARCH_SECTION = "arch sub-section"

RULES: dict[str, dict[str, Any]] = {
    "network": {
        "arch": choice(CHOICES[("network", "arch")]),
        "depth": integer(2, 6, example=4),
        "channels": integer(1, example=16),
        "multiplier": number(0.5, 3.0, example=2),
        "conv": choice(CHOICES[("network", "conv")]),
        "n_convs": integer(0, 3, example=2),
        "norm": choice(CHOICES[("network", "norm")]),
        "deep_supervision": boolean(),
        "max_channels": integer(1, example=320),
        "dropout": optional(number(0, 1, example=0.1, open_high=True)),
        "kernels": ARCH_SECTION,     # per-level / per-pooling [x, y, z]: values and count against depth are
        "strides": ARCH_SECTION,     # validate_network's (networks/validate.py), which _check_arch_sections calls
        "segnas": ARCH_SECTION,
        "emonas": ARCH_SECTION,
    },
    "preprocessing": {
        "normalization": choice(CHOICES[("preprocessing", "normalization")]),
        "ct_window": Rule(_pair(lambda x: True, strict=True), "must be [low, high] finite numbers with low < high",
                          [-1000, 1000]),
        "resampling": choice(CHOICES[("preprocessing", "resampling")]),
        "crop_foreground": boolean(True),
        # read by data/preprocess.py (its EXTRA_DEFAULTS), not in DEFAULT_CONFIG
        "zscore_nonzero": boolean(),
        "target_spacing": Rule(lambda v: v is None or _triple(lambda x: _is_finite(x) and x > 0)(v),
                               "must be null or three positive numbers (mm)", [1.5, 1.5, 3.0],
                               "e.g. [1.5, 1.5, 3.0], or null for the resampling's spacing"),
        "image_order": choice((1, 3)),
    },
    "training": {
        "loss": choice(CHOICES[("training", "loss")]),
        "optimizer": choice(CHOICES[("training", "optimizer")]),
        "lr": number(0, example=0.001, open_low=True),
        "weight_decay": number(0, example=1e-5),
        "momentum": number(0, 1, example=0.99, open_low=True, open_high=True),
        "scheduler": choice(CHOICES[("training", "scheduler")]),
        "warmup_steps": integer(0, example=200),
        "grad_clip": optional(number(0, example=12, open_low=True),
                              must="must be a positive, finite number or null (no clipping)"),
        "epochs": integer(1, example=50),
        "time_limit": optional(number(0, example=1800, open_low=True),
                               must="must be a positive, finite number of seconds or null",
                               advice="e.g. 1800 (30 minutes), or leave it out to train for training.epochs"),
        "steps_per_epoch": integer(1, example=25),
        "batch_size": integer(1, example=4),
        "patch_size": Rule(lambda v: v is None or _triple(lambda x: _is_int(x) and x > 0)(v),
                           "must be null or 3 positive integers", [64, 64, 64],
                           "e.g. [64, 64, 64], or null for the dataset's canvas"),
        "augmentation": {
            "flip_axes": Rule(_axes, "must be auto or a list of distinct axes out of 0, 1, 2", "auto",
                              "auto (decided from the labels), a list such as [0] or [0, 1, 2], or []"),
            "rotate_prob": number(0, 1, example=0.2),
            "rotate_range": number(0, example=0.26),
            "scale_prob": number(0, 1, example=0.2),
            "scale_range": number(0, 1, example=0.1, open_high=True),
            "gamma_prob": number(0, 1, example=0.2),
            "gamma_range": Rule(_pair(lambda x: x > 0, strict=False),
                                "must be [low, high] positive numbers with low ≤ high", [0.8, 1.25]),
            "intensity_scale": number(0, 1, example=0.1, open_high=True),
            "intensity_shift_prob": number(0, 1, example=0.5),
            "intensity_shift": number(0, example=0.1),
            "translate": integer(0, example=4),
            "foreground_oversample": number(0, 1, example=0.33),
        },
        "amp": choice(CHOICES[("training", "amp")]),
        "channels_last": choice(CHOICES[("training", "channels_last")]),
        "seed": Rule(_is_int, "must be an integer", 0),
        "val_every": integer(1, example=1),
    },
    "inference": {
        "tta": boolean(),
        "largest_component": Rule(_label_values, "must be auto or a list of label values (integers ≥ 1)",
                                  [1], "e.g. [1, 2], [] (none) or auto"),
        "overlap": number(0, 1, example=0.5, open_high=True),
    },
}

# top-level sections the product writes besides RULES' (free-form): a trial's sampled point, user notes
FREE_SECTIONS = ("meta", "space")


def _hint(path: str, value: Any, rule: Rule) -> str:
    """The fix; for the two YAML surprises (bare off → false, 1e-3 → a string) say so."""
    key = path.rsplit(".", 1)[-1]
    if isinstance(value, bool) and rule.ok("off"):
        return f"YAML reads a bare on/off/yes/no as true/false: quote it, e.g. {key}: 'off'"
    if isinstance(value, str):
        try:
            as_number = float(value)
        except ValueError:
            as_number = None
        if as_number is not None and rule.ok(as_number):
            return f"YAML reads {value} as text (a number in exponent form needs a dot): write {key}: {as_number!r}"
    return rule.hint(path)


def _close(key: Any, known) -> str:
    """ "did you mean 'epochs'?" for a typo, else the list of what is allowed."""
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    return f"did you mean '{close[0]}'?" if close else f"use only {', '.join(map(str, known))}"


def _check_mapping(source: str, path: str, value: Any, rules: dict) -> None:
    if not isinstance(value, dict):
        key, rule = next((k, r) for k, r in rules.items() if isinstance(r, Rule))
        raise ConfigError(f"{source}: {path} = {_brief(value)} must be a mapping of keys",
                          f"write its keys indented under it or as e.g. {path.rsplit('.', 1)[-1]}: "
                          f"{{{key}: {_show(rule.example)}}}; leave {path} out for its defaults")
    for key in value:
        if key not in rules:
            raise ConfigError(f"{source}: unknown key '{path}.{_name(key)}'", f"{_close(key, rules)} (keys of {path})")
    for key, rule in rules.items():
        if key not in value or isinstance(rule, str):          # ARCH_SECTION: _check_arch_sections
            continue
        if isinstance(rule, dict):
            _check_mapping(source, f"{path}.{key}", value[key], rule)
        elif not rule.ok(value[key]):
            raise ConfigError(f"{source}: {path}.{key} = {_brief(value[key])} {rule.must}",
                              _hint(f"{path}.{key}", value[key], rule))


def _check_arch_sections(source: str, net: dict) -> None:
    """network.segnas / network.emonas: known keys (networks.defaults.ARCH_DEFAULTS), then the whole network as
    the model builder will check it (e.g. a SegNAS block that is an illegal graph)."""
    from AutoSegCore.networks.validate import validate_network  # torch (segnas/emonas), imported on use

    for arch, defaults in ARCH_DEFAULTS.items():
        if arch in net:
            _check_mapping(source, f"network.{arch}", net[arch],
                           {k: Rule(lambda v: True, "", v) for k, v in defaults.items()})
    validate_network(net, source)


def validate_config(cfg: dict, source: str = "config") -> None:
    """Raise ``ConfigError`` naming ``source``, the key and the fix unless every key of ``cfg`` has a valid value.

    ``cfg`` is a merged config (``make_config`` / ``load_config``); keys it lacks are not required here."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections", "e.g. 'training: {epochs: 10}'")
    for section in cfg:
        if section not in RULES and section not in FREE_SECTIONS:
            raise ConfigError(f"{source}: unknown section '{_name(section)}'", _close(section, list(RULES)))
    for section, rules in RULES.items():
        if section in cfg:
            _check_mapping(source, section, cfg[section], rules)
    if "network" in cfg:
        _check_arch_sections(source, cfg["network"])


def read_config(path: str | Path) -> dict:
    """A YAML/JSON file's own keys (data only), checked merged over the defaults: what a plan is overridden with."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}", "pass an existing .yaml or .json file")
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML/JSON ({exc.__class__.__name__})", "fix the syntax of the file") from None
    if not isinstance(data if data is not None else {}, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections", "e.g. 'training: {epochs: 10}'")
    validate_config(_lift_epoch_cap(deep_merge(DEFAULT_CONFIG, data or {}), data or {}), source=str(p))
    return data or {}


def load_config(path: str | Path) -> dict:
    """Read a YAML/JSON config file (data only) and return defaults merged with it."""
    data = read_config(path)
    return _lift_epoch_cap(deep_merge(DEFAULT_CONFIG, data), data)
