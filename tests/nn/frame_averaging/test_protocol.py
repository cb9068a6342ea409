"""FrameAveraging on the backbone call protocol: PointNet, the EGNN baseline and a user's PyG
``MessagePassing`` model taking ``edge_index``; ``num_graphs`` without host syncs; the degeneracy mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch_geometric.nn import MessagePassing

from geodl.groups import get_group
from geodl.nn import EGNN, FrameAveraging, PointNet
from geodl.nn.backbones import full_graph_edges
from geodl.testing import check_module

F64 = torch.float64


def _clouds(sizes=(6, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    pos = torch.randn(n, 3, generator=g, dtype=F64) * torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    batch = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    x = torch.randn(n, 1, generator=g, dtype=F64)
    vel = torch.randn(n, 3, generator=g, dtype=F64)
    return dict(x=x, pos=pos, batch=batch, vel=vel)


class UserMP(MessagePassing):
    """A plain user message-passing net (no symmetry of its own) taking ``edge_index``."""

    def __init__(self, hidden=8):
        super().__init__(aggr="add")
        self.msg = nn.Linear(3 + 1, hidden)
        self.out = nn.Linear(hidden + 3, 3)

    def forward(self, x, pos, batch, edge_index):
        h = self.propagate(edge_index, pos=pos, x=x)
        return self.out(torch.cat([torch.tanh(h), pos], -1))

    def message(self, pos_i, pos_j, x_j):
        return torch.tanh(self.msg(torch.cat([pos_j - pos_i, x_j], -1)))


def _pointnet_fa(**kw):
    torch.manual_seed(0)
    return FrameAveraging(PointNet(out_channels=2, hidden_channels=(8, 16), head_channels=(8,)), "E3", **kw).double()


def _mp_fa(**kw):
    torch.manual_seed(0)
    inputs = {"pos": "points", "x": "scalar", "edge_index": "edge_index"}
    return FrameAveraging(UserMP().double(), "E3", inputs=inputs, output="vectors", level="node", **kw)


def _egnn_fa(**kw):
    torch.manual_seed(0)
    inputs = {"pos": "points", "x": "scalar", "vel": "vectors", "edge_index": "edge_index"}
    return FrameAveraging(EGNN(8, 2).double(), "E3", inputs=inputs, output="points", level="node", **kw)


# ------------------------------------------------------------------ check_module, one per wrapped backbone
def test_check_module_frame_averaging_pointnet():
    d = _clouds()
    # degeneracy="flag" and num_graphs: nothing reads a value back, so the compile item runs with fullgraph=True
    check_module(_pointnet_fa(degeneracy="flag"), {"pos": d["pos"], "batch": d["batch"], "num_graphs": 2})


def test_check_module_frame_averaging_user_message_passing_with_edge_index():
    d = _clouds()
    inputs = {"x": d["x"], "pos": d["pos"], "batch": d["batch"], "edge_index": full_graph_edges(d["batch"]),
              "num_graphs": 2}
    net = _mp_fa(degeneracy="flag")
    assert net.symmetry.group == "E3+perm"
    check_module(net, inputs)


def test_check_module_frame_averaging_egnn():
    net = _egnn_fa(degeneracy="flag")
    assert net.symmetry.group == "E3+perm"
    d = _clouds()
    check_module(net, {**d, "edge_index": full_graph_edges(d["batch"]), "num_graphs": 2})


# ------------------------------------------------------------------ what the wrapped backbone receives
class Spy(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x, pos, batch, *, num_graphs=None, **extra):
        self.calls.append(dict(x=x, pos=pos, batch=batch, num_graphs=num_graphs, **extra))
        return self.inner(x, pos, batch, **extra)


def test_edge_index_is_relabelled_to_every_frame_copy():
    d = _clouds()
    ei = full_graph_edges(d["batch"])
    spy = Spy(UserMP().double())
    FrameAveraging(spy, "E3", output="vectors", level="node")(d["x"], d["pos"], d["batch"], edge_index=ei)
    call = spy.calls[0]
    F, B = 8, 2
    assert call["num_graphs"] == B * F
    folded_ei, folded_batch = call["edge_index"], call["batch"]
    assert folded_ei.shape == (2, F * ei.shape[1])
    # every edge joins two nodes of the same folded graph, each folded graph gets its graph's edges
    assert torch.equal(folded_batch[folded_ei[0]], folded_batch[folded_ei[1]])
    per_graph = torch.bincount(folded_batch[folded_ei[0]], minlength=B * F)
    expected = torch.bincount(d["batch"][ei[0]]).repeat_interleave(F)
    assert torch.equal(per_graph, expected)
    # the copy of an edge in frame f joins the frame-f copies of its two end points: same distance
    dist = (call["pos"][folded_ei[0]] - call["pos"][folded_ei[1]]).norm(dim=-1)
    ref = (d["pos"][ei[0]] - d["pos"][ei[1]]).norm(dim=-1).repeat(F)
    torch.testing.assert_close(dist.sort().values, ref.sort().values)


def test_edge_index_frame_averaging_equals_per_graph_calls():
    d = _clouds()
    net = _mp_fa()
    ei = full_graph_edges(d["batch"])
    out = net(d["x"], d["pos"], d["batch"], edge_index=ei)
    for b in range(2):
        m = d["batch"] == b
        idx = m.nonzero().flatten()
        sub = full_graph_edges(torch.zeros(len(idx), dtype=torch.long))
        torch.testing.assert_close(net(d["x"][m], d["pos"][m], edge_index=sub), out[m])


def test_edge_attr_is_repeated_per_frame_copy():
    d = _clouds()
    ei = full_graph_edges(d["batch"])
    attr = torch.randn(ei.shape[1], 2, dtype=F64)
    spy = Spy(PointNet(in_channels=1, out_channels=2, hidden_channels=(4,), head_channels=()).double())

    class Drop(nn.Module):  # PointNet takes no edges: the spy records them, the inner call drops them
        def __init__(self, s):
            super().__init__()
            self.s = s

        def forward(self, x, pos, batch, *, num_graphs=None, edge_index=None, edge_attr=None):
            self.s.calls.append(dict(edge_index=edge_index, edge_attr=edge_attr))
            return self.s.inner(x, pos, batch, num_graphs=num_graphs)

    FrameAveraging(Drop(spy), "E3")(d["x"], d["pos"], d["batch"], edge_index=ei, edge_attr=attr)
    got = spy.calls[0]["edge_attr"]
    assert torch.equal(got, attr.repeat(8, 1))
    with pytest.raises(ValueError, match="disagree on the number of edges"):
        FrameAveraging(Drop(spy), "E3")(d["x"], d["pos"], d["batch"], edge_index=ei, edge_attr=attr[:-1])


def test_num_graphs_is_passed_only_to_backbones_that_take_it():
    d = _clouds()

    class NoNumGraphs(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = PointNet(out_channels=1, hidden_channels=(4,), head_channels=()).double()

        def forward(self, x, pos, batch):
            return self.net(x, pos, batch)

    out = FrameAveraging(NoNumGraphs(), "E3")(pos=d["pos"], batch=d["batch"], num_graphs=2)
    assert out.shape == (2, 1)


# ------------------------------------------------------------------ num_graphs: no host sync
def _run_on_meta(net, inputs, **kwargs):
    """Forward on meta tensors: any read of a value (item, int, bool, tolist, nonzero) raises."""
    params = {k: torch.empty(v.shape, dtype=v.dtype, device="meta")
              for k, v in [*net.named_parameters(), *net.named_buffers()]}
    meta = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in inputs.items()}
    return functional_call(net, params, (), {**meta, **kwargs})


@pytest.mark.parametrize("build, keys", [
    (lambda: _pointnet_fa(degeneracy="flag"), ("pos", "batch")),
    (lambda: _mp_fa(degeneracy="flag"), ("x", "pos", "batch", "edge_index")),
    (lambda: _egnn_fa(degeneracy="flag"), ("x", "pos", "batch", "vel", "edge_index")),
    (lambda: _egnn_fa(degeneracy="augment", augment_samples=2), ("x", "pos", "batch", "vel", "edge_index")),
])
def test_num_graphs_removes_every_host_sync(build, keys):
    d = _clouds()
    d["edge_index"] = full_graph_edges(d["batch"])
    inputs = {k: d[k] for k in keys}
    net = build()
    with pytest.raises((RuntimeError, NotImplementedError)):
        _run_on_meta(net, inputs)  # without num_graphs the batch size is read from batch.max()
    out = _run_on_meta(net, inputs, num_graphs=2)
    assert out.device.type == "meta"
    assert out.shape == net(**inputs).shape
    # and the real-valued result is the same with and without num_graphs
    torch.testing.assert_close(net(**inputs, num_graphs=2), net(**inputs))


# ------------------------------------------------------------------ degeneracy mask, groups
def _square_and_generic():
    square = torch.tensor([[1.0, 1, 0], [1, -1, 0], [-1, 1, 0], [-1, -1, 0]], dtype=F64)
    generic = _clouds((6,))["pos"]
    return torch.cat([square, generic]), torch.tensor([0] * 4 + [1] * 6)


def test_flag_policy_returns_the_degeneracy_mask():
    pos, batch = _square_and_generic()
    net = _pointnet_fa(degeneracy="flag")
    out, mask = net(pos=pos, batch=batch, return_mask=True)
    assert out.shape == (2, 2)
    assert mask.tolist() == [True, False]
    torch.testing.assert_close(net(pos=pos, batch=batch), out)


def test_groups_by_geodl_name_or_object():
    d = _clouds()
    ref = _pointnet_fa()(pos=d["pos"], batch=d["batch"])
    for group in ("E3+perm", get_group("E3"), get_group("E3+perm")):
        torch.manual_seed(0)
        net = FrameAveraging(PointNet(out_channels=2, hidden_channels=(8, 16), head_channels=(8,)), group).double()
        assert net.group == "E3"
        torch.testing.assert_close(net(pos=d["pos"], batch=d["batch"]), ref)
    assert FrameAveraging(PointNet(), "SO2").symmetry.group == "SO2+perm"
    assert FrameAveraging(PointNet(), "E3", mode="canonical").symmetry.group == "perm"


def test_node_prefixed_kinds_are_accepted():
    d = _clouds()
    a = FrameAveraging(EGNN(8, 2).double(), "E3", inputs={"pos": "node:points", "x": "node:scalar", "vel": "node:vectors"},
                       output="node:points", level="node")
    b = FrameAveraging(EGNN(8, 2).double(), "E3", output="points", level="node")
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(**d), b(**d))
