"""APEN layers and model: per-part frame averaging over predicted partitions, fine to coarse (Atzmon et al., ICLR'24).

One :class:`APENLayer` takes a partition of each cloud (soft responsibilities and hard part ids) and

1. runs a shared backbone (PointNet, per-point output) **on every part separately, averaged over the part's
   PCA frames** (:func:`geodl.nn.frames` with the hard part id as the "graph": one frame set per part, the
   ``F`` frames folded into the backbone's batch): per-point invariant features ``h`` and an equivariant
   offset ``o`` (a vector output mapped back from each frame and averaged);
2. **votes** for the centre of the point's part, ``v = pos + o``;
3. **clusters the votes** (:func:`~geodl.nn.apen.em_partition`: EM with repulsion, merging) into the next,
   coarser partition (fewer components, a larger bandwidth);
4. **scatters part features back** to the points: ``[h_i, Σ_k r_ik ḡ_k, max_cloud h]`` with ``ḡ_k`` the
   responsibility-weighted mean of ``h`` over component ``k`` of the new partition and the last block the
   cloud's max-pooled ``h`` (context from the other parts: invariant features pooled stay invariant).

If the partition a layer is given is a sub-partition of the true one (no part straddles two rigid pieces),
every part moves rigidly under a piecewise motion, so its frames move with it and ``h`` is unchanged and
``o`` rotates with the piece: the layer is exactly piecewise E(3)-equivariant. The model's first partition
is EM on the positions themselves with many small components (a fine partition, likely a sub-partition);
later layers cluster votes with fewer, wider components. That is the paper's fine-to-coarse design: the
equivariance error is bounded by the probability that a predicted partition is not a sub-partition plus
the uncertainty of the soft assignments (:func:`~geodl.nn.apen.piecewise_bound` measures both).

With the ground-truth partition given (``parts=``), every layer uses it, and the model is piecewise
equivariant to float precision (``tests/nn/apen/test_apen.py`` checks it through ``check_module`` with the
group ``"E3^parts+perm"``).

Degenerate parts follow the shared degeneracy policy of :func:`geodl.nn.frames`: a part whose PCA frame is
not defined (tied eigenvalues: collinear parts, isotropically spread planar or round parts, one or two
points) or that has fewer than ``min_part_points`` points is degenerate; ``degeneracy`` "warn" (a
``UserWarning``), "raise" (``ValueError`` naming ``pos``), "flag" (no message; the masks are in
:meth:`APEN.forward_details`) or "augment" (random rotations inside tied eigenspaces, as ``frames``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from geodl._checks import check_alloc, check_choice, check_int, check_number, check_tensor
from geodl.groups import Symmetry
from geodl.nn._layers import check_linear_sizes, check_widths, mlp
from geodl.nn.apen._clustering import Partition, cloud_ids, em_partition, partition_from_labels, to_dense
from geodl.nn.backbones._common import pool_graphs
from geodl.nn.backbones.pointnet import PointNet
from geodl.nn.frame_averaging._frames import _POLICIES, _frames, _parse_group

__all__ = ["APENLayer", "APEN", "APENOutput", "vote_loss"]


def _policy_message(where: str, ids: list, counts: list, min_points: int) -> str:
    return (f"pos: {len(ids)} {where} degenerate (parts {ids[:10]} with {counts[:10]} points): their PCA frames are "
            f"not defined (tied eigenvalues: collinear, round or one/two-point parts) or they have fewer than "
            f"{min_points} points; invariance can break there (degeneracy='flag' hides this, 'augment' draws "
            "random rotations in tied eigenspaces)")


def _check_inputs(pos, x, batch, parts, num_graphs, in_channels: int):
    """Validated ``(x, batch, num_graphs, parts)`` of an APEN call (``ValueError`` naming the argument)."""
    check_tensor("pos", pos, ndim=2, floating=True, finite=True)
    if pos.shape[1] != 3:
        raise ValueError(f"pos: expected shape (N, 3), got {tuple(pos.shape)}")
    n = pos.shape[0]
    if x is not None:
        check_tensor("x", x, floating=True, finite=True)
        x = x.reshape(n, math.prod(x.shape[1:])) if x.dim() and x.shape[0] == n else x  # (N,) / (N, ...) -> (N, C)
        if x.shape != (n, in_channels):
            raise ValueError(f"x: expected shape ({n}, {in_channels}), got {tuple(x.shape)}")
        x = x.to(pos.dtype)
    elif in_channels:
        raise ValueError(f"x: required, ({n}, {in_channels}) invariant point features")
    batch, num_graphs = cloud_ids(batch, n, num_graphs, pos.device)
    check_alloc("num_graphs", num_graphs, num_graphs, 8, torch.int64, pos.device)  # before bincount(minlength=)
    counts = torch.bincount(batch, minlength=num_graphs)
    if n and bool((counts[torch.unique(batch)] < 2).any()):
        raise ValueError(f"batch: every cloud needs at least 2 points, got counts {counts.tolist()[:10]}")
    if parts is not None:
        check_tensor("parts", parts, dtypes=(torch.int64, torch.int32))
        if parts.shape != (n,):
            raise ValueError(f"parts: expected one part label per point, shape ({n},), got {tuple(parts.shape)}")
        if n and int(parts.min()) < 0:
            raise ValueError(f"parts: expected non-negative part labels, got {int(parts.min())}")
        parts = parts.long()
    return x, batch, num_graphs, parts


class APENLayer(nn.Module):
    """One APEN layer: per-part frame-averaged PointNet, votes, EM clustering into the next partition, scatter.

    Parameters
    ----------
    in_channels : int
        Width of the invariant per-point features ``x`` (0 for positions only).
    out_channels : int
        Width of ``h``; the layer's output features are ``[h, scattered part features, cloud max of h]``
        (3 out_channels).
    hidden_channels, head_channels : sequence of int
        Widths of the per-part PointNet (shared per-point MLP; head on ``[point, part]`` features).
    num_components : int
        Components per cloud of the partition this layer predicts.
    bandwidth : float
        EM bandwidth ``σ`` of that partition (units of ``pos``).
    iters, repulsion, merge_radius, min_points
        :func:`~geodl.nn.apen.em_partition`'s (``min_points`` also the degeneracy threshold).
    degeneracy : str
        "warn", "raise", "flag" or "augment" (module docstring).
    gap_tol : float
        Relative eigengap below which a part's frame counts as degenerate.
    part_scale : float
        The typical size of the parts this layer runs on: canonical coordinates are divided by it before the
        backbone (a fixed linear map, so the part's size still shows), which keeps the backbone's inputs of
        order 1 for small parts.

    Forward
    -------
    ``forward(pos, x=None, batch=None, *, parts, num_graphs=None)`` -> ``(features (N, 3 out_channels), votes
    (N, 3))`` on the partition of the labels ``parts``: piecewise equivariant (``E3^parts+perm``: features
    invariant, votes moving with their part). :meth:`run` ``(pos, x, batch, partition, num_graphs, *,
    next_partition=None)`` -> ``(features, votes, next partition, degenerate (num_parts,) bool)`` takes any
    :class:`Partition` and predicts the next one from the votes (what :class:`APEN` calls).

    Examples
    --------
    >>> import torch
    >>> layer = APENLayer(0, 4, (8,), (), num_components=3, bandwidth=0.3, degeneracy="flag").double()
    >>> pos = torch.randn(20, 3, dtype=torch.float64)
    >>> h, votes = layer(pos, parts=(pos[:, 2] > 0).long())
    >>> h.shape, votes.shape
    (torch.Size([20, 12]), torch.Size([20, 3]))
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels=(64, 128), head_channels=(64,), *,
                 num_components: int = 8, bandwidth: float = 0.1, iters: int = 10, repulsion: float = 0.5,
                 merge_radius: float | None = None, min_points: int = 4, degeneracy: str = "warn",
                 gap_tol: float = 1e-4, group: str = "E3", part_scale: float = 1.0):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, min=0)
        self.out_channels = check_int("out_channels", out_channels, min=1)
        self.part_scale = float(check_number("part_scale", part_scale, positive=True))
        self.num_components = check_int("num_components", num_components, min=1, max=1 << 12)
        self.bandwidth = float(check_number("bandwidth", bandwidth, positive=True))
        self.iters = check_int("iters", iters, min=1, max=1000)
        self.repulsion = float(check_number("repulsion", repulsion, nonnegative=True))
        self.merge_radius = None if merge_radius is None else float(check_number("merge_radius", merge_radius,
                                                                                nonnegative=True))
        self.min_points = check_int("min_points", min_points, min=1)
        self.degeneracy = check_choice("degeneracy", degeneracy, _POLICIES)
        self.gap_tol = float(check_number("gap_tol", gap_tol, nonnegative=True))
        self._group = _parse_group(group)
        if self._group[1] != 3:
            raise ValueError(f"group: APEN is 3-d (E3, SE3, O3, SO3), got {group!r}")
        self.group = self._group[0]
        check_widths("hidden_channels", hidden_channels, nonempty=True)
        self.backbone = PointNet(self.in_channels, self.out_channels + 3, hidden_channels, head_channels,
                                 level="node")

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, group={self.group}, num_components={self.num_components}, "
                f"bandwidth={self.bandwidth}, degeneracy={self.degeneracy!r}")

    def part_features(self, pos, x, partition: Partition):
        """``(h (N, out_channels), offsets (N, 3), degenerate (num_parts,))`` of the frame-averaged backbone run per
        part of ``partition``."""
        P = partition.num_parts
        policy = "augment" if self.degeneracy == "augment" else "flag"
        fr = _frames(pos, partition.hard, self._group, num_graphs=P, kind="global", segment=None, k=None,
                     degeneracy=policy, gap_tol=self.gap_tol, differentiable=False, generator=None,
                     augment_samples=8, validate=False, allow_empty=True)
        counts = partition.counts.reshape(-1)
        degenerate = fr.degenerate | ((counts > 0) & (counts < self.min_points))
        self._report(degenerate, counts)
        n, F = pos.shape[0], fr.num_frames
        widest = max(m.out_features for m in self.backbone.modules() if isinstance(m, nn.Linear))
        check_alloc("pos", f"{n} points x {F} frames", n * F, 2 * widest, pos.dtype, pos.device)
        canon = fr.to_canonical(pos, "points") / self.part_scale  # (N, F, 3)
        pos_f = canon.transpose(0, 1).reshape(F * n, 3)
        ids = (torch.arange(F, device=pos.device)[:, None] * P + partition.hard[None, :]).reshape(-1)
        x_f = None if x is None else x.unsqueeze(0).expand(F, *x.shape).reshape(F * n, x.shape[1])
        C = self.out_channels
        out = self.backbone(x_f, pos_f, ids, num_graphs=F * P).reshape(F, n, C + 3).transpose(0, 1)  # (N, F, C + 3)
        h = out[..., :C].mean(1)
        offsets = fr.from_canonical(out[..., C:], "vectors").mean(1)
        return h, offsets, degenerate

    def _report(self, degenerate, counts) -> None:
        if self.degeneracy not in ("warn", "raise") or torch.compiler.is_compiling():
            return
        if not bool(degenerate.any()):
            return
        ids = degenerate.nonzero().flatten()
        msg = _policy_message(f"part{'s are' if ids.numel() > 1 else ' is'}", ids.tolist(),
                              counts[ids].tolist(), self.min_points)
        if self.degeneracy == "raise":
            raise ValueError(msg)
        warnings.warn(msg, UserWarning, stacklevel=4)

    @property
    def symmetry(self) -> Symmetry:
        in_kinds = {"pos": "node:points", "parts": "parts", "batch": "batch"}
        if self.in_channels:
            in_kinds["x"] = "node:scalar"
        return Symmetry(f"{self.group}^parts+perm", in_kinds, ("node:scalar", "node:points"), batch_arg="batch",
                        note="exact given the partition (parts=), up to the degeneracy policy")

    def forward(self, pos, x=None, batch=None, *, parts, num_graphs=None):
        """The layer on the partition given by ``parts`` (N,) (part labels within each cloud): ``(features
        (N, 3 out_channels), votes (N, 3))``; :meth:`run` is the step :class:`APEN` takes (any partition, the
        next one predicted)."""
        x, batch, B, parts = _check_inputs(pos, x, batch, parts, num_graphs, self.in_channels)
        if parts is None:
            raise ValueError("parts: required, the part label of every point (APEN runs the layer on predicted "
                             "partitions)")
        partition = partition_from_labels(parts, batch, num_graphs=B, dtype=pos.dtype)
        h, votes, _, _ = self.run(pos, x, batch, partition, B, next_partition=partition)
        return h, votes

    def run(self, pos, x, batch, partition: Partition, num_graphs: int, *, next_partition=None):
        """``(features (N, 3 out_channels), votes (N, 3), next partition, degenerate (num_parts,))`` on
        ``partition``; the next partition is predicted from the votes unless ``next_partition`` is given."""
        h, offsets, degenerate = self.part_features(pos, x, partition)
        votes = pos + offsets
        if next_partition is None:
            next_partition = em_partition(votes, batch, num_components=self.num_components, bandwidth=self.bandwidth,
                                          num_graphs=num_graphs, iters=self.iters, repulsion=self.repulsion,
                                          merge_radius=self.merge_radius, min_points=self.min_points)
        # part means of h and their scatter back, on padded clouds (batched matrix products, no N-row scatters)
        hr, mask, slots = to_dense(torch.cat([h, next_partition.soft.to(h.dtype)], 1), batch, num_graphs)
        hd, r = hr[..., :h.shape[1]], hr[..., h.shape[1]:]  # (B, M, C), (B, M, K); padding rows are 0
        g = torch.bmm(r.transpose(1, 2), hd) / r.sum(1).clamp_min(1e-6)[..., None]  # (B, K, C)
        scattered = torch.bmm(r, g)[batch, slots[0]]  # (N, C)
        context = torch.where(mask[..., None], hd, torch.full_like(hd, float("-inf"))).amax(1) if hd.shape[1] \
            else hd.new_zeros(num_graphs, h.shape[1])
        context = torch.where(torch.isfinite(context), context, torch.zeros_like(context))[batch]  # empty: 0
        return torch.cat([h, scattered, context], 1), votes, next_partition, degenerate


@dataclass
class APENOutput:
    """Everything :meth:`APEN.forward_details` computes.

    Attributes
    ----------
    seg : Tensor (N, num_part_labels) or None
        Per-point part logits.
    cls : Tensor (B, num_classes) or None
        Per-cloud class logits.
    votes : list of Tensor (N, 3)
        Each layer's votes for part centres.
    partitions : list of Partition
        The partition each layer ran on (the first from the positions, or the ground truth).
    degenerate : list of Tensor (B K_l,) bool
        Each layer's degenerate parts.
    """

    seg: torch.Tensor | None
    cls: torch.Tensor | None
    votes: list = field(default_factory=list)
    partitions: list = field(default_factory=list)
    degenerate: list = field(default_factory=list)


class APEN(nn.Module):
    """Approximately piecewise E(3)-equivariant point network (Atzmon et al., ICLR'24): L :class:`APENLayer`.

    Parameters
    ----------
    in_channels : int
        Width of invariant per-point input features ``x`` (0: positions only).
    num_part_labels : int or None
        Per-point segmentation logits of this width (None: no segmentation head).
    num_classes : int or None
        Per-cloud classification logits (None: no classification head). At least one head is needed.
    widths : sequence of int
        ``out_channels`` of each layer (L = len(widths)).
    components : sequence of int
        Components per cloud of each partition: ``components[0]`` for the initial partition (EM on the
        positions), ``components[l]`` for the one layer ``l - 1`` predicts from its votes; length L (fine to
        coarse: non-increasing is the intended use).
    bandwidths : sequence of float
        EM bandwidths of those partitions (length L; growing is the intended use).
    hidden_channels, head_channels : sequence of int
        Of each layer's per-part PointNet.
    iters, repulsion, min_points, degeneracy, gap_tol, group
        As in :class:`APENLayer`; ``merge_factor`` sets each merge radius to ``merge_factor * bandwidth``; layer
        ``l``'s ``part_scale`` is ``bandwidths[l]``, the bandwidth of the partition it runs on.

    Forward
    -------
    ``forward(pos, x=None, batch=None, *, parts=None, num_graphs=None)`` -> ``(seg, cls)`` (or the one enabled
    head's tensor): ``pos`` (N, 3), ``x`` (N, in_channels), ``batch`` (N,) cloud ids, ``parts`` (N,) part labels
    within each cloud (the ground-truth partition; None: predicted). :meth:`forward_details` returns the
    :class:`APENOutput` with the votes and the partitions (for :func:`vote_loss` and the bound).

    Symmetry: ``E3^parts+perm`` with ``parts`` given (exact, up to the degeneracy policy); with predicted
    partitions the outputs are E(3)+perm invariant and only approximately piecewise invariant.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.apen import APEN
    >>> _ = torch.manual_seed(0)
    >>> net = APEN(num_part_labels=3, num_classes=2, widths=(8, 8), components=(6, 3), bandwidths=(0.2, 0.3),
    ...            hidden_channels=(8, 16), head_channels=(8,), degeneracy="flag").double()
    >>> pos = torch.randn(40, 3, dtype=torch.float64) * torch.tensor([1.0, 0.6, 0.3], dtype=torch.float64)
    >>> batch = torch.tensor([0] * 20 + [1] * 20)
    >>> seg, cls = net(pos, batch=batch)
    >>> seg.shape, cls.shape
    (torch.Size([40, 3]), torch.Size([2, 2]))
    >>> parts = (pos[:, 0] > 0).long()
    >>> Q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    >>> moved = torch.where(parts[:, None] == 1, pos @ Q.T + 2.0, pos)   # only part 1 moves
    >>> torch.allclose(net(pos, batch=batch, parts=parts)[0], net(moved, batch=batch, parts=parts)[0])
    True
    """

    def __init__(self, in_channels: int = 0, num_part_labels: int | None = None, num_classes: int | None = None, *,
                 widths=(64, 64, 64), components=(32, 12, 6), bandwidths=(0.06, 0.1, 0.15),
                 hidden_channels=(64, 128), head_channels=(64,), iters: int = 10, repulsion: float = 0.5,
                 merge_factor: float = 1.0, min_points: int = 4, degeneracy: str = "warn", gap_tol: float = 1e-4,
                 group: str = "E3"):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, min=0)
        if num_part_labels is None and num_classes is None:
            raise ValueError("num_part_labels: give num_part_labels and/or num_classes (no head was asked for)")
        self.num_part_labels = None if num_part_labels is None else check_int("num_part_labels", num_part_labels,
                                                                               min=1)
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, min=1)
        widths = check_widths("widths", widths, nonempty=True)
        L = len(widths)
        for name, seq in (("components", components), ("bandwidths", bandwidths)):
            if isinstance(seq, (str, bytes)) or not hasattr(seq, "__iter__"):
                raise TypeError(f"{name}: expected a sequence, one entry per layer, got {type(seq).__name__}")
        components = tuple(check_int(f"components[{i}]", k, min=1, max=1 << 12) for i, k in enumerate(components))
        bandwidths = tuple(float(check_number(f"bandwidths[{i}]", s, positive=True)) for i, s in enumerate(bandwidths))
        for name, seq in (("components", components), ("bandwidths", bandwidths)):
            if len(seq) != L:
                raise ValueError(f"{name}: expected {L} entries (one per layer, as widths), got {len(seq)}")
        self.widths, self.components, self.bandwidths = widths, components, bandwidths
        feat = 3 * widths[-1]  # each layer's output features [h, part means, cloud max] feed the next layer
        check_linear_sizes("widths", widths, [(3 * w, 3 * w) for w in widths])
        for name, k in (("num_part_labels", self.num_part_labels), ("num_classes", self.num_classes)):
            if k is not None:
                check_linear_sizes(name, k, [(feat, feat), (feat, k)])
        self.merge_factor = float(check_number("merge_factor", merge_factor, nonnegative=True))
        self.iters = check_int("iters", iters, min=1, max=1000)
        self.repulsion = float(check_number("repulsion", repulsion, nonnegative=True))
        self.min_points = check_int("min_points", min_points, min=1)
        self.degeneracy = check_choice("degeneracy", degeneracy, _POLICIES)
        layers, c_in = [], self.in_channels
        for i, w in enumerate(widths):
            nxt = min(i + 1, L - 1)  # the last layer's partition is not used by a further layer
            layers.append(APENLayer(c_in, w, hidden_channels, head_channels, num_components=components[nxt],
                                    bandwidth=bandwidths[nxt], iters=iters, repulsion=repulsion,
                                    merge_radius=merge_factor * bandwidths[nxt], min_points=min_points,
                                    degeneracy=degeneracy, gap_tol=gap_tol, group=group, part_scale=bandwidths[i]))
            c_in = 3 * w
        self.layers = nn.ModuleList(layers)
        self.seg_head = None if self.num_part_labels is None else mlp([feat, feat, self.num_part_labels], "relu", False)
        self.cls_head = None if self.num_classes is None else mlp([feat, feat, self.num_classes], "relu", False)

    @property
    def symmetry(self) -> Symmetry:
        in_kinds = {"pos": "node:points", "parts": "parts", "batch": "batch"}
        if self.in_channels:
            in_kinds["x"] = "node:scalar"
        outs = tuple(k for k, h in (("node:scalar", self.seg_head), ("scalar", self.cls_head)) if h is not None)
        return Symmetry(f"{self.layers[0].group}^parts+perm", in_kinds, outs[0] if len(outs) == 1 else outs,
                        batch_arg="batch", note="exact with the ground-truth partition (parts=); approximate "
                        "(bounded by piecewise_bound) with predicted partitions")

    def extra_repr(self) -> str:
        return f"components={self.components}, bandwidths={self.bandwidths}"

    def forward_details(self, pos, x=None, batch=None, *, parts=None, num_graphs=None) -> APENOutput:
        """The heads' logits with the votes, partitions and degeneracy masks of every layer (:class:`APENOutput`)."""
        x, batch, B, parts = _check_inputs(pos, x, batch, parts, num_graphs, self.in_channels)
        n = pos.shape[0]
        if parts is not None:
            gt = partition_from_labels(parts, batch, num_graphs=B, dtype=pos.dtype)
            partition = gt
        else:
            gt = None
            partition = em_partition(pos, batch, num_components=self.components[0], bandwidth=self.bandwidths[0],
                                     num_graphs=B, iters=self.iters, repulsion=self.repulsion,
                                     merge_radius=self.merge_factor * self.bandwidths[0], min_points=self.min_points)
        out = APENOutput(seg=None, cls=None)
        h = x
        for layer in self.layers:
            out.partitions.append(partition)
            h, votes, partition, deg = layer.run(pos, h, batch, partition, B, next_partition=gt)
            out.votes.append(votes)
            out.degenerate.append(deg)
        if self.seg_head is not None:
            out.seg = self.seg_head(h)
        if self.cls_head is not None:
            pooled = pool_graphs(h, batch, B, "max")  # empty clouds pool to 0
            out.cls = self.cls_head(pooled)
        return out

    def forward(self, pos, x=None, batch=None, *, parts=None, num_graphs=None):
        out = self.forward_details(pos, x, batch, parts=parts, num_graphs=num_graphs)
        heads = tuple(t for t in (out.seg, out.cls) if t is not None)
        return heads[0] if len(heads) == 1 else heads


def vote_loss(votes, centres: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of every layer's votes to the ground-truth part centres.

    Parameters
    ----------
    votes : Tensor (N, 3) or list of them (e.g. ``APENOutput.votes``)
    centres : Tensor (N, 3)
        The centre of each point's true part (no points: the loss is 0).

    Examples
    --------
    >>> vote_loss([torch.zeros(4, 3), torch.ones(4, 3)], torch.zeros(4, 3))
    tensor(1.5000)
    """
    if isinstance(votes, torch.Tensor):
        votes = [votes]
    elif isinstance(votes, (str, bytes)) or not hasattr(votes, "__iter__"):
        raise TypeError(f"votes: expected an (N, 3) tensor or a list of them, got {type(votes).__name__}")
    else:
        votes = list(votes)
    if not votes:
        raise ValueError("votes: expected at least one (N, 3) tensor")
    check_tensor("centres", centres, shape=(None, 3), floating=True, finite=True)
    for i, v in enumerate(votes):
        check_tensor(f"votes[{i}]", v, ndim=2, floating=True)
        if v.shape != centres.shape:
            raise ValueError(f"votes[{i}]: shape {tuple(v.shape)} does not match centres {tuple(centres.shape)}")
    n = max(centres.shape[0], 1)  # the mean over no points is 0, not NaN
    return torch.stack([((v - centres.to(v.dtype)) ** 2).sum() / n for v in votes]).mean()
