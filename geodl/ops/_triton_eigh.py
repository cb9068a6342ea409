"""Triton kernel for :func:`geodl.ops.eigh3x3` (used on CUDA; tested on CPU with ``TRITON_INTERPRET=1``).

One program handles ``BLOCK`` matrices, one matrix per lane, entirely in registers: the same
algorithm as the plain-torch reference in ``_eigh.py`` (scale, cyclic Jacobi with a fixed number of
sweeps, ascending order by a three-comparator sorting network, sign rule, third vector = cross
product). Results agree with the reference to rounding; where eigenvalues tie exactly, the basis of
the tied eigenspace may differ (both are valid). Importing this module imports triton, so
``_eigh.py`` imports it lazily.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from geodl.ops._eigh import SWEEPS

__all__ = ["eigh3x3_triton"]

_BLOCK = 128


@triton.jit
def _rot(app, aqq, apq, arp, arq, v0p, v0q, v1p, v1q, v2p, v2q):
    # Jacobi rotation zeroing a_pq; t = 2 a_pq sign(d) / (|d| + sqrt(d^2 + 4 a_pq^2)), see _eigh._rotate.
    d = aqq - app
    den = tl.abs(d) + tl.sqrt(d * d + 4.0 * apq * apq)
    t = tl.where(d >= 0, 2.0 * apq, -2.0 * apq) / tl.where(den > 0, den, 1.0)
    c = 1.0 / tl.sqrt(1.0 + t * t)
    s = t * c
    return (
        app - t * apq,
        aqq + t * apq,
        c * arp - s * arq,
        s * arp + c * arq,
        c * v0p - s * v0q,
        s * v0p + c * v0q,
        c * v1p - s * v1q,
        s * v1p + c * v1q,
        c * v2p - s * v2q,
        s * v2p + c * v2q,
    )


@triton.jit
def _cswap(wi, wj, v0i, v0j, v1i, v1j, v2i, v2j):
    m = wj < wi
    return (
        tl.where(m, wj, wi),
        tl.where(m, wi, wj),
        tl.where(m, v0j, v0i),
        tl.where(m, v0i, v0j),
        tl.where(m, v1j, v1i),
        tl.where(m, v1i, v1j),
        tl.where(m, v2j, v2i),
        tl.where(m, v2i, v2j),
    )


@triton.jit
def _fix_sign(x, y, z):
    ax = tl.abs(x)
    ay = tl.abs(y)
    az = tl.abs(z)
    pick = tl.where((ax >= ay) & (ax >= az), x, tl.where(ay >= az, y, z))
    sgn = tl.where(pick < 0, -1.0, 1.0)
    return x * sgn, y * sgn, z * sgn


@triton.jit
def _eigh3x3_kernel(a_ptr, w_ptr, v_ptr, n, SWEEPS: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = idx < n
    base = a_ptr + idx * 9
    # halve before adding (no overflow above max/2), as the reference does
    a00 = tl.load(base + 0, mask=mask, other=0.0)
    a11 = tl.load(base + 4, mask=mask, other=0.0)
    a22 = tl.load(base + 8, mask=mask, other=0.0)
    a01 = 0.5 * tl.load(base + 1, mask=mask, other=0.0) + 0.5 * tl.load(base + 3, mask=mask, other=0.0)
    a02 = 0.5 * tl.load(base + 2, mask=mask, other=0.0) + 0.5 * tl.load(base + 6, mask=mask, other=0.0)
    a12 = 0.5 * tl.load(base + 5, mask=mask, other=0.0) + 0.5 * tl.load(base + 7, mask=mask, other=0.0)
    scale = tl.maximum(tl.maximum(tl.maximum(tl.abs(a00), tl.abs(a11)), tl.maximum(tl.abs(a22), tl.abs(a01))),
                       tl.maximum(tl.abs(a02), tl.abs(a12)))
    scale = tl.where(scale > 0, scale, 1.0)
    a00 = a00 / scale
    a11 = a11 / scale
    a22 = a22 / scale
    a01 = a01 / scale
    a02 = a02 / scale
    a12 = a12 / scale
    zero = tl.zeros_like(a00)
    one = zero + 1.0
    v00, v01, v02 = one, zero, zero
    v10, v11, v12 = zero, one, zero
    v20, v21, v22 = zero, zero, one
    for _ in tl.static_range(SWEEPS):
        a00, a11, a02, a12, v00, v01, v10, v11, v20, v21 = _rot(a00, a11, a01, a02, a12, v00, v01, v10, v11, v20, v21)
        a01 = zero
        a00, a22, a01, a12, v00, v02, v10, v12, v20, v22 = _rot(a00, a22, a02, a01, a12, v00, v02, v10, v12, v20, v22)
        a02 = zero
        a11, a22, a01, a02, v01, v02, v11, v12, v21, v22 = _rot(a11, a22, a12, a01, a02, v01, v02, v11, v12, v21, v22)
        a12 = zero
    w0, w1, v00, v01, v10, v11, v20, v21 = _cswap(a00, a11, v00, v01, v10, v11, v20, v21)
    w1, w2, v01, v02, v11, v12, v21, v22 = _cswap(w1, a22, v01, v02, v11, v12, v21, v22)
    w0, w1, v00, v01, v10, v11, v20, v21 = _cswap(w0, w1, v00, v01, v10, v11, v20, v21)
    v00, v10, v20 = _fix_sign(v00, v10, v20)
    v01, v11, v21 = _fix_sign(v01, v11, v21)
    v02 = v10 * v21 - v20 * v11
    v12 = v20 * v01 - v00 * v21
    v22 = v00 * v11 - v10 * v01
    wb = w_ptr + idx * 3
    tl.store(wb + 0, w0 * scale, mask=mask)
    tl.store(wb + 1, w1 * scale, mask=mask)
    tl.store(wb + 2, w2 * scale, mask=mask)
    vb = v_ptr + idx * 9
    tl.store(vb + 0, v00, mask=mask)
    tl.store(vb + 1, v01, mask=mask)
    tl.store(vb + 2, v02, mask=mask)
    tl.store(vb + 3, v10, mask=mask)
    tl.store(vb + 4, v11, mask=mask)
    tl.store(vb + 5, v12, mask=mask)
    tl.store(vb + 6, v20, mask=mask)
    tl.store(vb + 7, v21, mask=mask)
    tl.store(vb + 8, v22, mask=mask)


def eigh3x3_triton(A: torch.Tensor):
    """Run the kernel on a contiguous (B, 3, 3) float32/float64 tensor; returns (w (B, 3), V (B, 3, 3))."""
    A = A.contiguous()
    B = A.shape[0]
    w = A.new_empty((B, 3))
    V = A.new_empty((B, 3, 3))
    if B:
        _eigh3x3_kernel[(triton.cdiv(B, _BLOCK),)](A, w, V, B, SWEEPS=SWEEPS[A.dtype], BLOCK=_BLOCK)
    return w, V
