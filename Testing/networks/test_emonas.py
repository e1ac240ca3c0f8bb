"""EMONAS-Net: cell wiring, operation kernels, macro structure, sampled cells."""
import optuna
import pytest
import torch

from AutoSegCore.config import DEFAULT_CONFIG
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import build_network, size_divisor
from AutoSegCore.networks.emonas import OPS, EMONASCell, loose_ends, make_op
from AutoSegCore.spaces import get_space


def emonas_net(**emonas) -> dict:
    return {**DEFAULT_CONFIG["network"], "arch": "emonas", "emonas": emonas}


def test_ten_operations_with_paper_kernels():
    assert len(OPS) == 10
    kernels = {}
    for name in OPS:
        op = make_op(name, 2, "instance")
        kernels[name] = [m.kernel_size for m in op.modules() if isinstance(m, torch.nn.Conv3d)]
    assert kernels["conv3d_5"] == [(5, 5, 5)]
    assert kernels["conv2d_7"] == [(7, 7, 1)]
    assert kernels["p3d_3"] == [(3, 3, 1), (1, 1, 3)]       # pseudo-3D: in-plane then through-plane
    assert kernels["identity"] == []


def test_cell_output_sums_the_loose_ends():
    assert loose_ends([0, 1, 1]) == [2, 3, 4]
    assert loose_ends([1, 2, 3]) == [4]
    x = torch.randn(1, 3, 4, 4, 4)
    # all identity, every node reads the cell input: nodes 1–4 all equal x, none is read → output 4x
    cell = EMONASCell(3, 3, [0, 0, 0], ["identity"] * 4, "instance")
    assert torch.allclose(cell(x), 4 * x)
    chain = EMONASCell(3, 3, [1, 2, 3], ["identity"] * 4, "instance")
    assert torch.equal(chain(x), x)


def test_macro_structure_has_2nc_plus_1_cells_and_2_to_nf_filters():
    model = build_network(emonas_net(inputs=[0, 1, 2], ops=["conv3d_3"] * 4, n_c=3, n_f=4), 1, 2)
    cells = [m for m in model.modules() if isinstance(m, EMONASCell)]
    assert len(cells) == 2 * 3 + 1
    first_conv = next(m for m in model.encoder[0].modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.out_channels == 2 ** 4
    assert size_divisor(emonas_net(n_c=3)) == (8, 8, 8)


def test_sampled_cells_run_forward_and_backward():
    space = get_space("emonas")
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(4):
        params = space.suggest(study.ask())
        cfg = space.to_config(params)["network"]
        cfg["emonas"].update(n_f=1, n_c=2)          # tiny widths; the sampled cell wiring and ops are kept
        model = build_network(cfg, 1, 3).train()
        y = model(torch.randn(1, 1, 8, 8, 8))
        assert y.shape == (1, 3, 8, 8, 8)
        y.mean().backward()


@pytest.mark.parametrize("bad,word", [({"inputs": [0, 3, 1]}, "inputs"), ({"ops": ["conv9d_3"] * 4}, "ops"),
                                      ({"n_c": 0}, "n_c"), ({"inputs": [0, 1]}, "inputs")])
def test_bad_cells_are_config_errors(bad, word):
    with pytest.raises(ConfigError, match=word):
        build_network(emonas_net(**bad), 1, 2)
