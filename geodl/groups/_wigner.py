"""Real Wigner-D matrices in e3nn's real spherical-harmonic basis, to float64 round-off up to l ~ 50.

Written here rather than taken from e3nn: ``e3nn.o3.wigner_D`` goes through Euler angles and matrix
exponentials of generators built in torch's *default* dtype, so its float64 results are only as
accurate as float32 (~1e-6) unless the caller flips the global default (measured: see tests/groups/test_wigner.py).

Method: the Ivanic–Ruedenberg recursion (J. Phys. Chem. 1996, 100, 6342; erratum 1998) builds the
degree-``l`` block from the degree-``l-1`` block and the ``l = 1`` block with O(1) coefficients. Measured
in float64 (homomorphism and orthogonality error, 100 random pairs): ~1e-15 at l = 10, 3e-14 at l = 30,
2e-12 at l = 50 — round-off that grows with the degree (see "Accuracy at high degree" below). The recursion is written for a real basis ordered
``m = -l..l`` whose ``l = 1`` block is the rotation matrix in the coordinate order ``(m=-1, m=0, m=1)``.
e3nn's ``l = 1`` harmonics are ``(x, y, z)`` (its polar axis is ``y``); feeding ``R`` itself as the
``l = 1`` block yields exactly e3nn's real basis at every degree (no extra signs or permutations:
checked against e3nn to 1e-14 and through ``Y(R x) = D(R) Y(x)`` in ``tests/groups/test_wigner.py``).

Each degree is one batched gather-and-sum over all ``(m, m')`` at once: no Python loop over batch
elements, any leading shape, any device and dtype.

Accuracy at high degree: the recursion amplifies round-off by ~10x every 10 degrees beyond l ~ 25.
Measured orthogonality error ``max |D Dᵀ - I|`` (200 random rotations):

=========  ========  ========  ========  ========  ========  ========
l          10        28        40        60        80        100
float32    9e-7      9e-6      1e-4      6e-3      1         7e1
float64    7e-15     2e-14     1e-13     1e-11     7e-10     7e-8
=========  ========  ========  ========  ========  ========  ========

So in a dtype less precise than float64 (float32, float16, bfloat16), a request whose largest
degree exceeds ``28`` (:data:`_NATIVE_LMAX`, where the float32 error passes 1e-5, ~100 ulp) runs
the whole recursion in float64 and rounds the blocks to the dtype (upcast; gradients flow through
the cast); up to degree 28 the recursion runs in the dtype itself. Above degree ``100`` even
float64 loses accuracy (error above 1e-7, 10x more every 10 degrees): a ``RuntimeWarning`` says so.

Memory: the request is checked before anything is allocated (``ValueError`` naming ``l`` or
``lmax`` with the memory it would need). The recursion tables (``40 (2l+1)²`` bytes for degree
``l``) are kept between calls in a least-recently-used cache bounded by :data:`_TABLE_CACHE_BYTES`
(64 MiB, every table up to l ~ 108); a table larger than a quarter of that is built per call and
not kept.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict

import torch

from geodl._checks import check_int, check_memory, check_tensor

__all__ = ["wigner_D", "wigner_D_blocks"]


# Dtypes less precise than float64 run the recursion in float64 when the largest degree exceeds this.
_NATIVE_LMAX = 28
# Above this degree even float64 loses accuracy (orthogonality error > 1e-7): RuntimeWarning.
_ACCURATE_LMAX = 100
# Bound on the bytes of recursion tables kept between calls (least recently used evicted first).
_TABLE_CACHE_BYTES = 64 << 20
_tables: "OrderedDict[int, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()
_tables_bytes = 0
_tables_lock = threading.Lock()


def _table_nbytes(l: int) -> int:
    n = 2 * l + 1
    return 5 * n * 8 + 5 * n * n * 8


def _table_cache_bytes() -> int:
    """Bytes held by the recursion-table cache now."""
    return _tables_bytes


def _recursion_tables(l: int):
    """The tables of degree ``l`` (see :func:`_build_tables`), from the bounded cache when there."""
    global _tables_bytes
    with _tables_lock:
        hit = _tables.get(l)
        if hit is not None:
            _tables.move_to_end(l)
            return hit
    tables = _build_tables(l)
    size = _table_nbytes(l)
    if size <= _TABLE_CACHE_BYTES // 4:
        with _tables_lock:
            if l not in _tables:
                _tables[l] = tables
                _tables_bytes += size
            while _tables_bytes > _TABLE_CACHE_BYTES:
                old, _ = _tables.popitem(last=False)
                _tables_bytes -= _table_nbytes(old)
    return tables


def _build_tables(l: int):
    """Index and coefficient tables for degree ``l >= 2``.

    Returns ``(rows, coef)``: ``rows`` ``(5, 2l+1)`` long and ``coef`` ``(5, 2l+1, 2l+1)`` float64 such
    that ``D_l[m, m'] = sum_k coef[k, m, m'] * P[rows[k, m], m']`` where ``P`` stacks the three
    matrices ``P_i`` (``i = -1, 0, 1``) of shape ``(2l-1, 2l+1)`` along rows (``P[(i+1)(2l-1) + a + l-1]``).
    """
    n = 2 * l + 1

    def row(i, a):  # row of P_i for index a in [-(l-1), l-1]
        return (i + 1) * (2 * l - 1) + a + l - 1

    # u, v, w for every (m, m') at once, with the float64 operations of the former one-m-at-a-time
    # loop element by element (``number / tensor`` is ``number * tensor.reciprocal()`` in torch), so
    # the tables are bit for bit the same: rows of U, V, W are indexed by m + l, columns by m' + l
    ms = range(-l, l + 1)
    d0 = [1.0 if m == 0 else 0.0 for m in ms]
    mp = torch.arange(-l, l + 1, dtype=torch.float64)
    denom = torch.where(mp.abs() < l, (l + mp) * (l - mp), torch.full_like(mp, 2 * l * (2 * l - 1)))
    inv = denom.reciprocal()
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)[:, None]  # noqa: E731
    U = torch.sqrt(f64([(l + m) * (l - m) for m in ms]) * inv)
    V = 0.5 * torch.sqrt(f64([(1 + d) * (l + abs(m) - 1) * (l + abs(m)) for m, d in zip(ms, d0)]) * inv) \
        * f64([1 - 2 * d for d in d0])
    W = -0.5 * torch.sqrt(f64([(l - abs(m) - 1) * (l - abs(m)) for m in ms]) * inv) * f64([1 - d for d in d0])
    src = torch.stack([U, V, V * math.sqrt(2.0), -V, W, -W])  # the coefficient rows the terms use
    u, v, v2, mv, w, mw = range(6)
    K, M, ROW, SRC = [], [], [], []  # slot k, m + l, row of P, source of the coefficients
    for m in ms:
        am = abs(m)
        terms = []  # (i, a, source)
        if am < l:
            terms.append((0, m, u))  # U = P_0[m]
        if m == 0:  # V = P_1[1] + P_-1[-1]
            terms += [(1, 1, v), (-1, -1, v)]
        elif m > 0:  # V = P_1[m-1] sqrt(1 + δ_m1) - P_-1[-m+1] (1 - δ_m1)
            terms.append((1, m - 1, v2 if m == 1 else v))
            if m != 1:
                terms.append((-1, -m + 1, mv))
        else:  # V = P_1[m+1] (1 - δ_m,-1) + P_-1[-m-1] sqrt(1 + δ_m,-1)
            if m != -1:
                terms.append((1, m + 1, v))
            terms.append((-1, -m - 1, v2 if m == -1 else v))
        if am < l - 1:  # W (its coefficient w vanishes for |m| >= l - 1)
            if m > 0:  # W = P_1[m+1] + P_-1[-m-1]
                terms += [(1, m + 1, w), (-1, -m - 1, w)]
            elif m < 0:  # W = P_1[m-1] - P_-1[-m+1]
                terms += [(1, m - 1, w), (-1, -m + 1, mw)]
        for k, (i, a, c) in enumerate(terms):
            K.append(k)
            M.append(m + l)
            ROW.append(row(i, a))
            SRC.append(c)
    K, M = torch.tensor(K), torch.tensor(M)
    rows = torch.zeros(5, n, dtype=torch.int64)
    coef = torch.zeros(5, n, n, dtype=torch.float64)
    rows[K, M] = torch.tensor(ROW)
    coef[K, M] = src[torch.tensor(SRC), M]
    return rows, coef


def _next_block(D1: torch.Tensor, Dprev: torch.Tensor, l: int) -> torch.Tensor:
    """Degree-``l`` block from the ``l = 1`` block ``(..., 3, 3)`` and the ``l - 1`` block."""
    # P_i[a, b] for b in [-l, l]: R1[i, 0] Dprev[a, b] for |b| < l, and the two edge columns.
    lo, hi = Dprev[..., :, :1], Dprev[..., :, -1:]  # columns b' = -(l-1) and l-1
    r_m, r_0, r_p = D1[..., :, 0, None, None], D1[..., :, 1, None, None], D1[..., :, 2, None, None]  # (..., 3, 1, 1)
    Dp = Dprev.unsqueeze(-3)  # (..., 1, 2l-1, 2l-1)
    left = r_p * lo.unsqueeze(-3) + r_m * hi.unsqueeze(-3)  # b = -l
    right = r_p * hi.unsqueeze(-3) - r_m * lo.unsqueeze(-3)  # b = l
    P = torch.cat([left, r_0 * Dp, right], dim=-1)  # (..., 3, 2l-1, 2l+1), i = -1, 0, 1
    P = P.flatten(-3, -2)  # (..., 3(2l-1), 2l+1)
    rows, coef = _recursion_tables(l)
    rows = rows.to(P.device)
    coef = coef.to(device=P.device, dtype=P.dtype)
    gathered = P[..., rows, :]  # (..., 5, 2l+1, 2l+1)
    return (coef * gathered).sum(-3)


def _check_R(R):
    R = check_tensor("R", R, shape=(..., 3, 3), floating=True)
    return check_tensor("R", R, finite=R.device.type == "cpu")


def _check_l(l, name="l"):
    return check_int(name, l, min=0)


def _compute_dtype(lmax: int, dtype: torch.dtype) -> torch.dtype:
    """float64 for dtypes less precise than float64 when ``lmax`` exceeds :data:`_NATIVE_LMAX`."""
    if dtype != torch.float64 and lmax > _NATIVE_LMAX:
        return torch.float64
    return dtype


def _check_request(name: str, lmax: int, R: torch.Tensor, all_blocks: bool) -> torch.dtype:
    """Check the memory of a request up to degree ``lmax`` before allocating; return the compute dtype.

    Estimate (bytes): the blocks kept (all ``0..lmax``, or the last two), the temporaries of the last
    step (about ``16 (2l+1)²`` values per rotation), the table of the last degree and its cast copy,
    and ~512 bytes of Python per block; twice the blocks when they are rounded from float64; with
    ``R.requires_grad``, what autograd keeps for the backward pass.
    """
    cdtype = _compute_dtype(lmax, R.dtype)
    c, out = cdtype.itemsize, R.dtype.itemsize
    batch = R.numel() // 9
    n = 2 * lmax + 1
    if all_blocks:
        kept = (lmax + 1) * (2 * lmax + 1) * (2 * lmax + 3) // 3  # sum of (2l+1)^2 over l = 0..lmax
        kept_bytes = batch * kept * (c + (out if cdtype != R.dtype else 0)) + 512 * (lmax + 1)
    else:
        kept_bytes = batch * (n * n + (n - 2) ** 2) * c
    need = kept_bytes + batch * 16 * n * n * c + (_table_nbytes(lmax) + 5 * n * n * c if lmax >= 2 else 0)
    if R.requires_grad:  # autograd keeps each step's gathered rows (about 8 (2l+1)² values per rotation)
        need += batch * 8 * c * (lmax + 1) * (2 * lmax + 1) * (2 * lmax + 3) // 3
    what = (f"the Wigner-D blocks of degrees 0..{lmax}" if all_blocks else f"the Wigner-D matrix of degree {lmax}")
    check_memory(name, lmax, need, R.device, what=f"{what} for {batch} rotations")
    if lmax > _ACCURATE_LMAX:
        warnings.warn(f"{name}: degree {lmax} is beyond the accurate range of the Wigner-D recursion "
                      f"(orthogonality error ~7e-8 at l = 100 in float64, 10x more every 10 degrees)",
                      RuntimeWarning, stacklevel=3)
    return cdtype


def _blocks(lmax: int, R: torch.Tensor, cdtype: torch.dtype, keep_all: bool) -> list[torch.Tensor]:
    """Blocks ``0..lmax`` (``keep_all``) or only the block ``lmax``, computed in ``cdtype``, cast to R's dtype."""
    Rc = R.to(cdtype)
    blocks = [torch.ones(*R.shape[:-2], 1, 1, dtype=cdtype, device=R.device)]
    if lmax >= 1:
        blocks.append(Rc.clone() if Rc is R else Rc)
    for l in range(2, lmax + 1):
        nxt = _next_block(Rc, blocks[-1], l)
        if keep_all:
            blocks.append(nxt)
        else:
            blocks[-1] = nxt
    if not keep_all:
        blocks = blocks[-1:]
    return blocks if cdtype == R.dtype else [b.to(R.dtype) for b in blocks]


def wigner_D_blocks(lmax: int, R: torch.Tensor) -> list[torch.Tensor]:
    """Real Wigner-D blocks for every degree ``0..lmax``.

    Parameters
    ----------
    lmax : int
    R : Tensor ``(..., 3, 3)``
        Rotation matrices (determinant +1; for an improper ``-R'`` use ``(-1)^l`` times the block of ``R'``).

    Returns
    -------
    list of ``lmax + 1`` tensors, block ``l`` of shape ``(..., 2l+1, 2l+1)``, dtype and device of ``R``
    (an empty batch gives empty blocks).

    Raises
    ------
    ValueError
        ``lmax`` negative, or the blocks would not fit in the memory available on ``R``'s device.

    Notes
    -----
    float32 (and half) inputs with ``lmax > 28`` are computed in float64 and rounded; above
    ``lmax = 100`` a ``RuntimeWarning`` says that even float64 loses accuracy (see the module
    docstring for the measured errors).

    Examples
    --------
    >>> blocks = wigner_D_blocks(2, torch.eye(3, dtype=torch.float64))
    >>> [tuple(b.shape) for b in blocks]
    [(1, 1), (3, 3), (5, 5)]
    """
    lmax = _check_l(lmax, "lmax")
    R = _check_R(R)
    return _blocks(lmax, R, _check_request("lmax", lmax, R, all_blocks=True), keep_all=True)


def wigner_D(l: int, R: torch.Tensor) -> torch.Tensor:
    """Real Wigner-D matrix of degree ``l`` in e3nn's real basis.

    For e3nn's spherical harmonics ``Y_l = e3nn.o3.spherical_harmonics(l, x, normalize=True)``:
    ``Y_l(R @ x) = wigner_D(l, R) @ Y_l(x)``. ``wigner_D(1, R) == R``. A homomorphism:
    ``wigner_D(l, R1 @ R2) = wigner_D(l, R1) @ wigner_D(l, R2)``, orthogonal, to float64 round-off.

    Parameters
    ----------
    l : int
        Degree, ``>= 0``.
    R : Tensor ``(..., 3, 3)``
        Rotation matrices (determinant +1), any batch shape, dtype and device.

    Returns
    -------
    Tensor of shape ``(..., 2l+1, 2l+1)``, dtype and device of ``R``; ``(0, 2l+1, 2l+1)`` for an
    empty batch ``(0, 3, 3)``.

    Raises
    ------
    ValueError
        ``l`` negative, or the result and the recursion would not fit in the memory available on
        ``R``'s device (only the last two blocks are kept, so memory is ``O(batch · l²)``).

    Notes
    -----
    float32 (and half) inputs with ``l > 28`` are computed in float64 and rounded (the float32
    recursion would lose accuracy: orthogonality error 1e-4 at l = 40, 6e-3 at l = 60); above
    ``l = 100`` a ``RuntimeWarning`` says that even float64 loses accuracy.

    Examples
    --------
    >>> from geodl.groups import random_rotation
    >>> R = random_rotation(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> D = wigner_D(3, R)
    >>> D.shape
    torch.Size([4, 7, 7])
    >>> bool(torch.allclose(D @ D.transpose(-1, -2), torch.eye(7, dtype=torch.float64), atol=1e-12))
    True
    """
    l = _check_l(l)
    R = _check_R(R)
    return _blocks(l, R, _check_request("l", l, R, all_blocks=False), keep_all=False)[0]
