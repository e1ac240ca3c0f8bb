"""The BOHB thesis's U-Net: channel rule, parameter counts against a closed formula and MONAI's UNet, forward shapes."""
import itertools
import math

import pytest
import torch
from monai.networks.nets import UNet as MonaiUNet

from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import build_network, count_parameters, size_divisor, unet_channels
from AutoSegCore.config import DEFAULT_CONFIG


def net(**overrides) -> dict:
    """A network section: the config defaults with ``overrides``."""
    return {**DEFAULT_CONFIG["network"], **overrides}


def formula_params(cfg: dict, cin: int, cout: int) -> int:
    """Closed-form parameter count: conv = cin·cout·k + cout (bias); instance norm and LeakyReLU have none."""
    ch = unet_channels(cfg)
    k = 9 if cfg["conv"] == "2d" else 27
    r = cfg["n_convs"]

    def conv(a, b, kk=k):
        return a * b * kk + b

    def block(a, b, strided):
        if r == 0:
            return conv(a, b)
        units = conv(a, b) + (r - 1) * conv(b, b)
        residual = conv(a, b, k if strided else 1) if (strided or a != b) else 0
        return units + residual

    d = len(ch)
    total = sum(block(([cin] + ch)[i], ch[i], True) for i in range(d - 1)) + block(ch[-2], ch[-1], False)
    for i in range(d - 1):
        a = ch[i] + (ch[i + 1] if i == d - 2 else ch[i])
        b = cout if i == 0 else ch[i - 1]              # the top level decodes straight to the classes
        total += conv(a, b) + (conv(b, b) if r > 0 else 0)
    if cfg["deep_supervision"]:
        total += sum(conv(ch[i - 1], cout, 1) for i in range(1, d - 1))
    return total


def test_channels_are_floored_products_capped():
    assert unet_channels(net(channels=16, multiplier=1.5, depth=4)) == [16, 24, 36, 54]
    assert unet_channels(net(channels=8, multiplier=0.5, depth=6)) == [8, 4, 2, 1, 1, 1]
    assert unet_channels(net(channels=128, multiplier=3.0, depth=4, max_channels=320)) == [128, 320, 320, 320]
    assert unet_channels(net(channels=10, multiplier=1.3, depth=3)) == [10, 13, math.floor(10 * 1.3 ** 2)]


@pytest.mark.parametrize("cfg", [
    net(channels=4, depth=5, n_convs=1),
    net(channels=16, depth=4, n_convs=2, conv="2d"),
    net(channels=8, depth=6, multiplier=0.5, n_convs=0),
    net(channels=32, depth=3, multiplier=2.7, n_convs=3, deep_supervision=True),
    net(channels=12, depth=2, multiplier=1.0, n_convs=1, deep_supervision=True),
])
def test_parameter_count_matches_formula(cfg):
    assert count_parameters(cfg, 2, 3) == formula_params(cfg, 2, 3)
    real = sum(p.numel() for p in build_network(cfg, 2, 3).parameters())
    assert real == formula_params(cfg, 2, 3)


@pytest.mark.parametrize("channels,res_units", [((4, 8, 16, 32, 64), 1), ((4, 8, 16), 1), ((16, 32, 64, 128, 256), 2),
                                                ((16, 32, 64, 128), 2), ((8, 16, 32), 0)])
def test_same_function_as_monai_unet(channels, res_units):
    """Without deep supervision our U-Net is MONAI's UNet (with the same LeakyReLU): copying MONAI's weights in
    forward order (encoder, bottom, decoder from the bottom up) gives the same logits."""
    from AutoSegCore.networks.layers import UNET_LEAKY_RELU

    act = (UNET_LEAKY_RELU[0], {"negative_slope": UNET_LEAKY_RELU[1]["negative_slope"]})
    torch.manual_seed(0)
    monai_net = MonaiUNet(3, 1, 3, channels, (2,) * (len(channels) - 1), num_res_units=res_units, act=act,
                          norm="INSTANCE").eval()
    ours = build_network(net(channels=channels[0], depth=len(channels), n_convs=res_units), 1, 3).eval()
    forward_order = [*ours.downs, ours.bottom, *reversed(ours.ups)]
    ours_params = [p for m in forward_order for p in m.parameters()]
    theirs = list(monai_net.parameters())
    assert [p.shape for p in ours_params] == [p.shape for p in theirs]
    assert count_parameters(net(channels=channels[0], depth=len(channels), n_convs=res_units), 1, 3) == \
        sum(p.numel() for p in theirs)
    with torch.no_grad():
        for a, b in zip(ours_params, theirs):
            a.copy_(b)
        x = torch.randn(1, 1, 32, 32, 32)
        torch.testing.assert_close(ours(x), monai_net(x), atol=1e-5, rtol=1e-4)


def test_channels_last_stays_channels_last_through_the_net():
    """The instance norm keeps a channels-last input's layout (torch's returns NCDHW), so no layer of a
    channels-last net changes layout; same values as in NCDHW, and the plain InstanceNorm3d state dict."""
    from AutoSegCore.networks.layers import InstanceNormKeepLayout

    torch.manual_seed(0)
    model = build_network(net(channels=4, depth=3, n_convs=1), 1, 3).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert norms and all(isinstance(m, InstanceNormKeepLayout) for m in norms)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.is_contiguous(memory_format=torch.channels_last_3d)))
             for m in norms]
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        plain = model(x)
        seen.clear()
        cl_model = model.to(memory_format=torch.channels_last_3d)
        out = cl_model(x.contiguous(memory_format=torch.channels_last_3d))
    for h in hooks:
        h.remove()
    assert seen and all(seen)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-4)
    assert all(not m.state_dict() for m in norms)


def test_proxy_paper_network_sizes_match_baselines():
    """baselines.md: MONAI UNet 4–64, 5 levels, 1 residual unit ≈ 154 k; 4/8/16, 3 levels ≈ 9.5 k (PReLU: one
    weight per activation more than our LeakyReLU)."""
    five = count_parameters(net(channels=4, depth=5, n_convs=1), 1, 3)
    three = count_parameters(net(channels=4, depth=3, n_convs=1), 1, 3)
    assert abs(five - 154_245) / 154_245 < 0.001
    assert abs(three - 9_519) / 9_519 < 0.005


CASES = list(itertools.product(range(2, 7), ("2d", "3d"), range(4), (False, True)))


@pytest.mark.parametrize("depth,conv,n_convs,ds", CASES)
def test_forward_shapes(depth, conv, n_convs, ds):
    cfg = net(channels=2, multiplier=1.5, depth=depth, conv=conv, n_convs=n_convs, deep_supervision=ds)
    div = size_divisor(cfg)
    assert div == ((2 ** (depth - 1),) * 2 + (1 if conv == "2d" else 2 ** (depth - 1),))
    # twice the divisor: instance norm needs more than one voxel at the bottom in train mode; 3 slices in 2D
    shape = (2 * div[0], 2 * div[1], 3 if conv == "2d" else 2 * div[2])
    model = build_network(cfg, 2, 3)
    x = torch.randn(1, 2, *shape)
    model.train()
    out = model(x)
    if ds:
        assert isinstance(out, list) and len(out) == depth - 1
        for level, o in enumerate(out):
            scale = 2 ** level
            expected = (shape[0] // scale, shape[1] // scale, shape[2] if conv == "2d" else shape[2] // scale)
            assert o.shape == (1, 3, *expected)
    else:
        assert out.shape == (1, 3, *shape)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (1, 3, *shape)


def test_2d_mode_never_mixes_slices():
    """k×k×1 kernels and in-plane pooling: with batch norm in eval mode (instance norm would couple slices
    through its statistics) slice 0 of the output depends on slice 0 of the input only."""
    model = build_network(net(channels=4, depth=3, conv="2d", norm="batch"), 1, 2).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            assert m.kernel_size[2] == 1 and m.stride[2] == 1
    x = torch.randn(1, 1, 8, 8, 4)
    x2 = x.clone()
    x2[..., 1:] = torch.randn_like(x2[..., 1:])     # change the other slices only
    with torch.no_grad():
        assert torch.allclose(model(x)[..., 0], model(x2)[..., 0], atol=1e-6)
        assert not torch.allclose(model(x)[..., 1], model(x2)[..., 1], atol=1e-6)


def test_training_step_reaches_every_parameter():
    model = build_network(net(channels=4, depth=4, n_convs=2, deep_supervision=True, dropout=0.1), 1, 3).train()
    outs = model(torch.randn(2, 1, 16, 16, 16))
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("override,word", [({"depth": 7}, "depth"), ({"n_convs": 4}, "n_convs"),
                                           ({"conv": "4d"}, "conv"), ({"multiplier": 5.0}, "multiplier"),
                                           ({"channels": 0}, "channels"), ({"dropout": 1.5}, "dropout")])
def test_bad_network_config_is_a_config_error(override, word):
    with pytest.raises(ConfigError) as err:
        build_network(net(**override), 1, 2)
    assert word in err.value.message and err.value.hint


def test_bad_channel_counts():
    with pytest.raises(ConfigError, match="in_channels"):
        build_network(net(), 0, 2)
