"""Fuzz of :mod:`geodl.nn` (backbones, frame averaging, location encoders): constructor arguments
and forward inputs, checked for shapes, finiteness, E(3) equivariance / invariance (float64,
against a random rotation and translation), row independence and a brute-force edge list."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, seeded_tensor, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)


def _idx(v):
    import torch

    return torch.tensor(v, dtype=torch.long)


def _rt(seed, d=3):
    import torch

    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] *= -1  # a rotation
    return q, torch.randn(d, generator=g, dtype=torch.float64)


def _batch(sizes):
    return _idx([g for g, n in enumerate(sizes) for _ in range(n)])


@S.composite
def _graph(draw, min_n=2, feat=True):
    sizes = draw(S.lists(S.integers(min_n, 6), min_size=1, max_size=3))
    n = sum(sizes)
    seed = draw(SEEDS)
    kw = dict(pos=seeded_tensor((n, 3), seed), batch=_batch(sizes) if len(sizes) > 1 or draw(S.booleans()) else None)
    if feat:
        kw["x"] = seeded_tensor((n, 2), seed + 1)
    return kw


_POS_MUTS = tensor_muts("pos", shapes={"(N, 4)": lambda x: x.new_zeros(x.shape[0], 4), "1-D": lambda x: x[:, 0]},
                        names=("pos", "vel"))  # E(n) layers may take any d: then vel (N, 3) is the mismatch
_BATCH_MUTS = [Mut("wrong length", lambda kw: _idx([0] * (kw["pos"].shape[0] + 1))),
               Mut("negative", lambda kw: _idx([-1] * kw["pos"].shape[0])),
               Mut("float", lambda kw: kw["pos"][:, 0].clone()),
               Mut("huge id", lambda kw: _idx([10**12] * kw["pos"].shape[0]), mode="maybe", names=("batch", "num_graphs"))]
_X_MUTS = tensor_muts("x", shapes={"wrong rows": lambda x: x[:-1], "one column too many": lambda x: x.new_ones(x.shape[0], x.shape[1] + 1)},
                      names=("x", "charges", "pos"))  # EGNN/FAGNN: x are the charges, (N,) or (N, 1); a row
# mismatch may be reported on pos
_INT_BAD = values(0, -1, True, 2.5, "8", None, HUGE)


def _equivariant_points(model, x, pos, batch, vel):
    """``model(x, pos R + t, batch, vel R) == model(x, pos, batch, vel) R + t`` for one rotation."""
    import torch

    R, t = _rt(7)
    y = model(x, pos, batch, vel=vel)
    expect(y.shape == pos.shape, f"output shape {tuple(y.shape)}")
    finite(y)
    y2 = model(x, pos @ R.T + t, batch, vel=vel @ R.T)
    close(y2, y @ R.T + t, atol=1e-7, rtol=1e-6, msg="E(3) equivariance")


def _dynamics_case(build, x, pos, batch, vel):
    """``(call, verify)`` of a dynamics model (EGNN, FA-GNN): built with a fixed seed in float64,
    called on ``(x, pos, batch, vel=vel)``, verified E(3)-equivariant on the points."""
    import torch

    def call():
        torch.manual_seed(0)
        m = build().double()
        return m, m(x, pos, batch, vel=vel)

    def verify(res):
        m, _ = res
        _equivariant_points(m, x, pos, batch, vel)

    return call, verify


# --------------------------------------------------------------------------- backbones
@S.composite
def _egnn_valid(draw, min_n=2):
    kw = draw(_graph(min_n=min_n))
    kw["x"] = kw["x"][:, :1].contiguous()  # charges (N, 1)
    kw.update(hidden_channels=draw(S.sampled_from([3, 6])), num_layers=draw(S.integers(1, 3)),
              act=draw(S.sampled_from(["silu", "relu", "tanh"])), vel=seeded_tensor(kw["pos"].shape, draw(SEEDS)))
    return kw


_EGNN_MUTS = {"hidden_channels": _INT_BAD, "num_layers": values(-1, True, 2.5, "2", None, HUGE),
              "act": values("bogus", 3, None), "pos": _POS_MUTS, "x": _X_MUTS, "batch": _BATCH_MUTS,
              "vel": tensor_muts("vel", shapes={"(N, 2)": lambda v: v[:, :2], "wrong rows": lambda v: v[:-1]})}


@fuzz("geodl.nn.backbones.EGNN", examples=40)
@with_cases(lambda: cases(_egnn_valid(), _EGNN_MUTS))
def build_egnn(pos, batch, x, hidden_channels, num_layers, act, vel):
    from geodl.nn import EGNN

    return _dynamics_case(lambda: EGNN(hidden_channels, num_layers, act=act), x, pos, batch, vel)


@S.composite
def _fagnn_valid(draw):
    kw = draw(_egnn_valid(min_n=4))  # frames of 2 or 3 points are degenerate: equivariance is not exact
    kw["degeneracy"] = "flag"
    return kw


@fuzz("geodl.nn.frame_averaging.FAGNN", examples=30)
@with_cases(lambda: cases(_fagnn_valid(), {**_EGNN_MUTS, "act": values("bogus", 3),
                                           "degeneracy": values("sometimes", 3, None)}))
def build_fagnn(pos, batch, x, hidden_channels, num_layers, act, vel, degeneracy):
    from geodl.nn import FAGNN

    return _dynamics_case(lambda: FAGNN(hidden_channels, num_layers, act=act, degeneracy=degeneracy),
                          x, pos, batch, vel)


@S.composite
def _conv_valid(draw):
    import torch
    from geodl.ops import knn_graph

    kw = draw(_graph())
    c = draw(S.integers(1, 6))
    kw["x"] = seeded_tensor((kw["pos"].shape[0], c), draw(SEEDS))
    ei = knn_graph(kw["pos"], draw(S.integers(1, 3)), kw.pop("batch"))
    if draw(S.booleans()):
        ei = ei[:, :0]
    edge_dim = draw(S.integers(0, 3))
    kw.update(channels=c, edge_dim=edge_dim, edge_index=ei,
              edge_attr=seeded_tensor((ei.shape[1], edge_dim), draw(SEEDS)) if edge_dim else None,
              velocity=draw(S.booleans()), coord_aggr=draw(S.sampled_from(["mean", "sum"])),
              update_features=draw(S.booleans()))
    kw["vel"] = seeded_tensor(kw["pos"].shape, draw(SEEDS)) if kw["velocity"] else None
    return kw


@fuzz("geodl.nn.backbones.EGNNConv", examples=40)
@with_cases(lambda: cases(_conv_valid(), {
    "channels": _INT_BAD, "edge_dim": values(-1, True, 2.5, "1", HUGE), "coord_aggr": values("max", 3, None),
    "pos": _POS_MUTS, "x": _X_MUTS,
    "edge_index": tensor_muts("edge_index", floating=False, index=True, nonfinite=False) + [
        Mut("node id out of range", lambda kw: _idx([[0], [kw["pos"].shape[0] + 5]]), names=("edge_index", "edge_attr")),
        Mut("negative node id", lambda kw: _idx([[-1], [0]]), names=("edge_index", "edge_attr")),
        Mut("(3, E)", lambda kw: _idx([[0], [1], [0]]), names=("edge_index", "edge_attr"))],
    "edge_attr": [Mut("wrong rows", lambda kw: seeded_tensor((kw["edge_index"].shape[1] + 1, max(kw["edge_dim"], 1)), 0)
                      if isinstance(kw["edge_dim"], int) else None, names=("edge_attr", "edge_dim"))]}))
def build_egnn_conv(pos, x, channels, edge_dim, edge_index, edge_attr, velocity, coord_aggr, update_features, vel):
    import torch
    from geodl.nn import EGNNConv

    def call():
        torch.manual_seed(0)
        m = EGNNConv(channels, edge_dim, velocity=velocity, coord_aggr=coord_aggr, update_features=update_features)
        m = m.double()
        return m, m(x, pos, edge_index, edge_attr, vel=vel)

    def verify(res):
        m, (h, p) = res
        expect(h.shape == x.shape and p.shape == pos.shape, f"shapes {tuple(h.shape)} {tuple(p.shape)}")
        finite(h, p)
        R, t = _rt(3)
        h2, p2 = m(x, pos @ R.T + t, edge_index, edge_attr, vel=None if vel is None else vel @ R.T)
        close(h2, h, atol=1e-7, rtol=1e-6, msg="features invariant")
        close(p2, p @ R.T + t, atol=1e-7, rtol=1e-6, msg="positions equivariant")

    return call, verify


@S.composite
def _pointnet_valid(draw):
    kw = draw(_graph(min_n=1))
    cin = draw(S.sampled_from([0, 2]))
    if cin == 0:
        kw["x"] = None
    kw.update(in_channels=cin, out_channels=draw(S.integers(1, 3)), hidden=(draw(S.integers(1, 6)),),
              head=(draw(S.integers(1, 4)),), level=draw(S.sampled_from(["graph", "node"])),
              pool=draw(S.sampled_from(["max", "mean", "sum"])))
    return kw


@fuzz("geodl.nn.backbones.PointNet", examples=40)
@with_cases(lambda: cases(_pointnet_valid(), {
    "in_channels": values(-1, True, 2.5, "2", HUGE), "out_channels": _INT_BAD,
    "hidden": values((0,), (-1,), ("a",), (HUGE,), names=("hidden_channels",)),
    "level": values("edge", None, 3), "pool": values("min", None, 3), "pos": _POS_MUTS, "batch": _BATCH_MUTS}))
def build_pointnet(pos, batch, x, in_channels, out_channels, hidden, head, level, pool):
    import torch
    from geodl.nn import PointNet

    def call():
        torch.manual_seed(0)
        m = PointNet(in_channels, out_channels, hidden, head, level=level, pool=pool).double().eval()
        return m, m(x, pos, batch)

    def verify(res):
        m, y = res
        n_graphs = int(batch.max()) + 1 if batch is not None else 1
        expect(y.shape == ((n_graphs if level == "graph" else len(pos)), out_channels), f"shape {tuple(y.shape)}")
        finite(y)
        perm = torch.randperm(len(pos), generator=torch.Generator().manual_seed(1))
        y2 = m(None if x is None else x[perm], pos[perm], None if batch is None else batch[perm])
        close(y2, y if level == "graph" else y[perm], atol=1e-9, msg="node permutation")

    return call, verify


@S.composite
def _full_edges_valid(draw):
    sizes = draw(S.lists(S.integers(0, 5), min_size=1, max_size=4))
    b = _batch(sizes).tolist()
    if draw(S.booleans()):
        b = b[::-1]
    return dict(batch=_idx(b), num_graphs=draw(S.sampled_from([None, len(sizes) + 1])))


@fuzz("geodl.nn.backbones.full_graph_edges", examples=40)
@with_cases(lambda: cases(_full_edges_valid(), {
    "batch": tensor_muts("batch", floating=False, index=True, nonfinite=False) + [
        Mut("negative", lambda kw: _idx([-1, 0])), Mut("huge id", _idx([0, 10**12]), mode="maybe")],
    "num_graphs": values(-1, True, 2.5, "2") + values(0, mode="maybe")}))  # 0 graphs: fine for an empty batch
def build_full_graph_edges(batch, num_graphs):
    from geodl.nn.backbones import full_graph_edges

    def call():
        return full_graph_edges(batch, num_graphs)

    def verify(ei):
        b = batch.tolist()
        ref = {(i, j) for i in range(len(b)) for j in range(len(b)) if i != j and b[i] == b[j]}
        got = list(zip(ei[0].tolist(), ei[1].tolist()))
        expect(len(got) == len(set(got)) and set(got) == ref, f"{len(got)} edges, expected {len(ref)}")

    return call, verify


# --------------------------------------------------------------------------- frames and frame averaging
@S.composite
def _frames_valid(draw):
    kw = draw(_graph(min_n=4, feat=False))
    kw["group"] = draw(S.sampled_from(["O3", "SO3", "E3", "SE3", "O2", "SO2", "E2", "SE2"]))
    if kw["group"].endswith("2"):
        kw["pos"] = kw["pos"][:, :2].contiguous()
    kw["kind"] = draw(S.sampled_from(["global", "global", "knn"]))
    kw["k"] = draw(S.integers(3, 6))
    return kw


@fuzz("geodl.nn.frame_averaging.frames", examples=50)
@with_cases(lambda: cases(_frames_valid(), {
    "pos": _POS_MUTS, "batch": _BATCH_MUTS, "group": values("E4", "SO(3)x", 3, None, "perm"),
    "kind": values("local", 3, None), "k": values(0, -1, True, 2.5, "3", mode="maybe")}))
def build_frames(pos, batch, group, kind, k):
    import torch
    from geodl.nn import Frames, frames

    def call():
        return frames(pos, batch, group, kind=kind, k=k, degeneracy="flag")

    def verify(fr):
        expect(isinstance(fr, Frames), type(fr).__name__)
        d = pos.shape[1]
        R = fr.rotations
        finite(R, fr.centroid, fr.eigenvalues)
        eye = torch.eye(d, dtype=torch.float64).expand(R.shape)
        close(R.transpose(-1, -2) @ R, eye, atol=1e-9, msg="orthogonal frames")
        det = torch.linalg.det(R)
        if group.startswith("S"):
            close(det, torch.ones_like(det), atol=1e-9, msg="det +1 for SO/SE")
        # invariance of the canonical coordinates (non-degenerate frames only)
        Q, t = _rt(5, d)
        shift = t if group.startswith(("E", "SE")) else torch.zeros(d, dtype=torch.float64)
        if group in ("O3", "E3", "O2", "E2"):
            Q = Q.clone()
            Q[:, 0] *= -1  # a reflection
        fr2 = frames(pos @ Q.T + shift, batch, group, kind=kind, k=k, degeneracy="flag")
        c1 = fr.to_canonical(pos)
        c2 = fr2.to_canonical(pos @ Q.T + shift)
        expect(c1.shape == c2.shape and c1.shape[:2] == (len(pos), R.shape[1]), "canonical shapes")
        for s_ in fr.index.unique().tolist():  # each frame set: the same F canonical clouds, in any order
            rows = fr.index == s_
            if bool(fr.degenerate[s_]) or bool(fr2.degenerate[fr2.index[rows]].any()):
                continue
            a = c1[rows].transpose(0, 1).reshape(c1.shape[1], -1)
            b = c2[rows].transpose(0, 1).reshape(c2.shape[1], -1)
            err = torch.cdist(a, b, p=float("inf")).amin(1).max()
            scale = 1.0 + float(a.abs().max())
            expect(float(err) < 1e-6 * scale, f"frame set {s_}: canonical clouds differ by {float(err):.3g}")

    return call, verify


class _Backbone:  # a tiny invariant-by-construction-free backbone, built in the worker
    @staticmethod
    def make(level):
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(3, 4, dtype=torch.float64)

            def forward(self, x, pos, batch=None, num_graphs=None):
                h = torch.tanh(self.lin(pos))
                if level == "node":
                    return h
                from geodl.ops import scatter

                return scatter(h, batch if batch is not None else torch.zeros(len(h), dtype=torch.long),
                               dim_size=num_graphs, reduce="sum")

        torch.manual_seed(0)
        return Net()


@S.composite
def _fa_valid(draw):
    kw = draw(_graph(min_n=4))
    kw.update(group=draw(S.sampled_from(["E3", "SE3", "O3", "SO3", "E3+perm"])),
              mode=draw(S.sampled_from(["full", "stochastic"])), level=draw(S.sampled_from(["graph", "node"])),
              chunk_size=draw(S.sampled_from([None, 1, 3])), module="net")
    return kw


@fuzz("geodl.nn.frame_averaging.FrameAveraging", examples=90)
@with_cases(lambda: cases(_fa_valid(), {
    "module": values("net_str", 3, None, names=("module",)), "group": values("E4", 3, "perm"),
    "mode": values("random", None, 3), "level": values("edge", None), "chunk_size": values(0, -1, True, 2.5),
    "pos": _POS_MUTS, "batch": _BATCH_MUTS}))
def build_frame_averaging(pos, batch, x, group, mode, level, chunk_size, module):
    import torch
    from geodl.nn import FrameAveraging

    def call():
        net = _Backbone.make(level if level in ("graph", "node") else "graph") if module == "net" else module
        m = FrameAveraging(net, group, mode=mode, output="invariant", level=level, chunk_size=chunk_size,
                           degeneracy="flag")
        return m, m(x, pos, batch)

    def verify(res):
        m, y = res
        n_graphs = int(batch.max()) + 1 if batch is not None else 1
        expect(y.shape == ((n_graphs if level == "graph" else len(pos)), 4), f"shape {tuple(y.shape)}")
        finite(y)
        if mode == "full":
            R, t = _rt(11)
            if not group.startswith("E"):
                t = t * 0
            y2 = m(x, pos @ R.T + t, batch)
            close(y2, y, atol=1e-6, rtol=1e-5, msg="invariance")

    return call, verify


# --------------------------------------------------------------------------- location encoders and networks
ENC = ["sphericalharmonics", "direct", "cartesian3d", "wrap", "grid", "theory", "spherec", "spherec+", "spherem",
       "spherem+"]
ENC_CLASSES = {"sphericalharmonics": "SphericalHarmonicsEncoder", "direct": "Direct", "cartesian3d": "Cartesian3D",
               "wrap": "Wrap", "grid": "Grid", "theory": "Theory", "spherec": "SphereC", "spherec+": "SphereCPlus",
               "spherem": "SphereM", "spherem+": "SphereMPlus"}


@S.composite
def _lonlat(draw, n=None):
    import torch

    n = draw(S.integers(0, 6)) if n is None else n
    g = torch.Generator().manual_seed(draw(SEEDS))
    lon = torch.rand(n, generator=g, dtype=torch.float64) * 360 - 180
    lat = torch.rand(n, generator=g, dtype=torch.float64) * 180 - 90
    return torch.stack([lon, lat], -1).to(draw(S.sampled_from([torch.float32, torch.float64])))


def _enc_kwargs(name, draw):
    if name == "sphericalharmonics":
        return {"lmax": draw(S.integers(0, 6))}
    if name in ("grid", "theory", "spherec", "spherec+", "spherem", "spherem+"):
        return {"frequency_num": draw(S.integers(1, 6)), "min_radius": draw(S.sampled_from([1.0, 10.0])),
                "max_radius": draw(S.sampled_from([180.0, 360.0]))}
    return {}


_LONLAT_MUTS = tensor_muts("lonlat", shapes={"(N, 3)": lambda x: x.new_zeros(x.shape[0], 3), "1-D": lambda x: x.reshape(-1),
                                             "latitude 100": lambda x: x.new_tensor([[0.0, 100.0]])},
                           names=("lonlat", "latitude"))


def _check_rows(fn, lonlat, out, width=None):
    expect(out.dim() == 2 and out.shape[0] == lonlat.shape[0], f"shape {tuple(out.shape)}")
    if width is not None:
        expect(out.shape[1] == width, f"width {out.shape[1]}, expected {width}")
    finite(out)
    if lonlat.shape[0] > 1:
        close(fn(lonlat[1:2]), out[1:2], atol=1e-5, msg="rows independent")


def _encoder_entry(cls_name):
    @S.composite
    def valid(draw):
        name = next(k for k, v in ENC_CLASSES.items() if v == cls_name)
        return dict(kwargs=_enc_kwargs(name, draw), lonlat=draw(_lonlat()))

    muts = {"lonlat": _LONLAT_MUTS}
    if cls_name == "SphericalHarmonicsEncoder":
        muts["kwargs"] = [Mut(f"lmax={v!r}", {"lmax": v}, names=("lmax",)) for v in (-1, True, 2.5, "3", HUGE)]
    elif cls_name in ("Grid", "Theory", "SphereC", "SphereCPlus", "SphereM", "SphereMPlus"):
        muts["kwargs"] = ([Mut(f"frequency_num={v!r}", {"frequency_num": v}, names=("frequency_num",))
                           for v in (0, -1, True, 2.5, "4", HUGE)]
                          + [Mut(f"min_radius={v!r}", {"min_radius": v}, names=("min_radius",)) for v in (0.0, -1.0, float("nan"), "1")]
                          + [Mut("min_radius > max_radius", {"min_radius": 400.0, "max_radius": 10.0},
                                 names=("min_radius", "max_radius"))])
    else:
        muts["kwargs"] = [Mut("an unexpected keyword", {"bogus": 1}, names=("bogus", "unexpected", "argument"))]
    return valid, muts


def _build_encoder(cls_name, kwargs, lonlat):
    import torch
    import geodl.nn.location as L

    def call():
        torch.manual_seed(0)
        enc = getattr(L, cls_name)(**kwargs)
        return enc, enc(lonlat)

    def verify(res):
        enc, out = res
        _check_rows(enc, lonlat, out, getattr(enc, "embedding_dim", None))

    return call, verify


def _register_encoder(cls_name):
    valid, muts = _encoder_entry(cls_name)

    def build(kwargs, lonlat):
        return _build_encoder(cls_name, kwargs, lonlat)

    build.__name__ = build.__qualname__ = f"build_{cls_name}"
    build.__module__ = __name__
    globals()[build.__name__] = build
    with_cases(lambda: cases(valid(), muts))(build)
    fuzz(f"geodl.nn.location.{cls_name}", examples=25)(build)


for _cls in ENC_CLASSES.values():
    _register_encoder(_cls)


@S.composite
def _net_valid(draw, cls):
    import torch

    kw = dict(dim_in=draw(S.integers(1, 5)), dim_out=draw(S.integers(1, 4)))
    if cls == "Siren":
        kw.update(dim_hidden=draw(S.integers(1, 8)), num_layers=draw(S.integers(1, 3)), w0=draw(S.sampled_from([1.0, 30.0])))
    elif cls == "SirenLayer":
        kw.update(w0=draw(S.sampled_from([1.0, 30.0])), is_first=draw(S.booleans()), activation=draw(S.booleans()))
    elif cls == "FcNet":
        kw.update(dim_hidden=draw(S.integers(1, 8)), num_blocks=draw(S.integers(0, 3)), dropout=draw(S.sampled_from([0.0, 0.5])))
    n = draw(S.integers(0, 5))
    return dict(kwargs=kw, x=seeded_tensor((n, kw["dim_in"]), draw(SEEDS), dtype=draw(S.sampled_from([torch.float32]))))


def _net_muts(cls):
    dims = ["dim_in", "dim_out"] + (["dim_hidden"] if cls in ("Siren", "FcNet") else [])
    muts = [Mut(f"{d}={v!r}", (lambda kw, d=d, v=v: {**kw["kwargs"], d: v}), names=(d,))
            for d in dims for v in (0, -1, True, 2.5, "4", HUGE)]
    if cls == "Siren":
        muts += [Mut(f"num_layers={v!r}", (lambda kw, v=v: {**kw["kwargs"], "num_layers": v}), names=("num_layers",))
                 for v in (0, -1, True, "2", HUGE)]
    if cls in ("Siren", "SirenLayer"):
        muts += [Mut(f"w0={v!r}", (lambda kw, v=v: {**kw["kwargs"], "w0": v}), names=("w0",)) for v in (float("nan"), "1", 0.0)]
    if cls == "FcNet":
        muts += [Mut(f"dropout={v!r}", (lambda kw, v=v: {**kw["kwargs"], "dropout": v}), names=("dropout",))
                 for v in (-0.1, 1.5, "0.5", float("nan"))]
    return {"kwargs": muts, "x": tensor_muts("x", shapes={"wrong width": lambda x: x.new_zeros(x.shape[0], x.shape[1] + 1),
                                                          "1-D": lambda x: x.reshape(-1)})}


def _register_net(cls):
    def build(kwargs, x):
        import torch
        import geodl.nn.location as L

        def call():
            torch.manual_seed(0)
            net = getattr(L, cls)(**kwargs).eval()
            return net, net(x)

        def verify(res):
            net, y = res
            expect(y.shape == (x.shape[0], kwargs["dim_out"]), f"shape {tuple(y.shape)}")
            finite(y)
            if x.shape[0] > 1:
                close(net(x[1:2]), y[1:2], atol=1e-5, msg="rows independent")

        return call, verify

    build.__name__ = build.__qualname__ = f"build_{cls}"
    build.__module__ = __name__
    globals()[build.__name__] = build
    with_cases(lambda: cases(_net_valid(cls), _net_muts(cls)))(build)
    fuzz(f"geodl.nn.location.{cls}", examples=30)(build)


for _cls in ("Siren", "SirenLayer", "FcNet", "LinearHead"):
    _register_net(_cls)


@S.composite
def _make_encoder_valid(draw):
    name = draw(S.sampled_from(ENC))
    return dict(name=name, kwargs=_enc_kwargs(name, draw), lonlat=draw(_lonlat()))


@fuzz("geodl.nn.location.make_encoder", examples=30)
@with_cases(lambda: cases(_make_encoder_valid(), {"name": values("bogus", "", 3, None, "Direct", names=("name", "encoder")),
                                                  "kwargs": [Mut("an unknown keyword", {"bogus": 1},
                                                                 names=("bogus", "unexpected", "argument", "kwargs"))]}))
def build_make_encoder(name, kwargs, lonlat):
    import torch
    from geodl.nn.location import make_encoder

    def call():
        torch.manual_seed(0)
        enc = make_encoder(name, **kwargs)
        return enc, enc(lonlat)

    def verify(res):
        enc, out = res
        _check_rows(enc, lonlat, out, getattr(enc, "embedding_dim", None))

    return call, verify


@fuzz("geodl.nn.location.make_network", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({"name": S.sampled_from(["linear", "siren", "fcnet"]),
                                                "dim_in": S.integers(1, 4), "dim_out": S.integers(1, 3)}),
                          {"name": values("bogus", 3, None, names=("name", "network")), "dim_in": values(0, -1, True, "2", HUGE),
                           "dim_out": values(0, True, 2.5)}))
def build_make_network(name, dim_in, dim_out):
    import torch
    from geodl.nn.location import make_network

    def call():
        torch.manual_seed(0)
        return make_network(name, dim_in, dim_out).eval()

    def verify(net):
        y = net(torch.zeros(3, dim_in))
        expect(y.shape == (3, dim_out), f"shape {tuple(y.shape)}")
        finite(y)

    return call, verify


@S.composite
def _loc_valid(draw):
    enc = draw(S.sampled_from(ENC))
    kw = dict(encoder=enc, network=draw(S.sampled_from(["linear", "siren", "fcnet"])), num_classes=draw(S.integers(1, 4)),
              encoder_kwargs=_enc_kwargs(enc, draw) or None, network_kwargs=None, lonlat=draw(_lonlat()))
    import torch

    if kw["lonlat"].dtype == torch.float64:  # a float32 model: a float64 input may be cast or refused
        return kw, "maybe", ("lonlat",)
    return kw


@fuzz("geodl.nn.location.LocationEncoder", examples=80)
@with_cases(lambda: cases(_loc_valid(), {
    "encoder": values("bogus", 3, None), "network": values("bogus", 3, None),
    "num_classes": values(0, -1, True, 2.5, "2", HUGE), "encoder_kwargs": values("lmax=3", [1]),
    "lonlat": _LONLAT_MUTS}))
def build_location_encoder(encoder, network, num_classes, encoder_kwargs, network_kwargs, lonlat):
    import torch
    from geodl.nn.location import LocationEncoder

    def call():
        torch.manual_seed(0)
        m = LocationEncoder(encoder, network, num_classes, encoder_kwargs, network_kwargs).eval()
        return m, m(lonlat)

    def verify(res):
        m, y = res
        _check_rows(m, lonlat, y, num_classes)

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_nn"))  # this file's builders only


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
