"""Peer parity of the scatter family with PyG (installed) and torch_scatter (not installable here).

torch_scatter's semantics are written out as expected values: the cases below restate, in this
file's own tables, the facts of torch_scatter's test suite (``test_scatter.py``, ``test_segment.py``,
``test_gather.py``, ``composite/test_softmax.py``, ``composite/test_std.py``) and of its source
(integer ``scatter_mean`` is floor division, ``scatter_std`` is unbiased by default, ``index`` and
``indptr`` broadcast). PyG is compared directly where it runs. Deliberate differences (the table in
docs/ops.md) are asserted as geodl's behaviour, with the peer's value in a comment.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from geodl.ops import (gather_csr, scatter, scatter_log_softmax, scatter_logsumexp, scatter_softmax, scatter_std,
                       segment)

pyg = pytest.importorskip("torch_geometric.utils")

T = torch.tensor
INT_AND_FLOAT = [torch.int64, torch.int32, torch.float32, torch.float64]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- reduce="mul", "add"
def _reduced(op, want, *args, reduce, **kwargs):
    """``op(*args, reduce=reduce, **kwargs)``; for min/max with ``return_arg=True``, whose arg must be
    ``want[1]``. Returns the output and the expected values (``want[0]`` for min/max, else ``want``)."""
    if reduce in ("min", "max"):
        out, arg = op(*args, reduce=reduce, return_arg=True, **kwargs)
        assert arg.tolist() == want[1]
        return out, want[0]
    return op(*args, reduce=reduce, **kwargs), want


def test_mul_of_an_empty_group_is_one_as_pyg():
    x = torch.randn(5, 3, generator=_gen(0), dtype=torch.float64)
    index = T([0, 2, 2, 0, 4])  # groups 1 and 3 empty
    out = scatter(x, index, dim_size=6, reduce="mul")
    assert torch.equal(out, pyg.scatter(x, index, dim_size=6, reduce="mul"))
    assert torch.equal(out[[1, 3, 5]], torch.ones(3, 3, dtype=torch.float64))
    assert torch.equal(out[0], x[0] * x[3])


def test_mul_gradient():
    x = torch.randn(6, 2, generator=_gen(1), dtype=torch.float64, requires_grad=True)
    index = T([0, 1, 0, 1, 1, 3])
    assert gradcheck(lambda s: scatter(s, index, dim_size=5, reduce="mul"), (x,))


def test_add_is_sum():
    x = torch.randn(6, 2, generator=_gen(2))
    index, ptr = T([0, 1, 0, 1, 1, 3]), T([0, 2, 5, 5, 6])
    assert torch.equal(scatter(x, index, reduce="add"), scatter(x, index, reduce="sum"))
    assert torch.equal(scatter(x, index, reduce="add"), pyg.scatter(x, index, reduce="add"))
    assert torch.equal(segment(x, ptr, "add"), segment(x, ptr, "sum"))
    with pytest.raises(ValueError, match="return_arg"):
        scatter(x, index, reduce="add", return_arg=True)


@pytest.mark.parametrize("reduce", ["sum", "add", "mean", "max", "min", "mul"])
def test_matches_pyg_scatter_along_any_dim(reduce):
    x = torch.randn(3, 9, 4, generator=_gen(3), dtype=torch.float64)
    index = torch.randint(0, 6, (9,), generator=_gen(4))
    for dim_size in (None, 8):
        assert torch.equal(scatter(x, index, dim=1, dim_size=dim_size, reduce=reduce),
                           pyg.scatter(x, index, dim=1, dim_size=dim_size, reduce=reduce))


# --------------------------------------------------------------------------- integer inputs
# torch_scatter's 1-D case: src [1, 3, 2, 4, 5, 6], index [0, 1, 0, 1, 1, 3] (ptr [0, 2, 5, 5, 6]
# for the sorted version [1, 2, 3, 4, 5, 6]); means 1.5 and 4 are floored to 1 and 4 for integers.
_SCATTER_1D = {
    "sum": [3, 12, 0, 6], "mul": [2, 60, 1, 6], "mean": [1, 4, 0, 6],
    "min": ([1, 3, 0, 6], [0, 1, 6, 5]), "max": ([2, 5, 0, 6], [2, 4, 6, 5]),
}
_SEGMENT_1D = {
    "sum": [3, 12, 0, 6], "mean": [1, 4, 0, 6],
    "min": ([1, 3, 0, 6], [0, 2, 6, 5]), "max": ([2, 5, 0, 6], [1, 4, 6, 5]),
}


@pytest.mark.parametrize("dtype", INT_AND_FLOAT)
@pytest.mark.parametrize("reduce", ["sum", "mul", "mean", "min", "max"])
def test_scatter_1d_cases(dtype, reduce):
    src, index = T([1, 3, 2, 4, 5, 6]).to(dtype), T([0, 1, 0, 1, 1, 3])
    want = _SCATTER_1D[reduce]
    out, want = _reduced(scatter, want, src, index, reduce=reduce)
    if dtype.is_floating_point and reduce == "mean":
        want = [1.5, 4, 0, 6]
    assert out.dtype == dtype and out.tolist() == want


@pytest.mark.parametrize("dtype", INT_AND_FLOAT)
@pytest.mark.parametrize("reduce", ["sum", "mean", "min", "max"])
def test_segment_1d_cases_integer_too(dtype, reduce):
    src, ptr = T([1, 2, 3, 4, 5, 6]).to(dtype), T([0, 2, 5, 5, 6])
    want = _SEGMENT_1D[reduce]
    out, want = _reduced(segment, want, src, ptr, reduce=reduce)
    if dtype.is_floating_point and reduce == "mean":
        want = [1.5, 4, 0, 6]
    assert out.dtype == dtype and out.tolist() == want


def test_integer_mean_is_floor_division():
    # torch_scatter's scatter_mean: div(rounding_mode="floor") for integers; PyG returns floats
    src, index = T([-3, -4, 5, -7]), T([0, 0, 1, 3])
    assert scatter(src, index, reduce="mean").tolist() == [-4, 5, 0, -7]  # -3.5 -> -4, not -3
    assert scatter(src, index, reduce="mean", deterministic=True).tolist() == [-4, 5, 0, -7]
    assert segment(T([-3, -4, 5]), T([0, 2, 2, 3]), "mean").tolist() == [-4, 0, 5]
    big = T([2**60 + 1, 2**60 + 3])  # exact in int64 (a float division would round)
    assert scatter(big, T([0, 0]), reduce="mean").tolist() == [2**60 + 2]
    assert segment(big, T([0, 2]), "mean").tolist() == [2**60 + 2]


def test_integer_segment_with_trailing_dims_and_empty_segments():
    src = torch.randint(-50, 50, (9, 2, 3), generator=_gen(5))
    ptr = T([0, 0, 4, 4, 9, 9])
    for reduce in ("sum", "mean", "min", "max"):
        ref = segment(src.double(), ptr, reduce)
        if reduce == "mean":
            ref = torch.floor(segment(src.double(), ptr, "sum") / T([1, 4, 1, 5, 1]).double().view(5, 1, 1))
        assert torch.equal(segment(src, ptr, reduce), ref.long()), reduce
    out, arg = segment(src, ptr, "max", return_arg=True)
    _, farg = segment(src.double(), ptr, "max", return_arg=True)
    assert torch.equal(arg, farg) and bool((arg[[0, 2, 4]] == 9).all())


# --------------------------------------------------------------------------- broadcast index
# torch_scatter's multi-dimensional index cases (expected values per reduce; arg of an empty group
# is the size of src along dim).
_BCAST_CASES = [
    dict(src=[[1, 5, 3, 7, 9, 11], [2, 4, 8, 6, 10, 12]], index=[[0, 1, 0, 1, 1, 3], [0, 0, 1, 0, 1, 2]], dim=1,
         sum=[[4, 21, 0, 11], [12, 18, 12, 0]], mul=[[3, 315, 1, 11], [48, 80, 12, 1]],
         mean=[[2, 7, 0, 11], [4, 9, 12, 0]],
         min=([[1, 5, 0, 11], [2, 8, 12, 0]], [[0, 1, 6, 5], [0, 2, 5, 6]]),
         max=([[3, 9, 0, 11], [6, 10, 12, 0]], [[2, 4, 6, 5], [3, 4, 5, 6]])),
    dict(src=[[[1, 2], [5, 6], [3, 4]], [[10, 11], [7, 9], [12, 13]]], index=[[0, 1, 0], [2, 0, 2]], dim=1,
         sum=[[[4, 6], [5, 6], [0, 0]], [[7, 9], [0, 0], [22, 24]]],
         mul=[[[3, 8], [5, 6], [1, 1]], [[7, 9], [1, 1], [120, 143]]],
         mean=[[[2, 3], [5, 6], [0, 0]], [[7, 9], [0, 0], [11, 12]]],
         min=([[[1, 2], [5, 6], [0, 0]], [[7, 9], [0, 0], [10, 11]]],
              [[[0, 0], [1, 1], [3, 3]], [[1, 1], [3, 3], [0, 0]]]),
         max=([[[3, 4], [5, 6], [0, 0]], [[7, 9], [0, 0], [12, 13]]],
              [[[2, 2], [1, 1], [3, 3]], [[1, 1], [3, 3], [2, 2]]])),
    dict(src=[[1, 3], [2, 4]], index=[[0, 0], [0, 0]], dim=1,
         sum=[[4], [6]], mul=[[3], [8]], mean=[[2], [3]], min=([[1], [2]], [[0], [0]]),
         max=([[3], [4]], [[1], [1]])),
    dict(src=[[[1, 1], [3, 3]], [[2, 2], [4, 4]]], index=[[0, 0], [0, 0]], dim=1,
         sum=[[[4, 4]], [[6, 6]]], mul=[[[3, 3]], [[8, 8]]], mean=[[[2, 2]], [[3, 3]]],
         min=([[[1, 1]], [[2, 2]]], [[[0, 0]], [[0, 0]]]), max=([[[3, 3]], [[4, 4]]], [[[1, 1]], [[1, 1]]])),
]


@pytest.mark.parametrize("case", range(len(_BCAST_CASES)))
@pytest.mark.parametrize("reduce", ["sum", "add", "mul", "mean", "min", "max"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.float32])
def test_broadcast_index_cases(case, reduce, dtype, backend):
    c = _BCAST_CASES[case]
    src, index = T(c["src"]).to(dtype), T(c["index"])
    want = c["sum" if reduce == "add" else reduce]
    out, want = _reduced(scatter, want, src, index, dim=c["dim"], reduce=reduce)
    assert out.dtype == dtype and out.tolist() == want


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "mul"])
def test_same_shape_index_is_torch_scatter_reduce(reduce, backend):
    x = torch.randn(3, 10, 4, generator=_gen(6), dtype=torch.float64)
    index = torch.randint(0, 7, (3, 10, 4), generator=_gen(7))
    name = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin", "mul": "prod"}[reduce]
    init = torch.ones if reduce == "mul" else torch.zeros
    ref = init(3, 8, 4, dtype=torch.float64).scatter_reduce(1, index, x, name, include_self=reduce == "mul")
    out = scatter(x, index, dim=1, dim_size=8, reduce=reduce)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    if reduce in ("sum", "mean"):  # by sort + segment: the same groups
        torch.testing.assert_close(scatter(x, index, dim=1, dim_size=8, reduce=reduce, deterministic=True), ref,
                                   rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda s: scatter(s, index, dim=1, dim_size=8, reduce=reduce), (x.requires_grad_(),))


def test_broadcast_size_one_dims_and_constant_index():
    # torch_scatter's broadcasting test: an index (B, 1, H, W) for src (B, C, H, W) along dim 2
    x = torch.randn(2, 3, 5, 4, generator=_gen(8))
    index = torch.randint(0, 5, (2, 1, 5, 4), generator=_gen(9))
    out = scatter(x, index, dim=2, dim_size=5)
    assert out.shape == (2, 3, 5, 4)
    torch.testing.assert_close(out, torch.zeros(2, 3, 5, 4).scatter_add(2, index.expand(2, 3, 5, 4), x))
    # an index that is constant off dim is the 1-D index: the same numbers, bit for bit
    idx1 = torch.randint(0, 5, (5,), generator=_gen(10))
    for reduce in ("sum", "mean", "max", "mul"):
        assert torch.equal(scatter(x, idx1.view(1, 1, 5, 1), dim=2, reduce=reduce),
                           scatter(x, idx1, dim=2, reduce=reduce))


def test_broadcast_index_errors_and_empty():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="index"):
        scatter(x, torch.zeros(2, 3, 4, 1, dtype=torch.long), dim=1)  # more dimensions than src
    with pytest.raises(ValueError, match="index"):
        scatter(x, torch.zeros(2, 2, dtype=torch.long), dim=1)  # 2 does not broadcast to 3
    with pytest.raises(ValueError, match="index"):
        scatter(x, T([[0, 1, 2], [0, 1, 3]]), dim=1, dim_size=3)  # out of range
    with pytest.raises(ValueError, match="index"):
        scatter(x, T([[0, 1, 2], [0, -1, 2]]), dim=1)  # negative
    empty = torch.zeros(2, 0, 4, requires_grad=True)
    out = scatter(empty, torch.zeros(2, 0, 4, dtype=torch.long), dim=1, dim_size=3, reduce="max")
    assert out.shape == (2, 3, 4) and bool((out == 0).all())
    out.sum().backward()
    assert empty.grad.shape == (2, 0, 4)
    assert scatter(torch.zeros(2, 3, 0), torch.zeros(2, 3, dtype=torch.long), dim=1).shape == (2, 0, 0)


# --------------------------------------------------------------------------- batched indptr
# torch_scatter's batched segment_csr cases: indptr (B, S + 1) per leading index of src.
_SEGMENT_CASES = [
    dict(src=[[1, 3, 5, 7, 9, 11], [2, 4, 6, 8, 10, 12]], ptr=[[0, 2, 5, 5, 6], [0, 3, 5, 6, 6]],
         sum=[[4, 21, 0, 11], [12, 18, 12, 0]], mean=[[2, 7, 0, 11], [4, 9, 12, 0]],
         min=([[1, 5, 0, 11], [2, 8, 12, 0]], [[0, 2, 6, 5], [0, 3, 5, 6]]),
         max=([[3, 9, 0, 11], [6, 10, 12, 0]], [[1, 4, 6, 5], [2, 4, 5, 6]])),
    dict(src=[[[1, 2], [3, 4], [5, 6]], [[7, 9], [10, 11], [12, 13]]], ptr=[[0, 2, 3, 3], [0, 1, 1, 3]],
         sum=[[[4, 6], [5, 6], [0, 0]], [[7, 9], [0, 0], [22, 24]]],
         mean=[[[2, 3], [5, 6], [0, 0]], [[7, 9], [0, 0], [11, 12]]],
         min=([[[1, 2], [5, 6], [0, 0]], [[7, 9], [0, 0], [10, 11]]],
              [[[0, 0], [2, 2], [3, 3]], [[0, 0], [3, 3], [1, 1]]]),
         max=([[[3, 4], [5, 6], [0, 0]], [[7, 9], [0, 0], [12, 13]]],
              [[[1, 1], [2, 2], [3, 3]], [[0, 0], [3, 3], [2, 2]]])),
    dict(src=[[1, 3], [2, 4]], ptr=[[0, 2], [0, 2]],
         sum=[[4], [6]], mean=[[2], [3]], min=([[1], [2]], [[0], [0]]), max=([[3], [4]], [[1], [1]])),
    dict(src=[[[1, 1], [3, 3]], [[2, 2], [4, 4]]], ptr=[[0, 2], [0, 2]],
         sum=[[[4, 4]], [[6, 6]]], mean=[[[2, 2]], [[3, 3]]],
         min=([[[1, 1]], [[2, 2]]], [[[0, 0]], [[0, 0]]]), max=([[[3, 3]], [[4, 4]]], [[[1, 1]], [[1, 1]]])),
]
# gather_csr: per-segment rows expanded over each batch's pointer
_GATHER_CASES = [
    dict(src=[[1, 3, 5, 7], [2, 4, 6, 8]], ptr=[[0, 2, 5, 5, 6], [0, 3, 5, 6, 6]],
         out=[[1, 1, 3, 3, 3, 7], [2, 2, 2, 4, 4, 6]]),
    dict(src=[[[1, 2], [3, 4], [5, 6]], [[7, 9], [10, 11], [12, 13]]], ptr=[[0, 2, 3, 3], [0, 1, 1, 3]],
         out=[[[1, 2], [1, 2], [3, 4]], [[7, 9], [12, 13], [12, 13]]]),
    dict(src=[[1], [2]], ptr=[[0, 2], [0, 2]], out=[[1, 1], [2, 2]]),
    dict(src=[[[1, 1]], [[2, 2]]], ptr=[[0, 2], [0, 2]], out=[[[1, 1], [1, 1]], [[2, 2], [2, 2]]]),
]


@pytest.mark.parametrize("case", range(len(_SEGMENT_CASES)))
@pytest.mark.parametrize("reduce", ["sum", "add", "mean", "min", "max"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.float32])
def test_batched_segment_cases(case, reduce, dtype, backend):
    c = _SEGMENT_CASES[case]
    src, ptr = T(c["src"]).to(dtype), T(c["ptr"])
    want = c["sum" if reduce == "add" else reduce]
    out, want = _reduced(segment, want, src, ptr, reduce=reduce)
    assert out.dtype == dtype and out.tolist() == want


@pytest.mark.parametrize("case", range(len(_GATHER_CASES)))
@pytest.mark.parametrize("dtype", [torch.int64, torch.float32])
def test_batched_gather_csr_cases(case, dtype, backend):
    c = _GATHER_CASES[case]
    src, ptr = T(c["src"]).to(dtype), T(c["ptr"])
    assert gather_csr(src, ptr).tolist() == c["out"]
    n = ptr[0, -1].item()
    assert gather_csr(src, ptr, size=n).tolist() == c["out"]


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_batched_segment_matches_per_batch_and_gradients(reduce):
    x = torch.randn(3, 7, 2, generator=_gen(11), dtype=torch.float64, requires_grad=True)
    ptr = T([[0, 3, 3, 7], [0, 0, 5, 7], [0, 7, 7, 7]])
    out = segment(x, ptr, reduce)
    for b in range(3):
        assert torch.equal(out[b], segment(x[b], ptr[b], reduce))
    assert gradcheck(lambda s: segment(s, ptr, reduce), (x,))
    assert gradcheck(lambda s: gather_csr(s, ptr), (torch.randn(3, 3, 2, dtype=torch.float64, requires_grad=True),))
    # a leading size of 1 broadcasts, as torch_scatter
    one = T([[0, 2, 7]])
    assert torch.equal(segment(x, one, reduce), torch.stack([segment(x[b], one[0], reduce) for b in range(3)]))


def test_batched_ptr_errors_and_empty():
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match="ptr"):
        segment(x, T([[0, 2, 5], [0, 3, 4]]))  # second row does not end at 5
    with pytest.raises(ValueError, match="ptr"):
        segment(x, T([[0, 2, 5], [0, 4, 3]]))  # decreasing
    with pytest.raises(ValueError, match="ptr"):
        segment(x, T([[0, 2, 5], [1, 2, 5]]))  # does not start at 0
    with pytest.raises(ValueError, match="ptr"):
        segment(x, T([[0, 5], [0, 5], [0, 5]]))  # 3 pointers for 2 rows
    with pytest.raises(ValueError, match="ptr"):
        segment(x, torch.zeros(2, 5, 2, dtype=torch.long))  # more dimensions than src
    with pytest.raises(ValueError, match="ptr"):
        gather_csr(x, T([[0, 2, 5], [0, 2, 5]]))  # 3 entries for 5 rows of src
    empty = torch.zeros(2, 0, 3, requires_grad=True)
    out, arg = segment(empty, T([[0, 0, 0], [0, 0, 0]]), "max", return_arg=True)
    assert out.shape == (2, 2, 3) and bool((out == 0).all()) and bool((arg == 0).all())
    out.sum().backward()
    assert empty.grad.shape == (2, 0, 3)
    assert segment(torch.zeros(0, 4), torch.zeros(0, 3, dtype=torch.long)).shape == (0, 2)
    assert gather_csr(torch.zeros(2, 2, 3), T([[0, 0, 0], [0, 0, 0]])).shape == (2, 0, 3)


# --------------------------------------------------------------------------- softmax family, ptr=
# torch_scatter's softmax case: the groups are [0.2, 0.2], [0, -2.1, 3.2], [7], (empty), [-1, -inf]
_SM_SRC = [0.2, 0, 0.2, -2.1, 3.2, 7, -1, -math.inf]
_SM_INDEX = [0, 1, 0, 1, 1, 2, 4, 4]


def _per_group(fn, dtype=torch.float64):
    src, index = T(_SM_SRC, dtype=dtype), T(_SM_INDEX)
    out = torch.empty_like(src)
    for g in index.unique():
        m = index == g
        out[m] = fn(src[m], dim=0)
    return out


def test_softmax_and_log_softmax_cases(backend):
    src, index = T(_SM_SRC, dtype=torch.float64), T(_SM_INDEX)
    torch.testing.assert_close(scatter_softmax(src, index), _per_group(torch.softmax))
    torch.testing.assert_close(scatter_log_softmax(src, index), _per_group(torch.log_softmax))
    assert scatter_log_softmax(src, index)[-1].item() == -math.inf  # exp(-inf) = 0 in its group


def test_log_softmax_exp_is_softmax_and_gradients():
    x = torch.randn(3, 11, 2, generator=_gen(12), dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 5, (11,), generator=_gen(13))
    torch.testing.assert_close(scatter_log_softmax(x, index, dim=1).exp(), scatter_softmax(x, index, dim=1))
    assert gradcheck(lambda s: scatter_log_softmax(s, index, dim=1, dim_size=6), (x,))
    full = torch.randint(0, 4, (3, 11, 2), generator=_gen(14))  # a per-element index
    ref = torch.empty_like(x)
    for b in range(3):
        for c in range(2):
            ref[b, :, c] = scatter_log_softmax(x[b, :, c], full[b, :, c], dim_size=4)
    torch.testing.assert_close(scatter_log_softmax(x, full, dim=1), ref)
    assert gradcheck(lambda s: scatter_softmax(s, full, dim=1), (x,))


def test_log_softmax_of_only_minus_inf_is_nan_like_torch():
    out = scatter_log_softmax(T([-math.inf, -math.inf, 1.0]), T([0, 0, 1]))
    assert torch.isnan(out[:2]).all() and out[2].item() == 0.0  # torch_scatter: -inf (its eps)
    assert torch.isnan(torch.log_softmax(T([-math.inf, -math.inf]), 0)).all()


def test_softmax_with_ptr_as_pyg():
    x = torch.randn(9, 3, generator=_gen(15), dtype=torch.float64)
    ptr = T([0, 4, 4, 9])
    index = T([0, 0, 0, 0, 2, 2, 2, 2, 2])
    out = scatter_softmax(x, ptr=ptr)
    assert torch.equal(out, scatter_softmax(x, index, dim_size=3))
    torch.testing.assert_close(out, pyg.softmax(x, None, ptr), rtol=1e-14, atol=1e-15)  # PyG: + 1e-16
    assert torch.equal(scatter_softmax(x, index, ptr=ptr), out)  # both given: ptr is used, as in PyG
    # along dim=1, as PyG's softmax(src, ptr=ptr, dim=1)
    xt = x.T.contiguous()
    torch.testing.assert_close(scatter_softmax(xt, ptr=ptr, dim=1), pyg.softmax(x, None, ptr).T,
                               rtol=1e-14, atol=1e-15)  # PyG needs torch_scatter for ptr along dim 1
    assert torch.equal(scatter_log_softmax(x, ptr=ptr), scatter_log_softmax(x, index, dim_size=3))
    lse = scatter_logsumexp(x, ptr=ptr)
    assert torch.equal(lse, scatter_logsumexp(x, index, dim_size=3))
    assert torch.equal(lse[1], torch.zeros(3, dtype=torch.float64))  # the empty segment
    xg = x.clone().requires_grad_()
    assert gradcheck(lambda s: scatter_logsumexp(s, ptr=ptr), (xg,))
    assert gradcheck(lambda s: scatter_softmax(s, ptr=ptr), (xg,))


def test_softmax_ptr_errors():
    x = torch.randn(5, 2)
    with pytest.raises(TypeError, match="index"):
        scatter_softmax(x)
    with pytest.raises(TypeError, match="dim"):
        scatter_softmax(x, T([0, 0, 1, 1, 1]), T([0, 2, 5]))  # PyG's positional ptr lands on dim
    with pytest.raises(ValueError, match="ptr"):
        scatter_softmax(x, ptr=T([0, 2, 4]))  # does not end at 5
    with pytest.raises(ValueError, match="ptr"):
        scatter_logsumexp(x, ptr=T([[0, 5]]))
    with pytest.raises(ValueError, match="dim_size"):
        scatter_logsumexp(x, ptr=T([0, 2, 5]), dim_size=3)
    assert scatter_logsumexp(x, ptr=T([0, 2, 5]), dim_size=2).shape == (2, 2)
    empty = torch.zeros(0, 2, requires_grad=True)
    assert scatter_softmax(empty, ptr=T([0, 0])).shape == (0, 2)
    out = scatter_logsumexp(empty, ptr=T([0, 0, 0]))
    assert out.shape == (2, 2) and bool((out == 0).all())
    assert scatter_log_softmax(empty, torch.zeros(0, dtype=torch.long), dim_size=3).shape == (0, 2)


# --------------------------------------------------------------------------- logsumexp (kept differences)
def test_logsumexp_cases_and_kept_behaviour():
    # torch_scatter's case: groups [0.5, 0.5], [0, -2.1, 3.2], [7], (empty), [-1, -100]
    src = T([0.5, 0.5, 0.0, -2.1, 3.2, 7.0, -1.0, -100.0])
    out = scatter_logsumexp(src, T([0, 0, 1, 1, 1, 2, 4, 4]))
    for k, part in enumerate(src.split([2, 3, 1, 0, 2])):
        want = torch.logsumexp(part, 0) if part.numel() else torch.tensor(0.0)
        torch.testing.assert_close(out[k], want, rtol=1e-6, atol=1e-6)
    # a group of only -inf: -inf here (torch_scatter: 0); an empty group: 0 (both)
    out = scatter_logsumexp(T([-math.inf, -math.inf, 2.0]), T([0, 0, 2]), dim_size=3)
    assert out.tolist() == [-math.inf, 0.0, 2.0]


def test_argmax_of_empty_groups_is_n_not_a_valid_position():
    # torch_scatter: N; PyG's scatter_argmax without torch_scatter: dim_size - 1 (a real position)
    from torch_geometric.utils._scatter import scatter_argmax

    src, index = T([3.0, 1.0, 2.0]), T([0, 0, 2])
    _, arg = scatter(src, index, dim_size=5, reduce="max", return_arg=True)
    assert arg.tolist() == [0, 3, 2, 3, 3]
    assert scatter_argmax(src, index, dim_size=5).tolist() == [0, 4, 2, 4, 4]  # PyG: dim_size - 1


# --------------------------------------------------------------------------- scatter_std
def test_std_case_and_unbiased_flag(backend):
    # torch_scatter's case: each row of src to its own group along dim -1
    src = T([[2, 0, 1, 4, 3], [0, 2, 1, 3, 4]], dtype=torch.float64)
    index = T([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    std = src[0].std()
    out = scatter_std(src, index, dim=-1)
    torch.testing.assert_close(out, T([[std, 0], [0, std]], dtype=torch.float64), rtol=1e-14, atol=0)
    pop = src[0].std(unbiased=False)
    torch.testing.assert_close(scatter_std(src, index, dim=-1, unbiased=False),
                               T([[pop, 0], [0, pop]], dtype=torch.float64), rtol=1e-14, atol=0)


def test_std_matches_torch_std_per_group():
    x = torch.randn(13, 3, generator=_gen(16), dtype=torch.float64)
    index = T([0, 0, 1, 3, 3, 3, 0, 3, 1, 1, 0, 3, 5])  # groups 2 and 4 empty, 5 a single element
    for unbiased in (True, False):
        out = scatter_std(x, index, dim_size=7, unbiased=unbiased)
        for g in range(7):
            rows = x[index == g]
            want = rows.std(0, unbiased=unbiased) if len(rows) > 1 else torch.zeros(3, dtype=torch.float64)
            torch.testing.assert_close(out[g], want, rtol=1e-12, atol=1e-14)


def test_std_gradients_and_zero_deviation():
    x = torch.randn(10, 2, generator=_gen(17), dtype=torch.float64, requires_grad=True)
    index = T([0, 1, 0, 1, 1, 3, 0, 3, 1, 0])
    assert gradcheck(lambda s: scatter_std(s, index, dim_size=5), (x,))
    assert gradcheck(lambda s: scatter_std(s, index, dim_size=5, unbiased=False), (x,))
    const = torch.ones(4, 2, dtype=torch.float64, requires_grad=True)  # std 0; single elements too
    out = scatter_std(const, T([0, 0, 1, 2]), dim_size=4)
    out.sum().backward()
    assert bool((out == 0).all()) and bool((const.grad == 0).all())  # torch_scatter: NaN gradient


def test_std_errors_and_empty():
    with pytest.raises(TypeError, match="src"):
        scatter_std(T([1, 2, 3]), T([0, 0, 1]))
    with pytest.raises(TypeError, match="unbiased"):
        scatter_std(T([1.0, 2.0]), T([0, 0]), unbiased=1)
    with pytest.raises(ValueError, match="index"):
        scatter_std(T([1.0, 2.0]), T([0, 5]), dim_size=2)
    empty = torch.zeros(0, 3, requires_grad=True)
    out = scatter_std(empty, torch.zeros(0, dtype=torch.long), dim_size=2)
    out.sum().backward()
    assert out.shape == (2, 3) and bool((out == 0).all()) and empty.grad.shape == (0, 3)


# --------------------------------------------------------------------------- torch.compile
def test_new_paths_compile_fullgraph():
    def f(x, full, ptr, bptr):
        return (scatter(x, full, dim=1, dim_size=4, reduce="mean").sum()
                + segment(x, bptr, "max").sum()
                + scatter_log_softmax(x, ptr=ptr, dim=1).sum()
                + scatter_std(x, full, dim=1, dim_size=4).sum())

    x = torch.randn(2, 6, 3, generator=_gen(18))
    full = torch.randint(0, 4, (2, 6, 3), generator=_gen(19))
    ptr, bptr = T([0, 2, 6]), T([[0, 3, 6], [0, 1, 6]])
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, full, ptr, bptr), f(x, full, ptr, bptr))


# --------------------------------------------------------------------------- the Triton path (interpreter)
_TRITON_NEW_PATHS = """
import torch
from geodl.ops import (gather_csr, record_backends, scatter, scatter_log_softmax, scatter_logsumexp, scatter_softmax,
                       scatter_std, segment, use_backend)
g = torch.Generator().manual_seed(0)
x = torch.randn(3, 7, 2, generator=g, dtype=torch.float64)
full = torch.randint(0, 4, (3, 7, 2), generator=g)
ptr, bptr = torch.tensor([0, 3, 3, 7]), torch.tensor([[0, 3, 3, 7], [0, 0, 5, 7], [0, 7, 7, 7]])
calls = {
    "std": lambda s: scatter_std(s, full, dim=1, dim_size=5),
    "log_softmax": lambda s: scatter_log_softmax(s, ptr=ptr, dim=1),
    "softmax": lambda s: scatter_softmax(s, full, dim=1),
    "logsumexp": lambda s: scatter_logsumexp(s, ptr=ptr, dim=1),
    "max": lambda s: scatter(s, full, dim=1, dim_size=5, reduce="max", return_arg=True),
    "mean": lambda s: scatter(s, full, dim=1, dim_size=5, reduce="mean"),
    "segment_min": lambda s: segment(s, bptr, "min", return_arg=True),
    "segment_mean": lambda s: segment(s, bptr, "mean"),
    "gather_csr": lambda s: gather_csr(s[:, :3], bptr),
}
for name, call in calls.items():
    results = {}
    for backend in ("torch", "triton"):
        s = x.clone().requires_grad_()
        with use_backend(backend), record_backends() as ran:
            out = call(s)
            vals = out if isinstance(out, tuple) else (out,)
            vals[0].sum().backward()
        results[backend] = (vals, s.grad)
    assert "triton" in set(ran.values()), (name, ran)
    (a, ga), (b, gb) = results["torch"], results["triton"]
    for u, v in zip(a, b):
        assert u.shape == v.shape and torch.allclose(u, v, atol=1e-12), name
    assert torch.allclose(ga, gb, atol=1e-12), name
print("ok")
"""


def test_new_paths_on_the_triton_backend():
    """The new paths (broadcast index, batched ptr, ptr=, log_softmax, std) run the Triton kernels
    under the interpreter with the torch reference's values and gradients."""
    pytest.importorskip("triton")
    from _triton_interp import run_interpreted  # tests/ops helper (pytest puts this folder on sys.path)

    run_interpreted(_TRITON_NEW_PATHS)


def test_dim_must_be_an_int():
    """A bool or None ``dim`` is refused naming ``dim`` (True was taken as 1, None crashed)."""
    from geodl.ops import gather

    x, index = torch.ones(5, 2), torch.zeros(5, dtype=torch.long)
    for call in (lambda: scatter(x, index, dim=True), lambda: gather(x, T([0]), dim=None),
                 lambda: scatter_softmax(x, index, dim=True), lambda: scatter_logsumexp(x, ptr=T([0, 5]), dim=None),
                 lambda: scatter_std(x, index, dim=0.0)):
        with pytest.raises(TypeError, match="dim"):
            call()
