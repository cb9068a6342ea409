"""Pose metrics under symmetry: geodesic errors (minimum over the symmetry set), median, Acc@θ, average log-likelihood.

Conventions: errors are geodesic angles in **degrees** (as pose-estimation results are reported).
A symmetric object's equivalent ground truths are ``R_true @ S`` for every ``S`` of its symmetry
set (the symmetry acts in the object frame, before the pose): a set given directly (SYMSOL's
``rotations.npz`` holds every equivalent rotation) is passed as ``R_true (B, K, 3, 3)``.
"""

from __future__ import annotations

import torch

from geodl._checks import check_choice, check_number, check_tensor
from geodl.nn.pose._common import check_rotations

__all__ = ["rotation_errors", "median_error", "accuracy_at", "average_log_likelihood", "spread"]


def _truth_sets(R_true, symmetries, batch: int, name: str = "R_true") -> torch.Tensor:
    """``(B, K', 3, 3)``: every equivalent ground truth of each sample."""
    R_true = check_rotations(name, R_true)
    if R_true.dim() == 3:
        R_true = R_true[:, None]
    if R_true.dim() != 4 or R_true.shape[0] != batch:
        raise ValueError(f"{name}: expected shape ({batch}, 3, 3) or ({batch}, K, 3, 3) (the batch of R_pred), "
                         f"got {tuple(R_true.shape)}")
    if R_true.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one ground-truth rotation per sample, got shape {tuple(R_true.shape)}")
    if symmetries is None:
        return R_true
    sym = check_rotations("symmetries", symmetries)
    if sym.dim() == 3:
        sym = sym[None].expand(batch, -1, -1, -1)
    if sym.dim() != 4 or sym.shape[0] != batch or sym.shape[1] == 0:
        raise ValueError(f"symmetries: expected shape (S, 3, 3) or ({batch}, S, 3, 3) with S >= 1, got {tuple(symmetries.shape)}")
    sym = sym.to(dtype=R_true.dtype, device=R_true.device)
    return (R_true[:, :, None] @ sym[:, None]).flatten(1, 2)


def rotation_errors(R_pred: torch.Tensor, R_true: torch.Tensor, symmetries: torch.Tensor | None = None) -> torch.Tensor:
    """Geodesic error in degrees to the nearest equivalent ground truth, per sample.

    Parameters
    ----------
    R_pred : Tensor ``(B, 3, 3)``
        Predicted rotations.
    R_true : Tensor ``(B, 3, 3)`` or ``(B, K, 3, 3)``
        Ground truth, or a set of equivalent ground truths per sample.
    symmetries : Tensor ``(S, 3, 3)`` or ``(B, S, 3, 3)``, optional
        The symmetry set (shared, or per sample); the equivalent ground truths are ``R_true @ S``.

    Returns
    -------
    Tensor ``(B,)``: ``min_{k, s} d(R_pred, R_true[k] @ S[s])`` in degrees, in ``[0, 180]``.

    Raises
    ------
    ValueError
        Any argument not rotation matrices (orthonormal with det +1 within ``max(1e-6, 1000 eps)``,
        checked on the CPU), or batch sizes that disagree.

    Examples
    --------
    >>> from geodl.groups import finite_group
    >>> T = finite_group("tetrahedral")
    >>> R = T[3:4]                                   # a symmetry of the object...
    >>> float(rotation_errors(R, torch.eye(3, dtype=torch.float64)[None]).round())
    120.0
    >>> float(rotation_errors(R, torch.eye(3, dtype=torch.float64)[None], symmetries=T))  # ...is no error
    0.0
    """
    from geodl.groups import geodesic_distance

    R_pred = check_rotations("R_pred", R_pred, shape=(None, 3, 3))
    sets = _truth_sets(R_true, symmetries, R_pred.shape[0]).to(dtype=R_pred.dtype, device=R_pred.device)
    if sets.shape[0] == 0:
        return R_pred.new_zeros(0)
    d = geodesic_distance(R_pred[:, None], sets)  # (B, K')
    return torch.rad2deg(d.amin(dim=1))


def _check_errors(errors) -> torch.Tensor:
    errors = check_tensor("errors", errors, ndim=1, floating=True)
    if errors.device.type == "cpu" and errors.numel():
        check_tensor("errors", errors, finite=True)
        if bool((errors < 0).any()):
            raise ValueError("errors: expected non-negative angles in degrees, got negative values")
    return errors


def median_error(errors: torch.Tensor) -> torch.Tensor:
    """Median of ``errors (B,)`` (the mean of the two middle values for an even count, as numpy).

    ``ValueError`` naming ``errors`` for an empty, non-finite or negative input.

    Examples
    --------
    >>> median_error(torch.tensor([1.0, 10.0, 3.0, 5.0]))
    tensor(4.)
    """
    errors = _check_errors(errors)
    if errors.numel() == 0:
        raise ValueError("errors: the median of no errors is undefined (empty tensor)")
    s = errors.sort().values
    n = s.numel()
    return (s[(n - 1) // 2] + s[n // 2]) / 2


def accuracy_at(errors: torch.Tensor, degrees=(15.0, 30.0)) -> torch.Tensor:
    """Fraction of errors at most ``degrees`` (Acc@15, Acc@30): a 0-d tensor for a number, ``(T,)`` for a sequence.

    Examples
    --------
    >>> e = torch.tensor([5.0, 20.0, 40.0, 10.0])
    >>> accuracy_at(e, 15)
    tensor(0.5000)
    >>> accuracy_at(e, (15, 30)).tolist()
    [0.5, 0.75]
    """
    errors = _check_errors(errors)
    if errors.numel() == 0:
        raise ValueError("errors: the accuracy of no errors is undefined (empty tensor)")
    scalar = not isinstance(degrees, (tuple, list))
    vals = [check_number("degrees", d, nonnegative=True) for d in ([degrees] if scalar else degrees)]
    if not vals:
        raise ValueError("degrees: expected a threshold or a non-empty sequence of thresholds")
    th = torch.tensor(vals, dtype=errors.dtype, device=errors.device)
    acc = (errors[None, :] <= th[:, None]).to(errors.dtype).mean(dim=1)
    return acc[0] if scalar else acc


def _set_tensor(R_sets, B: int) -> torch.Tensor:
    """``R_sets`` (B, 3, 3) or (B, K, 3, 3) rotations, checked, as (B, K, 3, 3) with K >= 1."""
    R = check_rotations("R_sets", R_sets)
    if R.dim() == 3:
        R = R[:, None]
    if R.dim() != 4 or R.shape[0] != B or R.shape[1] == 0:
        raise ValueError(f"R_sets: expected shape ({B}, 3, 3) or ({B}, K, 3, 3) with K >= 1 (the batch of dist), "
                         f"got {tuple(R_sets.shape)}")
    return R


def average_log_likelihood(dist, R_sets, *, one_random: bool = False, generator: torch.Generator | None = None,
                           reduction: str = "mean") -> torch.Tensor:
    """Average log-likelihood of ground-truth sets under ``dist``, **averaged over every rotation of each set** (IPDF).

    Per sample ``b`` with equivalent ground truths ``R_1 .. R_K``: ``(1/K) Σ_k log p_b(R_k)``; then the
    mean over the batch. With ``one_random=True`` one ``R_k`` is drawn per sample instead (Image2Sphere's
    variant, whose draw is unseeded; here it comes from ``generator``, or torch's global generator when None).

    Parameters
    ----------
    dist : SO3Distribution
        A batch of ``B`` distributions (anything with ``log_prob((B, K, 3, 3)) -> (B, K)`` and ``batch_size``).
    R_sets : Tensor ``(B, 3, 3)``, ``(B, K, 3, 3)``, or a list of ``B`` tensors ``(K_b, 3, 3)``
        The ground-truth sets (a list allows a different size per sample: padded and masked).
    one_random : bool
    generator : torch.Generator, optional
        A CPU generator for the draws of ``one_random``.
    reduction : {"mean", "none"}
        ``"none"`` returns the ``(B,)`` per-sample values.

    Examples
    --------
    >>> from geodl.nn.pose import SO3Distribution
    >>> from geodl.groups import finite_group
    >>> dist = SO3Distribution(torch.zeros(1, 10, dtype=torch.float64), lmax=1, rec=0)
    >>> round(float(average_log_likelihood(dist, finite_group("tetrahedral")[None])), 4)
    -2.2895
    """
    if not hasattr(dist, "log_prob") or not hasattr(dist, "batch_size"):
        raise TypeError(f"dist: expected an SO3Distribution, got {type(dist).__name__}")
    if not isinstance(one_random, bool):
        raise TypeError(f"one_random: expected a bool, got {type(one_random).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    check_choice("reduction", reduction, ("mean", "none"))
    B = dist.batch_size
    if isinstance(R_sets, (list, tuple)):
        if len(R_sets) != B:
            raise ValueError(f"R_sets: expected {B} sets (the batch of dist), got {len(R_sets)}")
        sets = [check_rotations(f"R_sets[{i}]", r, shape=(None, 3, 3)) for i, r in enumerate(R_sets)]
        sizes = [s.shape[0] for s in sets]
        if min(sizes, default=1) == 0:
            raise ValueError("R_sets: every set needs at least one rotation")
        K = max(sizes, default=1)
        R = torch.stack([torch.cat([s, s[:1].expand(K - s.shape[0], 3, 3)]) for s in sets]) if sets else None
        counts = torch.tensor(sizes, dtype=torch.long)
    else:
        R = _set_tensor(R_sets, B)
        counts = torch.full((B,), R.shape[1], dtype=torch.long)
    if B == 0:
        raise ValueError("R_sets: the average over an empty batch is undefined")
    K = R.shape[1]
    if one_random:
        pick = (torch.rand(B, generator=generator, dtype=torch.float64) * counts).long().clamp_max(counts - 1)
        R = R[torch.arange(B), pick.to(R.device)][:, None]
        mask = torch.ones(B, 1, dtype=torch.bool)
    else:
        mask = torch.arange(K)[None, :] < counts[:, None]
    lp = dist.log_prob(R)  # (B, K)
    mask = mask.to(lp.device)
    per_sample = torch.where(mask, lp, torch.zeros_like(lp)).sum(dim=1) / mask.sum(dim=1).to(lp.dtype)
    return per_sample.mean() if reduction == "mean" else per_sample



def spread(dist, R_sets, *, chunk_size: int = 4096, reduction: str = "mean") -> torch.Tensor:
    """IPDF's spread: the expected angle (degrees) from a rotation drawn from ``dist`` to the nearest ground truth.

    ``spread_b = Σ_j p_b(G_j) min_k d(G_j, R_{b,k})`` over the distribution's grid ``G`` (its probabilities,
    :meth:`SO3Distribution.probs`) and the ground-truth set ``R_b``: small when the mass sits on the set, whatever
    the set's size (a distribution that covers the whole set of a symmetric object has a small spread).

    Parameters
    ----------
    dist : SO3Distribution
    R_sets : Tensor ``(B, 3, 3)`` or ``(B, K, 3, 3)``
        The equivalent ground truths of each sample.
    chunk_size : int
        Grid rotations per distance block (memory ``chunk_size x K`` per sample).
    reduction : {"mean", "none"}

    Examples
    --------
    >>> from geodl.nn.pose import SO3Distribution
    >>> uniform = SO3Distribution(torch.zeros(1, 10, dtype=torch.float64), lmax=1, rec=1)
    >>> 120 < float(spread(uniform, torch.eye(3, dtype=torch.float64)[None])) < 130   # E[angle] of Haar: 126.5°
    True
    """
    from geodl._checks import check_int

    if not hasattr(dist, "probs") or not hasattr(dist, "grid"):
        raise TypeError(f"dist: expected an SO3Distribution, got {type(dist).__name__}")
    check_choice("reduction", reduction, ("mean", "none"))
    chunk_size = check_int("chunk_size", chunk_size, min=1)
    B = dist.batch_size
    R = _set_tensor(R_sets, B)
    if B == 0:
        raise ValueError("R_sets: the spread of an empty batch is undefined")
    with torch.no_grad():
        p = dist.probs().double()  # (B, N)
        G = dist.grid.to(torch.float64).reshape(-1, 9)  # (N, 9)
        T = R.to(device=p.device, dtype=torch.float64).reshape(B, -1, 9)  # (B, K, 9)
        out = p.new_zeros(B)
        for start in range(0, G.shape[0], chunk_size):
            tr = torch.einsum("nk,bsk->bns", G[start:start + chunk_size], T)  # tr(G_jᵀ R_s) (B, n, K)
            ang = torch.arccos(((tr.amax(-1) - 1) / 2).clamp(-1.0, 1.0))  # (B, n)
            out += (p[:, start:start + chunk_size] * ang).sum(1)
    out = torch.rad2deg(out)
    return out.mean() if reduction == "mean" else out
