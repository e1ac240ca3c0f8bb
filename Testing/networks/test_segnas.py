"""SegNAS3D: legality of block graphs, matrix coding, block arithmetic, sampled networks."""
import numpy as np
import optuna
import pytest
import torch

from AutoSegCore.config import DEFAULT_CONFIG
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import build_network, proxy_network, segnas_is_legal, segnas_matrix, size_divisor
from AutoSegCore.networks.segnas import MegaBlock, SegNASBlock
from AutoSegCore.spaces import get_space


def segnas_net(**segnas) -> dict:
    return {**DEFAULT_CONFIG["network"], "arch": "segnas", "segnas": segnas}


LEGAL = {
    "shifted diagonal, 4 nodes (Fig. 2a)": [[0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2], [0, 0, 0, 0]],
    "multiple inputs and outputs (Fig. 2b)": [[0, 2, 6, 1], [0, 0, 3, 0], [0, 0, 0, 5], [0, 0, 0, 0]],
    "two nodes, one skip": [[0, 6], [0, 0]],
    "three nodes, direct edge plus chain": [[0, 4, 2], [0, 0, 1], [0, 0, 0]],
}
ILLEGAL = {
    "node 2 is a source (Fig. 2c)": [[0, 2, 0, 0], [0, 0, 0, 3], [0, 0, 0, 2], [0, 0, 0, 0]],
    "node 1 is a sink (Fig. 2d)": [[0, 2, 2, 0], [0, 0, 0, 0], [0, 0, 0, 2], [0, 0, 0, 0]],
    "no edge at all": [[0, 0], [0, 0]],
    "input never reaches output": [[0, 0, 0], [0, 0, 2], [0, 0, 0]],
    "op number out of range": [[0, 7], [0, 0]],
    "lower-triangular entry": [[0, 2], [1, 0]],
    "not square": [[0, 2, 0], [0, 0, 2]],
    "single node": [[0]],
}


@pytest.mark.parametrize("name", LEGAL)
def test_legal_blocks(name):
    assert segnas_is_legal(LEGAL[name])


@pytest.mark.parametrize("name", ILLEGAL)
def test_illegal_blocks(name):
    assert not segnas_is_legal(ILLEGAL[name])


def test_matrix_from_upper_triangle_uses_top_left_corner():
    m = segnas_matrix([1, 2, 3, 4, 5, 6])
    assert m.tolist() == [[0, 1, 2, 3], [0, 0, 4, 5], [0, 0, 0, 6], [0, 0, 0, 0]]
    # three nodes keep edges (0,1), (0,2), (1,2): SegNAS3D's "strikethrough" ops are dropped
    assert segnas_matrix([1, 2, 3, 4, 5, 6], nodes=3).tolist() == [[0, 1, 2], [0, 0, 4], [0, 0, 0]]
    assert segnas_matrix([2, 0, 2]).tolist() == [[0, 2, 0], [0, 0, 2], [0, 0, 0]]   # SegNAS4's block
    with pytest.raises(ValueError):
        segnas_matrix([1, 2])


def test_node_values_are_sums_of_incoming_edges():
    x = torch.randn(1, 3, 4, 4, 4)
    double = SegNASBlock(3, np.array([[0, 6, 6], [0, 0, 6], [0, 0, 0]]), "instance")
    assert torch.equal(double(x), 2 * x)          # node2 = skip(node0) + skip(node1) = x + x
    identity = SegNASBlock(3, np.array([[0, 6], [0, 0]]), "instance")
    assert torch.equal(identity(x), x)
    mega = MegaBlock(3, 3, np.array([[0, 6], [0, 0]]), residual=True, dropout=0.0, norm="instance")
    assert torch.equal(mega(x), 2 * x)            # residual connection adds the block input


def test_convolution_ops_have_paper_kernels_and_dilations():
    block = SegNASBlock(2, segnas_matrix([1, 2, 3, 4, 5, 6]), "batch")
    convs = {name: m for name, m in block.edges.items()}
    expected = {"0_1": (1, 1), "0_2": (3, 1), "0_3": (5, 1), "1_2": (3, 2), "1_3": (5, 2)}
    for edge, (k, d) in expected.items():
        conv = next(m for m in convs[edge].modules() if isinstance(m, torch.nn.Conv3d))
        assert conv.kernel_size == (k,) * 3 and conv.dilation == (d,) * 3
    assert isinstance(convs["2_3"], torch.nn.Identity)


def test_illegal_block_is_refused_with_config_error():
    with pytest.raises(ConfigError, match="illegal graph") as err:
        build_network(segnas_net(filters=8, poolings=2, nodes=4, residual=True, ops=[2, 2, 0, 0, 0, 2]), 1, 2)
    assert err.value.hint


@pytest.mark.parametrize("space_name", ["segnas", "segnas4", "segnas7"])
def test_sampled_networks_run(space_name):
    """Five legal random points of each SegNAS variant, shrunk with the proxy rule to stay fast."""
    space = get_space(space_name)
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=1))
    built = 0
    while built < 5:
        params = space.suggest(study.ask())
        if not space.is_legal(params):
            continue
        cfg = proxy_network(space.to_config(params)["network"], levels=3)
        model = build_network(cfg, 2, 3)
        side = 2 * size_divisor(cfg)[0]
        x = torch.randn(1, 2, side, side, side)
        model.train()
        out = model(x)
        full = out[0] if isinstance(out, list) else out
        assert full.shape == (1, 3, side, side, side)
        if cfg["deep_supervision"]:
            assert [o.shape[-1] for o in out] == [side, side // 2]
        built += 1


def test_segnas7_fixed_connections_build_at_full_size():
    """SegNAS7's V-Net-inferred n = 16, p = 4: channels double per pooling up to 16·2⁴."""
    cfg = get_space("segnas7").to_config({"nodes": 3, "op_01": 2, "op_02": 0, "op_03": 0, "op_12": 2,
                                         "op_13": 0, "op_23": 0})["network"]
    model = build_network(cfg, 1, 2).eval()
    assert size_divisor(cfg) == (16, 16, 16)
    widths = [m.block.edges["0_1"].conv.out_channels for m in model.encoder]
    assert widths == [16, 32, 64, 128, 256]
    # instance norm needs more than one voxel at the bottom level, even in eval mode: 16×16×32 → 1×1×2
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 16, 32)).shape == (1, 2, 16, 16, 32)
