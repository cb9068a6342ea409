"""Triton kernel for :func:`geodl.ops.knn_graph` (used on CUDA; tested on CPU with ``TRITON_INTERPRET=1``).

One program handles ``BLOCK_Q`` query points of the graph-sorted cloud and streams the candidates of
their graphs in tiles of ``KP`` points (``KP`` = k rounded up to a power of two). Distances use the
documented exact formula, ``sum_j (x_j - y_j)^2`` in coordinate order, compiled without fused
multiply-add, so they equal the plain-torch ones bit for bit. Each (distance, index) pair is packed
into one int64 key (a non-negative float32's bits order like the float), so one sort orders by
distance and breaks ties by the lower index. The running k smallest are kept sorted ascending; a
sorted-descending tile merges in by an elementwise minimum (the k smallest of two sorted lists form
a bitonic sequence) and a sort. float32 only (the key packing); ``_neighbors.py`` falls back to the
plain-torch path otherwise. Importing this module imports triton, so ``_neighbors.py`` imports it
lazily.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from geodl._checks import check_alloc
from geodl.ops._triton_tiles import pair_tile, query_block

__all__ = ["knn_triton", "MAX_K"]

MAX_K = 64  # larger k: the plain-torch path (the sorted tile would not fit in registers)
_BLOCK_Q = 32
_NONE = 0x7FFFFFFFFFFFFFFF  # key of an empty slot (int64 max)


@triton.jit
def _knn_kernel(pos_ptr, start_ptr, end_ptr, out_ptr, N, r2,
                D: tl.constexpr, KP: tl.constexpr, BLOCK_Q: tl.constexpr, LOOP: tl.constexpr):
    q, qmask, s, e, lo, hi = query_block(start_ptr, end_ptr, N, BLOCK_Q)
    best = tl.full((BLOCK_Q, KP), 0x7FFFFFFFFFFFFFFF, tl.int64)
    for c0 in range(lo, hi, KP):
        c, d, ok = pair_tile(pos_ptr, q, qmask, s, e, c0, N, r2, D, BLOCK_Q, KP, LOOP)
        key = (d.to(tl.int32, bitcast=True).to(tl.int64) << 32) | c[None, :].to(tl.int64)
        key = tl.where(ok, key, 0x7FFFFFFFFFFFFFFF)
        best = tl.sort(tl.minimum(best, tl.sort(key, dim=1, descending=True)), dim=1)
    tl.store(out_ptr + q[:, None] * KP + tl.arange(0, KP)[None, :], best, mask=qmask[:, None])


def knn_triton(pos: torch.Tensor, start: torch.Tensor, end: torch.Tensor, k: int, loop: bool,
               r2: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges (source, target) of each point's k nearest in ``[start, end)`` (graph-sorted ids).

    ``pos`` (N, d) float32, contiguous; ``start``/``end`` (N,) int32 graph bounds of each point;
    edges ordered by (target, distance, source); ``r2`` keeps only squared distances <= r2.
    N >= 1 (the caller returns the empty graph itself).
    """
    N, d = pos.shape
    KP = max(2, triton.next_power_of_2(k))
    check_alloc("k", k, N, KP, torch.int64, pos.device)  # the keys table, before it is made
    out = torch.empty((N, KP), dtype=torch.int64, device=pos.device)
    _knn_kernel[(triton.cdiv(N, _BLOCK_Q),)](
        pos, start, end, out, N, float("inf") if r2 is None else r2,
        D=d, KP=KP, BLOCK_Q=_BLOCK_Q, LOOP=loop, enable_fp_fusion=False)
    keys = out[:, :k]
    found = keys != _NONE
    dst = torch.arange(N, device=pos.device)[:, None].expand(N, k)
    return (keys & 0xFFFFFFFF)[found], dst[found]
