"""A model directory: ``model.pt`` (state dict, loaded with weights_only=True) + ``model.json`` (everything else).

This is the contract between training, ``autoseg predict``, the search's ``best/`` and the Slicer module.
Every way a model folder can be wrong (missing files, a ``model.json`` that is not a model description, a
``model.pt`` that is junk, holds code, or does not fit the network) is a one-line ``ConfigError`` naming the file.
A model folder or a checkpoint may come from someone else (a colleague's ``best/``, a received study): both are
read only through :func:`_safe_load` (``weights_only=True`` on torch ≥ 2.10), which never imports a class or runs
code from the file.
"""
from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from AutoSegCore.data.dataset import is_int_text
from AutoSegCore.errors import ConfigError
from AutoSegCore.utils.io import atomic_path, write_json

MODEL_FILE, INFO_FILE = "model.pt", "model.json"
MODEL_HINT = "pass the output folder of 'autoseg train' or the best/ folder of a search"
_DAMAGED_HINT = ("pass a model folder as 'autoseg train' or a search wrote it (copy it again, or re-train, if a "
                 "file in it was edited, replaced or damaged)")
# keys every model.json written by the trainer has, and what each must be
_REQUIRED = {"config": "a mapping", "labels": "a mapping", "in_channels": "a positive integer",
             "out_channels": "a positive integer", "patch_size": "three positive integers",
             "preprocessor": "a mapping"}


def save_model(model_dir: str | Path, model: torch.nn.Module, info: dict) -> Path:
    """Write weights and metadata atomically. ``info`` holds config, labels, channels, preprocessor state…"""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(model_dir / MODEL_FILE) as tmp:
        torch.save(state, tmp)
    write_json(model_dir / INFO_FILE, info)
    return model_dir


def read_json_object(path: Path, what: str, hint: str = _DAMAGED_HINT) -> dict:
    """A JSON file whose top level is an object, or a ``ConfigError`` naming ``path`` (``what`` says what it is)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not {what} (not valid JSON: line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg})", hint) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not {what} (not UTF-8 text)", hint) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not {what} (its top level is a JSON {type(data).__name__}, not an object)",
                          hint)
    return data


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def is_label_map(value) -> bool:
    """``{label value: name}`` as model.json and ensemble.json hold it (keys are JSON text)."""
    return isinstance(value, dict) and bool(value) and all(is_int_text(k) for k in value)


def model_info_problems(info: dict) -> list[str]:
    """What keeps ``info`` (a parsed model.json) from describing a model; empty when it is usable."""
    missing = [k for k in _REQUIRED if k not in info]
    problems = [f"missing {', '.join(repr(k) for k in missing)}"] if missing else []
    fmt = info.get("format")
    if fmt is not None and not (isinstance(fmt, str) and fmt.startswith("autoseg-model/")):
        problems.append(f"format {fmt!r} is not autoseg-model/1")
    checks = {
        "config": lambda v: isinstance(v, dict) and isinstance(v.get("network"), dict)
        and isinstance(v.get("inference", {}), dict),
        "labels": is_label_map,
        "in_channels": _positive_int, "out_channels": _positive_int,
        "patch_size": lambda v: isinstance(v, list) and len(v) == 3 and all(_positive_int(s) for s in v),
        "preprocessor": lambda v: isinstance(v, dict),
    }
    for key, ok in checks.items():
        if key in info and not ok(info[key]):
            need = _REQUIRED[key]
            if key == "config":
                need = "a mapping with a 'network' section"
            elif key == "labels":
                need = "a mapping of label values to names"
            problems.append(f"'{key}' is not {need}")
    return problems


def read_model_info(model_dir: str | Path) -> dict:
    """``model.json`` of a model folder, checked to describe a model (``ConfigError`` naming the file if not)."""
    model_dir = Path(model_dir)
    if not (model_dir / INFO_FILE).is_file() or not (model_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{model_dir} is not a model folder (needs {MODEL_FILE} and {INFO_FILE})", MODEL_HINT)
    path = model_dir / INFO_FILE
    info = read_json_object(path, "a model description")
    problems = model_info_problems(info)
    if problems:
        raise ConfigError(f"{path} is not a model description ({'; '.join(problems[:3])})", _DAMAGED_HINT)
    return info


# torch.load(weights_only=True) is bypassable before 2.10 (published advisories): a model folder or checkpoint
# someone sends is never unpickled by an older torch (pyproject and the Slicer installer require 2.10 too)
MIN_TORCH = (2, 10)


def _torch_version() -> tuple[int, int]:
    parts = torch.__version__.split("+")[0].split(".")[:2]
    return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)


def _safe_load(path: Path, what: str, kind: str, hint: str, code_hint: str):
    """``torch.load(weights_only=True)``: tensors and plain containers only, no class is imported and no code
    runs; a file that asks for one (a pickled object, a ``__reduce__`` payload) is a one-line ConfigError."""
    if _torch_version() < MIN_TORCH:
        raise ConfigError(f"not loading {path}: torch {torch.__version__} is older than "
                          f"{'.'.join(map(str, MIN_TORCH))}, whose safe loading can be bypassed by a crafted file",
                          "pip install 'torch>=2.10'")
    try:
        with warnings.catch_warnings():      # a foreign pickle protocol warns; the error below is the one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():      # a class or function to import: weights_only refuses it
            raise ConfigError(f"{path} holds Python objects, not only {what} (refused: loading them could run code)",
                              code_hint) from None
        raise ConfigError(f"{path} is not {kind}, or is truncated (unreadable pickle data)", hint) from None
    except Exception:  # noqa: BLE001 - on a junk file torch.load raises KeyError, EOFError, RuntimeError, ...
        raise ConfigError(f"{path} is not {kind}, or is truncated", hint) from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``model.pt``, loaded with ``weights_only=True`` (no code runs); ``ConfigError`` if it is not
    one.  Any failure of ``torch.load`` means the same thing to the user — the file is not usable weights."""
    state = _safe_load(path, "weights", "a PyTorch weights file", _DAMAGED_HINT,
                       f"use the {MODEL_FILE} written by 'autoseg train' (a state dict of tensors)")
    if not (isinstance(state, Mapping) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ConfigError(f"{path} is not a state dict of tensors (it holds a {type(state).__name__})", _DAMAGED_HINT)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ConfigError(f"{path} has NaN/Inf weights in {len(bad)} tensor(s) (e.g. {bad[0]})",
                          "the training diverged or the file is damaged: re-train (e.g. with a lower learning rate)")
    return dict(state)


def load_model(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the network from ``model.json`` and load its weights (weights_only=True: no code runs)."""
    from AutoSegCore.networks import build_network

    model_dir = Path(model_dir)
    info = read_model_info(model_dir)
    try:
        with torch.device("meta"):     # shapes only: model.json may ask for any size, nothing is allocated yet
            net = build_network(info["config"]["network"], info["in_channels"], info["out_channels"])
    except ConfigError as exc:
        raise ConfigError(f"{model_dir / INFO_FILE}: {exc.message}", _DAMAGED_HINT) from None
    _check_network_size(model_dir / INFO_FILE, net)
    state = read_weights(model_dir / MODEL_FILE)
    try:
        net = _materialise(net, state, info)   # strict: torch names missing, unexpected and resized tensors
    except RuntimeError as exc:
        from AutoSegCore.data.volumes import short_error

        raise ConfigError(f"{model_dir / MODEL_FILE} does not fit the network described in {INFO_FILE} "
                          f"({short_error(exc)})", _DAMAGED_HINT) from None
    net.to(device).eval()
    return net, info


def _check_network_size(path: Path, net: torch.nn.Module) -> None:
    """The meta-device network's weights must fit the memory limit of one volume (``data.limits``)."""
    from AutoSegCore.data.limits import image_limit

    tensors = list(net.parameters()) + list(net.buffers())
    need = sum(t.numel() * t.element_size() for t in tensors)
    limit, how = image_limit()
    if need > limit:
        raise ConfigError(f"{path} describes a network of {sum(t.numel() for t in tensors):,} weights "
                          f"({need / 1e9:.3g} GB), over the memory limit of {limit / 1e9:.3g} GB ({how})",
                          _DAMAGED_HINT)


def _materialise(net: torch.nn.Module, state: dict, info: dict) -> torch.nn.Module:
    """The meta-device ``net`` with ``state`` as its tensors (``assign=True``: shapes checked, then the loaded
    tensors used, cast to the network's dtypes); built for real only if a tensor is not in the file."""
    ref = net.state_dict()
    for k, v in state.items():
        if k in ref and v.shape != ref[k].shape:
            raise RuntimeError(f"{k}: {tuple(v.shape)} in the file, {tuple(ref[k].shape)} in the network")
    state = {k: v.to(ref[k].dtype) if k in ref and v.dtype != ref[k].dtype else v for k, v in state.items()}
    net.load_state_dict(state, assign=True)
    if any(t.is_meta for t in list(net.parameters()) + list(net.buffers())):   # a non-persistent buffer
        from AutoSegCore.networks import build_network

        net = build_network(info["config"]["network"], info["in_channels"], info["out_channels"])
        net.load_state_dict(state)
    return net


def warm_start(net: torch.nn.Module, model_dir: str | Path, network: dict, in_channels: int,
               out_channels: int) -> str | None:
    """Copy the weights of the model in ``model_dir`` into ``net`` when it is the same network (its config and
    channel counts); returns why not otherwise, None when copied.  A final training starts from its winning
    trial's weights this way, so the trial's training is not thrown away."""
    model_dir = Path(model_dir)
    try:
        info = read_model_info(model_dir)
        if (info["config"].get("network") != network or info["in_channels"] != in_channels
                or info["out_channels"] != out_channels):
            return "it trained another network"
        state = read_weights(model_dir / MODEL_FILE)
        net.load_state_dict(state)
    except ConfigError as exc:
        return exc.message
    except RuntimeError as exc:          # torch names the tensors that do not fit
        from AutoSegCore.data.volumes import short_error

        return f"its weights do not fit ({short_error(exc)})"
    return None


RESUME_HINT = ("train with the config that wrote it, choose another --out, or start over with --no-resume "
               "(which replaces that checkpoint)")


def read_checkpoint(path: Path, trained_as: str) -> dict:
    """A training checkpoint (weights_only=True) written for ``trained_as`` (the network and preprocessing, see
    ``Trainer._trained_as``); a one-line ConfigError when it is unreadable or another run's."""
    state = _safe_load(path, "a checkpoint", "a readable checkpoint", RESUME_HINT,
                       "delete it, or start over with --no-resume (which replaces it with this run's own)")
    if not isinstance(state, dict) or state.get("trained_as", trained_as) != trained_as:
        raise ConfigError(f"{path} is the checkpoint of another network or preprocessing than this config's",
                          RESUME_HINT)
    return state
