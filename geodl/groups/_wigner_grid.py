"""Wigner-D of many rotations (a whole SO(3) grid), evaluated in chunks of rotations.

:func:`wigner_D_chunks` yields the flattened blocks ``D^0 .. D^lmax`` of consecutive chunks of a
batch of rotations, so that a consumer (a logit evaluation, an online log-sum-exp, a quadrature)
never holds the ``(N, Σ(2l+1)²)`` matrix of a large grid: at ``lmax = 6`` the recursion-5 HEALPix
grid (2,359,296 rotations) would take 4.3 GB in float32, a chunk of 8,192 rotations 15 MB (plus
the recursion's temporaries, about ``16 (2 lmax + 1)²`` values per rotation of the chunk).

Layout of one row (one rotation): the blocks of degree ``0, 1, .., lmax`` in e3nn's real basis
(:func:`geodl.groups.wigner_D`), each flattened row-major (``D^l[m, n]`` at offset
``off_l + (m + l)(2l + 1) + (n + l)``, ``off_l = Σ_{k<l} (2k+1)²``), concatenated: width
``(lmax + 1)(2 lmax + 1)(2 lmax + 3) / 3`` (1, 10, 35, 84, 165, 286, 455 for ``lmax = 0 .. 6``).
"""

from __future__ import annotations

from typing import Iterator

import torch

from geodl._checks import check_int, check_memory, check_positive_int, check_tensor
from geodl.groups._wigner import _blocks, _compute_dtype

__all__ = ["wigner_D_chunks", "so3_fourier_width"]


def so3_fourier_width(lmax: int) -> int:
    """``Σ_{l=0}^{lmax} (2l+1)²``: the number of SO(3) Fourier coefficients up to degree ``lmax``.

    Examples
    --------
    >>> [so3_fourier_width(l) for l in range(4)]
    [1, 10, 35, 84]
    """
    lmax = check_int("lmax", lmax, min=0)
    return (lmax + 1) * (2 * lmax + 1) * (2 * lmax + 3) // 3


def _flat_blocks(lmax: int, R: torch.Tensor) -> torch.Tensor:
    """``(..., W)``: the flattened blocks of ``R (..., 3, 3)`` (no checks; differentiable in ``R``)."""
    blocks = _blocks(lmax, R, _compute_dtype(lmax, R.dtype), keep_all=True)
    return torch.cat([b.flatten(-2) for b in blocks], dim=-1)


def _chunk_bytes(lmax: int, rows: int, dtype: torch.dtype) -> int:
    """Peak bytes of one chunk: the blocks kept, their flattened copy and the last step's temporaries."""
    c = _compute_dtype(lmax, dtype).itemsize
    n = 2 * lmax + 1
    width = so3_fourier_width(lmax)
    return rows * (width * (c + dtype.itemsize) + 16 * n * n * c)


def wigner_D_chunks(lmax: int, R: torch.Tensor, chunk_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Flattened Wigner-D blocks of ``R`` in consecutive chunks of rotations.

    Parameters
    ----------
    lmax : int
        Largest degree, ``>= 0``.
    R : Tensor ``(..., 3, 3)``
        Rotations (e.g. :func:`so3_healpix_grid`); the leading dimensions are flattened to ``N``.
    chunk_size : int
        Rotations per chunk, ``>= 1`` (the last chunk may be shorter).

    Yields
    ------
    (start, D) : int and Tensor ``(rows, W)``
        ``D[i]`` holds the flattened blocks of rotation ``start + i`` (layout in the module
        docstring), ``W = Σ_{l<=lmax} (2l+1)²``; dtype and device of ``R``. An empty batch yields nothing.

    Raises
    ------
    ValueError
        ``lmax`` negative, ``chunk_size < 1``, ``R`` not ``(..., 3, 3)`` or (on the CPU) not finite,
        or one chunk would not fit in the memory available on ``R``'s device (naming ``chunk_size``,
        or ``lmax`` when even one rotation would not).
        The arguments are checked when the function is called, before the first chunk.

    Examples
    --------
    >>> from geodl.groups import so3_healpix_grid, wigner_D_blocks
    >>> G = so3_healpix_grid(0, dtype=torch.float64)
    >>> parts = [D for _, D in wigner_D_chunks(2, G, chunk_size=50)]
    >>> [tuple(D.shape) for D in parts]
    [(50, 35), (22, 35)]
    >>> ref = torch.cat([b.flatten(-2) for b in wigner_D_blocks(2, G)], -1)
    >>> bool(torch.allclose(torch.cat(parts), ref))
    True
    """
    lmax = check_int("lmax", lmax, min=0)
    R = check_tensor("R", R, shape=(..., 3, 3), floating=True)
    R = check_tensor("R", R, finite=R.device.type == "cpu" and not torch.compiler.is_compiling())
    chunk_size = check_positive_int("chunk_size", chunk_size)
    flat = R.reshape(-1, 3, 3)
    check_memory("lmax", lmax, _chunk_bytes(lmax, 1, R.dtype), R.device,
                 what=f"the Wigner-D blocks up to degree {lmax} of one rotation")
    rows = min(chunk_size, flat.shape[0])
    check_memory("chunk_size", chunk_size, _chunk_bytes(lmax, rows, R.dtype), R.device,
                 what=f"a chunk of {rows} rotations of the Wigner-D blocks up to degree {lmax}")
    return _iter_chunks(lmax, flat, chunk_size)


def _iter_chunks(lmax: int, flat: torch.Tensor, chunk_size: int):
    for start in range(0, flat.shape[0], chunk_size):
        yield start, _flat_blocks(lmax, flat[start:start + chunk_size])
