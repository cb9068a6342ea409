"""Triton kernels for the scatter / segment / gather ops (used on CUDA by :mod:`geodl.ops._scatter`).

Written by hand because no installed library offers Triton versions of these reductions with
arg indices and a deterministic tie rule (PyG falls back to torch's scatter ops, torch-scatter is
CUDA C++ and not a dependency). All launchers take contiguous row-major ``(N, F)`` tensors and
return fresh outputs; they run on any device Triton can launch on, including CPU tensors under
``TRITON_INTERPRET=1`` (how the tests exercise them without a GPU).

* unsorted scatter: one program per tile of rows x channels, relaxed atomics
  (``atomic_add`` / ``atomic_max`` / ``atomic_min``); the max/min arg index is a second pass that
  takes ``atomic_min`` of the positions equal to the result (lowest position wins ties). The
  max/min backward counts the tied elements per group (atomics on hits only), then splits the
  gradient evenly among them.
* segment (sorted, CSR ``ptr``): one program per (segment, channel block) loops over its rows,
  accumulating in fp32 (fp64 for fp64 input); no atomics, deterministic.
* gather: ``src[index]`` per tile; ``gather_csr`` writes each segment's row over its range.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["scatter_sum", "scatter_minmax", "scatter_minmax_backward", "segment_reduce",
           "segment_minmax_backward", "gather_csr", "gather_rows"]

_TILE = 4096  # elements per program tile (rows x channels)


def _blocks(f: int, max_f: int = 128, tile: int = _TILE) -> tuple[int, int]:
    block_f = min(triton.next_power_of_2(max(f, 1)), max_f)
    return max(1, tile // block_f), block_f


def _acc_dtype(t: torch.Tensor):
    return tl.float64 if t.dtype == torch.float64 else tl.float32


@triton.jit
def _tile(pid_n, pid_f, N, F, BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    rows = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
    rmask = rows < N
    mask = rmask[:, None] & (cols < F)[None, :]
    return rows, cols, rmask, mask


@triton.jit
def _segment_range(ptr_ptr, F, BLOCK_F: tl.constexpr):
    """This program's segment, its channel block (cols, cmask) and row range [lo, hi)."""
    seg = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    lo = tl.load(ptr_ptr + seg).to(tl.int64)
    hi = tl.load(ptr_ptr + seg + 1).to(tl.int64)
    return seg, cols, cols < F, lo, hi


@triton.jit
def _chunk(start, r, hi, cols, cmask, F):
    """Rows ``start + r`` of a segment ending at ``hi``: rows, (rows, cols) offsets, mask."""
    rows = start + r
    return rows, rows[:, None] * F + cols[None, :], (rows < hi)[:, None] & cmask[None, :]


@triton.jit
def _scatter_kernel(src_ptr, index_ptr, out_ptr, count_ptr, N, F,
                    MODE: tl.constexpr, COUNT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    # MODE 0: sum, 1: max, 2: min
    pid_f = tl.program_id(1)
    rows, cols, rmask, mask = _tile(tl.program_id(0), pid_f, N, F, BLOCK_N, BLOCK_F)
    idx = tl.load(index_ptr + rows, mask=rmask, other=0).to(tl.int64)
    v = tl.load(src_ptr + rows[:, None] * F + cols[None, :], mask=mask, other=0.0)
    dst = out_ptr + idx[:, None] * F + cols[None, :]
    if MODE == 0:
        tl.atomic_add(dst, v, mask=mask, sem="relaxed")
    elif MODE == 1:
        tl.atomic_max(dst, v, mask=mask, sem="relaxed")
    else:
        tl.atomic_min(dst, v, mask=mask, sem="relaxed")
    if COUNT:
        if pid_f == 0:
            tl.atomic_add(count_ptr + idx, tl.full([BLOCK_N], 1, tl.int32), mask=rmask, sem="relaxed")


@triton.jit
def _hits(src_ptr, index_ptr, out_ptr, N, F, BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    """This program's tile: rows, offsets in src and in out, mask, and where src equals out[index]."""
    rows, cols, rmask, mask = _tile(tl.program_id(0), tl.program_id(1), N, F, BLOCK_N, BLOCK_F)
    idx = tl.load(index_ptr + rows, mask=rmask, other=0).to(tl.int64)
    here = rows[:, None] * F + cols[None, :]
    dst = idx[:, None] * F + cols[None, :]
    v = tl.load(src_ptr + here, mask=mask, other=0.0)
    hit = mask & (v == tl.load(out_ptr + dst, mask=mask, other=0.0))
    return rows, here, dst, mask, hit


@triton.jit
def _scatter_arg_kernel(src_ptr, index_ptr, out_ptr, arg_ptr, N, F,
                        BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    # arg[s, c] = lowest row of group s equal to its max/min in column c
    rows, here, dst, mask, hit = _hits(src_ptr, index_ptr, out_ptr, N, F, BLOCK_N, BLOCK_F)
    pos = tl.broadcast_to(rows[:, None], [BLOCK_N, BLOCK_F])
    tl.atomic_min(arg_ptr + dst, pos, mask=hit, sem="relaxed")


@triton.jit
def _scatter_ties_kernel(src_ptr, index_ptr, out_ptr, ties_ptr, N, F,
                         BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    # ties[s, c] = how many elements of group s equal its max/min in column c
    rows, here, dst, mask, hit = _hits(src_ptr, index_ptr, out_ptr, N, F, BLOCK_N, BLOCK_F)
    tl.atomic_add(ties_ptr + dst, tl.full([BLOCK_N, BLOCK_F], 1, tl.int32), mask=hit, sem="relaxed")


@triton.jit
def _scatter_minmax_bwd_kernel(grad_ptr, src_ptr, index_ptr, out_ptr, ties_ptr, gsrc_ptr, N, F,
                               BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    # gsrc[j] = grad[index[j]] / ties[index[j]] where src[j] equals its group's result, else 0
    rows, here, dst, mask, hit = _hits(src_ptr, index_ptr, out_ptr, N, F, BLOCK_N, BLOCK_F)
    g = tl.load(grad_ptr + dst, mask=hit, other=0.0)
    t = tl.load(ties_ptr + dst, mask=hit, other=1)
    tl.store(gsrc_ptr + here, tl.where(hit, g / t.to(g.dtype), 0.0).to(gsrc_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _segment_minmax_bwd_kernel(grad_ptr, src_ptr, ptr_ptr, out_ptr, gsrc_ptr, F, ACC: tl.constexpr,
                               BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    # per (segment, channel block): count the elements equal to the result, then split grad evenly
    seg, cols, cmask, lo, hi = _segment_range(ptr_ptr, F, BLOCK_F)
    best = tl.load(out_ptr + seg * F + cols, mask=cmask, other=0.0)
    g = tl.load(grad_ptr + seg * F + cols, mask=cmask, other=0.0).to(ACC)
    r = tl.arange(0, BLOCK_N)
    ties = tl.zeros([BLOCK_N, BLOCK_F], tl.int32)
    for start in range(lo, hi, BLOCK_N):
        rows, here, mask = _chunk(start, r, hi, cols, cmask, F)
        v = tl.load(src_ptr + here, mask=mask, other=0.0)
        ties += (mask & (v == best[None, :])).to(tl.int32)
    share = g / tl.maximum(tl.sum(ties, axis=0), 1).to(ACC)
    for start in range(lo, hi, BLOCK_N):
        rows, here, mask = _chunk(start, r, hi, cols, cmask, F)
        v = tl.load(src_ptr + here, mask=mask, other=0.0)
        out = tl.where(v == best[None, :], share[None, :], 0.0)
        tl.store(gsrc_ptr + here, out.to(gsrc_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _segment_kernel(src_ptr, ptr_ptr, out_ptr, arg_ptr, N, F,
                    MODE: tl.constexpr, WITH_ARG: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    # MODE 0: sum, 1: mean, 2: max, 3: min (min runs as max of the negated values)
    seg, cols, cmask, lo, hi = _segment_range(ptr_ptr, F, BLOCK_F)
    r = tl.arange(0, BLOCK_N)
    if MODE < 2:
        acc = tl.zeros([BLOCK_N, BLOCK_F], ACC)
        for start in range(lo, hi, BLOCK_N):
            rows, here, mask = _chunk(start, r, hi, cols, cmask, F)
            acc += tl.load(src_ptr + here, mask=mask, other=0.0).to(ACC)
        res = tl.sum(acc, axis=0)
        if MODE == 1:
            res = res / tl.maximum(hi - lo, 1).to(ACC)
    else:
        sign = 1.0 if MODE == 2 else -1.0
        best = tl.full([BLOCK_N, BLOCK_F], float("-inf"), ACC)
        barg = tl.full([BLOCK_N, BLOCK_F], N, tl.int64)
        for start in range(lo, hi, BLOCK_N):
            rows, here, mask = _chunk(start, r, hi, cols, cmask, F)
            v = tl.load(src_ptr + here, mask=mask, other=0.0).to(ACC) * sign
            # strict '>' keeps the first (lowest) row per lane; a lane's first valid row always counts
            upd = mask & ((v > best) | (barg == N))
            best = tl.where(upd, v, best)
            barg = tl.where(upd, tl.broadcast_to(rows[:, None], [BLOCK_N, BLOCK_F]), barg)
        res = tl.max(best, axis=0)
        if WITH_ARG:
            arg = tl.min(tl.where(best == res[None, :], barg, N), axis=0)
            tl.store(arg_ptr + seg * F + cols, arg, mask=cmask)
        res = tl.where(hi > lo, res * sign, 0.0)
    tl.store(out_ptr + seg * F + cols, res.to(out_ptr.dtype.element_ty), mask=cmask)


@triton.jit
def _gather_csr_kernel(src_ptr, ptr_ptr, out_ptr, F, BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    seg, cols, cmask, lo, hi = _segment_range(ptr_ptr, F, BLOCK_F)
    v = tl.load(src_ptr + seg * F + cols, mask=cmask, other=0.0)
    v = tl.broadcast_to(v[None, :], [BLOCK_N, BLOCK_F])
    r = tl.arange(0, BLOCK_N)
    for start in range(lo, hi, BLOCK_N):
        rows, here, mask = _chunk(start, r, hi, cols, cmask, F)
        tl.store(out_ptr + here, v, mask=mask)


@triton.jit
def _gather_rows_kernel(src_ptr, index_ptr, out_ptr, N, F, BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr):
    rows, cols, rmask, mask = _tile(tl.program_id(0), tl.program_id(1), N, F, BLOCK_N, BLOCK_F)
    idx = tl.load(index_ptr + rows, mask=rmask, other=0).to(tl.int64)
    v = tl.load(src_ptr + idx[:, None] * F + cols[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + rows[:, None] * F + cols[None, :], v, mask=mask)


# --------------------------------------------------------------------------- launchers
def _row_grid(n: int, f: int):
    block_n, block_f = _blocks(f)
    return (triton.cdiv(n, block_n), triton.cdiv(f, block_f)), block_n, block_f


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Atomic scatter-sum of ``src`` (N, F) rows into ``dim_size`` rows."""
    src, index = src.contiguous(), index.contiguous()
    n, f = src.shape
    out = torch.zeros(dim_size, f, dtype=src.dtype, device=src.device)
    if n and f:
        grid, bn, bf = _row_grid(n, f)
        _scatter_kernel[grid](src, index, out, out, n, f, MODE=0, COUNT=False, BLOCK_N=bn, BLOCK_F=bf)
    return out


def scatter_minmax(src: torch.Tensor, index: torch.Tensor, dim_size: int, reduce: str, with_arg: bool):
    """Atomic scatter-max/min; empty rows give 0 and arg ``N``. Returns (out, arg or empty)."""
    src, index = src.contiguous(), index.contiguous()
    n, f = src.shape
    init = float("-inf") if reduce == "max" else float("inf")
    out = torch.full((dim_size, f), init, dtype=src.dtype, device=src.device)
    count = torch.zeros(0 if with_arg else dim_size, dtype=torch.int32, device=src.device)
    arg = torch.full((dim_size, f) if with_arg else (0,), n, dtype=torch.int64, device=src.device)
    if n and f:
        grid, bn, bf = _row_grid(n, f)
        _scatter_kernel[grid](src, index, out, count, n, f, MODE=1 if reduce == "max" else 2,
                              COUNT=not with_arg, BLOCK_N=bn, BLOCK_F=bf)
        if with_arg:
            _scatter_arg_kernel[grid](src, index, out, arg, n, f, BLOCK_N=bn, BLOCK_F=bf)
    nonempty = (arg != n) if with_arg else (count > 0).unsqueeze(1)
    return torch.where(nonempty, out, torch.zeros((), dtype=out.dtype, device=out.device)), arg


def scatter_minmax_backward(grad: torch.Tensor, src: torch.Tensor, index: torch.Tensor,
                            out: torch.Tensor) -> torch.Tensor:
    """Gradient of scatter max/min w.r.t. ``src``: ``grad`` split evenly among tied elements."""
    grad, src, index, out = grad.contiguous(), src.contiguous(), index.contiguous(), out.contiguous()
    n, f = src.shape
    gsrc = torch.empty_like(src)
    if n and f:
        ties = torch.zeros(out.shape, dtype=torch.int32, device=src.device)
        grid, bn, bf = _row_grid(n, f)
        _scatter_ties_kernel[grid](src, index, out, ties, n, f, BLOCK_N=bn, BLOCK_F=bf)
        _scatter_minmax_bwd_kernel[grid](grad, src, index, out, ties, gsrc, n, f, BLOCK_N=bn, BLOCK_F=bf)
    return gsrc


def segment_minmax_backward(grad: torch.Tensor, src: torch.Tensor, ptr: torch.Tensor,
                            out: torch.Tensor) -> torch.Tensor:
    """Gradient of segment max/min w.r.t. ``src``: ``grad`` split evenly among tied elements."""
    grad, src, ptr, out = grad.contiguous(), src.contiguous(), ptr.contiguous(), out.contiguous()
    s, f = out.shape
    gsrc = torch.zeros_like(src)  # rows outside [ptr[0], ptr[-1]) stay 0
    if s and f:
        bn, bf = _blocks(f, max_f=64, tile=2048)
        _segment_minmax_bwd_kernel[(s, triton.cdiv(f, bf))](grad, src, ptr, out, gsrc, f, ACC=_acc_dtype(src),
                                                             BLOCK_N=bn, BLOCK_F=bf)
    return gsrc


def segment_reduce(src: torch.Tensor, ptr: torch.Tensor, reduce: str, with_arg: bool = False):
    """Segment reduction of ``src`` (N, F) over ``ptr`` (S+1,); returns (out, arg or empty)."""
    src, ptr = src.contiguous(), ptr.contiguous()
    n, f = src.shape
    s = ptr.shape[0] - 1
    out = torch.empty(s, f, dtype=src.dtype, device=src.device)
    with_arg = with_arg and reduce in ("max", "min")
    arg = torch.empty((s, f) if with_arg else (0,), dtype=torch.int64, device=src.device)
    if s and f:
        bn, bf = _blocks(f, max_f=64, tile=2048)
        mode = ("sum", "mean", "max", "min").index(reduce)
        _segment_kernel[(s, triton.cdiv(f, bf))](src, ptr, out, arg, n, f, MODE=mode, WITH_ARG=with_arg,
                                                   ACC=_acc_dtype(src), BLOCK_N=bn, BLOCK_F=bf)
    return out, arg


def gather_csr(src: torch.Tensor, ptr: torch.Tensor, size: int) -> torch.Tensor:
    """Row ``s`` of ``src`` (S, F) written to rows ``ptr[s]:ptr[s+1]`` of a (size, F) output."""
    src, ptr = src.contiguous(), ptr.contiguous()
    s, f = src.shape
    out = torch.empty(size, f, dtype=src.dtype, device=src.device)
    if s and f and size:
        bn, bf = _blocks(f, max_f=64, tile=2048)
        _gather_csr_kernel[(s, triton.cdiv(f, bf))](src, ptr, out, f, BLOCK_N=bn, BLOCK_F=bf)
    return out


def gather_rows(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``src[index]`` for ``src`` (S, F) and ``index`` (N,)."""
    src, index = src.contiguous(), index.contiguous()
    n, f = index.shape[0], src.shape[1]
    out = torch.empty(n, f, dtype=src.dtype, device=src.device)
    if n and f:
        grid, bn, bf = _row_grid(n, f)
        _gather_rows_kernel[grid](src, index, out, n, f, BLOCK_N=bn, BLOCK_F=bf)
    return out
