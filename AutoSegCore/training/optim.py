"""Optimisers (the proxy paper's and the BOHB thesis's choices) and the per-step learning-rate schedule."""
from __future__ import annotations

import math

import torch
from monai.optimizers import Novograd

from AutoSegCore.errors import ConfigError


def make_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """The configured optimiser.  Adam, AdamW and SGD use torch's fused kernels (one op for all parameters
    instead of several per tensor): per step 0.92 → 0.21 ms on the 3-level proxy net and 14.5 → 3.3 ms on the
    full 16–256 U-Net on 2 CPU threads (≈ 6 % of a full-net step); same update rule."""
    name, lr, wd = cfg["optimizer"], float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, weight_decay=wd)
    if name == "novograd":
        return Novograd(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(cfg.get("momentum", 0.99)),
                               nesterov=True, fused=True)
    raise ConfigError(f"unknown optimizer '{name}'", "use adam, adamw, rmsprop, adamax, novograd or sgd")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, total_steps: int):
    """Linear warm-up, then cosine (to 1 % of lr), poly (0.9) or constant — stepped once per optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(cfg, total_steps))


def schedule_factor(cfg: dict, total_steps: int):
    """The lr multiplier per step; separate so a time-budgeted run can shorten its horizon mid-training."""
    kind = cfg.get("scheduler", "cosine")
    warmup = min(int(cfg.get("warmup_steps", 0)), max(0, total_steps // 4))
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "cosine":
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
        if kind == "poly":
            return max(0.0, 1 - progress) ** 0.9
        return 1.0

    return factor


def replan_horizon(epoch: int, planned: int, cap: int, epoch_seconds: float, seconds_left: float) -> int:
    """The epoch at which a wall-clock-budgeted run should end its schedule, re-fitted after ``epoch`` epochs.

    Why: a step-time calibration can be off by 2-3x either way (one-off start-up costs, a shared machine), so a
    horizon fixed at the start either leaves the schedule unfinished at the deadline or ends it early and wastes
    the budget.  The plan moves either way, at any time, only beyond a 2 % band: a one-way rule (shorten at once,
    lengthen only early) ratcheted down on noisy epoch times and ended a 2-hour run 7 % early.  Pass a mean over
    ~20 epochs as ``epoch_seconds``; the caller still stops at its deadline.  ``cap`` is the training loop's
    own epoch count, which cannot grow once it runs.
    """
    fits = epoch + max(0, int(seconds_left / max(epoch_seconds, 1e-9)))
    if fits < planned * 0.98:
        return max(epoch, fits)
    if fits > planned * 1.02:
        return min(cap, fits)
    return planned
