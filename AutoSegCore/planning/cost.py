"""What a planned patch and batch cost on the target device: a measured step time on a CPU (a short probe of real
training steps), activation memory against a memory target on a GPU.

nnU-Net's planner only knows GPUs: it estimates a net's feature maps and fits them into a fixed VRAM figure (8 GB
by default).  On a CPU memory is rarely the limit, time is: a patch that takes 5 s per step buys too few steps
in a user's budget to learn anything.  So on a CPU the planner times a few steps of the planned net itself, with
the trainer's own precision, memory layout and loss, and sizes the patch to a step-time target.
"""
from __future__ import annotations

import math
import time

PROBE_WARMUP = 1
PROBE_STEPS = 2


# nnU-Net v2's calibration of its VRAM estimate (ExperimentPlanner: UNet_reference_val_3d = 560e6 feature-map
# elements for a batch of 2 in 8 GB, measured by its authors on their U-Nets with mixed precision).  We have no GPU
# to calibrate on, and matching its figure makes our GPU plans comparable with nnU-Net's (bench/plans.py).
REFERENCE_ELEMENTS = 560e6
REFERENCE_GB = 8.0
REFERENCE_BATCH = 2


def feature_map_elements(strides, patch, channels: int, max_channels: int, out_channels: int) -> int:
    """Convolution-output elements of one sample in nnU-Net's U-Net of these poolings — its
    ``compute_conv_feature_map_size``: per stage two convolutions in the encoder, a transposed convolution, two
    convolutions and a segmentation head in the decoder.  Counted for nnU-Net's layout rather than ours because
    its calibration (``REFERENCE_ELEMENTS``) is for that layout; ours (MONAI's: the first level already strided,
    one refinement convolution per decoder level) keeps fewer full-resolution maps, so the estimate errs safe."""
    voxels = [math.prod(patch)]
    size = list(patch)
    for stride in strides:
        size = [math.ceil(n / s) for n, s in zip(size, stride)]
        voxels.append(math.prod(size))
    feats = [min(channels * 2 ** s, max_channels) for s in range(len(voxels))]
    encoder = sum(2 * f * v for f, v in zip(feats, voxels))
    decoder = sum((3 * f + out_channels) * v for f, v in zip(feats[:-1], voxels[:-1]))
    return int(encoder + decoder)


def batch_in_memory(elements: int, memory_bytes: float) -> float:
    """How many samples of ``elements`` feature-map elements fit ``memory_bytes`` by nnU-Net's calibration."""
    return REFERENCE_ELEMENTS * (memory_bytes / 2 ** 30 / REFERENCE_GB) / max(elements, 1) * REFERENCE_BATCH


def probe_step_seconds(config: dict, in_channels: int, out_channels: int, device: str = "cpu") -> float:
    """Seconds of one training step of ``config`` (its network, ``training.patch_size``/``batch_size``/loss/
    optimiser/amp/channels_last) on random data, as the trainer runs it: the fastest of ``PROBE_STEPS`` after
    ``PROBE_WARMUP``."""
    import torch

    from AutoSegCore.networks.build import build_network
    from AutoSegCore.training.numerics import amp_dtype, loss_layout, use_channels_last
    from AutoSegCore.training.fused_loss import FusedDiceCELoss
    from AutoSegCore.training.fused_loss import available as fused_available
    from AutoSegCore.training.losses import DeepSupervisionWrapper, make_loss
    from AutoSegCore.training.optim import make_optimizer
    from AutoSegCore.utils.device import pick_device

    dev = pick_device(device)
    tcfg = config["training"]
    patch, batch = [int(p) for p in tcfg["patch_size"]], int(tcfg["batch_size"])
    gen = torch.Generator().manual_seed(0)
    net = build_network(config["network"], in_channels, out_channels).to(dev)
    channels_last = use_channels_last(tcfg.get("channels_last", "auto"), dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    amp = amp_dtype(tcfg.get("amp", "auto"), dev)
    loss_fn = DeepSupervisionWrapper(make_loss(tcfg["loss"]))
    keep = isinstance(loss_fn.loss, FusedDiceCELoss) and fused_available(dev)
    opt = make_optimizer(net.parameters(), tcfg)
    img = torch.randn(batch, in_channels, *patch, generator=gen).to(dev)
    lab = torch.randint(0, out_channels, (batch, 1, *patch), generator=gen, dtype=torch.uint8).to(dev)
    if channels_last:
        img = img.contiguous(memory_format=torch.channels_last_3d)
    times = []
    for i in range(PROBE_WARMUP + PROBE_STEPS):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            out = net(img)
        out = [loss_layout(o, keep) for o in out] if isinstance(out, (list, tuple)) else loss_layout(out, keep)
        loss = loss_fn(out, lab if keep else lab.long())
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= PROBE_WARMUP:
            times.append(time.perf_counter() - t0)
    return float(min(times))              # the least disturbed step: other work on the machine only adds time


def work(patch, batch: int, flops_per_voxel: float) -> float:
    """A step's forward FLOPs: what its time is close to proportional to (for one net family on one device)."""
    return float(batch) * math.prod(patch) * flops_per_voxel
