"""Declarative search spaces: plain data (YAML shipped beside this file, or a user's YAML/JSON file).

    space = get_space("unet-pipeline")           # or get_space("my_space.yaml")
    study = optuna.create_study(directions=space.directions)
    trial = study.ask(); params = space.suggest(trial)
    config = space.to_config(params)             # full, validated experiment config
    study.tell(trial, space.objectives(result))

Built-ins: proxy-hpo (the proxy paper), unet-pipeline (the BOHB thesis), segnas / segnas4 / segnas7 (SegNAS3D),
emonas (EMONAS-Net), unet-recipe (capacity, learning rate and augmentation around a strong fixed recipe).
The file format is described in docs/spaces.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from AutoSegCore.errors import ConfigError
from AutoSegCore.spaces.params import Condition, ParamSpec
from AutoSegCore.spaces.space import SearchSpace

BUILTIN_DIR = Path(__file__).resolve().parent
ALIASES = {"segnas11": "segnas"}


def list_spaces() -> list[str]:
    """Names of the built-in spaces."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_space(path: str | Path) -> SearchSpace:
    """Read a YAML/JSON space file (data only: ``yaml.safe_load`` / ``json``) and validate it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"search space file not found: {p}",
                          f"pass an existing .yaml/.json file or a built-in name ({', '.join(list_spaces())})")
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML/JSON ({exc.__class__.__name__})", "fix the syntax of the file") from None
    return SearchSpace.from_dict(data, source=str(p))


def get_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a user space from a YAML/JSON file path."""
    name = ALIASES.get(str(name_or_path).lower(), str(name_or_path).lower())
    builtin = BUILTIN_DIR / f"{name}.yaml"
    if name in list_spaces():
        return load_space(builtin)
    p = Path(name_or_path)
    if p.suffix.lower() in (".yaml", ".yml", ".json") or p.exists():
        return load_space(p)
    raise ConfigError(f"unknown search space '{name_or_path}'",
                      f"use one of {', '.join(list_spaces())} or the path of a .yaml/.json space file")


__all__ = ["SearchSpace", "ParamSpec", "Condition", "get_space", "list_spaces", "load_space"]
