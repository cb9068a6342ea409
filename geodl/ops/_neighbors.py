"""Neighbour search in pure torch: kNN graph, radius graph, farthest-point sampling (DESIGN.md layer 2).

Written by hand so geodl needs neither torch-cluster nor pyg-lib (``torch_geometric.nn.knn_graph``
requires one of them). The search is exact brute force over *blocks*: graphs are sorted by ``batch``,
packed into padded ``(graphs, queries, candidates)`` blocks of at most ``chunk_size`` pairwise
distances, so work is the sum over graphs of n_g^2, memory is O(chunk_size + N k), and points of
different graphs are never paired. Squared distances are accumulated coordinate by coordinate
(``sum_j (x_j - y_j)^2`` in order j = 0, 1, ...); ties are broken by the point index.

Edge convention as in PyG (``flow="source_to_target"``): ``edge_index[0]`` is the neighbour
(source), ``edge_index[1]`` the query point (target). Edges are ordered by target, then by
(distance, source index).
"""

from __future__ import annotations

import math

import torch

from geodl._checks import check_index, check_tensor

__all__ = ["knn_graph", "radius_graph", "farthest_point_sampling"]

_DEFAULT_CHUNK = 1 << 22  # pairwise distances per block (16 MiB in float32)


def _check_pos_batch(pos, batch):
    """Validate; return (pos sorted by graph, perm sorted->original, ptr list over non-empty graphs)."""
    check_tensor("pos", pos, ndim=2, floating=True, finite=True)
    N = pos.shape[0]
    if batch is None:
        return pos, None, [0, N] if N else [0]
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
    counts = torch.unique_consecutive(batch, return_counts=True)[1].tolist() if N else []
    ptr = [0]
    for c in counts:
        ptr.append(ptr[-1] + c)
    return pos, perm, ptr


def _sqdist(q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances (G, r, m) between queries (G, r, d) and candidates (G, m, d)."""
    qT, cT = q.transpose(1, 2).contiguous(), c.transpose(1, 2).contiguous()  # contiguous coordinates
    D = None
    for j in range(q.shape[-1]):
        t = qT[:, j, :, None] - cT[:, j, None, :]
        t = t.mul_(t)  # in place, and no fused multiply-add: the same rounding as sum_j (x_j - y_j)^2
        D = t if D is None else D.add_(t)
    return D


def _blocks(pos, ptr, chunk_size, loop):
    """Yield (query ids (G, r), candidate ids (G, m), query row exists (G, r), D (G, r, m)).

    Graphs are packed greedily while (graphs x largest size^2) <= chunk_size; a graph too big for
    that alone is split into groups of query rows. Ids index the sorted ``pos``; padded slots repeat
    a valid id. ``D`` holds squared distances, inf for padded candidates and (without ``loop``) self.
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
        start = torch.tensor(ptr[g0:g1], device=dev)
        n = torch.tensor(sizes[g0:g1], device=dev)
        slot = torch.arange(m, device=dev)
        in_graph = slot < n[:, None]  # (G, m)
        padded = bool(min(sizes[g0:g1]) < m)
        cand = start[:, None] + torch.minimum(slot, n[:, None] - 1)
        rows = max(1, min(m, chunk_size // max(1, (g1 - g0) * m)))
        for s0 in range(0, m, rows):
            query = cand[:, s0:s0 + rows]
            r = query.shape[1]
            D = _sqdist(pos[query], pos[cand])
            if padded:
                D.masked_fill_(~in_graph[:, None, :], torch.inf)
            if not loop:
                D.diagonal(offset=s0, dim1=1, dim2=2).fill_(torch.inf)  # self pairs
            yield query, cand, in_graph[:, s0:s0 + r], D
        g0 = g1


def _knn_select(D, k):
    """Slots (G, r, kk) of the k smallest finite entries per row of D, ordered by (value, slot); values.

    Missing entries (rows with fewer than k finite values) have value inf.
    """
    m = D.shape[-1]
    kk = min(k, m)
    vals, idx = torch.topk(D, min(kk + 1, m), dim=-1, largest=False, sorted=True)
    kth = vals[..., kk - 1:kk]
    # The (k+1)-th smallest equals the k-th: a tie at the boundary, where topk's pick is unspecified.
    tie = (vals[..., kk] == kth[..., 0]) if kk < m else torch.zeros_like(kth[..., 0], dtype=torch.bool)
    vals, idx = vals[..., :kk], idx[..., :kk]
    if bool(tie.any()):
        Dt, kt = D[tie], kth[tie]
        less = Dt < kt
        eq = (Dt == kt) & torch.isfinite(Dt)
        take = less | (eq & (torch.cumsum(eq, -1) <= kk - less.sum(-1, keepdim=True)))
        slot = torch.arange(m, device=D.device)
        it = torch.sort(torch.where(take, slot, m), -1).values[:, :kk]  # taken slots first, then m
        vt = torch.where(it < m, Dt.gather(-1, it.clamp_max(m - 1)), torch.inf)
        idx[tie], vals[tie] = it.clamp_max(m - 1), vt
    if kk > 1 and (bool(tie.any()) or bool((vals[..., 1:] == vals[..., :-1]).any())):
        # equal values inside the selection: order them by slot (topk's order among equals is unspecified)
        o = torch.sort(idx, -1).indices
        idx, vals = idx.gather(-1, o), vals.gather(-1, o)
        o = torch.sort(vals, dim=-1, stable=True).indices
        idx, vals = idx.gather(-1, o), vals.gather(-1, o)
    return idx, vals


def _finish(src, dst, perm, dist=None):
    """Map back to the caller's indices and order edges by (target, distance, source)."""
    src, dst = torch.cat(src), torch.cat(dst)
    if perm is not None:  # order within a graph is unchanged by the stable sort of ``batch``
        src, dst = perm[src], perm[dst]
    if dist is not None:  # sources of one query are in index order: sort by distance first
        o = torch.sort(torch.cat(dist), stable=True).indices
        src, dst = src[o], dst[o]
    if perm is not None or dist is not None:
        o = torch.sort(dst, stable=True).indices
        src, dst = src[o], dst[o]
    return torch.stack([src, dst])


def _check_chunk(chunk_size):
    if chunk_size is None:
        return _DEFAULT_CHUNK
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    return chunk_size


def _knn_edges(pos, batch, k, loop, chunk_size, r2=None):
    pos_s, perm, ptr = _check_pos_batch(pos, batch)
    src, dst = [torch.empty(0, dtype=torch.long, device=pos.device)], [torch.empty(0, dtype=torch.long, device=pos.device)]
    for query, cand, row_ok, D in _blocks(pos_s, ptr, chunk_size, loop):
        if r2 is not None:
            D = D.masked_fill_(D > r2, torch.inf)
        idx, vals = _knn_select(D, k)
        ok = torch.isfinite(vals) & row_ok[..., None]
        src.append(cand.gather(1, idx.flatten(1)).view(idx.shape)[ok])
        dst.append(query[..., None].expand(idx.shape)[ok])
    return _finish(src, dst, perm)


def knn_graph(pos: torch.Tensor, k: int, batch: torch.Tensor | None = None, loop: bool = False, *, chunk_size: int | None = None) -> torch.Tensor:
    r"""Exact k-nearest-neighbour graph, batch-aware, in pure torch.

    Each point gets edges from its ``k`` nearest points of the same graph (Euclidean distance; ties
    broken by the lower index); a graph with fewer than ``k + 1`` points (``k`` with ``loop``) gives
    all of its other points. The search is chunked: at most ``chunk_size`` pairwise distances live at
    once, so memory is O(chunk_size + N k), never O(N^2). Host syncs: the graph sizes are read once.

    Parameters
    ----------
    pos : Tensor, shape (N, d)
        Point coordinates (floating point, finite).
    k : int
        Number of neighbours per point, >= 1.
    batch : LongTensor, shape (N,), optional
        Graph id of each point (need not be sorted); points of different graphs are never paired.
    loop : bool
        Include each point as its own neighbour (at distance 0).
    chunk_size : int, optional
        Most pairwise distances per step (default 2**22).

    Returns
    -------
    edge_index : LongTensor, shape (2, E)
        ``[source (neighbour), target (query)]``, ordered by target, then by (distance, source).

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import knn_graph
    >>> pos = torch.tensor([[0.0], [1.0], [3.0], [10.0], [11.0]])
    >>> knn_graph(pos, k=1, batch=torch.tensor([0, 0, 0, 1, 1]))
    tensor([[1, 0, 1, 4, 3],
            [0, 1, 2, 3, 4]])
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    return _knn_edges(pos, batch, k, loop, _check_chunk(chunk_size))


def radius_graph(pos: torch.Tensor, r: float, batch: torch.Tensor | None = None, loop: bool = False, max_num_neighbors: int | None = None, *, chunk_size: int | None = None) -> torch.Tensor:
    r"""Exact radius graph (all pairs with distance <= r within a graph), batch-aware, pure torch.

    The test is on squared distances, ``sum_j (x_j - y_j)^2 <= r^2``. With ``max_num_neighbors``,
    each point keeps only its nearest ``max_num_neighbors`` neighbours in the ball (ties by index),
    a deterministic choice -- unlike torch-cluster, which keeps the first found, and unlike PyG's
    default of 32, the default here is no limit. Memory O(chunk_size + E).

    Parameters
    ----------
    pos : Tensor, shape (N, d)
    r : float
        Radius, > 0.
    batch : LongTensor, shape (N,), optional
        Graph id of each point; points of different graphs are never paired.
    loop : bool
        Include self-loops.
    max_num_neighbors : int, optional
        Keep at most this many (nearest) neighbours per point.
    chunk_size : int, optional
        Most pairwise distances per step (default 2**22).

    Returns
    -------
    edge_index : LongTensor, shape (2, E)
        ``[source, target]``, ordered by target, then by (distance, source).

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import radius_graph
    >>> radius_graph(torch.tensor([[0.0], [1.0], [3.0]]), r=1.5)
    tensor([[1, 0],
            [0, 1]])
    """
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
        raise ValueError(f"r: expected a positive finite number, got {r!r}")
    if max_num_neighbors is not None and (isinstance(max_num_neighbors, bool) or not isinstance(max_num_neighbors, int) or max_num_neighbors < 1):
        raise ValueError(f"max_num_neighbors: expected None or a positive int, got {max_num_neighbors!r}")
    chunk_size = _check_chunk(chunk_size)
    r2 = float(r) * float(r)
    if max_num_neighbors is not None:
        return _knn_edges(pos, batch, max_num_neighbors, loop, chunk_size, r2)
    pos_s, perm, ptr = _check_pos_batch(pos, batch)
    src, dst, dist = [], [], []
    for query, cand, row_ok, D in _blocks(pos_s, ptr, chunk_size, loop):
        g, i, j = ((D <= r2) & row_ok[..., None]).nonzero(as_tuple=True)  # inf never passes
        src.append(cand[g, j])
        dst.append(query[g, i])
        dist.append(D[g, i, j])
    if not src:
        return torch.empty((2, 0), dtype=torch.long, device=pos.device)
    return _finish(src, dst, perm, dist)


def farthest_point_sampling(pos: torch.Tensor, ratio: float | None = None, batch: torch.Tensor | None = None, random_start: bool = False, generator: torch.Generator | None = None, *, num: int | None = None) -> torch.Tensor:
    r"""Farthest-point sampling per graph, vectorised over graphs, in pure torch.

    Starts from each graph's first point (lowest index), or a uniformly random one with
    ``random_start`` (drawn from ``generator``), then repeatedly adds the point whose squared
    distance to the chosen set is largest (ties: lowest index; a chosen point is never chosen again,
    so duplicates are taken only once the distinct points are exhausted). Each graph with n points gives
    ``ceil(ratio * n)`` samples, or ``min(num, n)``. Time O(N * samples per graph), memory O(N);
    graphs run side by side, so the number of steps is the largest sample count.

    Parameters
    ----------
    pos : Tensor, shape (N, d)
    ratio : float, optional
        Fraction in (0, 1] of each graph to keep. Give exactly one of ``ratio`` and ``num``.
    batch : LongTensor, shape (N,), optional
        Graph id of each point (need not be sorted).
    random_start : bool
        Random first point per graph instead of the first one.
    generator : torch.Generator, optional
        Source of randomness for ``random_start``.
    num : int, optional
        Samples per graph (capped at the graph size).

    Returns
    -------
    index : LongTensor, shape (M,)
        Indices into ``pos`` of the samples, graph by graph (ascending graph id), in sampling order.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import farthest_point_sampling
    >>> pos = torch.tensor([[0.0], [1.0], [4.0], [10.0], [12.0], [20.0]])
    >>> farthest_point_sampling(pos, 0.5, batch=torch.tensor([0, 0, 0, 1, 1, 1]))
    tensor([0, 2, 3, 5])
    """
    if (ratio is None) == (num is None):
        raise ValueError("ratio: give exactly one of ratio and num")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1):
        raise ValueError(f"ratio: expected a number in (0, 1], got {ratio!r}")
    if num is not None and (isinstance(num, bool) or not isinstance(num, int) or num < 1):
        raise ValueError(f"num: expected a positive int, got {num!r}")
    pos_s, perm, ptr = _check_pos_batch(pos, batch)
    N, dev = pos_s.shape[0], pos.device
    if N == 0:
        return torch.empty(0, dtype=torch.long, device=dev)
    start = torch.tensor(ptr[:-1], device=dev)
    n = torch.tensor(ptr[1:], device=dev) - start
    G = n.numel()
    if ratio is not None:
        n_take = [math.ceil(ratio * (b - a)) for a, b in zip(ptr[:-1], ptr[1:])]
    else:
        n_take = [min(num, b - a) for a, b in zip(ptr[:-1], ptr[1:])]
    steps = max(n_take)
    graph = torch.repeat_interleave(torch.arange(G, device=dev), n)
    if random_start:
        u = torch.rand(G, generator=generator, device="cpu" if generator is None else generator.device)
        cur = start + torch.minimum((u.to(dev) * n).long(), n - 1)
    else:
        cur = start
    idx = torch.arange(N, device=dev)
    posT = pos_s.T.contiguous()  # (d, N)
    out = torch.empty((G, steps), dtype=torch.long, device=dev)
    mind = torch.full((N,), torch.inf, dtype=pos_s.dtype, device=dev)
    for step in range(steps):
        out[:, step] = cur
        if step + 1 == steps:
            break
        c = posT[:, cur][:, graph]
        d = None
        for j in range(posT.shape[0]):
            t = posT[j] - c[j]
            t = t.mul_(t)
            d = t if d is None else d.add_(t)
        mind = torch.minimum(mind, d).index_fill_(0, cur, -torch.inf)  # never re-pick (duplicates)
        best = mind.new_empty(G).scatter_reduce(0, graph, mind, "amax", include_self=False)
        cand = torch.where(mind == best[graph], idx, N)
        cur = torch.full((G,), N, dtype=torch.long, device=dev).scatter_reduce(0, graph, cand, "amin")
    keep = torch.arange(steps, device=dev) < torch.tensor(n_take, device=dev)[:, None]
    out = out[keep]
    return out if perm is None else perm[out]
