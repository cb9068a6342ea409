"""Lifts from an image feature map to the sphere and to SO(3).

Camera convention (shared by both lifts and by the ``image2d`` kind): pixel ``(i, j)`` of an
``(H, W)`` map sits at ``(u, v) = (j - (W-1)/2, (H-1)/2 - i)`` (u to the right, v up); the camera
frame is ``x = u``, ``y = v`` and ``z = x × y`` pointing from the image towards the viewer (the
camera looks along ``-z``, as in OpenGL). An in-plane counter-clockwise turn of the image by ``α``
(the 2x2 matrix of ``"C4"``/``"D4"``) is the 3-D rotation ``Rz(α)`` about the camera axis; the
element ``Rz(kπ/2)`` of group ``"azimuth:4"`` acts on an ``image2d`` input by its in-plane block and
on the ``sh``/``so3`` outputs by Wigner-D, which is how ``check_module`` pairs them.

- :class:`OrthographicLift` (Image2Sphere, Klee et al., ICLR'23): the map is sampled (bilinear
  ``grid_sample``, ``align_corners=False``) at the orthographic projections ``(x, y)`` of the HEALPix
  points of the hemisphere facing the camera (``z >= 0``), mixed by a learnable 1x1 channel map, and
  turned into real spherical-harmonic coefficients by a precomputed matrix (quadrature with the
  HEALPix weights ``4π/N``, as Image2Sphere, or the least-squares fit on the hemisphere points).
- :class:`InducedLift` (Howell et al., NeurIPS'23, trivial image representation ρ): circular-harmonic
  filters ``ψ(r) e^{i m φ}`` over the whole (square) map, ``|m| <= l``, whose responses are placed in the
  degree-``l`` blocks so that the output transforms like ``D^l(Rz(α))``: the direct image -> SO(3)
  lift (``output="so3"``), or the image -> S2 lift (``output="s2"``, one column per channel).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geodl._checks import check_alloc, check_choice, check_int, check_number, check_positive_int, check_tensor
from geodl.groups._symmetry import Symmetry
from geodl.nn.pose._common import _checking

__all__ = ["OrthographicLift", "InducedLift"]

# Rx(π/2) maps the e3nn polar axis y onto the camera axis z: D^l(Rz(α)) = D^l(Q) D^l(Ry(α)) D^l(Q)ᵀ
_Q = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]


def _check_map(x, in_channels: int, size: int | None = None) -> torch.Tensor:
    x = check_tensor("x", x, ndim=4, floating=True)
    if x.shape[1] != in_channels:
        raise ValueError(f"x: expected {in_channels} channels (in_channels), got shape {tuple(x.shape)}")
    if size is not None and (x.shape[2] != size or x.shape[3] != size):
        raise ValueError(f"x: expected a square map of size {size} x {size} (the lift's size; the induced "
                         f"lift's filters are built for that grid), got shape {tuple(x.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x: empty feature map, shape {tuple(x.shape)}")
    return x


def _check_finite(x):
    if _checking(x) and x.numel():
        check_tensor("x", x, finite=True)


def _hemisphere(rec: int) -> torch.Tensor:
    """HEALPix points with ``z >= 0`` (the equator ring, ``z = 0`` up to rounding, included), float64."""
    from geodl.groups import s2_healpix_grid

    pts = s2_healpix_grid(rec, dtype=torch.float64)
    return pts[pts[:, 2] > -1e-9]


class OrthographicLift(nn.Module):
    """The Image2Sphere orthographic lift: feature map ``(B, C, H, W)`` -> S2 coefficients ``(B, out, (lmax+1)²)``.

    The map is read at the ``P`` HEALPix points of level ``rec`` on the hemisphere facing the camera
    (``z >= 0``, module docstring): point ``(x, y, z)`` is sampled at the image position
    ``(u, v) = (x, y) · (W/2, H/2)`` (the unit disk inscribed in the map; ``grid_sample`` bilinear,
    ``align_corners=False``, normalised grid ``(x, -y)``, ``padding_mode="border"`` so that the
    equator ring, on the map's edge, reads the edge pixels), mixed by a learnable 1x1 channel map
    (``out x C`` weights and a bias), and transformed by a precomputed ``((lmax+1)², P)`` matrix (a
    buffer) into coefficients of :func:`geodl.ops.spherical_harmonics` (``convention="real"``,
    orthonormal), kind ``sh:<lmax>``. ``transform="quadrature"`` (default, Image2Sphere's): ``c_lm =
    (4π/N) Σ_p f(p) Y_lm(p)``, ``N = 12·4^rec`` (the back hemisphere counts as zero);
    ``"lstsq"``: the minimum-norm least-squares fit of degree <= lmax harmonics to the hemisphere
    values (``pinv``, singular values below ``1e-10`` of the largest dropped; the hemisphere alone
    determines high degrees badly).

    Symmetry: the lift is *not* equivariant to 3-D rotations (only the hemisphere facing the
    camera is seen). It commutes with in-plane quarter turns of a square map: the HEALPix points
    are invariant under ``Rz(π/2)`` and bilinear sampling commutes with the square's symmetries,
    so ``lift(rot90(x, k)) = D(Rz(kπ/2)) lift(x)`` to rounding (measured ``~1e-15`` in float64 and
    ``~1e-6`` in float32; declared group ``"azimuth:4"``, input kind ``image2d``).

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
        Largest degree, ``>= 0``.
    rec : int, default 2
        HEALPix level (``12·4^rec`` points, about half of them used: 104 at level 2).
    transform : {"quadrature", "lstsq"}
    bias : bool, default True

    Raises
    ------
    ValueError
        Naming the argument: ``lmax < 0``, ``rec`` outside ``[0, 8]``, non-positive channels; in
        :meth:`forward`, ``x`` not ``(B, in_channels, H, W)`` or not finite (checked on the CPU), or an
        output too large for the memory.

    Examples
    --------
    >>> import torch
    >>> lift = OrthographicLift(3, 4, lmax=2, rec=1)
    >>> lift(torch.randn(2, 3, 8, 8)).shape
    torch.Size([2, 4, 9])
    """

    def __init__(self, in_channels: int, out_channels: int, lmax: int, *, rec: int = 2,
                 transform: str = "quadrature", bias: bool = True):
        super().__init__()
        from geodl.ops import spherical_harmonics

        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.lmax = check_int("lmax", lmax, min=0, max=64)
        self.rec = check_int("rec", rec, min=0, max=8)
        self.transform = check_choice("transform", transform, ("quadrature", "lstsq"))
        cpu, dt = torch.device("cpu"), torch.get_default_dtype()
        check_alloc("in_channels", self.in_channels, 1, self.in_channels, dt, cpu)
        check_alloc("out_channels", self.out_channels, self.out_channels, self.in_channels + 1, dt, cpu)
        pts = _hemisphere(self.rec)
        Y = spherical_harmonics(self.lmax, pts)  # (P, K), real, orthonormal
        if self.transform == "quadrature":
            T = Y.T * (4 * math.pi / (12 * 4**self.rec))
        else:
            T = torch.linalg.pinv(Y, rtol=1e-10)  # (K, P)
        # buffers stay float64 (cast to the input's dtype in forward), so that .double() loses nothing
        self.register_buffer("grid", torch.stack([pts[:, 0], -pts[:, 1]], -1)[None, None])  # (1, 1, P, 2)
        self.register_buffer("sh_transform", T)
        self.weight = nn.Parameter(torch.randn(self.out_channels, self.in_channels) / math.sqrt(self.in_channels))
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None

    @property
    def num_points(self) -> int:
        return self.grid.shape[2]

    @property
    def symmetry(self) -> Symmetry:
        return Symmetry("azimuth:4", {"x": "image2d"}, f"sh:{self.lmax}",
                        note="in-plane quarter turns of a square map (Rz(kπ/2) about the camera axis) only; "
                             "not equivariant to other rotations")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_map(x, self.in_channels)
        B = x.shape[0]
        check_alloc("x", tuple(x.shape), B * max(self.in_channels, self.out_channels), self.num_points,
                    x.dtype, x.device)
        _check_finite(x)
        grid = self.grid.to(x.dtype).expand(B, -1, -1, -1)
        f = nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]
        f = torch.einsum("oc,bcp->bop", self.weight.to(x.dtype), f)  # (B, out, P)
        if self.bias is not None:
            f = f + self.bias.to(x.dtype)[:, None]
        return f @ self.sh_transform.to(x.dtype).T

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, rec={self.rec} ({self.num_points} "
                f"points), transform={self.transform!r}")


def _circular_basis(size: int, num_radial: int, lmax: int) -> torch.Tensor:
    """``(size², K, lmax+1, 2)`` float64: ``ψ_k(r_p) (cos mφ_p, sin mφ_p)`` at the pixel centres.

    ``ψ_k`` are Gaussian rings of width the ring spacing, centred at ``K`` radii from 0 to the
    corner radius ``(size-1)/√2``. At the centre pixel (odd ``size``) only ``m = 0`` is non-zero.
    The values depend on ``r`` and on ``mφ`` only, and a quarter turn maps the grid onto itself, so
    the basis is equivariant to quarter turns to rounding.
    """
    c = (size - 1) / 2
    idx = torch.arange(size, dtype=torch.float64)
    v, u = c - idx[:, None], idx[None, :] - c
    u, v = u.expand(size, size).reshape(-1), v.expand(size, size).reshape(-1)
    r = torch.sqrt(u * u + v * v)
    phi = torch.atan2(v, u)
    rmax = max(c * math.sqrt(2), 1e-12)
    centres = torch.linspace(0, rmax, num_radial, dtype=torch.float64) if num_radial > 1 else torch.zeros(1, dtype=torch.float64)
    width = rmax / max(num_radial - 1, 1)
    psi = torch.exp(-0.5 * ((r[:, None] - centres[None]) / width) ** 2)  # (P, K)
    m = torch.arange(lmax + 1, dtype=torch.float64)
    ang = m[None] * phi[:, None]  # (P, M)
    trig = torch.stack([torch.cos(ang), torch.sin(ang)], -1)  # (P, M, 2)
    trig[r < 1e-9, 1:] = 0.0  # the centre has no direction: only m = 0
    trig[r < 1e-9, 0, 1] = 0.0
    return psi[:, :, None, None] * trig[:, None]


class InducedLift(nn.Module):
    """The induced lift (trivial image representation): square map ``(B, C, S, S)`` -> SO(3) or S2 coefficients.

    For every input channel ``c``, ring ``k`` (``num_radial`` Gaussian rings ``ψ_k`` over the whole
    map, out to its corners) and frequency ``m = 0..lmax``, the map is integrated against the circular
    harmonic ``ψ_k(r) (cos mφ, sin mφ)`` (pixel centres, camera convention of the module docstring;
    divided by the number of pixels). A quarter (any) in-plane turn of the image by ``α`` rotates the
    pair of frequency ``m`` by ``mα``. For each output channel ``o``, degree ``l``, column ``n`` and
    ``0 <= m <= l`` a learnable complex radial profile ``ρ = Σ_{c,k} (a + i b)_{o l n m c k}`` multiplies
    the pair (``(a + ib)(z_cos + i z_sin)``, which commutes with rotations), giving a vector
    ``w^l_n`` of ``2l+1`` entries: the cosine part at position ``l + m``, the sine part at ``l - m``
    (real SH order ``m = -l..l``). In that order ``w`` transforms under the in-plane turn as
    ``D^l(Ry(α))`` in e3nn's basis, i.e. as ``D_real^l(Rz(α))`` of the real basis
    (:func:`geodl.ops.spherical_harmonics`): the **S2** output (``output="s2"``, kind ``sh:<lmax>``, one
    column ``n``). The **SO(3)** output (``output="so3"``, default, kind ``so3:<lmax>``, the direct image
    -> SO(3) lift) is ``F^l = D^l(Rx(π/2)) [w^l_{-l} .. w^l_l]`` (columns ``n`` = the ``2l+1`` copies,
    the multiplicity of the trivial ρ): ``D(Rx(π/2))`` carries the e3nn polar axis y onto the camera axis
    z, so ``F^l -> D^l(Rz(α)) F^l``.

    Equivariance: on the square grid the pixel centres map onto themselves under quarter turns, so
    ``lift(rot90(x, k)) = D(Rz(kπ/2)) lift(x)`` blockwise to rounding (declared group ``"azimuth:4"``,
    input kind ``image2d``: ``torch.rot90(x, k, (-2, -1))`` is the element ``Rz(kπ/2)``). Other
    angles hold only as far as the pixel grid approximates the disk.

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
        Largest degree, ``>= 0``.
    size : int
        Side of the (square) feature map the filters are built for.
    num_radial : int, optional
        Rings ``ψ_k`` (default ``max(2, ceil(size / 2))``).
    output : {"so3", "s2"}

    Raises
    ------
    ValueError
        Naming the argument: ``lmax < 0``, ``size < 1``, non-positive channels or ``num_radial``; in
        :meth:`forward`, ``x`` not ``(B, in_channels, size, size)`` or not finite (CPU), or an output too
        large for the memory.

    Examples
    --------
    >>> import torch
    >>> lift = InducedLift(3, 2, lmax=2, size=7)
    >>> x = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    >>> lift = lift.double()
    >>> lift(x).shape
    torch.Size([1, 2, 35])
    """

    def __init__(self, in_channels: int, out_channels: int, lmax: int, size: int, *,
                 num_radial: int | None = None, output: str = "so3"):
        super().__init__()
        from geodl.groups import wigner_D_blocks

        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.lmax = check_int("lmax", lmax, min=0, max=64)
        self.size = check_int("size", size, min=1, max=4096)
        self.num_radial = (max(2, math.ceil(self.size / 2)) if num_radial is None
                           else check_int("num_radial", num_radial, min=1, max=4096))
        self.output = check_choice("output", output, ("so3", "s2"))
        L, K, C = self.lmax, self.num_radial, self.in_channels
        check_alloc("in_channels", C, 1, C, torch.get_default_dtype(), torch.device("cpu"))
        check_alloc("size", self.size, self.size**2, K * (L + 1) * 2, torch.float64, torch.device("cpu"))
        ncol = 1 if self.output == "s2" else None
        self._cols = [1 if ncol else 2 * l + 1 for l in range(L + 1)]
        nprof = sum(c * (l + 1) for l, c in enumerate(self._cols))  # (l, n, m) triples
        check_alloc("out_channels", self.out_channels, self.out_channels * nprof, 2 * C * K,
                    torch.get_default_dtype(), torch.device("cpu"))
        # buffers stay float64 (cast to the input's dtype in forward), so that .double() loses nothing
        basis = _circular_basis(self.size, K, L) / self.size**2
        self.register_buffer("basis", basis.reshape(self.size**2, -1))  # (S², K (L+1) 2)
        # one (out, n, m<=l, C, K) complex profile per degree: (re, im) in the last dim
        scale = 1.0 / math.sqrt(C * K)
        self.profiles = nn.ParameterList([nn.Parameter(torch.randn(self.out_channels, self._cols[l], l + 1, C, K, 2)
                                                       * scale) for l in range(L + 1)])
        if self.output == "so3":
            DQ = wigner_D_blocks(L, torch.tensor(_Q, dtype=torch.float64))
            for l in range(L + 1):
                self.register_buffer(f"DQ{l}", DQ[l])
        # positions of the cosine (l + m) and sine (l - m, m >= 1) parts in the m = -l..l order
        self._perm = []
        for l in range(L + 1):
            order = torch.empty(2 * l + 1, dtype=torch.long)  # entry j <- stacked index
            order[l:] = torch.arange(l + 1)  # cos parts m = 0..l
            order[:l] = l + 1 + torch.arange(l - 1, -1, -1)  # sin parts m = l..1 at positions 0..l-1
            self._perm.append(order)

    @property
    def width(self) -> int:
        return sum((2 * l + 1) * c for l, c in enumerate(self._cols))

    @property
    def symmetry(self) -> Symmetry:
        kind = f"so3:{self.lmax}" if self.output == "so3" else f"sh:{self.lmax}"
        return Symmetry("azimuth:4", {"x": "image2d"}, kind,
                        note="in-plane quarter turns of the square map = Rz(kπ/2) about the camera axis; exact "
                             "on the pixel grid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_map(x, self.in_channels, self.size)
        B, C = x.shape[:2]
        L, K = self.lmax, self.num_radial
        check_alloc("x", tuple(x.shape), B * self.out_channels, max(self.width, C * K * (L + 1) * 2), x.dtype, x.device)
        _check_finite(x)
        z = (x.reshape(B, C, self.size**2) @ self.basis.to(x.dtype)).reshape(B, C, K, L + 1, 2)  # (B, C, K, M, cos/sin)
        out = []
        for l in range(L + 1):
            P = self.profiles[l].to(x.dtype)  # (O, N, l+1, C, K, 2)
            zc, zs = z[:, :, :, : l + 1, 0], z[:, :, :, : l + 1, 1]  # (B, C, K, l+1)
            a, b = P[..., 0], P[..., 1]
            cos = torch.einsum("onmck,bckm->bonm", a, zc) - torch.einsum("onmck,bckm->bonm", b, zs)
            sin = torch.einsum("onmck,bckm->bonm", a, zs) + torch.einsum("onmck,bckm->bonm", b, zc)
            stacked = torch.cat([cos, sin[..., 1:]], dim=-1)  # (B, O, N, 2l+1): cos m=0..l, sin m=1..l
            w = stacked[..., self._perm[l].to(x.device)]  # (B, O, N, 2l+1) in m = -l..l order
            if self.output == "s2":
                out.append(w[:, :, 0])
            else:
                F = getattr(self, f"DQ{l}").to(x.dtype) @ w.transpose(-1, -2)  # (B, O, 2l+1, N): columns w_n
                out.append(F.flatten(-2))
        return torch.cat(out, dim=-1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, size={self.size}, "
                f"num_radial={self.num_radial}, output={self.output!r}")
