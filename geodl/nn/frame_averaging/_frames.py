"""PCA frames and frame averaging (Puny et al., "Frame Averaging for Invariant and Equivariant
Network Design", ICLR 2022).

A *frame* of a point cloud X is a small set F(X) of orthogonal matrices (plus a centroid for the
groups with translations) that moves with the cloud: F(g·X) = g·F(X) as a set. Averaging a
backbone over the frames, ``<φ>(X) = 1/|F| Σ_{R∈F(X)} ρ(R)·φ(ρ(R)⁻¹·X)``, makes any backbone
exactly invariant (or equivariant) for every input whose frame is well defined.

PCA frames: centroid ``c`` (zeros for O(d)/SO(d), which fix the origin), second-moment matrix
``C = Σ (x - c)(x - c)ᵀ / n`` and its eigenvectors ``v_1, …, v_d`` (eigenvalues ascending) as the
columns of ``R``. Eigenvectors are defined up to sign, so the frame set enumerates the signs in a
fixed order: all ``2^d`` patterns for O(d)/E(d) (8 in 3-D, 4 in 2-D) and the ``2^(d-1)`` patterns
with ``det R = +1`` for SO(d)/SE(d) (the last column is then the cross product / the +90° rotation
of the others). Frame number 0 is always the solver's right-handed eigenbasis.

Degeneracy. When two eigenvalues tie the eigenbasis is not defined (any rotation inside the tied
eigenspace is as good), and the averaged model is no longer invariant; the invariance error grows
like machine epsilon / relative eigengap. The relative gap
``min_i (λ_{i+1} - λ_i) / max(|λ|_max, tiny)`` is computed for every sample and compared with
``gap_tol``. What happens then is the caller's explicit choice (``degeneracy=``):

``"raise"``
    ``ValueError`` naming ``pos`` with the sample ids and their gaps.
``"warn"`` (default)
    a ``RuntimeWarning`` with the same information, then proceed with the arbitrary eigenbasis.
``"flag"``
    proceed silently; ``Frames.degenerate`` is the mask the caller must look at.
``"augment"``
    enlarge the frame set of every flagged sample: ``augment_samples`` rotations ``Q_m``, drawn
    (with ``generator``) from the Haar measure of the rotations *inside the tied eigenspace*
    (SO(2) about the untied axis when two eigenvalues tie, SO(3) when all three do, SO(2) for a
    tied 2-D cloud), are composed with every sign pattern: frames ``V S Q_m`` (signs first, so
    that the sign ambiguity of ``V`` only permutes the set: a nearly tied cloud whose eigenbasis is
    resolved up to signs is then exactly as invariant as without augmentation for the same
    draws -- seed ``generator`` the same way for both calls; fresh draws add the Monte-Carlo
    error below). Non-flagged
    samples repeat their ordinary frames, so their average is unchanged. What this gives: for an
    input whose flagged eigenvalues tie *exactly*, the set {V Q S} with Haar Q has the same
    distribution for X and g·X, so the averaged model is invariant/equivariant **in
    expectation** over the sampled rotations; a single call has a Monte-Carlo error that falls
    like ``1/sqrt(augment_samples)``. For a cloud whose symmetry is a *finite* subgroup of the
    tied eigenspace's group (cube, tetrahedron) the average is over the larger continuous group,
    which is still exactly invariant in expectation. Nothing here is exact in a single call.

A generic *planar* cloud (eigenvalues 0 < λ_2 < λ_3) is not degenerate: its normal is the
eigenvector of the zero eigenvalue and the frame is well defined. Planar clouds with an
isotropic in-plane spread (a square grid, a disc, a regular polygon) and clouds on a line are.

Everything is computed in float64 internally and returned in the dtype of ``pos``, after an exact
power-of-two rescaling of the positions (so clouds at any finite scale, 1e-160 or 1e155, have the
frames of the same cloud at scale 1, bit for bit).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from geodl._checks import check_alloc, check_choice, check_int, check_number, check_tensor
from geodl.nn._pca import (  # shared with TinvNN (geodl.nn.tinv)
    _POLICIES,
    _check_ids,
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
from geodl.ops import knn_graph

__all__ = ["frames", "Frames"]

# the geometric groups that PCA frames are built for (names as in geodl.groups.get_group)
_FRAME_GROUPS = ("O3", "SO3", "E3", "SE3", "O2", "SO2", "E2", "SE2")
_KINDS = ("global", "segment", "knn")
# kinds of geodl.groups (parse_kind) that a frame acts on; "invariant" is an alias of "scalar"
_IN_KINDS = ("scalar", "points", "vectors", "pseudovectors", "tensor2")
_OUT_KINDS = ("invariant", "scalar", "vectors", "points", "tensor2", "pseudovectors")


def _parse_group(group) -> tuple[str, int, bool, bool]:
    """(name, d, reflections, translations) of a frame group given by name or ``geodl.groups.Group``.

    A ``"+perm"`` part is accepted and dropped: frames are permutation equivariant by construction.
    """
    from geodl.groups import get_group

    G = get_group(group)
    geo = "+".join(p for p in G.name.split("+") if p != "perm")
    if geo not in _FRAME_GROUPS:
        raise ValueError(f"group: PCA frames exist for {list(_FRAME_GROUPS)} (optionally '+perm'), got {G.name!r}")
    return geo, G.dim, G.has_reflections, G.has_translations


def _frame_kind(name: str, kind, allowed) -> str:
    """Base name of a ``geodl.groups`` kind (``"node:vectors"`` -> ``"vectors"``) that frames act on."""
    if kind == "invariant" and "invariant" in allowed:
        return kind
    from geodl.groups import parse_kind

    try:
        base = parse_kind(kind).base
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: {err}") from None
    if base not in allowed:
        raise ValueError(f"{name}: frames act on the kinds {list(allowed)}, got {kind!r}")
    return base


# --------------------------------------------------------------------------------------------
# Second moments and eigenbases
# --------------------------------------------------------------------------------------------




# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


@dataclass
class Frames:
    """Frame sets of a batch of point clouds (one set per sample, segment or point).

    Attributes
    ----------
    centroid : Tensor (B, d)
        Origin of each frame (zeros for O(d)/SO(d)).
    rotations : Tensor (B, F, d, d)
        Frame axes as columns: canonical coordinates of a point are ``(x - c) @ R``.
    eigenvalues : Tensor (B, d)
        Eigenvalues of the second moment, ascending.
    gap : Tensor (B,)
        Relative eigengap ``min_i (λ_{i+1} - λ_i) / max|λ|``.
    degenerate : Tensor (B,) bool
        ``gap < gap_tol`` or a NaN gap: the frame of that sample is not well defined (``False``
        for an empty graph, whose frame no point uses).
    index : Tensor (N,) long
        Which frame set each point uses.
    group : str
        The group the frames were built for.
    """

    centroid: torch.Tensor
    rotations: torch.Tensor
    eigenvalues: torch.Tensor
    gap: torch.Tensor
    degenerate: torch.Tensor
    index: torch.Tensor
    group: str

    @property
    def num_frames(self) -> int:
        return self.rotations.shape[1]

    def to_canonical(self, x: torch.Tensor, kind: str = "points") -> torch.Tensor:
        """Express per-point ``x`` (N, ..., d) in every frame of its set: (N, F, ..., d).

        ``kind`` is one of the ``geodl.groups`` kinds "scalar", "points", "vectors",
        "pseudovectors", "tensor2" (a ``"node:"`` prefix is accepted).
        """
        kind = _frame_kind("kind", kind, _IN_KINDS)
        R = self.rotations[self.index]
        if kind == "points":
            x = x - _expand_like(self.centroid[self.index], x)
        return _to_frame(x, R, kind)

    def from_canonical(self, y: torch.Tensor, kind: str = "vectors") -> torch.Tensor:
        """Map per-point outputs (N, F, ..., d) in frame coordinates back: (N, F, ..., d).

        ``kind`` is one of "scalar" (alias "invariant"), "vectors", "points", "tensor2",
        "pseudovectors" (a ``"node:"`` prefix is accepted).
        """
        kind = _frame_kind("kind", kind, _OUT_KINDS)
        return _from_frame(y, self.rotations[self.index], self.centroid[self.index], kind)


def _expand_like(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(rows, d) -> (rows, 1, ..., 1, d) broadcasting against ``x`` (rows, ..., d)."""
    return c.reshape(c.shape[0], *([1] * (x.dim() - 2)), c.shape[-1])


def _det_sign(R: torch.Tensor) -> torch.Tensor:
    return torch.linalg.det(R).sign()


def _to_frame(x: torch.Tensor, R: torch.Tensor, kind: str) -> torch.Tensor:
    """x (n, ...) in frames R (n, F, d, d) -> (n, F, ...); points must already be centred."""
    if kind == "scalar":
        return x.unsqueeze(1).expand(x.shape[0], R.shape[1], *x.shape[1:])
    if kind == "tensor2":
        return torch.einsum("nfji,n...jk,nfkl->nf...il", R, x, R)
    y = torch.einsum("n...j,nfji->nf...i", x, R)
    if kind == "pseudovectors":
        y = y * _det_sign(R).reshape(*R.shape[:2], *([1] * (y.dim() - 2)))
    return y


def _from_frame(y: torch.Tensor, R: torch.Tensor, c: torch.Tensor, kind: str) -> torch.Tensor:
    """Outputs y (n, F, ...) in frame coordinates -> world coordinates (n, F, ...)."""
    if kind in ("invariant", "scalar"):
        return y
    if kind == "tensor2":
        return torch.einsum("nfij,nf...jk,nflk->nf...il", R, y, R)
    out = torch.einsum("nf...j,nfij->nf...i", y, R)
    if kind == "pseudovectors":
        out = out * _det_sign(R).reshape(*R.shape[:2], *([1] * (out.dim() - 2)))
    elif kind == "points":
        out = out + c.reshape(c.shape[0], 1, *([1] * (out.dim() - 3)), c.shape[-1])
    return out


def frames(
    pos: torch.Tensor,
    batch: torch.Tensor | None = None,
    group="O3",
    *,
    num_graphs: int | None = None,
    kind: str = "global",
    segment: torch.Tensor | None = None,
    k: int = 16,
    degeneracy: str = "warn",
    gap_tol: float = 1e-4,
    differentiable: bool = False,
    generator: torch.Generator | None = None,
    augment_samples: int = 8,
    validate: bool = True,
) -> Frames:
    """PCA frames of point clouds for O(d), SO(d), E(d) or SE(d), d = 2 or 3.

    Parameters
    ----------
    pos : Tensor (N, d)
        Point positions, floating point, finite.
    batch : Tensor (N,) long, optional
        Graph id of each point (sorted not required); ``None`` for a single cloud.
    group : str
        "O3", "SO3", "E3", "SE3" (d = 3) or "O2", "SO2", "E2", "SE2" (d = 2). E/SE centre the
        cloud at its centroid; O/SO keep the origin and use the second moment about it.
    num_graphs : int, optional
        Number of graphs (avoids a host sync); default ``batch.max() + 1``.
    kind : str
        "global" (one frame set per graph), "segment" (one per ``segment`` id: ids are global over
        the batch, as in PyG after collation) or "knn" (one per point, from its ``k`` nearest
        neighbours within its graph, the point included).
    degeneracy : str
        "warn", "raise", "flag" or "augment" (see the module docstring).
    gap_tol : float
        Relative eigengap below which a frame counts as degenerate.
    differentiable : bool
        Keep the autograd graph through centroid, second moment and eigenvectors (needed for
        forces -∇E); otherwise the frames are computed from ``pos.detach()``, and gradients with
        respect to ``pos`` miss the motion of the frame: a ``UserWarning`` (naming
        ``differentiable=True``) is given when ``pos.requires_grad`` under grad mode with
        ``differentiable=False``. Eigenvector derivatives are guarded at near-ties by
        ``geodl.ops.eigh3x3`` and finite at exact ties (coincident points included).
    generator : torch.Generator, optional
        Seeds the rotations drawn by ``degeneracy="augment"``.
    augment_samples : int
        Rotations drawn per tied eigenspace with ``degeneracy="augment"``; the frame count is then
        ``F * augment_samples``. A request whose frames would not fit in memory raises
        ``ValueError`` naming ``augment_samples`` before allocating.
    validate : bool
        Check the values of the inputs (finite positions, ids, at least 2 points per cloud,
        ``num_graphs > batch.max()``). With ``validate=False``, ``kind="global"``, ``num_graphs``
        given and ``degeneracy`` "flag" or "augment", nothing reads a value back to the host
        (no synchronisation on CUDA). Under ``torch.compile`` the value checks are skipped.

    Returns
    -------
    Frames
        ``rotations`` (B, F, d, d) with F = 8 (O3/E3), 4 (SO3/SE3, O2/E2), 2 (SO2/SE2).

    Notes
    -----
    Input validation reads values (finite positions, at least 2 points per cloud, ``batch.max()``
    unless ``num_graphs`` is given), and ``"raise"``/``"warn"`` read the degeneracy mask: each is
    a host sync on CUDA. ``num_graphs`` is ignored for ``kind="segment"`` (segments are counted
    from ``segment``) and ``kind="knn"`` (one frame set per point).

    Empty graphs. With ``num_graphs`` given, graphs with no points are allowed (a PyG batch may
    hold empty graphs, and ``N = 0`` with ``batch`` of shape ``(0,)`` is B empty graphs): they
    get a zero centroid, zero eigenvalues, the identity eigenbasis (times the sign patterns) and
    ``degenerate = False`` (no point uses their frame, so nothing can break invariance). When
    the graph count is read from ``batch`` (``num_graphs=None``), an id with fewer than 2 points
    raises ``ValueError``, and a single cloud (``batch=None``) must have at least 2 points. A graph
    with exactly one point raises whenever values are validated (its frame is undefined).

    Under ``torch.compile`` the value checks are skipped, and so are the ``"raise"``/``"warn"``
    reads of the degeneracy mask and the ``differentiable`` warning (``Frames.degenerate`` is still
    returned: use ``degeneracy="flag"`` and look at it); the frames are the same as in eager mode.

    A sample whose eigengap is NaN (eigenvalues that overflowed) counts as degenerate.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import frames
    >>> g = torch.Generator().manual_seed(0)
    >>> pos = torch.randn(10, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> fr = frames(pos, group="E3")
    >>> fr.rotations.shape, bool(fr.degenerate.any())
    (torch.Size([1, 8, 3, 3]), False)
    >>> canon = (pos - fr.centroid) @ fr.rotations[0, 0]      # canonical coordinates
    >>> torch.allclose(canon @ fr.rotations[0, 0].T + fr.centroid, pos)
    True
    """
    name, d, reflections, translations = _parse_group(group)
    compiling = torch.compiler.is_compiling()
    if not compiling and not differentiable and isinstance(pos, torch.Tensor):
        _warn_detached(pos, stacklevel=3)
    return _frames(pos, batch, (name, d, reflections, translations), num_graphs=num_graphs, kind=kind,
                   segment=segment, k=k, degeneracy=degeneracy, gap_tol=gap_tol, differentiable=differentiable,
                   generator=generator, augment_samples=augment_samples, validate=validate,
                   allow_empty=num_graphs is not None)


def _warn_detached(pos: torch.Tensor, stacklevel: int) -> None:
    """UserWarning when gradients will flow to ``pos`` but the frames are detached from it."""
    if pos.requires_grad and torch.is_grad_enabled():
        warnings.warn(
            "pos: requires grad but differentiable=False: the frames are computed from pos.detach(), so "
            "gradients with respect to pos (forces -dE/dpos) miss the motion of the frames and are wrong; "
            "pass differentiable=True to differentiate through them",
            UserWarning, stacklevel=stacklevel + 1,
        )


def _frames(pos, batch, parsed, *, num_graphs, kind, segment, k, degeneracy, gap_tol, differentiable,
            generator, augment_samples, validate, allow_empty) -> Frames:
    """:func:`frames` without the ``differentiable`` warning; ``allow_empty``: graphs may have no points."""
    name, d, reflections, translations = parsed
    compiling = torch.compiler.is_compiling()
    validate = bool(validate) and not compiling  # value checks would break the graph
    check_tensor("pos", pos, ndim=2, floating=True, finite=validate)
    if pos.shape[1] != d:
        raise ValueError(f"pos: expected shape (N, {d}) for group {name}, got {tuple(pos.shape)}")
    n = pos.shape[0]
    check_choice("kind", kind, _KINDS)
    if n == 0 and not (allow_empty and batch is not None and kind == "global"):
        raise ValueError("pos: empty point cloud (0 points); frames need at least 2 points "
                         "(empty graphs are allowed in a batch given with num_graphs=)")
    check_choice("degeneracy", degeneracy, _POLICIES)
    gap_tol = check_number("gap_tol", gap_tol, nonnegative=True)
    augment_samples = check_int("augment_samples", augment_samples, min=1)
    batch, graph, num_graphs, num_graphs_given = _graph_ids_of(batch, n, num_graphs, validate, allow_empty, pos.device)
    if kind == "global":  # per-graph moments, eigenbases and frames, checked before allocating
        arg, value = ("num_graphs", num_graphs) if num_graphs_given else ("batch", f"a maximum id of {num_graphs - 1}")
        F = 2 ** (d if reflections else d - 1)  # the augmented frames are checked below, naming augment_samples
        check_alloc(arg, value, num_graphs, 2 * d + 2 * d * d + F * d * d, torch.float64, pos.device, row_bytes=16)
    if validate:
        counts = torch.bincount(graph, minlength=num_graphs)
        small = ((counts == 1) if allow_empty else (counts < 2)).nonzero().flatten()
        if small.numel():
            arg = "pos" if batch is None else "batch"
            raise ValueError(
                f"{arg}: clouds {small[:10].tolist()} have fewer than 2 points (counts "
                f"{counts[small[:10]].tolist()}); frames need at least 2 points per cloud"
            )

    x = (pos if differentiable else pos.detach()).to(torch.float64)
    # exact power-of-two rescaling to max|x| in [0.5, 1): second moments of clouds at 1e155 or
    # 1e-160 neither overflow nor underflow, and ordinary clouds give the same bits as without it
    exp = _pow2_exponent(x)
    x = torch.ldexp(x, -exp.to(x.dtype))
    if kind == "global":
        index, num = graph, num_graphs
        centroid, cov, counts = _second_moments(x, index, num, translations)
    elif kind == "segment":
        if segment is None:
            raise ValueError("segment: required with kind='segment' (segment id of every point)")
        index = _check_ids("segment", segment, n, True)
        num = int(index.max()) + 1
        centroid, cov, counts = _second_moments(x, index, num, translations)
        if bool((counts < 2).any()):
            bad = (counts < 2).nonzero().flatten()[:10].tolist()
            raise ValueError(f"segment: segments {bad} have fewer than 2 points")
    else:
        k = check_int("k", k, min=2)  # neighbours including the point
        src, tgt = knn_graph(pos.detach(), k, batch=batch, loop=True)  # neighbours incl. the point
        index, num = torch.arange(n, device=pos.device), n
        centroid, cov, counts = _second_moments(x[src], tgt, n, translations)

    signs = _sign_patterns(d, reflections).to(pos.device)
    M = augment_samples if degeneracy == "augment" else 1
    # the frames (num, F * M, d, d) in float64, checked before anything of that size is allocated
    check_alloc("augment_samples" if M > 1 else "pos", M if M > 1 else f"{num} frame sets", num,
                signs.shape[0] * M * d * d, torch.float64, pos.device)
    evals, V = _eigh(cov)
    gaps = _relative_gaps(evals)
    centroid, evals = torch.ldexp(centroid, exp.to(x.dtype)), torch.ldexp(evals, 2 * exp.to(x.dtype))
    gap = gaps.amin(-1)
    # NaN gaps (overflowed eigenvalues) are degenerate; empty graphs are not (no point uses their frame)
    degenerate = ~(gap >= gap_tol) & (counts > 0)
    where = "samples" if kind == "global" else kind + " ids"
    _report_degenerate(degeneracy, degenerate, lambda ids: _degeneracy_message(gap_tol, ids, gap, where=where),
                       stacklevel=3)
    signed = V[:, None] * signs[None, :, None, :]  # (S, F, d, d): V S, the sign-ambiguous eigenbasis
    if degeneracy == "augment":
        # V S Q (signs first, then the rotation inside the tied eigenspace): where the eigenbasis is
        # resolved up to its signs, V(g X) = g V(X) S' permutes the set {V S Q_m} (it would not
        # permute {V Q_m S}: S' and Q_m do not commute), so an augmented nearly tied cloud is as
        # invariant as without augmentation for the same draws; at exact ties each term is Haar.
        Q = _eigenspace_rotations(gaps.detach(), degenerate, gap_tol, augment_samples, generator)
        rot = (signed[:, None] @ Q[:, :, None]).flatten(1, 2)  # (S, M * F, d, d), frame m * F + f
    else:
        rot = signed
    dtype = pos.dtype
    return Frames(
        centroid=centroid.to(dtype),
        rotations=rot.to(dtype),
        eigenvalues=evals.to(dtype),
        gap=gap.to(dtype),
        degenerate=degenerate,
        index=index,
        group=name,
    )
