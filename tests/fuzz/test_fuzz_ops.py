"""Fuzz of :mod:`geodl.ops`: every entry point against a float64 loop reference or an invariant,
with valid, invalid, empty, non-finite and oversize inputs (see ``_harness``)."""

from __future__ import annotations

import math

import pytest

from ._harness import HUGE, Mut, cases, check_entry, close, expect, finite, fuzz, seeded_tensor, st, tensor_muts
from ._harness import REGISTRY, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
FLOATS = S.sampled_from(["float64", "float32"])


def _dt(name):
    import torch

    return getattr(torch, name)


def _idx(vals):
    import torch

    return torch.tensor(vals, dtype=torch.long)


# --------------------------------------------------------------------------- scatter family
def _ref_reduce(vals, reduce):
    if not vals:
        return 1.0 if reduce == "mul" else 0.0  # PyG's torch_geometric.utils.scatter
    if reduce == "sum":
        return sum(vals)
    if reduce == "mean":
        return sum(vals) / len(vals)
    if reduce == "mul":
        return math.prod(vals)
    return max(vals) if reduce == "max" else min(vals)


@S.composite
def _scatter_valid(draw, reduces=("sum", "mean", "max", "min", "mul")):
    n, f, s = draw(S.integers(0, 6)), draw(S.integers(1, 3)), draw(S.integers(0, 5))
    idx = draw(S.lists(S.integers(0, max(s - 1, 0)), min_size=n, max_size=n)) if s else []
    n = len(idx)
    dim = draw(S.sampled_from([0, 1, -1]))
    src = seeded_tensor((n, f), draw(SEEDS), dtype=_dt(draw(FLOATS)))
    if dim != 0:
        src = src.T.contiguous()
    dim_size = s if (draw(S.booleans()) or not idx) else None
    return dict(src=src, index=_idx(idx), dim=dim, dim_size=dim_size, reduce=draw(S.sampled_from(reduces)),
                deterministic=draw(S.booleans()), return_arg=False)


def _index_muts(arg="index", size_arg="dim_size"):
    return tensor_muts(arg, floating=False, index=True, meta=True, names=(arg,)) + [
        Mut("a negative value", lambda kw: _idx([-1] + kw[arg].tolist()[1:]) if kw[arg].numel() else _idx([-1]),
            names=(arg, "src")),
        Mut("a value >= dim_size", lambda kw: _idx(kw[arg].tolist() + [10**6]), names=(arg, "src", size_arg)),
        Mut("one entry too many", lambda kw: _idx(kw[arg].tolist() + [0]), names=(arg, "src")),
        Mut("a value near 2**63", lambda kw: _idx(kw[arg].tolist()[:-1] + [2**63 - 1]) if kw[arg].numel()
            else _idx([2**63 - 1]), names=(arg, "src", size_arg)),
    ]


_SCATTER_MUTS = {
    "src": tensor_muts("src", shapes={"0-d": lambda x: x.sum()}, names=("src",), dtype_mode="maybe"),
    "index": _index_muts(),
    "dim": values(5, -5, True, "0", 1.5, None),
    "dim_size": values(-1, True, 2.5, "3", HUGE),
    "reduce": values("avg", "SUM", 3, None, ""),
}


def _scatter_expect(src, index, dim, dim_size, reduce):
    import torch

    d = dim % src.dim()
    x = src.movedim(d, 0).double()
    s = dim_size if dim_size is not None else (int(index.max()) + 1 if index.numel() else 0)
    out = torch.zeros((s,) + tuple(x.shape[1:]), dtype=torch.float64)
    for g in range(s):
        rows = [j for j in range(len(index)) if int(index[j]) == g]
        for col in range(x.shape[1]):
            out[g, col] = _ref_reduce([float(x[j, col]) for j in rows], reduce)
    return out.movedim(0, d)


@fuzz("geodl.ops.scatter", examples=140)
@with_cases(lambda: cases(_scatter_valid(), _SCATTER_MUTS))
def build_scatter(src, index, dim, dim_size, reduce, deterministic, return_arg):
    from geodl.ops import scatter

    def call():
        return scatter(src, index, dim, dim_size, reduce, deterministic=deterministic, return_arg=return_arg)

    def verify(out):
        expect(not isinstance(out, tuple), "a tuple without return_arg")
        expect(out.dtype == src.dtype or not src.is_floating_point(), f"dtype {out.dtype}")
        tol = 1e-12 if src.dtype.itemsize == 8 else 1e-5
        if not src.is_floating_point() and reduce == "mean":
            tol = 1.0  # integer mean: rounding is the caller's business
        close(out, _scatter_expect(src, index, dim, dim_size, reduce), atol=tol, rtol=tol * 10)

    return call, verify


@S.composite
def _scatter_arg_valid(draw):
    kw = draw(_scatter_valid(reduces=("max", "min")))
    kw["return_arg"] = True
    kw["deterministic"] = False
    return kw


@fuzz("geodl.ops.scatter.return_arg", examples=60)
@with_cases(lambda: cases(_scatter_arg_valid(), {"src": _SCATTER_MUTS["src"][:3], "index": _index_muts()[:6]}))
def build_scatter_arg(src, index, dim, dim_size, reduce, deterministic, return_arg):
    from geodl.ops import scatter

    def call():
        return scatter(src, index, dim, dim_size, reduce, return_arg=True)

    def verify(res):
        out, arg = res
        ref = _scatter_expect(src, index, dim, dim_size, reduce)
        close(out, ref, atol=1e-5)
        expect(arg.shape == out.shape and arg.dtype.is_floating_point is False, "arg shape/dtype")
        n = src.shape[dim]
        x, a = src.movedim(dim % src.dim(), 0), arg.movedim(dim % src.dim(), 0)
        for g in range(a.shape[0]):
            for col in range(a.shape[1]):
                j = int(a[g, col])
                if j == n:
                    expect(not bool((index == g).any()), "sentinel arg for a non-empty group")
                else:
                    expect(0 <= j < n and int(index[j]) == g and float(x[j, col]) == float(ref.movedim(dim % src.dim(), 0)[g, col]),
                           f"arg {j} of group {g} is not a winner")

    return call, verify


def _softmax_valid():
    return _scatter_valid(reduces=("sum",))


_SOFTMAX_MUTS = {k: v for k, v in _SCATTER_MUTS.items() if k in ("src", "index", "dim", "dim_size")}


def _softmax_ref(src, index, dim, dim_size, log):
    import torch

    d = dim % src.dim()
    x = src.movedim(d, 0).double()
    s = dim_size if dim_size is not None else (int(index.max()) + 1 if index.numel() else 0)
    lse = torch.zeros((s,) + tuple(x.shape[1:]), dtype=torch.float64)
    for g in range(s):
        rows = [j for j in range(len(index)) if int(index[j]) == g]
        if rows:
            lse[g] = torch.logsumexp(x[rows], 0)
    if log:
        return lse.movedim(0, d)
    return torch.exp(x - lse[index]).movedim(0, d) if len(index) else src.double()


def _softmax_call(log, src, index, dim, dim_size):
    from geodl.ops import scatter_logsumexp, scatter_softmax

    fn = scatter_logsumexp if log else scatter_softmax

    def call():
        return fn(src, index, dim, dim_size)

    def verify(out):
        tol = 1e-12 if src.dtype.itemsize == 8 else 1e-5
        close(out, _softmax_ref(src, index, dim, dim_size, log), atol=tol, rtol=tol * 10)

    return call, verify


@fuzz("geodl.ops.scatter_softmax", examples=70)
@with_cases(lambda: cases(_softmax_valid(), _SOFTMAX_MUTS))
def build_softmax(src, index, dim, dim_size, reduce, deterministic, return_arg):
    return _softmax_call(False, src, index, dim, dim_size)


@fuzz("geodl.ops.scatter_logsumexp", examples=70)
@with_cases(lambda: cases(_softmax_valid(), _SOFTMAX_MUTS))
def build_logsumexp(src, index, dim, dim_size, reduce, deterministic, return_arg):
    return _softmax_call(True, src, index, dim, dim_size)


@fuzz("geodl.ops.scatter_log_softmax", examples=60)
@with_cases(lambda: cases(_softmax_valid(), _SOFTMAX_MUTS))
def build_log_softmax(src, index, dim, dim_size, reduce, deterministic, return_arg):
    import torch
    from geodl.ops import scatter_log_softmax

    def call():
        return scatter_log_softmax(src, index, dim, dim_size)

    def verify(out):
        tol = 1e-12 if src.dtype.itemsize == 8 else 1e-5
        ref = _softmax_ref(src, index, dim, dim_size, False)
        close(out, ref.log() if ref.numel() else ref, atol=tol * 10, rtol=tol * 10)

    return call, verify


@S.composite
def _std_valid(draw):
    kw = draw(_scatter_valid(reduces=("sum",)))
    kw["unbiased"] = draw(S.booleans())
    return kw


@fuzz("geodl.ops.scatter_std", examples=60)
@with_cases(lambda: cases(_std_valid(), {**_SOFTMAX_MUTS}))
def build_std(src, index, dim, dim_size, reduce, deterministic, return_arg, unbiased):
    import torch
    from geodl.ops import scatter_std

    def call():
        return scatter_std(src, index, dim, dim_size, unbiased)

    def verify(out):
        d = dim % src.dim()
        x = src.movedim(d, 0).double()
        s = dim_size if dim_size is not None else (int(index.max()) + 1 if index.numel() else 0)
        ref = torch.zeros((s,) + tuple(x.shape[1:]), dtype=torch.float64)
        for g in range(s):
            rows = x[index == g]
            if len(rows):
                var = ((rows - rows.mean(0)) ** 2).sum(0) / max(len(rows) - (1 if unbiased else 0), 1)
                ref[g] = var.sqrt()
        tol = 1e-10 if src.dtype.itemsize == 8 else 1e-5
        close(out, ref.movedim(0, d), atol=tol * 10, rtol=tol * 10)

    return call, verify


@S.composite
def _gather_valid(draw):
    n, f, m = draw(S.integers(0, 5)), draw(S.integers(1, 3)), draw(S.integers(0, 6))
    idx = draw(S.lists(S.integers(0, n - 1), min_size=m, max_size=m)) if n else []
    src = seeded_tensor((n, f), draw(SEEDS), dtype=_dt(draw(FLOATS)))
    return dict(src=src, index=_idx(idx), dim=0)


@fuzz("geodl.ops.gather", examples=70)
@with_cases(lambda: cases(_gather_valid(), {
    "src": tensor_muts("src", floating=False, nonfinite=False),
    "index": [m for m in _index_muts() if m.note not in ("one entry too many", "2-D")],  # any length is fine
    "dim": values(3, True, "0", None)}))
def build_gather(src, index, dim):
    from geodl.ops import gather

    def call():
        return gather(src, index, dim)

    def verify(out):
        close(out, src[index], atol=0)

    return call, verify


@S.composite
def _ptr_valid(draw):
    n, f, s = draw(S.integers(0, 6)), draw(S.integers(1, 3)), draw(S.integers(0, 4))
    cuts = sorted(draw(S.lists(S.integers(0, n), min_size=max(s - 1, 0), max_size=max(s - 1, 0))))
    ptr = [0] + cuts + [n] if (s or n) else [0]
    src = seeded_tensor((n, f), draw(SEEDS), dtype=_dt(draw(FLOATS)))
    return dict(src=src, ptr=_idx(ptr), reduce=draw(S.sampled_from(["sum", "mean", "max", "min"])))


def _ptr_muts():
    return tensor_muts("ptr", floating=False, index=True, meta=True) + [
        Mut("decreasing", lambda kw: _idx(kw["ptr"].tolist()[::-1] + [0]) if kw["ptr"].numel() > 1 else _idx([1, 0])),
        Mut("past the end", lambda kw: _idx(kw["ptr"].tolist() + [10**9])),
        Mut("negative start", lambda kw: _idx([-1] + kw["ptr"].tolist()[1:])),
        Mut("empty", lambda kw: _idx([])),
        Mut("2-D", lambda kw: kw["ptr"].view(1, -1)),
    ]


@fuzz("geodl.ops.segment", examples=90)
@with_cases(lambda: cases(_ptr_valid(), {
    "src": tensor_muts("src", shapes={"0-d": lambda x: x.sum()}, dtype_mode="maybe"),
    "ptr": _ptr_muts(), "reduce": values("mul", "avg", None, 1)}))
def build_segment(src, ptr, reduce):
    import torch
    from geodl.ops import segment

    def call():
        return segment(src, ptr, reduce)

    def verify(out):
        p = ptr.tolist()
        ref = torch.tensor([[_ref_reduce(src[a:b, c].double().tolist(), reduce) for c in range(src.shape[1])]
                            for a, b in zip(p, p[1:])], dtype=torch.float64).reshape(len(p) - 1, src.shape[1])
        close(out, ref, atol=1e-5 if src.dtype == torch.float32 else 1e-12 if src.is_floating_point() else 1.0)

    return call, verify


@S.composite
def _gather_csr_valid(draw):
    import torch

    kw = draw(_ptr_valid())
    ptr = kw["ptr"]
    src = seeded_tensor((ptr.numel() - 1, draw(S.integers(1, 3))), draw(SEEDS), dtype=_dt(draw(FLOATS)))
    return dict(src=src, ptr=ptr, size=draw(S.sampled_from([None, int(ptr[-1])])))


@fuzz("geodl.ops.gather_csr", examples=70)
@with_cases(lambda: cases(_gather_csr_valid(), {
    "src": tensor_muts("src", floating=False, nonfinite=False, shapes={"0-d": lambda x: x.sum()}),
    "ptr": _ptr_muts(), "size": values(-5, "3", True, 2.5, HUGE)}))
def build_gather_csr(src, ptr, size):
    import torch
    from geodl.ops import gather_csr

    def call():
        return gather_csr(src, ptr, size)

    def verify(out):
        p = ptr.tolist()
        rows = [src[k] for k, (a, b) in enumerate(zip(p, p[1:])) for _ in range(b - a)]
        ref = torch.stack(rows) if rows else src[:0]
        close(out, ref, atol=0)

    return call, verify


@S.composite
def _cov_valid(draw):
    n, d, s = draw(S.integers(0, 7)), draw(S.sampled_from([2, 3])), draw(S.integers(1, 3))
    pos = seeded_tensor((n, d), draw(SEEDS), dtype=_dt(draw(FLOATS)), scale=draw(S.sampled_from([1.0, 1e3])))
    pos = pos + draw(S.sampled_from([0.0, 1e4]))
    with_batch = draw(S.booleans())
    batch = _idx(draw(S.lists(S.integers(0, s - 1), min_size=n, max_size=n))) if with_batch else None
    ns = draw(S.sampled_from([None, s])) if with_batch else draw(S.sampled_from([None, 1]))
    if with_batch and ns is None and n == 0:
        ns = s
    return dict(pos=pos, batch=batch, num_segments=ns, centered=draw(S.booleans()))


@fuzz("geodl.ops.segment_covariance", examples=80)
@with_cases(lambda: cases(_cov_valid(), {
    "pos": tensor_muts("pos", shapes={"d=4": lambda x: x.new_zeros(x.shape[0], 4), "1-D": lambda x: x[:, 0]}),
    "batch": tensor_muts("batch", floating=False, index=True, none_ok=True) + [
        Mut("negative", lambda kw: _idx([-1] * kw["pos"].shape[0]) if kw["pos"].shape[0] else _idx([-1])),
        Mut("wrong length", lambda kw: _idx([0] * (kw["pos"].shape[0] + 1))),
        Mut("huge id", lambda kw: _idx([10**12] * max(kw["pos"].shape[0], 1)), names=("batch", "pos"))],
    "num_segments": values(0, -1, True, 2.5, HUGE),
}))
def build_segment_covariance(pos, batch, num_segments, centered):
    import torch
    from geodl.ops import segment_covariance

    def call():
        return segment_covariance(pos, batch, num_segments, centered=centered)

    def verify(res):
        c, cov, n = res
        x = pos.double()
        b = batch if batch is not None else torch.zeros(len(x), dtype=torch.long)
        s = num_segments if num_segments is not None else (int(b.max()) + 1 if b.numel() else 1)
        rc = torch.zeros(s, x.shape[1], dtype=torch.float64)
        rv = torch.zeros(s, x.shape[1], x.shape[1], dtype=torch.float64)
        rn = torch.zeros(s, dtype=torch.long)
        for g in range(s):
            pts = x[b == g]
            rn[g] = len(pts)
            if len(pts):
                rc[g] = pts.mean(0)
                y = pts - rc[g] if centered else pts
                rv[g] = y.T @ y
        scale = float(x.abs().max()) if x.numel() else 1.0
        tol = (1e-4 if pos.dtype == torch.float32 else 1e-10) * max(scale, 1.0)
        close(c, rc, atol=tol, rtol=1e-4)
        close(cov, rv, atol=tol * max(scale, 1.0) * 8, rtol=1e-3)
        expect(n.tolist() == rn.tolist(), f"counts {n.tolist()} != {rn.tolist()}")

    return call, verify


# --------------------------------------------------------------------------- eigh3x3
@S.composite
def _eigh_valid(draw):
    import torch

    b = draw(S.sampled_from([(), (0,), (1,), (4,), (2, 3)]))
    kind = draw(S.sampled_from(["random", "diag", "tied", "zero", "scaled"]))
    x = seeded_tensor(b + (3, 3), draw(SEEDS))
    if kind == "random":
        a = x + x.transpose(-1, -2)
    elif kind == "diag":
        a = torch.diag_embed(x[..., 0])
    elif kind == "tied":
        a = torch.eye(3, dtype=torch.float64).expand(b + (3, 3)) * 2.0 + x[..., :1, :1]
    elif kind == "zero":
        a = torch.zeros(b + (3, 3), dtype=torch.float64)
    else:
        a = (x + x.transpose(-1, -2)) * draw(S.sampled_from([1e-30, 1e20, 1e-8]))
    return dict(A=a.to(_dt(draw(FLOATS))).contiguous(), validate=draw(S.booleans()), sym_tol=None)


@fuzz("geodl.ops.eigh3x3", examples=80)
@with_cases(lambda: cases(_eigh_valid(), {
    "A": tensor_muts("A", shapes={"(..., 3, 4)": lambda x: x.new_zeros(x.shape[:-1] + (4,)),
                                  "(3,)": lambda x: x.new_zeros(3),
},
                     names=("A",)) + [Mut("non-symmetric", lambda kw: kw["A"] + torch_triu(kw["A"]), mode="maybe")],
    "sym_tol": values(-1.0, "1", float("nan"))}))
def build_eigh(A, validate, sym_tol):
    import torch
    from geodl.ops import eigh3x3

    def call():
        return eigh3x3(A, validate=validate, sym_tol=sym_tol)

    def verify(res):
        w, V, gap = res
        expect(w.shape == A.shape[:-1] and V.shape == A.shape and gap.shape == A.shape[:-2], "shapes")
        finite(w, V, gap)
        a = A.double()
        a = (a + a.transpose(-1, -2)) / 2
        ref = torch.linalg.eigvalsh(a) if a.numel() else a[..., 0]
        scale = a.abs().amax((-1, -2), keepdim=False).unsqueeze(-1).clamp_min(1e-300) if a.numel() else 1
        tol = 1e-5 if A.dtype == torch.float32 else 1e-10
        close(w.double() / scale, ref / scale, atol=tol * 10)
        v = V.double()
        eye = torch.eye(3, dtype=torch.float64).expand(v.shape)
        close(v.transpose(-1, -2) @ v, eye, atol=tol * 10, msg="V^T V")
        if v.numel():
            close(torch.linalg.det(v), torch.ones(v.shape[:-2], dtype=torch.float64), atol=tol * 10, msg="det V")
            close((a @ v) / scale.unsqueeze(-1), (v * w.double().unsqueeze(-2)) / scale.unsqueeze(-1), atol=tol * 100,
                  msg="A V = V diag(w)")

    return call, verify


def torch_triu(x):
    import torch

    return torch.triu(torch.ones_like(x)) if x.numel() else x


# --------------------------------------------------------------------------- neighbour search
@S.composite
def _graph_valid(draw, with_k=True):
    n, d = draw(S.integers(0, 9)), draw(S.sampled_from([1, 2, 3]))
    ng = draw(S.integers(1, 3))
    batch = draw(S.sampled_from(["none", "sorted", "unsorted"]))
    b = sorted(draw(S.lists(S.integers(0, ng - 1), min_size=n, max_size=n)))
    if batch == "unsorted":
        b = b[::-1]
    pos = seeded_tensor((n, d), draw(SEEDS), dtype=_dt(draw(FLOATS)))
    kw = dict(pos=pos, batch=None if batch == "none" else _idx(b), loop=draw(S.booleans()),
              chunk_size=draw(S.sampled_from([None, 1, 7])))
    if with_k:
        kw["k"] = draw(S.integers(1, 5))
    return kw


def _graph_muts(first):
    return {
        "pos": tensor_muts("pos", shapes={"1-D": lambda x: x.reshape(-1), "0 columns": lambda x: x[:, :0]}),
        "batch": tensor_muts("batch", floating=False, index=True, none_ok=True, meta=True) + [
            Mut("wrong length", lambda kw: _idx([0] * (kw["pos"].shape[0] + 1))),
            Mut("negative", lambda kw: _idx([-1] * kw["pos"].shape[0]) if kw["pos"].shape[0] else _idx([-1])),
            Mut("huge id", lambda kw: _idx([10**12] * kw["pos"].shape[0]) if kw["pos"].shape[0] else _idx([10**12]),
                mode="maybe")],
        **first,
            "chunk_size": values(0, -1, True, 2.5, "8"),
    }


def _brute(pos, batch):
    import torch

    x = pos.double()
    b = batch if batch is not None else torch.zeros(len(x), dtype=torch.long)
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1) if len(x) else torch.zeros(0, 0, dtype=torch.float64)
    return d2, b


def _check_neighbours(out, pos, batch, loop, pick):
    """``pick(i, cands) -> (must, may)``: per target i, the sources that must / may appear."""
    import torch

    expect(out.dtype == torch.long and out.dim() == 2 and out.shape[0] == 2, f"edge_index {out.dtype} {tuple(out.shape)}")
    d2, b = _brute(pos, batch)
    src, dst = out[0].tolist(), out[1].tolist()
    expect(dst == sorted(dst), "not ordered by target")
    got: dict[int, list[int]] = {}
    for s_, t in zip(src, dst):
        got.setdefault(t, []).append(s_)
    for i in range(len(pos)):
        cands = [j for j in range(len(pos)) if int(b[j]) == int(b[i]) and (loop or j != i)]
        must, may = pick(i, sorted(cands, key=lambda j: (float(d2[i, j]), j)), d2)
        g = got.get(i, [])
        expect(len(g) == len(set(g)), f"duplicate edges into {i}")
        expect(must <= set(g) <= may, f"target {i}: got {sorted(g)}, must {sorted(must)}, may {sorted(may)}")


@fuzz("geodl.ops.knn_graph", examples=170)
@with_cases(lambda: cases(_graph_valid(), _graph_muts({"k": values(0, -1, True, 2.5, "3", None) + values(HUGE, mode="maybe")})))
def build_knn(pos, k, batch, loop, chunk_size):
    import torch
    from geodl.ops import knn_graph

    def pick(i, cands, d2):
        tol = 1e-9 if pos.dtype == torch.float64 else 1e-4
        if len(cands) <= k:
            return set(cands), set(cands)
        kth = float(d2[i, cands[k - 1]])
        return ({j for j in cands if float(d2[i, j]) < kth - tol * (1 + kth)},
                {j for j in cands if float(d2[i, j]) <= kth + tol * (1 + kth)})

    def call():
        return knn_graph(pos, k, batch, loop, chunk_size=chunk_size)

    def verify(out):
        _check_neighbours(out, pos, batch, loop, pick)
        counts = torch.bincount(out[1], minlength=len(pos)) if out.numel() else torch.zeros(len(pos), dtype=torch.long)
        _, b = _brute(pos, batch)
        for i in range(len(pos)):
            avail = int((b == b[i]).sum()) - (0 if loop else 1)
            expect(int(counts[i]) == min(k, avail), f"target {i}: {int(counts[i])} neighbours, expected {min(k, avail)}")

    return call, verify


@S.composite
def _radius_valid(draw):
    kw = draw(_graph_valid(with_k=False))
    kw["r"] = draw(S.sampled_from([0.5, 1.0, 2.5, 1e3]))
    kw["max_num_neighbors"] = draw(S.sampled_from([None, 1, 3]))
    return kw


@fuzz("geodl.ops.radius_graph", examples=170)
@with_cases(lambda: cases(_radius_valid(), _graph_muts({
    "r": values(0.0, -1.0, float("nan"), float("inf"), "1", None, True),
    "max_num_neighbors": values(0, -1, True, 2.5, "3")})))
def build_radius(pos, r, batch, loop, max_num_neighbors, chunk_size):
    import torch
    from geodl.ops import radius_graph

    def pick(i, cands, d2):
        tol = 1e-9 if pos.dtype == torch.float64 else 1e-4
        r2 = r * r
        must = [j for j in cands if float(d2[i, j]) <= r2 * (1 - tol)]
        may = [j for j in cands if float(d2[i, j]) <= r2 * (1 + tol)]
        m = max_num_neighbors
        if m is not None and len(may) > m:
            kth = float(d2[i, may[m - 1]])
            must = [j for j in must if float(d2[i, j]) < kth - tol * (1 + kth)]
            may = [j for j in may if float(d2[i, j]) <= kth + tol * (1 + kth)]
        return set(must), set(may)

    def call():
        return radius_graph(pos, r, batch, loop, max_num_neighbors, chunk_size=chunk_size)

    def verify(out):
        _check_neighbours(out, pos, batch, loop, pick)
        if max_num_neighbors is not None and out.numel():
            expect(int(torch.bincount(out[1]).max()) <= max_num_neighbors, "more than max_num_neighbors")

    return call, verify


@S.composite
def _fps_valid(draw):
    kw = draw(_graph_valid(with_k=False))
    kw.pop("loop"), kw.pop("chunk_size")
    if draw(S.booleans()):
        kw.update(ratio=draw(S.sampled_from([0.1, 0.5, 1.0])), num=None)
    else:
        kw.update(ratio=None, num=draw(S.integers(1, 12)))
    kw["random_start"] = draw(S.booleans())
    kw["seed"] = draw(S.integers(0, 5))
    return kw


@fuzz("geodl.ops.farthest_point_sampling", examples=160)
@with_cases(lambda: cases(_fps_valid(), {
    "pos": tensor_muts("pos", shapes={"1-D": lambda x: x.reshape(-1)}),
    "batch": _graph_muts({})["batch"],
    "ratio": values(0.0, -0.5, 1.5, float("nan"), "0.5", True),
    "num": values(0, -1, True, 2.5, "3") + values(HUGE, mode="maybe"),  # capped at the graph size
    "seed": [Mut("generator is not a Generator", "gen", names=("generator",), mode="maybe")]}))  # unused without random_start
def build_fps(pos, batch, ratio, num, random_start, seed):
    import torch
    from geodl.ops import farthest_point_sampling

    gen = seed if isinstance(seed, str) else torch.Generator().manual_seed(seed)

    def call():
        return farthest_point_sampling(pos, ratio, batch, random_start, gen, num=num)

    def verify(out):
        expect(out.dtype == torch.long and out.dim() == 1, f"index {out.dtype} {tuple(out.shape)}")
        d2, b = _brute(pos, batch)
        groups = sorted(set(b.tolist()))
        at = 0
        for g in groups:
            members = [j for j in range(len(pos)) if int(b[j]) == g]
            n = len(members)
            m = math.ceil(ratio * n - 1e-9) if ratio is not None else min(num, n)
            m = max(min(m, n), 1 if ratio is not None else m)
            mine = out[at: at + m].tolist()
            at += m
            expect(len(mine) == m and all(int(b[j]) == g for j in mine), f"graph {g}: {mine}, expected {m} samples")
            expect(len(set(mine)) == len(mine), f"graph {g}: repeated samples {mine}")
            if not random_start:
                expect(mine[0] == members[0], f"graph {g} starts at {mine[0]}, not {members[0]}")
            for t in range(1, len(mine)):
                mind = {j: min(float(d2[j, c]) for c in mine[:t]) for j in members if j not in mine[:t]}
                best = max(mind.values())
                tol = 1e-9 if pos.dtype == torch.float64 else 1e-4
                expect(mind[mine[t]] >= best - tol * (1 + best), f"graph {g}: step {t} is not the farthest point")
        expect(at == len(out), f"{len(out)} samples, expected {at}")

    return call, verify


# --------------------------------------------------------------------------- spherical harmonics
@S.composite
def _sh_valid(draw):
    import torch

    lmax = draw(S.integers(0, 8))
    b = draw(S.sampled_from([(0,), (1,), (5,), (2, 3)]))
    inp = draw(S.sampled_from(["xyz", "lonlat"]))
    conv = draw(S.sampled_from(["real", "e3nn", "complex"]))
    x = seeded_tensor(b + (3,), draw(SEEDS)) * draw(S.sampled_from([1.0, 1e-3, 1e3]))
    if draw(S.booleans()) and x.numel():
        x.view(-1, 3)[0] = torch.tensor([0.0, 0.0, draw(S.sampled_from([1.0, -1.0]))], dtype=torch.float64)  # a pole
    normalize = draw(S.booleans())
    if inp == "lonlat":
        from geodl.groups import xyz_to_lonlat

        x = xyz_to_lonlat(x / x.norm(dim=-1, keepdim=True)) if x.numel() else x[..., :2]
        normalize = True
    elif not normalize:
        x = x / x.norm(dim=-1, keepdim=True)
    return dict(lmax=lmax, points=x.to(_dt(draw(FLOATS))), input=inp, convention=conv, normalize=normalize)


@fuzz("geodl.ops.spherical_harmonics", examples=100)
@with_cases(lambda: cases(_sh_valid(), {
    "lmax": values(-1, True, 2.5, "3", None, HUGE),
    "points": tensor_muts("points", shapes={"(..., 4)": lambda x: x.new_ones(x.shape[:-1] + (4,)),
                                            "0-d": lambda x: x.new_tensor(1.0),
                                            "a zero vector": lambda x: x.new_zeros((2,) + tuple(x.shape[1:])) if x.shape[-1] == 3
                                            else x.new_full((2,) + tuple(x.shape[1:]), 100.0)},
                          names=("points", "lonlat", "latitude")),
    "input": values("xy", None, 3),
    "convention": values("Real", "racah", None)}))
def build_sh(lmax, points, input, convention, normalize):
    import torch
    from geodl.ops import spherical_harmonics

    def call():
        return spherical_harmonics(lmax, points, input=input, convention=convention, normalize=normalize)

    def verify(y):
        expect(y.shape == points.shape[:-1] + ((lmax + 1) ** 2,), f"shape {tuple(y.shape)}")
        expect(y.is_complex() == (convention == "complex"), f"dtype {y.dtype}")
        finite(y)
        tol = 1e-9 if points.dtype == torch.float64 else 2e-4
        yy = y.abs() ** 2 if y.is_complex() else y.double() ** 2
        for l in range(lmax + 1):  # addition theorem
            s = yy[..., l * l:(l + 1) ** 2].sum(-1).double()
            close(s, torch.full_like(s, (2 * l + 1) / (4 * math.pi)), atol=tol * (2 * l + 1), msg=f"sum_m |Y_{l}m|^2")
        if convention == "e3nn" and input == "xyz":
            try:
                from e3nn import o3
            except ImportError:
                return
            ref = o3.spherical_harmonics(list(range(lmax + 1)), points.double(), normalize=True, normalization="integral")
            close(y, ref, atol=tol * 10, msg="vs e3nn")

    return call, verify


# --------------------------------------------------------------------------- back ends
@fuzz("geodl.ops.set_backend", "geodl.ops.use_backend", examples=24)
@with_cases(lambda: cases(S.fixed_dictionaries({"backend": S.sampled_from(["auto", "torch", "triton"]),
                                                "ctx": S.booleans()}),
                          {"backend": values("cuda", "Torch", "", None, 3, True)}))
def build_backend(backend, ctx):
    from geodl.ops import get_backend, set_backend, use_backend

    def call():
        if ctx:
            with use_backend(backend) as b:
                return b, get_backend()
        try:
            set_backend(backend)
            return backend, get_backend()
        finally:
            set_backend("auto")

    def verify(res):
        expect(res[1] == backend, f"get_backend() = {res[1]!r} after choosing {backend!r}")
        expect(get_backend() == "auto", "the back end was not restored")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_ops"))  # this file's builders only


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
