"""Size and cost of a network without training it: parameters and forward FLOPs per input voxel.

Both build the network on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic), so they cost
milliseconds even for nets that would not fit in RAM.  FLOPs count only convolutions and transposed
convolutions, as 2 × multiply-adds (one multiply + one add), ignoring bias, normalisation, activations, pooling
and additions, which are a small share for these nets.  fvcore/thop would do the same counting but are not in
our stack, and torch.utils.flop_counter counts every aten op; hooks on the conv modules are short and say
exactly what is counted.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def count_parameters(net_cfg: dict, in_channels: int, out_channels: int) -> int:
    """Number of trainable parameters (deep-supervision heads included when enabled)."""
    from AutoSegCore.networks.build import build_network
    with torch.device("meta"):
        model = build_network(net_cfg, in_channels, out_channels)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """Multiply-adds of one call of a (transposed) convolution."""
    k = math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # every input voxel is multiplied with a kernel for each output channel
        return inputs[0].numel() * (module.out_channels // module.groups) * k
    return output.numel() * (module.in_channels // module.groups) * k


def _meta_forward(net_cfg: dict, in_channels: int, out_channels: int, patch, *, train: bool, modules, on_call) -> None:
    """One forward of a 1-patch batch through the network built on the ``meta`` device, with ``on_call(module,
    inputs, output)`` hooked on every module ``modules(m)`` selects; what both measures below share."""
    from AutoSegCore.networks.build import build_network
    with torch.device("meta"):
        model = build_network(net_cfg, in_channels, out_channels).train(train)
        x = torch.empty(1, in_channels, *[int(p) for p in patch])
    handles = [m.register_forward_hook(on_call) for m in model.modules() if modules(m)]
    try:
        with torch.set_grad_enabled(train):
            model(x)
    finally:
        for h in handles:
            h.remove()


def flops_per_voxel(net_cfg: dict, in_channels: int, out_channels: int,
                    patch: tuple[int, int, int] = (48, 64, 48)) -> float:
    """Forward FLOPs (2 × conv multiply-adds) of one patch in eval mode, divided by the patch's voxel count."""
    from AutoSegCore.networks.build import size_divisor
    div = size_divisor(net_cfg)
    # round the patch up to the divisor so any net can be measured at the requested size
    patch = tuple(int(math.ceil(p / d) * d) for p, d in zip(patch, div))
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += conv_macs(module, inputs, output)

    _meta_forward(net_cfg, in_channels, out_channels, patch, train=False, on_call=hook,
                  modules=lambda m: isinstance(m, nn.modules.conv._ConvNd))
    return 2.0 * total / math.prod(patch)


def saved_activation_bytes(net_cfg: dict, in_channels: int, out_channels: int, patch, batch: int,
                           bytes_per_element: int = 4) -> int:
    """Bytes of the outputs of every leaf module of one training forward of ``batch`` patches: about what autograd
    keeps for the backward pass (1.4-1.6× of it: in-place activations are counted twice), and below a CPU training
    step's peak (0.44 vs 0.57 GB measured for a 16-channel depth-4 U-Net at 64³ × 8).  Lets a caller refuse a step
    that cannot fit before running it: a 160³ × 8 batch of a 64-channel U-Net would otherwise swap for minutes
    before failing.  Measured on the ``meta`` device: milliseconds, no memory."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel()

    _meta_forward(net_cfg, in_channels, out_channels, patch, train=True, on_call=hook,
                  modules=lambda m: not list(m.children()))
    return int(total) * int(batch) * int(bytes_per_element)
