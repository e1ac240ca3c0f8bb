"""Per-axis kernels and strides of the U-Net (network.kernels / network.strides, as nnU-Net's planner gives them):
shapes, patch divisor, validation, the unchanged default layout, cost counting, proxy networks, a real run."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest
import torch

from AutoSegCore.config import DEFAULT_CONFIG, make_config
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import (build_network, count_parameters, flops_per_voxel, proxy_network, size_divisor,
                                  validate_network)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "Resources" / "DemoData" / "Hippocampus"
KERNELS = [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3]]
STRIDES = [[2, 2, 1], [2, 2, 1], [2, 2, 2]]


def net(**overrides) -> dict:
    return {**DEFAULT_CONFIG["network"], "channels": 4, **overrides}


@pytest.mark.parametrize("n_convs", [0, 1, 2])
def test_anisotropic_strides_give_the_input_size_back_and_heads_per_axis(n_convs):
    cfg = net(depth=4, n_convs=n_convs, kernels=KERNELS, strides=STRIDES, deep_supervision=True)
    model = build_network(cfg, 1, 3)
    outs = model.train()(torch.randn(1, 1, 64, 64, 8))
    assert [tuple(o.shape[2:]) for o in outs] == [(64, 64, 8), (32, 32, 8), (16, 16, 8)]
    assert model.eval()(torch.randn(1, 1, 64, 64, 8)).shape == (1, 3, 64, 64, 8)
    first = next(m for m in model.downs[0].modules() if isinstance(m, torch.nn.Conv3d))
    top = next(m for m in model.ups[0].modules() if isinstance(m, torch.nn.ConvTranspose3d))
    assert (first.kernel_size, first.stride, top.kernel_size, top.stride) == ((3, 3, 1), (2, 2, 1)) * 2


def test_size_divisor_is_the_product_of_strides_per_axis():
    assert size_divisor(net(depth=4, strides=STRIDES)) == (8, 8, 2)
    assert size_divisor(net(depth=3, strides=[[1, 2, 2], [2, 2, 1]])) == (2, 4, 2)
    assert size_divisor(net(depth=4)) == (8, 8, 8) and size_divisor(net(depth=4, conv="2d")) == (8, 8, 1)
    # the given strides override what conv implies
    assert size_divisor(net(depth=3, conv="2d", strides=[[2, 2, 2], [2, 2, 2]])) == (4, 4, 4)


@pytest.mark.parametrize("overrides, words", [
    (dict(depth=4, strides=[[2, 2, 1], [2, 2, 2]]), "network.strides has 2 entries but depth 4 needs 3"),
    (dict(depth=3, kernels=[[3, 3, 3]] * 4), "network.kernels has 4 entries but depth 3 needs 3"),
    (dict(depth=3, strides=[[2, 2, 3], [2, 2, 2]]), "network.strides"),
    (dict(depth=3, kernels=[[3, 3, 2]] * 3), "network.kernels"),
    (dict(depth=3, kernels=[[3, 3]] * 3), "network.kernels"),
    (dict(arch="segnas", kernels=[[3, 3, 3]] * 4), "network.kernels is for arch unet only"),
    (dict(arch="emonas", strides=[[2, 2, 2]] * 3), "network.strides is for arch unet only"),
])
def test_bad_kernels_and_strides_name_the_key_and_the_fix(overrides, words):
    with pytest.raises(ConfigError) as err:
        validate_network(net(**overrides))
    assert words in str(err.value) and err.value.hint


def _head_unet():
    """The committed unet.py (before per-axis kernels), loaded as its own module."""
    try:
        text = subprocess.run(["git", "show", "HEAD:AutoSegCore/networks/unet.py"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git checkout to compare against")
    spec = importlib.util.spec_from_loader("unet_at_head", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(text, "unet_at_head.py", "exec"), module.__dict__)
    return module.UNet


@pytest.mark.parametrize("overrides", [dict(), dict(conv="2d", n_convs=0), dict(depth=2, n_convs=1, norm="batch"),
                                       dict(depth=5, n_convs=3, deep_supervision=True)])
def test_no_kernels_and_strides_is_todays_network(overrides):
    old_unet = _head_unet()
    cfg = validate_network(net(**overrides))
    torch.manual_seed(0)
    new = build_network(cfg, 2, 3).state_dict()
    torch.manual_seed(0)
    old = old_unet({k: v for k, v in cfg.items() if k not in ("kernels", "strides")}, 2, 3).state_dict()
    assert list(new) == list(old)
    assert all(new[k].shape == old[k].shape and torch.equal(new[k], old[k]) for k in new)
    # the defaults written out are the same network
    explicit = net(**overrides)
    kernel, stride = ([3, 3, 1], [2, 2, 1]) if explicit["conv"] == "2d" else ([3, 3, 3], [2, 2, 2])
    explicit.update(kernels=[kernel] * explicit["depth"], strides=[stride] * (explicit["depth"] - 1))
    torch.manual_seed(0)
    assert {k: v.shape for k, v in build_network(explicit, 2, 3).state_dict().items()} == \
        {k: v.shape for k, v in new.items()}


def test_cost_counting_sees_the_per_axis_kernels_and_strides():
    # depth 2, one conv per block: down (1→4, 3×3×1 / 2×2×1), bottom (4→8, 3³), up ((4+8)→3, 3×3×1 / 2×2×1)
    cfg = net(depth=2, n_convs=0, kernels=[[3, 3, 1], [3, 3, 3]], strides=[[2, 2, 1]])
    weights_and_biases = (1 * 4 * 9 + 4) + (4 * 8 * 27 + 8) + (12 * 3 * 9 + 3)
    assert count_parameters(cfg, 1, 3) == weights_and_biases
    macs_per_voxel = (1 * 4 * 9 + 4 * 8 * 27 + 12 * 3 * 9) / 4      # all three run on 1/4 of the voxels
    assert flops_per_voxel(cfg, 1, 3, patch=(32, 32, 7)) == 2 * macs_per_voxel     # z is not pooled
    iso, aniso = net(depth=4, strides=STRIDES), net(depth=4, kernels=KERNELS, strides=STRIDES)
    assert 0 < count_parameters(aniso, 1, 3) < count_parameters(iso, 1, 3)
    assert 0 < flops_per_voxel(aniso, 1, 3, patch=(32, 32, 8)) < flops_per_voxel(iso, 1, 3, patch=(32, 32, 8))


def test_make_config_takes_kernels_and_strides_and_rejects_bad_ones():
    cfg = make_config({"network": {"depth": 3, "kernels": [[3, 3, 1], [3, 3, 3], [3, 3, 3]],
                                   "strides": [[2, 2, 1], [2, 2, 2]]}})
    assert cfg["network"]["strides"] == [[2, 2, 1], [2, 2, 2]]
    assert make_config()["network"]["kernels"] is None and make_config()["network"]["strides"] is None
    for bad, words in (({"depth": 4, "strides": [[2, 2, 1], [2, 2, 2]]}, "depth 4 needs 3"),
                       ({"strides": [[2, 2, 4]] * 3}, "network.strides"),
                       ({"kernels": "3x3x1"}, "network.kernels"),
                       ({"arch": "segnas", "strides": [[2, 2, 2]] * 3}, "arch unet only")):
        with pytest.raises(ConfigError, match="network") as err:
            make_config({"network": bad})
        assert words in str(err.value), (bad, str(err.value))


@pytest.mark.parametrize("rule", [dict(levels=3), dict(levels=6), dict(levels=2, width=0.25), dict(width=0.5)])
def test_proxy_networks_keep_kernels_and_strides_consistent(rule):
    cfg = net(depth=4, kernels=KERNELS, strides=STRIDES)
    small = validate_network(proxy_network(cfg, **rule))
    depth = small["depth"]
    assert len(small["kernels"]) == depth and len(small["strides"]) == depth - 1
    assert small["strides"][:3] == STRIDES[:depth - 1] and small["kernels"][:4] == KERNELS[:depth]
    div = size_divisor(small)
    model = build_network(small, 1, 2).eval()
    x = torch.randn(1, 1, *(2 * d for d in div))
    assert model(x).shape[2:] == x.shape[2:]


def test_a_short_training_run_and_a_prediction_with_per_axis_strides(tmp_path):
    from AutoSegCore.prediction import predict_files
    from AutoSegCore.training.api import train_model

    config = {"network": {"depth": 3, "channels": 4, "kernels": [[3, 3, 1], [3, 3, 3], [3, 3, 3]],
                          "strides": [[2, 2, 1], [2, 2, 2]]},
              "training": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2}}
    result = train_model(DEMO, config, tmp_path / "model", device="cpu")
    assert (tmp_path / "model" / "model.pt").is_file() and result.history
    case = sorted((DEMO / "imagesTr").glob("*.nii.gz"))[0]
    [done] = predict_files(tmp_path / "model", case, tmp_path / "pred", device="cpu")
    assert done["status"] == "predicted"
    assert nib.load(done["label"]).shape == nib.load(case).shape
