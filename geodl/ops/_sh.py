"""Real, e3nn-compatible and complex spherical harmonics to very high degree.

Written by hand because none of the field's libraries is correct at high degree in float32: e3nn
stops at l = 11/12 (generated polynomials) and sphericart-torch's float32 output is wrong from
degree ~19. The route here is the stable one: fully normalised associated Legendre functions
P̄_l^m carried directly by three-term recursions with O(1) coefficients (no factorial ratios, no
expanded polynomials) and cos mφ, sin mφ from the rotation recurrence on (x, y)/ρ (autograd
reference) or, in the fast forward, the recursion run on the harmonics themselves from the
sectoral seeds (x + iy)^l. The recursion coefficients are computed once, in
:func:`_coefficient_grid` and :func:`_sectoral_coefficients`, for every path (the torch
reference, the fast forward, the closed-form backward and the Triton kernels).

The public function validates its input, converts lon/lat or raw vectors to unit vectors in
differentiable torch, and calls the op ``geodl::sh_real`` (``torch.library.custom_op``, registered through the back-end switch of
:mod:`geodl.ops._dispatch`), which
saves the *inputs only*, so the memory held between forward and backward is O(N·3). The
first-order backward is closed-form (:func:`_sh_real_backward_analytic`; on CUDA the Triton kernel
of :mod:`geodl.ops._triton_sh`, which also computes the forward): one pass over the incoming
gradient with O(lmax·N) extra memory. Double backward recomputes the forward under autograd (its
transient memory about one output's size: chunks of the points).
"""

from __future__ import annotations

import math
import os
import sys
from functools import lru_cache

import torch

from geodl._checks import check_choice, check_finite, check_int, check_tensor
from geodl.ops._dispatch import choose, implementation, public_op, register_kernel

__all__ = ["spherical_harmonics"]

_CONVENTIONS = ("real", "e3nn", "complex")
_INPUTS = ("xyz", "lonlat")


@lru_cache(maxsize=64)
def _coefficient_grid(lmax: int):
    """Degree-recursion coefficients as a float64 numpy array ``(2, lmax+1, lmax+1)``: ``[0, l, m]``
    = a_lm = √((4l²-1)/(l²-m²)) for m < l (a_l,l-1 = √(2l+1) up to rounding), ``[1, l, m]`` =
    b_lm = √(((l-1)²-m²)/(4(l-1)²-1)) for m < l-1 (0 elsewhere), in
    P̄_l^m = a_lm (z P̄_{l-1}^m - b_lm P̄_{l-2}^m). Python float math (correctly rounded; torch's
    vectorised sqrt/div on the CPU can differ by an ulp). The one copy every path reads; cached
    as numpy, never as a tensor: see :func:`_tables`."""
    import numpy as np

    grid = np.zeros((2, lmax + 1, lmax + 1))
    for l in range(1, lmax + 1):
        for m in range(l):
            grid[0, l, m] = math.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
        for m in range(l - 1):
            grid[1, l, m] = math.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
    return grid


@lru_cache(maxsize=64)
def _sectoral_coefficients(lmax: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(d, e)`` as Python floats: d_0 = 1/√(4π), d_m = √((2m+1)/(2m)) (P̄_m^m = d_m ρ P̄_{m-1}^{m-1}),
    and e_m = √(2m+3) for m = 0..lmax (P̄_{m+1}^m = e_m z P̄_m^m)."""
    d = (1.0 / math.sqrt(4.0 * math.pi),) + tuple(math.sqrt((2.0 * m + 1.0) / (2.0 * m)) for m in range(1, lmax + 1))
    e = tuple(math.sqrt(2.0 * m + 3.0) for m in range(lmax + 1))
    return d, e


def _tables(lmax: int, like: torch.Tensor):
    """Coefficient columns a_l, b_l ``(l-1, 1)`` per degree and the gather indices of the assembly.

    Made afresh on each call from ``like`` (its dtype and device), never cached as tensors: the
    reference runs in the backward, which ``torch.compile`` / aot_autograd trace with fake tensors,
    and a cached real tensor cannot enter such a trace (``torch.tensor`` of the cached numpy grid
    becomes a graph constant there). One copy of the grid per call, viewed per degree.

    Output column ``l²+l+m`` is ``P̄_l^|m|`` (row ``l(l+1)/2 + |m|`` of the stacked P̄) times
    trigonometric row 0 (m = 0: 1), ``m`` (m > 0: √2 cos mφ) or ``lmax + |m|`` (m < 0: √2 sin |m|φ).
    """
    grid = torch.tensor(_coefficient_grid(lmax), dtype=torch.float64, device=like.device).to(like.dtype)
    a = [grid[0, l, : max(l - 1, 0), None] for l in range(lmax + 1)]
    b = [grid[1, l, : max(l - 1, 0), None] for l in range(lmax + 1)]
    col = torch.arange((lmax + 1) ** 2, device=like.device)
    lc = torch.sqrt(col.to(torch.float64) + 0.5).floor().long()  # l = ⌊√k⌋; the 0.5 absorbs rounding
    mc = col - lc * lc - lc
    pidx = lc * (lc + 1) // 2 + mc.abs()
    tidx = torch.where(mc >= 0, mc, lmax - mc)  # m = 0 -> row 0
    return a, b, pidx, tidx


def _sh_real_reference(xyz: torch.Tensor, lmax: int) -> torch.Tensor:
    """Plain-torch real SH (Wikipedia / sphericart ordering l²+l+m) of unit vectors ``(N, 3)``.

    Differentiable with autograd; any device. One Python iteration per degree, vectorised over
    the orders m and the points, points last (contiguous) so every step is a dense row operation;
    the (N, K) output is gathered at the end from the stacked P̄ rows and the cos/sin rows.
    """
    dtype = xyz.dtype
    xt = xyz.t()
    x, y, z = xt[0:1], xt[1:2], xt[2:3]  # (1, N) each
    # ρ² clamped at the smallest normal number: at the poles c1 = s1 = 0, every m > 0 term is
    # then exactly 0 (as it should be, it carries ρ^m), and autograd through ρ·(x/ρ) gives the
    # exact (finite) gradient of these polynomials there instead of 0/0
    rho = torch.sqrt(torch.clamp(x * x + y * y, min=torch.finfo(dtype).tiny))
    c1 = x / rho
    s1 = y / rho
    # √2 cos mφ, √2 sin mφ by the rotation recurrence (the √2 of the real basis folded in)
    sqrt2 = math.sqrt(2.0)
    cos_m, sin_m = [sqrt2 * c1], [sqrt2 * s1]
    for _ in range(lmax - 1):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(c * c1 - s * s1)
        sin_m.append(s * c1 + c * s1)
    trig = torch.cat([torch.ones_like(x)] + cos_m[:lmax] + sin_m[:lmax], dim=0)  # (2 lmax + 1, N)
    a, b, pidx, tidx = _tables(lmax, xyz)
    rows = [torch.full_like(z, 1.0 / math.sqrt(4.0 * math.pi))]
    p_prev2 = None
    p_prev1 = rows[0]
    for l in range(1, lmax + 1):
        diag_prev = p_prev1[l - 1 : l]  # P̄_{l-1}^{l-1}
        parts = []
        if l >= 2:
            parts.append(a[l] * torch.addcmul(z * p_prev1[: l - 1], b[l], p_prev2[: l - 1], value=-1.0))
        parts.append(math.sqrt(2.0 * l + 1.0) * z * diag_prev)  # m = l-1
        parts.append(math.sqrt((2.0 * l + 1.0) / (2.0 * l)) * rho * diag_prev)  # m = l
        p = torch.cat(parts, dim=0)  # (l + 1, N): m = 0..l
        rows.append(p)
        p_prev2, p_prev1 = p_prev1, p
    pt = torch.cat(rows, dim=0).t().contiguous()  # (N, (lmax+1)(lmax+2)/2)
    return pt.index_select(1, pidx) * trig.t().contiguous().index_select(1, tidx)


@lru_cache(maxsize=64)
def _forward_tables(lmax: int, dtype: torch.dtype, device: str):
    """Tables of :func:`_sh_real_forward`, built in float64 and cast once.

    ``a[l]`` ``(2l-1, 1)``: a_lm over m = -(l-1)..(l-1) (|m| used; a_l,l-1 = √(2l+1), the step
    P̄_l^{l-1} = √(2l+1) z P̄_{l-1}^{l-1}); ``ab[l]`` ``(2l-3, 1)``: a_lm·b_lm over m = -(l-2)..(l-2);
    ``ratio``: c_1, then c_l / c_{l-1} (floats), of the sectoral harmonics Y_l^{±l} = c_l·(Re, Im)(x + iy)^l.
    """
    grid = _coefficient_grid(lmax)
    a, ab = [None] * (lmax + 1), [None] * (lmax + 1)
    for l in range(1, lmax + 1):
        a_l = grid[0, l, :l].tolist()
        b_l = grid[1, l, : l - 1].tolist()
        a[l] = torch.tensor(a_l[:0:-1] + a_l, dtype=torch.float64)[:, None]
        ab[l] = torch.tensor([a_l[abs(m)] * b_l[abs(m)] for m in range(2 - l, l - 1)], dtype=torch.float64)[:, None]
    # P̄_l^l = √((2l+1)/(2l)) ρ P̄_{l-1}^{l-1} from P̄_0^0 = 1/√(4π); the √2 of the real basis (m ≠ 0)
    ratio = [math.sqrt(3.0 / (4.0 * math.pi))] + list(_sectoral_coefficients(lmax)[0][2:])
    cast = dict(dtype=dtype, device=device)
    return ([t if t is None else t.to(**cast) for t in a], [t if t is None else t.to(**cast) for t in ab], ratio)


_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14


@lru_cache(maxsize=1)
def _madvise():
    """libc ``madvise`` where transparent huge pages are granted on request (Linux, THP mode
    ``madvise``), else None (``always`` gives them anyway, ``never`` refuses them)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as fh:
            if "[madvise]" not in fh.read():
                return None
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _empty_output(rows: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.empty((rows, n))``; on the CPU, large buffers are backed by 2 MiB pages.

    A fresh multi-MB output is mapped on first touch one 4 KiB page at a time, and those page
    faults cost more than the whole recursion (about 2/3 of the time at lmax 10, 100k points,
    for every library that returns a new tensor). ``madvise(MADV_HUGEPAGE)`` on the 2 MiB-aligned
    part of the tensor's own memory, before it is touched, cuts them 512-fold; torch does the same
    for every allocation under ``THP_MEM_ALLOC_ENABLE=1``. A refusal only leaves 4 KiB pages.
    ``GEODL_DISABLE_HUGEPAGES=1`` turns it off.
    """
    out = torch.empty(rows, n, dtype=dtype, device=device)
    nbytes = out.numel() * out.element_size()
    if device.type != "cpu" or nbytes < 4 * _HUGE_PAGE:
        return out
    if os.environ.get("GEODL_DISABLE_HUGEPAGES", "") not in ("", "0"):
        return out
    madvise = _madvise()
    if madvise is not None:
        start = -(-out.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
        end = (out.data_ptr() + nbytes) // _HUGE_PAGE * _HUGE_PAGE
        madvise(start, end - start, _MADV_HUGEPAGE)
    return out


def _sh_real_forward(xyz: torch.Tensor, lmax: int) -> torch.Tensor:
    """The same values as :func:`_sh_real_reference`, faster, not differentiable (forward only).

    Returns the transposed view of a ``((lmax+1)², N)`` buffer: a valid ``(N, K)`` tensor in
    column-major layout (``is_contiguous()`` is False). Writing the result point-major costs about
    a third of the time (strided stores), and every step here is a dense row operation instead.

    The recursion runs on the harmonics themselves, not on P̄: Y_l^{±m} = P̄_l^m·T_{±m} with T
    independent of l, so the degree recursion P̄_l^m = a_lm (z P̄_{l-1}^m - b_lm P̄_{l-2}^m) holds
    for Y_l^{±m} row by row; degree l's block (rows l²+1 … l²+2l-1, m = -(l-1)..(l-1)) is three
    in-place passes over the previous two blocks of the output. The sectoral seeds Y_l^{±l} are
    c_l·(Re, Im)(x + iy)^l by the rotation recurrence on (x, y) (same error growth as the cos/sin
    recurrence of the reference, and no division by ρ, so the poles need no clamp).
    """
    n, dtype, device = xyz.shape[0], xyz.dtype, xyz.device
    out = _empty_output((lmax + 1) ** 2, n, dtype, device)
    out[0] = 1.0 / math.sqrt(4.0 * math.pi)
    if lmax == 0 or n == 0:
        return out.t()
    a, ab, ratio = _forward_tables(lmax, dtype, str(device))
    xt = torch.stack(xyz.unbind(1))  # (3, N); 3× faster than .t().contiguous()
    x, y = xt[0], xt[1]
    # sectoral seeds straight into their output rows l²+2l (cos) and l² (sin), no temporaries
    torch.mul(x, ratio[0], out=out[3])
    torch.mul(y, ratio[0], out=out[1])
    for l in range(2, lmax + 1):
        cp, sp, cc, ss = out[l * l - 1], out[(l - 1) ** 2], out[l * l + 2 * l], out[l * l]
        torch.mul(cp, x, out=cc)
        cc.addcmul_(sp, y, value=-1.0).mul_(ratio[l - 1])
        torch.mul(sp, x, out=ss)
        ss.addcmul_(cp, y).mul_(ratio[l - 1])
    z = xt[2:3]
    for l in range(1, lmax + 1):
        cur = out[l * l + 1 : (l + 1) ** 2 - 1]
        torch.mul(out[(l - 1) ** 2 : l * l], a[l], out=cur)
        cur.mul_(z)
        if l >= 2:
            cur[1:-1].addcmul_(ab[l], out[(l - 2) ** 2 : (l - 1) ** 2], value=-1.0)
    return out.t()


def _sh_real_ref(xyz: torch.Tensor, lmax: int) -> torch.Tensor:
    # CPU float32/float64: the C kernel of geodl.ops._sh_cpu (one parallel pass over blocks of
    # points, the same values); it returns None where it does not serve the call (other devices or
    # dtypes, GEODL_DISABLE_CPU_KERNEL=1, no compiler), and the torch forward runs instead
    if xyz.device.type == "cpu":
        from geodl.ops._sh_cpu import sh_real_cpu

        out = sh_real_cpu(xyz, lmax, _empty_output)
        if out is not None:
            return out
    return _sh_real_forward(xyz.contiguous(), lmax)


def _sh_real_tri(xyz, lmax):
    from geodl.ops._triton_sh import sh_real_triton

    return sh_real_triton(xyz.contiguous(), lmax)


def _sh_real_fake(xyz, lmax):
    k = (lmax + 1) ** 2
    return xyz.new_empty((k, xyz.shape[0])).t()  # same strides as the real output (both paths)


_TRITON_SH_DTYPES = (torch.float32, torch.float64)


def _setup_context(ctx, inputs, output):
    xyz, lmax = inputs
    ctx.save_for_backward(xyz)
    ctx.lmax = lmax


_F32_BACKWARD_LMAX = 100  # float32 inputs above this degree get a float64 backward (see _backward)


def _sh_real_backward_analytic(xyz: torch.Tensor, grad: torch.Tensor, lmax: int) -> torch.Tensor:
    """First-order gradient ``(N, 3)`` of ``(grad * sh_real(xyz)).sum()`` in plain torch, no autograd.

    The torch twin of the CUDA kernel :func:`geodl.ops._triton_sh.sh_real_backward_triton`: as a
    function on R³ the real harmonic is √2·Q_lm(z)·Re/Im (x+iy)^m (Q_mm a constant, ρ^m cos mφ =
    Re (x+iy)^m), which is what autograd through :func:`_sh_real_reference` differentiates. So
    ∂/∂x (A_m, B_m) = m (A_{m-1}, B_{m-1}), ∂/∂y (A_m, B_m) = m (−B_{m-1}, A_{m-1}), and ∂/∂z runs
    the derivative of the degree recursion, Q'_lm = a (Q_{l-1} + z Q'_{l-1} − b Q'_{l-2}), beside it.
    The recursion runs over degrees with all orders as rows (points last), the l-sums Σ g·Q and
    Σ g·Q' per order are accumulated first and combined with A, B once at the end. Memory
    O(lmax·N); about 3× the forward's time instead of the recomputation's ~25×. Tables are made
    per call (see :func:`_tables`), so it traces under ``torch.compile`` too.
    """
    n, dtype, device = xyz.shape[0], xyz.dtype, xyz.device
    if lmax == 0 or n == 0:
        return torch.zeros_like(xyz)
    gt = grad.t()  # (K, N): row views per harmonic (free for the usual column-major grad)
    rowwise = gt.stride(-1) == 1  # else copy one degree's rows at a time: O((2l+1)·N) extra, not O(K·N)
    xt = torch.stack(xyz.unbind(1))
    z = xt[2:3]  # (1, N)
    a, b, _, _ = _tables(lmax, xyz)
    d, e = _sectoral_coefficients(lmax)
    consts = torch.tensor(d, dtype=torch.float64, device=device).cumprod(0).to(dtype)  # Q_mm
    e = torch.tensor(e[:lmax], dtype=torch.float64, device=device).to(dtype)  # Q_{m+1,m} = e_m z Q_mm
    # A_m + i B_m = (x + iy)^m, rows m = 0..lmax, written in place (no per-order temporaries)
    A = torch.empty(lmax + 1, n, dtype=dtype, device=device)
    B = torch.empty(lmax + 1, n, dtype=dtype, device=device)
    A[0], B[0] = 1.0, 0.0
    for k in range(1, lmax + 1):
        torch.mul(A[k - 1], xt[0], out=A[k])
        A[k].addcmul_(B[k - 1], xt[1], value=-1.0)
        torch.mul(A[k - 1], xt[1], out=B[k])
        B[k].addcmul_(B[k - 1], xt[0])
    sqc, sqs, sdc, sds = (torch.zeros(lmax + 1, n, dtype=dtype, device=device) for _ in range(4))
    q_prev2 = q_prev1 = dq_prev2 = dq_prev1 = None
    for l in range(0, lmax + 1):
        if l == 0:
            q = consts[:1, None].expand(1, n)
            dq = torch.zeros(1, n, dtype=dtype, device=device)
        else:
            parts_q, parts_dq = [], []
            if l >= 2:
                parts_q.append(a[l] * torch.addcmul(z * q_prev1[: l - 1], b[l], q_prev2[: l - 1], value=-1.0))
                parts_dq.append(a[l] * (q_prev1[: l - 1] + z * dq_prev1[: l - 1] - b[l] * dq_prev2[: l - 1]))
            parts_q.append(e[l - 1] * consts[l - 1] * z)  # m = l-1
            parts_dq.append((e[l - 1] * consts[l - 1]).expand(1, n))
            parts_q.append(consts[l].expand(1, n))  # m = l
            parts_dq.append(torch.zeros(1, n, dtype=dtype, device=device))
            q, dq = torch.cat(parts_q), torch.cat(parts_dq)  # (l + 1, N)
        blk = gt[l * l : (l + 1) * (l + 1)]
        if not rowwise:
            blk = blk.contiguous()
        gc = blk[l:]  # m = 0..l (cos; m = 0 the zonal one), columns l²+l+m
        sqc[: l + 1].addcmul_(gc, q)
        sdc[: l + 1].addcmul_(gc, dq)
        if l >= 1:
            gs = blk[:l].flip(0)  # m = 1..l (sin), columns l²+l−m
            sqs[1 : l + 1].addcmul_(gs, q[1:])
            sds[1 : l + 1].addcmul_(gs, dq[1:])
        q_prev2, q_prev1, dq_prev2, dq_prev1 = q_prev1, q, dq_prev1, dq
    sqrt2 = math.sqrt(2.0)
    m = torch.arange(1, lmax + 1, device=device, dtype=dtype)[:, None] * sqrt2
    gz = sdc[0] + sqrt2 * (A[1:] * sdc[1:] + B[1:] * sds[1:]).sum(0)
    gx = (m * (A[:-1] * sqc[1:] + B[:-1] * sqs[1:])).sum(0)
    gy = (m * (A[:-1] * sqs[1:] - B[:-1] * sqc[1:])).sum(0)
    return torch.stack([gx, gy, gz], 1)


def _recompute_grad(xyz: torch.Tensor, lmax: int, grad: torch.Tensor) -> torch.Tensor:
    """Backward by recomputation: rebuild the forward graph from the saved input and pull back.

    Runs at the autograd level (autograd is off inside a custom op's implementation); with
    create_graph the recomputed graph is itself differentiable, so double backward works. Points
    are independent, so the recomputation runs in chunks of ~1/8 of the points: the transient
    graph (about 8 outputs' worth per point) stays within about one output's size.
    """
    create = torch.is_grad_enabled()
    n = xyz.shape[0]
    step = max(1024, -(-n // 8))
    parts = []
    with torch.enable_grad():
        for i in range(0, max(n, 1), step):
            xi = xyz[i : i + step]
            x = xi.detach().requires_grad_(True) if not create else xi
            y = _sh_real_reference(x, lmax)
            parts.append(torch.autograd.grad(y, x, grad[i : i + step], create_graph=create)[0])
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _backward(ctx, grad):
    (xyz,) = ctx.saved_tensors
    if not torch.is_grad_enabled():  # first order; double backward needs the recomputation
        # The closed form carries Q_lm = P̄_lm / ρ^m, which outgrows float32 past degree ~150
        # (1e40 by lmax 200): above the documented float32 range (lmax 100) it runs in float64.
        wide = xyz.dtype == torch.float32 and ctx.lmax > _F32_BACKWARD_LMAX
        xx, gg = (xyz.double(), grad.double()) if wide else (xyz, grad)
        if choose("sh_real_backward", xx, xx.dtype in _TRITON_SH_DTYPES) == "triton":  # one pass over grad
            from geodl.ops._triton_sh import sh_real_backward_triton

            out = sh_real_backward_triton(xx, gg, ctx.lmax)
        else:
            out = _sh_real_backward_analytic(xx, gg, ctx.lmax)
        return out.to(xyz.dtype), None
    return _recompute_grad(xyz, ctx.lmax, grad.contiguous()), None


class _SHReal(torch.autograd.Function):
    """Eager twin of ``geodl::sh_real``: the same forward and backward without the custom-op
    dispatch, whose first call imports torch._dynamo (seconds); used when not compiling."""

    @staticmethod
    def forward(ctx, xyz, lmax):
        ctx.save_for_backward(xyz)
        ctx.lmax = lmax
        return implementation("sh_real")(xyz, lmax)

    @staticmethod
    def backward(ctx, grad):
        return _backward(ctx, grad)


# both paths return the column-major (N, K) view of a (K, N) buffer
_sh_real_op = register_kernel("sh_real", _sh_real_ref, fake=_sh_real_fake, triton=_sh_real_tri,
                              dtypes=_TRITON_SH_DTYPES, backward=_backward, setup_context=_setup_context)


def _to_complex(y: torch.Tensor, lmax: int) -> torch.Tensor:
    """Complex Y_l^m with the Condon–Shortley phase from the real basis (same l²+l+m ordering)."""
    idx = torch.arange((lmax + 1) ** 2)
    l = torch.sqrt(idx.double()).floor().long()
    m = idx - l * l - l
    mabs = m.abs()
    pos = l * l + l + mabs  # Y_l|m| (cos part)
    neg = l * l + l - mabs  # Y_l,-|m| (sin part)
    dev = y.device
    re = y[..., pos.to(dev)]
    im = y[..., neg.to(dev)]
    is0 = (m == 0).to(dev)
    # m > 0: (-1)^m (Y_lm + i Y_l,-m)/√2 ; m < 0: (Y_l|m| - i Y_l,-|m|)/√2
    cs = torch.where(m > 0, (-1.0) ** mabs.double(), torch.ones_like(m, dtype=torch.float64))
    sgn_im = torch.where(m > 0, cs, -torch.ones_like(cs))
    scale = torch.where(m == 0, torch.ones_like(cs), torch.full_like(cs, 1.0 / math.sqrt(2.0)))
    real = re * (cs * scale).to(device=dev, dtype=y.dtype)
    imag = torch.where(is0, torch.zeros_like(im), im * (sgn_im * scale).to(device=dev, dtype=y.dtype))
    return torch.complex(real, imag)


def _unit_vectors(points: torch.Tensor, input: str, values: bool) -> torch.Tensor:
    if input == "lonlat":
        from geodl.groups import lonlat_to_xyz  # lazily: importing geodl.ops needs only torch

        lat = points[..., 1]
        if values and bool(((lat < -90.0) | (lat > 90.0)).any()):
            raise ValueError("points: latitudes (points[..., 1]) must lie in [-90, 90] degrees")
        return lonlat_to_xyz(points)
    norm = torch.linalg.vector_norm(points, dim=-1, keepdim=True)
    if values and bool((norm == 0).any()):
        raise ValueError("points: contains zero vectors; expected nonzero directions")
    return points / norm


@public_op("spherical_harmonics", kernels=("sh_real", "sh_real_backward"))
def spherical_harmonics(
    lmax: int,
    points: torch.Tensor,
    *,
    input: str = "xyz",
    convention: str = "real",
    normalize: bool = True,
) -> torch.Tensor:
    """Orthonormal spherical harmonics of all degrees ``0..lmax``, stable to very high degree.

    Parameters
    ----------
    lmax : int
        Largest degree (≥ 0). Tested to 300 in float64 and 100 in float32.
    points : Tensor, shape (..., 3) or (..., 2)
        Directions as vectors ``(x, y, z)`` (``input="xyz"``; normalised when ``normalize``) or
        ``(longitude, latitude)`` in degrees (``input="lonlat"``, latitude in [-90, 90]).
    input : {"xyz", "lonlat"}
    convention : {"real", "e3nn", "complex"}
        ``"real"``: real orthonormal basis in the Wikipedia / sphericart ordering (column
        ``l² + l + m``; ``Y_l,m ∝ cos mφ`` for m > 0, ``sin |m|φ`` for m < 0, no Condon–Shortley
        sign). ``"e3nn"``: equal to ``e3nn.o3.spherical_harmonics(range(lmax+1), x,
        normalize=True)`` (y is the polar axis, ``normalization="integral"``). ``"complex"``:
        complex ``Y_l^m`` with the Condon–Shortley phase (scipy's ``sph_harm_y``).
    normalize : bool
        Normalise ``xyz`` input to unit length. With ``False`` the vectors must already be unit
        vectors (not checked beyond being nonzero).

    Returns
    -------
    Tensor, shape (..., (lmax+1)²)
        Same dtype and device as ``points`` (complex dtype for ``"complex"``). Differentiable;
        the backward is closed-form from the saved inputs (on CUDA: a Triton kernel). For the
        real and e3nn conventions the result is column-major: the transposed view of a
        ``((lmax+1)², N)`` buffer, so ``y.is_contiguous()`` is False (``y.view`` across the last
        dimension fails; ``reshape``, indexing, ``nn.Linear`` work as usual). Call
        ``.contiguous()`` where a row-major copy is needed.

    Raises
    ------
    ValueError
        NaN/inf coordinates, zero vectors, latitudes outside [-90, 90], bad ``lmax``.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import spherical_harmonics
    >>> y = spherical_harmonics(2, torch.tensor([[0.0, 0.0, 1.0]]))
    >>> y.shape
    torch.Size([1, 9])
    >>> round(float(y[0, 0]), 6), round(float(y[0, 2]), 6)  # 1/√(4π), √(3/(4π))
    (0.282095, 0.488603)
    >>> lonlat = torch.tensor([[10.0, 45.0], [-170.0, -90.0]], dtype=torch.float64)
    >>> spherical_harmonics(20, lonlat, input="lonlat").shape
    torch.Size([2, 441])
    """
    lmax = check_int("lmax", lmax, min=0)
    check_choice("input", input, _INPUTS)
    check_choice("convention", convention, _CONVENTIONS)
    width = 2 if input == "lonlat" else 3
    # value checks are data-dependent branches: skipped while torch.compile traces
    values = not torch.compiler.is_compiling()
    check_tensor("points", points, shape=(..., width), floating=True)
    if points.is_complex():
        raise TypeError("points: expected a real floating-point tensor")
    # a NaN/inf makes the sum non-finite: one reduction instead of an isfinite mask (≈5% of the
    # forward at lmax 10); only a non-finite sum (or an overflowing one) takes the full check
    if values and not bool(torch.isfinite(points.sum())):
        check_finite("points", points)
    lead = points.shape[:-1]
    flat = points.reshape(-1, width)
    if input == "xyz" and not normalize:
        if values and bool((torch.linalg.vector_norm(flat, dim=-1) == 0).any()):
            raise ValueError("points: contains zero vectors; expected unit vectors")
        xyz = flat
    else:
        xyz = _unit_vectors(flat, input, values)
    if convention == "e3nn":
        # e3nn's polar axis is y: its Y_l(x, y, z) is exactly the real basis at (z, x, y), same
        # ordering and signs (checked against e3nn 0.6 to 1e-13 in the tests); its default
        # normalization="integral" is the orthonormal one used here
        xyz = xyz[:, [2, 0, 1]]
    y = _sh_real_op(xyz, lmax) if not values else _SHReal.apply(xyz, lmax)
    if convention == "complex":
        y = _to_complex(y, lmax)
    return y.reshape(*lead, y.shape[-1])
