"""Parameter and FLOP counting on the meta device."""
import torch
from torch import nn

from AutoSegCore.config import DEFAULT_CONFIG
from AutoSegCore.networks import build_network, count_parameters, flops_per_voxel, proxy_network
from AutoSegCore.networks.measure import conv_macs

FULL = {**DEFAULT_CONFIG["network"], "channels": 16, "depth": 5, "n_convs": 2}   # baselines.md "full"


def test_conv_macs_by_hand():
    conv = nn.Conv3d(2, 4, 3, padding=1)
    x = torch.zeros(1, 2, 8, 8, 8)
    assert conv_macs(conv, (x,), conv(x)) == 8 ** 3 * 4 * 2 * 27
    up = nn.ConvTranspose3d(6, 3, 2, stride=2)
    assert conv_macs(up, (x.new_zeros(1, 6, 4, 4, 4),), up(x.new_zeros(1, 6, 4, 4, 4))) == 4 ** 3 * 6 * 3 * 8


def test_flops_per_voxel_of_a_two_level_net_by_hand():
    """depth 2, one conv per level: stride-2 conv 1→c, bottom conv c→2c (3³, at half resolution), then the top
    transposed conv cat(c, 2c) → out classes, which paints each half-resolution input voxel's 3³ kernel."""
    c, out = 5, 2
    cfg = {**DEFAULT_CONFIG["network"], "channels": c, "depth": 2, "n_convs": 0}
    per_voxel_macs = (c * 1 * 27) / 8 + (2 * c * c * 27) / 8 + (3 * c * out * 27) / 8
    assert flops_per_voxel(cfg, 1, out, patch=(16, 16, 16)) == 2 * per_voxel_macs


def test_full_net_costs_far_more_than_its_proxy():
    full = flops_per_voxel(FULL, 1, 3)
    proxy_net_flops = flops_per_voxel(proxy_network(FULL, levels=3), 1, 3)
    assert full > 5 * proxy_net_flops


def test_flops_agree_with_torch_flop_counter():
    """Our meta-device count of convolution MACs against PyTorch's own FlopCounterMode on the built net (which
    also counts the matmul-free norms/activations as 0, like ours): within 1 %."""
    from torch.utils.flop_counter import FlopCounterMode

    patch = (48, 64, 48)
    ours = flops_per_voxel(FULL, 1, 3, patch=patch) * 48 * 64 * 48
    net = build_network(FULL, 1, 3).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 1, *patch))
    assert abs(ours - counter.get_total_flops()) / counter.get_total_flops() < 0.01


def test_count_parameters_equals_built_model():
    for cfg in (FULL, {**FULL, "arch": "segnas"}, {**FULL, "arch": "emonas", "deep_supervision": True}):
        model = build_network(cfg, 2, 4)
        assert count_parameters(cfg, 2, 4) == sum(p.numel() for p in model.parameters())


def test_patch_is_rounded_up_to_the_divisor():
    cfg = {**DEFAULT_CONFIG["network"], "depth": 3}
    assert flops_per_voxel(cfg, 1, 2, patch=(13, 16, 16)) == flops_per_voxel(cfg, 1, 2, patch=(16, 16, 16))


def _saved_by_autograd(cfg, patch, batch) -> int:
    """Bytes autograd really keeps for the backward of one training forward (distinct storages)."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    net = build_network(cfg, 1, 3).train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(torch.randn(batch, 1, *patch))
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params)


def test_saved_activations_estimate_tracks_what_autograd_keeps():
    """The meta-device estimate the forecast uses to refuse a step too big to time: within 2× of the bytes a
    real CPU forward saves for backward, and linear in the batch."""
    from AutoSegCore.networks.measure import saved_activation_bytes
    cfg = {**DEFAULT_CONFIG["network"], "channels": 8, "depth": 3}
    est = saved_activation_bytes(cfg, 1, 3, (32, 32, 32), 2)
    real = _saved_by_autograd(cfg, (32, 32, 32), 2)
    assert 0.5 < est / real < 2, (est, real)
    assert saved_activation_bytes(cfg, 1, 3, (32, 32, 32), 4) == 2 * est
    assert saved_activation_bytes(cfg, 1, 3, (32, 32, 32), 2, bytes_per_element=2) * 2 == est
