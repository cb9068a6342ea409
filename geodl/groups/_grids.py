"""HEALPix grids on S² and SO(3) and nearest-grid lookup.

HEALPix pixel centres come from healpy in the **nested** ordering (so pixel ``p`` at level ``k`` is
the parent of pixels ``4p .. 4p+3`` at level ``k+1``), with ``N_side = 2**rec``.

The SO(3) grid follows Yershova et al. (2010) as used by IPDF / Image2Sphere: every HEALPix centre
``(θ, φ)`` is combined with ``6 · 2**rec`` equally spaced in-plane angles ``ψ = 2π j / (6 · 2**rec)``
into ``R = Rz(φ) Ry(θ) Rz(ψ)`` (intrinsic ZYZ Euler angles ``(φ, θ, ψ)``), so ``R @ e_z`` is the pixel
centre. Rotations are ordered pixel-major, ``ψ``-minor: index ``= pixel · (6 · 2**rec) + j``.
"""

from __future__ import annotations

import functools
import math

import torch

from geodl._checks import check_int, check_positive_int, check_tensor
from geodl.groups._rotations import _dtype as _rotation_dtype
from geodl.groups._rotations import euler_to_matrix

__all__ = ["s2_healpix_grid", "s2_healpix_lonlat", "so3_healpix_grid", "nearest_rotation"]


def _float_dtype(dtype) -> torch.dtype:
    """``dtype`` (None: torch's default) if it is a floating-point ``torch.dtype``, else ``TypeError``.

    Shared by the grid and sphere generators; a string such as ``"float32"`` gets a hint to pass
    ``torch.float32``.
    """
    if isinstance(dtype, str):
        raise TypeError(f"dtype: expected a floating-point torch.dtype, got the string {dtype!r}; "
                        f"pass torch.{dtype.removeprefix('torch.')} instead")
    return _rotation_dtype(dtype)


def _check_rec(rec) -> int:
    return check_int("rec", rec, min=0, max=8)  # N_side = 2**rec


def _healpix_centres(nside: int, *, nest: bool, lonlat: bool = False):
    """healpy's pixel-centre angles (float64 numpy): ``(θ, φ)`` radians, or ``(lon, lat)`` degrees.

    The one place geodl asks healpy for pixel centres (grids here, sphere maps in geodl.data).
    """
    import healpy
    import numpy as np

    return healpy.pix2ang(nside, np.arange(12 * nside * nside), nest=nest, lonlat=lonlat)


@functools.lru_cache(maxsize=8)
def _pixel_angles(rec: int) -> tuple[torch.Tensor, torch.Tensor]:
    theta, phi = _healpix_centres(2**rec, nest=True)
    return torch.from_numpy(theta), torch.from_numpy(phi)


def s2_healpix_lonlat(nside: int, *, nest: bool = False) -> torch.Tensor:
    """HEALPix pixel centres as ``(12 nside², 2)`` float64 lon/lat degrees, lon in [-180, 180).

    RING order by default (the order of healpy maps); ``nest=True`` gives the nested order of
    :func:`s2_healpix_grid`. Angles come straight from healpy, without a round trip through xyz.
    ``nside`` is any positive int up to 2**13 (RING order allows non-powers of two).

    Examples
    --------
    >>> s2_healpix_lonlat(1).shape
    torch.Size([12, 2])
    >>> bool((s2_healpix_lonlat(2)[:, 1].abs() < 90).all())
    True
    """
    import numpy as np

    check_int("nside", nside, min=1, max=2**13)
    if nest and nside & (nside - 1):
        raise ValueError(f"nside: the nested order needs a power of two, got {nside}")
    lon, lat = _healpix_centres(nside, nest=nest, lonlat=True)
    lon = ((lon + 180.0) % 360.0) - 180.0
    return torch.from_numpy(np.stack([lon, lat], axis=1))


def s2_healpix_grid(rec: int, dtype=None, device=None) -> torch.Tensor:
    """HEALPix pixel centres (nested ordering, ``N_side = 2**rec``) as unit vectors.

    Parameters
    ----------
    rec : int
        Resolution level, ``>= 0``.
    dtype, device : optional
        Default: torch's default dtype, CPU. ``dtype`` must be a floating-point ``torch.dtype``
        (``TypeError`` otherwise, e.g. for ``torch.int64`` or the string ``"float32"``).

    Returns
    -------
    Tensor of shape ``(12 * 4**rec, 3)``.

    Examples
    --------
    >>> x = s2_healpix_grid(1, dtype=torch.float64)
    >>> x.shape, bool(torch.allclose(x.norm(dim=-1), torch.ones(48, dtype=torch.float64)))
    (torch.Size([48, 3]), True)
    """
    dtype = _float_dtype(dtype)
    theta, phi = _pixel_angles(_check_rec(rec))
    st = torch.sin(theta)
    x = torch.stack([st * torch.cos(phi), st * torch.sin(phi), torch.cos(theta)], dim=-1)
    return x.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=4)
def _so3_grid64(rec: int) -> torch.Tensor:
    theta, phi = _pixel_angles(rec)
    n_psi = 6 * 2**rec
    psi = torch.arange(n_psi, dtype=torch.float64) * (2 * math.pi / n_psi)
    P, S = theta.shape[0], n_psi
    angles = torch.stack([phi[:, None].expand(P, S), theta[:, None].expand(P, S), psi[None, :].expand(P, S)], dim=-1)
    return euler_to_matrix(angles.reshape(P * S, 3), "ZYZ")


def so3_healpix_grid(rec: int, dtype=None, device=None) -> torch.Tensor:
    """The HEALPix SO(3) grid of ``72 · 8**rec`` rotations (see the module docstring for the layout).

    Sizes: 72, 576, 4,608, 36,864, 294,912, 2,359,296 for ``rec = 0 .. 5``. Parameters ``rec``
    (resolution level), ``dtype`` and ``device`` as for :func:`s2_healpix_grid`.

    Returns
    -------
    Tensor of shape ``(72 * 8**rec, 3, 3)``.

    Examples
    --------
    >>> G = so3_healpix_grid(1, dtype=torch.float64)
    >>> G.shape
    torch.Size([576, 3, 3])
    >>> bool(torch.allclose(G[:, :, 2], s2_healpix_grid(1, dtype=torch.float64).repeat_interleave(12, 0)))
    True
    """
    dtype = _float_dtype(dtype)
    return _so3_grid64(_check_rec(rec)).to(dtype=dtype, device=device)


def nearest_rotation(R: torch.Tensor, grid: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Index of the grid rotation nearest (geodesic distance) to each query rotation.

    The geodesic angle θ between ``R`` and ``G`` satisfies ``tr(Gᵀ R) = 1 + 2 cos θ``, so the nearest grid
    element maximises ``<G, R>_F``: one matrix product per chunk of queries. Memory is
    ``O(chunk_size · len(grid))``; ties go to the lowest index.

    Parameters
    ----------
    R : Tensor ``(..., 3, 3)``
        Query rotations.
    grid : Tensor ``(G, 3, 3)``
        Grid rotations (e.g. :func:`so3_healpix_grid`), cast to ``R``'s dtype and device.
    chunk_size : int, optional
        Queries per chunk; default keeps each score block at about 2**22 entries.

    Returns
    -------
    LongTensor of shape ``(...)``.

    Examples
    --------
    >>> G = so3_healpix_grid(0, dtype=torch.float64)
    >>> idx = nearest_rotation(G[[5, 17]], G)
    >>> idx.tolist()
    [5, 17]
    """
    R = check_tensor("R", R, shape=(..., 3, 3), floating=True)
    R = check_tensor("R", R, finite=R.device.type == "cpu")
    grid = check_tensor("grid", grid, shape=(None, 3, 3), floating=True, min_rows=1)
    if chunk_size is None:
        chunk_size = max(1, (1 << 22) // grid.shape[0])
    check_positive_int("chunk_size", chunk_size)
    q = R.reshape(-1, 9)
    g = grid.to(dtype=R.dtype, device=R.device).reshape(-1, 9).T  # (9, G)
    out = torch.empty(q.shape[0], dtype=torch.int64, device=R.device)
    for start in range(0, q.shape[0], chunk_size):
        out[start:start + chunk_size] = (q[start:start + chunk_size] @ g).argmax(dim=-1)
    return out.reshape(R.shape[:-2])
