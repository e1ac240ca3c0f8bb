"""Fingerprint → plan: every dataset gets its own spacing, network shape, patch, batch, epochs and normalisation,
each with the reason, written as ``plan.json`` (nnU-Net's plans file) and read by every later stage.

The plan's ``config`` is the planned recipe: a full config (sections as ``AutoSegCore.config``) that ``autoseg
train`` trains when no config is given, and that a user config or a search-space point is merged over
(:func:`planned_config`).  The recipe part that does not depend on the data (loss, optimiser, learning rate,
augmentation) is ``RECIPE`` below: the strong fixed recipe measured in ../shared/docs/baselines.md.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from AutoSegCore.config import DEFAULT_CONFIG, EPOCH_CAP_WITH_TIME_LIMIT, deep_merge, validate_config
from AutoSegCore.errors import ConfigError
from AutoSegCore.planning import cost, rules
from AutoSegCore.search.search_dir import PLAN_FILE  # noqa: F401 - the plan's file name, in any folder
from AutoSegCore.utils.durations import format_duration
from AutoSegCore.utils.io import read_json, write_json

PLAN_VERSION = 1
DEFAULT_BUDGET = {"cpu": 20 * 60.0, "cuda": 60 * 60.0}   # seconds of training when the user names none
# CPU: the step-time target is the budget / this.  The fixed recipe that reaches 0.875 on Hippocampus in 15 CPU-min
# (baselines.md) trains ≈ 3600 steps there, and a Prostate patch that bought 5× the steps of the whole-case canvas
# held out 0.74 instead of 0.59 (issue "plans from the data"): under a CPU budget the step count decides first
STEPS_WANTED = 4000
# … but a patch that holds the labelled structures whole (rules.structure_extent) is kept while it still buys this
# share of those steps: one that cuts every structure in two measured worse on Prostate than a third fewer steps
HOLD_STEPS_SHARE = 1 / 3
STEP_SECONDS = (0.15, 3.0)        # … within these bounds (below: overheads dominate; above: too few steps)
EPOCHS_WANTED = 40                # an epoch ≈ budget / 40: enough validations to follow, few enough to be cheap
STEPS_PER_EPOCH = (10, 250)       # 250 is nnU-Net's
VAL_SHARE = 0.15                  # validation may take this share of an epoch's time (else val_every > 1)
CHANNELS = {"cpu": 16, "cuda": 32}   # first-level channels: the CPU recipe's 16, nnU-Net's 32 on a GPU
# widest level: nnU-Net's 320 on a GPU; on a CPU 8× the first level (the recipe's 16 → 128): the deep levels of a
# many-pooling plan work on few voxels, so they cost little time but most of the parameters a short budget must fit
MAX_CHANNELS = {"cpu": 8 * CHANNELS["cpu"], "cuda": 320}
GPU_MEMORY_GB = 8.0               # nnU-Net's default VRAM target, used when planning for a GPU not present
GPU_MEMORY_SHARE = 0.85           # of a present GPU's memory (the CUDA context and the allocator's slack)
MAX_PROBES = 3
MIN_PATCH_VOXELS = 16 ** 3

# the data-independent recipe (../shared/docs/baselines.md): residual U-Net blocks, instance norm, Dice + CE,
# AdamW 3e-3 with warm-up then cosine, mirroring, intensity scale/shift, translation
RECIPE = {
    "network": {"arch": "unet", "multiplier": 2.0, "conv": "3d", "n_convs": 2, "norm": "instance",
                "deep_supervision": False, "max_channels": 320},
    "training": {"loss": "dice_ce", "optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-5, "scheduler": "cosine",
                 "augmentation": {"flip_axes": "auto", "rotate_prob": 0.0, "scale_prob": 0.0, "gamma_prob": 0.0,
                                  "intensity_scale": 0.1, "intensity_shift_prob": 1.0, "intensity_shift": 0.1,
                                  "translate": 4}},
    "inference": {"tta": False, "overlap": 0.5, "largest_component": "auto"},
}


def device_kind(device: str) -> str:
    """'cpu' or 'cuda' — the target the plan is for.  'cuda' may be planned on a machine without one (memory
    only, like nnU-Net); 'auto' is the machine's."""
    d = (device or "auto").lower()
    if d == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if d.startswith("cuda") else "cpu"


def _gpu_memory_bytes(device: str, gpu_memory_gb: float | None) -> tuple[float, str]:
    if gpu_memory_gb is not None:
        return gpu_memory_gb * 2 ** 30, f"{gpu_memory_gb:g} GB (asked)"
    import torch

    if torch.cuda.is_available():
        from AutoSegCore.utils.device import pick_device

        dev = pick_device(device if device.startswith("cuda") else "cuda")
        index = dev.index
        total = torch.cuda.get_device_properties(index).total_memory
        return total * GPU_MEMORY_SHARE, f"{GPU_MEMORY_SHARE:.0%} of {torch.cuda.get_device_name(index)}'s " \
                                         f"{total / 2 ** 30:.0f} GB"
    return GPU_MEMORY_GB * 2 ** 30, f"{GPU_MEMORY_GB:g} GB (nnU-Net's target; no GPU here to read)"


def _network(spacing, patch, two_d: int | None, channels: int, max_channels: int = 320
             ) -> tuple[dict, list[int], list[int]]:
    """The U-Net for ``patch``: per-axis strides and kernels (rules.topology), 2D along ``two_d`` if set."""
    strides, kernels, padded, divisor = rules.topology(spacing, patch)
    if two_d is not None:
        strides, kernels = rules.as_two_d(strides, kernels, two_d)
    if not strides:                                   # a patch too small to pool: one pooling where possible
        strides = [[2 if p >= 2 else 1 for p in patch]]
        kernels = [[3 if p >= 3 else 1 for p in patch]] * 2
    divisor = [int(np.prod([s[a] for s in strides])) for a in range(3)]
    padded = [int(math.ceil(p / d) * d) for p, d in zip(patch, divisor)]
    net = {**RECIPE["network"], "depth": len(strides) + 1, "channels": channels, "max_channels": max_channels,
           "kernels": kernels, "strides": strides}
    return net, padded, divisor


def _candidates(spacing, median_shape, two_d, channels, max_channels, in_ch, out_ch, extent=None):
    """Patches from nnU-Net's start down to ``MIN_PATCH_VOXELS``, each with its own net and forward FLOPs; those
    that hold the structures (``extent``) first, each marked ``holds``."""
    from AutoSegCore.networks.measure import flops_per_voxel

    patch = rules.initial_patch(spacing, median_shape)
    out = []
    seen = set()
    while patch is not None:
        net, padded, divisor = _network(spacing, patch, two_d, channels, max_channels)
        if tuple(padded) not in seen:
            seen.add(tuple(padded))
            out.append({"patch": padded, "network": net, "holds": rules.holds(padded, extent),
                        "flops": flops_per_voxel(net, in_ch, out_ch, tuple(padded))})
        if math.prod(padded) <= MIN_PATCH_VOXELS:
            break
        patch = rules.reduce_patch(padded, median_shape, divisor, extent)
    return out


def _elements(cand: dict, out_ch: int) -> int:
    net = cand["network"]
    return cost.feature_map_elements(net["strides"], cand["patch"], net["channels"], net["max_channels"], out_ch)


def _fit_gpu(cands, in_ch, out_ch, memory: float):
    """The first (largest) candidate of which a batch of ``MIN_BATCH`` fits ``memory`` (nnU-Net's loop and
    calibration, ``cost.batch_in_memory``); the batch that fills it."""
    for cand in cands:
        fits = cost.batch_in_memory(_elements(cand, out_ch), memory)
        if fits >= rules.MIN_BATCH:
            return cand, int(round(fits))
    return cands[-1], rules.MIN_BATCH


def _fit_cpu(cands, base_cfg: dict, in_ch, out_ch, target: float, device: str, probes: list):
    """The largest candidate whose measured step (batch ``MIN_BATCH``) is within the target.  The step time is
    close to proportional to a step's FLOPs, so each probe's rate predicts the others; the predicted pick is then
    measured itself (at most ``MAX_PROBES`` probes), and the largest candidate measured within the target wins.
    When that one cuts the structures, the smallest candidate that holds them wins instead if its measured step
    is within the target / ``HOLD_STEPS_SHARE`` (one more probe)."""
    measured: dict[int, float] = {}

    def work(i: int) -> float:
        return cost.work(cands[i]["patch"], rules.MIN_BATCH, cands[i]["flops"])

    def measure(i: int) -> float:
        cfg = deep_merge(base_cfg, {"network": cands[i]["network"],
                                    "training": {"patch_size": cands[i]["patch"], "batch_size": rules.MIN_BATCH}})
        measured[i] = cost.probe_step_seconds(cfg, in_ch, out_ch, device)
        probes.append({"patch": cands[i]["patch"], "batch": rules.MIN_BATCH, "seconds": round(measured[i], 4)})
        return measured[i]

    last = len(cands) - 1
    # first probe: the candidate nearest 20 GFLOP/s of forward work at the target (measured here on 2 cores)
    i = min(range(len(cands)), key=lambda j: abs(math.log(max(work(j), 1.0) / (20e9 * target))))
    for _ in range(MAX_PROBES):
        rate = work(i) / max(measure(i), 1e-6)
        predicted = next((j for j in range(len(cands)) if work(j) / rate <= target), last)
        if predicted == i and measured[i] > target:
            predicted = min(i + 1, last)               # predicted to fit, measured over: one size smaller
        if predicted in measured:
            break
        i = predicted
    within = [j for j, sec in measured.items() if sec <= target]
    pick = min(within) if within else max(measured)
    holding = [j for j in range(len(cands)) if cands[j]["holds"]]
    if holding and not cands[pick]["holds"] and holding[-1] < pick:
        j = holding[-1]
        rate = work(pick) / measured[pick]
        if work(j) / rate <= target / HOLD_STEPS_SHARE and (measured.get(j) or measure(j)) <= target / HOLD_STEPS_SHARE:
            pick = j
    return cands[pick], measured[pick]


def plan_dataset(data=None, *, device: str = "auto", budget: float | str | None = None,
                 fingerprint: dict | None = None, gpu_memory_gb: float | None = None,
                 val_fraction: float = 0.2) -> dict:
    """Plan ``data`` (a dataset folder or ``Dataset``; or only its ``fingerprint``) for ``device`` and a training
    ``budget`` (seconds or a text like '20m'; default ``DEFAULT_BUDGET``).  Returns the plan (JSON-ready):
    ``config`` (the planned recipe), ``choices`` (each decision with its why), ``fingerprint_summary``, ``cost``
    (the probes' measured steps, the memory estimate).  On a CPU the patch is sized by timing a few real training
    steps (seconds); a GPU plan is sized by memory and needs no GPU to be made."""
    from AutoSegCore.search.settings import parse_duration

    if fingerprint is None:
        from AutoSegCore.data.dataset import Dataset, load_dataset
        from AutoSegCore.data.fingerprint import compute_fingerprint

        if data is None:
            raise ConfigError("plan_dataset needs a dataset or its fingerprint", "e.g. plan_dataset('Task04_Hippocampus')")
        ds = data if isinstance(data, Dataset) else load_dataset(data, min_cases=1)
        fingerprint = compute_fingerprint(ds)
    fp = fingerprint
    kind = device_kind(device)
    seconds = parse_duration(budget, "budget") if isinstance(budget, str) else budget
    seconds = float(seconds) if seconds is not None else DEFAULT_BUDGET[kind]
    if not seconds > 0:
        raise ConfigError(f"budget {budget!r} must be a positive duration", "e.g. --budget 20m")
    in_ch, out_ch = len(fp["channel_names"]), max(int(k) for k in fp["labels"]) + 1
    choices: dict[str, dict] = {}

    spacing, why = rules.target_spacing(fp)
    choices["target_spacing"] = {"value": spacing, "why": why}
    shapes = rules.case_shapes_at(fp, spacing)
    median_shape = [int(v) for v in np.median(shapes, axis=0)]
    choices["median_shape"] = {"value": median_shape, "why": "median nonzero box of the cases at the target spacing"}
    two_d = rules.two_d_axis(median_shape)
    # on a GPU the patch is nnU-Net's (bench/plans.py: the same on every shared dataset); on a CPU budget the
    # patch shrinks far below the case, and there it first keeps the labelled structures whole
    extent = rules.structure_extent(fp, spacing, median_shape) if kind == "cpu" else None
    if extent is not None:
        choices["structure_extent"] = {"value": extent, "why": (
            f"{rules.STRUCTURE_PERCENTILE}th percentile of the labelled boxes at the target spacing: a patch this "
            f"big holds a whole structure, so patches shrink along the other axes first")}
    channels = CHANNELS[kind]
    cands = _candidates(spacing, median_shape, two_d, channels, MAX_CHANNELS[kind], in_ch, out_ch, extent)
    base = deep_merge(DEFAULT_CONFIG, RECIPE)
    probes: list[dict] = []
    cost_info: dict = {"device": kind, "budget_seconds": seconds}
    if kind == "cuda":
        memory, memory_why = _gpu_memory_bytes(device, gpu_memory_gb)
        cand, batch_fit = _fit_gpu(cands, in_ch, out_ch, memory)
        cost_info.update(memory_target_bytes=int(memory), feature_map_elements=_elements(cand, out_ch))
        size_why = f"the largest nnU-Net-shaped patch whose batch of {rules.MIN_BATCH} fits {memory_why}"
        step_s = None
        target = None
    else:
        target = min(max(seconds / STEPS_WANTED, STEP_SECONDS[0]), STEP_SECONDS[1])
        cand, step_s = _fit_cpu(cands, base, in_ch, out_ch, target, device, probes)
        batch_fit = max(rules.MIN_BATCH, int(rules.MIN_BATCH * target / max(step_s, 1e-6)))
        size_why = (f"the largest nnU-Net-shaped patch whose training step (batch {rules.MIN_BATCH}) is measured "
                    f"within {target:.2f} s on this CPU (budget {format_duration(seconds)} / {STEPS_WANTED} steps)")
        if step_s > target and cand["holds"] and extent is not None:
            size_why = (f"the smallest patch that holds the structures ({'×'.join(map(str, extent))}); its step, "
                        f"{step_s:.2f} s, buys ≥ {HOLD_STEPS_SHARE:.0%} of the {STEPS_WANTED} steps a "
                        f"{target:.2f} s step would in {format_duration(seconds)}")
        cost_info.update(step_target_seconds=target, probes=probes)
    patch, net = cand["patch"], cand["network"]
    cap = rules.batch_cap(fp, spacing, patch)
    batch = max(rules.MIN_BATCH, min(batch_fit, cap))
    if kind == "cpu" and batch > rules.MIN_BATCH:
        step_s = step_s * batch / rules.MIN_BATCH
    choices["patch_size"] = {"value": patch, "why": f"{size_why}; initial {rules.initial_patch(spacing, median_shape)}"
                                                     f" (256³ voxels shaped like 1/spacing, clipped to the median case)"}
    choices["batch_size"] = {"value": batch, "why": f"≥ {rules.MIN_BATCH}; what the {'memory' if kind == 'cuda' else 'step target'} "
                                                    f"allows ({batch_fit}) within {rules.DATASET_SHARE:.0%} of the dataset's voxels ({cap})"}
    pools = [sum(1 for s in net["strides"] if s[a] == 2) for a in range(3)]
    choices["network"] = {"value": {k: net[k] for k in ("depth", "channels", "strides", "kernels")},
                          "two_d_axis": two_d,
                          "why": (f"poolings per axis {pools}: an axis is pooled while ≥ {2 * rules.MIN_FEATURE_MAP} voxels and "
                                  f"within 2× of the finest spacing; kernels 1 along an axis until then"
                                  + (f"; 2D along axis {two_d} (median {median_shape[two_d]} slices < "
                                     f"{rules.MIN_3D_SLICES})" if two_d is not None else "")
                                  + f"; {channels} first-level channels on {kind}")}
    norm, why = rules.normalization(fp)
    choices["normalization"] = {"value": norm, "why": why}
    share = rules.median_crop_share(fp)
    crop = share < 0.95
    choices["crop_foreground"] = {"value": crop, "why": f"the nonzero box is {share:.0%} of the median case"
                                                          + (" (cropping saves work)" if crop else " (nothing to crop)")}
    same = all(np.allclose(c["spacing"], spacing, rtol=1e-4) for c in fp["cases"])
    fg, why = rules.foreground_oversample(fp, patch)
    choices["foreground_oversample"] = {"value": fg, "why": why}
    size_aug, why = rules.size_augmentation(fp)
    choices["augmentation"] = {"value": size_aug, "why": why}
    steps, val_every, why = _epochs(step_s, seconds, fp, shapes, patch, batch, val_fraction)
    choices["epochs"] = {"value": {"steps_per_epoch": steps, "val_every": val_every, "time_limit": seconds},
                         "why": why}
    config = deep_merge(base, {
        "network": net,
        "preprocessing": {**norm, "crop_foreground": crop, "resampling": "none" if same else "median",
                          "target_spacing": None if same else spacing, "image_order": 1},
        "training": {"patch_size": patch, "batch_size": batch, "steps_per_epoch": steps, "val_every": val_every,
                     "time_limit": seconds, "epochs": EPOCH_CAP_WITH_TIME_LIMIT,
                     "warmup_steps": int(min(200, 0.05 * STEPS_WANTED)) if step_s is None
                     else int(min(200, 0.05 * seconds / step_s)),
                     "augmentation": {"foreground_oversample": fg, **size_aug}},
    })
    validate_config(config, source="plan")
    return {"version": PLAN_VERSION, "dataset": fp["dataset"], "device": kind, "budget_seconds": seconds,
            "config": config, "choices": choices, "cost": cost_info,
            "fingerprint_summary": {"num_cases": fp["num_cases"], "modality": fp["modality"],
                                    "spacing_median": fp["spacing"]["median"], "shape_median": fp["shape"]["median"],
                                    "channels": in_ch, "classes": out_ch}}


def _epochs(step_s, budget, fp, shapes, patch, batch, val_fraction):
    """Steps per epoch and validation frequency from the measured step (CPU) and the budget: an epoch ≈ budget /
    ``EPOCHS_WANTED``; validation (sliding windows over the validation cases, ≈ a third of a step per window and
    sample) at most ``VAL_SHARE`` of the time."""
    if step_s is None:                       # a GPU plan made without that GPU: nnU-Net's 250 steps
        return STEPS_PER_EPOCH[1], 1, "nnU-Net's 250 steps per epoch (no step time measured for this device)"
    steps = int(min(max(round(budget / EPOCHS_WANTED / step_s), STEPS_PER_EPOCH[0]), STEPS_PER_EPOCH[1]))
    n_val = max(1, round(val_fraction * fp["num_cases"]))
    windows = float(np.median([math.prod(math.ceil(s / (0.75 * p)) for s, p in zip(shape, patch))
                               for shape in shapes]))
    val_s = n_val * windows * step_s / batch / 3
    val_every = max(1, math.ceil(val_s / (VAL_SHARE * steps * step_s)))
    epochs = budget / (steps * step_s + val_s / val_every)
    return steps, val_every, (f"{steps} steps of ≈ {step_s:.2f} s per epoch (≈ {EPOCHS_WANTED} epochs in "
                              f"{format_duration(budget)}, ≈ {epochs:.0f} with validation); validating "
                              f"{n_val} case(s) ≈ {val_s:.1f} s every {val_every} epoch(s) "
                              f"(≤ {VAL_SHARE:.0%} of the time)")


def planned_config(plan: dict, override: dict | None = None) -> dict:
    """The plan's config with ``override`` (a user config or a search-space point) merged over it, its network
    fitted to the plan (:func:`fit_network`): ``depth: 3`` still means the plan's per-axis shape at 3 levels."""
    cfg = fit_network(plan, deep_merge(plan["config"], override or {}))
    validate_config(cfg, source="plan + config")
    return cfg


def fit_network(plan: dict, cfg: dict) -> dict:
    """``cfg`` with per-axis strides and kernels that fit its depth and patch by the plan's rule.  Only the plan's
    own topology is re-derived (when the depth or the patch differs from the plan's); a topology the config sets
    itself is kept, and a network that is not the planned kind (another arch, ``conv: 2d``) gets none."""
    net, planned = cfg["network"], plan["config"]["network"]
    if net.get("arch", "unet") != "unet" or net.get("conv") == "2d":
        if net.get("strides") == planned["strides"]:
            net["kernels"] = net["strides"] = None
        return cfg
    patch = cfg["training"].get("patch_size")
    same_patch = patch == plan["config"]["training"]["patch_size"]
    if net.get("strides") == planned["strides"] and patch and (int(net["depth"]) != planned["depth"] or not same_patch):
        net["strides"], net["kernels"] = topology_for_depth(plan["choices"]["target_spacing"]["value"], patch,
                                                            int(net["depth"]),
                                                            plan["choices"]["network"].get("two_d_axis"))
    return cfg


def save_plan(plan: dict, path: str | Path) -> Path:
    return write_json(path, plan)


def load_plan(path: str | Path) -> dict:
    from AutoSegCore.errors import DatasetError

    p = Path(path)
    if p.is_dir():
        p = p / PLAN_FILE
    try:
        plan = read_json(p)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{p}: cannot read the plan ({exc.__class__.__name__})",
                           "make it with `autoseg plan DATA --out DIR`") from None
    if not isinstance(plan, dict) or plan.get("version") != PLAN_VERSION or "config" not in plan:
        raise DatasetError(f"{p}: not a version-{PLAN_VERSION} plan", "make it again with `autoseg plan DATA --out DIR`")
    return plan


def topology_for_depth(spacing, patch, depth: int, two_d: int | None = None):
    """Strides and kernels of a ``depth``-level U-Net on ``patch``: the planner's rule with at most depth − 1
    poolings; where the patch allows fewer, the remaining poolings go to the axes still ≥ 2 voxels (so a space's
    "plan depth + 1" is always buildable)."""
    strides, kernels, _, _ = rules.topology(spacing, patch, max_pools=depth - 1)
    size = [p // int(np.prod([s[a] for s in strides])) for a, p in enumerate(patch)] if strides else list(patch)
    while len(strides) < depth - 1:
        step = [2 if n >= 2 and n % 2 == 0 else 1 for n in size]
        strides.append(step)
        kernels.insert(-1, list(kernels[-1]))
        size = [n // s for n, s in zip(size, step)]
    if two_d is not None:
        strides, kernels = rules.as_two_d(strides, kernels, two_d)
    return strides, kernels
