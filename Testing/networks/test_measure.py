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
    """depth 2, one conv per level: stride-2 conv 1→c, bottom conv c→2c, transposed conv 3c→out (all 3³)."""
    c, out = 5, 2
    cfg = {**DEFAULT_CONFIG["network"], "channels": c, "depth": 2, "n_convs": 0}
    per_voxel_macs = (c * 1 * 27) / 8 + (2 * c * c * 27) / 8 + (3 * c * out * 27) / 8
    assert flops_per_voxel(cfg, 1, out, patch=(16, 16, 16)) == 2 * per_voxel_macs


def test_full_net_costs_far_more_than_its_proxy():
    full = flops_per_voxel(FULL, 1, 3)
    proxy = flops_per_voxel(proxy_network(FULL, levels=3), 1, 3)
    assert full > 5 * proxy


def test_flops_agree_with_the_measured_training_step():
    """baselines.md measured 21.2 GFLOP per training step (batch 4, 48×64×48) for this net; backward ≈ 2×
    forward, so 3 × our forward count should land close."""
    step = 3 * flops_per_voxel(FULL, 1, 3, patch=(48, 64, 48)) * 48 * 64 * 48 * 4
    assert abs(step - 21.2e9) / 21.2e9 < 0.1


def test_count_parameters_equals_built_model():
    for cfg in (FULL, {**FULL, "arch": "segnas"}, {**FULL, "arch": "emonas", "deep_supervision": True}):
        model = build_network(cfg, 2, 4)
        assert count_parameters(cfg, 2, 4) == sum(p.numel() for p in model.parameters())


def test_patch_is_rounded_up_to_the_divisor():
    cfg = {**DEFAULT_CONFIG["network"], "depth": 3}
    assert flops_per_voxel(cfg, 1, 2, patch=(13, 16, 16)) == flops_per_voxel(cfg, 1, 2, patch=(16, 16, 16))
