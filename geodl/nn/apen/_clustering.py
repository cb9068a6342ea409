"""Differentiable partitions of point clouds from votes: EM on an isotropic Gaussian mixture, repulsion, merging.

APEN (Atzmon et al., ICLR'24) turns per-point votes for part centres into a partition of each cloud. Here one
cloud's partition is found by

1. **initial centres**: farthest-point sampling of the votes, started at the vote farthest from the votes'
   mean (so the result depends on the votes' geometry only: E(3)-equivariant and independent of the point
   order up to exact ties);
2. **EM** on an isotropic Gaussian mixture of bandwidth ``σ`` (fixed: the scale of a part is what the layer
   is told, not what it fits): responsibilities ``r_ik ∝ π_k exp(−‖v_i − μ_k‖² / 2σ²)``, means
   ``μ_k = Σ_i r_ik v_i / Σ_i r_ik``, weights ``π_k``; after each M-step a **repulsion** step pushes centres
   closer than a few ``σ`` apart (the gradient of ``Σ_{j≠k} exp(−‖μ_k − μ_j‖² / 2σ²)``, step ``repulsion · σ²``),
   so that two components do not settle on one part;
3. **merging**: components whose centres are within ``merge_radius`` are joined (connected components of the
   "closer than" graph), and parts holding less than ``min_points`` points of soft mass (``Σ_i r_ik``) are
   joined to the nearest part that holds enough; the responsibilities of joined components add up.

Everything is differentiable in the votes except the discrete choices (initial centres, merging, the hard
assignment ``argmax_k r_ik``), and it is batched: ``K`` components per cloud, stored as the dense
``(num_graphs, K)`` arrays; component ``k`` of cloud ``b`` has the global id ``b K + k`` (merged-away and
empty components simply hold no points).

All of it uses only differences and distances of votes, so a rigid motion of all the votes of a cloud moves
the centres with it and leaves responsibilities and partition unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from geodl._checks import check_int, check_number, check_tensor

__all__ = ["Partition", "em_partition", "partition_from_labels", "to_dense"]


@dataclass
class Partition:
    """A (soft and hard) partition of a batch of clouds into at most ``K`` parts each.

    Attributes
    ----------
    soft : Tensor (N, K)
        Responsibilities ``r_ik`` (rows sum to 1) over the ``K`` components of the point's cloud.
    hard : Tensor (N,) int64
        Global part id ``b K + k`` of each point (``b`` its cloud).
    centres : Tensor (B, K, 3)
        Component centres (those of merged-away or empty components are kept but hold no point).
    counts : Tensor (B, K)
        Points per part by hard assignment.
    num_components : int
        ``K``.
    """

    soft: torch.Tensor
    hard: torch.Tensor
    centres: torch.Tensor
    counts: torch.Tensor
    num_components: int

    @property
    def num_parts(self) -> int:
        """Total part ids ``B K`` (some may be empty)."""
        return self.counts.numel()

    def local(self) -> torch.Tensor:
        """The part id of each point within its cloud, ``hard mod K`` (N,)."""
        return self.hard % self.num_components


def _slots(batch: torch.Tensor, num_graphs: int):
    """``(slot, counts, M)``: each row's position within its cloud, the cloud sizes and the largest size."""
    n = batch.shape[0]
    counts = torch.bincount(batch, minlength=num_graphs) if n else batch.new_zeros(num_graphs)
    m = int(counts.max()) if num_graphs and n else 0
    order = torch.argsort(batch, stable=True)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(batch)
    slot[order] = torch.arange(n, device=batch.device) - start[batch[order]]
    return slot, counts, m


def to_dense(values: torch.Tensor, batch: torch.Tensor, num_graphs: int, slots=None):
    """``(B, M, ...)`` zero-padded copy of ``values`` (N, ...) grouped by ``batch`` (differentiable), the mask
    (B, M) and the slots (``_slots``). Batched matrix products on it replace scatters over N rows (several
    times faster on the CPU for the EM and scatter steps)."""
    slot, counts, m = _slots(batch, num_graphs) if slots is None else slots
    from geodl._checks import check_alloc

    check_alloc("batch", f"{num_graphs} clouds padded to the largest ({m} points)", num_graphs * m,
                max(1, values[0].numel()) if values.shape[0] else 1, values.dtype, values.device, row_bytes=1)
    dense = values.new_zeros(num_graphs, m, *values.shape[1:]).index_put((batch, slot), values)
    mask = torch.zeros(num_graphs, m, dtype=torch.bool, device=values.device)
    mask[batch, slot] = True
    return dense, mask, (slot, counts, m)


def cloud_ids(batch, n: int, num_graphs, device, *, single: int = 1):
    """Validated ``(batch, num_graphs)`` of an APEN call: ``batch`` (N,) int64 non-negative cloud ids (zeros
    for None), ``num_graphs`` an int larger than every id (default ``batch.max() + 1``, or ``single`` for
    ``batch=None``). ``ValueError`` naming ``batch`` or ``num_graphs``."""
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=device)
        if num_graphs is None:
            num_graphs = single
    else:
        check_tensor("batch", batch, shape=(n,), dtypes=(torch.int64,))
        if n and int(batch.min()) < 0:
            raise ValueError(f"batch: expected non-negative cloud ids, got {int(batch.min())}")
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if n else 0
    num_graphs = check_int("num_graphs", num_graphs, min=0)
    if n and int(batch.max()) >= num_graphs:
        raise ValueError(f"num_graphs: {num_graphs} is not larger than the largest cloud id {int(batch.max())}")
    return batch, num_graphs


def _fps_centres(v: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Farthest-point sampling of ``k`` centres per cloud from dense votes ``v`` (B, M, 3), started at the vote
    farthest from the cloud's mean vote: (B, k, 3). A cloud with fewer distinct votes repeats its last pick."""
    B = v.shape[0]
    if v.shape[1] == 0:
        return v.new_zeros(B, k, 3)
    w = mask.to(v.dtype)
    mean = (v * w[..., None]).sum(1) / w.sum(1).clamp_min(1)[:, None]
    far = torch.where(mask, ((v - mean[:, None]) ** 2).sum(-1), v.new_tensor(-1.0))
    idx = far.argmax(1)
    rows = torch.arange(B, device=v.device)
    picks = [v[rows, idx]]
    d = torch.where(mask, ((v - picks[0][:, None]) ** 2).sum(-1), v.new_tensor(-1.0))
    for _ in range(1, k):
        idx = d.argmax(1)
        picks.append(v[rows, idx])
        d = torch.minimum(d, torch.where(mask, ((v - picks[-1][:, None]) ** 2).sum(-1), v.new_tensor(-1.0)))
    return torch.stack(picks, 1)


def _components(adj: torch.Tensor) -> torch.Tensor:
    """Connected components of symmetric boolean adjacencies (B, K, K): the smallest index of each
    node's component (B, K), by min-label propagation (K rounds at most)."""
    B, K, _ = adj.shape
    lab = torch.arange(K, device=adj.device).expand(B, K)
    big = torch.full_like(lab, K)
    for _ in range(max(K - 1, 0)):
        new = torch.where(adj, lab[:, None, :], big[:, None, :]).amin(-1)
        new = torch.minimum(new, lab)
        if torch.equal(new, lab):
            break
        lab = new
    return lab


def em_partition(votes: torch.Tensor, batch: torch.Tensor | None = None, *, num_components: int, bandwidth: float,
                 num_graphs: int | None = None, iters: int = 10, repulsion: float = 0.5,
                 merge_radius: float | None = None, min_points: int = 4) -> Partition:
    """Partition each cloud by EM on its votes (module docstring): ``K`` components, bandwidth ``σ``, merging.

    Parameters
    ----------
    votes : Tensor (N, 3)
        Per-point votes for part centres (finite).
    batch : Tensor (N,) int64, optional
        Cloud id of every point (``None``: one cloud).
    num_components : int
        ``K``, components per cloud (>= 1).
    bandwidth : float
        ``σ`` (> 0), the standard deviation of each component.
    num_graphs : int, optional
        Number of clouds (default ``batch.max() + 1``).
    iters : int
        EM iterations (>= 1).
    repulsion : float
        Step of the centre repulsion in units of ``σ²`` (>= 0; 0 turns it off).
    merge_radius : float, optional
        Centres closer than this are merged (default ``σ``; 0 merges only coincident centres).
    min_points : int
        Parts of less soft mass (``Σ_i r_ik``) are merged into the nearest part with enough (>= 1).

    Returns
    -------
    Partition

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> votes = torch.cat([torch.randn(30, 3) * 0.05, torch.randn(30, 3) * 0.05 + 2.0])
    >>> p = em_partition(votes, num_components=6, bandwidth=0.2)
    >>> p.hard[:30].unique().numel(), p.hard[30:].unique().numel(), bool((p.hard[:30, None] != p.hard[30:]).all())
    (1, 1, True)
    >>> torch.allclose(p.soft.sum(1), torch.ones(60))
    True
    """
    check_tensor("votes", votes, ndim=2, floating=True, finite=True)
    if votes.shape[1] != 3:
        raise ValueError(f"votes: expected shape (N, 3), got {tuple(votes.shape)}")
    n = votes.shape[0]
    K = check_int("num_components", num_components, min=1, max=1 << 12)
    sigma = float(check_number("bandwidth", bandwidth, positive=True))
    if not (sigma * sigma > 0 and 0.5 / (sigma * sigma) < torch.finfo(votes.dtype).max):
        raise ValueError(f"bandwidth: {sigma!r} is too small for {votes.dtype} votes (1 / (2 bandwidth^2) overflows)")
    iters = check_int("iters", iters, min=1, max=1000)
    repulsion = float(check_number("repulsion", repulsion, nonnegative=True))
    radius = sigma if merge_radius is None else float(check_number("merge_radius", merge_radius, nonnegative=True))
    min_points = check_int("min_points", min_points, min=1)
    batch, B = cloud_ids(batch, n, num_graphs, votes.device)
    from geodl._checks import check_alloc

    check_alloc("num_graphs", B, B, 4 * K + 4, votes.dtype, votes.device, row_bytes=8)  # before bincount(minlength=B)
    check_alloc("num_components", f"{K} (x {n} points)", n, 4 * K, votes.dtype, votes.device)
    dense, mask, slots = to_dense(votes, batch, B)  # (B, M, 3): the EM runs on padded clouds, by bmm
    slot = slots[0]
    mu = _fps_centres(dense.detach(), mask, K).to(votes.dtype)  # (B, K, 3), no gradient through the choice
    w = mask.to(votes.dtype)[..., None]  # (B, M, 1)
    n_b = w.sum(1).clamp_min(1)  # (B, 1)
    log_pi = votes.new_full((B, 1, K), -math.log(K))
    inv2s2 = 0.5 / (sigma * sigma)
    v2 = (dense * dense).sum(-1, keepdim=True)  # (B, M, 1)

    def responsibilities(mu, log_pi):
        d2 = v2 - 2 * torch.bmm(dense, mu.transpose(1, 2)) + (mu * mu).sum(-1)[:, None, :]  # (B, M, K)
        d2 = d2 - d2.amin(-1, keepdim=True).detach()  # the nearest at 0 (softmax unchanged): no row of only
        return torch.softmax(log_pi - d2 * inv2s2, dim=-1) * w  # -inf logits (NaN) for a small bandwidth

    for _ in range(iters):
        r = responsibilities(mu, log_pi)
        nk = r.sum(1)  # (B, K)
        sums = torch.bmm(r.transpose(1, 2), dense)  # (B, K, 3)
        alive = nk > 1e-6
        mu = torch.where(alive[..., None], sums / nk.clamp_min(1e-6)[..., None], mu)
        log_pi = torch.log((nk / n_b).clamp_min(1e-12))[:, None, :]
        if repulsion > 0 and K > 1:
            diff = mu[:, :, None, :] - mu[:, None, :, :]  # (B, K, K, 3)
            rep = torch.exp(-(diff * diff).sum(-1) * inv2s2) * alive[:, None, :]
            mu = mu + repulsion * (rep[..., None] * diff).sum(2) * alive[..., None]
    r = responsibilities(mu, log_pi)  # the last E-step with the final centres
    return _merge(r[batch, slot] if n else votes.new_zeros(0, K), mu, batch, B, K, radius, min_points)


def _merge(r, mu, batch, B, K, radius, min_points) -> Partition:
    """Join centres closer than ``radius`` (connected components), then parts of soft mass below ``min_points``
    into the nearest part that has enough; the responsibilities of joined components add up."""
    with torch.no_grad():
        mass = r.new_zeros(B, K).index_add(0, batch, r.detach())  # soft points per component
        d = torch.cdist(mu.detach(), mu.detach()) if K > 1 else mu.new_zeros(B, K, K)
        lab = _components(d <= radius)  # (B, K): the representative of each component
        ar = torch.arange(K, device=r.device).expand(B, K)
        onehot = torch.nn.functional.one_hot(lab, K).to(r.dtype)  # (B, K, K): k -> lab[k]
        merged = torch.einsum("bk,bkj->bj", mass, onehot)
        rep = lab == ar
        small, big = rep & (merged < min_points), rep & (merged >= min_points)
        if K > 1 and bool((small & big.any(1, keepdim=True)).any()):
            far = torch.where(big[:, None, :], d, torch.full_like(d, float("inf")))
            target = torch.where(small & big.any(1, keepdim=True), far.argmin(-1), ar)
            lab = torch.gather(target, 1, lab)
            onehot = torch.nn.functional.one_hot(lab, K).to(r.dtype)
    soft = torch.einsum("nk,nkj->nj", r, onehot[batch]) if r.shape[0] else r
    with torch.no_grad():
        local = soft.argmax(1) if soft.shape[0] else batch.new_zeros(0)
        counts = torch.zeros(B, K, dtype=torch.long, device=r.device).index_put_(
            (batch, local), torch.ones_like(local), accumulate=True)
    return Partition(soft=soft, hard=batch * K + local, centres=mu, counts=counts, num_components=K)


def partition_from_labels(labels: torch.Tensor, batch: torch.Tensor | None = None, *, num_graphs: int | None = None,
                          num_parts: int | None = None, dtype: torch.dtype = torch.float32) -> Partition:
    """The hard partition given by part labels (one-hot responsibilities), e.g. the ground truth.

    Parameters
    ----------
    labels : Tensor (N,) int64
        Part label of each point within its cloud (0 <= label < ``num_parts``).
    batch : Tensor (N,) int64, optional
    num_graphs, num_parts : int, optional
        Default ``batch.max() + 1`` and ``labels.max() + 1``.
    dtype : torch.dtype
        Of ``soft`` and ``centres``.

    Examples
    --------
    >>> p = partition_from_labels(torch.tensor([0, 0, 1, 1, 0]), torch.tensor([0, 0, 0, 1, 1]))
    >>> p.hard.tolist(), p.counts.tolist()
    ([0, 0, 1, 3, 2], [[2, 1], [1, 1]])
    """
    check_tensor("labels", labels, ndim=1, dtypes=(torch.int64, torch.int32))
    n = labels.shape[0]
    labels = labels.long()
    if n and int(labels.min()) < 0:
        raise ValueError(f"labels: expected non-negative part labels, got {int(labels.min())}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")
    batch, num_graphs = cloud_ids(batch, n, num_graphs, labels.device, single=1 if n else 0)
    if num_parts is None:
        num_parts = int(labels.max()) + 1 if n else 1
    K = check_int("num_parts", num_parts, min=1, max=1 << 12)
    if n and int(labels.max()) >= K:
        raise ValueError(f"num_parts: {K} is not larger than the largest label {int(labels.max())}")
    from geodl._checks import check_alloc

    check_alloc("num_graphs", num_graphs, num_graphs, 4 * K, dtype, labels.device)
    soft = torch.nn.functional.one_hot(labels, K).to(dtype)
    counts = torch.zeros(num_graphs, K, dtype=torch.long, device=labels.device).index_put_(
        (batch, labels), torch.ones_like(labels), accumulate=True)
    return Partition(soft=soft, hard=batch * K + labels, centres=torch.zeros(num_graphs, K, 3, dtype=dtype,
                     device=labels.device), counts=counts, num_components=K)
