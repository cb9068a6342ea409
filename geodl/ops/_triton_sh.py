"""Triton kernel for the real spherical harmonics of :mod:`geodl.ops._sh` (used on CUDA).

One program handles a block of points; the order m is the outer loop and the degree l the inner
loop, so every quantity of the recursion is a loop-carried register per point (P̄_m^m, the two
previous P̄_l^m, cos mφ and sin mφ) and nothing of size (lmax+1)² is held on chip. The output is
a ``(K, N)`` buffer returned as its transposed ``(N, K)`` view (column-major, as on the CPU), so
each store of a harmonic for a block of points is one contiguous, coalesced write; a row-major
``(N, K)`` output would make every store a strided scatter of 4-byte words. Recursion
coefficients come from small host-built tables in the working dtype (built in float64). On the
CPU the kernel runs under ``TRITON_INTERPRET=1`` (tests).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import torch

__all__ = ["sh_real_backward_triton", "sh_real_triton", "triton_available"]


def triton_available() -> bool:
    """Whether Triton imports (CUDA tensors, or any tensor under ``TRITON_INTERPRET=1``)."""
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - triton is optional
        return False
    return True


@lru_cache(maxsize=None)
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def sh_kernel(xyz_ptr, out_ptr, a_ptr, b_ptr, d_ptr, e_ptr, n, lmax, k, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(xyz_ptr + offs * 3 + 0, mask=mask, other=0.0)
        y = tl.load(xyz_ptr + offs * 3 + 1, mask=mask, other=0.0)
        z = tl.load(xyz_ptr + offs * 3 + 2, mask=mask, other=1.0)
        rho = tl.sqrt(x * x + y * y)
        pos = rho > 0
        rho_safe = tl.where(pos, rho, 1.0)
        c1 = tl.where(pos, x / rho_safe, 1.0)
        s1 = tl.where(pos, y / rho_safe, 0.0)
        col_base = out_ptr + offs  # harmonic c of point i lives at c * n + i
        pmm = tl.zeros_like(x) + tl.load(d_ptr)  # d[0] holds 1/sqrt(4 pi)
        cm = tl.zeros_like(x) + 1.0
        sm = tl.zeros_like(x)
        sqrt2 = tl.load(e_ptr + lmax + 1)  # from the table: a literal would be float32
        for m in range(0, lmax + 1):
            if m > 0:
                pmm = tl.load(d_ptr + m) * rho * pmm
                cm_new = cm * c1 - sm * s1
                sm = sm * c1 + cm * s1
                cm = cm_new
            p2 = pmm
            p1 = tl.load(e_ptr + m) * z * pmm
            for l in range(m, lmax + 1):
                if l == m:
                    p = pmm
                elif l == m + 1:
                    p = p1
                else:
                    idx = l * (lmax + 1) + m
                    p = tl.load(a_ptr + idx) * (z * p1 - tl.load(b_ptr + idx) * p2)
                    p2 = p1
                    p1 = p
                col = tl.cast(l * l + l, tl.int64)  # c * n overflows int32 past 2^31
                if m == 0:
                    tl.store(col_base + col * n, p, mask=mask)
                else:
                    tl.store(col_base + (col + m) * n, sqrt2 * p * cm, mask=mask)
                    tl.store(col_base + (col - m) * n, sqrt2 * p * sm, mask=mask)

    return sh_kernel


@lru_cache(maxsize=None)
def _backward_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def sh_backward_kernel(xyz_ptr, g_ptr, gxyz_ptr, a_ptr, b_ptr, d_ptr, e_ptr, n, lmax, stride_gn, stride_gk,
                           BLOCK: tl.constexpr):
        # As a function on R^3 the forward is the polynomial √2·Q_lm(z)·Re/Im (x+iy)^m (Q_mm is the
        # constant Π d, ρ^m cos mφ = Re (x+iy)^m), which is what autograd through the reference
        # differentiates. So, per order m: ∂/∂x (A_m, B_m) = m (A_{m-1}, B_{m-1}),
        # ∂/∂y (A_m, B_m) = m (-B_{m-1}, A_{m-1}), and ∂/∂z runs the derivative of the degree
        # recursion, Q'_lm = a (Q_{l-1} + z Q'_{l-1} - b Q'_{l-2}), beside it. The l-sums
        # Σ g·Q and Σ g·Q' are formed first and multiplied by A, B once per m.
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(xyz_ptr + offs * 3 + 0, mask=mask, other=0.0)
        y = tl.load(xyz_ptr + offs * 3 + 1, mask=mask, other=0.0)
        z = tl.load(xyz_ptr + offs * 3 + 2, mask=mask, other=1.0)
        g_base = g_ptr + offs.to(tl.int64) * stride_gn
        sqrt2 = tl.load(e_ptr + lmax + 1)
        am = tl.zeros_like(x) + 1.0  # A_m = Re (x+iy)^m
        bm = tl.zeros_like(x)  # B_m = Im (x+iy)^m
        a_prev = tl.zeros_like(x)
        b_prev = tl.zeros_like(x)
        cmm = tl.zeros_like(x) + tl.load(d_ptr)  # Q_mm
        gx = tl.zeros_like(x)
        gy = tl.zeros_like(x)
        gz = tl.zeros_like(x)
        for m in range(0, lmax + 1):
            if m > 0:
                a_prev = am
                b_prev = bm
                am = a_prev * x - b_prev * y
                bm = a_prev * y + b_prev * x
                cmm = cmm * tl.load(d_ptr + m)
            em = tl.load(e_ptr + m)
            q2 = cmm
            dq2 = tl.zeros_like(x)
            q1 = em * z * cmm
            dq1 = em * cmm
            sq_c = tl.zeros_like(x)
            sq_s = tl.zeros_like(x)
            sd_c = tl.zeros_like(x)
            sd_s = tl.zeros_like(x)
            for l in range(m, lmax + 1):
                if l == m:
                    q = q2
                    dq = dq2
                elif l == m + 1:
                    q = q1
                    dq = dq1
                else:
                    idx = l * (lmax + 1) + m
                    al = tl.load(a_ptr + idx)
                    bl = tl.load(b_ptr + idx)
                    q = al * (z * q1 - bl * q2)
                    dq = al * (q1 + z * dq1 - bl * dq2)
                    q2 = q1
                    dq2 = dq1
                    q1 = q
                    dq1 = dq
                col = tl.cast(l * l + l, tl.int64)
                if m == 0:
                    g0 = tl.load(g_base + col * stride_gk, mask=mask, other=0.0)
                    sd_c += g0 * dq
                else:
                    gc = tl.load(g_base + (col + m) * stride_gk, mask=mask, other=0.0)
                    gs = tl.load(g_base + (col - m) * stride_gk, mask=mask, other=0.0)
                    sq_c += gc * q
                    sq_s += gs * q
                    sd_c += gc * dq
                    sd_s += gs * dq
            if m == 0:
                gz += sd_c
            else:
                gz += sqrt2 * (am * sd_c + bm * sd_s)
                mf = sqrt2 * m
                gx += mf * (a_prev * sq_c + b_prev * sq_s)
                gy += mf * (a_prev * sq_s - b_prev * sq_c)
        tl.store(gxyz_ptr + offs * 3 + 0, gx, mask=mask)
        tl.store(gxyz_ptr + offs * 3 + 1, gy, mask=mask)
        tl.store(gxyz_ptr + offs * 3 + 2, gz, mask=mask)

    return sh_backward_kernel


@lru_cache(maxsize=32)
def _tables(lmax: int, dtype: torch.dtype, device: str):
    a = torch.zeros((lmax + 1) ** 2, dtype=torch.float64)
    b = torch.zeros((lmax + 1) ** 2, dtype=torch.float64)
    for l in range(2, lmax + 1):
        for m in range(0, l - 1):
            a[l * (lmax + 1) + m] = math.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
            b[l * (lmax + 1) + m] = math.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
    d = torch.tensor([1.0 / math.sqrt(4.0 * math.pi)] + [math.sqrt((2.0 * m + 1.0) / (2.0 * m)) for m in range(1, lmax + 1)], dtype=torch.float64)
    e = torch.tensor([math.sqrt(2.0 * m + 3.0) for m in range(lmax + 1)] + [math.sqrt(2.0)], dtype=torch.float64)
    return tuple(t.to(dtype=dtype, device=device) for t in (a, b, d, e))


def sh_real_triton(xyz: torch.Tensor, lmax: int, block: int = 128, num_warps: int = 2) -> torch.Tensor:
    """Real SH (ordering l²+l+m) of unit vectors ``(N, 3)`` by the Triton kernel; not differentiable.

    Returns ``(N, (lmax+1)²)``, column-major (the transposed view of a ``(K, N)`` buffer).

    Examples
    --------
    >>> import torch
    >>> from geodl.ops._triton_sh import sh_real_triton
    >>> if torch.cuda.is_available():
    ...     y = sh_real_triton(torch.tensor([[0.0, 0.0, 1.0]], device="cuda"), 3)
    """
    import triton

    if xyz.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"xyz: expected float32 or float64, got {xyz.dtype}")
    if not (xyz.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        raise ValueError("xyz: the Triton kernel needs a CUDA tensor (or TRITON_INTERPRET=1)")
    xyz = xyz.contiguous()
    n, k = xyz.shape[0], (lmax + 1) ** 2
    out = torch.empty((k, n), dtype=xyz.dtype, device=xyz.device)
    if n == 0:
        return out.t()
    a, b, d, e = _tables(lmax, xyz.dtype, str(xyz.device))
    grid = (triton.cdiv(n, block),)
    _kernel()[grid](xyz, out, a, b, d, e, n, lmax, k, BLOCK=block, num_warps=num_warps)
    return out.t()


def sh_real_backward_triton(xyz: torch.Tensor, grad: torch.Tensor, lmax: int, block: int = 128,
                            num_warps: int = 4) -> torch.Tensor:
    """Gradient ``(N, 3)`` of ``(grad * sh_real(xyz)).sum()`` with respect to ``xyz`` (Triton).

    One pass over ``grad`` ``(N, (lmax+1)²)`` (any strides; coalesced when column-major, as
    the forward's output and a ``ones_like`` of it are), nothing else of size N·K read or written.
    Not differentiable itself: double backward goes through the autograd recomputation.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops._triton_sh import sh_real_backward_triton
    >>> if torch.cuda.is_available():
    ...     x = torch.tensor([[0.0, 0.6, 0.8]], device="cuda")
    ...     gx = sh_real_backward_triton(x, torch.ones(1, 16, device="cuda"), 3)
    """
    import triton

    if not (xyz.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        raise ValueError("xyz: the Triton kernel needs a CUDA tensor (or TRITON_INTERPRET=1)")
    k = (lmax + 1) ** 2
    if grad.shape != (xyz.shape[0], k):
        raise ValueError(f"grad: expected shape {(xyz.shape[0], k)}, got {tuple(grad.shape)}")
    xyz = xyz.contiguous()
    grad = grad.to(xyz.dtype)
    out = torch.empty_like(xyz)
    n = xyz.shape[0]
    if n == 0:
        return out
    a, b, d, e = _tables(lmax, xyz.dtype, str(xyz.device))
    grid = (triton.cdiv(n, block),)
    _backward_kernel()[grid](xyz, grad, out, a, b, d, e, n, lmax, grad.stride(0), grad.stride(1),
                             BLOCK=block, num_warps=num_warps)
    return out
