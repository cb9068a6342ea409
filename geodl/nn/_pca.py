"""PCA of point clouds shared by frame averaging and TinvNN: moments, eigenbases, degeneracy.

Both methods diagonalise the per-cloud second moment ``C = Σ (x - c)(x - c)ᵀ / n`` and need the
same pieces: the exact power-of-two rescaling of the positions (so that clouds at any finite scale
have the moments of the same cloud at scale 1, bit for bit), the eigenbasis (``geodl.ops.eigh3x3``
in 3-D, a branch-free closed form in 2-D, ``torch.linalg.eigh`` above), the relative eigengaps,
the degeneracy policies (the same names and semantics for both), the sign patterns of the
eigenvectors and the Haar rotations inside a tied eigenspace.

Degeneracy policies (``degeneracy=``): ``"raise"`` (``ValueError`` naming ``pos``), ``"warn"``
(``RuntimeWarning``, then proceed), ``"flag"`` (proceed silently and return the mask) and
``"augment"`` (average over the sign patterns times Haar rotations inside the tied eigenspace).
"""

from __future__ import annotations

import itertools
import warnings

import torch

from geodl._checks import check_index
from geodl.groups import rotation_2d
from geodl.ops import eigh3x3, segment_covariance

__all__ = []

POLICIES = ("warn", "raise", "flag", "augment")
_POLICIES = POLICIES
_TINY = 1e-300


def _sign_patterns(d: int, reflections: bool) -> torch.Tensor:
    """(F, d) column signs in a fixed order; the first pattern is all +1.

    With reflections: all 2^d patterns. Without: the 2^(d-1) patterns of the first d-1 columns,
    the last sign being their product so that det(R S) = det(R) = +1.
    """
    if reflections:
        return torch.tensor(list(itertools.product((1.0, -1.0), repeat=d)), dtype=torch.float64)
    rows = [(*s, float(torch.tensor(s).prod())) for s in itertools.product((1.0, -1.0), repeat=d - 1)]
    return torch.tensor(rows, dtype=torch.float64)


def _second_moments(pos: torch.Tensor, index: torch.Tensor, num: int, centered: bool):
    """Per-segment centroid (zeros unless ``centered``) and second moment Σ(x-c)(x-c)ᵀ / n."""
    if pos.shape[-1] > 3:  # TinvNN in d > 3 (segment_covariance is for 2-D and 3-D points)
        return _moments_nd(pos, index, num, centered)
    centroid, cov, counts = segment_covariance(pos, index, num_segments=num, centered=centered)
    cov = cov / counts.clamp_min(1).to(cov.dtype)[:, None, None]
    if not centered:
        centroid = torch.zeros_like(centroid)
    return centroid, cov, counts


def _moments_nd(pos, index, num, centered):
    from geodl.ops import scatter

    counts = torch.bincount(index, minlength=num)
    n = counts.clamp_min(1).to(pos.dtype)[:, None]
    centroid = scatter(pos, index, dim=0, dim_size=num, reduce="sum") / n
    xc = pos - centroid[index] if centered else pos
    cov = scatter((xc[:, :, None] * xc[:, None, :]).flatten(1), index, dim=0, dim_size=num, reduce="sum")
    cov = cov.reshape(num, pos.shape[-1], pos.shape[-1]) / n[:, :, None]
    return (centroid if centered else torch.zeros_like(centroid)), cov, counts


def _eigh(cov: torch.Tensor):
    """Ascending eigenvalues and right-handed eigenvectors (columns) of symmetric (S, d, d), d >= 2."""
    if cov.shape[-1] == 3:
        evals, evecs, _ = eigh3x3(cov, validate=False)
        return evals, evecs
    if cov.shape[-1] != 2:  # d > 3 (TinvNN): LAPACK, last column flipped where needed so that det = +1
        evals, evecs = torch.linalg.eigh(cov)
        flip = torch.where(torch.linalg.det(evecs) < 0, -1.0, 1.0).to(evecs.dtype)
        return evals, torch.cat([evecs[..., :-1], evecs[..., -1:] * flip[..., None, None]], -1)
    # 2x2 closed form (branch free, differentiable away from ties): the larger eigenvector is at
    # angle θ = atan2(2b, a - c) / 2; columns (sin θ, -cos θ) and (cos θ, sin θ) have det +1.
    a, b, c = cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]
    # rad = 0 at an exact tie (coincident points, an isotropic spread), with a zero gradient there
    r2 = ((a - c) / 2) ** 2 + b**2
    mean, rad = (a + c) / 2, torch.sqrt(torch.where(r2 > 0, r2, 1.0)) * (r2 > 0)
    # atan2(0, 0) (coincident points) has a NaN gradient: there (0, 1) is used instead, the same angle 0
    y, xx = 2 * b, a - c
    both = (y == 0) & (xx == 0)
    theta = torch.atan2(torch.where(both, 0.0, y), torch.where(both, 1.0, xx)) / 2
    cs, sn = torch.cos(theta), torch.sin(theta)
    evecs = torch.stack([torch.stack([sn, cs], -1), torch.stack([-cs, sn], -1)], -2)
    return torch.stack([mean - rad, mean + rad], -1), evecs


def _relative_gaps(evals: torch.Tensor) -> torch.Tensor:
    """(S, d-1) gaps between consecutive eigenvalues relative to the largest magnitude."""
    scale = evals.abs().amax(-1, keepdim=True).clamp_min(_TINY)
    return (evals[:, 1:] - evals[:, :-1]) / scale


def _eigenspace_rotations(gaps, degenerate, tied, samples, generator):
    """(S, M, d, d) Haar rotations inside the tied eigenspaces (identity for samples not ``degenerate``).

    A NaN gap counts as tied.
    """
    S, d = gaps.shape[0], gaps.shape[1] + 1
    kw = dict(dtype=torch.float64, device=gaps.device)
    Q = torch.eye(d, **kw).expand(S, samples, d, d).clone()
    small = ~(gaps >= tied) & degenerate[:, None]
    theta = torch.rand(S, samples, generator=generator, **kw) * (2 * torch.pi)
    rot2 = rotation_2d(theta)
    if d == 2:
        return torch.where(small[:, 0, None, None, None], rot2, Q)
    import roma

    full = roma.random_rotmat((S, samples), generator=generator, **kw)
    low, high = Q.clone(), Q.clone()
    low[..., :2, :2] = rot2  # λ1 = λ2: rotate about the third axis
    high[..., 1:, 1:] = rot2  # λ2 = λ3: rotate about the first axis
    m01, m12 = small[:, 0, None, None, None], small[:, 1, None, None, None]
    return torch.where(m01 & m12, full, torch.where(m01, low, torch.where(m12, high, Q)))


def _check_ids(name: str, ids, n: int, validate: bool) -> torch.Tensor:
    check_index(name, ids)
    if ids.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) matching pos, got {tuple(ids.shape)}")
    if validate and n and int(ids.min()) < 0:
        raise ValueError(f"{name}: expected non-negative ids, got minimum {int(ids.min())}")
    return ids.long()


def _graph_ids_of(batch, n: int, num_graphs, validate: bool, allow_empty: bool, device):
    """``(batch, graph id per point, number of graphs, whether num_graphs was given)``, checked."""
    from geodl._checks import check_int

    if batch is not None:
        batch = _check_ids("batch", batch, n, validate)
    given = num_graphs is not None
    if num_graphs is None:
        num_graphs = 1 if batch is None else int(batch.max()) + 1
    else:
        num_graphs = check_int("num_graphs", num_graphs, min=0 if allow_empty else 1)
        if validate and batch is not None and n and int(batch.max()) >= num_graphs:
            raise ValueError(f"num_graphs: {num_graphs} is smaller than batch.max() + 1 = {int(batch.max()) + 1}")
    graph = torch.zeros(n, dtype=torch.long, device=device) if batch is None else batch
    return batch, graph, num_graphs, given


def _pow2_exponent(x: torch.Tensor) -> torch.Tensor:
    """Exponent ``e`` with ``max|x| * 2**-e`` in [0.5, 1) (0 for an empty ``x``; at least -1020).

    Dividing by ``2**e`` is exact: moments of clouds at 1e155 or 1e-160 neither overflow nor
    underflow, and ordinary clouds give the same bits as without it.
    """
    if x.numel():
        return torch.frexp(x.detach().abs().amax())[1].clamp_min(-1020)
    return torch.zeros((), dtype=torch.int32)


def _degeneracy_message(gap_tol: float, ids: torch.Tensor, values: torch.Tensor, *, what: str = "frames",
                        criterion: str = "relative eigengap", extra: str = "", where: str = "samples",
                        values_name: str = "gaps", consequence: str = "frame averaging is not invariant there",
                        augment: str = "average over the tied eigenspace", name: str = "pos") -> str:
    """The ``degeneracy="raise"``/``"warn"`` message naming ``name``, the sample ids and their values."""
    return (
        f"{name}: degenerate {what} ({criterion} < gap_tol={gap_tol:g}{extra}) for "
        f"{where} {ids[:10].tolist()} with {values_name} "
        f"{[float(f'{v:.3g}') for v in values[ids[:10]].tolist()]}; {consequence}. "
        f"Use degeneracy='flag' to get the mask or 'augment' to {augment}."
    )


def _report_degenerate(policy: str, degenerate: torch.Tensor, message, *, stacklevel: int) -> None:
    """Apply ``"raise"``/``"warn"`` to the (S,) mask ``degenerate`` (a host read; nothing under compile).

    ``message(ids)`` builds the text for the ids of the degenerate samples.
    """
    if policy not in ("raise", "warn") or torch.compiler.is_compiling() or not bool(degenerate.any()):
        return
    msg = message(degenerate.nonzero().flatten())
    if policy == "raise":
        raise ValueError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel + 1)
