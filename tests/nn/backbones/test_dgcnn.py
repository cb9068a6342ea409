"""The DGCNN backbone and EdgeConv: symmetry (check_module), both evaluations of EdgeConv, empty and
bad input, gradients, and a small training run."""

import copy

import pytest
import torch

from geodl.nn import DGCNN, EdgeConv, FrameAveraging
from geodl.ops import knn_graph
from geodl.testing import check_module, equivariance_error

F64 = torch.float64


def net(**kw):
    torch.manual_seed(0)
    kw.setdefault("k", 4)
    kw.setdefault("conv_channels", (8, 16))
    kw.setdefault("emb_channels", 16)
    kw.setdefault("head_channels", (8,))
    return DGCNN(**kw).double()


def data(n=14, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=F64), torch.randn(n, 3, generator=g, dtype=F64)


def randomise_norm(conv):
    """Non-trivial batch-norm state, with some negative weights (the fused path selects minima there)."""
    with torch.no_grad():
        w = torch.randn(conv.out_channels, dtype=conv.lin.weight.dtype)
        conv.norm.weight.copy_(w)
        conv.norm.bias.copy_(torch.randn_like(w))
        conv.norm.running_mean.copy_(torch.randn_like(w))
        conv.norm.running_var.copy_(torch.rand_like(w) + 0.5)
    assert (conv.norm.weight < 0).any() and (conv.norm.weight > 0).any()


BATCH = torch.tensor([0] * 6 + [1] * 8)


@pytest.mark.parametrize("level", ["graph", "node"])
def test_check_module_dgcnn(level):
    x, pos = data()
    model = net(in_channels=2, out_channels=3, level=level)
    assert model.symmetry.group == "perm" and "TinvNN" in model.symmetry.note
    # every item runs, compile included: knn_graph is a custom op with a dynamic edge count, and
    # under torch.compile the edges take the scatter path (no host read of their count)
    check_module(model, {"x": x, "pos": pos, "batch": BATCH, "num_graphs": 2})


def test_check_module_edge_feature_evaluation():
    """With "gelu" (not monotone: the edge features are built) every item but compile runs: for
    graphs smaller than k + 1 that evaluation adds self loops found with ``nonzero`` (a dynamic
    size), which torch.compile(fullgraph=True) cannot guard on."""
    x, pos = data()
    model = net(in_channels=2, out_channels=3, act="gelu")
    assert not model.convs[0].fused
    check_module(model, {"x": x, "pos": pos, "batch": BATCH, "num_graphs": 2},
                 checks=("equivariance", "batching", "state_dict", "gradients", "side_effects"))


def test_check_module_static_graph_and_edgeconv():
    x, pos = data()
    check_module(net(in_channels=2, out_channels=3, dynamic=False), {"x": x, "pos": pos, "batch": BATCH,
                                                                      "num_graphs": 2})
    torch.manual_seed(0)
    check_module(EdgeConv(2, 5, k=3), {"x": x, "batch": BATCH})


@pytest.mark.filterwarnings("ignore:pos. requires grad but differentiable=False")  # the gradients item
def test_check_module_frame_averaging_dgcnn_is_e3_invariant():
    _, pos = data()
    fa = FrameAveraging(net(out_channels=3), group="E3")
    check_module(fa, {"pos": pos, "batch": BATCH, "num_graphs": 2})
    assert fa.symmetry.group == "E3+perm"


def test_dgcnn_alone_is_not_rotation_invariant():
    model = net(out_channels=3).eval()
    _, pos = data()
    assert not equivariance_error(lambda p: model(None, p), (pos,), ("node:points",), "scalar", "SO3",
                                  generator=0).passed


# -- EdgeConv: definition, the two evaluations, the dense and the scatter reduction ---------------

def reference_edgeconv(conv, x, batch):
    """max_j h([x_i, x_j - x_i]) over the k nearest neighbours, point by point (eval mode)."""
    src, dst = knn_graph(x, conv.k, batch)
    out = []
    for i in range(x.shape[0]):
        nbrs = src[dst == i].tolist() or [i]
        e = torch.stack([torch.cat([x[i], x[j] - x[i]]) for j in nbrs])
        h = conv.lin(e)
        if conv.norm is not None:
            h = conv.norm(h)
        out.append(conv.act(h).max(0).values)
    return torch.stack(out)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("norm", ["batch", "none"])
def test_edgeconv_matches_its_definition(fused, norm):
    torch.manual_seed(1)
    conv = EdgeConv(3, 6, k=4, norm=norm).double().eval()
    if norm == "batch":
        randomise_norm(conv)
    conv.fused = fused
    x = torch.randn(13, 3, dtype=F64)
    batch = torch.tensor([0] * 6 + [1] * 3 + [2] + [3] * 3)  # graphs of 6, 3 (< k + 1), 1 and 3 points
    torch.testing.assert_close(conv(x, batch), reference_edgeconv(conv, x, batch))


def test_single_point_graph_uses_its_self_loop():
    torch.manual_seed(0)
    conv = EdgeConv(3, 4, k=5).double().eval()
    randomise_norm(conv)
    x = torch.randn(1, 3, dtype=F64)
    expected = conv.act(conv.norm(conv.lin(torch.cat([x, torch.zeros_like(x)], 1))))
    for fused in (True, False):
        conv.fused = fused
        torch.testing.assert_close(conv(x), expected)


def run(conv, x, batch, train, **kw):
    conv.train(train)
    x = x.clone().requires_grad_()
    out = conv(x, batch, **kw)
    (out * torch.arange(out.numel(), dtype=F64).view_as(out).sin()).sum().backward()
    return [out, x.grad, *(p.grad for p in conv.parameters()), *conv.buffers()]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.parametrize("batch", [BATCH, torch.tensor([1, 0, 0, 1, 1, 2, 0, 1, 0, 0, 3, 3])],
                         ids=["dense", "small-graphs"])
def test_fused_equals_edge_features(train, norm, batch):
    """Outputs, gradients and the updated BatchNorm statistics of the two evaluations agree."""
    torch.manual_seed(2)
    conv = EdgeConv(4, 6, k=4, norm=norm).double()
    if norm == "batch":
        randomise_norm(conv)
    other = copy.deepcopy(conv)
    other.fused = False
    x = torch.randn(batch.numel(), 4, dtype=F64)
    for a, b in zip(run(conv, x, batch, train), run(other, x, batch, train)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    if train and norm == "batch":
        assert int(conv.norm.num_batches_tracked) == 1


@pytest.mark.parametrize("fused", [True, False])
def test_dense_fast_path_equals_scatter_path(fused):
    torch.manual_seed(3)
    conv = EdgeConv(3, 5, k=4).double().train()
    randomise_norm(conv)
    conv.fused = fused
    x = torch.randn(12, 3, dtype=F64)
    src, dst = knn_graph(x, 4, BATCH[:12] * 0)
    assert src.numel() == 12 * 4  # every point has exactly k neighbours: the dense path applies
    method = conv._fused if fused else conv._edges
    outs = []
    for dense in (True, False):
        c = copy.deepcopy(conv)
        xx = x.clone().requires_grad_()
        out = getattr(c, method.__name__)(xx, src, dst, dense)
        out.square().sum().backward()
        outs.append([out, xx.grad, *(p.grad for p in c.parameters()), *c.buffers()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_static_graph_uses_knn_on():
    torch.manual_seed(0)
    conv = EdgeConv(2, 4, k=3, dynamic=False).double().eval()
    x, pos = data(10)
    with pytest.raises(ValueError, match="knn_on: required with dynamic=False"):
        conv(x)
    out = conv(x, knn_on=pos)
    dyn = EdgeConv(2, 4, k=3).double().eval()
    dyn.load_state_dict(conv.state_dict())
    torch.testing.assert_close(out, dyn(x, knn_on=pos))
    assert not torch.allclose(out, dyn(x))  # the graph of x differs from that of pos


# -- DGCNN: batching, empty and bad input, gradients, training -------------------------------------

@pytest.mark.parametrize("level", ["graph", "node"])
def test_batched_equals_per_sample_and_extra_inputs_are_concatenated(level):
    model = net(in_channels=5, out_channels=3, level=level).eval()
    (x1, p1), (x2, p2) = data(7, seed=1), data(9, seed=2)
    v1, v2 = p1.flip(0), p2.flip(0)
    batch = torch.tensor([0] * 7 + [1] * 9)
    out = model(torch.cat([x1, x2]), torch.cat([p1, p2]), batch, vel=torch.cat([v1, v2]))
    single = torch.cat([model(x1, p1, vel=v1), model(x2, p2, vel=v2)])
    torch.testing.assert_close(out, single, rtol=1e-10, atol=1e-12)


def test_empty_inputs():
    model = net(in_channels=2, out_channels=3).eval()
    x, pos = data()
    assert model(x[:0], pos[:0]).shape == (0, 3)
    assert model(x[:0], pos[:0], torch.zeros(0, dtype=torch.long), num_graphs=2).shape == (2, 3)
    out = model(x, pos, BATCH, num_graphs=3)  # a trailing graph without points pools to zeros
    torch.testing.assert_close(out[:2], model(x, pos, BATCH))
    torch.testing.assert_close(out[2], model.head(torch.zeros(1, 32, dtype=F64))[0])
    assert net(level="node", out_channels=2).eval()(None, pos[:0]).shape == (0, 2)
    torch.manual_seed(0)
    assert EdgeConv(2, 4, k=3).double()(x[:0]).shape == (0, 4)


def _poisoned(t, i, j, value):
    t = t.clone()
    t[i, j] = value
    return t


_X, _POS = data()
BAD_INPUTS = [  # (x, pos, batch, num_graphs), error, message
    ((_X, _poisoned(_POS, 3, 1, float("nan")), None, None), ValueError, "^pos"),
    ((_poisoned(_X, 0, 0, float("inf")), _POS, None, None), ValueError, "^x"),
    ((_X, _POS[:, :2], None, None), ValueError, r"pos: expected shape \(N, 3\)"),
    ((_X[:5], _POS, None, None), ValueError, "x: expected 14 rows"),
    ((None, _POS, None, None), ValueError, "x: expected 2 feature channels"),
    ((_X, None, None, None), TypeError, "pos: expected a torch.Tensor"),
    ((_X, _POS.float(), None, None), TypeError, "pos: expected dtype torch.float64"),
    ((_X, _POS, BATCH[:5], None), ValueError, "^batch"),
    ((_X, _POS, BATCH - 1, None), ValueError, "^batch"),
    ((_X, _POS, BATCH, 1), ValueError, "^(batch|num_graphs)"),
    ((_X, _POS, BATCH.double(), None), TypeError, "^batch"),
]


@pytest.mark.parametrize("args, error, match", BAD_INPUTS)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        net(in_channels=2).eval()(*args[:3], num_graphs=args[3])


def test_bad_input_edgeconv_and_training():
    x, pos = data()
    with pytest.raises(ValueError, match="batch: training with norm='batch' needs at least 2 graphs"):
        net(in_channels=2).train()(x, pos)
    conv = EdgeConv(2, 3, k=2).double()
    with pytest.raises(TypeError, match="x: expected dtype torch.float64"):
        conv(x.float())
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 2\)"):
        conv(pos)
    with pytest.raises(ValueError, match="x: training with norm='batch' needs at least 2 edges"):
        conv.train()(x[:1])
    with pytest.raises(ValueError, match="fused: needs a non-decreasing activation"):
        c = EdgeConv(2, 3, act="silu").double()
        c.fused = True
        c(x)


@pytest.mark.parametrize("kwargs, match", [
    ({"level": "edge"}, "level: expected one of"), ({"act": "sigmoid"}, "act: expected one of"),
    ({"norm": "layer"}, "norm: expected one of"), ({"in_channels": -1}, "in_channels"),
    ({"k": 0}, "k"), ({"conv_channels": ()}, "conv_channels"), ({"conv_channels": (8, 0)}, r"conv_channels\[1\]"),
    ({"head_channels": (-2,)}, r"head_channels\[0\]"), ({"emb_channels": 0}, "emb_channels"),
    ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
    ({"conv_channels": (10 ** 6, 10 ** 6)}, "conv_channels"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DGCNN(**kwargs)


def test_bad_constructor_types():
    with pytest.raises(TypeError, match="dynamic"):
        DGCNN(dynamic="yes")
    with pytest.raises(TypeError, match="k"):
        EdgeConv(2, 3, k=2.5)


def test_memory_of_the_edge_features_is_checked_before_allocating():
    conv = EdgeConv(1, 8, k=10 ** 9).eval()
    with pytest.raises(ValueError, match="^k: "):  # 2e5 x (2e5 - 1) edges x 8 channels: terabytes
        conv(torch.randn(200_000, 1))
    x5 = torch.arange(5.0)[:, None]
    small = EdgeConv(1, 8, k=4).eval()  # k beyond a graph: all of its other points, no memory error
    small.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x5), small(x5))


@pytest.mark.parametrize("level", ["graph", "node"])
def test_gradients_reach_every_parameter(level):
    model = net(in_channels=2, out_channels=2, level=level).train()
    x, pos = data()
    pos.requires_grad_()
    model(x, pos, BATCH).sum().backward()
    assert torch.isfinite(pos.grad).all() and pos.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("act", ["gelu", "tanh"])
def test_other_activations_and_no_norm(act):
    model = net(out_channels=2, act=act, norm="none").eval()
    assert model.convs[0].fused == (act == "tanh")
    _, pos = data()
    assert torch.isfinite(model(None, pos, BATCH)).all()


def toy_clouds(n, seed):
    """Two classes: elongated (a needle along a random axis) and round clouds of 32 points."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    pos = torch.randn(n, 32, 3, generator=g)
    pos[y == 0] *= torch.tensor([3.0, 0.3, 0.3])
    return pos.reshape(-1, 3), torch.arange(n).repeat_interleave(32), y


def test_training_decreases_the_loss():
    torch.manual_seed(0)
    model = DGCNN(out_channels=2, k=8, conv_channels=(16, 16), emb_channels=32, head_channels=(16,), dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    pos, batch, y = toy_clouds(16, 0)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(None, pos, batch, num_graphs=16), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    pos_t, batch_t, y_t = toy_clouds(16, 1)
    acc = (model.eval()(None, pos_t, batch_t, num_graphs=16).argmax(1) == y_t).float().mean()
    assert acc >= 0.8


@pytest.mark.parametrize("dynamic, searches", [(True, 3), (False, 1)])
def test_knn_searches_and_layers_match_edgeconv(monkeypatch, dynamic, searches):
    """Dynamic: one search per layer (pos, then the features); static: the graph of pos, searched once."""
    import geodl.nn.backbones.dgcnn as module

    calls = []
    monkeypatch.setattr(module, "knn_graph", lambda p, *a, **kw: calls.append(p.shape[1]) or knn_graph(p, *a, **kw))
    model = net(in_channels=2, conv_channels=(8, 16, 4), dynamic=dynamic).eval()
    x, pos = data()
    model(x, pos, BATCH)
    assert len(calls) == searches and calls[0] == 3
    h, expected = torch.cat([pos, x], 1), []
    for conv in model.convs:
        h = conv(h, BATCH, knn_on=pos if not dynamic or not expected else None)
        expected.append(h)
    local = torch.cat(expected, 1)
    e = model.emb(local)
    g = torch.cat([torch.stack([e[BATCH == b].amax(0), e[BATCH == b].mean(0)]).reshape(1, -1) for b in (0, 1)])
    torch.testing.assert_close(model(x, pos, BATCH), model.head(g))
