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
from functools import lru_cache

import torch

from geodl.ops._dispatch import interpreting
from geodl.ops._sh import _coefficient_grid, _sectoral_coefficients

__all__ = ["sh_real_backward_triton", "sh_real_triton"]


def _kernel():
    from geodl.ops._triton_sh_kernels import sh_kernel

    return sh_kernel


def _backward_kernel():
    from geodl.ops._triton_sh_kernels import sh_backward_kernel

    return sh_backward_kernel


@lru_cache(maxsize=32)
def _tables(lmax: int, dtype: torch.dtype, device: str):
    """The recursion tables of :mod:`geodl.ops._sh` flattened for the kernels: a_lm, b_lm at
    ``l (lmax+1) + m``, d_m, and e_m followed by √2 (read from the table: a literal would be float32)."""
    grid = _coefficient_grid(lmax)
    a = torch.tensor(grid[0].reshape(-1), dtype=torch.float64)
    b = torch.tensor(grid[1].reshape(-1), dtype=torch.float64)
    d, e = _sectoral_coefficients(lmax)
    d = torch.tensor(d, dtype=torch.float64)
    e = torch.tensor(e + (math.sqrt(2.0),), dtype=torch.float64)
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
    if not (xyz.is_cuda or interpreting()):
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

    if not (xyz.is_cuda or interpreting()):
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
