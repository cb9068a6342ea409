"""Scatter / segment / gather ops against naive loop implementations (CPU).

Kernel-level tests (``test_kernel_*``) run on every back end in ``KERNELS``: the torch reference
always, and the Triton kernels when this module runs with ``TRITON_INTERPRET=1``; the public-API
tests that take the ``backend`` fixture (``conftest.py``) run once per back end of the switch
(``geodl.ops.use_backend``). ``test_backends.py`` reruns this module in a subprocess under the
interpreter with ``-k triton``: the same tests, gradchecks included, on the Triton path.
"""

from __future__ import annotations

import pytest
import torch

from _triton_interp import BACKENDS, INTERPRETING  # tests/ops helper (pytest puts this folder on sys.path)
from geodl.ops import available_backends, gather, gather_csr, scatter, scatter_logsumexp, scatter_softmax, segment
from geodl.ops import _scatter as S


# --------------------------------------------------------------------------- back ends under test
class _TorchKernels:
    scatter_sum = staticmethod(S._ref_scatter_sum)
    scatter_minmax = staticmethod(S._ref_scatter_minmax)
    gather_csr = staticmethod(S._ref_gather_csr)
    gather_rows = staticmethod(lambda src, index: src.index_select(0, index))
    atomic_dtypes = (torch.float32, torch.float64, torch.bfloat16)
    scatter_minmax_backward = staticmethod(S._ref_scatter_minmax_backward)
    segment_minmax_backward = staticmethod(S._ref_segment_minmax_backward)

    @staticmethod
    def segment(src, ptr, reduce, with_arg):
        if reduce in ("max", "min"):
            return S._ref_segment_minmax(src, ptr, reduce, with_arg)
        return S._ref_segment(src, ptr, reduce), None


class _TritonKernels:
    atomic_dtypes = S._TRITON_ATOMIC_DTYPES

    def __init__(self):
        from geodl.ops import _triton_scatter as T

        self.scatter_sum, self.scatter_minmax = T.scatter_sum, T.scatter_minmax
        self.gather_csr, self.gather_rows = T.gather_csr, T.gather_rows
        self.segment = T.segment_reduce
        self.scatter_minmax_backward = lambda grad, src, index, out, reduce: T.scatter_minmax_backward(
            grad, src, index, out)
        self.segment_minmax_backward = lambda grad, src, ptr, out, reduce: T.segment_minmax_backward(
            grad, src, ptr, out)


KERNELS = BACKENDS


def gradcheck(fn, inputs):
    """float64 gradcheck; its fast mode (random projections) under the slow Triton interpreter."""
    return torch.autograd.gradcheck(fn, inputs, fast_mode=INTERPRETING)


@pytest.fixture(params=KERNELS)
def kernels(request):
    return _TorchKernels() if request.param == "torch" else _TritonKernels()


# --------------------------------------------------------------------------- naive references
def naive_groups(src: torch.Tensor, groups: list[list[int]], reduce: str):
    """Reduce ``src[groups[s]]`` group by group in float64; arg = lowest position equal to the result."""
    n, f = src.shape
    x = src.double()
    out = torch.zeros(len(groups), f, dtype=torch.float64)
    arg = torch.full((len(groups), f), n, dtype=torch.int64)
    for s, members in enumerate(groups):
        if not members:
            out[s] = 1.0 if reduce == "mul" else 0.0  # an empty product is 1 (as PyG and torch_scatter)
            continue
        rows = x[members]
        if reduce in ("max", "min"):
            out[s] = rows.max(0).values if reduce == "max" else rows.min(0).values
            first = (rows == out[s]).int().argmax(0)  # first True per column
            arg[s] = torch.tensor(members)[first]
        else:
            out[s] = {"sum": rows.sum(0), "mean": rows.mean(0), "mul": rows.prod(0)}[reduce]
    return out, arg


def groups_of_index(index: torch.Tensor, dim_size: int) -> list[list[int]]:
    groups = [[] for _ in range(dim_size)]
    for j, i in enumerate(index.tolist()):
        groups[i].append(j)
    return groups


def groups_of_ptr(ptr: torch.Tensor) -> list[list[int]]:
    p = ptr.tolist()
    return [list(range(p[s], p[s + 1])) for s in range(len(p) - 1)]


def tol(dtype):
    return {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 3e-2}[dtype]


def random_index(n: int, dim_size: int, itype, gen, leave_empty=(1,)):
    """Random targets in [0, dim_size) avoiding the targets in ``leave_empty`` (so they stay empty)."""
    allowed = torch.tensor([i for i in range(dim_size) if i not in leave_empty])
    return allowed[torch.randint(0, len(allowed), (n,), generator=gen)].to(itype)


def tie_src(n, f, dtype, gen):
    """Small integers as floats, so ties inside a group are frequent."""
    return torch.randint(-3, 4, (n, f), generator=gen).to(dtype)


CASES = [  # (N, F, S): typical, single element, a single group, many groups
    (23, 3, 7),
    (1, 2, 3),
    (9, 1, 1),
    (40, 5, 30),
    (600, 70, 9),  # several row and channel blocks in the Triton kernels
]


# --------------------------------------------------------------------------- kernel-level tests
@pytest.mark.parametrize("n,f,s", CASES)
@pytest.mark.parametrize("itype", [torch.int64, torch.int32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_kernel_scatter_sum(kernels, n, f, s, itype, dtype):
    if dtype not in kernels.atomic_dtypes:
        pytest.skip(f"{dtype} runs the torch fallback on this back end")
    gen = torch.Generator().manual_seed(n * 100 + f)
    src = torch.randn(n, f, generator=gen).to(dtype)
    index = random_index(n, s, itype, gen, leave_empty=(1,) if s > 2 else ())
    out = kernels.scatter_sum(src, index, s)
    ref, _ = naive_groups(src, groups_of_index(index, s), "sum")
    assert out.dtype == dtype and out.shape == (s, f)
    torch.testing.assert_close(out.double(), ref, rtol=tol(dtype), atol=tol(dtype) * n)


@pytest.mark.parametrize("n,f,s", CASES)
@pytest.mark.parametrize("reduce", ["max", "min"])
@pytest.mark.parametrize("itype", [torch.int64, torch.int32])
@pytest.mark.parametrize("with_arg", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_scatter_minmax(kernels, n, f, s, reduce, itype, with_arg, dtype):
    gen = torch.Generator().manual_seed(n + f + s)
    src = tie_src(n, f, dtype, gen)
    if n > 5:
        src[2, 0] = float("-inf") if reduce == "max" else float("inf")
    index = random_index(n, s, itype, gen, leave_empty=(1,) if s > 2 else ())
    out, arg = kernels.scatter_minmax(src, index, s, reduce, with_arg)
    ref, ref_arg = naive_groups(src, groups_of_index(index, s), reduce)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=0)
    if with_arg:
        assert torch.equal(arg, ref_arg)  # lowest position among ties; N for empty groups


@pytest.mark.parametrize("ptr,f", [([0, 3, 3, 7, 12], 3), ([0, 0, 1], 3), ([0, 12], 1), ([0, 5, 12, 12, 12], 3),
                                   ([0, 300, 300, 301, 650], 70)])  # long segments, 2 channel blocks
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_kernel_segment(kernels, ptr, f, reduce, dtype):
    gen = torch.Generator().manual_seed(len(ptr))
    n = ptr[-1]
    src = (tie_src(n, f, dtype, gen) if reduce in ("max", "min") else torch.randn(n, f, generator=gen).to(dtype))
    ptr = torch.tensor(ptr, dtype=torch.int32 if dtype == torch.float32 else torch.int64)
    out, arg = kernels.segment(src, ptr, reduce, True)
    ref, ref_arg = naive_groups(src, groups_of_ptr(ptr), reduce)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, rtol=tol(dtype), atol=tol(dtype) * n)
    if reduce in ("max", "min"):
        assert torch.equal(arg, ref_arg)


def naive_tie_split(grad, src, groups, out):
    """d(sum(grad * out)) / d src with each group's gradient split evenly among its tied elements."""
    g = torch.zeros(src.shape, dtype=torch.float64)
    for s, members in enumerate(groups):
        if members:
            hits = (src[members] == out[s]).double()  # (members, F)
            g[members] = hits * grad[s].double() / hits.sum(0).clamp(min=1)
    return g


@pytest.mark.parametrize("reduce", ["max", "min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,f,s", CASES)
def test_kernel_minmax_backward(kernels, reduce, dtype, n, f, s):
    gen = torch.Generator().manual_seed(n * 7 + s)
    src = tie_src(n, f, dtype, gen)
    grad = torch.rand(s, f, generator=gen).to(dtype)
    index = random_index(n, s, torch.int32, gen, leave_empty=(1,) if s > 2 else ())
    out, _ = S._ref_scatter_minmax(src, index, s, reduce, False)
    got = kernels.scatter_minmax_backward(grad, src, index, out, reduce)
    expect = naive_tie_split(grad, src, groups_of_index(index, s), out)
    torch.testing.assert_close(got.double(), expect, rtol=tol(dtype), atol=tol(dtype))
    # sorted: the same data in segment order
    order = torch.argsort(index, stable=True)
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(index, minlength=s).cumsum(0)])
    sorted_src = src[order]
    out, _ = S._ref_segment_minmax(sorted_src, ptr, reduce, False)
    got = kernels.segment_minmax_backward(grad, sorted_src, ptr, out, reduce)
    expect = naive_tie_split(grad, sorted_src, groups_of_ptr(ptr), out)
    torch.testing.assert_close(got.double(), expect, rtol=tol(dtype), atol=tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_kernel_gathers(kernels, dtype):
    gen = torch.Generator().manual_seed(3)
    src = torch.randn(4, 70, generator=gen).to(dtype)
    ptr = torch.tensor([0, 2, 2, 5, 300])
    out = kernels.gather_csr(src, ptr, 300)
    expect = torch.stack([src[s] for s, members in enumerate(groups_of_ptr(ptr)) for _ in members])
    assert torch.equal(out, expect)
    index = torch.randint(0, 4, (500,), generator=gen, dtype=torch.int32)
    assert torch.equal(kernels.gather_rows(src, index), torch.stack([src[i] for i in index.tolist()]))


# --------------------------------------------------------------------------- public API (torch path)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "mul"])
def test_scatter_any_dim_noncontiguous(reduce, backend):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, 11, generator=gen, dtype=torch.float64)
    src = base.transpose(1, 2)  # (4, 11, 6), non-contiguous; scatter along dim=1 (N = 11)
    index = torch.tensor([0, 2, 2, 4, 0, 4, 4, 2, 0, 0, 2])  # group 1 and 3 empty
    out = scatter(src, index, dim=1, dim_size=5, reduce=reduce)
    assert out.shape == (4, 5, 6)
    for b in range(4):
        ref, _ = naive_groups(src[b], groups_of_index(index, 5), reduce)
        torch.testing.assert_close(out[b], ref, rtol=1e-12, atol=1e-12)
    # dim_size=None reads it from the index; negative dim
    assert scatter(src, index, dim=-2, reduce=reduce).shape == (4, 5, 6)


def test_scatter_return_arg_and_tie_gradient(backend):
    src = torch.tensor([[2.0], [5.0], [5.0], [1.0]], requires_grad=True)
    index = torch.tensor([0, 0, 0, 2])
    out, arg = scatter(src, index, dim_size=3, reduce="max", return_arg=True)
    assert out.tolist() == [[5.0], [0.0], [1.0]] and arg.tolist() == [[1], [4], [3]]
    out.sum().backward()
    assert src.grad.tolist() == [[0.0], [0.5], [0.5], [1.0]]  # tie -> gradient split evenly
    ptr = torch.tensor([0, 3, 3, 4])
    out, arg = segment(src.detach(), ptr, "min", return_arg=True)
    assert arg.tolist() == [[0], [4], [3]]
    (g,) = torch.autograd.grad(segment(src, ptr, "max").sum(), src)
    assert g.tolist() == [[0.0], [0.5], [0.5], [1.0]]


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_minmax_tie_gradient_is_permutation_equivariant(reduce, backend):
    gen = torch.Generator().manual_seed(9)
    src = tie_src(30, 4, torch.float64, gen)  # many ties
    index = torch.randint(0, 5, (30,), generator=gen)
    weight = torch.rand(5, 4, generator=gen, dtype=torch.float64)
    perm = torch.randperm(30, generator=gen)

    def grad_of(x, i):
        x = x.clone().requires_grad_(True)
        (scatter(x, i, dim_size=5, reduce=reduce) * weight).sum().backward()
        return x.grad

    torch.testing.assert_close(grad_of(src[perm], index[perm]), grad_of(src, index)[perm])


def test_deterministic_sum_is_reproducible(backend):
    gen = torch.Generator().manual_seed(1)
    src = torch.randn(300, 4, generator=gen)
    index = torch.randint(0, 17, (300,), generator=gen, dtype=torch.int32)
    a = scatter(src, index, dim_size=20, deterministic=True)
    b = scatter(src, index, dim_size=20, deterministic=True)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, scatter(src, index, dim_size=20))
    torch.testing.assert_close(scatter(src, index, dim_size=20, reduce="mean", deterministic=True),
                               scatter(src, index, dim_size=20, reduce="mean"))


def test_bfloat16_sum_and_mean(backend):
    gen = torch.Generator().manual_seed(2)
    src = torch.randn(50, 3, generator=gen).bfloat16()
    index = torch.randint(0, 6, (50,), generator=gen)
    for reduce in ("sum", "mean"):
        out = scatter(src, index, dim_size=7, reduce=reduce)
        ref, _ = naive_groups(src, groups_of_index(index, 7), reduce)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.double(), ref, rtol=3e-2, atol=5e-2)


def test_low_precision_accumulates_in_float32(backend):
    ones = torch.ones(3000, 2, dtype=torch.bfloat16)  # a bf16 accumulator would stall at 256
    index = torch.zeros(3000, dtype=torch.int64)
    ptr = torch.tensor([0, 3000])
    for out in (scatter(ones, index, dim_size=1), segment(ones, ptr, "sum"),
                3000 * segment(ones, ptr, "mean"), scatter(ones, index, dim_size=1, deterministic=True)):
        torch.testing.assert_close(out.double(), torch.full((1, 2), 3000.0, dtype=torch.float64), rtol=1e-2, atol=0)


def dense_group_softmax(src, index, dim_size):
    out = torch.empty_like(src)
    lse = torch.zeros(dim_size, src.shape[1], dtype=src.dtype)
    for g in range(dim_size):
        members = (index == g).nonzero().flatten()
        if len(members):
            out[members] = torch.softmax(src[members], dim=0)
            lse[g] = torch.logsumexp(src[members], dim=0)
    return out, lse


def test_softmax_and_logsumexp(backend):
    gen = torch.Generator().manual_seed(4)
    src = 30 * torch.randn(25, 3, generator=gen, dtype=torch.float64)  # large values: needs the shift
    index = random_index(25, 6, torch.int64, gen, leave_empty=(2,))
    ref_sm, ref_lse = dense_group_softmax(src, index, 6)
    torch.testing.assert_close(scatter_softmax(src, index, dim_size=6), ref_sm)
    torch.testing.assert_close(scatter_logsumexp(src, index, dim_size=6), ref_lse)
    assert scatter_logsumexp(src, index, dim_size=6)[2].abs().max() == 0  # empty group -> 0
    # along dim=1 of a 3-D tensor, float32
    x = src.float().reshape(1, 25, 3).transpose(1, 2)  # (1, 3, 25)
    torch.testing.assert_close(scatter_softmax(x, index, dim=2, dim_size=6)[0].T, ref_sm.float())


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "mul"])
def test_gradcheck_scatter(reduce, backend):
    gen = torch.Generator().manual_seed(5)
    src = torch.randn(9, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 3, 3, 1, 0, 3, 1, 0, 0], dtype=torch.int32)  # group 2 empty
    assert gradcheck(lambda x: scatter(x, index, dim_size=5, reduce=reduce), (src,))
    if reduce in ("max", "min") and not INTERPRETING:  # double backward (w.r.t. the output gradient)
        assert torch.autograd.gradgradcheck(lambda x: scatter(x, index, dim_size=5, reduce=reduce), (src,))
        ptr = torch.tensor([0, 4, 4, 9])
        assert torch.autograd.gradgradcheck(lambda x: segment(x, ptr, reduce), (src,))
    if reduce in ("sum", "mean"):
        assert gradcheck(
            lambda x: scatter(x, index, dim_size=5, reduce=reduce, deterministic=True), (src,))
    if reduce in ("sum", "mean") and not INTERPRETING:  # same ops again; slow in the interpreter
        assert torch.autograd.gradgradcheck(lambda x: scatter(x, index, dim_size=5, reduce=reduce), (src,))


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_gradcheck_segment_and_empty_gradient(reduce, backend):
    gen = torch.Generator().manual_seed(6)
    src = torch.randn(7, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    ptr = torch.tensor([0, 2, 2, 5, 7])
    assert gradcheck(lambda x: segment(x, ptr, reduce), (src,))
    out = segment(src, ptr, reduce)
    assert out[1].abs().max() == 0  # empty segment -> 0
    (g,) = torch.autograd.grad(out[1].sum(), src)
    assert g.abs().max() == 0  # ... and no gradient


def test_gradcheck_gather_softmax_logsumexp(backend):
    gen = torch.Generator().manual_seed(7)
    seg = torch.randn(4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    ptr = torch.tensor([0, 2, 2, 5, 6])
    assert gradcheck(lambda x: gather_csr(x, ptr, 6), (seg,))
    index = torch.tensor([3, 0, 0, 2, 3], dtype=torch.int32)
    assert gradcheck(lambda x: gather(x, index), (seg,))
    assert gradcheck(lambda x: gather(x.T.contiguous(), index, dim=1), (seg,))
    torch.testing.assert_close(gather(seg.T, index, dim=1), seg.T[:, index.long()])
    if not INTERPRETING:  # double backward = the same ops again; slow in the interpreter
        assert torch.autograd.gradgradcheck(lambda x: gather_csr(x, ptr, 6), (seg,))
    src = torch.randn(8, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 2, 2, 0, 3, 3, 3, 0])
    assert gradcheck(lambda x: scatter_softmax(x, index, dim_size=4), (src,))
    assert gradcheck(lambda x: scatter_logsumexp(x, index, dim_size=4), (src,))


def test_compile_fullgraph_matches_eager():
    def f(x, index, ptr):
        h = scatter(x, index, dim_size=4, reduce="max") + scatter(x, index, dim_size=4, reduce="mean")
        return segment(x, ptr, "sum") * h + gather_csr(h, ptr, 6)[:4]

    gen = torch.Generator().manual_seed(8)
    x = torch.randn(6, 3, generator=gen, requires_grad=True)
    index, ptr = torch.tensor([0, 1, 1, 3, 0, 3]), torch.tensor([0, 2, 2, 5, 6])
    eager = f(x, index, ptr)
    # aot_eager traces the fake kernels and the registered autograd with fullgraph=True; inductor
    # codegen on top takes ~1.5 min on this CPU, too slow for the suite (gpu_check.sh runs it on CUDA)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")(x, index, ptr)
    torch.testing.assert_close(compiled, eager)
    (ge,) = torch.autograd.grad(eager.sum(), x)
    (gc,) = torch.autograd.grad(compiled.sum(), x)
    torch.testing.assert_close(gc, ge)


def test_fake_tensor_opcheck():
    x, index, ptr = torch.randn(5, 2), torch.tensor([0, 2, 2, 1, 0]), torch.tensor([0, 2, 2, 5])
    for op, args in [(torch.ops.geodl.scatter_sum, (x, index, 3)),
                     (torch.ops.geodl.scatter_minmax, (x, index, 3, "max", True)),
                     (torch.ops.geodl.segment_sum_mean, (x, ptr, "mean")),
                     (torch.ops.geodl.segment_minmax, (x, ptr, "min", True)),
                     (torch.ops.geodl.gather_csr, (x[:3], ptr, 5)),
                     (torch.ops.geodl.gather_rows, (x, index)),
                     (torch.ops.geodl.scatter_minmax_backward, (x[:3], x, index, x[:3], "max")),
                     (torch.ops.geodl.segment_minmax_backward, (x[:2], x, ptr[:3], x[:2], "min"))]:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


# --------------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    x, index = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 2])
    with pytest.raises(ValueError, match="index"):
        scatter(x, index[:4], dim_size=3)
    with pytest.raises(ValueError, match="index"):
        scatter(x, index + 3, dim_size=3, validate=True)
    with pytest.raises(TypeError, match="index"):
        scatter(x, index.float(), dim_size=3)
    with pytest.raises(ValueError, match="index"):
        scatter(x, index.view(5, 1, 1), dim_size=3)  # more dimensions than src: no broadcast
    with pytest.raises(TypeError, match="src"):
        scatter([1.0, 2.0], index, dim_size=3)
    with pytest.raises(TypeError, match="src"):
        scatter_softmax(torch.ones(5, dtype=torch.int64), index, dim_size=3)
    with pytest.raises(ValueError, match="reduce"):
        scatter(x, index, dim_size=3, reduce="median")
    with pytest.raises(ValueError, match="return_arg"):
        scatter(x, index, dim_size=3, return_arg=True)
    with pytest.raises(ValueError, match="dim_size"):
        scatter(x, index, dim_size=-1)
    with pytest.raises(ValueError, match="dim"):
        scatter(x, index, dim=2, dim_size=3)
    with pytest.raises(ValueError, match="ptr"):
        segment(x, torch.tensor([0, 2, 4]), validate=True)  # does not end at N
    with pytest.raises(ValueError, match="ptr"):
        segment(x, torch.tensor([0, 3, 2, 5]), validate=True)  # decreasing
    with pytest.raises(ValueError, match="ptr"):
        gather_csr(x, torch.tensor([0, 2, 4]), 4)  # S + 1 entries expected
    with pytest.raises(ValueError, match="reduce"):
        segment(x, torch.tensor([0, 5]), "mul")
    with pytest.raises(ValueError, match="index"):
        gather(x, torch.tensor([0, 5]), validate=True)


def test_available_backends_lists_torch_first():
    table = available_backends()
    assert table["scatter"][0] == "torch" and "segment" in table
    has_triton = any("triton" in b for b in table["scatter"])
    try:
        import triton  # noqa: F401

        assert has_triton
    except ImportError:
        assert not has_triton
