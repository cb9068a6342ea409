"""Fused per-pixel chains of the Poincaré ResNet: conv tail -> midpoint batch norm -> ReLU -> Möbius residual.

Module by module, a Poincaré block runs about a hundred passes over its ``(B, C, H, W)`` maps and autograd keeps
a dozen of them for the backward pass. Almost all of that work is *radial*: every map between two
convolutions is a per-pixel scalar (a norm, an inner product with a per-channel vector) times a few vectors.
Here each chain is written in that form:

- the HNN++ tail of a convolution gives ``y = κ S`` (``S = sinh(t)``, ``κ`` per pixel), with
  ``λ_y = 1 + √(1 + ‖S‖²)`` and ``c‖y‖²`` from ``‖S‖²``, so ``y`` is never formed;
- batch norm needs ``⟨μ, S⟩`` and ``⟨β, S⟩`` per pixel (one pass for both) and the batch sum of ``λ_y y``; the
  centred point ``(−μ) ⊕ y``, its rescaling and ``β ⊕ ·`` are per-pixel coefficients of ``S``, ``μ`` and ``β``,
  and their norms follow from those inner products;
- the tangent ReLU multiplies by a positive per-pixel factor, which commutes with ``relu``; the next
  convolution takes the tangent vector directly (``logmap0(expmap0(v)) = v``).

Each segment is run under :class:`_Recompute`: the forward pass keeps only the segment's inputs (the
convolution output ``q``, the per-pixel patch norm and the parameters) and the backward pass re-runs the segment
with autograd. So a block keeps about as many full-size maps as a Euclidean block (the convolution inputs and
outputs), and the time is a few passes per map. ``tests/nn/poincare/test_poincare_fused.py`` checks every
segment against the module-by-module definition (``PoincareResNet(..., fused=False)``) to 1e-10 in float64,
values and gradients.

(torch.compile would fuse these passes too, but compiling a ResNet-20 training step takes over ten minutes on
the two CPU cores of our CI, and eager mode is what users debug in.)
"""

from __future__ import annotations

import torch

from geodl.nn.poincare._ball import _MARGIN, _TINY, _artanhc, _asinh, _expmap0, _logmap0, _mobius_add, _project, _tanhc

_V = (1, -1, 1, 1)  # a per-channel vector against (B, C, H, W)


class _Recompute(torch.autograd.Function):
    """``fn(*tensors)`` (a tuple of tensors) keeping only the inputs; the backward pass re-runs ``fn``.

    The first ``n_diff`` outputs are differentiable, the rest (batch statistics) are not. Autocast is off in
    ``fn`` (the ball maths runs in float32 or float64 whatever the convolutions ran in).
    """

    @staticmethod
    def forward(ctx, fn, n_diff, *tensors):
        ctx.fn, ctx.n_diff = fn, n_diff
        ctx.save_for_backward(*tensors)
        with torch.no_grad():
            outs = fn(*tensors)
        ctx.mark_non_differentiable(*outs[n_diff:])
        return outs

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        need = ctx.needs_input_grad[2:]
        inputs = [t.detach().requires_grad_(n) for t, n in zip(saved, need)]
        with torch.enable_grad():
            outs = ctx.fn(*inputs)
        pairs = [(o, g) for o, g in zip(outs[:ctx.n_diff], grads[:ctx.n_diff]) if g is not None and o.requires_grad]
        wrt = [t for t, n in zip(inputs, need) if n]
        got = iter(torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True)
                   if pairs and wrt else [None] * len(wrt))
        return (None, None, *[next(got) if n else None for n in need])


def recompute(fn, n_diff: int, *tensors):
    """Run ``fn(*tensors)`` under :class:`_Recompute` when a gradient is needed, plainly otherwise."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _Recompute.apply(fn, n_diff, *tensors)
    with torch.autocast(tensors[0].device.type, enabled=False):
        return fn(*tensors)


def _sqrt_pos(x, tiny):
    """``√x`` for ``x ≥ 0`` with a finite derivative (0 below ``tiny``)."""
    return x.clamp_min(tiny).sqrt()


def _limit_factor(n2, lim):
    """The projection factor ``min(1, lim / n)`` from ``n2 = c‖x‖²``."""
    return torch.where(n2 > lim * lim, lim * torch.rsqrt(n2.clamp_min(0.25 * lim * lim)), torch.ones_like(n2))


class _Point:
    """A map ``π (P1 S + P2 μ + P3 β)`` of ball points held by its per-pixel coefficients, with ``c‖·‖²``."""

    __slots__ = ("S", "coef", "vecs", "n2")

    def __init__(self, S, coef, vecs, n2):
        self.S, self.coef, self.vecs, self.n2 = S, coef, vecs, n2

    def materialise(self):
        out = self.coef[0] * self.S
        for k, v in zip(self.coef[1:], self.vecs):
            out = torch.addcmul(out, k, v.reshape(_V))
        return out


def tail_bn(q, a, zn, r, beta_scale, scale, shift, stats, c: float, eps: float):
    """Conv tail (HNN++) + midpoint batch norm of one layer; returns ``(point, mu, var)``.

    ``q`` (B, C, H, W) the Euclidean convolution of the tangent input, ``a`` (B, 1, H, W) ``√c β‖U‖`` of each
    patch (clamped), ``zn``/``r`` the norms of the weight columns and the offsets, ``scale``/``shift`` the batch
    norm's parameters, ``stats`` ``None`` (training: batch statistics) or ``(running_mean, running_var)``.
    """
    from geodl.nn.poincare._layers import _t_max

    dt = q.dtype
    tiny, lim = _TINY.get(dt, 1e-35), 1 - _MARGIN.get(dt, 1e-5)
    sc = c ** 0.5
    # --- the tail: p = sc (λ_P <P,z>/|z| cosh(2 sc r) - (λ_P - 1) sinh(2 sc r)), <P,z> = g q
    g = beta_scale * _tanhc(a)
    lam_p = 2 * torch.cosh(a) ** 2
    ch, sh = torch.cosh(2 * sc * r), torch.sinh(2 * sc * r)
    p = torch.addcmul(-(sc * (lam_p - 1)) * sh.reshape(_V), q * (sc * ch / zn).reshape(_V), lam_p * g)
    T = _t_max(dt, q.shape[1])
    S = torch.sinh((2 * zn.reshape(_V) * _asinh(p)).clamp(-T, T))
    S2 = (S * S).sum(1, keepdim=True)
    R = torch.sqrt(1 + S2)
    # y = S / (sc (1 + R)): c|y|^2 = S2 / (1 + R)^2 = (R - 1)/(R + 1); project if beyond lim
    cy2 = S2 / (1 + R) ** 2
    pi_y = _limit_factor(cy2, lim)
    kappa = pi_y / (sc * (1 + R))
    cy2 = cy2 * pi_y * pi_y
    lam_y = torch.where(pi_y < 1, 2 / (1 - cy2), 1 + R)
    # --- the mean: μ = ½ ⊗ (Σ λ y / Σ (λ - 1)) over every pixel, or the running mean
    if stats is None:
        num = torch.einsum("bchw,bhw->c", S, (lam_y * kappa)[:, 0])
        mu = _project(num / (lam_y - 1).sum().clamp_min(tiny), c, 0)
        mu = _project(_expmap0(0.5 * _logmap0(mu, c, 0), c, 0), c, 0)
    else:
        mu = stats[0].to(dt)
    beta = _expmap0(shift.to(dt), c, 0)
    ip = torch.einsum("bchw,kc->bkhw", S, torch.stack([mu, beta]))  # <μ,S>, <β,S> per pixel
    muS, bS = ip[:, :1], ip[:, 1:]
    mu2, b2, bmu = (mu * mu).sum(), (beta * beta).sum(), (beta * mu).sum()
    # --- xc = (-μ) ⊕ y = A y + Bm μ
    y2 = kappa * kappa * S2
    ymu = kappa * muS
    den = (1 - 2 * c * ymu + c * c * mu2 * y2).clamp_min(tiny)
    A = (1 - c * mu2) / den
    Bm = -(1 - 2 * c * ymu + c * y2) / den
    xc2 = (A * A * y2 + 2 * A * Bm * ymu + Bm * Bm * mu2).clamp_min(0)
    nx = _sqrt_pos(c * xc2, tiny).clamp_max(lim)
    ath = _artanhc(nx)  # artanh(nx)/nx
    if stats is None:
        var = (4 * xc2 * ath * ath).mean()  # mean squared distance to μ
    else:
        var = stats[1].to(dt)
    rho = scale.to(dt) / torch.sqrt(var + eps)
    # scaled = expmap0(ρ logmap0(xc)) = F xc
    F = rho * ath * _tanhc(rho.abs() * ath * nx)
    # z = β ⊕ scaled: scaled = F A κ S + F Bm μ
    Y2 = F * F * xc2
    bY = F * (A * kappa * bS + Bm * bmu)
    den2 = (1 + 2 * c * bY + c * c * b2 * Y2).clamp_min(tiny)
    cY = (1 - c * b2) / den2
    cB = (1 + 2 * c * bY + c * Y2) / den2
    P1, P2, P3 = cY * F * A * kappa, cY * F * Bm, cB
    z2 = (P1 * P1 * S2 + P2 * P2 * mu2 + P3 * P3 * b2 + 2 * P1 * P2 * muS + 2 * P1 * P3 * bS
          + 2 * P2 * P3 * bmu).clamp_min(0)
    pi_z = _limit_factor(c * z2, lim)
    point = _Point(S, (pi_z * P1, pi_z * P2, pi_z * P3), (mu, beta), c * z2 * pi_z * pi_z)
    return point, mu, var


def relu_tangent(point: _Point, c: float):
    """``relu(logmap0(z))`` of a :class:`_Point`: ``artanhc(√c‖z‖) relu(z)`` (a positive factor commutes)."""
    dt = point.S.dtype
    nz = _sqrt_pos(point.n2, _TINY.get(dt, 1e-35)).clamp_max(1 - _MARGIN.get(dt, 1e-5))
    return _artanhc(nz) * torch.relu(point.materialise())


def expmap0_tangent(v, c: float):
    """``project(expmap0(v))`` along dim 1 (a plain map, not a :class:`_Point`)."""
    return _project(_expmap0(v, c, 1), c, 1)


def residual_relu(skip, h: _Point, c: float):
    """``relu(logmap0(project(skip ⊕ h)))``: the Möbius residual and the block's ReLU, tangent output."""
    dt = skip.dtype
    tiny, lim = _TINY.get(dt, 1e-35), 1 - _MARGIN.get(dt, 1e-5)
    hz = h.materialise()
    w = _mobius_add(skip, hz, c, 1)
    w2 = c * (w * w).sum(1, keepdim=True)
    pi_w = _limit_factor(w2, lim)
    nw = _sqrt_pos(w2 * pi_w * pi_w, tiny).clamp_max(lim)
    return (pi_w * _artanhc(nw)) * torch.relu(w)


def clamp_tangent(v, c: float):
    """Shrink tangent vectors (dim 1) to the norm whose expmap0 :func:`project` keeps: ``artanh(1 − δ)/√c``."""
    dt = v.dtype
    lim = 1 - _MARGIN.get(dt, 1e-5)
    vmax = float(torch.atanh(torch.tensor(lim, dtype=torch.float64))) / c ** 0.5
    n2 = (v * v).sum(1, keepdim=True)
    return v * torch.where(n2 > vmax * vmax, vmax * torch.rsqrt(n2.clamp_min(0.25 * vmax * vmax)), torch.ones_like(n2))
