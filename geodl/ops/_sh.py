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
from torch.fx.experimental.symbolic_shapes import guard_or_false

from geodl._checks import check_alloc, check_choice, check_finite, check_int, check_memory, check_tensor
from geodl.ops._dispatch import choose, implementation, public_op, register_kernel

__all__ = ["spherical_harmonics"]

_CONVENTIONS = ("real", "e3nn", "complex")
_INPUTS = ("xyz", "lonlat")
_NORMALIZATIONS = ("integral", "norm", "component")  # e3nn's names


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
    # n may be a data-dependent size under torch.compile (e.g. an edge count from knn_graph): the
    # shortcut is taken only where n is known to be 0; the general path handles 0 rows as well
    if lmax == 0 or guard_or_false(n == 0):
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


def _first_order_grad(xyz: torch.Tensor, grad: torch.Tensor, lmax: int) -> torch.Tensor:
    """``(N, 3)`` gradient of ``(grad * sh_real(xyz)).sum()``, closed form, no autograd (Triton on CUDA)."""
    # The closed form carries Q_lm = P̄_lm / ρ^m, which outgrows float32 past degree ~150
    # (1e40 by lmax 200): above the documented float32 range (lmax 100) it runs in float64.
    wide = xyz.dtype == torch.float32 and lmax > _F32_BACKWARD_LMAX
    xx, gg = (xyz.double(), grad.double()) if wide else (xyz, grad)
    if choose("sh_real_backward", xx, xx.dtype in _TRITON_SH_DTYPES) == "triton":  # one pass over grad
        from geodl.ops._triton_sh import sh_real_backward_triton

        out = sh_real_backward_triton(xx, gg, lmax)
    else:
        out = None
        if xx.device.type == "cpu":  # the C twin (geodl.ops._sh_cpu); None where it does not serve
            from geodl.ops._sh_cpu import sh_backward_cpu

            out = sh_backward_cpu(xx, gg, lmax)
        if out is None:
            out = _sh_real_backward_analytic(xx, gg, lmax)
    return out.to(xyz.dtype)


def _backward(ctx, grad):
    (xyz,) = ctx.saved_tensors
    if not torch.is_grad_enabled():  # first order; double backward needs the recomputation
        return _first_order_grad(xyz, grad, ctx.lmax), None
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


def _degrees(lmax) -> tuple[tuple[int, ...] | None, int]:
    """``(degrees, top)``: the requested degrees (None: all of ``0..top``, the int form) and the largest."""
    if isinstance(lmax, torch.Tensor) and lmax.dim() == 1:
        lmax = lmax.tolist()
    if isinstance(lmax, (list, tuple, range)):
        if len(lmax) == 0:
            raise ValueError("lmax: expected a degree or a non-empty list of degrees, got an empty list")
        ls = tuple(check_int(f"lmax[{i}]", l, min=0) for i, l in enumerate(lmax))
        top = max(ls)
        return (None if ls == tuple(range(top + 1)) else ls), top
    return None, check_int("lmax", lmax, min=0)


def _block_layout(degrees: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Columns of the blocks of ``degrees`` in the ``(lmax+1)²`` output, and the degree of each
    (not cached: torch.compile traces through it, and it is two short list comprehensions)."""
    cols = [c for l in degrees for c in range(l * l, (l + 1) ** 2)]
    return cols, [l for l in degrees for _ in range(2 * l + 1)]


def _column_degrees(lmax: int, device) -> torch.Tensor:
    """Degree ``l`` of each column ``l² + l + m`` of the ``(lmax+1)²`` output (int64)."""
    col = torch.arange((lmax + 1) ** 2, device=device, dtype=torch.float64)
    return torch.sqrt(col + 0.5).floor().long()  # l = ⌊√k⌋; the 0.5 absorbs rounding


def _check_size(lmax: int, degrees, n: int, dtype: torch.dtype, device, convention: str) -> None:
    """ValueError naming ``lmax`` (with the memory it needs) before anything of that size is allocated
    (the tables are checked for no points too: the per-column tables of the options take as much)."""
    value = lmax if degrees is None else list(degrees)
    item = dtype.itemsize
    # the (N, (lmax+1)²) buffer of all degrees; "complex" adds its real and imaginary gathers and the
    # complex result (3 more values per entry); a degree list adds the selected copy
    extra = 3 * item if convention == "complex" else 0
    row = 0 if degrees is None else sum(2 * l + 1 for l in degrees) * item * (2 if convention == "complex" else 1)
    check_alloc("lmax", value, n, (lmax + 1) ** 2, dtype, device, row_bytes=row, elem_bytes=extra)
    check_memory("lmax", value, 16 * (lmax + 1) ** 2, "cpu", what=f"tables of 2 x {lmax + 1}² float64 values")


def _lonlat_vectors(points: torch.Tensor, values: bool) -> torch.Tensor:
    from geodl.groups import lonlat_to_xyz  # lazily: importing geodl.ops needs only torch

    lat = points[..., 1]
    if values and bool(((lat < -90.0) | (lat > 90.0)).any()):
        raise ValueError("points: latitudes (points[..., 1]) must lie in [-90, 90] degrees")
    return lonlat_to_xyz(points)


def _pow2_scale(m: torch.Tensor) -> torch.Tensor:
    """Exact powers of two ``p`` with ``m·p`` in [1, 2) for every normal ``m ≥ 0`` (float32 or float64).

    Built from the exponent bits, so ``x·p`` is exact. ``p`` stays a normal number: ``m`` in the
    top binade gets 2^-126 / 2^-1022 (``m·p`` < 4), subnormal and zero ``m`` get 2^127 / 2^1023
    (``m·p`` ≥ 2^-22 / 2^-51 unless ``m`` is 0).
    """
    ity, bits, bias = (torch.int64, 52, 1023) if m.dtype == torch.float64 else (torch.int32, 23, 127)
    e = m.contiguous().view(ity) >> bits  # the biased exponent (m ≥ 0: no sign bit)
    return ((2 * bias - e).clamp(1, 2 * bias) << bits).view(m.dtype)


def _scaled(flat: torch.Tensor, safe: bool = False):
    """``(s, n, p, zero)``: ``s = flat·p`` with ``p`` (N, 1) the power of two of :func:`_pow2_scale` of
    each row's largest |entry|, ``n = |s|`` (N, 1) and the (N, 1) mask of the zero rows.

    Scaling before squaring keeps x² from overflowing (|x| ≳ 1e19 in float32: the norm was inf and
    the direction 0) or underflowing (|x| ≲ 1e-19: a nonzero vector taken for a zero one). A power
    of two scales exactly, so ``s / n`` is bit for bit ``x / |x|`` wherever that was computable.
    ``p`` is a constant for autograd: ``s / n`` does not depend on it, ``n / p`` = |x| neither.
    ``safe``: the norm of a zero row is taken of (1, 1, 1) instead (derivatives of every order stay
    finite; :func:`_safe_directions` then puts a placeholder direction there).
    """
    m = flat.detach().abs().amax(dim=-1, keepdim=True)
    p = _pow2_scale(m)
    s = flat * p
    zero = m == 0
    n = torch.linalg.vector_norm(torch.where(zero, 1.0, s) if safe else s, dim=-1, keepdim=True)
    return s, n, p, zero


_ZERO_VECTOR_MSG = ("points: contains zero vectors; expected nonzero directions (allow_zero_vectors=True gives "
                    "them the harmonics [Y_0, 0, ..., 0])")


def _safe_directions(s: torch.Tensor, n: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """``s / n``, with the placeholder direction (1, 0, 0) on the zero rows: constant there (the
    gradient stops), and a unit vector, at which the harmonics and their derivatives are tame
    (at 0 the recursion's derivatives are not: the reference divides by a clamped ρ)."""
    return torch.where(zero, torch.nn.functional.pad(s.new_ones(1, 1), (0, 2)), s / n)


def _directions(flat: torch.Tensor, zero_ok: bool, values: bool):
    """Unit vectors ``(N, 3)`` of ``flat`` and, with ``zero_ok``, the ``(N, 1)`` mask of its zero rows
    (their direction is a placeholder, see :func:`_safe_directions`); without it a zero vector
    raises (eager calls)."""
    s, n, _, zero = _scaled(flat, safe=zero_ok)
    if zero_ok:
        return _safe_directions(s, n, zero), zero
    if values and bool(zero.any()):
        raise ValueError(_ZERO_VECTOR_MSG)
    return s / n, None


def _unit_and_radius(x: torch.Tensor):
    """``(u, r)``: directions ``(N, 3)`` (the placeholder of :func:`_safe_directions` for a zero
    vector) and lengths ``(N,)`` of ``x`` (scaled first)."""
    s, n, p, zero = _scaled(x, safe=True)
    return _safe_directions(s, n, zero), torch.where(zero, 0.0, n / p)[:, 0]


def _radius_powers(r: torch.Tensor, lmax: int, shift: int = 0) -> torch.Tensor:
    """``(lmax+1, N)``: row ``l`` is ``r^(l+shift)``; row 0 is 1, or 0 for ``shift=-1`` (a constant:
    no 0·r^-1 = NaN in derivatives at r = 0)."""
    ls = torch.arange(1, lmax + 1, dtype=r.dtype, device=r.device)[:, None]
    return torch.cat([torch.full_like(r, 0.0 if shift else 1.0)[None], torch.pow(r[None, :], ls + shift)])


def _low_degree_polynomials(x: torch.Tensor, lmax: int) -> torch.Tensor:
    """Degrees 1 and 2 of the real basis as the polynomials they are, ``(N, 3)`` or ``(N, 8)``:
    c₁·(y, z, x) and c₂·(xy, yz, (2z² - x² - y²)/(2√3), xz, (x² - y²)/2)."""
    c1, c2 = math.sqrt(3.0 / (4.0 * math.pi)), math.sqrt(15.0 / (4.0 * math.pi))
    a, b, c = x.unbind(1)
    cols = [c1 * b, c1 * c, c1 * a]
    if lmax >= 2:
        cols += [c2 * a * b, c2 * b * c, c2 / (2.0 * math.sqrt(3.0)) * (2.0 * c * c - a * a - b * b), c2 * a * c,
                 c2 / 2.0 * (a * a - b * b)]
    return torch.stack(cols, 1)


def _homogeneous(x: torch.Tensor, lmax: int, op) -> torch.Tensor:
    """|x|^l·Y_lm(x/|x|) by composition of differentiable steps (``op``: the real harmonics of unit
    vectors): the form traced by torch.compile and recomputed for double backward.

    At a zero vector the composition's derivatives are those of |x| and x/|x| taken as 0 there, so
    it misses degree 1's gradient and degree 2's Hessian (the only nonzero first and second
    derivatives of these polynomials at 0): the polynomials of degrees 1 and 2 of ``x`` masked
    to the zero rows, which are 0 in value (x = 0 there), carry them.
    """
    u, r = _unit_and_radius(x)
    y = op(u, lmax)
    rl = _radius_powers(r, lmax).index_select(0, _column_degrees(lmax, x.device)).t()
    y = torch.where(torch.isinf(rl) & (y == 0), 0.0, y * rl)  # |x|^l overflowed: 0 stays 0, not 0·inf = NaN
    if lmax >= 1:
        low = _low_degree_polynomials(x * (r == 0).to(x.dtype)[:, None], lmax)
        y = y + torch.nn.functional.pad(low, (1, y.shape[1] - 1 - low.shape[1]))
    return y


class _SHHomogeneous(torch.autograd.Function):
    """|x|^l·Y_lm(x/|x|) of raw vectors ``(N, 3)`` (``normalize=False``), eager, with the memory
    profile of :class:`_SHReal`: it saves the input only.

    First-order backward without autograd: with u = x/|x|, r = |x| and g the polynomial extension
    the real harmonics' closed-form backward differentiates (:func:`_first_order_grad`),
    ∇(r^l Y(u)) = r^(l-1) [l Y(u) u + (I - u uᵀ) ∇g(u)]; so one recomputed forward (for the radial
    part) and one closed-form backward of the incoming gradient times r^(l-1) (for the tangential
    part). At a zero vector only degree 1 has r^(l-1) ≠ 0, and for that linear block A·x the
    formula gives Aᵀ·g at any unit u (the placeholder): the exact gradient. Double backward
    recomputes :func:`_homogeneous` under autograd.
    """

    @staticmethod
    def forward(ctx, x, lmax):
        ctx.save_for_backward(x)
        ctx.lmax = lmax
        u, r = _unit_and_radius(x)
        y = implementation("sh_real")(u, lmax)
        rl = _radius_powers(r, lmax)
        y.t().mul_(rl.index_select(0, _column_degrees(lmax, x.device)))
        if bool(torch.isinf(rl).any()):  # |x|^l overflowed: a harmonic that is 0 stays 0, not 0·inf = NaN
            y.masked_fill_(torch.isnan(y), 0.0)
        return y

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        lmax = ctx.lmax
        if torch.is_grad_enabled():  # double backward: differentiate the recomputed composition
            with torch.enable_grad():
                return torch.autograd.grad(_homogeneous(x, lmax, _SHReal.apply), x, grad, create_graph=True)[0], None
        u, r = _unit_and_radius(x)
        lcol = _column_degrees(lmax, x.device)
        gp = grad.t() * _radius_powers(r, lmax, shift=-1).index_select(0, lcol)  # (K, N): g·r^(l-1)
        yt = implementation("sh_real")(u, lmax).t()
        radial = (gp * yt).mul_(lcol.to(x.dtype)[:, None]).sum(0)[:, None]  # Σ l r^(l-1) g Y(u)
        tang = _first_order_grad(u, gp.t(), lmax)
        return tang - u * (u * tang).sum(1, keepdim=True) + u * radial, None


def _normalization_scale(normalization: str, lmax: int, degrees, like: torch.Tensor):
    """Factor from the orthonormal ("integral") harmonics to ``normalization``: None, a float, or
    a ``(K,)`` tensor of √(4π/(2l+1)) per column ("norm")."""
    if normalization == "integral":
        return None
    if normalization == "component":
        return math.sqrt(4.0 * math.pi)
    if degrees is None:
        l = _column_degrees(lmax, like.device).double()
    else:
        l = torch.tensor(_block_layout(degrees)[1], dtype=torch.float64, device=like.device)
    real = like.real.dtype if like.is_complex() else like.dtype
    return torch.sqrt(4.0 * math.pi / (2.0 * l + 1.0)).to(real)


_HALF = (torch.float16, torch.bfloat16)


@public_op("spherical_harmonics", kernels=("sh_real", "sh_real_backward"))
def spherical_harmonics(
    lmax,
    points: torch.Tensor,
    *,
    input: str = "xyz",
    convention: str = "real",
    normalize: bool = True,
    normalization: str = "integral",
    allow_zero_vectors: bool = False,
) -> torch.Tensor:
    """Spherical harmonics of degrees ``0..lmax`` (or of a list of degrees), stable to very high degree.

    Parameters
    ----------
    lmax : int or sequence of int
        Largest degree (≥ 0): the output holds all degrees ``0..lmax``. Tested to 300 in float64
        and 100 in float32. A list of degrees (e.g. ``[0, 2, 3]``; any order, repeats allowed)
        gives their blocks concatenated in that order, as e3nn's list ``l`` does (an int here
        means all degrees up to it, where e3nn's int ``l`` is the single degree ``l``; pass
        ``[l]`` for that). A list is computed to its largest degree and then selected.
    points : Tensor, shape (..., 3) or (..., 2)
        Vectors ``(x, y, z)`` (``input="xyz"``) or ``(longitude, latitude)`` in degrees
        (``input="lonlat"``, latitude in [-90, 90]).
    input : {"xyz", "lonlat"}
    convention : {"real", "e3nn", "complex"}
        ``"real"``: real orthonormal basis in the Wikipedia / sphericart ordering (column
        ``l² + l + m``; ``Y_l,m ∝ cos mφ`` for m > 0, ``sin |m|φ`` for m < 0, no Condon–Shortley
        sign). ``"e3nn"``: e3nn's basis: equal to ``e3nn.o3.spherical_harmonics(l, x, normalize,
        normalization)`` for the same options (y is the polar axis). ``"complex"``: complex
        ``Y_l^m`` with the Condon–Shortley phase (scipy's ``sph_harm_y``).
    normalize : bool
        ``True``: the harmonics of the direction ``x/|x|``. ``False`` (e3nn's meaning): the
        homogeneous polynomials ``|x|^l · Y_lm(x/|x|)`` of the vector itself (for unit vectors
        the same numbers; entries overflow where ``|x|^l`` exceeds the dtype's range). Ignored for
        ``input="lonlat"``. Vectors are scaled by a power of two before squaring, so any finite
        nonzero vector has a direction (``1e20`` and ``1e-30`` in float32 included).
    normalization : {"integral", "norm", "component"}
        e3nn's names. ``"integral"`` (default): orthonormal, ∫ Y_lm² = 1 over the sphere.
        ``"component"``: ``√(4π)`` times that, so ``|Y_l(x)|² = 2l+1`` for a unit ``x``.
        ``"norm"``: ``"component"`` / ``√(2l+1)``, so ``|Y_l(x)| = 1`` for a unit ``x``.
    allow_zero_vectors : bool
        Default ``False``: a zero vector raises ``ValueError`` (it has no direction). ``True``
        (e.g. for the self-loops of a graph): a zero vector gives ``Y_0`` (1/√(4π) for
        ``"integral"``) in every degree-0 column and 0 in all others, as e3nn does. Its gradient
        there: with ``normalize=False`` the polynomial's exact gradient (nonzero for degree 1
        only), as e3nn; with ``normalize=True`` 0 (e3nn divides by ``max(|x|, 1e-12)`` instead,
        which gives its degree-1 harmonics a gradient of about 1e12 at a zero vector; for vectors
        shorter than 1e-12 e3nn's values also differ from the direction's harmonics, geodl's do not).

    Returns
    -------
    Tensor, shape (..., K)
        ``K = (lmax+1)²`` (or ``Σ (2l+1)`` over a list of degrees). Same dtype and device as
        ``points``; complex for ``"complex"`` (complex64 for float32 and half input). float16
        and bfloat16 input is computed in float32 and the result rounded to the input's dtype:
        their own recursion would lose accuracy from the first degrees on (bfloat16 at degree 20
        errs by 15× its rounding). Differentiable, with gradients for every option; the backward
        is closed-form from the saved inputs (on CUDA: a Triton kernel). For the real and e3nn
        conventions over all degrees the result is column-major: the transposed view of a
        ``((lmax+1)², N)`` buffer, so ``y.is_contiguous()`` is False (``y.view`` across the last
        dimension fails; ``reshape``, indexing, ``nn.Linear`` work as usual). Call
        ``.contiguous()`` where a row-major copy is needed. No points give a ``(..., 0, K)``
        result (and a gradient of the input's shape).

    Raises
    ------
    ValueError
        NaN/inf coordinates, zero vectors (unless ``allow_zero_vectors``), latitudes outside
        [-90, 90], a bad ``lmax`` or empty degree list, or an output (or recursion tables) that
        would not fit in the memory available on the device (the message says how much it needs).
    TypeError
        Non-integer degrees, non-floating or complex ``points``, non-bool ``allow_zero_vectors``.

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

    e3nn's options: degrees 0 and 2 of the vector itself (not its direction), component
    normalisation, and a zero vector (a self-loop):

    >>> edge = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    >>> y = spherical_harmonics([0, 2], edge, convention="e3nn", normalize=False,
    ...                         normalization="component", allow_zero_vectors=True)
    >>> y.shape
    torch.Size([2, 6])
    >>> [round(v, 4) for v in y[0].tolist()]  # 2² · √5 at the polar axis
    [1.0, 0.0, 0.0, 8.9443, 0.0, 0.0]
    >>> round(float(y[1, 0]), 12), bool((y[1, 1:] == 0).all())  # the zero vector: [Y_0, 0, ...]
    (1.0, True)
    """
    degrees, lmax = _degrees(lmax)
    check_choice("input", input, _INPUTS)
    check_choice("convention", convention, _CONVENTIONS)
    check_choice("normalization", normalization, _NORMALIZATIONS)
    if not isinstance(allow_zero_vectors, bool):
        raise TypeError(f"allow_zero_vectors: expected a bool, got {type(allow_zero_vectors).__name__}")
    width = 2 if input == "lonlat" else 3
    # value checks are data-dependent branches: skipped while torch.compile traces
    values = not torch.compiler.is_compiling()
    check_tensor("points", points, shape=(..., width), floating=True)
    if points.is_complex():
        raise TypeError("points: expected a real floating-point tensor")
    # the common CPU case (xyz directions, float32/float64): the finite check, the power-of-two
    # scaling and the division by the norm in one C pass (geodl.ops._sh_cpu), instead of a dozen
    # small torch ops, each a parallel region that waits for a descheduled thread on a busy
    # machine; None where it does not serve the call (then the torch ops below)
    fast = None
    if values and input == "xyz" and normalize and points.device.type == "cpu":
        from geodl.ops._sh_cpu import unit_directions_cpu

        fast = unit_directions_cpu(points.reshape(-1, width))
        if fast is not None and fast[3]:  # non-finite rows: the message of check_finite
            check_finite("points", points)
    # elsewhere a NaN/inf makes the sum non-finite: one reduction instead of an isfinite mask (≈5%
    # of the forward at lmax 10); only a non-finite sum (or an overflowing one) takes the full check
    if fast is None and values and not bool(torch.isfinite(points.sum())):
        check_finite("points", points)
    lead = points.shape[:-1]
    flat = points.reshape(-1, width)
    if flat.dtype in _HALF:  # computed in float32, rounded back at the end (see Returns)
        flat = flat.float()
    if values:
        _check_size(lmax, degrees, flat.shape[0], flat.dtype, flat.device, convention)
    op = _sh_real_op if not values else _SHReal.apply
    if input == "lonlat":
        y = op(_lonlat_vectors(flat, values), lmax)
    elif normalize:
        if fast is not None:  # the C pass: placeholder (1, 0, 0) and mask on zero rows, as _directions
            xyz, zero, nzero, _ = fast
            if not allow_zero_vectors:
                if nzero:
                    raise ValueError(_ZERO_VECTOR_MSG)
                zero = None
        else:
            xyz, zero = _directions(flat, allow_zero_vectors, values)
        if convention == "e3nn":
            # e3nn's polar axis is y: its Y_l(x, y, z) is exactly the real basis at (z, x, y), same
            # ordering and signs (checked against e3nn 0.6 to 1e-13 in the tests)
            xyz = xyz[:, [2, 0, 1]]
        y = op(xyz, lmax)
        if zero is not None:  # [Y_0, 0, ...] on the zero rows; where() saves only the (N, 1) mask
            y0 = torch.nn.functional.pad(y.new_full((1, 1), 1.0 / math.sqrt(4.0 * math.pi)), (0, y.shape[1] - 1))
            y = torch.where(zero, y0, y)
    else:
        xyz = flat[:, [2, 0, 1]] if convention == "e3nn" else flat
        if values and not allow_zero_vectors and bool((xyz == 0).all(1).any()):
            raise ValueError(_ZERO_VECTOR_MSG)
        y = _SHHomogeneous.apply(xyz, lmax) if values else _homogeneous(xyz, lmax, _sh_real_op)
    if convention == "complex":
        y = _to_complex(y, lmax)
    if degrees is not None:
        y = y.index_select(1, torch.tensor(_block_layout(degrees)[0], device=y.device))
    scale = _normalization_scale(normalization, lmax, degrees, y)
    if scale is not None:
        y = y * scale
    if points.dtype in _HALF and not y.is_complex():
        y = y.to(points.dtype)
    return y.reshape(*lead, y.shape[-1])
