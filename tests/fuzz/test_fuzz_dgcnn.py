"""Fuzz of the DGCNN backbone and EdgeConv (entries registered with ``@fuzz`` in this file): constructor
arguments and forward inputs, checked for shapes, finiteness, permutation symmetry, batched = per graph,
and (EdgeConv) a brute-force evaluation of the edge convolution."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, bad_ints, cases, check_entry, close, expect, finite, fuzz
from ._harness import seeded_tensor, st, tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
_ACTS = ["leaky_relu", "relu", "tanh", "gelu", "silu"]
# a k beyond every graph is valid (each point then uses all other points of its graph)
_K_BAD = values(0, -1, True, 2.5, "3", None) + values(HUGE, mode="valid")


def _idx(v):
    import torch

    return torch.tensor(v, dtype=torch.long)


@S.composite
def _cloud(draw, c):
    sizes = draw(S.lists(S.integers(1, 7), min_size=1, max_size=3))
    n, seed = sum(sizes), draw(SEEDS)
    batch = _idx([g for g, m in enumerate(sizes) for _ in range(m)])
    if len(sizes) > 1 and draw(S.booleans()):  # unsorted ids
        perm = __import__("torch").randperm(n, generator=__import__("torch").Generator().manual_seed(seed))
        batch = batch[perm]
    return dict(pos=seeded_tensor((n, 3), seed), x=seeded_tensor((n, c), seed + 1) if c else None,
                batch=batch if len(sizes) > 1 or draw(S.booleans()) else None)


_BATCH_MUTS = [Mut("wrong length", lambda kw: _idx([0] * (kw["pos"].shape[0] + 1))),
               Mut("negative", lambda kw: _idx([-1] * kw["pos"].shape[0])),
               Mut("float", lambda kw: kw["pos"][:, 0].clone()),
               Mut("huge id", lambda kw: _idx([10**12] * kw["pos"].shape[0]), mode="maybe",
                   names=("batch", "num_graphs"))]


def _graphs(batch, n):
    import torch

    return torch.zeros(n, dtype=torch.long) if batch is None else batch


# --------------------------------------------------------------------------- DGCNN
@S.composite
def _dgcnn_valid(draw):
    cin = draw(S.sampled_from([0, 2]))
    kw = draw(_cloud(cin))
    kw.update(in_channels=cin, out_channels=draw(S.integers(1, 3)), k=draw(S.integers(1, 5)),
              conv_channels=tuple(draw(S.lists(S.integers(1, 6), min_size=1, max_size=3))),
              emb_channels=draw(S.integers(1, 6)), head_channels=tuple(draw(S.lists(S.integers(1, 5), max_size=2))),
              level=draw(S.sampled_from(["graph", "node"])), act=draw(S.sampled_from(_ACTS)),
              norm=draw(S.sampled_from(["batch", "none"])), dynamic=draw(S.booleans()),
              dropout=draw(S.sampled_from([0.0, 0.5])))
    return kw


@fuzz("geodl.nn.backbones.DGCNN", examples=40)
@with_cases(lambda: cases(_dgcnn_valid(), {
    "in_channels": values(-1, True, 2.5, "2", HUGE), "out_channels": bad_ints(),
    "k": _K_BAD, "emb_channels": values(0, -1, True, 2.5, None, HUGE),
    "conv_channels": values((), (0,), (-1,), ("a",), (HUGE,), 3, names=("conv_channels",)),
    "head_channels": values((0,), ("a",), (HUGE,), 3, names=("head_channels",)),
    "dropout": values(1.0, -0.1, "0.5", None, float("nan")), "level": values("edge", None, 3),
    "act": values("sigmoid", None, 3), "norm": values("layer", None, 3), "dynamic": values("yes", None, 1),
    "pos": tensor_muts("pos", shapes={"(N, 4)": lambda x: x.new_zeros(x.shape[0], 4), "1-D": lambda x: x[:, 0],
                                      "float32": lambda x: x.float()}),
    "x": tensor_muts("x", floating=False, none_ok=True,
                     shapes={"wrong rows": lambda x: x[:-1], "one column too many":
                             lambda x: x.new_ones(x.shape[0], x.shape[1] + 1)}),
    "batch": _BATCH_MUTS}))
def build_dgcnn(pos, x, batch, in_channels, out_channels, k, conv_channels, emb_channels, head_channels, level,
                act, norm, dynamic, dropout):
    import torch
    from geodl.nn import DGCNN

    def call():
        torch.manual_seed(0)
        m = DGCNN(in_channels, out_channels, k, conv_channels, emb_channels, head_channels, dropout=dropout,
                  level=level, act=act, norm=norm, dynamic=dynamic).double().eval()
        return m, m(x, pos, batch)

    def verify(res):
        m, y = res
        b = _graphs(batch, len(pos))
        n_graphs = int(b.max()) + 1
        expect(y.shape == ((n_graphs if level == "graph" else len(pos)), out_channels), f"shape {tuple(y.shape)}")
        finite(y)
        perm = torch.randperm(len(pos), generator=torch.Generator().manual_seed(1))
        y2 = m(None if x is None else x[perm], pos[perm], b[perm])
        close(y2, y if level == "graph" else y[perm], atol=1e-9, msg="node permutation")
        for g in range(n_graphs):  # batched = each graph alone
            sel = b == g
            yg = m(None if x is None else x[sel], pos[sel])
            close(yg, y[g:g + 1] if level == "graph" else y[sel], atol=1e-9, msg=f"graph {g} alone")

    return call, verify


# --------------------------------------------------------------------------- EdgeConv
@S.composite
def _edgeconv_valid(draw):
    c = draw(S.integers(1, 3))
    kw = draw(_cloud(c))
    kw["x"], pos = kw["x"], kw.pop("pos")
    kw.update(in_channels=c, out_channels=draw(S.integers(1, 4)), k=draw(S.integers(1, 6)),
              act=draw(S.sampled_from(_ACTS)), norm=draw(S.sampled_from(["batch", "none"])),
              dynamic=draw(S.booleans()))
    kw["knn_on"] = pos if not kw["dynamic"] or draw(S.booleans()) else None
    return kw


@fuzz("geodl.nn.backbones.EdgeConv", examples=40)
@with_cases(lambda: cases(_edgeconv_valid(), {
    "in_channels": bad_ints(), "out_channels": bad_ints(), "k": _K_BAD,
    "act": values("sigmoid", None), "norm": values("layer", None), "dynamic": values("no", None, 0),
    "x": tensor_muts("x", shapes={"one column too many": lambda x: x.new_ones(x.shape[0], x.shape[1] + 1),
                                  "1-D": lambda x: x[:, 0], "float32": lambda x: x.float()}),
    "knn_on": tensor_muts("knn_on", none_ok=True, shapes={"wrong rows": lambda x: x[:-1], "1-D": lambda x: x[:, 0]})
    + values(None, mode="maybe"),  # None: fine with dynamic=True
    "batch": [Mut("wrong length", lambda kw: _idx([0] * (kw["x"].shape[0] + 1))),
              Mut("negative", lambda kw: _idx([-1] * kw["x"].shape[0])),
              Mut("float", lambda kw: kw["x"][:, 0].clone())]}))
def build_edgeconv(x, batch, knn_on, in_channels, out_channels, k, act, norm, dynamic):
    import torch
    from geodl.nn import EdgeConv

    def call():
        torch.manual_seed(0)
        m = EdgeConv(in_channels, out_channels, k, act=act, norm=norm, dynamic=dynamic).double().eval()
        if m.norm is not None:  # non-trivial statistics, with negative weights too
            g = torch.Generator().manual_seed(3)
            with torch.no_grad():
                m.norm.weight.copy_(torch.randn(out_channels, generator=g, dtype=torch.float64))
                m.norm.running_mean.copy_(torch.randn(out_channels, generator=g, dtype=torch.float64))
        return m, m(x, batch, knn_on=knn_on)

    def verify(res):
        m, y = res
        expect(y.shape == (len(x), out_channels), f"shape {tuple(y.shape)}")
        finite(y)
        b = _graphs(batch, len(x))
        search = x if knn_on is None else knn_on
        ref = []
        for i in range(len(x)):  # brute force: the k nearest of the same graph (ties: none, random input)
            others = [j for j in range(len(x)) if j != i and b[j] == b[i]]
            d = torch.stack([(search[j] - search[i]).square().sum() for j in others]) if others else None
            nbrs = [others[int(t)] for t in torch.argsort(d)[:k]] if others else [i]
            e = torch.stack([torch.cat([x[i], x[j] - x[i]]) for j in nbrs])
            h = m.lin(e)
            ref.append(m.act(m.norm(h) if m.norm is not None else h).max(0).values)
        close(y, torch.stack(ref) if ref else y, atol=1e-9, rtol=1e-9, msg="brute-force edge convolution")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_dgcnn"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
