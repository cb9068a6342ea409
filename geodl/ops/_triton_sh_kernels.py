"""The Triton kernels of :mod:`geodl.ops._triton_sh` (imported only when Triton is used).

``sh_kernel`` writes the real harmonics of a block of points; ``sh_backward_kernel`` pulls an
incoming gradient back to the points. Both share the block preamble :func:`_point_block`. See the
launchers in :mod:`geodl.ops._triton_sh` for layouts and the recursions they run.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _point_block(xyz_ptr, n, BLOCK: tl.constexpr):
    """This program's block of points: offsets, mask and the coordinates (masked lanes at the
    north pole, so every quantity stays finite there)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(xyz_ptr + offs * 3 + 0, mask=mask, other=0.0)
    y = tl.load(xyz_ptr + offs * 3 + 1, mask=mask, other=0.0)
    z = tl.load(xyz_ptr + offs * 3 + 2, mask=mask, other=1.0)
    return offs, mask, x, y, z


@triton.jit
def sh_kernel(xyz_ptr, out_ptr, a_ptr, b_ptr, d_ptr, e_ptr, n, lmax, k, BLOCK: tl.constexpr):
    offs, mask, x, y, z = _point_block(xyz_ptr, n, BLOCK)
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


@triton.jit
def sh_backward_kernel(xyz_ptr, g_ptr, gxyz_ptr, a_ptr, b_ptr, d_ptr, e_ptr, n, lmax, stride_gn, stride_gk,
                       BLOCK: tl.constexpr):
    # As a function on R^3 the forward is the polynomial √2·Q_lm(z)·Re/Im (x+iy)^m (Q_mm is the
    # constant Π d, ρ^m cos mφ = Re (x+iy)^m), which is what autograd through the reference
    # differentiates. So, per order m: ∂/∂x (A_m, B_m) = m (A_{m-1}, B_{m-1}),
    # ∂/∂y (A_m, B_m) = m (-B_{m-1}, A_{m-1}), and ∂/∂z runs the derivative of the degree
    # recursion, Q'_lm = a (Q_{l-1} + z Q'_{l-1} - b Q'_{l-2}), beside it. The l-sums
    # Σ g·Q and Σ g·Q' are formed first and multiplied by A, B once per m.
    offs, mask, x, y, z = _point_block(xyz_ptr, n, BLOCK)
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
