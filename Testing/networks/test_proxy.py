"""The proxy paper's proxy-network rule as a pure function of any network config."""
import copy

import pytest

from AutoSegCore.config import DEFAULT_CONFIG
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import count_parameters, proxy_network, size_divisor

FULL = {**DEFAULT_CONFIG["network"], "channels": 16, "depth": 5, "n_convs": 2}


@pytest.mark.parametrize("cfg", [
    FULL,
    {**FULL, "channels": 32, "multiplier": 1.5, "conv": "2d", "norm": "batch", "deep_supervision": True},
    {**FULL, "channels": 128, "depth": 2, "n_convs": 0, "dropout": 0.2},
])
@pytest.mark.parametrize("levels", [5, 4, 3])
def test_unet_rule(cfg, levels):
    before = copy.deepcopy(cfg)
    proxy_net = proxy_network(cfg, levels)
    assert cfg == before                                   # pure: the input is not changed
    assert (proxy_net["channels"], proxy_net["n_convs"], proxy_net["depth"]) == (4, 1, levels)
    for key in ("multiplier", "conv", "norm", "deep_supervision", "dropout", "max_channels", "arch"):
        assert proxy_net[key] == cfg[key]


def test_proxy_sizes_shrink_with_levels_and_match_proxy_paper():
    sizes = [count_parameters(proxy_network(FULL, n), 1, 3) for n in (5, 4, 3)]
    assert sizes[0] > sizes[1] > sizes[2]
    assert 150_000 < sizes[0] < 158_000 and 9_000 < sizes[2] < 10_000   # ≈154 k and ≈9.5 k (baselines.md)
    assert count_parameters(FULL, 1, 3) > 30 * sizes[0]


def test_nas_shrinks():
    segnas = proxy_network({**FULL, "arch": "segnas", "segnas": {"filters": 30, "poolings": 5, "nodes": 4,
                                                                   "ops": [2, 0, 0, 3, 0, 6], "residual": False}}, 3)
    assert segnas["segnas"] == {"filters": 4, "poolings": 2, "nodes": 4, "ops": [2, 0, 0, 3, 0, 6], "residual": False}
    assert size_divisor(segnas) == (4, 4, 4)
    emonas = proxy_network({**FULL, "arch": "emonas"}, 4)
    assert (emonas["emonas"]["n_f"], emonas["emonas"]["n_c"]) == (2, 3)
    assert count_parameters(emonas, 1, 2) < count_parameters({**FULL, "arch": "emonas"}, 1, 2) / 20


@pytest.mark.parametrize("levels", [1, 7, 3.5])
def test_bad_levels(levels):
    with pytest.raises(ConfigError, match="levels"):
        proxy_network(FULL, levels)
