"""A model directory: ``model.pt`` (state dict, loaded with weights_only=True) + ``model.json`` (everything else).

This is the contract between training, ``autoseg predict``, the search's ``best/`` and the Slicer module.
"""
from __future__ import annotations

from pathlib import Path

import torch

from AutoSegCore.errors import ConfigError
from AutoSegCore.utils.io import atomic_path, read_json, write_json

MODEL_FILE, INFO_FILE = "model.pt", "model.json"


def save_model(model_dir: str | Path, model: torch.nn.Module, info: dict) -> Path:
    """Write weights and metadata atomically. ``info`` holds config, labels, channels, preprocessor state…"""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(model_dir / MODEL_FILE) as tmp:
        torch.save(state, tmp)
    write_json(model_dir / INFO_FILE, info)
    return model_dir


def read_model_info(model_dir: str | Path) -> dict:
    model_dir = Path(model_dir)
    if not (model_dir / INFO_FILE).is_file() or not (model_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{model_dir} is not a model folder (needs {MODEL_FILE} and {INFO_FILE})",
                          "pass the output folder of 'autoseg train' or the best/ folder of a search")
    return read_json(model_dir / INFO_FILE)


def load_model(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the network from ``model.json`` and load its weights (weights_only=True: no code runs)."""
    from AutoSegCore.networks import build_network

    info = read_model_info(model_dir)
    net = build_network(info["config"]["network"], info["in_channels"], info["out_channels"])
    state = torch.load(Path(model_dir) / MODEL_FILE, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.to(device).eval()
    return net, info
