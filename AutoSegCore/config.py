"""The experiment configuration: plain data (YAML/JSON), deep-merged over defaults and validated.

A config has four sections — ``network``, ``preprocessing``, ``training``, ``inference`` — and is what a
search-space point maps to.  Nothing here is ever evaluated as code (``yaml.safe_load`` only).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from AutoSegCore.errors import ConfigError

DEFAULT_CONFIG: dict[str, Any] = {
    "network": {
        "arch": "unet",          # unet | segnas | emonas
        "depth": 4,              # number of resolution levels (paper b: 2–6)
        "channels": 16,          # channels in the first level (paper b: 2^3–2^7)
        "multiplier": 2.0,       # channel multiplier per level (paper b: 0.5–3, channels floored)
        "conv": "3d",            # 3d | 2d (k×k×1 kernels)
        "n_convs": 2,            # convolutions per level; 0 = one convolution without residual path
        "norm": "instance",      # instance | batch
        "deep_supervision": False,
        "max_channels": 320,
        "dropout": 0.0,
    },
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
        },
        "amp": "auto",               # auto (bf16 on capable CPUs / fp16 on CUDA) | on | off
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
    ("network", "arch"): ("unet", "segnas", "emonas"),
    ("network", "conv"): ("3d", "2d"),
    ("network", "norm"): ("instance", "batch"),
    ("preprocessing", "normalization"): ("zscore", "percentile_zscore", "minmax", "none", "ct_window"),
    ("preprocessing", "resampling"): ("none", "median", "mean"),
    ("training", "loss"): ("dice", "generalized_dice", "dice_ce", "dice_focal", "dice_topk", "dice_hausdorff"),
    ("training", "optimizer"): ("adam", "adamw", "rmsprop", "adamax", "novograd", "sgd"),
    ("training", "scheduler"): ("cosine", "poly", "constant"),
    ("training", "amp"): ("auto", "on", "off"),
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


def validate_config(cfg: dict, source: str = "config") -> None:
    for (section, key), allowed in CHOICES.items():
        value = cfg.get(section, {}).get(key)
        if value not in allowed:
            raise ConfigError(f"{source}: {section}.{key} = {value!r} is not one of {list(allowed)}",
                              f"set {section}.{key} to one of {', '.join(map(str, allowed))}")
    for section in cfg:
        if section not in DEFAULT_CONFIG and section not in ("meta", "space"):
            raise ConfigError(f"{source}: unknown section '{section}'",
                              f"use only {', '.join(DEFAULT_CONFIG)}")
    t = cfg["training"]
    for key in ("epochs", "steps_per_epoch", "batch_size"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise ConfigError(f"{source}: training.{key} = {t[key]!r} must be a positive integer",
                              f"set training.{key} to e.g. {DEFAULT_CONFIG['training'][key]}")
    if not (isinstance(t["lr"], (int, float)) and t["lr"] > 0):
        raise ConfigError(f"{source}: training.lr = {t['lr']!r} must be a positive number", "e.g. lr: 0.001")
    limit = t.get("time_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0):
        raise ConfigError(f"{source}: training.time_limit = {limit!r} must be a positive number of seconds or null",
                          "e.g. time_limit: 1800 (30 minutes), or leave it out to train for training.epochs")
    clip = t.get("grad_clip")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
        raise ConfigError(f"{source}: training.grad_clip = {clip!r} must be a positive number or null (no clipping)",
                          "e.g. grad_clip: 12")
    n = cfg["network"]
    if n["arch"] == "unet":
        if not (isinstance(n["depth"], int) and 2 <= n["depth"] <= 6):
            raise ConfigError(f"{source}: network.depth = {n['depth']!r} must be an integer in 2–6", "e.g. depth: 4")
        if not (isinstance(n["n_convs"], int) and 0 <= n["n_convs"] <= 3):
            raise ConfigError(f"{source}: network.n_convs = {n['n_convs']!r} must be an integer in 0–3", "e.g. n_convs: 2")
        if not (isinstance(n["channels"], int) and n["channels"] >= 1):
            raise ConfigError(f"{source}: network.channels = {n['channels']!r} must be a positive integer", "e.g. channels: 16")
        if not (0.5 <= float(n["multiplier"]) <= 3.0):
            raise ConfigError(f"{source}: network.multiplier = {n['multiplier']!r} must be in 0.5–3", "e.g. multiplier: 2")


def load_config(path: str | Path) -> dict:
    """Read a YAML/JSON config file (data only) and return defaults merged with it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}", "pass an existing .yaml or .json file")
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML/JSON ({exc.__class__.__name__})", "fix the syntax of the file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections", "e.g. 'training: {epochs: 10}'")
    cfg = _lift_epoch_cap(deep_merge(DEFAULT_CONFIG, data), data)
    validate_config(cfg, source=str(p))
    return cfg
