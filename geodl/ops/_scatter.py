"""Scatter, segment and gather reductions over PyG-style ``index``/``ptr`` vectors.

Every kernel is a ``torch.library.custom_op`` in the ``geodl::`` namespace (registered by
:func:`geodl.ops._dispatch.register_kernel`) working on a canonical ``(N, F)`` layout (the public
functions move ``dim`` to the front and flatten the trailing dimensions). The torch reference is
built on torch's own ``index_add_`` / ``scatter_reduce_`` / ``segment_reduce`` / ``index_select``
(the CPU path is those ops, so it is no slower than them); the Triton kernels of
:mod:`geodl.ops._triton_scatter` run where the back-end switch picks Triton (CUDA tensors by
default) and the dtype is supported; ``GEODL_DISABLE_TRITON=1`` or
``geodl.ops.set_backend("torch")`` forces the reference, e.g. to compare the two on a GPU.
Fake implementations make ``torch.compile(fullgraph=True)``
work, and ``register_autograd`` gives every differentiable op a backward built from the other ops
(scatter-sum <-> gather, segment-sum <-> gather-csr; max/min have their own backward ops, also
Triton on CUDA), and every backward is differentiable again, so double backward works too.

Conventions (all reductions)
----------------------------
* Empty segments (no element maps to them) give ``0`` in the output (``1`` for ``mul``, as PyG and
  torch_scatter) and receive no gradient.
* Integer ``src`` works for ``scatter`` and ``segment`` (the torch reference; the Triton kernels
  take floating point); an integer ``mean`` is floor division, as torch_scatter's ``scatter_mean``.
* A multi-dimensional ``index`` (torch_scatter's broadcast) or a batched ``ptr`` (torch_scatter's
  ``segment_csr`` / ``gather_csr``) is reduced through the same kernels: a broadcast index makes
  every element its own row with a group id per (target, column); batched pointers are
  concatenated into one, offset by the rows of each batch.
  For ``max``/``min`` their arg index is ``N`` (the size of ``src`` along ``dim``), an
  out-of-range sentinel, so ``torch.cat([src, pad])[arg]`` works.
* ``max``/``min`` ties: the gradient of a group is **split evenly** among its elements equal to
  the result (as torch's ``scatter_reduce``/``segment_reduce`` do). Unlike "all to the arg
  element", this keeps gradients permutation-equivariant when values tie (e.g. ReLU zeros), which
  geodl's equivariance tests rely on. The arg index (``return_arg=True``) is the **lowest
  position** among the ties, on every back end.
  NaN inputs: on the torch path they propagate to their group's value; on the Triton path the
  value is unspecified; the arg index is unspecified on both.
* Empty inputs are normal: zero rows of ``src``, a zero-length ``index`` (a graph without edges)
  or empty segments give results of the right shape (``0`` where a group is empty) and gradients
  of the input's shape.
* Index and pointer values are checked on CPU tensors on every call (``index`` in
  ``[0, dim_size)``, ``ptr`` from 0 to the number of rows, non-decreasing; ``ValueError`` naming
  the argument). On CUDA they are checked only with ``validate=True``: without it a malformed
  index or pointer is undefined behaviour there. Both are skipped under ``torch.compile``.
* Output sizes are checked before allocating: an output above 1 GiB that does not fit in the
  memory available on its device raises ``ValueError`` naming ``dim_size`` / ``size`` (or the
  index or pointer it was read from) with the memory it would need (skipped under ``torch.compile``).
* No host syncs on CUDA unless asked: pass ``dim_size`` (``scatter``) and ``size`` (``gather_csr``);
  when they are ``None`` the size is read from the index, which syncs on CUDA. ``validate=True``
  checks index ranges / pointer monotonicity and always syncs on CUDA: use it while debugging,
  not in training loops.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import Tensor

from geodl._checks import check_alloc, check_choice, check_index, check_int, check_tensor
from geodl.ops._dispatch import public_op, register_kernel

__all__ = ["scatter", "segment", "gather", "gather_csr", "scatter_softmax", "scatter_log_softmax",
           "scatter_logsumexp", "scatter_std"]

_REDUCE = ("sum", "mean", "max", "min", "mul", "add")
_SEGMENT_REDUCE = ("sum", "mean", "max", "min", "add")

# dtypes the Triton kernels accept (atomics need 32/64-bit floats; segment/gather accumulate in fp32)
_TRITON_ATOMIC_DTYPES = (torch.float32, torch.float64)
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _long(index: Tensor) -> Tensor:
    return index if index.dtype == torch.int64 else index.long()


def _fill_empty(out: Tensor, nonempty: Tensor) -> Tensor:
    """Zero the rows of ``out`` (S, F) whose ``nonempty`` (S,) flag is false."""
    return torch.where(nonempty.unsqueeze(1), out, torch.zeros((), dtype=out.dtype, device=out.device))


def _empty_arg(src: Tensor) -> Tensor:
    return torch.empty(0, dtype=torch.int64, device=src.device)


# --------------------------------------------------------------------------- torch reference path
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _ref_scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    if src.dtype in _LOW_PRECISION:  # accumulate in fp32, like the Triton kernels
        return _ref_scatter_sum(src.float(), index, dim_size).to(src.dtype)
    return src.new_zeros(dim_size, src.shape[1]).index_add_(0, index, src)


def _ref_counts(index: Tensor, dim_size: int) -> Tensor:
    ones = torch.ones(index.shape[0], dtype=torch.int64, device=index.device)
    return torch.zeros(dim_size, dtype=torch.int64, device=index.device).index_add_(0, index, ones)


def _ref_arg(src: Tensor, index: Tensor, out: Tensor) -> Tensor:
    """Lowest position among the elements equal to their group's max/min (``N`` when empty)."""
    n, f = src.shape
    idx = _long(index).unsqueeze(1).expand(n, f)
    hit = src == out.gather(0, idx)
    pos = torch.arange(n, device=src.device).unsqueeze(1).expand(n, f)
    pos = torch.where(hit, pos, n)
    arg = torch.full(out.shape, n, dtype=torch.int64, device=src.device)
    return arg.scatter_reduce_(0, idx, pos, "amin", include_self=True)


def _ref_scatter_minmax(src: Tensor, index: Tensor, dim_size: int, reduce: str,
                        with_arg: bool) -> tuple[Tensor, Tensor]:
    n, f = src.shape
    idx = _long(index).unsqueeze(1).expand(n, f)
    out = src.new_zeros(dim_size, f).scatter_reduce_(0, idx, src, "a" + reduce, include_self=False)
    # include_self=False leaves empty rows at their initial 0: the documented fill value.
    if not with_arg:
        return out, _empty_arg(src)
    return out, _ref_arg(src, index, out)


def _divide_by_counts(total: Tensor, counts: Tensor) -> Tensor:
    """``total`` (S, F) / ``counts`` (S,) clamped to >= 1, dividing in fp32 (fp64) for low precision;
    integers: floor division in their own dtype (torch_scatter's integer ``scatter_mean``)."""
    if not total.is_floating_point():
        return torch.div(total, counts.clamp(min=1).unsqueeze(1), rounding_mode="floor").to(total.dtype)
    wide = torch.float64 if total.dtype == torch.float64 else torch.float32
    return (total / counts.clamp(min=1).to(wide).unsqueeze(1)).to(total.dtype)


def _segment_ids(ptr: Tensor, n: int) -> Tensor:
    """The segment of each of the ``n`` rows covered by ``ptr`` (S + 1,): an int64 index (n,)."""
    return torch.repeat_interleave(torch.arange(ptr.shape[0] - 1, device=ptr.device), ptr[1:] - ptr[:-1],
                                   output_size=n)


def _ref_segment(src: Tensor, ptr: Tensor, reduce: str) -> Tensor:
    if reduce == "mean":  # sum / count: faster than torch's mean kernel, and 0 for empty segments
        return _divide_by_counts(_ref_segment(src, ptr, "sum"), ptr[1:] - ptr[:-1])
    if not src.is_floating_point():  # torch's segment_reduce is floating point only: scatter by segment id
        ids, num = _segment_ids(ptr, src.shape[0]), ptr.shape[0] - 1
        if reduce == "sum":
            return _ref_scatter_sum(src, ids, num)
        return _ref_scatter_minmax(src, ids, num, reduce, False)[0]
    if reduce == "sum" and src.dtype in _LOW_PRECISION:  # accumulate in fp32, like the Triton kernel
        return _ref_segment(src.float(), ptr, "sum").to(src.dtype)
    return torch.segment_reduce(src, reduce, offsets=ptr, axis=0, unsafe=True)


def _ref_gather_csr(src: Tensor, ptr: Tensor, size: int) -> Tensor:
    return torch.repeat_interleave(src, ptr[1:] - ptr[:-1], dim=0, output_size=size)


def _ref_scatter_minmax_backward(grad: Tensor, src: Tensor, index: Tensor, out: Tensor, reduce: str) -> Tensor:
    """``grad`` (S, F) split evenly among the elements of ``src`` (N, F) equal to their group's ``out``."""
    hit = src == out.index_select(0, index)
    ties = torch.zeros(out.shape, dtype=grad.dtype, device=grad.device).index_add_(0, index, hit.to(grad.dtype))
    share = (grad / ties.clamp(min=1)).index_select(0, index)
    return torch.where(hit, share, torch.zeros((), dtype=share.dtype, device=share.device))


def _ref_segment_minmax_backward(grad: Tensor, src: Tensor, ptr: Tensor, out: Tensor, reduce: str) -> Tensor:
    """As :func:`_ref_scatter_minmax_backward` for sorted segments: torch's own fused kernel."""
    return torch.ops.aten._segment_reduce_backward(grad, out, src, reduce, offsets=ptr, axis=0)


def _ref_segment_minmax(src: Tensor, ptr: Tensor, reduce: str, with_arg: bool) -> tuple[Tensor, Tensor]:
    counts = ptr[1:] - ptr[:-1]
    nonempty = counts > 0
    out = _fill_empty(_ref_segment(src, ptr, reduce), nonempty)
    if not with_arg:
        return out, _empty_arg(src)
    # lowest row equal to its segment's result, as a segment min over positions (contiguous, so
    # faster than a scatter); positions are exact in float32 up to 2**24 rows, else float64
    n = src.shape[0]
    hit = src == _ref_gather_csr(out, ptr, n)
    pdtype = torch.float32 if n <= 2**24 else torch.float64
    pos = torch.arange(n, dtype=pdtype, device=src.device).unsqueeze(1)
    pos = torch.where(hit, pos, torch.tensor(float(n), dtype=pdtype, device=src.device))
    arg = _ref_segment(pos, ptr, "min")
    return out, torch.where(nonempty.unsqueeze(1), arg, float(n)).long()  # empty: +inf -> N


# --------------------------------------------------------------------------- custom ops
def _gather_rows_ref(src: Tensor, index: Tensor) -> Tensor:
    return src.index_select(0, index)


def _triton_scatter():
    from geodl.ops import _triton_scatter  # imports triton: only when a Triton kernel runs

    return _triton_scatter


def _kernel_op(name: str, ref, fake, triton_call, dtypes=_TRITON_DTYPES):
    """Register ``geodl::name`` (see :func:`geodl.ops._dispatch.register_kernel`): ``ref`` is the
    torch reference, ``triton_call(module, *args)`` launches the kernel of
    :mod:`geodl.ops._triton_scatter` where Triton supports the first argument's dtype."""
    return register_kernel(name, ref, fake=fake, triton=lambda *args: triton_call(_triton_scatter(), *args),
                           dtypes=dtypes)


def _fake_minmax(src, num_out, with_arg):
    arg = src.new_empty((num_out, src.shape[1]) if with_arg else (0,), dtype=torch.int64)
    return src.new_empty(num_out, src.shape[1]), arg


# src[index] (S, F) -> (N, F)  and its adjoint, the scatter-sum (N, F) -> (dim_size, F)
_gather_rows = _kernel_op("gather_rows", _gather_rows_ref,
                          lambda src, index: src.new_empty(index.shape[0], src.shape[1]),
                          lambda T, *a: T.gather_rows(*a))
_scatter_sum = _kernel_op("scatter_sum", _ref_scatter_sum,
                          lambda src, index, dim_size: src.new_empty(dim_size, src.shape[1]),
                          lambda T, *a: T.scatter_sum(*a), _TRITON_ATOMIC_DTYPES)
# max/min per target row and (with_arg) the arg position (S, F); an empty arg otherwise
_scatter_minmax = _kernel_op("scatter_minmax", _ref_scatter_minmax,
                             lambda src, index, dim_size, reduce, with_arg: _fake_minmax(src, dim_size, with_arg),
                             lambda T, *a: T.scatter_minmax(*a), _TRITON_ATOMIC_DTYPES)
# sorted (CSR) counterparts: segment sum/mean, segment max/min (+ arg), and gather_csr
_segment_sum_mean = _kernel_op("segment_sum_mean", _ref_segment,
                               lambda src, ptr, reduce: src.new_empty(ptr.shape[0] - 1, src.shape[1]),
                               lambda T, *a: T.segment_reduce(*a)[0])
_segment_minmax = _kernel_op("segment_minmax", _ref_segment_minmax,
                             lambda src, ptr, reduce, with_arg: _fake_minmax(src, ptr.shape[0] - 1, with_arg),
                             lambda T, *a: T.segment_reduce(*a))
_gather_csr = _kernel_op("gather_csr", _ref_gather_csr,
                         lambda src, ptr, size: src.new_empty(size, src.shape[1]),
                         lambda T, *a: T.gather_csr(*a))


# max/min backward: grad split evenly among the elements equal to their group's result
_scatter_minmax_backward = _kernel_op(
    "scatter_minmax_backward", _ref_scatter_minmax_backward,
    lambda grad, src, index, out, reduce: torch.empty_like(src),
    lambda T, grad, src, index, out, reduce: T.scatter_minmax_backward(grad, src, index, out),
    _TRITON_ATOMIC_DTYPES)
_segment_minmax_backward = _kernel_op(
    "segment_minmax_backward", _ref_segment_minmax_backward,
    lambda grad, src, ptr, out, reduce: torch.empty_like(src),
    lambda T, grad, src, ptr, out, reduce: T.segment_minmax_backward(grad, src, ptr, out))


# autograd: every backward is itself differentiable, so double backward works (gradient penalties, forces)
def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])  # index or ptr
    ctx.num_rows = inputs[0].shape[0]
    ctx.extra = inputs[2] if len(inputs) > 2 else None  # reduce (segment) or output size


def _gather_rows_bwd(ctx, grad):
    (index,) = ctx.saved_tensors
    return _scatter_sum(grad.contiguous(), index, ctx.num_rows), None


def _scatter_sum_bwd(ctx, grad):
    (index,) = ctx.saved_tensors
    return _gather_rows(grad.contiguous(), index), None, None


def _segment_bwd(ctx, grad):
    (ptr,) = ctx.saved_tensors
    if ctx.extra == "mean":
        counts = (ptr[1:] - ptr[:-1]).clamp(min=1).to(grad.dtype)
        grad = grad / counts.unsqueeze(1)
    return _gather_csr(grad.contiguous(), ptr, ctx.num_rows), None, None


def _gather_csr_bwd(ctx, grad):
    (ptr,) = ctx.saved_tensors
    return _segment_sum_mean(grad.contiguous(), ptr, "sum"), None, None


def _save_minmax(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1], output[0])  # src, index or ptr, result
    ctx.reduce = inputs[-2]
    ctx.num_inputs = len(inputs)


def _scatter_minmax_bwd(ctx, grad, grad_arg):
    src, index, out = ctx.saved_tensors
    grad_src = _scatter_minmax_backward(grad.contiguous(), src, index, out, ctx.reduce)
    return (grad_src,) + (None,) * (ctx.num_inputs - 1)


def _segment_minmax_bwd(ctx, grad, grad_arg):
    src, ptr, out = ctx.saved_tensors
    grad_src = _segment_minmax_backward(grad.contiguous(), src, ptr, out, ctx.reduce)
    return (grad_src,) + (None,) * (ctx.num_inputs - 1)


def _save_minmax_backward(ctx, inputs, output):
    ctx.save_for_backward(*inputs[1:4])  # src, index or ptr, result
    ctx.grad_shape = inputs[0].shape


def _minmax_double_backward(ctx, gg, sorted_input: bool):
    """The max/min backward is linear in ``grad`` (and locally constant in ``src``): its adjoint
    sums ``gg`` over each group's tied elements and divides by their count."""
    src, idx, out = ctx.saved_tensors
    if sorted_input:  # ptr -> segment id of each row
        idx = _segment_ids(idx, src.shape[0])
    hit = src == out.index_select(0, idx)
    zeros = gg.new_zeros(ctx.grad_shape)
    ties = zeros.index_add(0, idx, hit.to(gg.dtype)).clamp(min=1)
    g_grad = zeros.index_add(0, idx, torch.where(hit, gg, torch.zeros((), dtype=gg.dtype, device=gg.device)))
    return g_grad / ties, None, None, None, None


_scatter_minmax_backward.register_autograd(lambda ctx, gg: _minmax_double_backward(ctx, gg, False),
                                           setup_context=_save_minmax_backward)
_segment_minmax_backward.register_autograd(lambda ctx, gg: _minmax_double_backward(ctx, gg, True),
                                           setup_context=_save_minmax_backward)
_gather_rows.register_autograd(_gather_rows_bwd, setup_context=_save_inputs)
_scatter_sum.register_autograd(_scatter_sum_bwd, setup_context=_save_inputs)
_segment_sum_mean.register_autograd(_segment_bwd, setup_context=_save_inputs)
_gather_csr.register_autograd(_gather_csr_bwd, setup_context=_save_inputs)
_scatter_minmax.register_autograd(_scatter_minmax_bwd, setup_context=_save_minmax)
_segment_minmax.register_autograd(_segment_minmax_bwd, setup_context=_save_minmax)


# --------------------------------------------------------------------------- argument handling
def _to_rows(name: str, src, dim: int, floating: bool = False):
    """Check ``src`` and view it as (N, F) with ``dim`` first; return (rows, dim, trailing shape)."""
    check_tensor(name, src, floating=floating)
    if src.dim() == 0:
        raise ValueError(f"{name}: expected at least one dimension, got a scalar")
    dim = check_int("dim", dim)  # not a bool, not None
    if not -src.dim() <= dim < src.dim():
        raise ValueError(f"dim: expected a value in [{-src.dim()}, {src.dim()}), got {dim}")
    dim = dim % src.dim()
    moved = src.movedim(dim, 0)
    rest = tuple(moved.shape[1:])
    width = 1
    for size in rest:  # not reshape(N, -1): that is ambiguous (an error) when N == 0
        width *= size
    return moved.reshape(moved.shape[0], width).contiguous(), dim, rest


def _from_rows(out: Tensor, dim: int, rest: tuple) -> Tensor:
    return out.reshape((out.shape[0],) + rest).movedim(0, dim)


def _reads_values(t: Tensor, validate: bool) -> bool:
    """Whether to check index/pointer values: always on CPU (cheap), on other devices only with
    ``validate=True`` (a host sync), never while ``torch.compile`` traces."""
    return (validate or t.device.type == "cpu") and not torch.compiler.is_compiling()


def _check_device(name: str, t: Tensor, src: Tensor) -> None:
    if t.device != src.device:
        raise ValueError(f"{name}: expected a tensor on {src.device} (the device of src), got {t.device}")


def _check_index(index, rows: Tensor, dim_size, validate: bool, row_bytes: int, elem_bytes: int,
                 width: int | None = None) -> int:
    """``dim_size`` checked (or read from ``index``) against what a (dim_size, width) output needs
    (``width``: the columns of ``rows`` unless given)."""
    n = rows.shape[0]
    width = rows.shape[1] if width is None else width
    check_index("index", index)
    if index.dim() != 1:
        raise ValueError(f"index: expected a 1-D tensor, got shape {tuple(index.shape)}")
    if index.shape[0] != n:
        raise ValueError(f"index: expected {n} entries (the size of src along dim), got {index.shape[0]}")
    _check_device("index", index, rows)
    values = _reads_values(index, validate)
    if dim_size is None:
        if not n:
            return 0
        if values:
            lo, hi = (int(v) for v in torch.aminmax(index))
            if lo < 0:
                raise ValueError(f"index: values must be non-negative, got a minimum of {lo}")
            dim_size = hi + 1
        else:
            dim_size = int(index.max()) + 1  # host sync, documented
        check_alloc("index", f"a maximum of {dim_size - 1}", dim_size, width, rows.dtype, rows.device,
                    row_bytes, elem_bytes)
        return dim_size
    dim_size = check_int("dim_size", dim_size, min=0)
    check_alloc("dim_size", dim_size, dim_size, width, rows.dtype, rows.device, row_bytes, elem_bytes)
    if values:
        check_index("index", index, dim_size)
    return dim_size


class _Groups(NamedTuple):
    """``src`` as grouped rows: ``rows`` (M, F) with group ``index`` (M,) among ``dim_size`` groups.

    A 1-D ``index`` gives ``rows`` = ``src`` with ``dim`` first and the trailing dimensions
    flattened (M = N) and ``dim_size`` = ``groups`` = S. An ``index`` that varies along other
    dimensions too (torch_scatter's broadcast ``index``) makes every element its own row
    (M = N * R, F = 1, R the product of the trailing sizes): element ``(n, r)`` goes to group
    ``index[n, r] * R + r`` of ``dim_size`` = S * R (``width`` = R).
    """

    rows: Tensor
    index: Tensor
    dim_size: int
    groups: int
    dim: int
    rest: tuple
    width: int | None
    n: int


def _group_out(g: _Groups, out: Tensor) -> Tensor:
    """A per-group result (g.dim_size, F) as (..., S, ...)."""
    return _from_rows(out if g.width is None else out.reshape(g.groups, g.width), g.dim, g.rest)


def _element_out(g: _Groups, out: Tensor) -> Tensor:
    """A per-element result (M, F) in the shape of ``src``."""
    return _from_rows(out if g.width is None else out.reshape(g.n, g.width), g.dim, g.rest)


def _broadcast_index(index: Tensor, src: Tensor, dim: int) -> Tensor:
    """A multi-dimensional ``index`` expanded to ``src``'s shape (torch_scatter's rule: trailing
    dimensions of size 1 are appended, then size-1 dimensions broadcast), with ``dim`` first;
    a 1-D index when it is constant along every other dimension."""
    if index.dim() > src.dim():
        raise ValueError(f"index: expected at most {src.dim()} dimensions (those of src), got shape "
                         f"{tuple(index.shape)}")
    view = index.reshape(tuple(index.shape) + (1,) * (src.dim() - index.dim()))
    try:
        full = view.expand(src.shape)
    except RuntimeError:
        raise ValueError(f"index: shape {tuple(index.shape)} does not broadcast to the shape of src "
                         f"{tuple(src.shape)} (trailing dimensions are appended, then size-1 dimensions "
                         "broadcast)") from None
    moved = full.movedim(dim, 0)
    if moved.numel() and all(st == 0 or sz == 1 for st, sz in zip(moved.stride()[1:], moved.shape[1:])):
        return moved[(slice(None),) + (0,) * (moved.dim() - 1)]  # the same target in every column
    return moved


def _grouped(src, index, dim: int, dim_size, validate: bool, floating: bool = False, row_bytes: int = 0,
             elem_bytes: int = 0) -> _Groups:
    """Checked grouped rows of ``src`` (see :class:`_Groups`) with ``dim_size`` checked or read from
    ``index`` (``row_bytes``, ``elem_bytes``: bookkeeping per output row / element, see
    :func:`check_alloc`)."""
    rows, dim, rest = _to_rows("src", src, dim, floating)
    check_index("index", index)
    if index.dim() > 1:
        index = _broadcast_index(index, src, dim)
    if index.dim() == 1:
        dim_size = _check_index(index, rows, dim_size, validate, row_bytes, elem_bytes)
        return _Groups(rows, index, dim_size, dim_size, dim, rest, None, rows.shape[0])
    n, r = rows.shape
    flat_rows = rows.reshape(n * r, 1)
    flat_index = index.reshape(n * r)
    dim_size = _check_index(flat_index, flat_rows, dim_size, validate, row_bytes, elem_bytes, width=r)
    groups = (index.reshape(n, r).long() * r + torch.arange(r, device=index.device)).reshape(n * r)
    return _Groups(flat_rows, groups, dim_size * r, dim_size, dim, rest, r, n)


def _check_ptr(ptr, n: int, validate: bool, what: str = "the number of rows of src", batched: bool = False) -> Tensor:
    """Check a CSR pointer (S + 1,) over ``n`` rows; ``batched``: one pointer per row of ``ptr``
    (..., S + 1), each checked the same way."""
    check_index("ptr", ptr)
    if (ptr.dim() != 1 and not batched) or ptr.dim() < 1 or ptr.shape[-1] < 1:
        need = "a tensor" if batched else "a 1-D tensor"
        raise ValueError(f"ptr: expected {need} with at least one entry, got shape {tuple(ptr.shape)}")
    if _reads_values(ptr, validate) and ptr.numel():
        rows = ptr.reshape(-1, ptr.shape[-1])
        at = "ptr[0]" if ptr.dim() == 1 else "ptr[..., 0]"
        first, last = rows[:, 0], rows[:, -1]
        if bool((first != 0).any()):
            raise ValueError(f"ptr: expected {at} == 0, got {int(first[first != 0][0])}")
        if bool((last != n).any()):
            at = "ptr[-1]" if ptr.dim() == 1 else "ptr[..., -1]"
            raise ValueError(f"ptr: expected {at} == {n} ({what}), got {int(last[last != n][0])}")
        if rows.shape[1] > 1 and bool((rows[:, 1:] < rows[:, :-1]).any()):
            raise ValueError("ptr: expected non-decreasing offsets, got a decreasing step")
    return ptr


def _flat_ptr(ptr: Tensor, n: int) -> Tensor:
    """Batched pointers (B, S + 1), each over ``n`` rows, as one pointer (B * S + 1,) over B * n rows."""
    b = ptr.shape[0]
    offsets = torch.arange(b, device=ptr.device).unsqueeze(1) * n
    return torch.cat([(ptr[:, :-1].long() + offsets).reshape(-1),
                      torch.full((1,), b * n, dtype=torch.int64, device=ptr.device)])


def _batched_ptr(src: Tensor, ptr: Tensor, validate: bool, n: int | None = None, what: str = "the number of rows of src"):
    """torch_scatter's batched ``indptr`` (..., S + 1) whose leading dimensions match (or broadcast
    to) those of ``src``: returns (leading shape, dim, pointers (B, S + 1) checked over ``n`` rows
    (``src``'s size along ``dim`` unless given))."""
    check_index("ptr", ptr)
    k = ptr.dim() - 1
    if src.dim() < ptr.dim():
        raise ValueError(f"ptr: expected at most {src.dim()} dimensions (those of src), got shape {tuple(ptr.shape)}")
    lead = tuple(src.shape[:k])
    try:
        full = ptr.expand(lead + (ptr.shape[-1],))
    except RuntimeError:
        raise ValueError(f"ptr: leading dimensions {tuple(ptr.shape[:-1])} do not match those of src {lead}") from None
    _check_device("ptr", ptr, src)
    b = 1
    for size in lead:
        b *= size
    full = full.reshape(b, ptr.shape[-1])
    _check_ptr(full, src.shape[k] if n is None else n, validate, what, batched=True)
    return lead, k, full


# --------------------------------------------------------------------------- public functions
@public_op('scatter', kernels=('scatter_sum', 'scatter_minmax', 'segment_sum_mean', 'gather_rows'))
def scatter(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None, reduce: str = "sum",
            *, deterministic: bool = False, validate: bool = False, return_arg: bool = False):
    """Reduce the slices of ``src`` along ``dim`` into the groups given by ``index``.

    ``out[..., i, ...] = reduce(src[..., j, ...] for j with index[j] == i)``, as in PyG's
    ``scatter`` and torch_scatter's ``scatter``. Empty groups give ``0`` (and no gradient), ``1``
    for ``mul`` (as both peers).

    Parameters
    ----------
    src : Tensor, shape (..., N, ...)
        Values (floating point or integer); ``N`` is the size along ``dim``.
    index : Tensor, shape (N,) or broadcastable to the shape of ``src``, int64 or int32
        Target group of each slice. A 1-D index runs along ``dim`` and is broadcast over the
        other dimensions of ``src``. A multi-dimensional index follows torch_scatter: trailing
        dimensions of size 1 are appended, size-1 dimensions broadcast, and each element of
        ``src`` goes to the group its own entry names (``torch.scatter_reduce`` for an index of
        ``src``'s shape); every element is then reduced on its own, which is slower than a 1-D
        index, unless the index is constant along the other dimensions.
    dim : int
        Dimension of ``src`` that ``index`` runs along.
    dim_size : int, optional
        Number of groups ``S``. Pass it in hot paths: ``None`` reads ``index.max() + 1``, which
        forces a host sync on CUDA. An output that would not fit in the memory available on the
        device raises ``ValueError`` before anything is allocated.
    reduce : {"sum", "mean", "max", "min", "mul", "add"}
        Reduction (``"add"`` is ``"sum"``). ``max``/``min`` split a group's gradient evenly among
        tied elements. ``mul`` uses ``torch.scatter_reduce`` (``prod``) on every device. The
        ``mean`` of integers is floor division of the sum by the count, as torch_scatter's
        ``scatter_mean`` (PyG returns floats).
    deterministic : bool
        For ``sum``/``mean``: sort ``index`` (stable) and reduce segments, so the result is
        bitwise reproducible on CUDA (atomics are not). Costs a sort. ``max``/``min`` are
        reproducible anyway; ``mul`` on CUDA is not (it is ignored there).
    validate : bool
        Check that ``index`` lies in ``[0, dim_size)`` (raises ``ValueError``) on CUDA too. This
        reads the index on the host, i.e. syncs on CUDA; without it, out-of-range indices are
        undefined behaviour on CUDA. CPU tensors are always checked (skipped under ``torch.compile``).
    return_arg : bool
        For ``max``/``min``: also return the position along ``dim`` of the selected element,
        the lowest among ties (``N`` for empty groups). Costs a second pass.

    Returns
    -------
    Tensor, shape (..., S, ...), or (values, arg) with ``arg`` int64 of the same shape.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import scatter
    >>> src = torch.tensor([1.0, 2.0, 3.0, 4.0])
    >>> index = torch.tensor([0, 2, 0, 2])
    >>> scatter(src, index, dim_size=4)
    tensor([4., 0., 6., 0.])
    >>> scatter(src, index, dim_size=3, reduce="max", return_arg=True)
    (tensor([3., 0., 4.]), tensor([2, 4, 3]))
    >>> scatter(src, index, dim_size=3, reduce="mul")  # an empty group's product is 1
    tensor([3., 1., 8.])
    >>> scatter(torch.tensor([[1, 2], [3, 4]]), torch.tensor([[0, 1], [1, 1]]))  # per-element index
    tensor([[1, 0],
            [3, 6]])
    """
    reduce = _reduce_name(reduce, _REDUCE)
    if return_arg and reduce not in ("max", "min"):
        raise ValueError(f"return_arg: only available for reduce='max' or 'min', got reduce={reduce!r}")
    counted = reduce in ("mean", "max", "min") or deterministic  # an int64 count per group
    g = _grouped(src, index, dim, dim_size, validate, row_bytes=8 if counted else 0,
                 elem_bytes=8 if return_arg else 0)
    rows, index, dim_size = g.rows, g.index, g.dim_size
    if reduce in ("max", "min"):
        out, arg = _scatter_minmax(rows, index, dim_size, reduce, return_arg)
        out = _group_out(g, out)
        if not return_arg:
            return out
        if g.width:  # one row per element: position n * R + r (N * R when empty) -> n
            arg = torch.div(arg, g.width, rounding_mode="floor")
        return out, _group_out(g, arg)
    if reduce == "mul":  # an empty group's product is 1, as PyG and torch_scatter
        idx = _long(index).unsqueeze(1).expand_as(rows)
        out = rows.new_ones(dim_size, rows.shape[1]).scatter_reduce(0, idx, rows, "prod", include_self=True)
        return _group_out(g, out)
    if deterministic:
        perm = torch.argsort(index, stable=True)
        counts = _ref_counts(_long(index), dim_size)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        out = _segment_sum_mean(_gather_rows(rows, perm), ptr, reduce)
    else:
        out = _scatter_sum(rows, index, dim_size)
        if reduce == "mean":
            out = _divide_by_counts(out, _ref_counts(_long(index), dim_size))
    return _group_out(g, out)


@public_op('segment', kernels=('segment_sum_mean', 'segment_minmax'))
def segment(src: Tensor, ptr: Tensor, reduce: str = "sum", *, validate: bool = False,
            return_arg: bool = False):
    """Reduce consecutive row ranges of ``src``: ``out[s] = reduce(src[ptr[s]:ptr[s+1]])``.

    The sorted (CSR) counterpart of :func:`scatter` along dimension 0: deterministic on every
    device and faster than the unsorted scatter. Empty ranges give ``0`` and no gradient. A
    batched ``ptr`` (..., S + 1) reduces along its last dimension, as torch_scatter's
    ``segment_csr``: ``out[b, s] = reduce(src[b, ptr[b, s]:ptr[b, s+1]])``.

    Parameters
    ----------
    src : Tensor, shape (N, ...) or (B..., N, ...), floating point or integer
    ptr : Tensor, shape (S + 1,) or (B..., S + 1), int64 or int32
        Non-decreasing offsets with ``ptr[0] == 0`` and ``ptr[-1] == N`` (PyG's ``batch.ptr``);
        batched: one pointer per leading index ``B...``, whose sizes match those of ``src`` (or
        are 1, broadcast), each from 0 to ``N``.
    reduce : {"sum", "mean", "max", "min", "add"}
        ``max``/``min`` split a segment's gradient evenly among tied elements; ``"add"`` is
        ``"sum"``; the ``mean`` of integers is floor division (as :func:`scatter`).
    validate : bool
        Check the pointer (``ptr[0] == 0``, ``ptr[-1] == N``, non-decreasing; ``ValueError``) on
        CUDA too, which syncs; without it a malformed ``ptr`` is undefined behaviour on CUDA. CPU
        tensors are always checked (skipped under ``torch.compile``).
    return_arg : bool
        For ``max``/``min``: also return the row of the selected element (``N`` for empty ranges).

    Returns
    -------
    Tensor, shape (S, ...) (batched: (B..., S, ...)), or (values, arg); ``arg`` counts rows
    along the reduced dimension (``N`` for empty ranges).

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import segment
    >>> src = torch.tensor([[1.0], [2.0], [5.0]])
    >>> segment(src, torch.tensor([0, 2, 2, 3]), "mean")
    tensor([[1.5000],
            [0.0000],
            [5.0000]])
    >>> segment(torch.tensor([[1, 3, 5], [2, 4, 6]]), torch.tensor([[0, 2, 3], [0, 1, 3]]))  # batched
    tensor([[ 4,  5],
            [ 2, 10]])
    """
    reduce = _reduce_name(reduce, _SEGMENT_REDUCE)
    if return_arg and reduce not in ("max", "min"):
        raise ValueError(f"return_arg: only available for reduce='max' or 'min', got reduce={reduce!r}")
    if isinstance(ptr, Tensor) and ptr.dim() > 1:
        return _segment_batched(src, ptr, reduce, validate, return_arg)
    rows, dim, rest = _to_rows("src", src, 0)
    _check_ptr(ptr, rows.shape[0], validate)
    _check_device("ptr", ptr, rows)
    out, arg = _segment_rows(rows, ptr, reduce, return_arg)
    out = _from_rows(out, 0, rest)
    return (out, _from_rows(arg, 0, rest)) if return_arg else out


def _reduce_name(reduce, choices) -> str:
    check_choice("reduce", reduce, choices)
    return "sum" if reduce == "add" else reduce


def _segment_rows(rows: Tensor, ptr: Tensor, reduce: str, return_arg: bool) -> tuple[Tensor, Tensor]:
    """Segment reduction of checked (N, F) ``rows`` over a checked 1-D ``ptr``: (out, arg or empty)."""
    check_alloc("ptr", f"{ptr.shape[0]} entries", ptr.shape[0] - 1, rows.shape[1], rows.dtype, rows.device,
                8, 8 if return_arg else 0)
    if reduce in ("sum", "mean"):
        return _segment_sum_mean(rows, ptr, reduce), _empty_arg(rows)
    return _segment_minmax(rows, ptr, reduce, return_arg)


def _segment_batched(src, ptr: Tensor, reduce: str, validate: bool, return_arg: bool):
    """:func:`segment` with a batched ``ptr`` (B..., S + 1): the B pointers concatenated into one."""
    check_tensor("src", src)
    lead, k, full = _batched_ptr(src, ptr, validate)
    b, n, s = full.shape[0], src.shape[k], ptr.shape[-1] - 1
    rows, _, rest = _to_rows("src", src.reshape((b * n,) + tuple(src.shape[k + 1:])), 0)
    out, arg = _segment_rows(rows, _flat_ptr(full, n), reduce, return_arg)
    out = out.reshape(lead + (s,) + rest)
    if not return_arg:
        return out
    offsets = torch.arange(b, device=arg.device).view(b, 1, 1) * n  # global row -> row within its batch
    arg = (arg.reshape(b, s, rows.shape[1]) - offsets).clamp(max=n)  # empty: B * n -> n
    return out, arg.reshape(lead + (s,) + rest)


@public_op('gather_csr', kernels=('gather_csr',))
def gather_csr(src: Tensor, ptr: Tensor, size: int | None = None, *, validate: bool = False) -> Tensor:
    """Expand per-segment rows to their elements: ``out[j] = src[s]`` for ``ptr[s] <= j < ptr[s+1]``.

    The inverse pattern of :func:`segment` (its backward is a segment sum). A batched ``ptr``
    (B..., S + 1) expands along its last dimension, as torch_scatter's ``gather_csr``.

    Parameters
    ----------
    src : Tensor, shape (S, ...) or (B..., S, ...)
    ptr : Tensor, shape (S + 1,) or (B..., S + 1), int64 or int32, non-decreasing from 0
        Batched: leading sizes match those of ``src`` (or are 1, broadcast), each row ends at ``N``.
    size : int, optional
        Number of output rows ``N = ptr[-1]``. Pass it in hot paths: ``None`` reads ``ptr[-1]``,
        a host sync on CUDA.
    validate : bool
        Check the pointer against ``size`` on CUDA too (syncs); CPU tensors are always checked
        (skipped under ``torch.compile``).

    Returns
    -------
    Tensor, shape (N, ...) (batched: (B..., N, ...))

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import gather_csr
    >>> gather_csr(torch.tensor([10.0, 20.0, 30.0]), torch.tensor([0, 2, 2, 3]))
    tensor([10., 10., 30.])
    """
    if isinstance(ptr, Tensor) and ptr.dim() > 1:
        return _gather_csr_batched(src, ptr, size, validate)
    rows, _, rest = _to_rows("src", src, 0)
    check_index("ptr", ptr)
    _check_device("ptr", ptr, rows)
    if size is None:
        size = int(ptr[-1]) if ptr.numel() else 0  # host sync, documented
        check_alloc("ptr", f"ptr[-1] = {size}", size, rows.shape[1], rows.dtype, rows.device)
    else:
        size = check_int("size", size, min=0)
        check_alloc("size", size, size, rows.shape[1], rows.dtype, rows.device)
    if ptr.dim() == 1 and ptr.shape[0] != rows.shape[0] + 1:
        raise ValueError(f"ptr: expected {rows.shape[0] + 1} entries (rows of src + 1), got {ptr.shape[0]}")
    _check_ptr(ptr, size, validate, "size, the number of output rows")
    return _from_rows(_gather_csr(rows, ptr, size), 0, rest)


def _gather_csr_batched(src, ptr: Tensor, size, validate: bool) -> Tensor:
    """:func:`gather_csr` with a batched ``ptr`` (B..., S + 1): the B pointers concatenated into one."""
    check_tensor("src", src)
    check_index("ptr", ptr)
    if size is None:
        size = int(ptr.reshape(-1)[-1]) if ptr.numel() else 0  # host sync, documented
        name, value = "ptr", f"ptr[..., -1] = {size}"
    else:
        size = check_int("size", size, min=0)
        name, value = "size", size
    lead, k, full = _batched_ptr(src, ptr, validate, n=size, what="size, the number of output rows")
    s = ptr.shape[-1] - 1
    if src.shape[k] != s:
        raise ValueError(f"ptr: expected {src.shape[k] + 1} entries along its last dimension (rows of src + 1), "
                         f"got {ptr.shape[-1]}")
    b = full.shape[0]
    rows, _, rest = _to_rows("src", src.reshape((b * s,) + tuple(src.shape[k + 1:])), 0)
    check_alloc(name, value, b * size, rows.shape[1], rows.dtype, rows.device)
    return _gather_csr(rows, _flat_ptr(full, size), b * size).reshape(lead + (size,) + rest)


@public_op('gather', kernels=('gather_rows',))
def gather(src: Tensor, index: Tensor, dim: int = 0, *, validate: bool = False) -> Tensor:
    """Select slices of ``src`` along ``dim``: ``out[..., j, ...] = src[..., index[j], ...]``.

    ``src.index_select(dim, index)`` with a Triton kernel on CUDA; its backward is
    :func:`scatter` (sum), so it is the message-passing ``x[edge_index[0]]`` with a fast gradient.

    Parameters
    ----------
    src : Tensor, shape (..., S, ...)
    index : Tensor, shape (N,), int64 or int32, values in ``[0, S)``
    dim : int
        Dimension of ``src`` to select along.
    validate : bool
        Check that ``index`` lies in ``[0, S)`` on CUDA too (syncs; out-of-range indices are
        undefined behaviour on CUDA without it). CPU tensors are always checked (skipped under
        ``torch.compile``).

    Returns
    -------
    Tensor, shape (..., N, ...)

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import gather
    >>> gather(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([1, 1, 0]))
    tensor([[3., 4.],
            [3., 4.],
            [1., 2.]])
    """
    rows, dim, rest = _to_rows("src", src, dim)
    check_index("index", index)
    if index.dim() != 1:
        raise ValueError(f"index: expected a 1-D tensor, got shape {tuple(index.shape)}")
    _check_device("index", index, rows)
    check_alloc("index", f"{index.shape[0]} entries", index.shape[0], rows.shape[1], rows.dtype, rows.device)
    if _reads_values(index, validate):
        check_index("index", index, rows.shape[0])
    return _from_rows(_gather_rows(rows, index), dim, rest)


def _shifted_exp(rows: Tensor, index: Tensor, dim_size: int) -> tuple[Tensor, Tensor]:
    """Per-group max ``m`` (no gradient; -inf and empty groups -> 0) and ``exp(rows - m[index])``."""
    m = _scatter_minmax(rows.detach(), index, dim_size, "max", False)[0]
    m = torch.where(torch.isfinite(m), m, torch.zeros((), dtype=m.dtype, device=m.device))
    return m, torch.exp(rows - _gather_rows(m, index))


def _index_or_ptr(src: Tensor, index, ptr, dim: int, dim_size, validate: bool):
    """(index, dim_size) of the softmax family: ``index`` as given or, with ``ptr`` (which wins, as
    in PyG's ``softmax``), the segment of each slice along ``dim`` and the number of segments."""
    if ptr is None:
        if index is None:
            raise TypeError("index: expected a tensor of group indices (or ptr=), got None")
        return index, dim_size
    dim = check_int("dim", dim)
    if not -src.dim() <= dim < src.dim():
        raise ValueError(f"dim: expected a value in [{-src.dim()}, {src.dim()}), got {dim}")
    n = src.shape[dim]
    _check_ptr(ptr, n, validate, "the size of src along dim")
    _check_device("ptr", ptr, src)
    num = ptr.shape[0] - 1
    if dim_size is not None and check_int("dim_size", dim_size, min=0) != num:
        raise ValueError(f"dim_size: expected None or {num} (the segments of ptr), got {dim_size}")
    return _segment_ids(ptr, n), num


def _grouped_exp(src, index, dim: int, dim_size, validate: bool, ptr=None):
    """Checked floating ``src`` grouped by ``index`` (or ``ptr``): (groups, group max, shifted exp)."""
    check_tensor("src", src, floating=True)
    index, dim_size = _index_or_ptr(src, index, ptr, dim, dim_size, validate)
    g = _grouped(src, index, dim, dim_size, validate, floating=True, row_bytes=8,
                 elem_bytes=2 * src.dtype.itemsize)  # counts; group max and sum
    return (g,) + _shifted_exp(g.rows, g.index, g.dim_size)


_SOFTMAX_PARAMS = """src : Tensor, shape (..., N, ...), floating point
    index : Tensor, shape (N,) or broadcastable to the shape of ``src``, int64 or int32, optional
        Group of each slice along ``dim``, as in :func:`scatter`; may be ``None`` when ``ptr`` is given.
    dim, dim_size, validate
        As in :func:`scatter`; with ``ptr``, ``dim_size`` is ``None`` or the number of segments.
    ptr : Tensor, shape (S + 1,), int64 or int32, optional
        CSR offsets of sorted groups along ``dim`` instead of ``index`` (``ptr[0] == 0``,
        ``ptr[-1] == N``, non-decreasing), as PyG's ``softmax(src, index, ptr)``; when both are
        given ``ptr`` is used, as in PyG."""


@public_op('scatter_softmax', kernels=('scatter_minmax', 'gather_rows', 'scatter_sum'))
def scatter_softmax(src: Tensor, index: Tensor | None = None, dim: int = 0, dim_size: int | None = None,
                    *, ptr: Tensor | None = None, validate: bool = False) -> Tensor:
    """Softmax of ``src`` within each group of ``index`` along ``dim`` (same shape as ``src``).

    Stable: each group is shifted by its max (no gradient flows through the shift, which cancels
    exactly). A group whose entries are all ``-inf`` gives NaN, like ``torch.softmax``.

    Parameters
    ----------
    {params}

    Returns
    -------
    Tensor, shape of ``src``

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import scatter_softmax
    >>> scatter_softmax(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0, 0, 1]), dim_size=2)
    tensor([0.5000, 0.5000, 1.0000])
    >>> scatter_softmax(torch.tensor([0.0, 0.0, 1.0]), ptr=torch.tensor([0, 2, 3]))
    tensor([0.5000, 0.5000, 1.0000])
    """
    g, _, e = _grouped_exp(src, index, dim, dim_size, validate, ptr)
    out = e / _gather_rows(_scatter_sum(e, g.index, g.dim_size), g.index)
    return _element_out(g, out)


@public_op('scatter_log_softmax', kernels=('scatter_minmax', 'gather_rows', 'scatter_sum'))
def scatter_log_softmax(src: Tensor, index: Tensor | None = None, dim: int = 0, dim_size: int | None = None,
                        *, ptr: Tensor | None = None, validate: bool = False) -> Tensor:
    """Log-softmax of ``src`` within each group of ``index`` along ``dim`` (same shape as ``src``).

    ``src - logsumexp(group)``, computed as ``(src - m) - log(sum(exp(src - m)))`` with ``m`` the
    group max (no gradient through it), so it is stable and exact: no ``eps`` is added (torch_scatter
    adds ``1e-12`` to the sum). A group whose entries are all ``-inf`` gives NaN, like
    ``torch.log_softmax``. Its ``exp`` is :func:`scatter_softmax`.

    Parameters
    ----------
    {params}

    Returns
    -------
    Tensor, shape of ``src``

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import scatter_log_softmax
    >>> scatter_log_softmax(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0, 0, 1]), dim_size=2)
    tensor([-0.6931, -0.6931,  0.0000])
    """
    g, m, e = _grouped_exp(src, index, dim, dim_size, validate, ptr)
    log_sum = torch.log(_scatter_sum(e, g.index, g.dim_size))
    out = (g.rows - _gather_rows(m, g.index)) - _gather_rows(log_sum, g.index)
    return _element_out(g, out)


@public_op('scatter_logsumexp', kernels=('scatter_minmax', 'gather_rows', 'scatter_sum'))
def scatter_logsumexp(src: Tensor, index: Tensor | None = None, dim: int = 0, dim_size: int | None = None,
                      *, ptr: Tensor | None = None, validate: bool = False) -> Tensor:
    """``log(sum(exp(src)))`` per group of ``index`` along ``dim``; empty groups give ``0``.

    Stable (shifted by the group max). Its gradient is :func:`scatter_softmax`. A group whose
    entries are all ``-inf`` gives ``-inf`` (the exact value; torch_scatter returns ``0``), and no
    ``eps`` is added inside the log.

    Parameters
    ----------
    {params}

    Returns
    -------
    Tensor, shape (..., S, ...)

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import scatter_logsumexp
    >>> scatter_logsumexp(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0, 0, 2]), dim_size=3)
    tensor([0.6931, 0.0000, 1.0000])
    >>> scatter_logsumexp(torch.tensor([0.0, 0.0, 1.0]), ptr=torch.tensor([0, 2, 2, 3]))
    tensor([0.6931, 0.0000, 1.0000])
    """
    g, m, e = _grouped_exp(src, index, dim, dim_size, validate, ptr)
    s = _scatter_sum(e, g.index, g.dim_size)
    nonempty = _ref_counts(_long(g.index), g.dim_size) > 0
    out = _fill_empty(m + torch.log(s), nonempty)
    return _group_out(g, out)


@public_op('scatter_std', kernels=('scatter_sum', 'gather_rows'))
def scatter_std(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None, unbiased: bool = True,
                *, validate: bool = False) -> Tensor:
    """Standard deviation of ``src`` within each group of ``index`` along ``dim``.

    ``sqrt(sum((x - mean)**2) / (count - 1))`` per group (``/ count`` with ``unbiased=False``),
    as torch_scatter's ``scatter_std`` with its default ``unbiased=True``; ``count - 1`` is
    clamped to 1, so a group of one element gives ``0``; empty groups give ``0``. Exact: no
    ``eps`` is added to the count (torch_scatter divides by ``count - 1 + 1e-6``). Where the
    deviation is ``0`` the gradient is ``0`` (torch_scatter: NaN, the derivative of ``sqrt`` at 0).

    Parameters
    ----------
    src : Tensor, shape (..., N, ...), floating point
    index : Tensor, shape (N,) or broadcastable to the shape of ``src``, int64 or int32
        As in :func:`scatter`.
    dim, dim_size, validate
        As in :func:`scatter`.
    unbiased : bool
        Bessel's correction (divide by ``count - 1``), the default as in torch_scatter and
        ``torch.std``.

    Returns
    -------
    Tensor, shape (..., S, ...)

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import scatter_std
    >>> src, index = torch.tensor([1.0, 3.0, 2.0, 5.0]), torch.tensor([0, 0, 2, 0])
    >>> scatter_std(src, index, dim_size=3)
    tensor([2., 0., 0.])
    >>> scatter_std(src, index, dim_size=3, unbiased=False)
    tensor([1.6330, 0.0000, 0.0000])
    """
    check_tensor("src", src, floating=True)
    if not isinstance(unbiased, bool):
        raise TypeError(f"unbiased: expected a bool, got {type(unbiased).__name__}")
    g = _grouped(src, index, dim, dim_size, validate, floating=True, row_bytes=8,
                 elem_bytes=src.dtype.itemsize)  # counts; group mean
    counts = _ref_counts(_long(g.index), g.dim_size)
    mean = _divide_by_counts(_scatter_sum(g.rows, g.index, g.dim_size), counts)
    dev = g.rows - _gather_rows(mean, g.index)
    var = _divide_by_counts(_scatter_sum(dev * dev, g.index, g.dim_size), counts - 1 if unbiased else counts)
    positive = var > 0  # sqrt where var > 0 only: a zero deviation gets gradient 0, not NaN
    std = torch.where(positive, torch.where(positive, var, torch.ones_like(var)).sqrt(), torch.zeros_like(var))
    return _group_out(g, std)


for _fn in (scatter_softmax, scatter_log_softmax, scatter_logsumexp):
    _fn.__doc__ = _fn.__doc__.replace("{params}", _SOFTMAX_PARAMS)
del _fn
