"""``training.amp: auto`` and ``training.channels_last: auto`` on a GPU: measured on the user's GPU, not guessed.

Whether bf16 autocast or the channels-last layout pays depends on the GPU and the net: small 3D U-Nets are
launch-bound (the casts cost more than tensor cores save), big ones are not, and a constant placed from one
measurement of one net on one GPU was wrong for the next.  So on first use per (GPU model, torch, net, canvas,
batch) a few real training steps of each setting are timed (``planning.cost.probe_step_seconds``, the trainer's
own step on random data), the fastest wins, and the table is cached in ``precision.json`` under the user's cache
folder; later runs read it.  fp32 runs with TF32 (``kernels.configure_backends``).  On a CPU the rules of
``numerics`` stand (measured once, docs/performance.md): there is nothing per-machine to find.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from AutoSegCore.config import deep_merge
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.utils.io import read_json, write_json

CACHE_ENV = "AUTOSEG_CACHE_DIR"
CACHE_FILE = "precision.json"
# the settings timed: fp32 (TF32) and bf16 autocast, each in the default and the channels-last layout
CANDIDATES = [{"amp": "off", "channels_last": "off"}, {"amp": "off", "channels_last": "on"},
              {"amp": "bf16", "channels_last": "off"}, {"amp": "bf16", "channels_last": "on"}]


def cache_path() -> Path:
    """``$AUTOSEG_CACHE_DIR/precision.json``, else under ``$XDG_CACHE_HOME`` or ``~/.cache`` (``autoseg/``)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "autoseg")
    return Path(root) / CACHE_FILE


def calibration_key(device_name: str, config: dict, in_channels: int, out_channels: int) -> str:
    """What a measurement holds for: the GPU model, torch, and everything of the config that shapes a step."""
    t = config["training"]
    what = {"device": device_name, "torch": torch.__version__, "network": config["network"],
            "patch": list(t["patch_size"]), "batch": int(t["batch_size"]), "loss": t["loss"],
            "optimizer": t["optimizer"], "channels": [int(in_channels), int(out_channels)]}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def calibrate(config: dict, in_channels: int, out_channels: int, device: torch.device, *, bf16: bool,
              measure=None) -> dict:
    """Time every candidate setting (``measure(config, in_ch, out_ch, device)`` → seconds per step; default the
    planner's probe) and return ``{"choice": {...}, "table": [...]}``; bf16 rows only where ``bf16``.  A setting
    that fails (out of memory, an unsupported kernel) is recorded with its error and never chosen."""
    if measure is None:
        from AutoSegCore.planning.cost import probe_step_seconds as measure
    table = []
    for cand in CANDIDATES:
        if cand["amp"] == "bf16" and not bf16:
            continue
        cfg = deep_merge(config, {"training": dict(cand)})
        try:
            seconds = float(measure(cfg, in_channels, out_channels, str(device)))
            table.append({**cand, "seconds": round(seconds, 6)})
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            table.append({**cand, "seconds": None, "error": str(exc).splitlines()[0][:160] if str(exc) else "failed"})
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    timed = [row for row in table if row["seconds"] is not None]
    if not timed:
        return {"choice": dict(CANDIDATES[0]), "table": table}
    best = min(timed, key=lambda row: row["seconds"])
    return {"choice": {"amp": best["amp"], "channels_last": best["channels_last"]}, "table": table}


def describe(result: dict) -> str:
    """One log line: the winner and every setting's measured step."""
    rows = ", ".join(f"{r['amp'] if r['amp'] != 'off' else 'fp32'}"
                     f"{'+channels_last' if r['channels_last'] == 'on' else ''} "
                     + (f"{1000 * r['seconds']:.1f} ms" if r["seconds"] is not None else "failed")
                     for r in result["table"])
    c = result["choice"]
    return (f"precision: {'bf16' if c['amp'] == 'bf16' else 'fp32 (TF32)'}"
            f"{', channels_last' if c['channels_last'] == 'on' else ''} — the fastest measured step ({rows})")


def calibrated(config: dict, in_channels: int, out_channels: int, device: torch.device, *, device_name: str,
               bf16: bool, events: EventWriter = NULL_EVENTS, measure=None) -> dict:
    """The cached calibration for this GPU model and step, measured (and cached) on first use."""
    path = cache_path()
    key = calibration_key(device_name, config, in_channels, out_channels)
    try:
        cache = read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}                                  # a damaged cache is measured again, not an error
    cache = cache if isinstance(cache, dict) else {}
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("choice") in [{k: c[k] for k in ("amp", "channels_last")} for c in CANDIDATES]:
        return hit
    result = {**calibrate(config, in_channels, out_channels, device, bf16=bf16, measure=measure),
              "device": device_name}
    events.emit("log", message=describe(result) + f"; cached in {path}")
    try:
        write_json(path, {**cache, key: result})
    except OSError:
        pass                                        # a read-only home: measured again next time
    return result


def choose_precision(config: dict, in_channels: int, out_channels: int, device: torch.device,
                     events: EventWriter = NULL_EVENTS) -> tuple[str, str]:
    """``(training.amp, training.channels_last)`` with ``auto`` resolved: on a GPU by :func:`calibrated`; on the CPU
    (or when the user chose) unchanged, for ``numerics``' rules to read."""
    t = config["training"]
    amp, layout = str(t.get("amp", "auto")), str(t.get("channels_last", "auto"))
    if device.type != "cuda" or (amp != "auto" and layout != "auto"):
        return amp, layout
    result = calibrated(config, in_channels, out_channels, device, device_name=torch.cuda.get_device_name(device),
                        bf16=torch.cuda.is_bf16_supported(), events=events)
    rows = [r for r in result["table"] if r["seconds"] is not None
            and amp in ("auto", r["amp"]) and layout in ("auto", r["channels_last"])]
    if not rows:                                    # a setting the table has no row for (fp16): fp32 layout
        return ("off" if amp == "auto" else amp), ("off" if layout == "auto" else layout)
    best = min(rows, key=lambda r: r["seconds"])
    return best["amp"], best["channels_last"]
