"""The PointNet backbone used with FrameAveraging: shapes, permutation symmetry, batching, bad input."""

import pytest
import torch

from geodl.nn import PointNet
from geodl.testing import assert_equivariant, assert_invariant
from geodl.testing import check_module

F64 = torch.float64


def net(**kw):
    torch.manual_seed(0)
    kw.setdefault("hidden_channels", (16, 32))
    kw.setdefault("head_channels", (16,))
    return PointNet(**kw).double()


def data(n=12, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=F64), torch.randn(n, 3, generator=g, dtype=F64)


@pytest.mark.parametrize("level", ["graph", "node"])
def test_check_module_pointnet(level):
    x, pos = data()
    model = net(in_channels=2, out_channels=3, level=level)
    assert model.symmetry.group == "perm"
    # num_graphs given: no host sync, so the compile item runs with fullgraph=True
    check_module(model, {"x": x, "pos": pos, "batch": torch.tensor([0] * 5 + [1] * 7), "num_graphs": 2})


def test_num_graphs_gives_the_same_result_and_allows_empty_graphs():
    x, pos = data()
    batch = torch.tensor([0] * 5 + [1] * 7)
    model = net(in_channels=2, out_channels=3)
    torch.testing.assert_close(model(x, pos, batch, num_graphs=2), model(x, pos, batch))
    out = model(x, pos, batch, num_graphs=3)  # a trailing graph with no points pools to zeros
    assert out.shape == (3, 3)


@pytest.mark.parametrize("pool", ["max", "mean", "sum"])
def test_graph_level_is_permutation_invariant(pool):
    model = net(in_channels=2, out_channels=4, pool=pool)
    x, pos = data()
    assert model(x, pos).shape == (1, 4)
    assert_invariant(lambda x, pos: model(x, pos), (x, pos), ("perm", "perm"), "perm", generator=0)


def test_node_level_is_permutation_equivariant():
    model = net(in_channels=2, out_channels=5, level="node")
    x, pos = data()
    assert model(x, pos).shape == (12, 5)
    assert_equivariant(lambda x, pos: model(x, pos), (x, pos), ("perm", "perm"), "node:scalar", "perm", generator=0)


def test_pointnet_alone_is_not_rotation_invariant():
    from geodl.testing import equivariance_error

    model = net(out_channels=3)
    _, pos = data()
    assert not equivariance_error(lambda p: model(None, p), (pos,), ("node:points",), "scalar", "SO3", generator=0).passed


@pytest.mark.parametrize("level", ["graph", "node"])
def test_batched_equals_per_sample_and_extra_inputs_are_concatenated(level):
    model = net(in_channels=5, out_channels=3, level=level)
    (x1, p1), (x2, p2) = data(7, seed=1), data(9, seed=2)
    v1, v2 = p1.flip(0), p2.flip(0)
    batch = torch.tensor([0] * 7 + [1] * 9)
    out = model(torch.cat([x1, x2]), torch.cat([p1, p2]), batch, vel=torch.cat([v1, v2]))
    single = torch.cat([model(x1, p1, vel=v1), model(x2, p2, vel=v2)])
    assert torch.allclose(out, single, atol=1e-12)


def test_gradients_reach_every_parameter():
    model = net(in_channels=2, out_channels=2, level="node")
    x, pos = data()
    model(x, pos.requires_grad_()).sum().backward()
    assert pos.grad is not None and all(p.grad is not None for p in model.parameters())


def test_2d_positions():
    model = PointNet(out_channels=2, hidden_channels=(8,), head_channels=(), pos_channels=2)
    assert model(None, torch.randn(5, 2)).shape == (1, 2)


def test_bad_input():
    model = net(in_channels=2)
    x, pos = data()
    with pytest.raises(ValueError, match=r"pos: expected shape \(N, 3\)"):
        model(x, pos[:, :2])
    with pytest.raises(ValueError, match="x: expected 12 rows"):
        model(x[:5], pos)
    with pytest.raises(ValueError, match="x: expected 2 feature channels"):
        model(None, pos)
    with pytest.raises(TypeError, match="pos: expected a torch.Tensor"):
        model(x, None)
    with pytest.raises(ValueError, match="level: expected one of"):
        PointNet(level="edge")
    with pytest.raises(ValueError, match="pool: expected one of"):
        PointNet(pool="median")
    with pytest.raises(ValueError, match="act: expected one of"):
        PointNet(act="sigmoid")
    with pytest.raises(ValueError, match="in_channels"):
        PointNet(in_channels=-1)
    with pytest.raises(ValueError, match="hidden_channels"):
        PointNet(hidden_channels=())


def test_compiles_fullgraph_given_num_graphs():
    x, pos = data()
    batch = torch.tensor([0] * 5 + [1] * 7)
    model = net(in_channels=2, out_channels=3)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, pos, batch, num_graphs=2), model(x, pos, batch))
