"""Triton kernel for :func:`geodl.ops.radius_graph` (used on CUDA; tested on CPU with ``TRITON_INTERPRET=1``).

Two passes over the graph-sorted cloud, each program handling ``_BLOCK_Q`` queries and streaming the
candidates of their graphs in tiles of ``_BLOCK_C`` points. Pass 1 counts, per query, the candidates
with squared distance <= r^2; an exclusive cumulative sum of the counts gives each query's first
output slot; pass 2 recomputes the distances and writes (source, distance) of every pair in the ball
at those slots, in ascending source order. Distances use the documented exact formula,
``sum_j (x_j - y_j)^2`` in coordinate order, compiled without fused multiply-add, and are compared
with r^2 rounded to the input dtype (as torch compares a tensor with a Python float), so the pairs
and distances equal the plain-torch ones bit for bit; ``_neighbors.py`` then orders them by
(target, distance, source) with the plain-torch path's own sort. float32 and float64. Importing
this module imports triton, so ``_neighbors.py`` imports it lazily.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from geodl._checks import check_alloc
from geodl.ops._triton_tiles import pair_tile, query_block

__all__ = ["radius_triton"]

_BLOCK_Q = 32
_BLOCK_C = 64


@triton.jit
def _radius_kernel(pos_ptr, start_ptr, end_ptr, r2_ptr, count_ptr, off_ptr, src_ptr, dist_ptr, N,
                   D: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, LOOP: tl.constexpr,
                   WRITE: tl.constexpr):
    """Pass 1 (``WRITE`` False): in-ball counts per query. Pass 2: (source, distance) at the offsets."""
    q, qmask, s, e, lo, hi = query_block(start_ptr, end_ptr, N, BLOCK_Q)
    r2 = tl.load(r2_ptr)
    if WRITE:
        slot = tl.load(off_ptr + q, mask=qmask, other=0)  # int64: next output slot of each query
    else:
        count = tl.zeros((BLOCK_Q,), tl.int32)
    for c0 in range(lo, hi, BLOCK_C):
        c, d, ok = pair_tile(pos_ptr, q, qmask, s, e, c0, N, r2, D, BLOCK_Q, BLOCK_C, LOOP)
        n = ok.to(tl.int32)
        if WRITE:
            at = slot[:, None] + (tl.cumsum(n, 1) - n).to(tl.int64)  # exclusive scan along the tile
            tl.store(src_ptr + at, c[None, :].to(tl.int64) + tl.zeros_like(at), mask=ok)
            tl.store(dist_ptr + at, d, mask=ok)
            slot += tl.sum(n, 1).to(tl.int64)
        else:
            count += tl.sum(n, 1)
    if not WRITE:
        tl.store(count_ptr + q, count, mask=qmask)


def radius_triton(pos: torch.Tensor, start: torch.Tensor, end: torch.Tensor, r2: float, loop: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs (source, target, squared distance) with distance^2 <= r2 within ``[start, end)``.

    ``pos`` (N, d) float32/float64, contiguous, N >= 1; ``start``/``end`` (N,) int32 graph bounds of
    each point (graph-sorted ids). Pairs come grouped by target (ascending), each group in ascending
    source order. One host sync: the total pair count (checked against the memory available,
    ``ValueError`` naming ``r``, before the pairs are allocated).
    """
    N, d = pos.shape
    dev = pos.device
    r2_t = torch.tensor([r2], dtype=pos.dtype, device=dev)  # rounded as torch rounds ``D <= r2``
    count = torch.empty(N, dtype=torch.int32, device=dev)
    grid = (triton.cdiv(N, _BLOCK_Q),)
    meta = dict(D=d, BLOCK_Q=_BLOCK_Q, BLOCK_C=_BLOCK_C, LOOP=loop, enable_fp_fusion=False)
    _radius_kernel[grid](pos, start, end, r2_t, count, count, count, pos, N, WRITE=False, **meta)
    ends = torch.cumsum(count, 0)  # int64
    E = int(ends[-1])
    # sources, distances, targets, then the caller's sort and join: checked before any is made
    check_alloc("r", math.sqrt(r2), E, 2, torch.int64, dev, row_bytes=48 + pos.element_size())
    src = torch.empty(E, dtype=torch.int64, device=dev)
    dist = torch.empty(E, dtype=pos.dtype, device=dev)
    if E:
        _radius_kernel[grid](pos, start, end, r2_t, count, ends - count, src, dist, N, WRITE=True, **meta)
    dst = torch.repeat_interleave(torch.arange(N, device=dev), count.long(), output_size=E)
    return src, dst, dist
