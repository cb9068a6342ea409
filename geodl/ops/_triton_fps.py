"""Triton kernel for :func:`geodl.ops.farthest_point_sampling` (used on CUDA; tested on CPU with ``TRITON_INTERPRET=1``).

One program per graph of the graph-sorted cloud runs that graph's sampling steps one after the
other. Each step measures the squared distance of the graph's points to the last chosen point with
the documented exact formula, ``sum_j (x_j - y_j)^2`` in coordinate order, compiled without fused
multiply-add, so distances equal the plain-torch ones bit for bit; the running minimum distance is
updated, the chosen point set to -inf (never re-picked), and the next point is the largest minimum
with the lowest index among ties -- the same rule as the plain-torch path, so indices are identical.
A graph of at most ``_MAX_ONE_TILE`` points keeps its minimum distances in registers (one tile);
larger graphs stream tiles of ``_TILE`` points through a scratch array in global memory. float32
and float64. Importing this module imports triton, so ``_neighbors.py`` imports it lazily.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["fps_triton"]

_MAX_ONE_TILE = 4096  # largest graph whose minimum distances stay in registers
_TILE = 1024  # tile width for larger graphs


@triton.jit
def _sqdist_to(pos_ptr, i, mask, cur, D: tl.constexpr):
    """Squared distances of points ``i`` to point ``cur``, summed in coordinate order."""
    d = tl.zeros(i.shape, pos_ptr.dtype.element_ty)
    for j in tl.static_range(D):
        t = tl.load(pos_ptr + i * D + j, mask=mask, other=0.0) - tl.load(pos_ptr + cur * D + j)
        d = d + t * t  # 0 + t*t is exact: the same sum as the reference
    return d


@triton.jit
def _tile_best(v, i, BIG):
    """Largest value of a tile and its lowest index."""
    m = tl.max(v, 0)
    return m, tl.min(tl.where(v == m, i, BIG), 0)


@triton.jit
def _fps_kernel(pos_ptr, start_ptr, count_ptr, take_ptr, off_ptr, first_ptr, mind_ptr, out_ptr,
                D: tl.constexpr, BLOCK: tl.constexpr, ONE_TILE: tl.constexpr):
    g = tl.program_id(0)
    s = tl.load(start_ptr + g)
    e = s + tl.load(count_ptr + g)
    take = tl.load(take_ptr + g)
    off = tl.load(off_ptr + g)
    cur = tl.load(first_ptr + g)
    tl.store(out_ptr + off, cur)
    inf = float("inf")
    big = e + BLOCK  # above every index of the graph
    lane = tl.arange(0, BLOCK)
    mind = tl.full((BLOCK,), inf, pos_ptr.dtype.element_ty)  # registers (ONE_TILE only)
    for step in range(1, take):
        if ONE_TILE:
            i = s + lane
            ok = i < e
            mind = tl.minimum(mind, _sqdist_to(pos_ptr, i, ok, cur, D))
            mind = tl.where(i == cur, -inf, mind)
            best, cur = _tile_best(tl.where(ok, mind, -inf), i, big)
        else:
            best = tl.full((), -inf, pos_ptr.dtype.element_ty)
            nxt = s  # all -inf (cannot happen while take <= count): the lowest index, as in torch
            for t0 in range(s, e, BLOCK):
                i = t0 + lane
                ok = i < e
                m = tl.minimum(tl.load(mind_ptr + i, mask=ok, other=inf), _sqdist_to(pos_ptr, i, ok, cur, D))
                m = tl.where(i == cur, -inf, m)
                tl.store(mind_ptr + i, m, mask=ok)
                tb, ti = _tile_best(tl.where(ok, m, -inf), i, big)
                upd = tb > best  # strict: an earlier tile (lower index) wins ties
                nxt = tl.where(upd, ti, nxt)
                best = tl.where(upd, tb, best)
            cur = nxt
        tl.store(out_ptr + off + step, cur)


def fps_triton(pos: torch.Tensor, ptr: list[int], take: list[int], first: torch.Tensor,
               tile: int | None = None) -> torch.Tensor:
    """Sample indices (into the graph-sorted ``pos``), graph by graph, in sampling order.

    ``pos`` (N, d) float32/float64, contiguous, sorted by graph; ``ptr`` the graph bounds (G + 1),
    ``take`` the samples per graph (<= its size), ``first`` (G,) the first sample of each graph.
    ``tile`` forces the tiled path with that (power-of-two) tile width (tests).
    """
    dev = pos.device
    starts = torch.tensor(ptr[:-1], dtype=torch.int64, device=dev)
    counts = torch.tensor([b - a for a, b in zip(ptr[:-1], ptr[1:])], dtype=torch.int64, device=dev)
    offs = [0]
    for t in take:
        offs.append(offs[-1] + t)
    out = torch.empty(offs[-1], dtype=torch.int64, device=dev)
    largest = int(max(b - a for a, b in zip(ptr[:-1], ptr[1:])))
    one_tile = tile is None and largest <= _MAX_ONE_TILE
    block = max(16, triton.next_power_of_2(largest)) if one_tile else (tile or _TILE)
    mind = pos.new_full((1 if one_tile else pos.shape[0],), float("inf"))  # scratch of the tiled path
    _fps_kernel[(len(take),)](
        pos, starts, counts, torch.tensor(take, dtype=torch.int64, device=dev),
        torch.tensor(offs[:-1], dtype=torch.int64, device=dev), first.to(torch.int64), mind, out,
        D=pos.shape[1], BLOCK=block, ONE_TILE=one_tile, num_warps=4 if block <= 1024 else 8,
        enable_fp_fusion=False)
    return out
