"""TinvNN: transformation-invariant, distance-preserving initial representations (Zhang et al.,
"Revisiting Transformation Invariant Geometric Deep Learning: Are Initial Representations All You
Need?", arXiv 2112.12345; the TPAMI version extends it to equivariant outputs).

A point cloud ``X`` (n, d) is replaced by coordinates ``Y`` that are invariant to rotations,
reflections, translations and (optionally) scaling, equivariant to permutations of the points, and
that preserve every pairwise distance (up to the scale normalisation): classical multidimensional
scaling (MDS) of the cloud's own distance matrix, with its sign ambiguity fixed. Any backbone then
sees ``Y`` instead of ``X`` (:class:`TinvNN`).

Two routes give the same coordinates:

``method="mds"``
    the reference: the double-centred Gram matrix ``B = -1/2 J D² J = Xc Xcᵀ`` (n x n), its top-d
    eigenpairs ``(λ_k, u_k)`` (``torch.linalg.eigh``) and ``Y = U Λ^{1/2}``; O(n²) memory, O(n³) time.
``method="covariance"`` (default)
    the O(n) route: ``B = Xc Xcᵀ`` and ``C = Xcᵀ Xc`` share their non-zero eigenvalues, and
    ``Xc V = U Λ^{1/2}`` for the eigenvectors ``V`` of ``C``; so ``Y = Xc V`` from one d x d
    eigendecomposition per cloud (``geodl.ops.eigh3x3`` in 3-D, batched over the clouds).

Columns are ordered by descending eigenvalue. Eigenvectors have arbitrary signs; the sign of column
``k`` is fixed by its third moment ``Σ_i y_ik³`` (made positive), which is invariant to rotations
and translations of the cloud and to permutations of its points. Column *sums* cannot do it: the
columns of centred coordinates sum to zero. A column whose standardised third moment
``|Σ y³| / (n λ^{3/2})`` is below ``sign_tol`` (a centrally symmetric cloud) has no well-defined
sign. With ``handed=True`` the last column's sign comes from ``det(basis) = +1`` instead: the
coordinates then keep the cloud's chirality (invariant to SO(d)/SE(d) only; a mirror image gets the
last column negated). ``normalize_scale`` divides by the RMS distance to the centroid.

Degeneracy. Tied eigenvalues (relative eigengap below ``gap_tol``, as in
:func:`geodl.nn.frames`) or sign-ambiguous columns make the coordinates ill-defined; the policies
are those of frame averaging, with the same names: ``"warn"`` (default), ``"raise"``, ``"flag"``
and ``"augment"`` (:class:`TinvNN` averages the flagged clouds over the frame set ``V S Q``: every
sign pattern times Haar rotations inside the tied eigenspace, invariant in expectation).

Graph inputs without coordinates (:func:`graph_mds`): classical MDS of the shortest-path distances.
These are not Euclidean in general, so ``B`` has negative eigenvalues; they are clamped (``"clamp"``:
a column of zeros where a kept eigenvalue is negative) or dropped (``"drop"``: fewer columns) and
reported (``MDSResult.dropped``, ``negative_mass``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from geodl._checks import check_alloc, check_choice, check_index, check_int, check_number, check_tensor
from geodl.groups import Symmetry
from geodl.nn._pca import (
    _POLICIES,
    _degeneracy_message,
    _eigenspace_rotations,
    _eigh,
    _graph_ids_of,
    _pow2_exponent,
    _relative_gaps,
    _report_degenerate,
    _second_moments,
    _sign_patterns,
)
from geodl.nn.frame_averaging._averaging import FrameAveraging, _accepts_num_graphs, _parse_inputs, _split_inputs
from geodl.nn.frame_averaging._frames import _OUT_KINDS, _expand_like, _frame_kind, _from_frame, _to_frame
from geodl.ops import scatter

__all__ = ["TinvNN", "TinvRepresentation", "TinvCoordinates", "MDSResult", "tinv_coordinates", "classical_mds",
           "graph_mds"]

_METHODS = ("covariance", "mds")
_NEGATIVE = ("clamp", "drop")
_SOURCES = ("pos", "graph")
_MIN_POINTS = 3
_F64 = torch.float64


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class TinvCoordinates:
    """Invariant coordinates of a batch of point clouds and how they were made (:func:`tinv_coordinates`).

    Attributes
    ----------
    coords : Tensor (N, d)
        The coordinates, ``(pos - centroid[index]) @ basis[index] / scale[index]``.
    basis : Tensor (B, d, d)
        Axes as columns (descending eigenvalue, signs fixed); orthogonal, ``det = +1`` when handed.
    centroid : Tensor (B, d)
        Centroid of each cloud.
    scale : Tensor (B,)
        RMS distance to the centroid (1 without ``normalize_scale``, and for coincident points).
    eigenvalues : Tensor (B, d)
        Eigenvalues of the covariance ``Σ (x - c)(x - c)ᵀ / n``, descending (for ``method="mds"``
        the Gram matrix's top-d eigenvalues divided by n: the same numbers).
    gap : Tensor (B,)
        Relative eigengap ``min_k (λ_k - λ_{k+1}) / max|λ|``.
    sign_margin : Tensor (B, d)
        ``|Σ y³| / (n λ^{3/2})`` of each column: how well its sign is defined (0 for a column whose
        eigenvalue is below ``gap_tol · λ_max``, whose sign the cloud does not define).
    degenerate : Tensor (B,) bool
        ``gap < gap_tol`` (or NaN) or a sign-deciding column with ``sign_margin < sign_tol`` (all
        columns; the first d - 1 when handed). ``False`` for empty graphs.
    index : Tensor (N,) long
        Graph of each point.
    """

    coords: torch.Tensor
    basis: torch.Tensor
    centroid: torch.Tensor
    scale: torch.Tensor
    eigenvalues: torch.Tensor
    gap: torch.Tensor
    sign_margin: torch.Tensor
    degenerate: torch.Tensor
    index: torch.Tensor


@dataclass
class MDSResult:
    """Classical MDS coordinates and what could not be represented (:func:`classical_mds`, :func:`graph_mds`).

    Attributes
    ----------
    coords : Tensor (n, k)
        Coordinates, columns by descending eigenvalue, signs fixed by the third-moment rule
        (k = ``dim`` with ``negative="clamp"``, the number of positive kept eigenvalues with "drop").
    eigenvalues : Tensor (k,) or (B, k)
        The kept eigenvalues of the double-centred Gram matrix (negative ones clamped to 0 with
        "clamp"); one row per graph for :func:`graph_mds`.
    dropped : Tensor (M,)
        Every negative eigenvalue of the Gram matrix (below ``-10 n eps max|λ|``, rounding excluded),
        most negative first, graph by graph: the non-Euclidean part that no real coordinates hold.
    negative_mass : Tensor () or (B,)
        ``Σ|dropped| / Σ|λ|`` per graph: 0 for Euclidean distances.
    index : Tensor (n,) long
        Graph of each node.
    dropped_index : Tensor (M,) long
        Graph of each dropped eigenvalue.
    """

    coords: torch.Tensor
    eigenvalues: torch.Tensor
    dropped: torch.Tensor
    negative_mass: torch.Tensor
    index: torch.Tensor
    dropped_index: torch.Tensor


# --------------------------------------------------------------------------------------------
# Sign rule
# --------------------------------------------------------------------------------------------


def _fix_signs(y, index, num, lam, counts, det, handed: bool, null_tol: float):
    """Column signs (S, d) from third moments, and the sign margins (S, d).

    ``y`` (N, d) centred coordinates, ``lam`` (S, d) covariance eigenvalues (descending), ``det``
    (S,) the determinant sign of the unsigned basis (only used when ``handed``).
    """
    m3 = scatter(y.detach() ** 3, index, dim=0, dim_size=num, reduce="sum")
    lam = lam.detach()
    live = lam > null_tol * lam[:, :1].clamp_min(0)
    denom = counts.clamp_min(1).to(lam.dtype)[:, None] * torch.where(live, lam, 1.0).clamp_min(0) ** 1.5
    margin = torch.where(live & (denom > 0), m3.abs() / torch.where(denom > 0, denom, 1.0), 0.0)
    signs = torch.where(m3 < 0, -1.0, 1.0).to(y.dtype)
    if handed:
        first = signs[:, :-1].prod(-1)
        signs = torch.cat([signs[:, :-1], (det * first)[:, None]], -1)
    return signs, margin


def _signed_columns(y, index, num, lam, counts, null_tol):
    """``y`` with the third-moment sign rule applied per graph (MDS outputs)."""
    det = torch.ones(num, dtype=y.dtype, device=y.device)
    signs, _ = _fix_signs(y, index, num, lam, counts, det, False, null_tol)
    return y * signs[index]


# --------------------------------------------------------------------------------------------
# Invariant coordinates
# --------------------------------------------------------------------------------------------


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} ({value!r})")
    return value


def _graph_ids(pos, batch, num_graphs, validate, allow_empty):
    """(graph id per point, number of graphs), validated like frames (at least 3 points per cloud)."""
    n = pos.shape[0]
    if n == 0 and not (allow_empty and batch is not None):
        raise ValueError(f"pos: empty point cloud (0 points); TinvNN coordinates need at least {_MIN_POINTS} points "
                         "(empty graphs are allowed in a batch given with num_graphs=)")
    batch, graph, num_graphs, given = _graph_ids_of(batch, n, num_graphs, validate, allow_empty, pos.device)
    arg, value = ("num_graphs", num_graphs) if given else ("batch", f"a maximum id of {num_graphs - 1}")
    d = pos.shape[1]
    check_alloc(arg, value, num_graphs, 6 * d + 4 * d * d, _F64, pos.device, row_bytes=16)
    if validate:
        counts = torch.bincount(graph, minlength=num_graphs)
        small = (((counts > 0) & (counts < _MIN_POINTS)) if allow_empty else (counts < _MIN_POINTS)).nonzero().flatten()
        if small.numel():
            raise ValueError(
                f"{'pos' if batch is None else 'batch'}: clouds {small[:10].tolist()} have fewer than {_MIN_POINTS} "
                f"points (counts {counts[small[:10]].tolist()}); TinvNN coordinates need at least {_MIN_POINTS} "
                "points per cloud")
    return graph, num_graphs


def _mds_eigen(x, graph, num, d):
    """Per graph, the top-d eigenpairs of the double-centred Gram matrix of ``x`` (float64).

    Returns (y (N, d) = U Λ^{1/2} in the graph's rows, covariance eigenvalues (num, d) descending,
    unsigned basis Xcᵀ U Λ^{-1/2} (num, d, d), centroid (num, d), counts (num,)).
    """
    n = x.shape[0]
    counts = torch.bincount(graph, minlength=num)
    y = x.new_zeros(n, d)
    lam = x.new_zeros(num, d)
    basis = torch.eye(d, dtype=x.dtype, device=x.device).repeat(num, 1, 1)
    centroid = x.new_zeros(num, d)
    for b in range(num):
        rows = (graph == b).nonzero().flatten()
        if rows.numel() == 0:
            continue
        xb = x[rows]
        D2 = torch.cdist(xb, xb, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        w, U = _double_centred_eigh(D2)
        k = min(d, w.shape[0])
        wk = w[:k]
        wk = torch.where(wk > _rounding(w), wk, 0.0)  # rounding-sized eigenvalues are zero (no sqrt(eps) noise)
        yb = U[:, :k] * wk.sqrt()
        c = xb.mean(0)
        xc = xb - c
        inv = torch.where(wk > 0, 1.0 / torch.where(wk > 0, wk, 1.0), 0.0)
        Vb = (xc.T @ yb) * inv  # Xcᵀ U Λ^{1/2} / λ = Xcᵀ U Λ^{-1/2}: the eigenvectors of C
        y[rows, :k] = yb
        lam[b, :k] = wk / rows.numel()
        basis[b, :, :k] = Vb
        centroid[b] = c
    return y, lam, basis, centroid, counts


def _rounding(w) -> float:
    """``10 n eps max|λ|``: eigenvalues of an n x n Gram matrix below it are rounding noise."""
    return 10 * max(w.shape[0], 1) * torch.finfo(_F64).eps * float(w.abs().max()) if w.numel() else 0.0


def _double_centred_eigh(D2):
    """Eigenvalues (descending) and eigenvectors of ``B = -1/2 J D² J``."""
    B = -0.5 * (D2 - D2.mean(0, keepdim=True) - D2.mean(1, keepdim=True) + D2.mean())
    B = (B + B.T) / 2
    w, U = torch.linalg.eigh(B)
    return w.flip(-1), U.flip(-1)


def _coordinates(pos, batch, *, num_graphs, method, handed, normalize_scale, gap_tol, sign_tol, validate,
                 allow_empty):
    """:func:`tinv_coordinates` in float64 units of ``2**exp``: returns (record in float64, extras)."""
    compiling = torch.compiler.is_compiling()
    validate = bool(validate) and not compiling
    check_tensor("pos", pos, ndim=2, floating=True, finite=validate)
    d = pos.shape[1]
    if d < 2:
        raise ValueError(f"pos: expected shape (N, d) with d >= 2, got {tuple(pos.shape)}")
    check_choice("method", method, _METHODS)
    gap_tol = check_number("gap_tol", gap_tol, nonnegative=True)
    sign_tol = check_number("sign_tol", sign_tol, nonnegative=True)
    graph, num = _graph_ids(pos, batch, num_graphs, validate, allow_empty)
    n = pos.shape[0]
    check_alloc("pos", f"{n} points", n, 2 * d * d + 4 * d, _F64, pos.device)  # per-point bases and coordinates
    x = pos.to(_F64)
    exp = _pow2_exponent(x)
    x = torch.ldexp(x, -exp.to(x.dtype))
    if method == "covariance":
        centroid, cov, counts = _second_moments(x, graph, num, True)
        evals, V = _eigh(cov)  # ascending, right-handed
        gaps = _relative_gaps(evals)
        lam, Vd = evals.flip(-1), V.flip(-1)  # descending
        y = ((x - centroid[graph]).unsqueeze(1) @ Vd[graph]).squeeze(1)
    else:
        largest = int(torch.bincount(graph, minlength=num).max()) if n else 0
        # D², B, the eigenvectors and LAPACK's workspace of the largest cloud: n x n each
        check_alloc("pos", f"a cloud of {largest} points (method='mds' builds its {largest} x {largest} Gram "
                    "matrix; method='covariance' does not)", largest, 4 * largest, _F64, pos.device)
        y, lam, Vd, centroid, counts = _mds_eigen(x, graph, num, d)
        V = Vd.flip(-1)
        gaps = _relative_gaps(lam.flip(-1))
    det = torch.where(torch.linalg.det(Vd.detach()) < 0, -1.0, 1.0).to(x.dtype)
    signs, margin = _fix_signs(y, graph, num, lam, counts, det, handed, gap_tol)
    basis = Vd * signs[:, None, :]
    ys = y * signs[graph]
    rms = lam.sum(-1).clamp_min(0).sqrt()
    scale = torch.where(rms > 0, rms, 1.0) if normalize_scale else torch.ones_like(rms)
    coords = ys / scale[graph, None] if normalize_scale else torch.ldexp(ys, exp.to(x.dtype))
    gap = gaps.amin(-1)
    deciding = margin[:, :-1] if handed else margin
    degenerate = (~(gap >= gap_tol) | (deciding < sign_tol).any(-1)) & (counts > 0)
    e = exp.to(x.dtype)
    rec = TinvCoordinates(
        coords=coords,
        basis=basis,
        centroid=torch.ldexp(centroid, e),
        scale=torch.ldexp(scale, e) if normalize_scale else scale,
        eigenvalues=torch.ldexp(lam, 2 * e),
        gap=gap,
        sign_margin=margin,
        degenerate=degenerate,
        index=graph,
    )
    return rec, {"V": V, "gaps": gaps, "x": x, "exp": e, "rescaled_centroid": centroid,
                 "rescaled_scale": scale, "num": num}


def _report(rec, policy, gap_tol, sign_tol, stacklevel):
    def message(ids):
        return _degeneracy_message(gap_tol, ids, rec.gap, what="TinvNN coordinates",
                                   extra=f", or a column with |third moment| < sign_tol={sign_tol:g}",
                                   consequence="the coordinates are not invariant there",
                                   augment="average over the sign patterns and the tied eigenspace (TinvNN)")

    _report_degenerate(policy, rec.degenerate, message, stacklevel=stacklevel + 1)


def _cast(rec: TinvCoordinates, dtype) -> TinvCoordinates:
    return TinvCoordinates(**{k: (v.to(dtype) if v.is_floating_point() else v) for k, v in vars(rec).items()})


def tinv_coordinates(pos, batch=None, *, num_graphs=None, method="covariance", handed=False, normalize_scale=True,
                     degeneracy="warn", gap_tol=1e-4, sign_tol=1e-4, validate=True) -> TinvCoordinates:
    """Invariant, distance-preserving coordinates of point clouds (TinvNN's initial representation).

    Parameters
    ----------
    pos : Tensor (N, d)
        Positions, floating point, finite, d >= 2 (d = 3 uses ``geodl.ops.eigh3x3``, d = 2 a closed
        form, d > 3 ``torch.linalg.eigh``). Computed in float64, returned in ``pos.dtype``.
    batch : Tensor (N,) long, optional
        Graph id of each point (sorting not required); ``None`` for a single cloud.
    num_graphs : int, optional
        Number of graphs (avoids a host sync; allows empty graphs).
    method : str
        "covariance" (O(N): one d x d eigendecomposition per cloud, batched) or "mds" (the exact
        classical-MDS reference: the n x n double-centred Gram matrix of each cloud, a Python loop
        over clouds). The two agree to rounding (about 1e-13 in float64 on generic clouds).
    handed : bool
        Fix the last column's sign by ``det(basis) = +1`` instead of its third moment: the
        coordinates keep chirality (invariant to SO(d)/SE(d), not to reflections).
    normalize_scale : bool
        Divide by the RMS distance to the centroid (then invariant to scaling too).
    degeneracy : str
        "warn", "raise", "flag" or "augment" (the policy names of :func:`geodl.nn.frames`; here
        "augment" behaves as "flag": the averaging over the frame set is done by :class:`TinvNN`).
    gap_tol : float
        Relative eigengap below which eigenvalues count as tied; also the relative eigenvalue below
        which a column counts as null (a flat cloud's normal direction: no sign).
    sign_tol : float
        Standardised third moment below which a column's sign counts as undefined.
    validate : bool
        Check values (finite positions, ids, at least 3 points per cloud); skipped under
        ``torch.compile``.

    Returns
    -------
    TinvCoordinates
        ``coords`` (N, d) and the basis, centroid, scale, eigenvalues, gaps, sign margins and the
        degeneracy mask of every cloud.

    Raises
    ------
    ValueError
        NaN/inf in ``pos``, fewer than 3 points in a cloud, bad shapes or ids (naming the argument);
        with ``degeneracy="raise"``, a degenerate cloud (naming ``pos``); a cloud whose n x n Gram
        matrix would not fit in memory with ``method="mds"`` (naming ``pos``).

    Notes
    -----
    Pairwise distances are preserved: ``|y_i - y_j| = |x_i - x_j| / scale``. Gradients flow to
    ``pos`` (through ``geodl.ops.eigh3x3``, guarded at near-ties); the signs are piecewise constant.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import tinv_coordinates
    >>> g = torch.Generator().manual_seed(0)
    >>> pos = torch.randn(50, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    >>> rec = tinv_coordinates(pos)
    >>> Q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    >>> moved = tinv_coordinates(2.5 * pos @ Q.T + 1.0)
    >>> bool((rec.coords - moved.coords).abs().max() < 1e-12), bool(rec.degenerate.any())
    (True, False)
    >>> exact = tinv_coordinates(pos, method="mds")
    >>> bool((rec.coords - exact.coords).abs().max() < 1e-10)
    True
    """
    _check_bool("handed", handed)
    _check_bool("normalize_scale", normalize_scale)
    check_choice("degeneracy", degeneracy, _POLICIES)
    rec, _ = _coordinates(pos, batch, num_graphs=num_graphs, method=method, handed=handed,
                          normalize_scale=normalize_scale, gap_tol=gap_tol, sign_tol=sign_tol, validate=validate,
                          allow_empty=num_graphs is not None)
    _report(rec, degeneracy, gap_tol, sign_tol, stacklevel=2)
    return _cast(rec, pos.dtype)


# --------------------------------------------------------------------------------------------
# Classical and graph MDS
# --------------------------------------------------------------------------------------------


def _mds_from_squared(D2, dim, negative, index_value=0):
    """(coords (n, k), kept (k,), dropped (M,), negative_mass ()) of one squared-distance matrix."""
    n = D2.shape[0]
    w, U = _double_centred_eigh(D2)
    tol = _rounding(w)
    dropped = w[w < -tol].flip(0)  # most negative first
    total = w.abs().sum()
    mass = dropped.abs().sum() / torch.where(total > 0, total, 1.0)
    k = min(dim, n)
    wk, Uk = w[:k], U[:, :k]
    if negative == "drop":
        keep = wk > tol
        wk, Uk = wk[keep], Uk[:, keep]
    else:
        wk = torch.where(wk > tol, wk, 0.0)  # negative ones clamped; rounding-sized ones are zero too
        if k < dim:  # fewer nodes than dim: zero columns
            wk = torch.cat([wk, wk.new_zeros(dim - k)])
            Uk = torch.cat([Uk, Uk.new_zeros(n, dim - k)], 1)
    y = Uk * wk.sqrt()
    idx = torch.zeros(n, dtype=torch.long, device=D2.device)
    counts = torch.tensor([n], device=D2.device)
    y = _signed_columns(y, idx, 1, (wk / max(n, 1))[None], counts, 1e-12) if y.shape[1] else y
    return y, wk, dropped, mass


def classical_mds(distances, dim=3, *, negative="clamp", squared=False) -> MDSResult:
    """Classical multidimensional scaling of one distance matrix.

    Parameters
    ----------
    distances : Tensor (n, n)
        Symmetric, non-negative, finite, zero diagonal; floating point. Asymmetry and a diagonal up
        to ``100 sqrt(eps) max|D|`` are tolerated (``torch.cdist``'s fast mode leaves that much):
        the matrix is symmetrised and its diagonal zeroed.
    dim : int
        Number of coordinates (columns) wanted.
    negative : str
        What happens to negative eigenvalues of the double-centred Gram matrix ``B = -1/2 J D² J``
        among the top ``dim`` (non-Euclidean distances): "clamp" (set to 0: a zero column, the
        output keeps ``dim`` columns) or "drop" (their columns are removed: fewer columns). Either
        way every negative eigenvalue is reported in ``MDSResult.dropped``.
    squared : bool
        ``distances`` already holds squared distances.

    Returns
    -------
    MDSResult
        ``coords`` (n, k) in ``distances.dtype``, ``eigenvalues`` (k,), ``dropped`` (M,),
        ``negative_mass`` (), ``index`` (n,) zeros.

    Notes
    -----
    For Euclidean distances of a cloud ``X`` the coordinates are those of
    ``tinv_coordinates(X, normalize_scale=False)`` (up to rounding). Columns get the third-moment
    sign rule. The n x n matrices are checked against the available memory first (``ValueError``
    naming ``distances``).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.tinv import classical_mds
    >>> D = torch.tensor([[0.0, 1, 1, 1], [1, 0, 2, 2], [1, 2, 0, 2], [1, 2, 2, 0]], dtype=torch.float64)
    >>> res = classical_mds(D, dim=2)   # a star: the leaves 2 apart, 1 from the centre
    >>> res.coords.shape, [round(v, 9) for v in res.eigenvalues.tolist()], [round(v, 9) for v in res.dropped.tolist()]
    (torch.Size([4, 2]), [2.0, 2.0], [-0.25])
    """
    check_tensor("distances", distances, ndim=2, floating=True, finite=True)
    n = distances.shape[0]
    if distances.shape != (n, n):
        raise ValueError(f"distances: expected a square (n, n) matrix, got {tuple(distances.shape)}")
    dim = check_int("dim", dim, min=1)
    check_choice("negative", negative, _NEGATIVE)
    _check_bool("squared", squared)
    check_alloc("distances", f"an ({n}, {n}) matrix", n, 4 * n, _F64, distances.device)
    D = distances.to(_F64)
    if n:
        # torch.cdist's fast mode leaves ~sqrt(eps) on the diagonal: tolerated, then zeroed
        tol = 100 * torch.finfo(distances.dtype).eps ** 0.5 * max(float(D.abs().max()), 1e-300)
        if float((D - D.T).abs().max()) > tol:
            raise ValueError("distances: expected a symmetric matrix")
        if bool((D < 0).any()):
            raise ValueError("distances: expected non-negative distances")
        if float(D.diagonal().abs().max()) > tol:
            raise ValueError("distances: expected a zero diagonal")
    D2 = D if squared else D**2
    D2 = ((D2 + D2.T) / 2).fill_diagonal_(0.0)
    y, kept, dropped, mass = _mds_from_squared(D2, dim, negative)
    dt = distances.dtype
    return MDSResult(coords=y.to(dt), eigenvalues=kept.to(dt), dropped=dropped.to(dt), negative_mass=mass.to(dt),
                     index=torch.zeros(n, dtype=torch.long, device=distances.device),
                     dropped_index=torch.zeros(dropped.shape[0], dtype=torch.long, device=distances.device))


def _shortest_paths(edge_weight, pairs, n_b):
    """Shortest-path distances (n_b, n_b) numpy of the undirected graph with edges ``pairs`` (2, E)
    (local ids) of lengths ``edge_weight``; parallel edges keep the shortest."""
    from scipy.sparse.csgraph import shortest_path

    dense = torch.full((n_b * n_b,), float("inf"), dtype=_F64)
    flat = torch.as_tensor(pairs[0] * n_b + pairs[1], dtype=torch.long)
    dense = dense.scatter_reduce(0, flat, torch.as_tensor(edge_weight, dtype=_F64), reduce="amin").reshape(n_b, n_b)
    dense = torch.minimum(dense, dense.T)
    return shortest_path(dense.numpy(), method="auto", directed=False)


def graph_mds(edge_index, num_nodes=None, dim=3, *, edge_weight=None, batch=None, negative="clamp") -> MDSResult:
    """Classical MDS of shortest-path distances: coordinates for graphs without positions.

    Parameters
    ----------
    edge_index : Tensor (2, E) long
        Edges (read as undirected); every graph must be connected, and no edge may join two graphs.
    num_nodes : int, optional
        Number of nodes (default ``batch.shape[0]``, else ``edge_index.max() + 1``).
    dim : int
        Columns wanted.
    edge_weight : Tensor (E,), optional
        Positive finite edge lengths (default 1: hop counts). Parallel edges keep the shortest.
    batch : Tensor (N,) long, optional
        Graph of each node; each graph is embedded on its own.
    negative : str
        "clamp" or "drop" (see :func:`classical_mds`); "drop" needs a single graph (each graph would
        get its own number of columns).

    Returns
    -------
    MDSResult
        ``coords`` (N, k) float64 (``edge_weight.dtype`` when given), ``eigenvalues`` (B, k),
        ``dropped`` (M,) with ``dropped_index`` (M,), ``negative_mass`` (B,), ``index`` = batch.

    Raises
    ------
    ValueError
        A disconnected graph or an edge between graphs (naming ``edge_index``); ids out of range;
        a graph whose n x n distance matrix would not fit in memory (naming ``num_nodes``, or
        ``edge_index`` when ``num_nodes`` is not given).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.tinv import graph_mds
    >>> star = torch.tensor([[0, 0, 0], [1, 2, 3]])  # K_{1,3}: B has eigenvalues 2, 2, 0 and -1/4
    >>> res = graph_mds(star, dim=3)
    >>> [round(v, 6) for v in res.dropped.tolist()], round(float(res.negative_mass), 4)
    ([-0.25], 0.0588)
    """
    import numpy as np

    check_tensor("edge_index", edge_index, ndim=2)
    check_index("edge_index", edge_index)
    if edge_index.shape[0] != 2:
        raise ValueError(f"edge_index: expected shape (2, E), got {tuple(edge_index.shape)}")
    dim = check_int("dim", dim, min=1)
    check_choice("negative", negative, _NEGATIVE)
    E = edge_index.shape[1]
    if batch is not None:
        check_index("batch", batch)
        check_tensor("batch", batch, ndim=1)
    if num_nodes is None:
        num_nodes = batch.shape[0] if batch is not None else (int(edge_index.max()) + 1 if E else 0)
        arg = "edge_index"
    else:
        num_nodes = check_int("num_nodes", num_nodes, min=0)
        arg = "num_nodes"
    if num_nodes == 0:
        raise ValueError("num_nodes: expected at least one node")
    # per-node ids and coordinates, before anything of that size is allocated
    check_alloc(arg, num_nodes if arg == "num_nodes" else f"edges over {num_nodes} nodes", num_nodes, 2 * dim + 4,
                _F64, edge_index.device)
    check_index("edge_index", edge_index, num_nodes)
    if batch is not None:
        if batch.shape[0] != num_nodes:
            raise ValueError(f"batch: expected shape ({num_nodes},) matching num_nodes, got {tuple(batch.shape)}")
        if int(batch.min()) < 0:
            raise ValueError(f"batch: expected non-negative graph ids, got minimum {int(batch.min())}")
        graph = batch.long()
        check_alloc("batch", f"a maximum id of {int(graph.max())}", int(graph.max()) + 1, 2 * dim + 2, _F64,
                    edge_index.device)
    else:
        graph = torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
    if edge_weight is None:
        w = torch.ones(E, dtype=_F64)
        out_dtype = _F64
    else:
        check_tensor("edge_weight", edge_weight, shape=(E,), floating=True, finite=True)
        if E and not bool((edge_weight > 0).all()):
            raise ValueError("edge_weight: expected positive edge lengths")
        w, out_dtype = edge_weight.detach().to(_F64).cpu(), edge_weight.dtype
    num = int(graph.max()) + 1
    counts = torch.bincount(graph, minlength=num)
    largest = int(counts.max())
    check_alloc(arg, num_nodes if arg == "num_nodes" else f"edges over {num_nodes} nodes",
                largest, 5 * largest, _F64, edge_index.device)  # distances, D², B, eigenvectors, workspace
    if negative == "drop" and num > 1:
        raise ValueError("negative: 'drop' gives each graph its own number of columns; use 'clamp' for a batch")
    ei = edge_index.long().cpu()
    g_cpu = graph.cpu()
    if E and not bool((g_cpu[ei[0]] == g_cpu[ei[1]]).all()):
        raise ValueError("edge_index: an edge joins two different graphs of batch")
    local = torch.zeros(num_nodes, dtype=torch.long)
    coords, kept, dropped, dropped_index, masses = [], [], [], [], []
    edge_graph = g_cpu[ei[0]] if E else torch.zeros(0, dtype=torch.long)
    order = []
    for b in range(num):
        rows = (g_cpu == b).nonzero().flatten()
        n_b = rows.numel()
        if n_b == 0:
            raise ValueError(f"batch: graph {b} has no nodes")
        local[rows] = torch.arange(n_b)
        sel = edge_graph == b
        pair = local[ei[:, sel]].numpy()
        dist = _shortest_paths(w[sel].numpy(), pair, n_b)
        if not np.isfinite(dist).all():
            from scipy.sparse.csgraph import connected_components
            from scipy.sparse import coo_matrix

            k, _ = connected_components(coo_matrix((np.ones(pair.shape[1]), (pair[0], pair[1])), shape=(n_b, n_b)),
                                        directed=False)
            where = "" if num == 1 else f" {b}"
            raise ValueError(f"edge_index: graph{where} is not connected ({k} components); shortest-path distances "
                             "are infinite between components")
        D = torch.from_numpy(dist)
        y, wk, dr, mass = _mds_from_squared(D**2, dim, negative)
        coords.append(y)
        kept.append(wk)
        dropped.append(dr)
        dropped_index.append(torch.full((dr.shape[0],), b, dtype=torch.long))
        masses.append(mass)
        order.append(rows)
    out = torch.zeros(num_nodes, coords[0].shape[1], dtype=_F64)
    for rows, y in zip(order, coords):
        out[rows] = y
    dev = edge_index.device
    return MDSResult(coords=out.to(device=dev, dtype=out_dtype), eigenvalues=torch.stack(kept).to(dev, out_dtype),
                     dropped=torch.cat(dropped).to(dev, out_dtype), negative_mass=torch.stack(masses).to(dev, out_dtype),
                     index=graph, dropped_index=torch.cat(dropped_index).to(dev))


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def _names_parameter(module, name) -> bool:
    """Whether ``module.forward`` has a parameter called ``name`` (not just ``**kwargs``)."""
    import inspect

    try:
        return name in inspect.signature(module.forward if isinstance(module, nn.Module) else module).parameters
    except (TypeError, ValueError):
        return False


def _group_name(dim, handed, normalize_scale):
    return f"{'SE' if handed else 'E'}{dim}+perm" + ("+scale" if normalize_scale else "")


class TinvRepresentation(nn.Module):
    """TinvNN's initial representation as a module: point clouds -> invariant coordinates.

    Parameters
    ----------
    dim : int
        Dimension of the points (2 or 3: the declared group is E(dim)).
    method, handed, normalize_scale, degeneracy, gap_tol, sign_tol
        As in :func:`tinv_coordinates`.

    Forward
    -------
    ``forward(pos, batch=None, *, num_graphs=None) -> (N, dim)`` coordinates in ``pos.dtype``.

    Attributes
    ----------
    symmetry : geodl.groups.Symmetry
        ``E<dim>+perm+scale`` (``SE`` when handed; no ``+scale`` without ``normalize_scale``),
        output ``node:scalar``.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.tinv import TinvRepresentation
    >>> rep = TinvRepresentation()
    >>> pos = torch.randn(30, 3, generator=torch.Generator().manual_seed(1)) * torch.tensor([3.0, 2.0, 1.0])
    >>> rep(pos).shape, rep.symmetry.group
    (torch.Size([30, 3]), 'E3+perm+scale')
    """

    def __init__(self, dim=3, *, method="covariance", handed=False, normalize_scale=True, degeneracy="warn",
                 gap_tol=1e-4, sign_tol=1e-4):
        super().__init__()
        self.dim = check_int("dim", dim, min=2, max=3)
        self.method = check_choice("method", method, _METHODS)
        self.handed = _check_bool("handed", handed)
        self.normalize_scale = _check_bool("normalize_scale", normalize_scale)
        self.degeneracy = check_choice("degeneracy", degeneracy, _POLICIES)
        self.gap_tol = check_number("gap_tol", gap_tol, nonnegative=True)
        self.sign_tol = check_number("sign_tol", sign_tol, nonnegative=True)

    @property
    def symmetry(self) -> Symmetry:
        return Symmetry(_group_name(self.dim, self.handed, self.normalize_scale),
                        {"pos": "node:points", "batch": "batch"}, "node:scalar", batch_arg="batch",
                        note="exact for clouds with well-defined coordinates (see degeneracy=)")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, method={self.method}, handed={self.handed}, normalize_scale={self.normalize_scale}"

    def forward(self, pos, batch=None, *, num_graphs=None):
        check_tensor("pos", pos, ndim=2, floating=True)
        if pos.shape[1] != self.dim:
            raise ValueError(f"pos: expected shape (N, {self.dim}), got {tuple(pos.shape)}")
        rec, _ = _coordinates(pos, batch, num_graphs=num_graphs, method=self.method, handed=self.handed,
                              normalize_scale=self.normalize_scale, gap_tol=self.gap_tol, sign_tol=self.sign_tol,
                              validate=True, allow_empty=num_graphs is not None)
        _report(rec, self.degeneracy, self.gap_tol, self.sign_tol, stacklevel=4)  # -> the caller
        return rec.coords.to(pos.dtype)


class TinvNN(nn.Module):
    """Any backbone on TinvNN's invariant initial representation (and the equivariant extension).

    The backbone is called once, on the backbone call protocol
    ``backbone(x, coords, batch, num_graphs=B, **extra)`` (``num_graphs`` only when its forward takes
    it), with ``coords`` the invariant coordinates of :func:`tinv_coordinates` in place of ``pos``;
    other node inputs are expressed in the same basis (``inputs=``). Outputs of a geometric kind are
    mapped back through the basis (and the scale): ``y_world = s · R y (+ c)``.

    Parameters
    ----------
    backbone : nn.Module
        ``forward(x, pos, batch=None, *, num_graphs=None, **extra)`` returning ``(num_graphs, ...)``
        (``level="graph"``) or ``(N, ...)`` (``level="node"``), e.g. PointNet or DGCNN.
    handed : bool
        SO(d)/SE(d)-only variant that keeps chirality (see :func:`tinv_coordinates`).
    normalize_scale : bool
        Scale normalisation (``+scale`` in the declared group).
    inputs : dict, optional
        Kind of each input by argument name, as in :class:`~geodl.nn.FrameAveraging`: "points"
        (centred, rotated, divided by the scale), "vectors" and "pseudovectors" (rotated, divided
        by the scale, as ``geodl.groups.act`` scales them), "tensor2" (rotated), "scalar" (passed
        through); "edge_index" and "edge:scalar" pass through (relabelled/repeated per copy with
        ``"augment"``). Default ``{"pos": "points", "x": "scalar", "vel": "vectors",
        "edge_index": "edge_index", "edge_attr": "edge:scalar"}``; only the names given are declared
        in ``symmetry``.
    output : str
        "invariant", "vectors", "points", "pseudovectors" or "tensor2" (scale applied to the first
        three, as ``geodl.groups.act`` does).
    level : str
        "graph" or "node".
    source : str
        "pos" (coordinates from the positions) or "graph" (from :func:`graph_mds` of
        ``edge_index``, with ``graph_dim`` columns; ``pos`` is not used; symmetry ``perm``; output
        "invariant" only). ``edge_index`` and the per-edge inputs are passed on to the backbone only
        when its forward has a parameter of that name (a PointNet takes none).
    graph_dim : int
        Columns of the graph coordinates.
    degeneracy : str
        "warn", "raise", "flag" or "augment". With "augment" every flagged cloud is run over the
        frame set ``V S Q`` (all sign patterns times ``augment_samples`` Haar rotations inside the
        tied eigenspace, drawn with ``generator``; the frames of :func:`geodl.nn.frames`) and
        averaged: invariant in expectation. The other clouds use their single canonical frame.
    gap_tol, sign_tol : float
        As in :func:`tinv_coordinates`.
    augment_samples : int
        Rotations per flagged cloud with "augment".
    generator : torch.Generator, optional
        Seeds the "augment" rotations.

    Attributes
    ----------
    symmetry : geodl.groups.Symmetry
        ``E<d>+perm+scale`` (``SE`` when handed, no ``+scale`` without ``normalize_scale``; ``perm``
        for ``source="graph"``), with the kinds of ``pos``, ``batch`` and the inputs named in
        ``inputs=``, and the output kind. ``d`` is the backbone's ``pos_channels`` (3 without one).

    Notes
    -----
    The forward costs one batched 3 x 3 eigendecomposition and a few O(N) reductions besides the
    backbone (no loop over clouds). With ``return_mask=True`` it returns ``(output, degenerate)``.
    "augment" reads the number of flagged clouds (a host sync) and folds their copies into the batch.
    As for :class:`~geodl.nn.FrameAveraging`, input values (finite positions, ids, at least 3 points
    per cloud) are validated when ``num_graphs`` is not given; with ``num_graphs`` nothing is read
    back for validation (no host sync), so a NaN position then gives NaN outputs.
    Empty graphs (``num_graphs`` given) get the identity basis and the backbone's empty-graph output.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import PointNet, TinvNN
    >>> _ = torch.manual_seed(0)
    >>> net = TinvNN(PointNet(out_channels=2, hidden_channels=(8, 16))).double()
    >>> pos = torch.randn(20, 3, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    >>> Q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    >>> torch.allclose(net(pos=pos), net(pos=2.0 * pos @ Q.T + 1.0))
    True
    """

    def __init__(self, backbone, *, handed=False, normalize_scale=True, inputs=None, output="invariant", level="graph",
                 source="pos", graph_dim=3, degeneracy="warn", gap_tol=1e-4, sign_tol=1e-4, augment_samples=8,
                 generator=None):
        super().__init__()
        if not callable(backbone):
            raise TypeError(f"backbone: expected a callable nn.Module, got {type(backbone).__name__}")
        self.backbone = backbone
        self.handed = _check_bool("handed", handed)
        self.normalize_scale = _check_bool("normalize_scale", normalize_scale)
        if inputs is not None and not isinstance(inputs, dict):
            raise TypeError(f"inputs: expected a dict of argument name -> kind, got {type(inputs).__name__}")
        self._declared, self.inputs = _parse_inputs(inputs)
        self.output = _frame_kind("output", output, _OUT_KINDS)
        if self.output == "scalar":
            self.output = "invariant"
        self.level = check_choice("level", level, ("graph", "node"))
        self.source = check_choice("source", source, _SOURCES)
        self.graph_dim = check_int("graph_dim", graph_dim, min=1)
        if self.source == "graph" and self.output != "invariant":
            raise ValueError(f"output: source='graph' has no basis to map {self.output!r} outputs back; "
                             "use output='invariant'")
        self.degeneracy = check_choice("degeneracy", degeneracy, _POLICIES)
        self.gap_tol = check_number("gap_tol", gap_tol, nonnegative=True)
        self.sign_tol = check_number("sign_tol", sign_tol, nonnegative=True)
        self.augment_samples = check_int("augment_samples", augment_samples, min=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        pc = getattr(backbone, "pos_channels", 3)
        self.dim = pc if isinstance(pc, int) and not isinstance(pc, bool) and pc in (2, 3) else 3
        self._pass_num_graphs = _accepts_num_graphs(backbone)

    @property
    def symmetry(self) -> Symmetry:
        if self.source == "graph":
            in_kinds = {"edge_index": "edge_index", "batch": "batch"}
            group = "perm"
        else:
            in_kinds = {"pos": "node:points", "batch": "batch"}
            group = _group_name(self.dim, self.handed, self.normalize_scale)
        for key, kind in self.inputs.items():
            if key != "pos" and key in self._declared:
                in_kinds[key] = {"edge_index": "edge_index", "edge:scalar": "scalar"}.get(kind, f"node:{kind}")
        out = "scalar" if self.output == "invariant" else self.output
        return Symmetry(group, in_kinds, f"node:{out}" if self.level == "node" else out, batch_arg="batch",
                        note="exact for inputs with well-defined coordinates (see degeneracy=)")

    def extra_repr(self) -> str:
        return (f"handed={self.handed}, normalize_scale={self.normalize_scale}, output={self.output}, "
                f"level={self.level}, source={self.source}")

    # ---------------------------------------------------------------- forward
    def forward(self, x=None, pos=None, batch=None, *, num_graphs=None, return_mask=False, **extra):
        """Backbone output on the invariant coordinates.

        ``pos`` (N, d), ``x`` and the other node inputs (N, ...), ``batch`` (N,) or None,
        ``num_graphs`` (optional: avoids host syncs and allows empty graphs), ``edge_index`` (2, E)
        and per-edge inputs if declared. Returns (B, ...) for ``level="graph"``, (N, ...) for
        ``level="node"``; with ``return_mask=True`` also the (B,) degeneracy mask.
        """
        named, edges = _split_inputs(self.inputs, x, extra)
        FrameAveraging._check_edges(self, edges, None)
        if self.source == "graph":
            return self._forward_graph(named, edges, batch, num_graphs, return_mask)
        if pos is None:
            raise ValueError("pos: required (N, d) positions (source='pos')")
        check_tensor("pos", pos, ndim=2, floating=True)
        for key, value in named.items():
            if value.shape[:1] != pos.shape[:1]:
                raise ValueError(f"{key}: expected {pos.shape[0]} rows matching pos, got shape {tuple(value.shape)}")
        rec, aux = _coordinates(pos, batch, num_graphs=num_graphs, method="covariance", handed=self.handed,
                                normalize_scale=self.normalize_scale, gap_tol=self.gap_tol, sign_tol=self.sign_tol,
                                validate=num_graphs is None, allow_empty=num_graphs is not None)
        _report(rec, self.degeneracy, self.gap_tol, self.sign_tol, stacklevel=4)  # -> the caller
        num = aux["num"]
        if self.degeneracy == "augment" and not torch.compiler.is_compiling() and bool(rec.degenerate.any()):
            out = self._forward_augment(rec, aux, pos, named, edges, num)
        else:
            out = self._forward_canonical(rec, pos, batch, named, edges, num)
        return (out, rec.degenerate) if return_mask else out

    def _call(self, xf, coords, batch, num, folded):
        if self._pass_num_graphs:
            folded["num_graphs"] = num
        out = self.backbone(xf, coords, batch, **folded)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"backbone: expected a Tensor output, got {type(out).__name__}")
        return out

    def _inputs_in(self, named, R, c, s, rows_of):
        """Node inputs in the frames ``R`` (rows, d, d) with centroid/scale ``c``/``s`` per row."""
        out = {}
        for key, value in named.items():
            kind = self.inputs[key]
            v = value[rows_of] if rows_of is not None else value
            if kind == "scalar":
                out[key] = v
                continue
            if v.shape[-1] != R.shape[-1]:
                raise ValueError(f"{key}: kind {kind!r} needs a trailing dimension {R.shape[-1]}, got {tuple(v.shape)}")
            v64 = v.to(_F64)
            if kind == "points":
                v64 = v64 - _expand_like(c, v64)
            if kind != "tensor2":
                v64 = v64 / s.reshape(-1, *([1] * (v64.dim() - 1)))
            out[key] = _to_frame(v64, R[:, None], kind)[:, 0].to(value.dtype)
        return out

    def _back(self, y, R, c, s):
        """Outputs (rows, ...) in frame coordinates -> world (rows, ...) through R (rows, d, d), c, s."""
        if self.output == "invariant":
            return y
        self._check_output(y[:, None])
        y64 = y.to(_F64)
        if self.output != "tensor2":
            y64 = y64 * s.reshape(-1, *([1] * (y64.dim() - 1)))
        return _from_frame(y64[:, None], R[:, None], c, self.output)[:, 0].to(y.dtype)

    def _check_output(self, y):
        FrameAveraging._check_output(self, y)  # the same shape rule as frame averaging

    def _world(self, rec):
        """Per-graph basis, centroid and scale in float64 (the record is float64 here)."""
        return rec.basis, rec.centroid, rec.scale

    def _forward_canonical(self, rec, pos, batch, named, edges, num):
        R, c, s = self._world(rec)
        g = rec.index
        canon = self._inputs_in(named, R[g], c[g], s[g], None)
        xf = canon.pop("x", None)
        out = self._call(xf, rec.coords.to(pos.dtype), batch, num, {**canon, **edges})
        if self.level == "graph":
            if out.shape[0] != num:
                raise ValueError(f"backbone: expected {num} per-graph output rows (level='graph'), got {tuple(out.shape)}")
            return self._back(out, R, c, s)
        if out.shape[0] != pos.shape[0]:
            raise ValueError(f"backbone: expected {pos.shape[0]} per-node output rows (level='node'), "
                             f"got {tuple(out.shape)}")
        return self._back(out, R[g], c[g], s[g])

    def _augment_frames(self, rec, aux):
        """(num, K, d, d) frames V S Q P (ascending eigenbasis, sign patterns, tied-eigenspace rotations,
        columns reversed to the descending order) of every cloud."""
        V, gaps = aux["V"], aux["gaps"]
        d = V.shape[-1]
        signs = _sign_patterns(d, not self.handed).to(V.device)
        if self.handed:  # det(V S P) = +1: det(V) = +1, det(S) = det(P)
            flip = -1.0 if (d // 2) % 2 else 1.0
            signs = signs * torch.tensor([1.0] * (d - 1) + [flip], dtype=_F64, device=V.device)
        M = self.augment_samples
        check_alloc("augment_samples", M, aux["num"], signs.shape[0] * M * d * d, _F64, V.device)
        Q = _eigenspace_rotations(gaps.detach(), rec.degenerate, self.gap_tol, M, self.generator)
        signed = V[:, None] * signs[None, :, None, :]
        rot = (signed[:, None] @ Q[:, :, None]).flatten(1, 2)
        return rot.flip(-1)

    def _forward_augment(self, rec, aux, pos, named, edges, num):
        dev = pos.device
        frames = self._augment_frames(rec, aux)
        K = frames.shape[1]
        k = torch.where(rec.degenerate, K, 1)
        o = torch.cumsum(k, 0) - k
        T = int(k.sum())
        g = rec.index
        n = pos.shape[0]
        rep = k[g]
        rows = int(rep.sum())
        width = sum(max(v[:1].numel(), 1) for v in named.values()) + 2 * pos.shape[-1] + pos.shape[-1] ** 2
        check_alloc("pos", f"{n} points, flagged clouds repeated in {K} frames (degeneracy='augment')", rows, 2 * width,
                    _F64, dev)
        copy_graph = torch.repeat_interleave(torch.arange(num, device=dev), k, output_size=T)
        copy_frame = torch.arange(T, device=dev) - o[copy_graph]
        R_t = torch.where(rec.degenerate[copy_graph, None, None],
                          frames[copy_graph, copy_frame.clamp(max=K - 1)], rec.basis[copy_graph])
        start = torch.cumsum(rep, 0) - rep
        row_point = torch.repeat_interleave(torch.arange(n, device=dev), rep, output_size=rows)
        row_copy = o[g[row_point]] + torch.arange(rows, device=dev) - start[row_point]
        perm = torch.argsort(row_copy, stable=True)
        inv = torch.empty_like(perm).scatter_(0, perm, torch.arange(rows, device=dev))
        c_r, s_r = aux["rescaled_centroid"], aux["rescaled_scale"]
        pts, cps = row_point[perm], row_copy[perm]
        y = ((aux["x"][pts] - c_r[g[pts]]).unsqueeze(1) @ R_t[cps]).squeeze(1)
        coords = y / s_r[g[pts], None] if self.normalize_scale else torch.ldexp(y, aux["exp"])
        _, c, s = self._world(rec)
        canon = self._inputs_in(named, R_t[cps], c[g[pts]], s[g[pts]], pts)
        folded = {}
        for key, value in edges.items():
            e_graph = g[value[0].long()] if self.inputs[key] == "edge_index" else None
            if e_graph is None:
                ref = next((v for kk, v in edges.items() if self.inputs[kk] == "edge_index"), None)
                if ref is None:
                    raise ValueError(f"{key}: per-edge inputs need an edge_index input with degeneracy='augment'")
                e_graph = g[ref[0].long()]
            e_rep = k[e_graph]
            e_rows = torch.repeat_interleave(torch.arange(value.shape[-1] if self.inputs[key] == "edge_index"
                                                          else value.shape[0], device=dev), e_rep)
            e_j = torch.arange(e_rows.shape[0], device=dev) - (torch.cumsum(e_rep, 0) - e_rep)[e_rows]
            if self.inputs[key] == "edge_index":
                ei = value.long()[:, e_rows]
                folded[key] = torch.stack([inv[start[ei[0]] + e_j], inv[start[ei[1]] + e_j]]).to(value.dtype)
            else:
                folded[key] = value[e_rows]
        xf = canon.pop("x", None)
        out = self._call(xf, coords.to(pos.dtype), cps, T, {**canon, **folded})
        if self.level == "graph":
            if out.shape[0] != T:
                raise ValueError(f"backbone: expected {T} per-graph output rows (level='graph'), got {tuple(out.shape)}")
            back = self._back(out, R_t, c[copy_graph], s[copy_graph])
            total = back.new_zeros(num, *back.shape[1:]).index_add_(0, copy_graph, back)
            return total / k.to(total.dtype).reshape(-1, *([1] * (total.dim() - 1)))
        if out.shape[0] != rows:
            raise ValueError(f"backbone: expected {rows} per-node output rows (level='node'), got {tuple(out.shape)}")
        back = self._back(out, R_t[cps], c[g[pts]], s[g[pts]])
        total = back.new_zeros(n, *back.shape[1:]).index_add_(0, pts, back)
        return total / rep.to(total.dtype).reshape(-1, *([1] * (total.dim() - 1)))

    def _forward_graph(self, named, edges, batch, num_graphs, return_mask):
        ei = next((v for k, v in edges.items() if self.inputs[k] == "edge_index"), None)
        if ei is None:
            raise ValueError("edge_index: required with source='graph' (the coordinates come from shortest paths)")
        n = None
        for key, value in named.items():
            n = value.shape[0]
            break
        if batch is not None:
            n = batch.shape[0]
        res = graph_mds(ei, num_nodes=n, dim=self.graph_dim, batch=batch, negative="clamp")
        num = int(res.index.max()) + 1
        if num_graphs is not None and check_int("num_graphs", num_graphs, min=1) != num:
            raise ValueError(f"num_graphs: {num_graphs} does not match the {num} graphs of batch (source='graph')")
        # the same degeneracy rule as for positions: tied eigenvalues or a sign-ambiguous column
        y64 = res.coords.to(_F64)
        lam = res.eigenvalues.to(_F64) / torch.bincount(res.index, minlength=num)[:, None].to(_F64)
        counts = torch.bincount(res.index, minlength=num)
        det = torch.ones(num, dtype=_F64, device=y64.device)
        _, margin = _fix_signs(y64, res.index, num, lam, counts, det, False, self.gap_tol)
        # zero columns (fewer positive eigenvalues than graph_dim) have no sign and tie harmlessly
        live = lam > self.gap_tol * lam[:, :1]
        gaps = (lam[:, :-1] - lam[:, 1:]) / lam.abs().amax(-1, keepdim=True).clamp_min(1e-300)
        gap = torch.where(live[:, :-1], gaps, float("inf")).amin(-1) if lam.shape[1] > 1 else lam.new_ones(num)
        mask = ~(gap >= self.gap_tol) | ((margin < self.sign_tol) & live).any(-1)

        def message(ids):
            return _degeneracy_message(self.gap_tol, ids, gap, what="graph MDS coordinates",
                                       extra=f", or a column with |third moment| < sign_tol={self.sign_tol:g}",
                                       consequence="the coordinates are not permutation invariant there",
                                       augment="flag them as well ('augment' does not average graph coordinates)",
                                       name="edge_index")

        _report_degenerate(self.degeneracy, mask, message, stacklevel=5)  # -> the caller
        dtype = next((v.dtype for v in named.values() if v.is_floating_point()),
                     next((p.dtype for p in self.backbone.parameters() if p.is_floating_point()), _F64))
        coords = res.coords.to(dtype)
        for key, value in named.items():
            if value.shape[0] != coords.shape[0]:
                raise ValueError(f"{key}: expected {coords.shape[0]} rows matching the graph's nodes, "
                                 f"got shape {tuple(value.shape)}")
        xf = named.pop("x", None)
        # the edges made the coordinates; they go on to the backbone only if its forward names them
        passed = {k: v for k, v in edges.items() if _names_parameter(self.backbone, k)}
        out = self._call(xf, coords, batch, num, {**named, **passed})
        return (out, mask) if return_mask else out
