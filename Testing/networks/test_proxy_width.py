"""The rank-preserving width rule (``--proxy-net width=F``): shrinks each network relative to its own size, so the
order of sizes survives and a search can rank them.  Real configs, real builds, real forward passes."""
import copy

import optuna
import pytest
import torch

from AutoSegCore.config import DEFAULT_CONFIG
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import build_network, count_parameters, proxy_network, size_divisor
from AutoSegCore.spaces import get_space


def unet(**overrides) -> dict:
    return {**DEFAULT_CONFIG["network"], **overrides}


def forward(cfg: dict, cin: int = 1, cout: int = 3) -> torch.Tensor:
    """Build ``cfg`` and run one train-mode forward pass on twice its divisor (3 slices on a 2D net's slice axis)."""
    div = size_divisor(cfg)
    shape = (2 * div[0], 2 * div[1], 3 if div[2] == 1 else 2 * div[2])
    model = build_network(cfg, cin, cout).train()
    out = model(torch.randn(1, cin, *shape))
    full = out[0] if isinstance(out, list) else out
    assert full.shape == (1, cout, *shape)
    assert torch.isfinite(full).all()
    return full


# ------------------------------------------------------------------------------------------------------- U-Net

def test_unet_channel_order_is_preserved():
    widths = [8, 16, 27, 64, 128]
    proxies = [proxy_network(unet(channels=c, depth=4), width=0.25) for c in widths]
    channels = [p["channels"] for p in proxies]
    assert channels == [4, 4, 7, 16, 32]
    assert channels == sorted(channels) and min(channels) >= 4
    # the proxies' sizes keep the full nets' order (ties only where the floor of 4 channels merges them)
    full_sizes = [count_parameters(unet(channels=c, depth=4), 1, 3) for c in widths]
    proxy_net_sizes = [count_parameters(p, 1, 3) for p in proxies]
    assert full_sizes == sorted(full_sizes) and proxy_net_sizes == sorted(proxy_net_sizes)
    assert all(p < f for p, f in zip(proxy_net_sizes, full_sizes))


@pytest.mark.parametrize("n_convs,expected", [(0, 0), (1, 1), (2, 1), (3, 1)])
def test_unet_residual_units(n_convs, expected):
    assert proxy_network(unet(n_convs=n_convs), width=0.5)["n_convs"] == expected


@pytest.mark.parametrize("cfg", [
    unet(channels=16, depth=5, n_convs=2),
    unet(channels=32, depth=6, multiplier=1.5, conv="2d", norm="batch", deep_supervision=True, n_convs=3),
    unet(channels=128, depth=2, multiplier=0.5, n_convs=0, dropout=0.2, max_channels=200),
])
@pytest.mark.parametrize("levels", [None, 3])
def test_unet_width_rule_keys(cfg, levels):
    before = copy.deepcopy(cfg)
    proxy_net = proxy_network(cfg, levels=levels, width=0.25)
    assert cfg == before                                                     # pure
    assert proxy_net["channels"] == max(4, round(cfg["channels"] * 0.25))
    assert proxy_net["n_convs"] == min(cfg["n_convs"], 1)
    assert proxy_net["depth"] == (cfg["depth"] if levels is None else min(cfg["depth"], levels))
    for key in ("multiplier", "conv", "norm", "deep_supervision", "dropout", "arch"):
        assert proxy_net[key] == cfg[key]
    assert proxy_net["max_channels"] == max(4, round(cfg["max_channels"] * 0.25))   # deep levels shrink as well
    assert all(a <= b for a, b in zip(size_divisor(proxy_net), size_divisor(cfg)))   # patches never grow


def test_width_one_keeps_the_size_but_not_the_residual_units():
    cfg = unet(channels=16, depth=4, n_convs=3)
    proxy_net = proxy_network(cfg, width=1)
    assert (proxy_net["channels"], proxy_net["depth"], proxy_net["n_convs"]) == (16, 4, 1)


def test_the_rule_never_grows_a_network():
    assert proxy_network(unet(channels=2), width=0.25)["channels"] == 2
    assert proxy_network(unet(channels=3, depth=2), levels=4, width=0.5)["depth"] == 2
    emonas = proxy_network({**unet(), "arch": "emonas", "emonas": {"n_f": 1, "n_c": 2}}, width=0.25)
    assert (emonas["emonas"]["n_f"], emonas["emonas"]["n_c"]) == (1, 2)


@pytest.mark.parametrize("cfg", [
    unet(channels=64, depth=5, n_convs=2),
    unet(channels=27, depth=4, multiplier=2.7, n_convs=3, deep_supervision=True),
    unet(channels=128, depth=6, multiplier=1.0, conv="2d", n_convs=0, norm="batch"),
    unet(channels=8, depth=3, multiplier=0.5, n_convs=1, dropout=0.1),
])
@pytest.mark.parametrize("levels", [None, 3])
def test_unet_width_proxies_build_run_and_are_smaller(cfg, levels):
    proxy_net = proxy_network(cfg, levels=levels, width=0.25)
    forward(proxy_net, 2, 3)
    assert count_parameters(proxy_net, 2, 3) < count_parameters(cfg, 2, 3)


def test_unet_pipeline_points_keep_their_order_of_size():
    """Random points of the space that searches U-Net size: each shrunk net builds and runs, and a full net
    with at least as many channels at the same depth, multiplier, conv and n_convs never gets a smaller proxy network."""
    space = get_space("unet-pipeline")
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=2))
    for _ in range(4):
        cfg = space.to_config(space.suggest(study.ask()))["network"]
        proxy_net = proxy_network(cfg, width=0.25)
        assert proxy_net["depth"] == cfg["depth"] and proxy_net["multiplier"] == cfg["multiplier"]
        forward(proxy_net, 1, 3)
        sizes = [count_parameters(proxy_network({**cfg, "channels": c}, width=0.25), 1, 3) for c in (8, 20, 50, 128)]
        assert sizes == sorted(sizes)


# ------------------------------------------------------------------------------------------------ SegNAS / EMONAS

SEGNAS = {**DEFAULT_CONFIG["network"], "arch": "segnas",
          "segnas": {"filters": 30, "poolings": 4, "nodes": 4, "ops": [2, 0, 0, 3, 0, 6], "residual": True}}


@pytest.mark.parametrize("levels,poolings", [(None, 4), (3, 2), (6, 4)])
def test_segnas_width_rule(levels, poolings):
    proxy_net = proxy_network(SEGNAS, levels=levels, width=0.25)
    assert proxy_net["segnas"] == {**SEGNAS["segnas"], "filters": 8, "poolings": poolings}
    forward(proxy_net, 1, 2)
    assert count_parameters(proxy_net, 1, 2) < count_parameters(SEGNAS, 1, 2)


def test_segnas_filter_order_and_sampled_points():
    filters = [proxy_network({**SEGNAS, "segnas": {**SEGNAS["segnas"], "filters": n}}, width=0.25)["segnas"]["filters"]
               for n in range(8, 33)]
    assert filters == sorted(filters) and min(filters) == 4 and max(filters) == 8
    space = get_space("segnas")
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=4))
    built = 0
    while built < 3:
        params = space.suggest(study.ask())
        if not space.is_legal(params):
            continue
        cfg = space.to_config(params)["network"]
        proxy_net = proxy_network(cfg, levels=3, width=0.25)
        assert proxy_net["segnas"]["poolings"] == min(cfg["segnas"]["poolings"], 2)
        forward(proxy_net, 1, 2)
        built += 1


EMONAS = {**DEFAULT_CONFIG["network"], "arch": "emonas",
          "emonas": {"inputs": [0, 1, 2], "ops": ["conv3d_3", "p3d_3", "conv2d_5", "identity"], "n_c": 3, "n_f": 5}}


@pytest.mark.parametrize("width,n_f", [(1.0, 5), (0.5, 4), (0.25, 3), (0.1, 2), (0.01, 2)])
def test_emonas_width_halves_filters_per_octave(width, n_f):
    proxy_net = proxy_network(EMONAS, width=width)
    assert (proxy_net["emonas"]["n_f"], proxy_net["emonas"]["n_c"]) == (n_f, 3)
    assert proxy_net["emonas"]["ops"] == EMONAS["emonas"]["ops"] and proxy_net["emonas"]["inputs"] == [0, 1, 2]


@pytest.mark.parametrize("levels", [None, 3])
def test_emonas_width_proxies_build_and_run(levels):
    nfs = [proxy_network({**EMONAS, "emonas": {**EMONAS["emonas"], "n_f": n}}, width=0.25)["emonas"]["n_f"]
           for n in (3, 4, 5)]
    assert nfs == [2, 2, 3]
    proxy_net = proxy_network({**EMONAS, "deep_supervision": True}, levels=levels, width=0.25)
    assert proxy_net["emonas"]["n_c"] == (3 if levels is None else 2)
    forward(proxy_net, 1, 3)
    assert count_parameters(proxy_net, 1, 3) < count_parameters(EMONAS, 1, 3)


# ------------------------------------------------------------------------------------------------ API and errors

def test_levels_api_is_unchanged():
    cfg = unet(channels=16, depth=5, n_convs=2)
    assert proxy_network(cfg, 3) == proxy_network(cfg, levels=3) == proxy_network(cfg)
    assert (proxy_network(cfg, 4)["channels"], proxy_network(cfg, 4)["depth"]) == (4, 4)


@pytest.mark.parametrize("width", [0, -0.5, 1.5, float("nan"), float("inf"), "0.5", True])
def test_bad_width(width):
    with pytest.raises(ConfigError, match="width"):
        proxy_network(unet(), width=width)


def test_bad_levels_with_width():
    with pytest.raises(ConfigError, match="levels"):
        proxy_network(unet(), levels=7, width=0.5)
