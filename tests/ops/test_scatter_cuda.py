"""CUDA path (Triton kernels where available) of the scatter ops against the CPU reference.

Moderate sizes, so that many blocks, atomics contention and long segments are exercised. Every
test is marked ``cuda`` and is skipped when no CUDA device is present (``benchmarks/gpu_check.sh``
runs them).
"""

from __future__ import annotations

import pytest
import torch

from geodl.ops import gather, gather_csr, scatter, scatter_logsumexp, scatter_softmax, segment
from geodl.ops import record_backends
from geodl.ops._dispatch import triton_importable

pytestmark = pytest.mark.cuda

N, F, SEGS = 200_003, 37, 5_000


def _data(dtype=torch.float32, ties=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = (torch.randint(-20, 20, (N, F), generator=gen).to(dtype) if ties
           else torch.randn(N, F, generator=gen, dtype=dtype))
    index = torch.randint(0, SEGS, (N,), generator=gen)
    index[index == 7] = 8  # group 7 stays empty
    return src, index


def test_triton_is_used_on_cuda():
    assert triton_importable(), "triton not importable: the CUDA path would be torch only"
    src, index = _data()
    with record_backends() as ran:
        scatter(src[:100].cuda(), index[:100].cuda(), dim_size=SEGS)
    assert ran["scatter"] == "triton", ran


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "mul"])
@pytest.mark.parametrize("itype", [torch.int64, torch.int32])
def test_scatter_matches_cpu(reduce, itype):
    src, index = _data(ties=reduce in ("max", "min"))
    if reduce == "mul":
        src = 1 + 0.01 * src
    index = index.to(itype)
    kw = {"return_arg": True} if reduce in ("max", "min") else {}
    cpu = scatter(src, index, dim_size=SEGS, reduce=reduce, **kw)
    gpu = scatter(src.cuda(), index.cuda(), dim_size=SEGS, reduce=reduce, **kw)
    if kw:
        torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=0, atol=0)
        assert torch.equal(gpu[1].cpu(), cpu[1])
    else:
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_segment_matches_cpu(reduce, dtype):
    src, index = _data(dtype, ties=reduce in ("max", "min"))
    index, _ = index.sort()
    counts = torch.bincount(index, minlength=SEGS)
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    tol = {torch.float32: 1e-4, torch.float64: 1e-10, torch.bfloat16: 2e-2}[dtype]
    for p in (ptr, torch.tensor([0, N // 2, N // 2, N])):  # typical and very long segments
        ref = segment(src.double(), p, reduce)  # float64 CPU reference (the kernel accumulates in fp32)
        gpu = segment(src.cuda(), p.cuda(), reduce).cpu().double()
        torch.testing.assert_close(gpu, ref, rtol=tol, atol=tol * max(1.0, ref.abs().max().item()))


def test_gathers_softmax_and_gradients_match_cpu():
    src, index = _data(torch.float64)
    ptr = torch.linspace(0, N, SEGS + 1).long()
    table = src[:SEGS]
    cases = [  # (function of (leaf, index, ptr), leaf)
        (lambda x, i, p: gather_csr(x, p, N), table),
        (lambda x, i, p: gather(x, i), table),
        (lambda x, i, p: scatter_softmax(x, i, dim_size=SEGS), src),
        (lambda x, i, p: scatter_logsumexp(x, i, dim_size=SEGS), src),
        (lambda x, i, p: scatter(x, i, dim_size=SEGS, reduce="max"), src),
        (lambda x, i, p: segment(x, p, "min"), src),
    ]
    for fn, leaf in cases:
        weight = torch.rand(fn(leaf, index, ptr).shape, dtype=torch.float64)
        x_c = leaf.clone().requires_grad_(True)
        out_c = fn(x_c, index, ptr)
        (g_c,) = torch.autograd.grad((out_c * weight).sum(), x_c)
        x_g = leaf.cuda().requires_grad_(True)
        out_g = fn(x_g, index.cuda(), ptr.cuda())
        (g_g,) = torch.autograd.grad((out_g * weight.cuda()).sum(), x_g)
        torch.testing.assert_close(out_g.cpu(), out_c, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(g_g.cpu(), g_c, rtol=1e-10, atol=1e-10)


def test_deterministic_sum_is_bitwise_reproducible_on_cuda():
    src, index = _data()
    src, index = src.cuda(), index.cuda()
    a = scatter(src, index, dim_size=SEGS, deterministic=True)
    b = scatter(src, index, dim_size=SEGS, deterministic=True)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, scatter(src, index, dim_size=SEGS), rtol=1e-4, atol=1e-4)


def test_compile_inductor_on_cuda():
    def f(x, index, ptr):
        h = scatter(x, index, dim_size=SEGS, reduce="max") + scatter(x, index, dim_size=SEGS, reduce="mean")
        return segment(x, ptr, "sum") + h

    src, index = _data()
    x = src[:SEGS * 4].cuda().requires_grad_(True)
    idx = index[:SEGS * 4].cuda()
    ptr = torch.arange(0, SEGS * 4 + 1, 4, device="cuda")
    eager = f(x, idx, ptr)
    compiled = torch.compile(f, fullgraph=True)(x, idx, ptr)
    torch.testing.assert_close(compiled, eager)
    (ge,) = torch.autograd.grad(eager.sum(), x)
    (gc,) = torch.autograd.grad(compiled.sum(), x)
    torch.testing.assert_close(gc, ge)
