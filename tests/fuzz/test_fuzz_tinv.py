"""Fuzz of geodl.nn.tinv and TinvNN (entries registered with ``@fuzz`` in this file).

Oracles: shapes and finiteness; pairwise distances preserved up to the scale; the exact MDS route
against the O(N) route and invariance under a rotation/reflection, translation and scaling for every
cloud not flagged degenerate; MDS eigenvalues (kept and dropped) against numpy's ``eigvalsh`` of the
double-centred Gram matrix, with graph distances from a brute-force Floyd-Warshall."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, seeded_tensor, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)


def _idx(v):
    import torch

    return torch.tensor(v, dtype=torch.long)


def _orth(seed, d, reflect):
    import torch

    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    if (torch.linalg.det(q) < 0) != reflect:
        q[:, 0] *= -1
    return q, torch.randn(d, generator=g, dtype=torch.float64)


@S.composite
def _clouds(draw, min_n=3, dims=(2, 3, 3)):
    sizes = draw(S.lists(S.integers(min_n, 9), min_size=1, max_size=3))
    d = draw(S.sampled_from(dims))
    seed = draw(SEEDS)
    batch = None if len(sizes) == 1 and draw(S.booleans()) else _idx([g for g, n in enumerate(sizes) for _ in range(n)])
    return dict(pos=seeded_tensor((sum(sizes), d), seed), batch=batch)


_POS_MUTS = tensor_muts("pos", shapes={"(N, 1)": lambda x: x[:, :1], "1-D": lambda x: x[:, 0],
                                       "two points": lambda x: x[:2]}, names=("pos", "batch"))
_BATCH_MUTS = [Mut("wrong length", lambda kw: _idx([0] * (kw["pos"].shape[0] + 1))),
               Mut("negative", lambda kw: _idx([-1] * kw["pos"].shape[0])),
               Mut("float", lambda kw: kw["pos"][:, 0].clone()),
               Mut("an id with 2 points", lambda kw: _idx([0] * (kw["pos"].shape[0] - 2) + [1, 1])),
               Mut("huge id", lambda kw: _idx([10**12] * kw["pos"].shape[0]), mode="maybe", names=("batch",))]
_TOL_BAD = values(-1.0, float("nan"), "0.1", None, True)


def _ok_clouds(rec, n_graphs):
    return [b for b in range(n_graphs) if not bool(rec.degenerate[b])]


@fuzz("geodl.nn.tinv.tinv_coordinates", "geodl.nn.tinv.TinvCoordinates", examples=60)
@with_cases(lambda: cases(_clouds().flatmap(lambda kw: S.fixed_dictionaries({
    **{k: S.just(v) for k, v in kw.items()}, "method": S.sampled_from(["covariance", "mds"]),
    "handed": S.booleans(), "normalize_scale": S.booleans()})), {
    "pos": _POS_MUTS, "batch": _BATCH_MUTS, "method": values("svd", None, 3), "handed": values(1, "yes", None),
    "normalize_scale": values(0, "no"), "gap_tol": _TOL_BAD, "sign_tol": _TOL_BAD,
    "degeneracy": values("ignore", None, 1), "num_graphs": values(0, -1, True, 2.5, HUGE)}))
def build_tinv_coordinates(pos, batch, method, handed, normalize_scale, gap_tol=1e-4, sign_tol=1e-4,
                           degeneracy="flag", num_graphs=None):
    import torch
    from geodl.nn.tinv import TinvCoordinates, tinv_coordinates

    kw = dict(method=method, handed=handed, normalize_scale=normalize_scale, gap_tol=gap_tol, sign_tol=sign_tol,
              degeneracy=degeneracy)

    def call():
        return tinv_coordinates(pos, batch, num_graphs=num_graphs, **kw)

    def verify(rec):
        expect(isinstance(rec, TinvCoordinates), type(rec).__name__)
        n, d = pos.shape
        B = 1 if batch is None else int(batch.max()) + 1
        expect(rec.coords.shape == (n, d) and rec.basis.shape == (B, d, d) and rec.degenerate.shape == (B,), "shapes")
        finite(rec.coords, rec.basis, rec.scale, rec.eigenvalues)
        g = rec.index
        for b in range(B):
            rows = g == b
            x, y = pos[rows], rec.coords[rows]
            close(torch.cdist(y, y) * rec.scale[b], torch.cdist(x, x), atol=1e-9, rtol=1e-7, msg="distances")
        other = tinv_coordinates(pos, batch, **{**kw, "method": "mds" if method == "covariance" else "covariance"})
        Q, t = _orth(3, d, reflect=not handed)
        s = 2.5 if normalize_scale else 1.0
        moved = tinv_coordinates(s * pos @ Q.T + t, batch, **kw)
        for b in _ok_clouds(rec, B):
            rows = g == b
            if bool(moved.degenerate[b]) or bool(other.degenerate[b]):
                continue
            close(other.coords[rows], rec.coords[rows], atol=1e-8, rtol=1e-6, msg="mds vs covariance")
            close(moved.coords[rows], rec.coords[rows], atol=1e-8, rtol=1e-6, msg="invariance")

    return call, verify


@S.composite
def _distances(draw):
    import torch

    n = draw(S.integers(1, 8))
    seed = draw(SEEDS)
    if draw(S.booleans()):  # Euclidean
        x = seeded_tensor((n, 3), seed)
        D = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    else:  # any symmetric non-negative matrix with a zero diagonal
        A = seeded_tensor((n, n), seed).abs()
        D = (A + A.T) * (1 - torch.eye(n, dtype=torch.float64))
    return dict(distances=D, dim=draw(S.integers(1, 4)), negative=draw(S.sampled_from(["clamp", "drop"])),
                squared=draw(S.booleans()))


def _gram_spectrum(D2):
    import numpy as np

    n = D2.shape[0]
    J = np.eye(n) - 1.0 / n
    return np.sort(np.linalg.eigvalsh(-0.5 * J @ D2 @ J))[::-1]


def _check_mds(res, w, dim, negative, n, atol):
    """``res`` (one graph) against the spectrum ``w`` (descending) of its Gram matrix."""
    import numpy as np

    tol = 10 * n * np.finfo(float).eps * max(abs(w).max(), 1e-300) + atol
    neg = w[w < -tol][::-1]
    got = res.dropped.numpy()
    maybe = w[(w >= -tol) & (w < -tol / 100)] if len(w) else w  # borderline values may go either way
    expect(len(neg) <= len(got) <= len(neg) + len(maybe), f"dropped {got} vs {neg}")
    close(np.sort(got)[: len(neg)], np.sort(neg), atol=atol, msg="dropped eigenvalues")
    top = w[: min(dim, n)]
    kept = res.eigenvalues.numpy().reshape(-1)
    if negative == "clamp":
        expect(res.coords.shape == (n, dim), f"coords {tuple(res.coords.shape)}")
        close(kept[: len(top)], np.where(top > tol, top, 0.0), atol=atol, msg="kept eigenvalues")
    else:
        pos = top[top > tol]
        expect(abs(len(kept) - len(pos)) <= int(((top > tol / 100) & (top <= tol * 100)).sum()), "kept count")
        close(kept[: min(len(kept), len(pos))], pos[: min(len(kept), len(pos))], atol=atol, msg="kept eigenvalues")
    y = res.coords.double()
    finite(y)


@fuzz("geodl.nn.tinv.classical_mds", "geodl.nn.tinv.MDSResult", examples=50)
@with_cases(lambda: cases(_distances(), {
    "distances": tensor_muts("distances", shapes={"not square": lambda x: x[:, :-1] if x.shape[1] > 1 else x.new_zeros(1, 2),
                                                  "1-D": lambda x: x.reshape(-1),
                                                  "asymmetric": lambda x: x + x.new_ones(x.shape).triu(1) if len(x) > 1 else x + 1,
                                                  "negative": lambda x: -x - 1}),
    "dim": values(0, -1, True, 2.5, "3", None), "negative": values("abs", None, 0), "squared": values(1, "yes")}))
def build_classical_mds(distances, dim, negative, squared):
    import numpy as np
    from geodl.nn.tinv import MDSResult, classical_mds

    def call():
        return classical_mds(distances, dim, negative=negative, squared=squared)

    def verify(res):
        expect(isinstance(res, MDSResult), type(res).__name__)
        D = distances.numpy()
        D2 = D if squared else D**2
        n = D.shape[0]
        _check_mds(res, _gram_spectrum(D2), dim, negative, n, atol=1e-8)
        if res.dropped.numel() == 0 and res.coords.shape[1] >= min(n, 3):
            y = res.coords.numpy()
            d2 = ((y[:, None] - y[None]) ** 2).sum(-1)
            close(np.sqrt(d2), np.sqrt(D2), atol=1e-6, msg="distances of Euclidean input")

    return call, verify


@S.composite
def _graphs(draw):
    import torch

    sizes = draw(S.lists(S.integers(1, 7), min_size=1, max_size=2))
    edges, off = [], 0
    for n in sizes:
        for i in range(1, n):  # a random tree, then a few extra edges
            edges.append((off + draw(S.integers(0, i - 1)), off + i))
        for _ in range(draw(S.integers(0, 3)) if n > 2 else 0):
            a, b = draw(S.integers(0, n - 1)), draw(S.integers(0, n - 1))
            if a != b:
                edges.append((off + a, off + b))
        off += n
    ei = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T.reshape(2, -1)  # (E, 2) -> (2, E), also for E = 0
    kw = dict(edge_index=ei, num_nodes=off, dim=draw(S.integers(1, 4)),
              negative="clamp" if len(sizes) > 1 else draw(S.sampled_from(["clamp", "drop"])))
    if len(sizes) > 1 or draw(S.booleans()):
        kw["batch"] = _idx([g for g, n in enumerate(sizes) for _ in range(n)])
    if draw(S.booleans()):
        kw["edge_weight"] = seeded_tensor((ei.shape[1],), draw(SEEDS)).abs() + 0.1
    return kw


def _floyd(n, ei, w):
    import numpy as np

    D = np.full((n, n), np.inf)
    np.fill_diagonal(D, 0.0)
    for (a, b), c in zip(ei.T.tolist(), w):
        D[a, b] = D[b, a] = min(D[a, b], c)
    for k in range(n):
        D = np.minimum(D, D[:, k : k + 1] + D[k : k + 1, :])
    return D


@fuzz("geodl.nn.tinv.graph_mds", examples=50)
@with_cases(lambda: cases(_graphs(), {
    "edge_index": [Mut("float", lambda kw: kw["edge_index"].double()), Mut("(3, E)", lambda kw: kw["edge_index"][:1].repeat(3, 1)),
                   Mut("out of range", lambda kw: kw["edge_index"] + kw["num_nodes"], names=("edge_index",))],
    "num_nodes": [Mut("an isolated node", lambda kw: kw["num_nodes"] + 1, names=("edge_index", "batch"))]
    + values(0, -1, True, 2.5, "3") + values(HUGE, names=("num_nodes", "edge_index", "batch")),
    "dim": values(0, -1, True, "2"), "negative": values("abs", None),
    "edge_weight": [Mut("zero", lambda kw: kw["edge_index"].new_zeros(kw["edge_index"].shape[1]).double()
                        if kw["edge_index"].shape[1] else "x"),
                    Mut("wrong length", lambda kw: seeded_tensor((kw["edge_index"].shape[1] + 1,), 0).abs()),
                    Mut("integer", lambda kw: kw["edge_index"][0].clone())],
    "batch": [Mut("wrong length", lambda kw: _idx([0] * (kw["num_nodes"] + 1))),
              Mut("negative", lambda kw: _idx([-1] * kw["num_nodes"]))]}))
def build_graph_mds(edge_index, num_nodes, dim, negative, batch=None, edge_weight=None):
    import numpy as np
    import torch
    from geodl.nn.tinv import MDSResult, graph_mds

    def call():
        return graph_mds(edge_index, num_nodes, dim, edge_weight=edge_weight, batch=batch, negative=negative)

    def verify(res):
        expect(isinstance(res, MDSResult), type(res).__name__)
        graph = torch.zeros(num_nodes, dtype=torch.long) if batch is None else batch
        w_all = np.ones(edge_index.shape[1]) if edge_weight is None else edge_weight.double().numpy()
        B = int(graph.max()) + 1
        expect(res.eigenvalues.shape[0] == B and res.coords.shape[0] == num_nodes, "shapes")
        finite(res.coords)
        for b in range(B):
            rows = (graph == b).nonzero().flatten()
            local = {int(r): i for i, r in enumerate(rows)}
            sel = [j for j in range(edge_index.shape[1]) if int(graph[edge_index[0, j]]) == b]
            ei = np.array([[local[int(edge_index[0, j])] for j in sel], [local[int(edge_index[1, j])] for j in sel]],
                          dtype=np.int64).reshape(2, -1)
            D = _floyd(len(rows), ei, w_all[sel])
            w = _gram_spectrum(D**2)

            class One:  # the graph's slice of the result
                coords = res.coords[rows]
                eigenvalues = res.eigenvalues[b]
                dropped = res.dropped[res.dropped_index == b]

            _check_mds(One, w, dim, negative, len(rows), atol=1e-7)

    return call, verify


@fuzz("geodl.nn.tinv.TinvNN", "geodl.nn.tinv.TinvRepresentation", examples=60)
@with_cases(lambda: cases(_clouds(dims=(3,)).flatmap(lambda kw: S.fixed_dictionaries({
    **{k: S.just(v) for k, v in kw.items()}, "level": S.sampled_from(["graph", "node"]), "handed": S.booleans(),
    "degeneracy": S.sampled_from(["flag", "augment"]), "backbone": S.just("net")})), {
    "pos": _POS_MUTS, "batch": _BATCH_MUTS, "backbone": values("net_str", 3, None, names=("backbone",)),
    "level": values("edge", None), "handed": values(1, None), "degeneracy": values("ignore", 0),
    "augment_samples": values(0, -1, True, 2.5), "graph_dim": values(0, True, "3"), "source": values("points", None),
    "output": values("spinors", None, 3)}))
def build_tinvnn(pos, batch, level, handed, degeneracy, backbone, augment_samples=2, graph_dim=3, source="pos",
                 output="invariant"):
    import torch
    from geodl.nn.tinv import TinvNN, TinvRepresentation, tinv_coordinates

    from .test_fuzz_nn import _Backbone  # the same tiny backbone as the FrameAveraging entry

    d = 3

    def call():
        net = _Backbone.make(level if level in ("graph", "node") else "graph") if backbone == "net" else backbone
        m = TinvNN(net, handed=handed, level=level, degeneracy=degeneracy, augment_samples=augment_samples,
                   graph_dim=graph_dim, source=source, output=output, generator=torch.Generator().manual_seed(0))
        rep = TinvRepresentation(d, handed=handed, degeneracy="flag")
        return m, rep, m(pos=pos, batch=batch, return_mask=True), rep(pos, batch)

    def verify(res):
        m, rep, (y, mask), coords = res
        B = int(batch.max()) + 1 if batch is not None else 1
        expect(y.shape == ((B if level == "graph" else len(pos)), 4), f"shape {tuple(y.shape)}")
        finite(y)
        ref = tinv_coordinates(pos, batch, handed=handed, degeneracy="flag")
        close(coords, ref.coords, atol=0, rtol=0, msg="TinvRepresentation = tinv_coordinates")
        expect(torch.equal(mask, ref.degenerate), "mask")
        Q, t = _orth(11, d, reflect=not handed)
        y2, mask2 = m(pos=3.0 * pos @ Q.T + t, batch=batch, return_mask=True)
        g = ref.index
        for b in range(B):
            if bool(mask[b]) or bool(mask2[b]):
                continue
            rows = b if level == "graph" else (g == b)
            close(y2[rows], y[rows], atol=1e-7, rtol=1e-6, msg="invariance")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_tinv"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
