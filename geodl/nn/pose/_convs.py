"""S2 and SO(3) convolutions in the Fourier domain and a pointwise SO(3) activation on a HEALPix grid.

Conventions (those of ``geodl.groups``; Image2Sphere / e3nn's real basis):

- An **SO(3) signal** with coefficients ``F = (F^0, .., F^lmax)`` (blocks ``(2l+1) x (2l+1)``,
  flattened row-major and concatenated, width ``Σ(2l+1)²``, kind ``so3:<lmax>``) is
  ``f(R) = Σ_l tr(F^lᵀ D^l(R))`` with ``D^l`` = :func:`geodl.groups.wigner_D` (e3nn's basis).
  Rotating the signal, ``f(g⁻¹ R)``, maps ``F^l -> D^l(g) F^l``: the action of the kind.
- An **S2 signal** ``f(x) = Σ_l x^l · Y^l(x)`` with coefficients in the basis of
  :func:`geodl.ops.spherical_harmonics` (kind ``sh:<lmax>``, ``convention="real"``, orthonormal) or, with
  ``basis="e3nn"``, in e3nn's basis (kind ``sh:<lmax>:e3nn``). Rotating it maps ``x^l -> D_b^l(g) x^l``
  with ``D_real(g) = D_e3nn(Pᵀ g P)`` (``P v = (v_z, v_x, v_y)``, a rotation), so
  ``y^l = Q^l x^l`` with ``Q^l = D_e3nn^l(P)`` are the e3nn-basis coefficients: ``y -> D_e3nn(g) y``.

Derivation of :class:`S2Conv`. With ``Y(Rx) = D(R) Y(x)`` (e3nn basis), the correlation of ``f`` with
a kernel ``ψ(x) = Σ_l ψ^l · Y^l(x)`` is

    (f ⋆ ψ)(R) = ∫_{S²} f(x) ψ(R⁻¹ x) dx = Σ_l y^lᵀ D^l(R) ψ^l = Σ_l tr((y^l ψ^lᵀ)ᵀ D^l(R)),

so the output block is the outer product ``F^l = y^l ψ^lᵀ``; ``y -> D(g) y`` gives ``F -> D(g) F``:
equivariant, exactly (no grid). For a kernel made of point masses ``w_k`` at directions ``x_k``,
``ψ^l = Σ_k w_k Y^l(x_k)`` and ``(f ⋆ ψ)(R) = Σ_k w_k f(R x_k)``.

Derivation of :class:`SO3Conv`. ``F^l_out = F^l Ψ^l`` (right multiplication) commutes with the left
multiplication ``F -> D(g) F``. For a kernel of point masses ``w_k`` at rotations ``R_k``,
``Ψ^l = Σ_k w_k D^l(R_k)ᵀ`` and ``f_out(R) = Σ_k w_k f(R R_k)``.

:class:`SO3Activation` is only approximately equivariant: the HEALPix SO(3) grid is not invariant
under rotations (errors measured in ``tests/nn/pose/test_convs.py`` and stated in its docstring).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geodl._checks import check_alloc, check_choice, check_int, check_positive_int, check_tensor
from geodl.groups._symmetry import Symmetry
from geodl.groups._wigner_grid import _flat_blocks, so3_fourier_width
from geodl.nn.pose._common import _checking, check_rotations

__all__ = ["S2Conv", "SO3Conv", "SO3Activation", "s2_near_pole_grid"]

# P v = (v_z, v_x, v_y); Y_e3nn(x) = Y_real(P x) (see geodl.groups._actions)
_P = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)


class _ExactConstants(nn.Module):
    """Derived constant tensors (non-persistent buffers) kept exact across dtype conversions.

    Each buffer has a float64 CPU master; after ``.to()``/``.double()``/``.cuda()`` the buffer is
    re-cast from the master (not from its float32 copy), so a module built in float32 and converted
    to float64 holds float64-accurate constants.
    """

    def _constant(self, name: str, value64: torch.Tensor, dtype=None) -> None:
        self.__dict__.setdefault("_masters", {})[name] = value64.detach().to("cpu", torch.float64)
        self.register_buffer(name, value64.to(dtype or torch.get_default_dtype()), persistent=False)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        for name, master in self.__dict__.get("_masters", {}).items():
            b = self._buffers.get(name)
            if b is not None and b.is_floating_point():
                self._buffers[name] = master.to(dtype=b.dtype, device=b.device)
        return out


def _width_hint(got: int, width_of, limit: int = 200) -> str:
    return next((f" (the width of lmax={k})" for k in range(limit) if width_of(k) == got), "")


def _check_input(x, C: int, lmax: int, width: int, width_of, kind: str, C_out: int, out_width: int) -> torch.Tensor:
    x = check_tensor("x", x, ndim=3, floating=True)
    if x.shape[1] != C or x.shape[2] != width:
        got = x.shape[2]
        hint = _width_hint(got, width_of) if got != width else ""
        raise ValueError(f"x: expected shape (B, {C}, {width}) (in_channels={C}, kind {kind} of lmax={lmax}), "
                         f"got {tuple(x.shape)}{hint}")
    check_alloc("x", tuple(x.shape), x.shape[0] * C_out, out_width, x.dtype, x.device)  # before any value pass
    if _checking(x):
        check_tensor("x", x, finite=True)
    return x


def s2_near_pole_grid(n_alpha: int = 8, n_beta: int = 3, max_beta: float = math.pi / 8,
                      dtype=None) -> torch.Tensor:
    """``(n_alpha · n_beta, 3)`` unit vectors on rings around the north pole ``(0, 0, 1)``.

    Ring ``j = 1..n_beta`` has polar angle ``β_j = j · max_beta / n_beta`` and ``n_alpha`` points at
    azimuths ``2π i / n_alpha`` (Image2Sphere's ``s2_near_identity_grid``, in ``xyz`` with ``z`` up).

    Examples
    --------
    >>> g = s2_near_pole_grid(4, 2, dtype=torch.float64)
    >>> g.shape, bool(torch.allclose(g.norm(dim=-1), torch.ones(8, dtype=torch.float64)))
    (torch.Size([8, 3]), True)
    """
    n_alpha = check_positive_int("n_alpha", n_alpha)
    n_beta = check_positive_int("n_beta", n_beta)
    if isinstance(max_beta, bool) or not isinstance(max_beta, (int, float)) or not 0 < max_beta <= math.pi:
        raise ValueError(f"max_beta: expected a number in (0, π], got {max_beta!r}")
    check_alloc("n_alpha", n_alpha, n_alpha * n_beta, 3, torch.float64, torch.device("cpu"))
    a = torch.arange(n_alpha, dtype=torch.float64) * (2 * math.pi / n_alpha)
    b = torch.arange(1, n_beta + 1, dtype=torch.float64) * (max_beta / n_beta)
    B, A = torch.meshgrid(b, a, indexing="ij")
    x = torch.stack([B.sin() * A.cos(), B.sin() * A.sin(), B.cos()], dim=-1).reshape(-1, 3)
    return x.to(dtype or torch.get_default_dtype())


def _sh_e3nn(lmax: int, x: torch.Tensor) -> torch.Tensor:
    from geodl.ops import spherical_harmonics

    return spherical_harmonics(lmax, x, convention="e3nn", normalization="integral")


class S2Conv(_ExactConstants):
    """S2 -> SO(3) convolution (correlation) in the Fourier domain, exactly SO(3)-equivariant.

    ``x (B, C_in, (lmax+1)²)``, degree-``l`` vectors ``x^l_c``, is mapped to SO(3) coefficients
    ``(B, C_out, Σ(2l+1)²)`` with blocks

        F^l_{b,o} = Σ_c (Q^l x^l_{b,c}) ψ^l_{c,o}ᵀ        (an outer product of two (2l+1) vectors)

    where ``Q^l = D_e3nn^l(P)`` turns geodl's real basis into e3nn's (the identity for
    ``basis="e3nn"``) and ``ψ^l_{c,o}`` are the kernel's coefficients in e3nn's basis. Rotating the
    input, ``x^l -> D_b^l(g) x^l``, left-multiplies every output block: ``F^l -> D^l(g) F^l`` (module
    docstring). The output is the signal ``R -> ∫ f_c(x) ψ_{c,o}(R⁻¹ x) dx`` summed over ``c``.

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
        Largest degree (``>= 0``) of the input and output.
    kernel_grid : None, ``"sh"`` or Tensor ``(K, 3)``
        How the kernel is parametrised. ``None`` (default): point masses at the 24 directions of
        :func:`s2_near_pole_grid` (``β <= π/8``), ``ψ^l_{c,o} = (C_in K)^{-1/2} Σ_k w_{c,o,k} Y^l(x_k)``
        with learnable ``weight (C_in, C_out, K)`` (orthonormal e3nn harmonics), so the output is
        ``(C_in K)^{-1/2} Σ_{c,k} w_{c,o,k} f_c(R x_k)``; a tensor: those directions (nonzero,
        normalised). ``"sh"``: the coefficients themselves, ``weight (C_in, C_out, (lmax+1)²)``,
        ``ψ_{c,o} = C_in^{-1/2} weight[c, o]``.
    basis : {"real", "e3nn"}
        Basis of the input coefficients: kind ``sh:<lmax>`` (:func:`geodl.ops.spherical_harmonics`'
        default) or ``sh:<lmax>:e3nn``.

    Raises
    ------
    ValueError
        ``x`` not ``(B, in_channels, (lmax+1)²)`` (names ``x``; the lmax of the width when it is one),
        NaN/inf (CPU), an output that would not fit in memory; bad constructor arguments (named).

    Examples
    --------
    >>> import torch
    >>> conv = S2Conv(2, 3, lmax=2).double()
    >>> conv(torch.randn(4, 2, 9, dtype=torch.float64)).shape
    torch.Size([4, 3, 35])
    """

    def __init__(self, in_channels: int, out_channels: int, lmax: int, *, kernel_grid=None, basis: str = "real"):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.lmax = check_int("lmax", lmax, min=0, max=64)
        self.basis = check_choice("basis", basis, ("real", "e3nn"))
        n = (self.lmax + 1) ** 2
        check_alloc("in_channels, out_channels", (in_channels, out_channels), in_channels * out_channels,
                    max(n, 24), torch.float64, torch.device("cpu"))
        if isinstance(kernel_grid, str):
            check_choice("kernel_grid", kernel_grid, ("sh",))
            self.kernel_size = n
            self.weight = nn.Parameter(torch.randn(in_channels, out_channels, n))
        else:
            if kernel_grid is None:
                grid = s2_near_pole_grid(dtype=torch.float64)
            else:
                grid = check_tensor("kernel_grid", kernel_grid, ndim=2, shape=(None, 3), floating=True)
                if grid.shape[0] == 0:
                    raise ValueError("kernel_grid: expected at least one direction, got shape (0, 3)")
                grid = check_tensor("kernel_grid", grid.detach().to("cpu", torch.float64), finite=True)
                if bool((grid.norm(dim=-1) == 0).any()):
                    raise ValueError("kernel_grid: the directions must be nonzero vectors")
                grid = grid / grid.norm(dim=-1, keepdim=True)
            self.kernel_size = grid.shape[0]
            self.weight = nn.Parameter(torch.randn(in_channels, out_channels, grid.shape[0]))
            self._constant("kernel_sh", _sh_e3nn(self.lmax, grid))  # (K, n)
        self.kernel_grid = "sh" if isinstance(kernel_grid, str) else "points"
        if self.basis == "real":  # Q = blockdiag D_e3nn^l(P)
            from geodl.groups import wigner_D_blocks

            self._constant("basis_change", torch.block_diag(*wigner_D_blocks(self.lmax, _P)))

    @property
    def symmetry(self) -> Symmetry:
        kind = f"sh:{self.lmax}" + (":e3nn" if self.basis == "e3nn" else "")
        return Symmetry("SO3", {"x": kind}, f"so3:{self.lmax}",
                        note="exact: outer products of degree-l blocks (no grid)")

    def kernel(self) -> torch.Tensor:
        """``(C_in, C_out, (lmax+1)²)``: the kernel's SH coefficients ``ψ_{c,o}`` (e3nn basis, scale included)."""
        if self.kernel_grid == "sh":
            return self.weight / math.sqrt(self.in_channels)
        return (self.weight @ self.kernel_sh) / math.sqrt(self.in_channels * self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = (self.lmax + 1) ** 2
        x = _check_input(x, self.in_channels, self.lmax, n, lambda k: (k + 1) ** 2,
                         f"sh:{self.lmax}" + (":e3nn" if self.basis == "e3nn" else ""),
                         self.out_channels, so3_fourier_width(self.lmax))
        if self.basis == "real":
            x = x @ self.basis_change.T
        psi = self.kernel()
        out = []
        for l in range(self.lmax + 1):
            s = slice(l * l, (l + 1) ** 2)
            out.append(torch.einsum("bcm,con->bomn", x[..., s], psi[..., s]).flatten(-2))
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, kernel_grid={self.kernel_grid!r} "
                f"({self.kernel_size}), basis={self.basis!r}")


class SO3Conv(_ExactConstants):
    """SO(3) -> SO(3) convolution in the Fourier domain: ``F^l_out = Σ_c F^l_c Ψ^l_{c,o}``, exactly equivariant.

    ``x (B, C_in, Σ(2l+1)²)`` (kind ``so3:<lmax>``) -> ``(B, C_out, Σ(2l+1)²)``; the right
    multiplication by the learnable ``(2l+1) x (2l+1)`` blocks ``Ψ^l_{c,o}`` commutes with the action
    ``F^l -> D^l(g) F^l`` (``f(R) -> f(g⁻¹R)``). For point masses (``kernel_grid``) the output is the
    signal ``R -> Σ_{c,k} w_{c,o,k} f_c(R R_k) / sqrt(C_in K)``.

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
        Largest degree (``>= 0``).
    kernel_grid : None or Tensor ``(K, 3, 3)``
        ``None`` (default): the blocks themselves are the parameters, ``weight (C_in, C_out, Σ(2l+1)²)``
        initialised ``N(0, 1 / (C_in (2l+1)))`` per entry (output of the order of the input). A tensor
        of rotations ``R_k``: point masses, ``Ψ^l_{c,o} = (C_in K)^{-1/2} Σ_k w_{c,o,k} D^l(R_k)ᵀ``
        with learnable ``weight (C_in, C_out, K)`` (e.g. rotations near the identity, as Image2Sphere).

    Raises
    ------
    ValueError
        ``x`` not ``(B, in_channels, Σ(2l+1)²)`` (names ``x``), NaN/inf (CPU), an output that would
        not fit in memory; bad constructor arguments (named).

    Examples
    --------
    >>> import torch
    >>> conv = SO3Conv(3, 2, lmax=1).double()
    >>> conv(torch.randn(5, 3, 10, dtype=torch.float64)).shape
    torch.Size([5, 2, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, lmax: int, *, kernel_grid=None):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.lmax = check_int("lmax", lmax, min=0, max=64)
        width = so3_fourier_width(self.lmax)
        check_alloc("in_channels, out_channels", (in_channels, out_channels), in_channels * out_channels, width,
                    torch.float64, torch.device("cpu"))
        if kernel_grid is None:
            std = torch.cat([torch.full(((2 * l + 1) ** 2,), (in_channels * (2 * l + 1)) ** -0.5)
                             for l in range(self.lmax + 1)])
            self.kernel_size = width
            self.weight = nn.Parameter(torch.randn(in_channels, out_channels, width) * std)
        else:
            R = check_rotations("kernel_grid", kernel_grid, shape=(None, 3, 3))
            if R.shape[0] == 0:
                raise ValueError("kernel_grid: expected at least one rotation, got shape (0, 3, 3)")
            R = R.detach().to("cpu", torch.float64)
            D = _flat_blocks(self.lmax, R.transpose(-1, -2))  # D(R_k)ᵀ = D(R_kᵀ)
            self.kernel_size = R.shape[0]
            self.weight = nn.Parameter(torch.randn(in_channels, out_channels, R.shape[0]))
            self._constant("kernel_D", D)  # (K, W)
        self.kernel_grid = None if kernel_grid is None else "rotations"

    @property
    def symmetry(self) -> Symmetry:
        return Symmetry("SO3", {"x": f"so3:{self.lmax}"}, f"so3:{self.lmax}",
                        note="exact: right multiplication of the blocks")

    def kernel(self) -> torch.Tensor:
        """``(C_in, C_out, Σ(2l+1)²)``: the blocks ``Ψ^l_{c,o}`` flattened row-major (scale included)."""
        if self.kernel_grid is None:
            return self.weight
        return (self.weight @ self.kernel_D) / math.sqrt(self.in_channels * self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = so3_fourier_width(self.lmax)
        x = _check_input(x, self.in_channels, self.lmax, width, so3_fourier_width, f"so3:{self.lmax}",
                         self.out_channels, width)
        psi = self.kernel()
        out, i = [], 0
        for l in range(self.lmax + 1):
            k = 2 * l + 1
            F = x[..., i:i + k * k].unflatten(-1, (k, k))
            K = psi[..., i:i + k * k].unflatten(-1, (k, k))
            out.append(torch.einsum("bcmn,conp->bomp", F, K).flatten(-2))
            i += k * k
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, kernel_grid={self.kernel_grid!r}"


_ACTS = {
    "relu": torch.relu, "gelu": nn.functional.gelu, "silu": nn.functional.silu, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "softplus": nn.functional.softplus, "abs": torch.abs,
}


def _second_moment(fn) -> float:
    """``E[fn(z)²]`` for ``z ~ N(0, 1)`` by 200-point Gauss–Hermite quadrature (float64)."""
    import numpy as np

    z, w = np.polynomial.hermite_e.hermegauss(200)
    v = fn(torch.from_numpy(z)).double().numpy()
    return float((w * v * v).sum() / w.sum())


def _default_rec(lmax: int) -> int:
    """The smallest HEALPix SO(3) level with at least ``8 Σ(2l+1)²`` rotations (1 for lmax <= 2, 2 to 6, 3 to 14)."""
    need = 8 * so3_fourier_width(lmax)
    rec = 0
    while 72 * 8**rec < need:
        rec += 1
    return rec


class SO3Activation(_ExactConstants):
    """Pointwise nonlinearity of an SO(3) signal on the HEALPix SO(3) grid; approximately equivariant.

    ``x (B, C, Σ_{l<=lmax_in}(2l+1)²)`` -> the values ``f(G_i) = Σ_l tr(F^lᵀ D^l(G_i))`` at the
    ``N = 72 · 8^rec`` rotations of :func:`geodl.groups.so3_healpix_grid` (Wigner-D of the grid
    computed once in float64, kept as a constant) -> ``σ(f(G_i))`` -> coefficients up to ``lmax_out``
    by the discrete transform:

    - ``transform="lstsq"`` (default): least squares, ``F = argmin Σ_i (σ_i - Σ_l tr(F^lᵀ D^l(G_i)))²``
      (the pseudo-inverse of the ``(N, W_out)`` grid Wigner-D): band-limited signals (degree <= lmax_out)
      come back exactly (to rounding) when ``N >= W_out``;
    - ``transform="quadrature"``: ``F^l = (2l+1) / N Σ_i σ_i D^l(G_i)`` (the HEALPix cells have equal
      Haar volume ``π²/N``; normalised Haar measure): the grid's approximate orthogonality, so a
      round trip is only approximate (errors in the tests).

    ``normalize2mom=False`` (default): σ is used as given, **not** rescaled. ``True`` does what e3nn's
    ``SO3Activation`` does (``e3nn.math.normalize2mom``): σ is divided by ``sqrt(E[σ(z)²])``,
    ``z ~ N(0, 1)`` (a factor ``sqrt(2)`` for ``relu``), so that unit-variance values keep a unit
    second moment.

    Equivariance is only approximate: the grid is not invariant under rotations, and σ creates
    degrees above any band limit, which the grid aliases. Measured relative errors
    ``|σ(g·x) - g·σ(x)| / |σ(x)|`` (worst of 4 random rotations, random inputs whose grid values have
    unit variance, least squares; ``tests/nn/pose/test_convs.py`` bounds them):

    ========  ======  ======  =======
    lmax      rec 1   rec 2   rec 3
    ========  ======  ======  =======
    2 relu    2.1e-2  3.1e-3  7.1e-4
    2 tanh    1.3e-2  2.0e-3  5.0e-4
    4 relu    1.2e-1  1.1e-2  1.7e-3
    4 tanh    8.5e-2  4.0e-3  7.4e-4
    ========  ======  ======  =======

    Parameters
    ----------
    lmax_in, lmax_out : int
        Degrees of the input and the output (``>= 0``).
    act : str or callable, default ``"relu"``
        One of ``relu``, ``gelu``, ``silu``, ``tanh``, ``sigmoid``, ``softplus``, ``abs``, or an
        elementwise function of a tensor.
    rec : int, optional
        HEALPix SO(3) level of the grid, in ``[0, 5]``; default: the smallest with at least
        ``8 Σ(2l+1)²`` rotations for the larger degree (1 up to lmax 2, 2 up to 6, 3 up to 14).
    transform : {"lstsq", "quadrature"}
    normalize2mom : bool

    Raises
    ------
    ValueError
        ``x`` not ``(B, C, Σ(2l+1)²)`` for ``lmax_in`` (names ``x``), NaN/inf (CPU), grid or
        values too large for memory (names ``rec`` / ``x``), ``rec`` with fewer rotations than
        ``Σ(2l+1)²`` of ``lmax_out`` under ``"lstsq"`` (names ``rec``), bad arguments (named).

    Examples
    --------
    >>> import torch
    >>> act = SO3Activation(2, 2, rec=1).double()
    >>> act(torch.randn(3, 4, 35, dtype=torch.float64)).shape
    torch.Size([3, 4, 35])
    """

    def __init__(self, lmax_in: int, lmax_out: int, act="relu", *, rec: int | None = None,
                 transform: str = "lstsq", normalize2mom: bool = False):
        super().__init__()
        from geodl.groups import so3_healpix_grid

        self.lmax_in = check_int("lmax_in", lmax_in, min=0, max=64)
        self.lmax_out = check_int("lmax_out", lmax_out, min=0, max=64)
        if isinstance(act, str):
            check_choice("act", act, tuple(_ACTS))
            self.act_name, self._act = act, _ACTS[act]
        elif callable(act):
            self.act_name, self._act = getattr(act, "__name__", type(act).__name__), act
        else:
            raise TypeError(f"act: expected one of {sorted(_ACTS)} or a callable, got {type(act).__name__}")
        self.transform = check_choice("transform", transform, ("lstsq", "quadrature"))
        if not isinstance(normalize2mom, bool):
            raise TypeError(f"normalize2mom: expected a bool, got {type(normalize2mom).__name__}")
        top = max(self.lmax_in, self.lmax_out)
        self.rec = _default_rec(top) if rec is None else check_int("rec", rec, min=0, max=5)
        N = 72 * 8**self.rec
        w_in, w_out = so3_fourier_width(self.lmax_in), so3_fourier_width(self.lmax_out)
        if self.transform == "lstsq" and N < w_out:
            need = next(r for r in range(64) if 72 * 8**r >= w_out)
            raise ValueError(f"rec: the level-{self.rec} grid has {N} rotations, fewer than the {w_out} "
                             f"coefficients of lmax_out={self.lmax_out}; least squares needs rec >= {need}")
        # float64 build (masters) + default-dtype copies, plus the recursion's temporaries
        check_alloc("rec", self.rec, N, 3 * (w_in + w_out) + 16 * (2 * top + 1) ** 2, torch.float64, torch.device("cpu"))
        scale = 1.0
        if normalize2mom:
            m2 = _second_moment(self._act)
            if not m2 > 0 or not math.isfinite(m2):
                raise ValueError(f"act: E[act(z)²] = {m2} for z ~ N(0, 1); cannot normalise the second moment")
            scale = m2 ** -0.5
        self.normalize2mom = normalize2mom
        self.scale = scale  # a float, not a tensor
        G = so3_healpix_grid(self.rec, dtype=torch.float64)
        D_out = _flat_blocks(self.lmax_out, G)  # (N, W_out)
        D_in = D_out[:, :w_in] if self.lmax_in <= self.lmax_out else _flat_blocks(self.lmax_in, G)
        if self.transform == "lstsq":
            A = torch.linalg.pinv(D_out)  # (W_out, N)
        else:
            dims = torch.cat([torch.full(((2 * l + 1) ** 2,), float(2 * l + 1), dtype=torch.float64)
                              for l in range(self.lmax_out + 1)])
            A = (D_out * (dims / N)).T
        self._constant("synthesis", D_in.T.contiguous())  # (W_in, N): values = x @ synthesis
        self._constant("analysis", A.T.contiguous())  # (N, W_out): coeffs = values @ analysis

    @property
    def num_grid(self) -> int:
        return 72 * 8**self.rec

    @property
    def symmetry(self) -> Symmetry:
        return Symmetry("SO3", {"x": f"so3:{self.lmax_in}"}, f"so3:{self.lmax_out}",
                        note="approximate: pointwise on the HEALPix SO(3) grid (grid not rotation invariant)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_in = so3_fourier_width(self.lmax_in)
        x = check_tensor("x", x, ndim=3, floating=True)
        if x.shape[2] != w_in:
            raise ValueError(f"x: expected shape (B, C, {w_in}) (kind so3:{self.lmax_in}), got {tuple(x.shape)}"
                             f"{_width_hint(x.shape[2], so3_fourier_width)}")
        check_alloc("x", tuple(x.shape), x.shape[0] * x.shape[1], 2 * self.num_grid, x.dtype, x.device)
        if _checking(x):
            check_tensor("x", x, finite=True)
        values = self._act(x @ self.synthesis)
        if self.scale != 1.0:
            values = values * self.scale
        return values @ self.analysis

    def extra_repr(self) -> str:
        return (f"{self.lmax_in}, {self.lmax_out}, act={self.act_name!r}, rec={self.rec} ({self.num_grid} rotations), "
                f"transform={self.transform!r}, normalize2mom={self.normalize2mom}")
