"""Triton building blocks shared by the neighbour-search kernels (``_triton_knn.py``,
``_triton_radius.py``). Importing this module imports triton; op modules import it lazily."""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["pair_tile", "query_block"]



@triton.jit
def query_block(start_ptr, end_ptr, N, BLOCK_Q: tl.constexpr):
    """This program's BLOCK_Q query ids ``q`` (graph-sorted), their mask, their graphs' candidate bounds
    ``[s, e)``, and the union ``[lo, hi)`` of those bounds to stream candidates over."""
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qmask = q < N
    s = tl.load(start_ptr + q, mask=qmask, other=0)
    e = tl.load(end_ptr + q, mask=qmask, other=0)
    lo = tl.min(tl.where(qmask, s, N), 0)
    hi = tl.max(e, 0)
    return q, qmask, s, e, lo, hi


@triton.jit
def pair_tile(pos_ptr, q, qmask, s, e, c0, N, r2, D: tl.constexpr, BLOCK_Q: tl.constexpr,
              BLOCK_C: tl.constexpr, LOOP: tl.constexpr):
    """Candidates ``c`` = c0 + [0, BLOCK_C) of the BLOCK_Q queries ``q`` (graph bounds [s, e)): the exact
    squared distances (BLOCK_Q, BLOCK_C) and which pairs are in the graph, within r2, and (unless LOOP) not
    self pairs. Shared kernel building block (compile with ``enable_fp_fusion=False``)."""
    c = c0 + tl.arange(0, BLOCK_C)
    d = tl.zeros((BLOCK_Q, BLOCK_C), pos_ptr.dtype.element_ty)
    for j in tl.static_range(D):
        qj = tl.load(pos_ptr + q * D + j, mask=qmask, other=0.0)
        cj = tl.load(pos_ptr + c * D + j, mask=c < N, other=0.0)
        t = qj[:, None] - cj[None, :]
        d = d + t * t  # 0 + t*t is exact: the same sum as the reference
    ok = (c[None, :] >= s[:, None]) & (c[None, :] < e[:, None]) & (d <= r2)
    if not LOOP:
        ok = ok & (c[None, :] != q[:, None])
    return c, d, ok
