"""EGNNConv and the EGNN baseline built from it: check_module, the PyG convention, the n-body layer."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import MessagePassing

from geodl.nn import EGNN, EGNNConv
from geodl.nn.backbones import full_graph_edges
from geodl.testing import check_module

F64 = torch.float64


def _graph(n=7, c=4, seed=0, edge_dim=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=F64)
    pos = torch.randn(n, 3, generator=g, dtype=F64)
    vel = torch.randn(n, 3, generator=g, dtype=F64)
    src = torch.tensor([0, 1, 1, 2, 3, 4, 5, 6, 6, 2])
    dst = torch.tensor([1, 0, 2, 3, 4, 5, 6, 0, 3, 0])
    ei = torch.stack([src, dst])
    attr = torch.randn(ei.shape[1], edge_dim, generator=g, dtype=F64) if edge_dim else None
    return x, pos, vel, ei, attr


def _conv(**kw):
    torch.manual_seed(0)
    return EGNNConv(4, **kw).double()


# ------------------------------------------------------------------ check_module
@pytest.mark.parametrize("kw", [{}, {"edge_dim": 2}, {"velocity": True, "coord_aggr": "sum"}])
def test_check_module_egnnconv(kw):
    x, pos, vel, ei, attr = _graph(edge_dim=kw.get("edge_dim", 0))
    inputs = {"x": x, "pos": pos, "edge_index": ei}
    if attr is not None:
        inputs["edge_attr"] = attr
    if kw.get("velocity"):
        inputs["vel"] = vel
    check_module(_conv(**kw), inputs)


def test_check_module_egnn():
    torch.manual_seed(0)
    model = EGNN(hidden_channels=8, num_layers=2).double()
    g = torch.Generator().manual_seed(1)
    pos, vel = torch.randn(10, 3, generator=g, dtype=F64), torch.randn(10, 3, generator=g, dtype=F64)
    q = torch.where(torch.rand(10, 1, generator=g) < 0.5, -1.0, 1.0).to(F64)
    batch = torch.arange(2).repeat_interleave(5)
    # edge_index and num_graphs given: nothing data-dependent, so the compile item runs with fullgraph=True
    check_module(model, {"x": q, "pos": pos, "batch": batch, "vel": vel, "edge_index": full_graph_edges(batch),
                         "num_graphs": 2})


# ------------------------------------------------------------------ EGNNConv
def test_egnnconv_is_a_pyg_message_passing_layer_aggregating_at_targets():
    conv = _conv()
    assert isinstance(conv, MessagePassing)
    x, pos, _, ei, _ = _graph()
    keep = ei[1] != 5  # node 5 has no incoming edge: its position stays, its feature sees a zero sum
    x2, pos2 = conv(x, pos, ei[:, keep])
    torch.testing.assert_close(pos2[5], pos[5])
    torch.testing.assert_close(x2[5], x[5] + conv.node_mlp(torch.cat([x[5], torch.zeros(4, dtype=F64)])))
    assert not torch.allclose(pos2[0], pos[0])


def test_egnnconv_mean_and_sum_coordinate_aggregation():
    x, pos, _, ei, _ = _graph()
    _, p_mean = _conv()(x, pos, ei)
    _, p_sum = _conv(coord_aggr="sum")(x, pos, ei)
    deg = torch.bincount(ei[1], minlength=7).clamp_min(1).to(F64)[:, None]
    torch.testing.assert_close((p_sum - pos) / deg, p_mean - pos)


def test_egnnconv_without_feature_update_returns_x_unchanged():
    x, pos, _, ei, _ = _graph()
    x2, _ = _conv(update_features=False)(x, pos, ei)
    assert x2 is x


def test_egnnconv_bad_input():
    x, pos, vel, ei, attr = _graph(edge_dim=2)
    with pytest.raises(ValueError, match="channels"):
        EGNNConv(0)
    with pytest.raises(TypeError, match="edge_dim"):
        EGNNConv(4, edge_dim=1.5)
    with pytest.raises(ValueError, match="edge_attr: required"):
        _conv(edge_dim=2)(x, pos, ei)
    with pytest.raises(ValueError, match="edge_attr: this layer"):
        _conv()(x, pos, ei, attr)
    with pytest.raises(ValueError, match="vel: required"):
        _conv(velocity=True)(x, pos, ei)
    with pytest.raises(ValueError, match="vel: this layer"):
        _conv()(x, pos, ei, vel=vel)
    with pytest.raises(ValueError, match="x: expected shape"):
        _conv()(x[:, :3], pos, ei)


# ------------------------------------------------------------------ EGNN
def _nbody(seed=0, b=2, n=5):
    g = torch.Generator().manual_seed(seed)
    pos, vel = torch.randn(b * n, 3, generator=g, dtype=F64), torch.randn(b * n, 3, generator=g, dtype=F64)
    q = torch.where(torch.rand(b * n, 1, generator=g) < 0.5, -1.0, 1.0).to(F64)
    return pos, vel, q, torch.arange(b).repeat_interleave(n)


def test_egnn_is_built_from_egnnconv_layers():
    model = EGNN(hidden_channels=8, num_layers=3)
    assert all(isinstance(layer, EGNNConv) for layer in model.layers)
    assert [layer.node_mlp is None for layer in model.layers] == [False, False, True]
    assert all(layer.vel_mlp is not None for layer in model.layers)


def test_egnn_call_forms_agree():
    torch.manual_seed(0)
    model = EGNN(hidden_channels=8, num_layers=2).double()
    pos, vel, q, batch = _nbody()
    ref = model(pos, vel, q, batch)
    assert torch.equal(model(q, pos, batch, vel=vel), ref)
    # the fully connected graph given explicitly (PyG convention) and num_graphs: same positions
    ei = full_graph_edges(batch)
    torch.testing.assert_close(model(q, pos, batch, vel=vel, num_graphs=2, edge_index=ei), ref)
    with pytest.raises(TypeError, match="vel: required"):
        model(q, pos, batch)
    with pytest.raises(TypeError, match="fourth argument"):
        model(q, pos, batch, batch, vel=vel)


def test_full_graph_edges_unequal_sizes():
    batch = torch.tensor([0, 0, 0, 1, 1])
    ei = full_graph_edges(batch)
    assert ei.shape == (2, 3 * 2 + 2)
    assert torch.equal(batch[ei[0]], batch[ei[1]]) and bool((ei[0] != ei[1]).all())


def test_egnn_and_egnnconv_compile_fullgraph_given_edge_index():
    torch.manual_seed(0)
    model = EGNN(hidden_channels=8, num_layers=2).double()
    pos, vel, q, batch = _nbody()
    ei = full_graph_edges(batch)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(q, pos, batch, vel=vel, num_graphs=2, edge_index=ei),
                               model(q, pos, batch, vel=vel))
    conv = _conv()
    x, pos, _, ei, _ = _graph()
    got = torch.compile(conv, fullgraph=True, backend="aot_eager")(x, pos, ei)
    for a, b in zip(got, conv(x, pos, ei)):
        torch.testing.assert_close(a, b)


def test_egnn_input_distance_edge_feature():
    """input_distance=True: every layer gets (q_i q_j, |x_i − x_j|² of the input positions) as edge features,
    as the EGNN repository's n-body script; the model stays E(3)-equivariant (check_module)."""
    torch.manual_seed(0)
    model = EGNN(hidden_channels=8, num_layers=2, input_distance=True).double()
    g = torch.Generator().manual_seed(1)
    pos, vel = torch.randn(10, 3, generator=g, dtype=F64), torch.randn(10, 3, generator=g, dtype=F64)
    q = torch.where(torch.rand(10, 1, generator=g) < 0.5, -1.0, 1.0).to(F64)
    batch = torch.arange(2).repeat_interleave(5)
    ei = full_graph_edges(batch)
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: seen.append(args[3].clone())) for layer in model.layers]
    model(q, pos, batch, vel=vel, num_graphs=2, edge_index=ei)
    for h in hooks:
        h.remove()
    src, dst = ei
    expect = torch.cat([q[dst] * q[src], (pos[dst] - pos[src]).pow(2).sum(-1, keepdim=True)], -1)
    assert len(seen) == 2 and all(torch.equal(s, expect) for s in seen)  # fixed: the input distances in every layer
    assert EGNN(hidden_channels=8, num_layers=2).layers[0].edge_dim == 1 and model.layers[0].edge_dim == 2
    check_module(model, {"x": q, "pos": pos, "batch": batch, "vel": vel, "edge_index": ei, "num_graphs": 2})
    with pytest.raises(TypeError, match="input_distance"):
        EGNN(input_distance="yes")
