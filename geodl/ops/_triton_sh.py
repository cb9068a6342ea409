"""Triton kernel for the real spherical harmonics of :mod:`geodl.ops._sh` (used on CUDA).

One program handles a block of points; the order m is the outer loop and the degree l the inner
loop, so every quantity of the recursion is a loop-carried register per point (P̄_m^m, the two
previous P̄_l^m, cos mφ and sin mφ) and nothing of size (lmax+1)² is held on chip. Recursion
coefficients come from small host-built tables in the working dtype (built in float64). On the
CPU the kernel runs under ``TRITON_INTERPRET=1`` (tests).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import torch

__all__ = ["sh_real_triton", "triton_available"]


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
        row = out_ptr + offs.to(tl.int64) * k
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
                col = l * l + l
                if m == 0:
                    tl.store(row + col, p, mask=mask)
                else:
                    tl.store(row + col + m, sqrt2 * p * cm, mask=mask)
                    tl.store(row + col - m, sqrt2 * p * sm, mask=mask)

    return sh_kernel


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


def sh_real_triton(xyz: torch.Tensor, lmax: int, block: int = 128) -> torch.Tensor:
    """Real SH (ordering l²+l+m) of unit vectors ``(N, 3)`` by the Triton kernel; not differentiable.

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
    out = torch.empty((n, k), dtype=xyz.dtype, device=xyz.device)
    if n == 0:
        return out
    a, b, d, e = _tables(lmax, xyz.dtype, str(xyz.device))
    grid = (triton.cdiv(n, block),)
    _kernel()[grid](xyz, out, a, b, d, e, n, lmax, k, BLOCK=block)
    return out
