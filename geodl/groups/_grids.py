"""HEALPix grids on S² and SO(3) and nearest-grid lookup.

HEALPix pixel centres come from healpy in the **nested** ordering (so pixel ``p`` at level ``k`` is
the parent of pixels ``4p .. 4p+3`` at level ``k+1``), with ``N_side = 2**rec``.

The SO(3) grid follows Yershova et al. (2010) as used by IPDF / Image2Sphere: every HEALPix centre
``(θ, φ)`` is combined with ``6 · 2**rec`` equally spaced in-plane angles ``ψ = 2π j / (6 · 2**rec)``
into ``R = Rz(φ) Ry(θ) Rz(ψ)`` (intrinsic ZYZ Euler angles ``(φ, θ, ψ)``), so ``R @ e_z`` is the pixel
centre. Rotations are ordered pixel-major, ``ψ``-minor: index ``= pixel · (6 · 2**rec) + j``.

Sizes are checked against the memory available before anything is allocated (``ValueError``
naming ``rec`` or ``nside`` with the memory the grid would need: about 640 bytes per rotation of
the SO(3) grid while it is built in float64; the float64 result alone is 87 GB at ``rec = 8``). Only SO(3) grids up to
``rec = 5`` (170 MB) are cached between calls; larger ones are rebuilt per call.
"""

from __future__ import annotations

import functools
import math

import torch

from geodl._checks import check_alloc, check_int, check_memory, check_positive_int, check_tensor
from geodl.groups._rotations import _dtype as _rotation_dtype
from geodl.groups._rotations import euler_to_matrix

__all__ = ["s2_healpix_grid", "s2_healpix_lonlat", "so3_healpix_grid", "nearest_rotation"]


def _float_dtype(dtype) -> torch.dtype:
    """``dtype`` (None: torch's default) if it is a floating-point ``torch.dtype``, else ``TypeError``.

    Shared by the grid and sphere generators; a string such as ``"float32"`` gets a hint to pass
    ``torch.float32``.
    """
    return _rotation_dtype(dtype)


def _check_rec(rec) -> int:
    return check_int("rec", rec, min=0, max=8)  # N_side = 2**rec


# Peak bytes per element while a grid is built on the CPU (measured: ~570 per SO(3) rotation at
# rec = 5, in float64 through euler_to_matrix; ~80 per HEALPix pixel through healpy and numpy).
_SO3_BUILD_BYTES = 640
_S2_BUILD_BYTES = 96
_SO3_CACHED_REC = 5  # larger SO(3) grids (1.4 GB in float64 at rec = 6) are not kept between calls


def _check_grid_memory(name: str, value, rows: int, width: int, build_bytes: int, dtype, device) -> None:
    """The CPU build (``build_bytes`` per row) and the ``(rows, width)`` result on ``device`` must fit."""
    check_memory(name, value, rows * build_bytes, "cpu", what=f"a grid of {rows} elements (built in float64)")
    check_alloc(name, value, rows, width, dtype, torch.device("cpu") if device is None else torch.device(device))


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
    ``nside`` is any positive int up to 2**13 (RING order allows non-powers of two); ``ValueError``
    when the grid would not fit in the memory available (~96 bytes per pixel while it is built).

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
    _check_grid_memory("nside", nside, 12 * nside * nside, 2, _S2_BUILD_BYTES, torch.float64, None)
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
    rec = _check_rec(rec)
    _check_grid_memory("rec", rec, 12 * 4**rec, 3, _S2_BUILD_BYTES, dtype, device)
    theta, phi = _pixel_angles(rec)
    st = torch.sin(theta)
    x = torch.stack([st * torch.cos(phi), st * torch.sin(phi), torch.cos(theta)], dim=-1)
    return x.to(dtype=dtype, device=device)


def _so3_grid64(rec: int) -> torch.Tensor:
    """The float64 SO(3) grid: cached up to ``rec = _SO3_CACHED_REC``, built per call above."""
    return _so3_grid64_cached(rec) if rec <= _SO3_CACHED_REC else _build_so3_grid64(rec)


@functools.lru_cache(maxsize=4)
def _so3_grid64_cached(rec: int) -> torch.Tensor:
    return _build_so3_grid64(rec)


def _build_so3_grid64(rec: int) -> torch.Tensor:
    theta, phi = _pixel_angles(rec)
    n_psi = 6 * 2**rec
    psi = torch.arange(n_psi, dtype=torch.float64) * (2 * math.pi / n_psi)
    P, S = theta.shape[0], n_psi
    angles = torch.stack([phi[:, None].expand(P, S), theta[:, None].expand(P, S), psi[None, :].expand(P, S)], dim=-1)
    return euler_to_matrix(angles.reshape(P * S, 3), "ZYZ")


def so3_healpix_grid(rec: int, dtype=None, device=None) -> torch.Tensor:
    """The HEALPix SO(3) grid of ``72 · 8**rec`` rotations (see the module docstring for the layout).

    Sizes: 72, 576, 4,608, 36,864, 294,912, 2,359,296 for ``rec = 0 .. 5``. Parameters ``rec``
    (resolution level), ``dtype`` and ``device`` as for :func:`s2_healpix_grid`. A level whose
    grid would not fit in the memory available raises ``ValueError`` before anything is allocated
    (the build takes ~640 bytes per rotation: 12 GB at ``rec = 6``, 97 GB at ``rec = 7``).

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
    rec = _check_rec(rec)
    _check_grid_memory("rec", rec, 72 * 8**rec, 9, _SO3_BUILD_BYTES, dtype, device)
    return _so3_grid64(rec).to(dtype=dtype, device=device)


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
        Queries per chunk; default keeps each score block at about 2**22 entries. A block that
        would not fit in the memory available raises ``ValueError``. An empty batch of queries
        gives an empty result.

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
    # one score block (chunk x G) at a time, in R's dtype
    check_alloc("chunk_size", chunk_size, min(chunk_size, q.shape[0]), grid.shape[0], R.dtype, R.device)
    g = grid.to(dtype=R.dtype, device=R.device).reshape(-1, 9).T  # (9, G)
    out = torch.empty(q.shape[0], dtype=torch.int64, device=R.device)
    for start in range(0, q.shape[0], chunk_size):
        out[start:start + chunk_size] = (q[start:start + chunk_size] @ g).argmax(dim=-1)
    return out.reshape(R.shape[:-2])
