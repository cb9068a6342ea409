"""The Poincaré ball of curvature ``-c`` (``c > 0``): a functional core in the style of geoopt.

Every function takes the curvature keyword-only (``c``: a positive float or a positive 0-d / broadcastable
tensor, which may require grad: a learnable curvature) and the ball dimension ``dim`` (default ``-1``).
Points ``x`` satisfy ``c‖x‖² < 1``; tangent vectors are unconstrained.

Formulas (Ungar's gyrovector space; Ganea et al. 2018; the notation of geoopt's ``stereographic.math``):

- Möbius addition ``x ⊕ y = ((1 + 2c⟨x,y⟩ + c‖y‖²) x + (1 − c‖x‖²) y) / (1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖²)``;
- scalar multiplication ``r ⊗ x = tanh(r artanh(√c‖x‖)) x / (√c‖x‖)``;
- ``expmap0(u) = tanh(√c‖u‖) u / (√c‖u‖)``, ``logmap0(y) = artanh(√c‖y‖) y / (√c‖y‖)``;
- ``expmap(x, u) = x ⊕ tanh(√c λ_x ‖u‖ / 2) u / (√c‖u‖)``, ``logmap(x, y) = 2/(√c λ_x) artanh(√c‖w‖) w/‖w‖``
  with ``w = (−x) ⊕ y`` and the conformal factor ``λ_x = 2 / (1 − c‖x‖²)``;
- the distance ``d(x, y) = (2/√c) asinh(√c‖x − y‖ / √((1 − c‖x‖²)(1 − c‖y‖²)))``. This is the same function as
  geoopt's ``(2/√c) artanh(√c‖(−x) ⊕ y‖)``, written so that it stays accurate where that one does not: near the
  boundary ``√c‖(−x) ⊕ y‖`` rounds to 1 and artanh loses every digit, while ``1 − c‖x‖²`` is computed here as
  ``(1 − √c‖x‖)(1 + √c‖x‖)``; for close points ``asinh`` of a small argument keeps full relative precision
  (arccosh of ``1 + δ`` would not);
- the gyromidpoint ``m = ½ ⊗ (Σ w_i λ_i x_i / Σ w_i (λ_i − 1))``; the gyration ``gyr[u, v] w`` in closed form;
  parallel transport ``P_{x→y}(v) = gyr[y, −x] v · λ_x / λ_y``.

**Guards.** Norms are clamped below by a tiny number before dividing (``u / ‖u‖`` at ``u = 0`` is 0, and the
limits ``tanh(a)/a → 1``, ``artanh(a)/a → 1`` are taken exactly); artanh's argument is clamped to
``1 − ε_dtype``; :func:`project` pulls points back inside the ball by a dtype-aware margin
(:func:`ball_margin`); half-precision inputs (bfloat16, float16) are computed in float32 and returned in float32
(a bfloat16 point near the boundary rounds outside the ball: 8 bits of mantissa).

**Custom backward passes.** :func:`mobius_add`, :func:`expmap0` and :func:`logmap0` save only their inputs for
the backward pass and evaluate closed-form derivatives there (autograd would keep about ten intermediate
tensors of the input's size each); with a curvature that requires grad they fall back to plain autograd
(the derivative in ``c`` is not written by hand). Each is checked by ``torch.autograd.gradcheck`` in float64.

**Validation.** Public functions check (unless ``check=False``) that ``c`` is positive and finite, that
points are finite and inside the ball, and that tangent vectors are finite, raising ``ValueError`` naming the
argument; this reads values on the host, so layers call the unchecked internals.
"""

from __future__ import annotations

import math

import torch

__all__ = ["mobius_add", "mobius_scalar_mul", "expmap0", "logmap0", "expmap", "logmap", "project", "dist",
           "lambda_x", "gyromidpoint", "gyration", "parallel_transport", "ball_margin"]

# the relative margin 1 - sqrt(c)|x|_max kept by project(), per dtype: float32 keeps 1 - |x|^2 to ~0.3 % at
# 1e-5 (eps 6e-8 over 2e-5); float64 resolves far closer to the boundary than any point geoopt's tests use (1e-5)
_MARGIN = {torch.float64: 1e-10, torch.float32: 1e-5}
_TINY = {torch.float64: 1e-300, torch.float32: 1e-35}
# below this |sqrt(c) u| the series of tanh(a)/a, artanh(a)/a and their derivatives are used
_SERIES = {torch.float64: 1e-3, torch.float32: 5e-2}


def _work(t: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision tensors (the ball maths is not stable in 8 or 11 bits), else unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def ball_margin(dtype: torch.dtype = torch.float32) -> float:
    """The relative margin ``δ`` of :func:`project`: points are kept at ``√c‖x‖ ≤ 1 − δ``.

    ``1e-10`` for float64 and ``1e-5`` for float32 (half precision is computed in float32).

    Examples
    --------
    >>> ball_margin(torch.float64), ball_margin(torch.float32), ball_margin(torch.bfloat16)
    (1e-10, 1e-05, 1e-05)
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    return _MARGIN.get(dtype, _MARGIN[torch.float32])


# ----------------------------------------------------------------------------- validation


def _check_c(c, ref: torch.Tensor | None = None):
    """``c`` as given (float or tensor) after checking it is positive and finite."""
    if isinstance(c, bool) or not isinstance(c, (int, float, torch.Tensor)):
        raise TypeError(f"c: expected a positive number or tensor (the curvature is -c), got {type(c).__name__}")
    if isinstance(c, torch.Tensor):
        if not c.is_floating_point():
            raise TypeError(f"c: expected a floating tensor, got dtype {c.dtype}")
        if c.numel() == 0:
            raise ValueError("c: expected a non-empty tensor")
        cd = c.detach()
        if not bool(torch.isfinite(cd).all()) or not bool((cd > 0).all()):
            raise ValueError(f"c: expected a positive finite curvature (the ball has curvature -c), got "
                             f"{cd.flatten()[:4].tolist()}")
        return c
    if not math.isfinite(c) or not c > 0:
        raise ValueError(f"c: expected a positive finite curvature (the ball has curvature -c), got {c!r}")
    return float(c)


def _check_dim(dim, x: torch.Tensor) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim: expected an int, got {type(dim).__name__}")
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim: {dim} is out of range for a tensor of shape {tuple(x.shape)}")
    return dim


def _check_tangent(name: str, u, dim) -> torch.Tensor:
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(u).__name__}")
    if not u.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {u.dtype}")
    _check_dim(dim, u)
    if u.numel() and not bool(torch.isfinite(u.detach()).all()):
        raise ValueError(f"{name}: contains NaN or inf; expected finite numbers")
    return u


def _check_point(name: str, x, c, dim) -> torch.Tensor:
    _check_tangent(name, x, dim)
    if x.numel():
        # in the input's precision (half precision in float32): no float64 copy of a large activation
        xd = x.detach() if x.dtype in (torch.float32, torch.float64) else x.detach().float()
        n2 = (xd * xd).sum(dim)
        cc = c.detach().to(n2.dtype) if isinstance(c, torch.Tensor) else c
        worst = float((cc * n2).max())
        if not worst < 1.0:
            raise ValueError(f"{name}: points must lie inside the Poincaré ball c·‖x‖² < 1 (along dim={dim}); the "
                             f"largest c·‖x‖² is {worst:.6g} (use project() to pull points inside)")
    return x


def _check_input(x: torch.Tensor, c, dim: int) -> None:
    """A layer's value checks on its input ``x`` (finite, inside the ball); skipped while torch.compile traces
    (they read values on the host and would break the graph)."""
    if not torch.compiler.is_compiling():
        _check_point("x", x, c, dim)


def _sqrt_c(c, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(c, dtype=x.dtype, device=x.device).sqrt()


def _c_grad(c) -> bool:
    return isinstance(c, torch.Tensor) and c.requires_grad


def _norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    tiny = _TINY.get(x.dtype, 1e-35)
    if x.device.type != "cpu" or x.dim() == 0 or x.stride(dim) == 1 or x.shape[dim] == 1:
        return torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(tiny)
    # on CPU torch's vector_norm over a strided dimension (the channels of an NCHW map) is ~15x slower than a
    # sum of squares; the sum overflows only for |x| > ~1e19 (float32), and then vector_norm is used instead
    s = (x * x).sum(dim, keepdim=True)
    pos = s > 0  # sqrt's derivative at 0 is infinite: 0 there (vector_norm's convention), not 0 * inf = NaN
    n = torch.where(pos, torch.where(pos, s, 1).sqrt(), 0)
    if not torch.compiler.is_compiling() and bool(torch.isinf(n).any()):
        n = torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    return n.clamp_min(tiny)


def _asinh(p: torch.Tensor) -> torch.Tensor:
    """``asinh(p)`` as ``sign(p) log1p(|p| + |p|/(1/|p| + √(1 + 1/p²)))``: the same to an ulp or two, no overflow
    for huge ``|p|``, and on CPU about 2.5x faster than ``torch.asinh`` (which is not vectorised there)."""
    if p.device.type != "cpu":
        return torch.asinh(p)
    return _Asinh.apply(p)


class _Asinh(torch.autograd.Function):
    """The formula of :func:`_asinh` with the derivative ``1/√(1 + p²)`` (autograd of it is NaN at 0)."""

    @staticmethod
    def forward(ctx, p):
        ctx.save_for_backward(p)
        a = p.abs()
        r = 1 / a
        return torch.copysign(torch.log1p(a + a / (r + torch.sqrt(1 + r * r))), p)

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        return g * torch.rsqrt(1 + p * p)


def _artanh(z: torch.Tensor) -> torch.Tensor:
    eps = torch.finfo(z.dtype).eps
    return torch.atanh(z.clamp(-1 + eps, 1 - eps))


def _one_minus(a: torch.Tensor) -> torch.Tensor:
    """``1 − a²`` for ``a = √c‖x‖ ≥ 0``, as ``(1 − a)(1 + a)`` (no cancellation near the boundary)."""
    return ((1 - a) * (1 + a)).clamp_min(_TINY.get(a.dtype, 1e-35))


# ----------------------------------------------------------------------------- tanh(a)/a and artanh(a)/a


def _tanhc(a: torch.Tensor) -> torch.Tensor:
    """``tanh(a) / a`` for ``a ≥ 0`` (1 at 0)."""
    small = a < _SERIES.get(a.dtype, 5e-2)
    safe = torch.where(small, torch.ones_like(a), a)
    a2 = a * a
    return torch.where(small, 1 - a2 / 3 + 2 * a2 * a2 / 15, torch.tanh(safe) / safe)


def _tanhc_d(a: torch.Tensor) -> torch.Tensor:
    """``(a sech²a − tanh a) / a³`` = ``(d/da)(tanh(a)/a) / a`` for ``a ≥ 0`` (−2/3 at 0)."""
    small = a < _SERIES.get(a.dtype, 5e-2)
    safe = torch.where(small, torch.ones_like(a), a)
    a2 = a * a
    th = torch.tanh(safe)
    exact = (safe * (1 - th * th) - th) / (safe * safe * safe)
    return torch.where(small, -2.0 / 3 + 8 * a2 / 15 - 34 * a2 * a2 / 105, exact)


def _artanhc(a: torch.Tensor) -> torch.Tensor:
    """``artanh(a) / a`` for ``0 ≤ a < 1`` (1 at 0)."""
    small = a < _SERIES.get(a.dtype, 5e-2)
    safe = torch.where(small, torch.full_like(a, 0.5), a)
    a2 = a * a
    return torch.where(small, 1 + a2 / 3 + a2 * a2 / 5, _artanh(safe) / safe)


def _artanhc_d(a: torch.Tensor) -> torch.Tensor:
    """``(a/(1 − a²) − artanh a) / a³`` = ``(d/da)(artanh(a)/a) / a`` (2/3 at 0)."""
    small = a < _SERIES.get(a.dtype, 5e-2)
    safe = torch.where(small, torch.full_like(a, 0.5), a)
    a2 = a * a
    exact = (safe / _one_minus(safe) - _artanh(safe)) / (safe * safe * safe)
    return torch.where(small, 2.0 / 3 + 4 * a2 / 5 + 6 * a2 * a2 / 7, exact)


# ----------------------------------------------------------------------------- expmap0 / logmap0


def _expmap0_raw(u, sc, dim):
    return _tanhc(sc * _norm(u, dim)) * u


def _logmap0_raw(y, sc, dim):
    return _artanhc(sc * _norm(y, dim)) * y


# the radial maps y = f(sc |u|) u: expmap0 (f = tanh(a)/a) and logmap0 (f = artanh(a)/a), with h(a) = f'(a)/a
_RADIAL = {"exp": (_tanhc, _tanhc_d), "log": (_artanhc, _artanhc_d)}


class _RadialMap(torch.autograd.Function):
    """``y = f(√c‖u‖) u`` (``which``: "exp" or "log"); saves only ``u``; closed-form backward."""

    @staticmethod
    def forward(ctx, u, sc, dim, which):
        ctx.save_for_backward(u, sc)
        ctx.dim, ctx.which = dim, which
        return _RADIAL[which][0](sc * _norm(u, dim)) * u

    @staticmethod
    def backward(ctx, g):
        u, sc = ctx.saved_tensors
        dim = ctx.dim
        f, h = _RADIAL[ctx.which]
        a = sc * _norm(u, dim)
        # grad = f(a) g + sc² h(a) (u·g) u
        return f(a) * g + (sc * sc) * h(a) * (u * g).sum(dim, keepdim=True) * u, None, None, None


def _expmap0(u, c, dim=-1):
    u = _work(u)
    sc = _sqrt_c(c, u)
    if _c_grad(c):
        return _expmap0_raw(u, sc, dim)
    return _RadialMap.apply(u, sc.detach(), dim, "exp")


def _logmap0(y, c, dim=-1):
    y = _work(y)
    sc = _sqrt_c(c, y)
    if _c_grad(c):
        return _logmap0_raw(y, sc, dim)
    return _RadialMap.apply(y, sc.detach(), dim, "log")


def expmap0(u: torch.Tensor, *, c=1.0, dim: int = -1, check: bool = True) -> torch.Tensor:
    """Exponential map at the origin: the tangent vector ``u`` to the point ``tanh(√c‖u‖) u / (√c‖u‖)``.

    Parameters
    ----------
    u : torch.Tensor
        Tangent vectors, the ball's coordinates along ``dim`` (any shape).
    c : float or torch.Tensor
        Positive curvature magnitude (the ball has curvature ``-c``), broadcastable with ``u`` reduced along ``dim``.
    dim : int
        The ball dimension.
    check : bool
        Validate ``c`` and ``u`` (reads values: set False inside compiled code).

    Returns
    -------
    torch.Tensor
        Points of the ball, ``u``'s shape (float32 for half-precision input), projected inside by
        :func:`ball_margin` (for ``√c‖u‖`` beyond about 9 in float32, ``tanh`` rounds to 1).

    Examples
    --------
    >>> u = torch.tensor([[0.3, -0.4], [0.0, 0.0]], dtype=torch.float64)
    >>> x = expmap0(u)
    >>> x.norm(dim=-1)  # tanh(0.5), 0
    tensor([0.4621, 0.0000], dtype=torch.float64)
    >>> torch.allclose(logmap0(x), u)
    True
    """
    if check:
        c = _check_c(c)
        _check_tangent("u", u, dim)
    return _project(_expmap0(u, c, dim), c, dim)


def logmap0(y: torch.Tensor, *, c=1.0, dim: int = -1, check: bool = True) -> torch.Tensor:
    """Logarithmic map at the origin: the point ``y`` to the tangent vector ``artanh(√c‖y‖) y / (√c‖y‖)``.

    Parameters
    ----------
    y : torch.Tensor
        Points of the ball (``c‖y‖² < 1`` along ``dim``).
    c, dim, check
        As in :func:`expmap0`.

    Returns
    -------
    torch.Tensor
        Tangent vectors at the origin, ``y``'s shape; ``‖logmap0(y)‖ = d(0, y) / 2``.

    Examples
    --------
    >>> y = torch.tensor([0.6, 0.0], dtype=torch.float64)
    >>> logmap0(y)  # artanh(0.6)
    tensor([0.6931, 0.0000], dtype=torch.float64)
    >>> logmap0(torch.tensor([1.0, 0.0]))
    Traceback (most recent call last):
    ...
    ValueError: y: points must lie inside the Poincaré ball c·‖x‖² < 1 (along dim=-1); the largest c·‖x‖² is 1 (use project() to pull points inside)
    """
    if check:
        c = _check_c(c)
        _check_point("y", y, c, dim)
    return _logmap0(y, c, dim)


# ----------------------------------------------------------------------------- Möbius addition


def _mobius_add_raw(x, y, c, dim):
    xy = (x * y).sum(dim, keepdim=True)
    x2 = (x * x).sum(dim, keepdim=True)
    y2 = (y * y).sum(dim, keepdim=True)
    A = 1 + 2 * c * xy + c * y2
    B = 1 - c * x2
    D = (1 + 2 * c * xy + c * c * x2 * y2).clamp_min(_TINY.get(x.dtype, 1e-35))
    return (A * x + B * y) / D


class _MobiusAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, c, dim):
        ctx.save_for_backward(x, y, c)
        ctx.dim = dim
        return _mobius_add_raw(x, y, c, dim)

    @staticmethod
    def backward(ctx, g):
        x, y, c = ctx.saved_tensors
        dim = ctx.dim
        xy = (x * y).sum(dim, keepdim=True)
        x2 = (x * x).sum(dim, keepdim=True)
        y2 = (y * y).sum(dim, keepdim=True)
        A = 1 + 2 * c * xy + c * y2
        B = 1 - c * x2
        D = (1 + 2 * c * xy + c * c * x2 * y2).clamp_min(_TINY.get(x.dtype, 1e-35))
        gx_, gy_ = (g * x).sum(dim, keepdim=True), (g * y).sum(dim, keepdim=True)
        gA, gB = gx_ / D, gy_ / D
        gD = -(A * gx_ + B * gy_) / (D * D)
        g_xy = 2 * c * (gA + gD)
        g_x2 = -c * gB + c * c * y2 * gD
        g_y2 = c * gA + c * c * x2 * gD
        grad_x = (A / D) * g + g_xy * y + 2 * g_x2 * x
        grad_y = (B / D) * g + g_xy * x + 2 * g_y2 * y
        return _unbroadcast(grad_x, x.shape), _unbroadcast(grad_y, y.shape), None, None


def _unbroadcast(g: torch.Tensor, shape) -> torch.Tensor:
    if g.shape == shape:
        return g
    extra = g.dim() - len(shape)
    g = g.sum(tuple(range(extra))) if extra > 0 else g
    keep = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(keep, keepdim=True) if keep else g


def _mobius_add(x, y, c, dim=-1):
    x, y = _work(x), _work(y)
    if x.dtype != y.dtype:
        dt = torch.promote_types(x.dtype, y.dtype)
        x, y = x.to(dt), y.to(dt)
    if _c_grad(c):
        return _mobius_add_raw(x, y, c, dim)
    ct = torch.as_tensor(c, dtype=x.dtype, device=x.device).detach()
    return _MobiusAdd.apply(x, y, ct, dim)


def mobius_add(x: torch.Tensor, y: torch.Tensor, *, c=1.0, dim: int = -1, check: bool = True) -> torch.Tensor:
    """Möbius addition ``x ⊕ y`` (the hyperbolic translation of ``y`` by ``x``).

    Parameters
    ----------
    x, y : torch.Tensor
        Points of the ball, broadcastable; the ball along ``dim``.
    c, dim, check
        As in :func:`expmap0`.

    Returns
    -------
    torch.Tensor
        ``x ⊕ y``, the broadcast shape, projected inside by :func:`ball_margin` (rounding near the boundary).
        ``0 ⊕ y = y``, ``x ⊕ 0 = x``, ``(−x) ⊕ x = 0``; not commutative.

    Examples
    --------
    >>> x = torch.tensor([0.5, 0.0], dtype=torch.float64)
    >>> mobius_add(x, torch.tensor([0.5, 0.0], dtype=torch.float64))  # (0.5 + 0.5) / (1 + 0.25)
    tensor([0.8000, 0.0000], dtype=torch.float64)
    >>> mobius_add(-x, x)
    tensor([0., 0.], dtype=torch.float64)
    """
    if check:
        c = _check_c(c)
        _check_point("x", x, c, dim)
        _check_point("y", y, c, dim)
        try:
            torch.broadcast_shapes(x.shape, y.shape)
        except RuntimeError:
            raise ValueError(f"y: shape {tuple(y.shape)} does not broadcast with x's {tuple(x.shape)}") from None
    return _project(_mobius_add(x, y, c, dim), c, dim)


# ----------------------------------------------------------------------------- the rest (plain autograd)


def _lambda(x, c, dim):
    a = _sqrt_c(c, x) * torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    return 2 / _one_minus(a)


def lambda_x(x: torch.Tensor, *, c=1.0, dim: int = -1, keepdim: bool = False, check: bool = True) -> torch.Tensor:
    """The conformal factor ``λ_x = 2 / (1 − c‖x‖²)`` (the metric is ``λ_x²`` times the Euclidean one).

    Examples
    --------
    >>> lambda_x(torch.tensor([[0.0, 0.0], [0.6, 0.0]], dtype=torch.float64))
    tensor([2.0000, 3.1250], dtype=torch.float64)
    """
    if check:
        c = _check_c(c)
        _check_point("x", x, c, dim)
    lam = _lambda(_work(x), c, dim)
    return lam if keepdim else lam.squeeze(dim)


def _project(x, c, dim):
    x = _work(x)
    sc = _sqrt_c(c, x)
    n = _norm(x, dim)
    max_n = (1 - ball_margin(x.dtype)) / sc
    return torch.where(n > max_n, x / n * max_n, x)


def project(x: torch.Tensor, *, c=1.0, dim: int = -1, check: bool = True) -> torch.Tensor:
    """Pull points back inside the ball: ``x`` scaled to norm ``(1 − δ)/√c`` where it is larger.

    ``δ`` is :func:`ball_margin` of ``x``'s dtype. Points already inside are returned unchanged (the
    gradient there is the identity).

    Examples
    --------
    >>> project(torch.tensor([[2.0, 0.0], [0.1, 0.0]], dtype=torch.float64))
    tensor([[1.0000, 0.0000],
            [0.1000, 0.0000]], dtype=torch.float64)
    >>> bool(project(torch.tensor([2.0, 0.0], dtype=torch.float64)).norm() < 1)
    True
    """
    if check:
        c = _check_c(c)
        _check_tangent("x", x, dim)
    return _project(x, c, dim)


def mobius_scalar_mul(r, x: torch.Tensor, *, c=1.0, dim: int = -1, check: bool = True) -> torch.Tensor:
    """Möbius scalar multiplication ``r ⊗ x = tanh(r artanh(√c‖x‖)) x / (√c‖x‖)`` = ``expmap0(r logmap0(x))``.

    Parameters
    ----------
    r : float or torch.Tensor
        Scalars, broadcastable with ``x`` reduced (keepdim) along ``dim``.
    x : torch.Tensor
        Points of the ball.

    Examples
    --------
    >>> x = torch.tensor([0.5, 0.0], dtype=torch.float64)
    >>> mobius_scalar_mul(2.0, x)  # x ⊕ x
    tensor([0.8000, 0.0000], dtype=torch.float64)
    """
    if check:
        c = _check_c(c)
        _check_point("x", x, c, dim)
        if isinstance(r, bool) or not isinstance(r, (int, float, torch.Tensor)):
            raise TypeError(f"r: expected a number or a tensor, got {type(r).__name__}")
        if isinstance(r, torch.Tensor) and r.numel() and not bool(torch.isfinite(r.detach()).all()):
            raise ValueError("r: contains NaN or inf; expected finite numbers")
        if not isinstance(r, torch.Tensor) and not math.isfinite(r):
            raise ValueError(f"r: expected a finite number, got {r!r}")
    x = _work(x)
    return _project(_expmap0(r * _logmap0(x, c, dim), c, dim), c, dim)


def expmap(x: torch.Tensor, u: torch.Tensor, *, c=1.0, dim: int = -1, check: bool = True) -> torch.Tensor:
    """Exponential map at ``x``: ``x ⊕ tanh(√c λ_x ‖u‖ / 2) u / (√c‖u‖)``.

    Examples
    --------
    >>> x = torch.tensor([0.2, 0.1], dtype=torch.float64)
    >>> u = torch.tensor([0.3, -0.5], dtype=torch.float64)
    >>> torch.allclose(logmap(x, expmap(x, u)), u)
    True
    """
    if check:
        c = _check_c(c)
        _check_point("x", x, c, dim)
        _check_tangent("u", u, dim)
    x, u = _work(x), _work(u)
    lam = _lambda(x, c, dim)
    return _project(_mobius_add(x, _expmap0(lam * u / 2, c, dim), c, dim), c, dim)


def logmap(x: torch.Tensor, y: torch.Tensor, *, c=1.0, dim: int = -1, check: bool = True) -> torch.Tensor:
    """Logarithmic map at ``x``: the tangent vector at ``x`` pointing to ``y``, of norm ``d(x, y) / λ_x``.

    Examples
    --------
    >>> x = torch.tensor([0.2, 0.1], dtype=torch.float64)
    >>> y = torch.tensor([-0.4, 0.3], dtype=torch.float64)
    >>> torch.allclose(expmap(x, logmap(x, y)), y)
    True
    """
    if check:
        c = _check_c(c)
        _check_point("x", x, c, dim)
        _check_point("y", y, c, dim)
    x, y = _work(x), _work(y)
    # norm d(x, y) / λ_x from the accurate distance, direction that of (−x) ⊕ y: 2/(√c λ_x) artanh(√c‖(−x) ⊕ y‖)
    # would lose every digit near the boundary, where √c‖(−x) ⊕ y‖ rounds to 1
    w = _mobius_add(-x, y, c, dim)
    return _dist(x, y, c, dim) / _lambda(x, c, dim) * (w / _norm(w, dim))


def dist(x: torch.Tensor, y: torch.Tensor, *, c=1.0, dim: int = -1, keepdim: bool = False,
         check: bool = True) -> torch.Tensor:
    """Geodesic distance ``(2/√c) asinh(√c‖x − y‖ / √((1 − c‖x‖²)(1 − c‖y‖²)))``.

    Equal to ``(2/√c) artanh(√c‖(−x) ⊕ y‖)`` (geoopt's formula) but accurate near the boundary and for close points.

    Examples
    --------
    >>> o = torch.zeros(2, dtype=torch.float64)
    >>> dist(o, torch.tensor([0.5, 0.0], dtype=torch.float64))  # 2 artanh(0.5) = log 3
    tensor(1.0986, dtype=torch.float64)
    """
    if check:
        c = _check_c(c)
        _check_point("x", x, c, dim)
        _check_point("y", y, c, dim)
    d = _dist(_work(x), _work(y), c, dim)
    return d if keepdim else d.squeeze(dim)


def _dist(x, y, c, dim):
    sc = _sqrt_c(c, x)
    ax = sc * torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    ay = sc * torch.linalg.vector_norm(y, dim=dim, keepdim=True)
    diff = torch.linalg.vector_norm(x - y, dim=dim, keepdim=True)
    return 2 / sc * torch.asinh(sc * diff / torch.sqrt(_one_minus(ax) * _one_minus(ay)))


def gyromidpoint(x: torch.Tensor, weights: torch.Tensor | None = None, *, c=1.0, dim: int = -1,
                 reduce_dim: int = 0, keepdim: bool = False, check: bool = True) -> torch.Tensor:
    """Weighted Möbius gyromidpoint ``½ ⊗ (Σ w_i λ_i x_i / Σ w_i (λ_i − 1))`` over ``reduce_dim``.

    Parameters
    ----------
    x : torch.Tensor
        Points (the ball along ``dim``), the set along ``reduce_dim``.
    weights : torch.Tensor, optional
        Non-negative weights, ``x``'s shape without ``dim`` (default: uniform); at least one positive per set.
    reduce_dim : int
        The dimension (different from ``dim``) that indexes the points of each set.

    Returns
    -------
    torch.Tensor
        The midpoints, ``x``'s shape without ``reduce_dim`` (kept with size 1 if ``keepdim``). For two points
        it is the midpoint of the geodesic between them; at ``c → 0`` it tends to the weighted mean.

    Examples
    --------
    >>> x = torch.tensor([[0.5, 0.0], [-0.5, 0.0]], dtype=torch.float64)
    >>> gyromidpoint(x)
    tensor([0., 0.], dtype=torch.float64)
    >>> m = gyromidpoint(torch.tensor([[0.0, 0.0], [0.8, 0.0]], dtype=torch.float64))
    >>> bool(torch.isclose(dist(m, torch.zeros(2, dtype=torch.float64)), dist(m, torch.tensor([0.8, 0.0], dtype=torch.float64))))
    True
    """
    if check:
        c = _check_c(c)
        _check_point("x", x, c, dim)
        if isinstance(reduce_dim, bool) or not isinstance(reduce_dim, int):
            raise TypeError(f"reduce_dim: expected an int, got {type(reduce_dim).__name__}")
        if not -x.dim() <= reduce_dim < x.dim() or reduce_dim % x.dim() == dim % x.dim():
            raise ValueError(f"reduce_dim: expected a dimension of x {tuple(x.shape)} other than dim={dim}, "
                             f"got {reduce_dim}")
        if x.shape[reduce_dim] == 0:
            raise ValueError(f"x: the set along reduce_dim={reduce_dim} is empty; a midpoint needs at least one point")
        if weights is not None:
            if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
                raise TypeError("weights: expected a floating tensor")
            want = tuple(s for i, s in enumerate(x.shape) if i != dim % x.dim())
            if tuple(weights.shape) != want:
                raise ValueError(f"weights: expected shape {want} (x without dim), got {tuple(weights.shape)}")
            w = weights.detach()
            if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
                raise ValueError("weights: expected finite non-negative weights")
            rd = reduce_dim % x.dim()
            rd = rd - (1 if rd > dim % x.dim() else 0)
            if w.numel() and not bool((w.sum(rd) > 0).all()):
                raise ValueError("weights: every set needs a positive total weight")
    x = _work(x)
    lam = _lambda(x, c, dim)
    w = torch.ones_like(lam) if weights is None else weights.to(x.dtype).unsqueeze(dim)
    num = (w * lam * x).sum(reduce_dim, keepdim=True)
    den = (w * (lam - 1)).sum(reduce_dim, keepdim=True).clamp_min(_TINY.get(x.dtype, 1e-35))
    m = _project(mobius_scalar_mul(0.5, _project(num / den, c, dim), c=c, dim=dim, check=False), c, dim)
    return m if keepdim else m.squeeze(reduce_dim)


def _gyration(u, v, w, c, dim):
    # closed form of gyr[u, v] w = ⊖(u ⊕ v) ⊕ (u ⊕ (v ⊕ w)) (Ungar); geoopt writes it with k = -c
    u2 = (u * u).sum(dim, keepdim=True)
    v2 = (v * v).sum(dim, keepdim=True)
    uv = (u * v).sum(dim, keepdim=True)
    uw = (u * w).sum(dim, keepdim=True)
    vw = (v * w).sum(dim, keepdim=True)
    a = -c * c * uw * v2 + c * vw + 2 * c * c * uv * vw
    b = -c * c * vw * u2 - c * uw
    d = (1 + 2 * c * uv + c * c * u2 * v2).clamp_min(_TINY.get(u.dtype, 1e-35))
    return w + 2 * (a * u + b * v) / d


def gyration(u: torch.Tensor, v: torch.Tensor, w: torch.Tensor, *, c=1.0, dim: int = -1,
             check: bool = True) -> torch.Tensor:
    """The gyration ``gyr[u, v] w = ⊖(u ⊕ v) ⊕ (u ⊕ (v ⊕ w))`` in closed form (a rotation of ``w``).

    Examples
    --------
    >>> u = torch.tensor([0.3, 0.1], dtype=torch.float64); v = torch.tensor([-0.2, 0.4], dtype=torch.float64)
    >>> w = torch.tensor([0.1, 0.2], dtype=torch.float64)
    >>> lhs = mobius_add(u, mobius_add(v, w))
    >>> torch.allclose(lhs, mobius_add(mobius_add(u, v), gyration(u, v, w)))  # the gyroassociative law
    True
    """
    if check:
        c = _check_c(c)
        _check_point("u", u, c, dim)
        _check_point("v", v, c, dim)
        _check_tangent("w", w, dim)
    u, v, w = _work(u), _work(v), _work(w)
    return _gyration(u, v, w, c, dim)


def parallel_transport(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, *, c=1.0, dim: int = -1,
                       check: bool = True) -> torch.Tensor:
    """Parallel transport of the tangent vector ``v`` at ``x`` to ``y`` along the geodesic:
    ``gyr[y, −x] v · λ_x / λ_y``.

    Examples
    --------
    >>> x = torch.tensor([0.3, 0.1], dtype=torch.float64); y = torch.tensor([-0.2, 0.4], dtype=torch.float64)
    >>> v = torch.tensor([1.0, -2.0], dtype=torch.float64)
    >>> pv = parallel_transport(x, y, v)
    >>> bool(torch.isclose(lambda_x(y) * pv.norm(), lambda_x(x) * v.norm()))  # the Riemannian norm is kept
    True
    """
    if check:
        c = _check_c(c)
        _check_point("x", x, c, dim)
        _check_point("y", y, c, dim)
        _check_tangent("v", v, dim)
    x, y, v = _work(x), _work(y), _work(v)
    return _gyration(y, -x, v, c, dim) * _lambda(x, c, dim) / _lambda(y, c, dim)
