"""Poincaré layers: the fully connected layer of HNN++ (Shimizu et al. 2021) with a fused backward pass.

For a point ``x`` of the ball (``dim=-1``), weights ``z_k`` and biases ``r_k`` (one per output):

    v_k = (2‖z_k‖/√c) asinh(√c λ_x ⟨x, z_k/‖z_k‖⟩ cosh(2√c r_k) − (λ_x − 1) sinh(2√c r_k))
    w_k = sinh(√c v_k) / √c,    y = w / (1 + √(1 + c‖w‖²))

(``v_k`` is the signed, scaled distance of ``x`` to the k-th hyperplane: the logits of the Poincaré
multinomial logistic regression, :class:`PoincareMLR`.) Autograd would keep about a dozen tensors of the
output's size for this chain; :func:`_fc_tail` keeps the matrix product ``⟨x, z_k⟩`` and ``λ_x`` and evaluates
the closed-form derivatives in its backward pass.

**Identity initialisation.** With ``z = ½ I`` and ``r = 0`` the layer is the identity map:
``v_k = asinh(√c λ_x x_k)/√c``, ``w = λ_x x`` and ``λ_x x / (1 + √(1 + c λ_x² ‖x‖²)) = x``. This is how
``id_init=True`` initialises a layer with ``in_features ≤ out_features`` (the first ``in_features`` outputs copy
the input; the others are small, since their weight columns get noise of scale ``1e-3 (2nm)^-½`` so that
each has a direction, which also moves the copied outputs by about 1e-8); a narrowing layer gets the HNN++ initialisation, ``z ~ N(0, (2 n m)^-1)``.
"""

from __future__ import annotations

import math

import torch

from geodl._checks import check_int, check_tensor
from geodl.groups import Symmetry
from geodl.nn.poincare._ball import _asinh, _check_c, _check_input, _lambda, _project, _work

__all__ = ["PoincareLinear", "PoincareMLR", "PoincareConv2d", "PoincareReLU", "PoincareBatchNorm2d", "PoincareAvgPool2d"]

_SYMMETRY = Symmetry("perm", {"x": "node:scalar"}, "node:scalar",
                     note="no geometric symmetry: rows of x are independent points of the ball")


def _t_max(dtype: torch.dtype, m: int) -> float:
    """Largest |√c v| kept: m · sinh² must stay finite."""
    return 0.5 * (math.log(torch.finfo(dtype).max) - math.log(max(m, 1))) - 1.0


def _tail_forward(s, lam, zn, r, sc):
    ch, sh = torch.cosh(2 * sc * r), torch.sinh(2 * sc * r)
    p = sc * (lam * s / zn * ch - (lam - 1) * sh)
    T = _t_max(s.dtype, s.shape[-1])
    t_raw = 2 * zn * _asinh(p)
    t = t_raw.clamp(-T, T)
    S = torch.sinh(t)
    R = torch.sqrt(1 + (S * S).sum(-1, keepdim=True))
    den = 1 + R
    return S / (sc * den), (ch, sh, p, t_raw, t, S, R, den, T)


class _FCTail(torch.autograd.Function):
    """``(s, λ) -> y`` of the HNN++ layer (s = ⟨x, z_k⟩ unnormalised, channels last); saves s, λ only."""

    @staticmethod
    def forward(ctx, s, lam, zn, r, sc):
        ctx.save_for_backward(s, lam, zn, r, sc)
        y, _ = _tail_forward(s, lam, zn, r, sc)
        return y

    @staticmethod
    def backward(ctx, gy):
        s, lam, zn, r, sc = ctx.saved_tensors
        _, (ch, sh, p, t_raw, t, S, R, den, T) = _tail_forward(s, lam, zn, r, sc)
        C = torch.cosh(t)
        # y = S / (sc den), den = 1 + R, R = sqrt(1 + Σ S²): dy_k/dt_j = C_j/(sc den) (δ_kj − S_k S_j/(R den))
        gS = (gy * S).sum(-1, keepdim=True)
        g_t = C / (sc * den) * (gy - S * gS / (R * den))
        g_t = torch.where(t_raw.abs() > T, torch.zeros_like(g_t), g_t)
        ash = _asinh(p)
        g_p = g_t * 2 * zn / torch.sqrt(1 + p * p)
        g_s = g_p * sc * lam * ch / zn
        g_lam = (g_p * sc * (s / zn * ch - sh)).sum(-1, keepdim=True)
        g_zn = g_t * 2 * ash - g_p * sc * lam * s * ch / (zn * zn)
        g_r = g_p * 2 * sc * sc * (lam * s / zn * sh - (lam - 1) * ch)
        red = tuple(range(s.dim() - 1))
        g_lam = _sum_to(g_lam, lam.shape)
        return g_s, g_lam, g_zn.sum(red) if red else g_zn, g_r.sum(red) if red else g_r, None


def _sum_to(g, shape):
    if tuple(g.shape) == tuple(shape):
        return g
    extra = g.dim() - len(shape)
    if extra:
        g = g.sum(tuple(range(extra)))
    keep = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(keep, keepdim=True) if keep else g


def _fc_tail(s, lam, zn, r, c):
    """The HNN++ output map, channels last; custom backward unless ``c`` requires grad."""
    s = _work(s)
    lam, zn, r = lam.to(s.dtype), zn.to(s.dtype), r.to(s.dtype)
    sc = torch.as_tensor(c, dtype=s.dtype, device=s.device).sqrt()
    if isinstance(c, torch.Tensor) and c.requires_grad:
        y, _ = _tail_forward(s, lam, zn, r, sc)
    else:
        y = _FCTail.apply(s, lam, zn, r, sc.detach())
    return _project(y, sc * sc, -1)


def _check_widths(n, m, out_name: str) -> tuple[int, int]:
    """``in_features`` and the output width ``out_name``: ints in [1, 2^20] with an n x m weight of at most 2^28."""
    n = check_int("in_features", n, min=1, max=1 << 20)
    m = check_int(out_name, m, min=1, max=1 << 20)
    if n * m > 1 << 28:
        raise ValueError(f"in_features: a {n} x {m} weight (> 2^28 entries) is too large")
    return n, m


class PoincareLinear(torch.nn.Module):
    """The Poincaré fully connected layer of HNN++, from the ball of dimension ``in_features`` to ``out_features``.

    Parameters
    ----------
    in_features, out_features : int
    c : float or torch.Tensor
        Curvature magnitude (the ball has curvature ``-c``); a ``torch.nn.Parameter`` makes it learnable.
    bias : bool
        Learn the hyperplane offsets ``r`` (else 0).
    id_init : bool
        Identity initialisation (module docstring) where ``in_features ≤ out_features``; HNN++'s otherwise.

    Shapes
    ------
    ``x`` (..., in_features) points of the ball (``c‖x‖² < 1``) -> (..., out_features) points of the ball.

    Examples
    --------
    >>> from geodl.nn.poincare import expmap0
    >>> layer = PoincareLinear(4, 6).double()
    >>> x = expmap0(torch.randn(3, 4, dtype=torch.float64))
    >>> y = layer(x).detach()
    >>> y.shape, torch.allclose(y[:, :4], x, atol=1e-6)  # identity at init
    (torch.Size([3, 6]), True)
    >>> float(y[:, 4:].abs().max()) < 1e-2  # the extra outputs: small, not 0
    True
    """

    symmetry = _SYMMETRY

    def __init__(self, in_features: int, out_features: int, *, c=1.0, bias: bool = True, id_init: bool = True):
        super().__init__()
        self.in_features, self.out_features = _check_widths(in_features, out_features, "out_features")
        self.c = _check_c(c)
        self.id_init = bool(id_init)
        self.weight = torch.nn.Parameter(torch.empty(self.in_features, self.out_features))
        self.bias = torch.nn.Parameter(torch.zeros(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        n, m = self.in_features, self.out_features
        with torch.no_grad():
            if self.id_init and n <= m:
                self.weight.zero_()
                self.weight[:, :n] = 0.5 * torch.eye(n)
                self.weight[:, n:].normal_(0.0, 1e-3 * (2 * n * m) ** -0.5)  # a direction for the extra outputs
            else:
                self.weight.normal_(0.0, (2 * n * m) ** -0.5)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, floating=True, ndim=range(1, 9))
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected {self.in_features} features in the last dimension, got shape {tuple(x.shape)}")
        _check_input(x, self.c, -1)
        x = _work(x)
        w = self.weight.to(x.dtype)
        zn = torch.linalg.vector_norm(w, dim=0).clamp_min(torch.finfo(x.dtype).tiny ** 0.5)
        r = self.bias.to(x.dtype) if self.bias is not None else zn.new_zeros(self.out_features)
        s = x @ w
        return _fc_tail(s, _lambda(x, self.c, -1), zn, r, self.c)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, c={self.c}, bias={self.bias is not None}"


class PoincareMLR(torch.nn.Module):
    """Poincaré multinomial logistic regression: logits ``v_k`` (scaled signed distances to hyperplanes).

    Shapes
    ------
    ``x`` (..., in_features) points of the ball -> logits (..., num_classes), Euclidean.

    Examples
    --------
    >>> from geodl.nn.poincare import expmap0
    >>> head = PoincareMLR(4, 3).double()
    >>> head(expmap0(torch.randn(2, 4, dtype=torch.float64))).shape
    torch.Size([2, 3])
    """

    symmetry = _SYMMETRY

    def __init__(self, in_features: int, num_classes: int, *, c=1.0):
        super().__init__()
        self.in_features, self.num_classes = _check_widths(in_features, num_classes, "num_classes")
        self.c = _check_c(c)
        self.weight = torch.nn.Parameter(torch.randn(self.in_features, self.num_classes) * (2 * self.in_features * self.num_classes) ** -0.5)
        self.bias = torch.nn.Parameter(torch.zeros(self.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, floating=True, ndim=range(1, 9))
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected {self.in_features} features in the last dimension, got shape {tuple(x.shape)}")
        _check_input(x, self.c, -1)
        x = _work(x)
        w, r = self.weight.to(x.dtype), self.bias.to(x.dtype)
        sc = torch.as_tensor(self.c, dtype=x.dtype, device=x.device).sqrt()
        zn = torch.linalg.vector_norm(w, dim=0).clamp_min(torch.finfo(x.dtype).tiny ** 0.5)
        lam = _lambda(x, self.c, -1)
        p = sc * (lam * (x @ w) / zn * torch.cosh(2 * sc * r) - (lam - 1) * torch.sinh(2 * sc * r))
        return 2 * zn / sc * _asinh(p)


def _beta_ratio(n: int, k: int) -> float:
    """``B(n k / 2, ½) / B(n / 2, ½)``: the β-concatenation scale of ``k`` tangent vectors of dimension ``n``."""
    lb = lambda a, b: math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)  # noqa: E731
    return math.exp(lb(n * k / 2, 0.5) - lb(n / 2, 0.5))


class PoincareConv2d(torch.nn.Module):
    """Poincaré 2-d convolution: β-concatenation of each patch, then :class:`PoincareLinear` (van Spengler et al.).

    The definition: every pixel's channel vector is a point of the ball; a patch of ``k = kh·kw`` pixels is
    concatenated in the tangent space at the origin with the β scaling (``u_i = logmap0(x_i)``,
    ``U = B(Ck/2, ½)/B(C/2, ½) · [u_1, ..., u_k]``, ``P = expmap0(U)``), and the Poincaré fully connected layer maps
    ``P`` to the output channels. Zero padding pads with the origin.

    **Computed without unfolding.** ``⟨P, z⟩ = tanh(√c‖U‖)/(√c‖U‖) · ⟨U, z⟩`` and ``⟨U, z⟩`` over all patches is
    an ordinary ``conv2d`` of the tangent map ``u``; ``‖U‖²`` is a box sum of ``‖u‖²`` and
    ``λ_P = 2 cosh²(√c‖U‖)``. So the layer costs one Euclidean convolution plus per-pixel work, and never holds
    the ``k``-times larger unfolded tensor (``F.unfold``, the reference path ``_unfold_reference``, is what the
    tests compare with).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, padding, dilation : int
    c : float
    bias : bool
    id_init : bool
        ``½ I`` on the centre tap where ``in_channels ≤ out_channels`` (small noise elsewhere), HNN++ otherwise.

    Shapes
    ------
    ``x`` (B, C_in, H, W), each pixel's channel vector in the ball -> (B, C_out, H', W') (``conv2d``'s sizes).

    Examples
    --------
    >>> from geodl.nn.poincare import expmap0
    >>> conv = PoincareConv2d(3, 8, 3, padding=1).double()
    >>> x = expmap0(torch.randn(2, 3, 5, 5, dtype=torch.float64), dim=1)
    >>> y = conv(x)
    >>> y.shape, bool((y.norm(dim=1) < 1).all())
    (torch.Size([2, 8, 5, 5]), True)
    >>> torch.allclose(y, conv._unfold_reference(x))
    True
    """

    symmetry = _SYMMETRY

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, *, stride: int = 1, padding: int = 0,
                 dilation: int = 1, c=1.0, bias: bool = True, id_init: bool = True):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, min=1, max=1 << 16)
        self.out_channels = check_int("out_channels", out_channels, min=1, max=1 << 16)
        ks = (kernel_size, kernel_size) if not isinstance(kernel_size, (tuple, list)) else tuple(kernel_size)
        if len(ks) != 2:
            raise ValueError(f"kernel_size: expected an int or a pair, got {kernel_size!r}")
        self.kernel_size = tuple(check_int("kernel_size", k, min=1, max=64) for k in ks)
        self.stride = check_int("stride", stride, min=1, max=1 << 10)
        self.padding = check_int("padding", padding, min=0, max=1 << 10)
        self.dilation = check_int("dilation", dilation, min=1, max=1 << 10)
        k = self.kernel_size[0] * self.kernel_size[1]
        if self.in_channels * k * self.out_channels > 1 << 28:
            raise ValueError(f"in_channels: a {in_channels}x{k} -> {out_channels} weight (> 2^28 entries) is too large")
        self.c = _check_c(c)
        self.id_init = bool(id_init)
        self.beta_scale = _beta_ratio(self.in_channels, k)
        self.weight = torch.nn.Parameter(torch.empty(self.in_channels * k, self.out_channels))
        self.bias = torch.nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        n, m = self.weight.shape
        kh, kw = self.kernel_size
        with torch.no_grad():
            if self.id_init and self.in_channels <= self.out_channels:
                self.weight.normal_(0.0, 1e-3 * (2 * n * m) ** -0.5)
                centre = (kh // 2) * kw + kw // 2  # rows are ordered (channel, kh, kw), as F.unfold's
                idx = torch.arange(self.in_channels)
                self.weight[idx * kh * kw + centre, idx] = 0.5
            else:
                self.weight.normal_(0.0, (2 * n * m) ** -0.5)
            if self.bias is not None:
                self.bias.zero_()

    def _params(self, dtype):
        w = self.weight.to(dtype)
        zn = torch.linalg.vector_norm(w, dim=0).clamp_min(torch.finfo(dtype).tiny ** 0.5)
        r = self.bias.to(dtype) if self.bias is not None else zn.new_zeros(self.out_channels)
        return w, zn, r

    def _check(self, x):
        check_tensor("x", x, floating=True, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected {self.in_channels} channels (dim 1), got shape {tuple(x.shape)}")
        _check_input(x, self.c, 1)
        kh, kw = self.kernel_size
        for name, size, k in (("height", x.shape[2], kh), ("width", x.shape[3], kw)):
            if size + 2 * self.padding < self.dilation * (k - 1) + 1:
                raise ValueError(f"x: {name} {size} (+ padding {self.padding}) is smaller than the dilated kernel")

    def _tangent_conv(self, u: torch.Tensor):
        """``(q, a)`` of the tangent map ``u`` (B, C_in, H, W): ``q`` the Euclidean convolution ``⟨U, z_k⟩`` of every
        patch, ``a = √c β‖U‖`` (B, 1, H', W') its clamped norm. (``q`` follows autocast; ``a`` is float32/64.)"""
        from geodl.nn.poincare._ball import _TINY

        w, _, _ = self._params(u.dtype)
        kh, kw = self.kernel_size
        conv = dict(stride=self.stride, padding=self.padding, dilation=self.dilation)
        q = torch.nn.functional.conv2d(u, w.t().reshape(self.out_channels, self.in_channels, kh, kw), **conv)
        with torch.autocast(u.device.type, enabled=False):  # the box sum of |u|² in full precision
            n2 = torch.nn.functional.conv2d((u * u).sum(1, keepdim=True), u.new_ones(1, 1, kh, kw), **conv)
        # clamp_min(tiny): a finite derivative where a whole patch is 0 (common after the ReLU)
        a = (self.c ** 0.5 * self.beta_scale * n2.clamp_min(_TINY.get(u.dtype, 1e-35)).sqrt())
        return q, a.clamp_max(_t_max(u.dtype, 1) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from geodl.nn.poincare._ball import _logmap0, _tanhc

        self._check(x)
        x = _work(x)
        _, zn, r = self._params(x.dtype)
        q, a = self._tangent_conv(_logmap0(x, self.c, 1))
        g = _tanhc(a) * self.beta_scale  # <P, z> = g q
        lam = 2 * torch.cosh(a) ** 2
        s = (g * _work(q)).permute(0, 2, 3, 1)
        y = _fc_tail(s, lam.permute(0, 2, 3, 1), zn, r, self.c)
        return y.permute(0, 3, 1, 2)

    def _unfold_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The definition, literally: unfold, β-concatenate, expmap0, Poincaré fully connected (tests only)."""
        from geodl.nn.poincare._ball import _expmap0, _logmap0

        self._check(x)
        b, _, h, wd = x.shape
        w, zn, r = self._params(x.dtype)
        u = _logmap0(x, self.c, 1)
        cols = torch.nn.functional.unfold(u, self.kernel_size, dilation=self.dilation, padding=self.padding,
                                          stride=self.stride)  # (B, C k, L)
        P = _expmap0(self.beta_scale * cols, self.c, 1).transpose(1, 2)  # (B, L, C k)
        y = _fc_tail(P @ w, _lambda(P, self.c, -1), zn, r, self.c)  # (B, L, out)
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding - self.dilation * (kh - 1) - 1) // self.stride + 1
        wo = (wd + 2 * self.padding - self.dilation * (kw - 1) - 1) // self.stride + 1
        return y.transpose(1, 2).reshape(b, self.out_channels, ho, wo)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, c={self.c}")


class PoincareReLU(torch.nn.Module):
    """ReLU in the tangent space at the origin: ``expmap0(relu(logmap0(x)))`` along ``dim`` (default 1, channels).

    Examples
    --------
    >>> from geodl.nn.poincare import expmap0, logmap0
    >>> x = expmap0(torch.tensor([[0.5, -0.3]], dtype=torch.float64))
    >>> logmap0(PoincareReLU(dim=-1)(x))
    tensor([[0.5000, 0.0000]], dtype=torch.float64)
    """

    symmetry = _SYMMETRY

    def __init__(self, *, c=1.0, dim: int = 1):
        super().__init__()
        self.c = _check_c(c)
        self.dim = check_int("dim", dim, min=-8, max=7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from geodl.nn.poincare._ball import _expmap0, _logmap0

        check_tensor("x", x, floating=True)
        if x.dim() == 0 or not -x.dim() <= self.dim < x.dim():
            raise ValueError(f"x: shape {tuple(x.shape)} has no dimension {self.dim} (the ball dimension)")
        _check_input(x, self.c, self.dim)
        return _project(_expmap0(torch.relu(_logmap0(x, self.c, self.dim)), self.c, self.dim), self.c, self.dim)


class PoincareBatchNorm2d(torch.nn.Module):
    """Poincaré midpoint batch norm over ``(B, C, H, W)`` maps (the ball along the channels), with running statistics.

    Training mode: the batch mean is the gyromidpoint ``μ`` of all ``B·H·W`` channel vectors and the variance
    the mean squared distance to it; each point is moved by ``(−μ) ⊕ x``, rescaled ``(γ/√(σ² + ε)) ⊗ ·`` and moved
    to the learned bias point ``β = expmap0(b)``. The running mean is updated along the geodesic,
    ``m ← m ⊕ (momentum ⊗ ((−m) ⊕ μ))``, the running variance by the usual moving average. **Eval mode uses the
    running statistics**, so each sample's output does not depend on the rest of the batch (hypll's batch
    norm keeps none).

    Examples
    --------
    >>> from geodl.nn.poincare import expmap0
    >>> bn = PoincareBatchNorm2d(4).double()
    >>> x = expmap0(torch.randn(8, 4, 3, 3, dtype=torch.float64), dim=1)
    >>> y = bn(x)                                   # training: batch statistics, running ones updated
    >>> bool(bn.running_var != 1), y.shape
    (True, torch.Size([8, 4, 3, 3]))
    >>> _ = bn.eval()
    >>> torch.allclose(bn(x[:2]), bn(x)[:2])       # eval: per-sample
    True
    """

    symmetry = _SYMMETRY

    def __init__(self, num_features: int, *, c=1.0, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        from geodl._checks import check_number

        self.num_features = check_int("num_features", num_features, min=1, max=1 << 20)
        self.c = _check_c(c)
        self.momentum = check_number("momentum", momentum, lo=0.0, hi=1.0)
        self.eps = check_number("eps", eps, positive=True)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.shift = torch.nn.Parameter(torch.zeros(self.num_features))  # tangent vector of β at the origin
        self.register_buffer("running_mean", torch.zeros(self.num_features))
        self.register_buffer("running_var", torch.ones(()))

    @torch.no_grad()
    def _update_running(self, mu: torch.Tensor, var: torch.Tensor, n: int) -> None:
        """Move the running mean along the geodesic to the batch mean ``mu`` and average the variance."""
        from geodl.nn.poincare._ball import _expmap0, _logmap0, _mobius_add

        c, m = self.c, self.momentum
        mu, var = mu.detach(), var.detach()
        rm = self.running_mean.to(mu.dtype)
        step = _expmap0(m * _logmap0(_mobius_add(-rm, mu, c, 0), c, 0), c, 0)
        self.running_mean.copy_(_project(_mobius_add(rm, step, c, 0), c, 0))
        self.running_var.copy_((1 - m) * self.running_var + m * var * n / max(n - 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from geodl.nn.poincare._ball import _expmap0, _logmap0, _mobius_add

        check_tensor("x", x, floating=True, ndim=4)
        if x.shape[1] != self.num_features:
            raise ValueError(f"x: expected {self.num_features} channels (dim 1), got shape {tuple(x.shape)}")
        _check_input(x, self.c, 1)
        x = _work(x)
        c = self.c
        shape = (1, -1, 1, 1)
        if self.training:
            if x.numel() == 0:
                raise ValueError("x: batch norm in training mode needs at least one pixel; got an empty batch")
            flat = x.transpose(0, 1).reshape(self.num_features, -1)  # (C, N)
            lam = _lambda(flat, c, 0)
            mu = (lam * flat).sum(1) / (lam - 1).sum(1).clamp_min(torch.finfo(x.dtype).tiny)
            mu = _project(mu, c, 0)
            mu = _project(_expmap0(0.5 * _logmap0(mu, c, 0), c, 0), c, 0)  # ½ ⊗ (the weighted sum)
            xc = _mobius_add(-mu.reshape(shape), x, c, 1)
            var = (2 * _logmap0(xc, c, 1)).square().sum(1).mean()
            self._update_running(mu, var, flat.shape[1])
        else:
            xc = _mobius_add(-self.running_mean.to(x.dtype).reshape(shape), x, c, 1)
            var = self.running_var.to(x.dtype)
        r = self.scale.to(x.dtype) / torch.sqrt(var + self.eps)
        scaled = _expmap0(r * _logmap0(xc, c, 1), c, 1)
        beta = _expmap0(self.shift.to(x.dtype).reshape(shape), c, 1)
        return _project(_mobius_add(beta, scaled, c, 1), c, 1)


def _pool_size(name: str, value, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{name}: expected an int or a pair, got {value!r:.80}")
    return tuple(check_int(name, k, min=0 if name == "padding" else 1, max=1 << 10) for k in pair)


class PoincareAvgPool2d(torch.nn.Module):
    """Average pooling in the tangent space at the origin: ``expmap0(avg_pool2d(logmap0(x)))``, the ball along dim 1.

    ``kernel_size``, ``stride`` (default: ``kernel_size``) and ``padding`` as in ``torch.nn.AvgPool2d``; zero
    padding pads with the origin and counts in the average (``count_include_pad=True``, torch's default).
    ``kernel_size=None`` pools globally (each map to one pixel), as the head of :class:`PoincareResNet` does.

    Shapes
    ------
    ``x`` (B, C, H, W), each pixel's channel vector in the ball -> (B, C, H', W') (``avg_pool2d``'s sizes;
    (B, C, 1, 1) for the global pool).

    Examples
    --------
    >>> from geodl.nn.poincare import expmap0, logmap0
    >>> u = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    >>> y = PoincareAvgPool2d(2)(expmap0(u, dim=1))
    >>> y.shape
    torch.Size([2, 3, 2, 2])
    >>> torch.allclose(logmap0(y, dim=1), torch.nn.functional.avg_pool2d(u, 2))
    True
    >>> PoincareAvgPool2d(None)(expmap0(u, dim=1)).shape
    torch.Size([2, 3, 1, 1])
    """

    symmetry = _SYMMETRY

    def __init__(self, kernel_size=2, stride=None, padding=0, *, c=1.0):
        super().__init__()
        self.kernel_size = _pool_size("kernel_size", kernel_size, allow_none=True)
        self.stride = _pool_size("stride", stride, allow_none=True) or self.kernel_size
        self.padding = _pool_size("padding", padding)
        if self.kernel_size is not None and any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding: expected at most half the kernel size {self.kernel_size}, got {self.padding}")
        if self.kernel_size is None and self.padding != (0, 0):
            raise ValueError(f"padding: the global pool (kernel_size=None) takes no padding, got {padding!r}")
        self.c = _check_c(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from geodl.nn.poincare._ball import _expmap0, _logmap0

        check_tensor("x", x, floating=True, ndim=4)
        _check_input(x, self.c, 1)
        if self.kernel_size is None:
            if x.shape[2] * x.shape[3] == 0:
                raise ValueError(f"x: the global pool needs at least one pixel, got shape {tuple(x.shape)}")
        else:
            for name, size, k, p in (("height", x.shape[2], self.kernel_size[0], self.padding[0]),
                                     ("width", x.shape[3], self.kernel_size[1], self.padding[1])):
                if size + 2 * p < k:
                    raise ValueError(f"x: {name} {size} (+ padding {p}) is smaller than the kernel {k}")
        x = _work(x)
        u = _logmap0(x, self.c, 1)
        if self.kernel_size is None:
            v = u.mean(dim=(2, 3), keepdim=True)
        else:
            v = torch.nn.functional.avg_pool2d(u, self.kernel_size, self.stride, self.padding)
        return _project(_expmap0(v, self.c, 1), self.c, 1)

    def extra_repr(self) -> str:
        if self.kernel_size is None:
            return f"global, c={self.c}"
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, c={self.c}"
