"""Batched symmetric 3x3 eigensolver and per-segment covariances.

Written by hand because no library in the stack fits: ``torch.linalg.eigh`` is a general LAPACK /
cuSOLVER call (slow for millions of 3x3 problems, fails above 65,536 matrices on CUDA) and roma /
e3nn have no symmetric eigensolver. The algorithm: scale by the largest absolute entry, a fixed number of cyclic Jacobi sweeps (branch-free, so it vectorises over the batch here and
maps one-to-one onto the Triton kernel in ``_triton_eigh.py``), ascending order, a fixed sign rule,
third vector = cross(first, second).
"""

from __future__ import annotations

import torch

from geodl._checks import check_finite, check_index, check_int, check_number, check_tensor
from geodl.ops._dispatch import lazy, public_op, register_kernel

__all__ = ["eigh3x3", "segment_covariance"]

# Cyclic Jacobi converges quadratically; on 4e5 random, graded and near-degenerate matrices the
# largest off-diagonal entry after k sweeps was 1.6e-1, 2.3e-5, 7.5e-21 (k = 2, 3, 4), so 5 sweeps
# (float32) and 6 (float64) leave a margin of one sweep beyond working precision.
SWEEPS = {torch.float32: 5, torch.float64: 6}
# Matrices per step of the CPU reference: every op (the largest are (chunk, 3, 3)) stays below
# torch's intra-op grain size (32,768 elements), so none pays a thread barrier -- on a busy machine
# one barrier can cost milliseconds -- and temporaries stay in cache. On CUDA without Triton, kernel
# launches dominate instead: large steps.
_CHUNK = 32768 // 9
_CHUNK_CUDA = 1 << 20
# Jacobi pairs (p, q) with the remaining index r, one cyclic sweep.
_PAIRS = ((0, 1, 2), (0, 2, 1), (1, 2, 0))


def _rotate(a, v, p, q, r, tiny):
    """One Jacobi rotation zeroing a[p][q]; ``a`` holds (B,) entries, ``v`` the columns of V as (3, B)."""
    app, aqq, apq = a[p][p], a[q][q], a[p][q]
    d = aqq - app
    # t = tan(theta) of the smaller rotation angle, written without dividing by a_pq:
    # t = 2 a_pq sign(d) / (|d| + sqrt(d^2 + 4 a_pq^2)); |t| <= 1 and t = 0 when a_pq = 0.
    apq2 = 2.0 * apq
    t = torch.copysign(apq2, d * apq2) / (d.abs() + torch.hypot(d, apq2)).clamp_min(tiny)  # sign(d) * 2 a_pq
    c = torch.rsqrt(1.0 + t * t)
    s = t * c
    tapq = t * apq
    a[p][p] = app - tapq
    a[q][q] = aqq + tapq
    a[p][q] = a[q][p] = None  # zero; never read again before it is rotated into
    arp, arq = a[r][p], a[r][q]
    if arp is None:  # zeroed by the previous rotation (every rotation but the first)
        arp, arq = -s * arq, c * arq
    elif arq is None:
        arp, arq = c * arp, s * arp
    else:
        arp, arq = c * arp - s * arq, s * arp + c * arq
    a[r][p] = a[p][r] = arp
    a[r][q] = a[q][r] = arq
    vp, vq = v[p], v[q]
    v[p] = c * vp - s * vq
    v[q] = s * vp + c * vq


def _sign_fixed(x):
    """Flip each row of x (B, 3) so its largest-magnitude component (first on ties) is positive."""
    pick = x.gather(1, x.abs().argmax(1, keepdim=True))  # argmax returns the first maximum
    return torch.where(pick < 0, -x, x)


def _eigh_chunk(A: torch.Tensor, sweeps: int):
    """Plain-torch Jacobi on a (B, 3, 3) chunk; returns ascending w (B, 3) and columns V (B, 3, 3)."""
    B = A.shape[0]
    # read both triangles (gradients stay symmetric); halve before adding: A + A^T overflows for
    # entries above max/2 (3e38 in float32), and 0.5 a + 0.5 b == 0.5 (a + b) bit for bit otherwise
    S = 0.5 * A + 0.5 * A.transpose(-1, -2)
    scale = S.abs().amax(dim=(-1, -2))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    S = (S / scale[:, None, None]).reshape(B, 9).T.contiguous()  # (9, B): each entry contiguous
    a = [[S[3 * i + j] for j in range(3)] for i in range(3)]
    eye = torch.eye(3, dtype=A.dtype, device=A.device)
    v = [eye[j, :, None].expand(3, B) for j in range(3)]  # column j of V as (3, B)
    tiny = torch.finfo(A.dtype).tiny
    for _ in range(sweeps):
        for p, q, r in _PAIRS:
            _rotate(a, v, p, q, r, tiny)
    w, order = torch.sort(torch.stack([a[0][0], a[1][1], a[2][2]], -1), dim=-1, stable=True)  # ties: Jacobi order
    V = torch.stack(v, 0).permute(2, 1, 0).gather(2, order[:, None, :].expand(-1, 3, -1))  # (B, 3, 3)
    e0, e1 = _sign_fixed(V[:, :, 0]), _sign_fixed(V[:, :, 1])
    V = torch.stack([e0, e1, torch.linalg.cross(e0, e1)], -1)
    return w * scale[:, None], V


def _eigh_reference(A: torch.Tensor):
    """Plain-torch path (any device), chunked: memory O(B), a loop over chunks, never over matrices."""
    B = A.shape[0]
    w = A.new_empty((B, 3))
    V = A.new_empty((B, 3, 3))
    sweeps = SWEEPS[A.dtype]
    step = _CHUNK_CUDA if A.is_cuda else _CHUNK
    for lo in range(0, B, step):
        w[lo:lo + step], V[lo:lo + step] = _eigh_chunk(A[lo:lo + step], sweeps)
    return w, V


def _eigh_ref(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _eigh_reference(A)


def _eigh_fake(A):
    return A.new_empty((A.shape[0], 3)), A.new_empty((A.shape[0], 3, 3))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*output)


def _backward(ctx, grad_w, grad_V):
    """Eigen-derivatives: dL/dA = sym(V (diag(g_w) + F o (V^T g_V)) V^T), F_ij ~ 1/(w_j - w_i).

    Guard at near-ties: F_ij = D / (D^2 + eps^2) with D = w_j - w_i and eps = sqrt(machine eps) *
    max|w| (Lorentzian broadening). It equals 1/D up to a relative (eps/D)^2 (below 1e-10 in float64
    for a relative gap >= 1e-3) and stays bounded by 1/(2 eps) where eigenvalues tie, where the true
    derivative of the eigenvectors does not exist. At an exact tie D = 0 gives F_ij = 0: the terms
    coupling the tied eigenvectors are dropped, and what is returned is the derivative with the
    eigenvector basis of the tied eigenspace held fixed (the eigenvalue part, ``V diag(g_w) V^T``, is
    exact for every symmetric function of the tied eigenvalues). For spectra whose squares would
    under- or overflow (max|w| outside ``[sqrt(tiny / eps), sqrt(max) / 2]``, e.g. the zero matrix,
    where the plain formula is 0/0) the same Lorentzian is evaluated in units of max|w|, so the
    gradient is finite there too.
    """
    w, V = ctx.saved_tensors
    G = torch.zeros_like(V)
    if grad_V is not None:
        fi = torch.finfo(w.dtype)
        D = w[:, None, :] - w[:, :, None]
        scale = w.abs().amax(-1).clamp_min(fi.tiny)
        eps = fi.eps ** 0.5 * scale
        F = D / (D * D + eps[:, None, None] ** 2)
        ok = (scale >= (fi.tiny / fi.eps) ** 0.5) & (scale <= fi.max ** 0.5 / 2)
        Dn = D / scale[:, None, None]  # |Dn| <= 2: no under- or overflow in the squares
        Fs = Dn / (Dn * Dn + fi.eps) / scale[:, None, None]
        G = (V.transpose(-1, -2) @ grad_V) * torch.where(ok[:, None, None], F, Fs)
    if grad_w is not None:
        G = G + torch.diag_embed(grad_w)
    gA = V @ G @ V.transpose(-1, -2)
    return 0.5 * (gA + gA.transpose(-1, -2))


# the Triton kernel (same algorithm, one matrix per lane) serves non-empty batches
_eigh3x3_op = register_kernel("eigh3x3", _eigh_ref, fake=_eigh_fake,
                              triton=lazy("geodl.ops._triton_eigh", "eigh3x3_triton"),
                              supports=lambda A: A.shape[0] > 0, backward=_backward, setup_context=_setup_context)


def _sym_tol_default(dtype: torch.dtype) -> float:
    return 1e3 * torch.finfo(dtype).eps


@public_op("eigh3x3", kernels=("eigh3x3",))
def eigh3x3(A: torch.Tensor, *, validate: bool = True, sym_tol: float | None = None):
    r"""Eigen-decomposition of a batch of real symmetric 3x3 matrices.

    Scales each matrix by its largest absolute entry, runs a fixed number of cyclic Jacobi sweeps
    (5 in float32, 6 in float64), scales the eigenvalues back and orders them ascending. Each
    eigenvector's largest-magnitude component (the first on ties) is made positive for the first two
    columns; the third column is ``cross(first, second)``, so the frame is right-handed. On CUDA a
    Triton kernel runs the same algorithm; elsewhere a chunked plain-torch reference (no Python
    loop over matrices; memory O(B)). The input is read as ``(A + A^T) / 2`` and the gradient is
    symmetric. ``GEODL_DISABLE_TRITON=1`` / ``geodl.ops.set_backend`` choose the path as for every
    op. Differentiable (``torch.library.custom_op`` ``geodl::eigh3x3`` with autograd);
    near-tied eigenvalues are guarded in the eigenvector gradient by a Lorentzian broadening of
    ``1/(w_j - w_i)`` with width ``sqrt(eps) * max|w|``: exact up to a relative ``(width/gap)^2``
    and bounded where eigenvalues tie (where the true derivative does not exist). At an exact tie
    (the zero matrix, ``c * I``, a double eigenvalue) the gradient is finite: the terms coupling
    the tied eigenvectors are dropped, i.e. it is the derivative with the basis of the tied
    eigenspace held fixed. Every finite input gives a finite result: the matrix is halved before
    it is symmetrised and scaled by its largest entry before the sweeps (``3e38 * I`` in float32
    is fine); only eigenvalues that do not fit the dtype (``|w| > max``, e.g. ``3e38 * ones``) come
    back as ``inf``, with a NaN ``gap``.

    Parameters
    ----------
    A : Tensor, shape (..., 3, 3)
        Symmetric matrices, float32 or float64, any number of batch dimensions (up to 10M matrices
        and beyond: the work is chunked).
    validate : bool
        Check for NaN/inf and asymmetry. These value checks force a host sync on CUDA; pass
        ``False`` in hot loops. They are skipped while ``torch.compile`` traces (shape and dtype
        checks always run).
    sym_tol : float, optional
        Largest accepted ``max|A - A^T| / max|A|`` per matrix (a non-negative real number);
        default ``1000 * eps`` of the dtype.

    Returns
    -------
    eigenvalues : Tensor, shape (..., 3)
        Ascending.
    eigenvectors : Tensor, shape (..., 3, 3)
        Orthonormal columns, ``A @ V = V @ diag(eigenvalues)``, ``det(V) = +1``.
    gap : Tensor, shape (...,)
        Relative eigengap ``min_i (w[i+1] - w[i]) / max(max_i |w[i]|, tiny)``; 0 where eigenvalues
        tie (there the eigenvectors of the tied pair are any orthonormal basis of their eigenspace).

    Raises
    ------
    TypeError
        ``A`` is not a float32/float64 tensor.
    ValueError
        ``A`` is not ``(..., 3, 3)``, or (with ``validate``) holds NaN/inf or is not symmetric.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import eigh3x3
    >>> A = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)
    >>> w, V, gap = eigh3x3(A)
    >>> [round(x, 9) for x in w.tolist()]
    [1.0, 3.0, 5.0]
    >>> torch.allclose(A @ V, V * w), round(float(torch.det(V)), 12), round(float(gap), 4)
    (True, 1.0, 0.4)
    """
    check_tensor("A", A, shape=(..., 3, 3), dtypes=(torch.float32, torch.float64))
    if sym_tol is not None:
        sym_tol = check_number("sym_tol", sym_tol, nonnegative=True)
    if validate and not torch.compiler.is_compiling():
        check_finite("A", A)
        if A.numel():
            tol = _sym_tol_default(A.dtype) if sym_tol is None else float(sym_tol)
            asym = (A - A.transpose(-1, -2)).abs().amax(dim=(-1, -2))
            scale = A.abs().amax(dim=(-1, -2))
            bad = asym > tol * scale
            if bool(bad.any()):
                worst = float((asym / torch.where(scale > 0, scale, 1.0)).max())
                raise ValueError(
                    f"A: expected symmetric matrices; max|A - A^T| / max|A| = {worst:.3g} exceeds sym_tol = {tol:.3g}"
                )
    batch = A.shape[:-2]
    w, V = _eigh3x3_op(A.reshape(-1, 3, 3).contiguous())
    tiny = torch.finfo(A.dtype).tiny
    wn = w / w.abs().amax(-1, keepdim=True).clamp_min(tiny)  # scale first: no overflow in differences
    gap = (wn[:, 1:] - wn[:, :-1]).amin(-1)
    return w.reshape(*batch, 3), V.reshape(*batch, 3, 3), gap.reshape(batch)


@public_op("segment_covariance", kernels=("scatter_sum",))
def segment_covariance(pos: torch.Tensor, batch: torch.Tensor | None = None, num_segments: int | None = None, *, centered: bool = True):
    r"""Per-segment centroid and (unnormalised) scatter matrix of a batch of point clouds.

    ``cov[s] = sum_{i in s} (x_i - c_s)(x_i - c_s)^T`` -- a sum, **not** divided by the count (divide
    by ``counts`` for the biased covariance). With ``centered=False`` the second moment about the
    origin ``sum x_i x_i^T`` is returned instead (``centroid`` is still the mean). Two passes (centre
    first, then accumulate), so no cancellation for clouds far from the origin. Empty segments give a
    zero centroid and a zero matrix, also when there are no points at all (``N = 0``). Differentiable
    in ``pos``.

    Parameters
    ----------
    pos : Tensor, shape (N, d)
        Points, d = 2 or 3, floating point.
    batch : LongTensor, shape (N,), optional
        Segment of each point (need not be sorted); ``None`` puts all points in one segment.
    num_segments : int, optional
        Number of segments S; default ``batch.max() + 1`` (a host sync on CUDA: pass it in hot paths).
        An output that would not fit in the memory available on the device raises ``ValueError``
        (naming ``num_segments``, or ``batch`` when S is read from it) before allocating.
    centered : bool
        Subtract the centroid before accumulating (default) or not.

    Returns
    -------
    centroid : Tensor, shape (S, d)
    cov : Tensor, shape (S, d, d)
    counts : LongTensor, shape (S,)

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import segment_covariance
    >>> pos = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    >>> c, cov, n = segment_covariance(pos, torch.tensor([0, 0, 1]))
    >>> c
    tensor([[1., 0.],
            [5., 5.]])
    >>> cov[0], n
    (tensor([[2., 0.],
            [0., 0.]]), tensor([2, 1]))
    """
    from geodl._checks import check_alloc
    from geodl.ops._scatter import scatter  # lazily: eigh3x3 does not need the scatter ops

    check_tensor("pos", pos, ndim=2, floating=True)
    if pos.shape[1] not in (2, 3):
        raise ValueError(f"pos: expected shape (N, 2) or (N, 3), got {tuple(pos.shape)}")
    N, d = pos.shape
    if batch is None:
        batch = torch.zeros(N, dtype=torch.long, device=pos.device)
        S = 1 if num_segments is None else check_int("num_segments", num_segments, min=0)
        if N and S == 0:
            raise ValueError(f"num_segments: 0 segments cannot hold the {N} points of pos "
                             "(batch=None puts every point in segment 0)")
    else:
        check_tensor("batch", batch, shape=(N,), dtypes=(torch.int64, torch.int32))
        if batch.device != pos.device:
            raise ValueError(f"batch: expected device {pos.device}, got {batch.device}")
        if num_segments is None:
            S = int(batch.max()) + 1 if N else 0
        else:
            S = check_int("num_segments", num_segments, min=0)
    # centroid (S, d) and cov (S, d, d) in pos.dtype, int64 counts, checked before allocating
    name, value = ("num_segments", S) if num_segments is not None else ("batch", f"a maximum of {S - 1}")
    check_alloc(name, value, S, d + d * d, pos.dtype, pos.device, row_bytes=8)
    if pos.device.type == "cpu" and not torch.compiler.is_compiling():  # would sync on CUDA, break a compiled graph
        check_index("batch", batch, S)
    batch = batch.long()
    counts = torch.zeros(S, dtype=torch.long, device=pos.device).index_add_(0, batch, torch.ones_like(batch))
    centroid = scatter(pos, batch, dim=0, dim_size=S, reduce="sum") / counts.clamp_min(1)[:, None].to(pos.dtype)
    x = pos - centroid[batch] if centered else pos
    cov = scatter((x[:, :, None] * x[:, None, :]).reshape(N, d * d), batch, dim=0, dim_size=S, reduce="sum")
    cov = cov.reshape(S, d, d)
    return centroid, cov, counts
