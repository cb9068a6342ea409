"""Real, e3nn-compatible and complex spherical harmonics to very high degree.

Written by hand because none of the field's libraries is correct at high degree in float32: e3nn
stops at l = 11/12 (generated polynomials) and sphericart-torch's float32 output is wrong from
degree ~19 (see ``/work/shared/BENCHMARKS.md``). The route here is the stable one of NUMERICS.md:
fully normalised associated Legendre functions P̄_l^m carried directly by three-term recursions
with O(1) coefficients (no factorial ratios, no expanded polynomials) and cos mφ, sin mφ from the
rotation recurrence on (x, y)/ρ.

The public function validates its input, converts lon/lat or raw vectors to unit vectors in
differentiable torch, and calls the op ``geodl::sh_real`` (``torch.library.custom_op``), whose
backward recomputes the forward under autograd from the saved *inputs only*, so the memory held
between forward and backward is O(N·3), and the backward's transient memory about one output's
size (chunks of the points).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from geodl._checks import check_choice, check_tensor

__all__ = ["spherical_harmonics"]

_CONVENTIONS = ("real", "e3nn", "complex")
_INPUTS = ("xyz", "lonlat")


@lru_cache(maxsize=64)
def _coefficients(lmax: int) -> tuple[list, list]:
    """Recursion coefficients a_lm, b_lm (float64 lists, one list per degree l ≥ 2, m < l-1)."""
    a_all, b_all = [], []
    for l in range(lmax + 1):
        ms = range(max(l - 1, 0))
        a_all.append([math.sqrt((4.0 * l * l - 1.0) / (l * l - m * m)) for m in ms])
        b_all.append([math.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0)) for m in ms])
    return a_all, b_all


@lru_cache(maxsize=64)
def _tables(lmax: int, dtype: torch.dtype, device: str):
    """Coefficient columns a_l, b_l ``(l-1, 1)`` per degree and the gather indices of the assembly.

    Output column ``l²+l+m`` is ``P̄_l^|m|`` (row ``l(l+1)/2 + |m|`` of the stacked P̄) times
    trigonometric row 0 (m = 0: 1), ``m`` (m > 0: √2 cos mφ) or ``lmax + |m|`` (m < 0: √2 sin |m|φ).
    """
    a_all, b_all = _coefficients(lmax)
    a = [torch.tensor(v, dtype=torch.float64).to(dtype=dtype, device=device)[:, None] for v in a_all]
    b = [torch.tensor(v, dtype=torch.float64).to(dtype=dtype, device=device)[:, None] for v in b_all]
    pidx, tidx = [], []
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            pidx.append(l * (l + 1) // 2 + abs(m))
            tidx.append(0 if m == 0 else (m if m > 0 else lmax - m))
    pidx = torch.tensor(pidx, device=device)
    tidx = torch.tensor(tidx, device=device)
    return a, b, pidx, tidx


def _sh_real_reference(xyz: torch.Tensor, lmax: int) -> torch.Tensor:
    """Plain-torch real SH (Wikipedia / sphericart ordering l²+l+m) of unit vectors ``(N, 3)``.

    Differentiable with autograd; any device. One Python iteration per degree, vectorised over
    the orders m and the points, points last (contiguous) so every step is a dense row operation;
    the (N, K) output is gathered at the end from the stacked P̄ rows and the cos/sin rows.
    """
    dtype, device = xyz.dtype, xyz.device
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
    a, b, pidx, tidx = _tables(lmax, dtype, str(device))
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
def _symmetric_tables(lmax: int, dtype: torch.dtype, device: str):
    """a_lm, b_lm as columns over the symmetric order layout m = -(l-2)..(l-2) (|m| used)."""
    a_all, b_all = _coefficients(lmax)
    a_sym, b_sym = [None] * (lmax + 1), [None] * (lmax + 1)
    for l in range(2, lmax + 1):
        a = torch.tensor(a_all[l], dtype=torch.float64)
        b = torch.tensor(b_all[l], dtype=torch.float64)
        a_sym[l] = torch.cat([a.flip(0), a[1:]]).to(dtype=dtype, device=device)[:, None]
        b_sym[l] = torch.cat([b.flip(0), b[1:]]).to(dtype=dtype, device=device)[:, None]
    return a_sym, b_sym


def _sh_real_forward(xyz: torch.Tensor, lmax: int) -> torch.Tensor:
    """The same values as :func:`_sh_real_reference`, faster, not differentiable (forward only).

    Carries the P̄ of a degree in the *output's* order layout, ``[P̄_l^l … P̄_l^1, P̄_l^0, P̄_l^1 …
    P̄_l^l]`` (rows, points last), so degree l's output block is one product with a contiguous
    slice of the table ``[√2 sin lmax·φ … √2 sin φ, 1, √2 cos φ … √2 cos lmax·φ]``, written
    straight into the (N, K) result; all steps run in preallocated buffers (about 2× fewer
    memory passes than the autograd-friendly reference).
    """
    n, dtype, device = xyz.shape[0], xyz.dtype, xyz.device
    xt = xyz.t().contiguous()
    x, y, z = xt[0:1], xt[1:2], xt[2:3]
    rho = torch.sqrt(torch.clamp(x * x + y * y, min=torch.finfo(dtype).tiny))
    c1, s1 = x / rho, y / rho
    trig = torch.empty(2 * lmax + 1, n, dtype=dtype, device=device)
    trig[lmax] = 1.0
    if lmax:
        torch.mul(c1, math.sqrt(2.0), out=trig[lmax + 1 : lmax + 2])
        torch.mul(s1, math.sqrt(2.0), out=trig[lmax - 1 : lmax])
    for m in range(2, lmax + 1):
        c, s = trig[lmax + m - 1 : lmax + m], trig[lmax - m + 1 : lmax - m + 2]
        torch.sub(c * c1, s * s1, out=trig[lmax + m : lmax + m + 1])
        torch.add(s * c1, c * s1, out=trig[lmax - m : lmax - m + 1])
    a_sym, b_sym = _symmetric_tables(lmax, dtype, str(device))
    out = torch.empty(n, (lmax + 1) ** 2, dtype=dtype, device=device)
    bufs = [torch.empty(2 * lmax + 1, n, dtype=dtype, device=device) for _ in range(3)]
    prev2, prev1 = None, torch.full((1, n), 1.0 / math.sqrt(4.0 * math.pi), dtype=dtype, device=device)
    out[:, 0] = prev1[0]
    for l in range(1, lmax + 1):
        p = bufs[l % 3][: 2 * l + 1]
        first = prev1[0:1]  # P̄_{l-1}^{l-1}
        c_diag, c_next = math.sqrt((2.0 * l + 1.0) / (2.0 * l)), math.sqrt(2.0 * l + 1.0)
        torch.mul(first, rho, out=p[0:1]).mul_(c_diag)  # m = ±l
        p[-1:].copy_(p[0:1])
        torch.mul(first, z, out=p[1:2]).mul_(c_next)  # m = ±(l-1)
        p[-2:-1].copy_(p[1:2])
        if l >= 2:  # |m| ≤ l-2: three-term recursion in degree
            inner = p[2:-2]
            torch.mul(prev1[1:-1], z, out=inner)
            inner.addcmul_(b_sym[l], prev2, value=-1.0).mul_(a_sym[l])
        torch.mul(p.t(), trig[lmax - l : lmax + l + 1].t(), out=out[:, l * l : (l + 1) ** 2])
        prev2, prev1 = prev1, p
    return out


def _sh_real_device(xyz: torch.Tensor, lmax: int) -> torch.Tensor:
    if xyz.is_cuda:
        from geodl.ops._triton_sh import sh_real_triton, triton_available

        if triton_available():
            return sh_real_triton(xyz, lmax)
    return _sh_real_forward(xyz, lmax)


@torch.library.custom_op("geodl::sh_real", mutates_args=())
def _sh_real_op(xyz: torch.Tensor, lmax: int) -> torch.Tensor:
    return _sh_real_device(xyz.contiguous(), lmax)


@_sh_real_op.register_fake
def _(xyz, lmax):
    return xyz.new_empty((xyz.shape[0], (lmax + 1) ** 2))


def _setup_context(ctx, inputs, output):
    xyz, lmax = inputs
    ctx.save_for_backward(xyz)
    ctx.lmax = lmax


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
    return _recompute_grad(xyz, ctx.lmax, grad.contiguous()), None


class _SHReal(torch.autograd.Function):
    """Eager twin of ``geodl::sh_real``: the same forward and backward without the custom-op
    dispatch, whose first call imports torch._dynamo (seconds); used when not compiling."""

    @staticmethod
    def forward(ctx, xyz, lmax):
        ctx.save_for_backward(xyz)
        ctx.lmax = lmax
        return _sh_real_device(xyz.contiguous(), lmax)

    @staticmethod
    def backward(ctx, grad):
        return _backward(ctx, grad)


_sh_real_op.register_autograd(_backward, setup_context=_setup_context)


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
        lat = points[..., 1]
        if values and bool(((lat < -90.0) | (lat > 90.0)).any()):
            raise ValueError("points: latitudes (points[..., 1]) must lie in [-90, 90] degrees")
        lon_r, lat_r = torch.deg2rad(points[..., 0]), torch.deg2rad(lat)
        cl = torch.cos(lat_r)
        return torch.stack([cl * torch.cos(lon_r), cl * torch.sin(lon_r), torch.sin(lat_r)], dim=-1)
    norm = torch.linalg.vector_norm(points, dim=-1, keepdim=True)
    if values and bool((norm == 0).any()):
        raise ValueError("points: contains zero vectors; expected nonzero directions")
    return points / norm


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
        the backward recomputes the forward from the inputs.

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
    if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
        raise ValueError(f"lmax: expected a non-negative int, got {lmax!r}")
    check_choice("input", input, _INPUTS)
    check_choice("convention", convention, _CONVENTIONS)
    width = 2 if input == "lonlat" else 3
    # value checks are data-dependent branches: skipped while torch.compile traces
    values = not torch.compiler.is_compiling()
    check_tensor("points", points, shape=(..., width), floating=True, finite=values)
    if points.is_complex():
        raise TypeError("points: expected a real floating-point tensor")
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
