"""Empty inputs are normal in geodl.nn (backbones, location encoders, shared layers): a cloud with no
points, a graph with no edges, a batch containing an empty graph, zero locations. Each gives the
right empty or zero-filled result and a backward pass that runs (zero-size or zero gradients); the
genuinely undefined cases raise ``ValueError`` naming the argument. Parameter sizes are checked
before allocating."""

from __future__ import annotations

import pytest
import torch

from geodl import _checks
from geodl.nn import EGNN, EGNNConv, PointNet
from geodl.nn import location
from geodl.nn._layers import mlp
from geodl.nn.backbones._common import full_graph_edges

F64 = torch.float64


def _leaf(*shape):
    return torch.zeros(*shape, dtype=F64, requires_grad=True)


def _backward(outputs, *inputs):
    """Backward of the sum of ``outputs``; the gradients of ``inputs`` (zero-size tensors stay zero-size)."""
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    sum(o.sum() for o in outputs).backward()
    grads = []
    for x in inputs:
        assert x.grad is not None and x.grad.shape == x.shape
        grads.append(x.grad)
    return grads


def _param_grads_zero(module):
    for name, p in module.named_parameters():
        assert p.grad is None or not bool(p.grad.abs().any()), name


# --------------------------------------------------------------------------- PointNet
@pytest.mark.parametrize("pool", ["max", "mean", "sum"])
@pytest.mark.parametrize("level", ["graph", "node"])
def test_pointnet_cloud_without_points(pool, level):
    net = PointNet(1, 4, (8, 16), (8,), pool=pool, level=level).double()
    pos, x = _leaf(0, 3), _leaf(0, 1)
    out = net(x, pos)
    assert out.shape == (0, 4)
    _backward(out, pos, x)
    _param_grads_zero(net)
    out = net(x, pos, torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 4)


@pytest.mark.parametrize("pool", ["max", "mean", "sum"])
def test_pointnet_batch_with_empty_graphs(pool):
    """Graphs 1 and 3 have no points: they pool to zeros, so their output is the head at zero."""
    torch.manual_seed(0)
    net = PointNet(1, 4, (8, 16), (8,), pool=pool).double()
    pos, x = torch.randn(4, 3, dtype=F64, requires_grad=True), torch.randn(4, 1, dtype=F64, requires_grad=True)
    out = net(x, pos, torch.tensor([0, 0, 2, 2]), num_graphs=5)
    assert out.shape == (5, 4)
    at_zero = net.head(torch.zeros(1, 16, dtype=F64))[0]
    for g in (1, 3, 4):
        torch.testing.assert_close(out[g], at_zero)
    _backward(out, pos, x)
    # no points, two graphs given
    pos0, x0 = _leaf(0, 3), _leaf(0, 1)
    out0 = net(x0, pos0, torch.zeros(0, dtype=torch.long), num_graphs=2)
    assert out0.shape == (2, 4)
    torch.testing.assert_close(out0, at_zero.expand(2, 4))
    _backward(out0, pos0, x0)


def test_pointnet_extra_inputs_without_points():
    net = PointNet(4, 2, (8,), (4,)).double()
    pos, extra = _leaf(0, 3), _leaf(0, 2, 2)
    out = net(None, pos, normals=extra)
    assert out.shape == (0, 2)
    _backward(out, pos, extra)


# --------------------------------------------------------------------------- EGNN / EGNNConv
def test_egnn_without_nodes():
    net = EGNN(8, 2).double()
    pos, vel, q = _leaf(0, 3), _leaf(0, 3), _leaf(0, 1)
    out = net(q, pos, vel=vel)
    assert out.shape == (0, 3)
    _backward(out, pos, vel, q)
    _param_grads_zero(net)
    # the no-sync path (num_graphs and edge_index given)
    out = net(q, pos, torch.zeros(0, dtype=torch.long), vel=vel, num_graphs=0,
              edge_index=torch.zeros(2, 0, dtype=torch.long))
    assert out.shape == (0, 3)
    # positional form
    assert net(pos, vel, q).shape == (0, 3)


def test_egnn_graph_without_edges_moves_by_velocity_only():
    torch.manual_seed(0)
    net = EGNN(8, 2).double()
    pos, vel = torch.randn(4, 3, dtype=F64, requires_grad=True), torch.randn(4, 3, dtype=F64, requires_grad=True)
    q = torch.ones(4, 1, dtype=F64, requires_grad=True)
    out = net(q, pos, vel=vel, edge_index=torch.zeros(2, 0, dtype=torch.long))
    assert out.shape == (4, 3)
    # nothing couples the nodes: node 0's output does not depend on node 1's position
    jac = torch.autograd.functional.jacobian(
        lambda p: net(q, p, vel=vel, edge_index=torch.zeros(2, 0, dtype=torch.long)), pos.detach())
    assert not bool(jac[0, :, 1, :].abs().any())
    gpos, gvel, gq = _backward(out, pos, vel, q)
    torch.testing.assert_close(gpos, torch.ones_like(pos))  # pos' = pos + (terms without pos)
    assert not bool(gq.abs().any())  # charges only enter through edges


def test_egnn_batch_with_empty_graphs():
    torch.manual_seed(0)
    net = EGNN(8, 2).double()
    pos, vel, q = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64), torch.ones(4, 1, dtype=F64)
    batch = torch.tensor([0, 0, 2, 2])
    ref = torch.cat([net(q[:2], pos[:2], vel=vel[:2]), net(q[2:], pos[2:], vel=vel[2:])])
    torch.testing.assert_close(net(q, pos, batch, vel=vel), ref)
    torch.testing.assert_close(net(q, pos, batch, vel=vel, num_graphs=4), ref)


def test_egnn_single_node_is_refused():
    net = EGNN(8, 1).double()
    with pytest.raises(ValueError, match=r"^pos: expected at least 2 nodes \(or none\), got 1"):
        net(torch.ones(1, 1, dtype=F64), torch.zeros(1, 3, dtype=F64), vel=torch.zeros(1, 3, dtype=F64))


@pytest.mark.parametrize("kw", [{}, {"velocity": True}, {"edge_dim": 2}, {"coord_aggr": "sum"},
                                {"update_features": False}])
def test_egnn_conv_empty_graph_and_no_edges(kw):
    torch.manual_seed(0)
    conv = EGNNConv(8, **kw).double()
    no_edges = torch.zeros(2, 0, dtype=torch.long)
    extra = {"vel": torch.zeros(0, 3, dtype=F64)} if kw.get("velocity") else {}
    attr = torch.zeros(0, 2, dtype=F64) if kw.get("edge_dim") else None
    x, pos = _leaf(0, 8), _leaf(0, 3)
    x_new, pos_new = conv(x, pos, no_edges, attr, **extra)
    assert x_new.shape == (0, 8) and pos_new.shape == (0, 3)
    _backward((x_new, pos_new), x, pos)
    _param_grads_zero(conv)
    # nodes, but no edges: positions move only by the velocity term, features by the node MLP of zeros
    x, pos = torch.randn(3, 8, dtype=F64, requires_grad=True), torch.randn(3, 3, dtype=F64, requires_grad=True)
    extra = {"vel": torch.randn(3, 3, dtype=F64)} if kw.get("velocity") else {}
    x_new, pos_new = conv(x, pos, no_edges, attr, **extra)
    expected_pos = pos + (conv.vel_mlp(x) * extra["vel"] if kw.get("velocity") else 0)
    torch.testing.assert_close(pos_new, expected_pos)
    if conv.node_mlp is not None:
        torch.testing.assert_close(x_new, x + conv.node_mlp(torch.cat([x, torch.zeros_like(x)], -1)))
    else:
        assert torch.equal(x_new, x)
    _backward((x_new, pos_new), x, pos)


def test_full_graph_edges_empty():
    for batch, num_graphs in ((torch.zeros(0, dtype=torch.long), None), (torch.zeros(0, dtype=torch.long), 3),
                              (torch.tensor([0, 1, 2]), None)):
        e = full_graph_edges(batch, num_graphs)
        assert e.shape == (2, 0) and e.dtype == torch.long


# --------------------------------------------------------------------------- location encoders
@pytest.mark.parametrize("name", sorted(location.ENCODERS))
def test_every_location_encoder_with_zero_locations(name):
    enc = location.make_encoder(name)
    lonlat = torch.zeros(0, 2, requires_grad=True)
    out = enc(lonlat)
    assert out.shape == (0, enc.embedding_dim) and out.dtype == torch.float32
    _backward(out, lonlat)


@pytest.mark.parametrize("make", [
    lambda: location.Siren(5, 3, dim_hidden=8, num_layers=2),
    lambda: location.SirenLayer(5, 3, w0=30.0, is_first=True),
    lambda: location.SirenLayer(5, 3, activation=False),
    lambda: location.FcNet(5, 3, dim_hidden=8, num_blocks=2),
    lambda: location.LinearHead(5, 3),
], ids=["Siren", "SirenLayer", "SirenLayer-linear", "FcNet", "LinearHead"])
def test_location_networks_with_zero_rows(make):
    net = make()
    x = torch.zeros(0, 5, requires_grad=True)
    out = net(x)
    assert out.shape == (0, 3)
    _backward(out, x)
    _param_grads_zero(net)


@pytest.mark.parametrize("encoder", sorted(location.ENCODERS))
@pytest.mark.parametrize("network", sorted(location.NETWORKS))
def test_location_encoder_with_zero_locations(encoder, network):
    kwargs = {"lmax": 3} if encoder == "sphericalharmonics" else {"frequency_num": 2}
    if encoder in ("direct", "cartesian3d", "wrap"):
        kwargs = {}
    net_kwargs = {"dim_hidden": 8}
    model = location.LocationEncoder(encoder, network, 4, encoder_kwargs=kwargs,
                                     network_kwargs=net_kwargs if network != "linear" else None)
    lonlat = torch.zeros(0, 2, requires_grad=True)
    out = model(lonlat)
    assert out.shape == (0, 4)
    _backward(out, lonlat)
    _param_grads_zero(model)


@pytest.mark.parametrize("call,match", [
    (lambda: location.SirenLayer(0, 3), "dim_in"),
    (lambda: location.SirenLayer(3, 0), "dim_out"),
    (lambda: location.SirenLayer(3, 2, w0=0.0), "w0"),
    (lambda: location.Siren(3, 2, dim_hidden=0), "dim_hidden"),
    (lambda: location.Siren(3, 2, w0_initial=-1.0), "w0_initial"),
    (lambda: location.FcNet(0, 2), "dim_in"),
    (lambda: location.FcNet(3, 2, num_blocks=-1), "num_blocks"),
    (lambda: location.FcNet(3, 2, dropout=1.5), "dropout"),
    (lambda: location.LinearHead(3, 0), "dim_out"),
    (lambda: mlp([4], "relu", last_act=False), "channels"),
])
def test_undefined_sizes_raise_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=f"^{match}:"):
        call()


def test_mlp_with_zero_rows():
    net = mlp([4, 8, 2], "relu", last_act=False)
    x = torch.zeros(0, 4, requires_grad=True)
    out = net(x)
    assert out.shape == (0, 2)
    _backward(out, x)


# --------------------------------------------------------------------------- sizes before allocating
@pytest.fixture
def tiny_memory(monkeypatch):
    """Every request is looked at, and only 100 kB are available."""
    monkeypatch.setattr(_checks, "_CHECKED_BYTES", 0)
    monkeypatch.setattr(_checks, "_available_bytes", lambda device: 100_000)


@pytest.mark.parametrize("call,match", [
    (lambda: PointNet(1, 1, (256, 256)), r"in_channels, pos_channels, hidden_channels: 1, 3, \(256, 256\)"),
    (lambda: PointNet(10**4, 1, (4,)), r"in_channels, pos_channels, hidden_channels: 10000, 3, \(4,\)"),
    (lambda: PointNet(1, 1, (4,), (256, 256)), r"hidden_channels, head_channels, out_channels: \(4,\), \(256, 256\), 1"),
    (lambda: EGNN(64, 4), r"hidden_channels, num_layers: 64, 4"),
    (lambda: EGNNConv(128), r"channels, edge_dim: 128, 0"),
    (lambda: EGNNConv(2, edge_dim=10**5), r"channels, edge_dim: 2, 100000"),
    (lambda: location.Siren(3, 2, dim_hidden=256), r"dim_hidden, num_layers: 256, 2"),
    (lambda: location.SirenLayer(256, 256), r"dim_in, dim_out: 256, 256"),
    (lambda: location.FcNet(3, 2, dim_hidden=256), r"dim_hidden, num_blocks: 256, 4"),
    (lambda: location.LinearHead(256, 256), r"dim_in, dim_out: 256, 256"),
    (lambda: location.Grid(frequency_num=10**4), r"frequency_num: 10000"),
    (lambda: mlp([256, 256], "relu", last_act=False), r"channels: \[256, 256\]"),
])
def test_parameter_sizes_checked_before_allocating(tiny_memory, call, match):
    with pytest.raises(ValueError, match=f"^{match} asks for .* GiB of memory"):
        call()


def test_multiscale_encoder_checks_its_output(tiny_memory):
    enc = location.Grid(frequency_num=4)
    with pytest.raises(ValueError, match=r"^lonlat: 1000 rows asks for"):
        enc(torch.zeros(1000, 2))
    assert enc(torch.zeros(3, 2)).shape == (3, 16)


# --------------------------------------------------------------------------- inputs the networks refuse (fuzz)
@pytest.mark.parametrize("x,err,match", [
    ("abc", TypeError, "x: expected a torch.Tensor"),
    (None, TypeError, "x: expected a torch.Tensor"),
    (torch.zeros(3, 5, dtype=torch.bool), TypeError, "x: expected a floating-point tensor"),
    (torch.zeros(3, 6), ValueError, r"x: expected shape \(\*, 5\)"),
    (torch.zeros(3, 5, dtype=F64), TypeError, "x: dtype torch.float64 does not match the module's parameters"),
])
@pytest.mark.parametrize("make", [
    lambda: location.Siren(5, 3, dim_hidden=8, num_layers=1),
    lambda: location.SirenLayer(5, 3),
    lambda: location.FcNet(5, 3, dim_hidden=8, num_blocks=1),
    lambda: location.LinearHead(5, 3),
], ids=["Siren", "SirenLayer", "FcNet", "LinearHead"])
def test_location_networks_refuse_bad_inputs_naming_x(make, x, err, match):
    with pytest.raises(err, match=f"^{match}"):
        make()(x)


def test_location_encoder_refuses_bad_modules_and_dtypes():
    with pytest.raises(TypeError, match="^network: expected a name"):
        location.LocationEncoder("direct", None, 2)
    with pytest.raises(TypeError, match="^encoder: expected a name"):
        location.LocationEncoder(3, "linear", 2)
    model = location.LocationEncoder("sphericalharmonics", "siren", 3, encoder_kwargs={"lmax": 2},
                                     network_kwargs={"dim_hidden": 8})
    with pytest.raises(TypeError, match="^lonlat: dtype torch.float64 does not match"):
        model(torch.zeros(3, 2, dtype=F64))
    assert model.double()(torch.zeros(3, 2, dtype=F64)).dtype == F64


@pytest.mark.parametrize("args,err,match", [
    ((None,), TypeError, "batch: expected a torch.Tensor"),
    ((torch.zeros(2),), TypeError, "batch: expected dtype"),
    ((torch.tensor([-1, 0]),), ValueError, "batch: expected non-negative graph ids"),
    ((torch.zeros(4, dtype=torch.long), 0), ValueError, "num_graphs: 0 is not larger than the largest graph id"),
    ((torch.zeros(4, dtype=torch.long), 2.5), TypeError, "num_graphs: expected an int"),
    ((torch.zeros(4, dtype=torch.long), True), TypeError, "num_graphs: expected an int"),
    ((torch.tensor([0, 10**12]),), ValueError, r"batch: \(largest graph id 1000000000000\) asks for"),
])
def test_full_graph_edges_refuses_bad_inputs(args, err, match):
    with pytest.raises(err, match=f"^{match}"):
        full_graph_edges(*args)


@pytest.mark.parametrize("batch,num_graphs,err,match", [
    (torch.tensor([0, -1, 0]), None, ValueError, "batch: expected non-negative graph ids"),
    (torch.tensor([0, -1, 0]), 2, ValueError, r"batch: values must lie in \[0, 2\)"),
    (torch.tensor([0, 5, 0]), 2, ValueError, r"batch: values must lie in \[0, 2\)"),
    (torch.zeros(3), None, TypeError, "batch: expected dtype"),
    (torch.zeros(4, dtype=torch.long), None, ValueError, r"batch: expected shape \(3\), got \(4,\)"),
    (torch.tensor([0, 10**12, 0]), None, ValueError, r"batch: \(largest graph id 1000000000000\) asks for"),
])
def test_pointnet_refuses_bad_batches_naming_batch(batch, num_graphs, err, match):
    net = PointNet(1, 2, (4,), (4,))
    with pytest.raises(err, match=f"^{match}"):
        net(torch.randn(3, 1), torch.randn(3, 3), batch, num_graphs=num_graphs)


def test_egnn_huge_graph_id_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"^batch: \(largest graph id 1000000000000\) asks for"):
        EGNN(3, 1)(torch.ones(2, 1), torch.randn(2, 3), torch.tensor([0, 10**12]), vel=torch.zeros(2, 3))


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(encoder_kwargs="lmax=3"), TypeError, "encoder_kwargs: expected a dict"),
    (dict(network_kwargs=[1]), TypeError, "network_kwargs: expected a dict"),
    (dict(num_classes=10**12), ValueError, "num_classes: 1000000000000 asks for"),
    (dict(num_classes=10**11, network="siren", network_kwargs={"dim_hidden": 8}), ValueError, "num_classes: "),
])
def test_location_encoder_names_its_own_arguments(kwargs, err, match):
    args = dict(encoder="grid", network="fcnet", num_classes=1) | kwargs
    with pytest.raises(err, match=f"^{match}"):
        location.LocationEncoder(**args)
