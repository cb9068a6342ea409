"""Neighbour search in pure torch: kNN graph, radius graph, farthest-point sampling.

Written by hand so geodl needs neither torch-cluster nor pyg-lib (``torch_geometric.nn.knn_graph``
requires one of them). The search is exact brute force over *blocks*: graphs are sorted by ``batch``,
packed into padded ``(graphs, queries, candidates)`` blocks of at most ``chunk_size`` pairwise
distances, so work is the sum over graphs of n_g^2, memory is O(chunk_size + N k), and points of
different graphs are never paired. Squared distances are accumulated coordinate by coordinate
(``sum_j (x_j - y_j)^2`` in order j = 0, 1, ...); ties are broken by the point index. For speed,
each block is first screened with the matrix-multiply form ``|x|^2 + |y|^2 - 2 x.y`` (one batched
``bmm``, as ``torch.cdist`` does) widened by a proven bound on its rounding error; only the few
surviving pairs are measured with the exact formula, so results equal plain brute force (see the
note above ``_roundoff``). ``knn_graph`` and ``radius_graph`` are ``torch.library`` custom ops
(``geodl::knn_graph``, ``geodl::radius_graph``) with a dynamic edge count, so they trace under
``torch.compile(fullgraph=True)``; so is ``farthest_point_sampling`` (``geodl::farthest_point_sampling``,
a dynamic sample count unless there is one graph). On CUDA, ``knn_graph`` (float32, k <= 64),
``radius_graph`` (float32/float64, no ``max_num_neighbors``; float16/bfloat16 input of both is
upcast to float32) and ``farthest_point_sampling`` (float32/float64) run
Triton kernels (``_triton_knn.py``, ``_triton_radius.py``, ``_triton_fps.py``) with identical
results, where the back-end switch picks Triton (``GEODL_DISABLE_TRITON=1`` or
``geodl.ops.set_backend("torch")`` turns them off).

Edge convention as in PyG (``flow="source_to_target"``): ``edge_index[0]`` is the neighbour
(source), ``edge_index[1]`` the query point (target); ``flow="target_to_source"`` swaps the rows.
Edges are ordered by target, then by (distance, source index).

Precision limits (``_check_range``, the note above ``_roundoff``): each graph's squared distances
must neither overflow the dtype nor, for the screened kNN / radius search, underflow below the
screening's margin; outside, ``ValueError`` naming ``pos``. float16/bfloat16 kNN and radius search
run in float32 (upcast); farthest-point sampling keeps the input dtype. Output, block and sample
table sizes are checked with ``check_alloc`` before they are allocated.
"""

from __future__ import annotations

import math
import reprlib
from typing import Optional

import torch

from geodl._checks import check_alloc, check_choice, check_index, check_int, check_number, check_tensor
from geodl.ops._dispatch import public_op, register_kernel

__all__ = ["knn_graph", "radius_graph", "farthest_point_sampling"]

_DEFAULT_CHUNK = 1 << 22  # pairwise distances per block (16 MiB in float32)
_GROUP = 16  # block widths are multiples of this (largest kNN screening group)


def _check_pos_batch(pos, batch, screened=True):
    """Validate; return (pos sorted by graph, perm sorted->original, ptr list over non-empty graphs).

    Also checks each graph's extent against ``pos``'s dtype (``_check_range``; ``screened``: the
    kNN / radius search, whose screening margin also needs the lower limit)."""
    check_tensor("pos", pos, ndim=2, floating=True, finite=True)
    N = pos.shape[0]
    if pos.shape[1] == 0:
        raise ValueError(f"pos: expected at least one coordinate per point, got shape {tuple(pos.shape)}")
    if batch is None:
        ptr = [0, N] if N else [0]
        _check_range(pos, ptr, screened)
        return pos, None, ptr
    check_tensor("batch", batch, shape=(N,))
    check_index("batch", batch)
    if batch.device != pos.device:
        raise ValueError(f"batch: expected device {pos.device}, got {batch.device}")
    if N and int(batch.min()) < 0:
        raise ValueError(f"batch: expected non-negative graph ids, got min {int(batch.min())}")
    perm = None
    if N > 1 and not bool((batch[1:] >= batch[:-1]).all()):
        perm = torch.sort(batch, stable=True).indices
        pos, batch = pos[perm], batch[perm]
    ids, counts = torch.unique_consecutive(batch, return_counts=True) if N else (None, batch[:0])
    counts = counts.tolist()
    ptr = [0]
    for c in counts:
        ptr.append(ptr[-1] + c)
    _check_range(pos, ptr, screened, ids)
    return pos, perm, ptr


def _check_range(pos_s, ptr, screened, ids=None):
    """Raise ``ValueError`` when a graph is too wide (or, for the screened search, too narrow) for
    exact squared distances in ``pos``'s dtype (the limits in the note above ``_roundoff``).

    With ``e`` a graph's bounding-box diagonal (``e^2 = sum_j (max_j - min_j)^2``, an upper bound
    of its squared distances): ``e^2 < finfo.max / 2``, so no squared distance overflows; and, when
    ``screened`` and the graph's points are not all equal, ``e^2 >= d * finfo.tiny``, so the
    rounding of squared distances that underflow stays within the screening's margin. One host sync.
    ``ids``: the graph id of each non-empty graph (for the message).
    """
    N, d = pos_s.shape
    if N == 0:
        return
    if len(ptr) == 2:
        hi, lo = pos_s.amax(0, keepdim=True), pos_s.amin(0, keepdim=True)
    else:
        lengths = torch.tensor([b - a for a, b in zip(ptr[:-1], ptr[1:])], device=pos_s.device)
        hi = torch.segment_reduce(pos_s, "max", lengths=lengths, axis=0)
        lo = torch.segment_reduce(pos_s, "min", lengths=lengths, axis=0)
    wide = torch.float32 if pos_s.device.type == "mps" else torch.float64
    ext = hi.to(wide) - lo.to(wide)  # (G, d)
    e2 = (ext * ext).sum(1)
    fi = torch.finfo(pos_s.dtype)
    over = e2 >= fi.max / 2
    under = (ext > 0).any(1) & (e2 < d * fi.tiny) if screened else torch.zeros_like(over)
    n_over, n_under = torch.stack([over.any(), under.any()]).tolist()
    if not (n_over or n_under):
        return
    bad = over if n_over else under
    g = int(bad.nonzero()[0])
    e = math.sqrt(float(e2[g])) if math.isfinite(float(e2[g])) else math.inf
    where = "" if ids is None else f" of graph {int(ids[g])}"
    wider = "" if pos_s.dtype == torch.float64 else " or pass a wider dtype (float64)"
    if n_over:
        raise ValueError(
            f"pos: the points{where} span {e:.3g} (bounding-box diagonal), so their squared distances "
            f"would overflow {pos_s.dtype} (largest {fi.max:.3g}); each graph's diagonal must stay below "
            f"{math.sqrt(fi.max / 2):.3g}: rescale pos{wider}")
    raise ValueError(
        f"pos: the points{where} span only {e:.3g} (bounding-box diagonal, not 0), so their squared "
        f"distances underflow {pos_s.dtype} by more than the exact search's rounding margin allows; "
        f"each graph's diagonal must be 0 or at least {math.sqrt(d * fi.tiny):.3g}: rescale pos "
        f"(e.g. by a power of two){wider}")


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distances between ``a`` and ``b`` (coordinates along dim 0, other dims broadcast).

    Accumulated as documented, ``sum_j (a_j - b_j)^2`` in order j = 0, 1, ..., with no fused
    multiply-add: every exact distance in this module goes through here.
    """
    D = None
    for j in range(a.shape[0]):
        t = a[j] - b[j]
        t = t.mul_(t)
        D = t if D is None else D.add_(t)
    return D


def _blocks(pos, ptr, chunk_size):
    """Yield (query ids (G, r), candidate ids (G, m), in_graph (G, m), first query slot s0, padded).

    Graphs are packed greedily while (graphs x largest size^2) <= chunk_size; a graph too big for
    that alone is split into groups of query rows. Ids index the sorted ``pos``; ``m`` is the largest
    graph size rounded up to a multiple of ``_GROUP`` (so the kNN groups divide it), and padded slots repeat a
    valid id and are marked False in ``in_graph`` (``padded`` says whether any is).
    """
    sizes = [b - a for a, b in zip(ptr[:-1], ptr[1:])]
    dev = pos.device
    g0 = 0
    while g0 < len(sizes):
        m = sizes[g0]
        g1 = g0 + 1
        while g1 < len(sizes) and (g1 + 1 - g0) * max(m, sizes[g1]) ** 2 <= chunk_size:
            m = max(m, sizes[g1])
            g1 += 1
        n_rows, m = m, -(-m // _GROUP) * _GROUP
        start = torch.tensor(ptr[g0:g1], device=dev)
        n = torch.tensor(sizes[g0:g1], device=dev)
        slot = torch.arange(m, device=dev)
        in_graph = slot < n[:, None]  # (G, m)
        padded = bool(min(sizes[g0:g1]) < m)
        cand = start[:, None] + torch.minimum(slot, n[:, None] - 1)
        rows = max(1, min(n_rows, chunk_size // max(1, (g1 - g0) * m)))
        # the block's scores (float32, float64 for float64 input) and a mask or two, before any is made
        check_alloc("chunk_size", chunk_size, (g1 - g0) * min(rows, n_rows), m,
                    torch.float64 if pos.dtype == torch.float64 else torch.float32, dev, elem_bytes=2)
        for s0 in range(0, n_rows, rows):
            yield cand[:, s0:s0 + rows], cand, in_graph, s0, padded
        g0 = g1


# Screening by the matrix-multiply form of the distance (as torch.cdist does), made exact.
# Within a graph the points are centred (c = x - mean) and scored by s(q, c) = |c|^2 - 2 q.c, which is
# |q - c|^2 - |q|^2: the same order along a query's row, computed by one batched matrix multiply.
# With R = max |c| in the graph and unit roundoff u, the computed score differs from the exact
# distance (minus |q|^2) by at most about (d + 3) u (2R)^2 (gamma_(d+1) bounds on the dot products
# and norms); centring in floating point moves distances by at most 2 u (2R)^2, and the documented
# exact formula ``_sqdist`` is within (d + 3) u (2R)^2 of the true distance. So
# |score - (exact - |q|^2)| <= MARGIN with MARGIN = (4 d + 24) u (2R)^2, a factor two over the sum.
# kNN: if at least k scores of a row are <= t, the k-th smallest exact distance is at most
# t + MARGIN (+|q|^2), so every point in the answer (ties included) has score <= t + 2 MARGIN. Those
# candidates (about k per row) are re-measured with ``_sqdist`` and selected exactly. As t we take
# the k-th smallest of the minima over ``m / B`` groups of B slots (each minimum is a distinct entry,
# so at least k scores are <= t); groups are strided (slots c, c + m/B, ...) so that their minima
# are one fast elementwise reduction rather than a reduction over the innermost dimension.
# Radius: every pair with exact distance <= r^2 has score <= r^2 - |q|^2 + MARGIN.
# Scores are computed in float32 (float64 for float64 input) after scaling each graph by a power of
# two (exact, so no overflow); r^2 is scaled alike, and its rounding (u r^2, relevant only while
# r^2 <~ (2R)^2) fits in the slack of MARGIN.
# The bounds are those of normal floating-point numbers, so ``_check_range`` enforces where they hold:
# no squared distance of a graph may overflow the dtype (its squared bounding-box diagonal e^2 must stay
# below finfo.max / 2), and the rounding of squared distances that underflow (at most d * tiny * u,
# tiny = finfo.tiny) must fit in the slack of MARGIN, which holds while e^2 >= d * tiny (as
# (2R)^2 >= e^2 / d) unless all points of the graph are equal (every distance 0, exact). Outside,
# ValueError. float16/bfloat16 input is searched in float32 (``_upcast``): with half-precision
# distances (unit roundoff 2^-11 / 2^-8) the float32 MARGIN would not cover the exact formula's
# rounding, and float16 squares overflow beyond coordinate differences of 256.

def _roundoff(work: torch.Tensor) -> float:
    """Unit roundoff of the screening's matrix multiply."""
    if work.dtype == torch.float64:
        return 2.0 ** -53
    if work.device.type != "cpu" and torch.get_float32_matmul_precision() != "highest":
        return 2.0 ** -8  # TF32 ("high") or bfloat16 passes ("medium") on accelerators
    return 2.0 ** -24


def _prepare(pos, cand, in_graph, padded):
    """Per group of graphs: centred, scaled candidates with their squared norms (G, m, d + 1), the
    margin (G, 1), and the square (G, 1) of the per-graph scale (a power of two)."""
    X = pos[cand]
    if X.dtype != torch.float64:
        X = X.float()
    top = X.abs().amax((1, 2))
    scale = torch.ldexp(torch.ones_like(top), -torch.frexp(top).exponent)
    X = X * scale[:, None, None]
    if padded:
        w = in_graph[..., None].to(X.dtype)
        X = (X - (X * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)) * w
    else:
        X = X - X.mean(1, keepdim=True)
    n2 = (X * X).sum(-1, keepdim=True)  # (G, m, 1)
    margin = (4 * pos.shape[1] + 24) * _roundoff(X) * 4 * n2.amax(1)
    return torch.cat([X, n2], -1), margin, (scale * scale)[:, None]


def _scores(Xn, s0, r):
    """Scores (G, r, m) of the queries in slots [s0, s0 + r) against all candidates; |q|^2 (G, r)."""
    Q = Xn[:, s0:s0 + r]
    S = torch.bmm(torch.cat([Q[..., :-1] * -2, torch.ones_like(Q[..., :1])], -1), Xn.transpose(1, 2))
    return S, Q[..., -1]


def _sort_pairs(s, t, D, row, j, m, nrow, rank=False):
    """Order pairs by (row, D, slot j); with ``rank``, also each pair's position within its row."""
    if D.element_size() <= 4 and nrow * m < 2 ** 30:  # one sort of packed int64 keys (row, D, j)
        bits = D.view(torch.int32 if D.element_size() == 4 else torch.int16).long()  # D >= 0: monotone
        o = torch.sort(((row << 32 | bits) << max(1, (m - 1).bit_length())) | j).indices
    else:
        o = torch.sort(j, stable=True).indices
        o = o[torch.sort(D[o], stable=True).indices]
        o = o[torch.sort(row[o], stable=True).indices]
    s, t, D, row = s[o], t[o], D[o], row[o]
    if not rank:
        return s, t, D, None
    counts = torch.bincount(row, minlength=nrow)
    return s, t, D, torch.arange(row.numel(), device=row.device) - (torch.cumsum(counts, 0) - counts)[row]


def _knn_block(pos, prep, query, cand, in_graph, s0, padded, k, loop, r2):
    """Edges (source, target) of a block's queries to their k nearest, ordered by (target, D, source)."""
    G, r = query.shape
    Xn, margin, scale2 = prep
    S, qn = _scores(Xn, s0, r)
    m = S.shape[-1]
    if padded:
        S.masked_fill_(~in_graph[:, None, :], torch.inf)
    if not loop:
        S.diagonal(offset=s0, dim1=1, dim2=2).fill_(torch.inf)  # self pairs
    if r2 is not None:
        S.masked_fill_(S > (r2 * scale2 - qn + margin)[..., None], torch.inf)
    kk = min(k, m)
    B = 1 << max(0, min(_GROUP, m // (4 * kk)).bit_length() - 1)  # power of two <= 16: divides m
    M = S.view(G, r, B, m // B).amin(2) if B > 1 else S
    big = torch.finfo(S.dtype).max
    if M.shape[-1] > kk:  # else (or with fewer than k finite scores) every finite score is taken
        tau = torch.topk(M, kk, dim=-1, largest=False, sorted=True).values[..., kk - 1]
        tau = torch.where(torch.isinf(tau), big, tau + 2 * margin)
    else:
        tau = S.new_full((G, r), big)
    g, i, j = (S <= tau[..., None]).nonzero(as_tuple=True)
    if padded:
        ok = in_graph[g, s0 + i]
        g, i, j = g[ok], i[ok], j[ok]
    s, t = cand[g, j], query[g, i]
    D = _sqdist(pos[s].T, pos[t].T)
    if r2 is not None:
        ok = D <= r2
        s, t, D, g, i, j = s[ok], t[ok], D[ok], g[ok], i[ok], j[ok]
    s, t, _, rank = _sort_pairs(s, t, D, g * r + i, j, m, G * r, rank=True)
    keep = rank < k
    return s[keep], t[keep]


def _radius_block(pos, prep, query, cand, in_graph, s0, padded, r2, loop):
    """Edges (source, target) within r of a block's queries, ordered by (target, D, source); D."""
    G, r = query.shape
    Xn, margin, scale2 = prep
    S, qn = _scores(Xn, s0, r)
    g, i, j = (S <= (r2 * scale2 - qn + margin)[..., None]).nonzero(as_tuple=True)
    ok = None if loop else j != s0 + i
    if padded:
        ok = in_graph[g, j] & in_graph[g, s0 + i] if ok is None else ok & in_graph[g, j] & in_graph[g, s0 + i]
    if ok is not None:
        g, i, j = g[ok], i[ok], j[ok]
    s, t = cand[g, j], query[g, i]
    D = _sqdist(pos[s].T, pos[t].T)
    ok = D <= r2
    return _sort_pairs(s[ok], t[ok], D[ok], (g * r + i)[ok], j[ok], S.shape[-1], G * r)[:2]


def _finish(src, dst, perm):
    """Map back to the caller's indices, keeping edges ordered by (target, distance, source)."""
    src, dst = torch.cat(src), torch.cat(dst)
    if perm is not None:  # order within a graph is unchanged by the stable sort of ``batch``
        src, dst = perm[src], perm[dst]
        o = torch.sort(dst, stable=True).indices
        src, dst = src[o], dst[o]
    return torch.stack([src, dst])


def _check_chunk(chunk_size):
    if chunk_size is None:
        return _DEFAULT_CHUNK
    return check_int("chunk_size", chunk_size, min=1)


def _edges(pos, batch, chunk_size, block, *args, sizes=None):
    """Edges of ``block`` over all blocks; ``sizes(ptr, E)`` checks the memory of the output before
    the search (E None) and before the blocks' edges are joined (E their count)."""
    pos_s, perm, ptr = _check_pos_batch(pos, batch)
    if sizes is not None:
        sizes(ptr, None)
    empty = torch.empty(0, dtype=torch.long, device=pos.device)
    src, dst = [empty], [empty]
    prep, last = None, None
    for query, cand, in_graph, s0, padded in _blocks(pos_s, ptr, chunk_size):
        if cand is not last:  # row blocks of one group of graphs share the prepared candidates
            prep, last = _prepare(pos_s, cand, in_graph, padded), cand
        s, t = block(pos_s, prep, query, cand, in_graph, s0, padded, *args)
        src.append(s)
        dst.append(t)
    if sizes is not None:
        sizes(ptr, sum(x.numel() for x in src))
    return _finish(src, dst, perm)


_TRITON_MAX_K = 64  # = _triton_knn.MAX_K (not imported here: that would import triton)


def _point_bounds(ptr, device):
    """int32 (start, end) of each (graph-sorted) point's graph, for the Triton kernels."""
    bounds = torch.tensor(ptr, dtype=torch.int32, device=device)
    graph = torch.repeat_interleave(torch.arange(len(ptr) - 1, device=device), bounds.diff())
    return bounds[graph], bounds[graph + 1]


def _knn_triton_edges(pos, batch, k, loop, r2):
    pos_s, perm, ptr = _check_pos_batch(pos, batch)
    _check_knn_size(ptr, None, k, loop, r2, pos.device)
    if pos_s.shape[0] == 0:
        return torch.empty((2, 0), dtype=torch.long, device=pos.device)
    from geodl.ops._triton_knn import knn_triton

    s, t = knn_triton(pos_s.contiguous(), *_point_bounds(ptr, pos.device), k, loop, r2)
    return _finish([s], [t], perm)


def _radius_triton_edges(pos, batch, r2, loop):
    """Radius edges by the Triton kernel, ordered by the plain-torch path's own sort."""
    pos_s, perm, ptr = _check_pos_batch(pos, batch)
    N = pos_s.shape[0]
    if N == 0:
        return torch.empty((2, 0), dtype=torch.long, device=pos.device)
    from geodl.ops._triton_radius import radius_triton

    start, end = _point_bounds(ptr, pos.device)
    s, t, D = radius_triton(pos_s.contiguous(), start, end, r2, loop)
    m = max(b - a for a, b in zip(ptr[:-1], ptr[1:]))  # largest graph: slots s - start[t] are < m
    s, t = _sort_pairs(s, t, D, t, s - start[t], m, N)[:2]
    return _finish([s], [t], perm)


_EDGE_BYTES = 48  # per output edge beyond its two int64: joining, mapping back and sorting the edges


def _check_knn_size(ptr, E, k, loop, r2, device):
    """Memory of the kNN output (at most n * min(k, n - 1) edges per graph of n points; n with loop)."""
    if E is None:
        E = sum(n * min(k, n - (0 if loop else 1)) for n in (b - a for a, b in zip(ptr[:-1], ptr[1:])))
    name = "k" if r2 is None else "max_num_neighbors"
    check_alloc(name, k, E, 2, torch.long, device, row_bytes=_EDGE_BYTES)


def _check_radius_size(ptr, E, r2, device):
    """Memory of the radius output, once its edge count E is known (before the edges are joined)."""
    if E is not None:
        check_alloc("r", math.sqrt(r2), E, 2, torch.long, device, row_bytes=_EDGE_BYTES)


def _knn_ref(pos: torch.Tensor, batch: Optional[torch.Tensor], k: int, loop: bool, chunk_size: int,
             r2: Optional[float]) -> torch.Tensor:
    return _edges(pos, batch, chunk_size, _knn_block, k, loop, r2,
                  sizes=lambda ptr, E: _check_knn_size(ptr, E, k, loop, r2, pos.device))


def _knn_tri(pos, batch, k, loop, chunk_size, r2):
    return _knn_triton_edges(pos, batch, k, loop, r2)


def _radius_ref(pos: torch.Tensor, batch: Optional[torch.Tensor], r2: float, loop: bool,
                chunk_size: int) -> torch.Tensor:
    return _edges(pos, batch, chunk_size, _radius_block, r2, loop,
                  sizes=lambda ptr, E: _check_radius_size(ptr, E, r2, pos.device))


def _radius_tri(pos, batch, r2, loop, chunk_size):
    return _radius_triton_edges(pos, batch, r2, loop)


def _edges_fake(pos, batch, *args):
    return pos.new_empty((2, torch.library.get_ctx().new_dynamic_size()), dtype=torch.long)


# Registered ops (``torch.compile(fullgraph=True)`` traces through them; the edge count is a dynamic
# size). Integer outputs: no autograd. Argument checks that read data run inside, at run time.
# The kNN kernel serves float32 with k <= 64, the radius kernel float32/float64.
_knn_op = register_kernel("knn_graph", _knn_ref, fake=_edges_fake, triton=_knn_tri, dtypes=(torch.float32,),
                          supports=lambda pos, batch, k, *rest: k <= _TRITON_MAX_K)
_radius_op = register_kernel("radius_graph", _radius_ref, fake=_edges_fake, triton=_radius_tri,
                             dtypes=(torch.float32, torch.float64))


_FLOWS = ("source_to_target", "target_to_source")
_BIG_COUNT = 1 << 62  # counts above any graph's size are clamped to this (the op schema's int64)
_ORDER_HINT = ("the order is farthest_point_sampling(pos, ratio, batch, random_start), unlike PyG's "
               "fps(src, batch, ratio, random_start): pass batch=... by keyword")


def _check_types(pos, batch, order_hint=""):
    """Type checks the op schema would otherwise report in its own words."""
    check_tensor("pos", pos)
    if batch is not None and not isinstance(batch, torch.Tensor):
        raise TypeError(f"batch: expected a torch.Tensor of graph ids or None, got {type(batch).__name__} "
                        f"({reprlib.repr(batch)})" + (f"; {order_hint}" if order_hint else ""))
    if batch is not None and batch.device != pos.device:  # before the op's dispatch, which would pick batch's
        raise ValueError(f"batch: expected device {pos.device}, got {batch.device}")


def _upcast(pos):
    """float16/bfloat16 points are searched in float32 (see the note above ``_roundoff``)."""
    return pos.float() if pos.dtype in (torch.float16, torch.bfloat16) else pos


def _flow(edge_index, flow):
    """PyG's ``flow``: "target_to_source" puts the query point in row 0 and its neighbour in row 1."""
    return edge_index if flow == "source_to_target" else edge_index.flip(0)


@public_op("knn_graph", kernels=("knn_graph",))
def knn_graph(pos: torch.Tensor, k: int, batch: torch.Tensor | None = None, loop: bool = False,
              flow: str = "source_to_target", cosine: bool = False, *, chunk_size: int | None = None) -> torch.Tensor:
    r"""Exact k-nearest-neighbour graph, batch-aware, in pure torch.

    Each point gets edges from its ``k`` nearest points of the same graph (Euclidean distance; ties
    broken by the lower index); a graph with fewer than ``k + 1`` points (``k`` with ``loop``) gives
    all of its other points, as PyG does. The search is chunked: at most ``chunk_size`` pairwise
    distances live at once, so memory is O(chunk_size + N k), never O(N^2); the output and the block
    sizes are checked against the memory available before anything is allocated (``ValueError``
    naming ``k`` or ``chunk_size``). Host syncs: the graph sizes and their extents are read once, and
    each block's count of screened pairs (``nonzero``). The positional order of the arguments is
    PyG's ``knn_graph(x, k, batch, loop, flow, cosine)``.

    Precision: the result equals brute force in the working dtype (float32, float64) exactly. That
    needs each graph's bounding-box diagonal ``e`` (``e^2 = sum_j (max_j - min_j)^2``) to satisfy
    ``e^2 < finfo.max / 2`` (no squared distance overflows: float32 ``e`` below 1.3e19, float64
    below 9.5e153) and, unless all of the graph's points are equal, ``e^2 >= d * finfo.tiny`` (the
    rounding of underflowing squared distances stays within the documented screening margin: float32
    ``e`` at least 1.9e-19 for d = 3); outside these limits ``ValueError`` (rescale, or pass float64).
    float16 and bfloat16 input is **upcast** to float32 (the result is the exact float32 graph of
    those points): half-precision distances round by 2^-11 / 2^-8 relatively, beyond what the exact
    search's margin covers, and float16 squares overflow past coordinate differences of 256.

    Parameters
    ----------
    pos : Tensor, shape (N, d)
        Point coordinates (floating point, finite, d >= 1).
    k : int
        Number of neighbours per point, >= 1 (larger than a graph: all of its other points).
    batch : LongTensor, shape (N,), optional
        Graph id of each point (need not be sorted, ids may be skipped); points of different graphs
        are never paired.
    loop : bool
        Include each point as its own neighbour (at distance 0).
    flow : {"source_to_target", "target_to_source"}
        As in PyG: with "source_to_target" (default) row 0 holds the neighbour and row 1 the query;
        "target_to_source" swaps the two rows.
    cosine : bool
        Rank neighbours by cosine distance ``1 - cos(x, y)`` instead, as PyG's ``cosine=True``: the
        exact kNN graph of the unit vectors ``pos / |pos|`` (their squared Euclidean distance is
        ``2 - 2 cos``). Every point must be non-zero (``ValueError``).
    chunk_size : int, optional
        Most pairwise distances per step (default 2**22).

    Returns
    -------
    edge_index : LongTensor, shape (2, E)
        ``[source (neighbour), target (query)]``, ordered by target, then by (distance, source)
        (rows swapped with ``flow="target_to_source"``). An empty cloud gives shape (2, 0).

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import knn_graph
    >>> pos = torch.tensor([[0.0], [1.0], [3.0], [10.0], [11.0]])
    >>> knn_graph(pos, k=1, batch=torch.tensor([0, 0, 0, 1, 1]))
    tensor([[1, 0, 1, 4, 3],
            [0, 1, 2, 3, 4]])
    >>> knn_graph(pos, k=1, batch=torch.tensor([0, 0, 0, 1, 1]), flow="target_to_source")
    tensor([[0, 1, 2, 3, 4],
            [1, 0, 1, 4, 3]])
    """
    k = min(check_int("k", k, min=1), _BIG_COUNT)
    check_choice("flow", flow, _FLOWS)
    _check_types(pos, batch)
    pos = _upcast(pos)
    if cosine:
        pos = _unit(pos)
    return _flow(_knn_op(pos, batch, k, loop, _check_chunk(chunk_size), None), flow)


def _unit(pos):
    """``pos / |pos|`` for ``cosine=True`` (every point non-zero)."""
    eager = not torch.compiler.is_compiling()  # traced: the op's own checks see the NaN of a bad row
    check_tensor("pos", pos, ndim=2, floating=True, finite=eager)
    norm = torch.linalg.vector_norm(pos, dim=1, keepdim=True)
    if eager and pos.numel() and bool((norm == 0).any()):
        i = int((norm[:, 0] == 0).nonzero()[0])
        raise ValueError(f"pos: cosine=True needs non-zero points (the cosine distance of a zero vector "
                         f"is undefined), got a zero row at index {i}")
    return pos / norm


@public_op("radius_graph", kernels=("radius_graph", "knn_graph"))
def radius_graph(pos: torch.Tensor, r: float, batch: torch.Tensor | None = None, loop: bool = False,
                 max_num_neighbors: int | None = None, flow: str = "source_to_target", *,
                 chunk_size: int | None = None) -> torch.Tensor:
    r"""Exact radius graph (all pairs with distance <= r within a graph), batch-aware, pure torch.

    The test is on squared distances, ``sum_j (x_j - y_j)^2 <= r^2`` (points on the sphere count;
    torch-cluster's kernels test ``< r^2``). With ``max_num_neighbors``, each point keeps only its
    nearest ``max_num_neighbors`` neighbours in the ball (ties by index), a deterministic choice --
    unlike torch-cluster, which keeps the first found in index order. **The default differs from
    PyG's** (``max_num_neighbors=32``): here it is ``None``, no limit, deliberately, so that a dense
    region is never truncated silently and the graph does not depend on the point order; pass
    ``max_num_neighbors=32`` for PyG's cap (then the nearest 32 are kept). Memory O(chunk_size + E);
    the output is checked against the memory available before the edges are joined (``ValueError``
    naming ``r``). On CUDA float32/float64 input without ``max_num_neighbors``, a Triton kernel
    (``_triton_radius.py``) counts, then writes, the pairs in the ball, with identical edges and
    order (``GEODL_DISABLE_TRITON=1`` turns it off); host syncs: the graph sizes and extents and the
    edge count. The positional order is PyG's ``radius_graph(x, r, batch, loop, max_num_neighbors,
    flow)``. Precision limits and the float16/bfloat16 upcast to float32: as :func:`knn_graph`
    (``ValueError`` outside them).

    Parameters
    ----------
    pos : Tensor, shape (N, d)
        Point coordinates (floating point, finite, d >= 1).
    r : float
        Radius, > 0.
    batch : LongTensor, shape (N,), optional
        Graph id of each point; points of different graphs are never paired.
    loop : bool
        Include self-loops.
    max_num_neighbors : int, optional
        Keep at most this many (nearest) neighbours per point (default: no limit; PyG: 32).
    flow : {"source_to_target", "target_to_source"}
        As in PyG: "target_to_source" swaps the two rows of the output.
    chunk_size : int, optional
        Most pairwise distances per step (default 2**22).

    Returns
    -------
    edge_index : LongTensor, shape (2, E)
        ``[source, target]``, ordered by target, then by (distance, source) (rows swapped with
        ``flow="target_to_source"``). An empty cloud gives shape (2, 0).

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import radius_graph
    >>> radius_graph(torch.tensor([[0.0], [1.0], [3.0]]), r=1.5)
    tensor([[1, 0],
            [0, 1]])
    """
    r = check_number("r", r, positive=True)
    if max_num_neighbors is not None:
        max_num_neighbors = min(check_int("max_num_neighbors", max_num_neighbors, min=1), _BIG_COUNT)
    check_choice("flow", flow, _FLOWS)
    chunk_size = _check_chunk(chunk_size)
    _check_types(pos, batch)
    pos = _upcast(pos)
    r2 = float(r) * float(r)
    if max_num_neighbors is not None:
        return _flow(_knn_op(pos, batch, max_num_neighbors, loop, chunk_size, r2), flow)
    return _flow(_radius_op(pos, batch, r2, loop, chunk_size), flow)


def _fps_torch(pos_s, ptr, take, first):
    """Plain-torch FPS, all graphs side by side (steps = the largest sample count)."""
    N, dev = pos_s.shape[0], pos_s.device
    start = torch.tensor(ptr[:-1], device=dev)
    n = torch.tensor(ptr[1:], device=dev) - start
    G = n.numel()
    steps = max(take)
    graph = torch.repeat_interleave(torch.arange(G, device=dev), n)
    cur = first
    idx = torch.arange(N, device=dev)
    posT = pos_s.T.contiguous()  # (d, N)
    out = torch.empty((G, steps), dtype=torch.long, device=dev)
    mind = torch.full((N,), torch.inf, dtype=pos_s.dtype, device=dev)
    for step in range(steps):
        out[:, step] = cur
        if step + 1 == steps:
            break
        d = _sqdist(posT, posT[:, cur][:, graph])
        mind = torch.minimum(mind, d).index_fill_(0, cur, -torch.inf)  # never re-pick (duplicates)
        best = mind.new_empty(G).scatter_reduce(0, graph, mind, "amax", include_self=False)
        cand = torch.where(mind == best[graph], idx, N)
        cur = torch.full((G,), N, dtype=torch.long, device=dev).scatter_reduce(0, graph, cand, "amin")
    keep = torch.arange(steps, device=dev) < torch.tensor(take, device=dev)[:, None]
    return out[keep]


def _fps_index(pos, batch, ratio, num, u, use_triton, tile=None):
    """Sample indices into ``pos``; the Triton kernel (``tile``: its tiled path, for tests) or torch."""
    pos_s, perm, ptr = _check_pos_batch(pos, batch, screened=False)
    if pos_s.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=pos.device)
    sizes = [b - a for a, b in zip(ptr[:-1], ptr[1:])]
    take = [math.ceil(ratio * n) if ratio is not None else min(num, n) for n in sizes]
    # torch: a (graphs, largest sample count) table; Triton: the samples and a scratch row per point
    rows, width = (sum(take) + pos_s.shape[0], 1) if use_triton else (len(take), max(take))
    check_alloc("ratio" if ratio is not None else "num", ratio if ratio is not None else num,
                rows, width, torch.long, pos.device)
    start = torch.tensor(ptr[:-1], device=pos.device)
    first = start
    if u is not None:  # the uniform at each graph's first (sorted) slot picks its start
        n = torch.tensor(sizes, device=pos.device)
        first = start + torch.minimum((u[start] * n).long(), n - 1)
    if use_triton:
        from geodl.ops._triton_fps import fps_triton

        out = fps_triton(pos_s.contiguous(), ptr, take, first, tile)
    else:
        out = _fps_torch(pos_s, ptr, take, first)
    return out if perm is None else perm[out]


def _fps_ref(pos: torch.Tensor, batch: Optional[torch.Tensor], ratio: Optional[float], num: Optional[int],
             u: Optional[torch.Tensor]) -> torch.Tensor:
    return _fps_index(pos, batch, ratio, num, u, False)


def _fps_tri(pos, batch, ratio, num, u):
    return _fps_index(pos, batch, ratio, num, u, True)


def _fps_fake(pos, batch, ratio, num, u):
    N = pos.shape[0]
    if batch is None and isinstance(N, int):  # one graph of known size: the count is known
        return pos.new_empty(min(num, N) if ratio is None else math.ceil(ratio * N), dtype=torch.long)
    return pos.new_empty(torch.library.get_ctx().new_dynamic_size(), dtype=torch.long)


_fps_op = register_kernel("farthest_point_sampling", _fps_ref, fake=_fps_fake, triton=_fps_tri,
                          dtypes=(torch.float32, torch.float64))


@public_op("farthest_point_sampling", kernels=("farthest_point_sampling",))
def farthest_point_sampling(pos: torch.Tensor, ratio: float | None = None, batch: torch.Tensor | None = None, random_start: bool = False, generator: torch.Generator | None = None, *, num: int | None = None) -> torch.Tensor:
    r"""Farthest-point sampling per graph, vectorised over graphs, in pure torch.

    Starts from each graph's first point (lowest index), or a uniformly random one with
    ``random_start`` (drawn from ``generator``), then repeatedly adds the point whose squared
    distance to the chosen set is largest (ties: lowest index; a chosen point is never chosen again,
    so duplicates are taken only once the distinct points are exhausted). Each graph with n points gives
    ``ceil(ratio * n)`` samples, or ``min(num, n)``. Time O(N * samples per graph), memory O(N).
    On the CPU (and CUDA float16/bfloat16) graphs run side by side in plain torch, so the number of
    steps is the largest sample count; on CUDA float32/float64 a Triton kernel runs one program per
    graph, with identical indices. A custom op (``geodl::farthest_point_sampling``), so it traces
    under ``torch.compile(fullgraph=True)``. Host syncs: the graph sizes and extents are read once.
    The sample table is checked against the memory available first (``ValueError`` naming ``ratio``
    or ``num``).

    **Argument order differs from PyG's** ``fps(src, batch=None, ratio=0.5, random_start=True)``:
    here ``ratio`` comes second and ``batch`` third, there is no default ratio, and ``random_start``
    defaults to False (deterministic). A call in PyG's positional order, ``farthest_point_sampling(pos,
    batch, 0.5)``, raises ``TypeError`` naming ``ratio`` (a tensor is never a ratio) rather than
    sampling silently with swapped arguments.

    Precision: distances are computed in ``pos``'s dtype (float16/bfloat16 too, no upcast), exactly
    as documented; each graph's bounding-box diagonal ``e`` must satisfy ``e^2 < finfo.max / 2``, so
    no squared distance overflows (float16: ``e`` below 181, float32 below 1.3e19), else
    ``ValueError`` (rescale, or pass a wider dtype).

    Parameters
    ----------
    pos : Tensor, shape (N, d)
        Point coordinates (floating point, finite, d >= 1).
    ratio : float, optional
        Fraction in (0, 1] of each graph to keep (a Python number, not a tensor). Give exactly one of
        ``ratio`` and ``num``.
    batch : LongTensor, shape (N,), optional
        Graph id of each point (need not be sorted).
    random_start : bool
        Random first point per graph instead of the first one (one uniform per point is drawn, on
        the CPU unless ``generator`` lives elsewhere, so a seed gives the same start on any device).
    generator : torch.Generator, optional
        Source of randomness for ``random_start``.
    num : int, optional
        Samples per graph (capped at the graph size).

    Returns
    -------
    index : LongTensor, shape (M,)
        Indices into ``pos`` of the samples, graph by graph (ascending graph id), in sampling order.
        An empty cloud gives shape (0,).

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import farthest_point_sampling
    >>> pos = torch.tensor([[0.0], [1.0], [4.0], [10.0], [12.0], [20.0]])
    >>> farthest_point_sampling(pos, 0.5, batch=torch.tensor([0, 0, 0, 1, 1, 1]))
    tensor([0, 2, 3, 5])
    """
    if isinstance(ratio, torch.Tensor):
        raise TypeError(f"ratio: expected a Python float, got a Tensor of shape {tuple(ratio.shape)}; "
                        + _ORDER_HINT)
    if (ratio is None) == (num is None):
        raise ValueError("ratio: give exactly one of ratio and num")
    if ratio is not None:
        ratio = check_number("ratio", ratio, positive=True, hi=1)
    if num is not None:
        num = min(check_int("num", num, min=1), _BIG_COUNT)
    _check_types(pos, batch, _ORDER_HINT)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__} "
                        f"({reprlib.repr(generator)})")
    u = None
    if random_start:  # one uniform per point, drawn here (a generator cannot enter the op); on the CPU
        # by default, so a seed gives the same start on every device
        u = torch.rand(pos.shape[0], generator=generator, device="cpu" if generator is None else generator.device)
        u = u.to(pos.device)
    return _fps_op(pos, batch, None if ratio is None else float(ratio), num, u)
