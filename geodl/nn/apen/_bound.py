"""The piecewise equivariance error of an APEN model, measured, beside the two terms of the paper's bound.

Atzmon et al. bound the piecewise equivariance error of a model that runs on predicted partitions by two
terms (their Theorem 1, in words): the **probability that a predicted partition is not a sub-partition of
the true one** (a predicted part that straddles two rigid pieces is moved non-rigidly, and nothing holds
there), and the **uncertainty of the soft assignments** (a point shared between parts mixes features that
move differently). Both are measurable on a labelled batch, and so is the error itself:

- :func:`subpartition_violation`: per cloud, whether some predicted part holds points of two true parts
  (strict), and the fraction of points outside their predicted part's majority true part (impurity);
- :func:`assignment_uncertainty`: the mean of ``1 − max_k r_ik``;
- :func:`piecewise_motion`: independent random rigid motions (rotations, reflections for E(3),
  translations) of the true parts, drawn from the group ``"E3^parts"`` of :mod:`geodl.groups`;
- :func:`piecewise_bound`: the relative change of the model's outputs under such motions beside the bound's
  terms for every layer's partition, and the error split by whether all of a cloud's partitions were
  sub-partitions.
"""

from __future__ import annotations

import dataclasses

import torch

from geodl._checks import check_int, check_number, check_tensor
from geodl.nn.apen._clustering import Partition

__all__ = ["subpartition_violation", "assignment_uncertainty", "piecewise_motion", "piecewise_bound"]


def _labels_arg(labels, n, name="labels"):
    check_tensor(name, labels, dtypes=(torch.int64, torch.int32))
    if labels.shape != (n,):
        raise ValueError(f"{name}: expected one part label per point, shape ({n},), got {tuple(labels.shape)}")
    if n and int(labels.min()) < 0:
        raise ValueError(f"{name}: expected non-negative part labels, got {int(labels.min())}")
    return labels.long()


def _partition_arg(partition) -> Partition:
    if not isinstance(partition, Partition):
        raise TypeError(f"partition: expected a Partition (em_partition, partition_from_labels), got "
                        f"{type(partition).__name__}")
    return partition


def _batch_arg(batch, n, device, num_graphs=None):
    """``batch`` checked ((N,) int64 of non-negative ids, below ``num_graphs`` when given); zeros for None."""
    if batch is None:
        return torch.zeros(n, dtype=torch.long, device=device)
    check_tensor("batch", batch, shape=(n,), dtypes=(torch.int64,))
    if n and int(batch.min()) < 0:
        raise ValueError(f"batch: expected non-negative cloud ids, got {int(batch.min())}")
    if n and num_graphs is not None and int(batch.max()) >= num_graphs:
        raise ValueError(f"batch: cloud id {int(batch.max())} is not below the partition's {num_graphs} clouds")
    return batch


def _global_labels(labels, batch):
    P = int(labels.max()) + 1 if labels.numel() else 1
    return batch * P + labels


def subpartition_violation(partition: Partition, labels: torch.Tensor, batch: torch.Tensor | None = None) -> dict:
    """Whether each cloud's predicted partition fails to be a sub-partition of the true one.

    Parameters
    ----------
    partition : Partition
        Predicted (hard) partition.
    labels : Tensor (N,) int64
        True part label of each point within its cloud.
    batch : Tensor (N,) int64, optional

    Returns
    -------
    dict
        ``violated`` (B,) bool: some predicted part of the cloud holds points of two true parts;
        ``probability``: their mean over the clouds; ``impurity``: the fraction of points not in their
        predicted part's majority true part.

    Examples
    --------
    >>> from geodl.nn.apen import partition_from_labels
    >>> pred = partition_from_labels(torch.tensor([0, 0, 1, 1, 0, 1]), torch.tensor([0, 0, 0, 1, 1, 1]))
    >>> out = subpartition_violation(pred, torch.tensor([0, 0, 0, 0, 1, 0]), torch.tensor([0, 0, 0, 1, 1, 1]))
    >>> out["violated"].tolist(), out["probability"], round(out["impurity"], 3)
    ([False, False], 0.0, 0.0)
    >>> out = subpartition_violation(pred, torch.tensor([0, 1, 0, 0, 1, 0]), torch.tensor([0, 0, 0, 1, 1, 1]))
    >>> out["violated"].tolist(), out["probability"], round(out["impurity"], 3)
    ([True, False], 0.5, 0.167)
    """
    hard = _partition_arg(partition).hard
    n = hard.shape[0]
    labels = _labels_arg(labels, n)
    B, K = partition.counts.shape
    batch = _batch_arg(batch, n, hard.device, B)
    if n == 0:
        return {"violated": torch.zeros(B, dtype=torch.bool), "probability": 0.0, "impurity": 0.0}
    L = int(labels.max()) + 1
    pair = torch.zeros(B * K, L, dtype=torch.long, device=hard.device).index_put_(
        (hard, labels), torch.ones_like(hard), accumulate=True)  # points of true label j in predicted part p
    mixed = (pair > 0).sum(1) > 1  # (B K,)
    violated = mixed.reshape(B, K).any(1)
    impure = (pair.sum(1) - pair.amax(1)).sum()
    present = torch.bincount(batch, minlength=B) > 0
    prob = float(violated[present].double().mean()) if bool(present.any()) else 0.0
    return {"violated": violated, "probability": prob, "impurity": float(impure) / n}


def assignment_uncertainty(partition: Partition) -> float:
    """Mean over points of ``1 − max_k r_ik`` (0 for hard assignments).

    Examples
    --------
    >>> from geodl.nn.apen import Partition
    >>> p = Partition(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 0]), torch.zeros(1, 2, 3),
    ...               torch.tensor([[2, 0]]), 2)
    >>> assignment_uncertainty(p)
    0.25
    """
    soft = _partition_arg(partition).soft
    if soft.shape[0] == 0:
        return 0.0
    return float((1 - soft.detach().amax(1)).mean())


def piecewise_motion(pos: torch.Tensor, labels: torch.Tensor, batch: torch.Tensor | None = None, *,
                     group: str = "E3", translation_std: float = 0.5, generator: torch.Generator | None = None):
    """Move every true part of every cloud by its own random rigid motion (``"<group>^parts"``).

    Parameters
    ----------
    pos : Tensor (N, 3)
    labels : Tensor (N,) int64
        Part label of each point within its cloud.
    batch : Tensor (N,) int64, optional
    group : str
        "E3" (rotations and reflections) or "SE3" (rotations).
    translation_std : float
        Standard deviation of each part's translation (the group's unit-normal draws, scaled).
    generator : torch.Generator, optional

    Returns
    -------
    Tensor (N, 3)

    Examples
    --------
    >>> pos = torch.randn(10, 3, dtype=torch.float64)
    >>> labels = torch.tensor([0] * 5 + [1] * 5)
    >>> moved = piecewise_motion(pos, labels, generator=torch.Generator().manual_seed(0))
    >>> d = lambda p: torch.cdist(p, p)
    >>> torch.allclose(d(moved[:5]), d(pos[:5])), torch.allclose(d(moved), d(pos))
    (True, False)
    """
    from geodl.groups import act, get_group

    check_tensor("pos", pos, ndim=2, floating=True, finite=True)
    if pos.shape[1] != 3:
        raise ValueError(f"pos: expected shape (N, 3), got {tuple(pos.shape)}")
    n = pos.shape[0]
    labels = _labels_arg(labels, n)
    batch = _batch_arg(batch, n, pos.device)
    std = float(check_number("translation_std", translation_std, nonnegative=True))
    if group not in ("E3", "SE3"):
        raise ValueError(f"group: expected 'E3' or 'SE3', got {group!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    if n == 0:
        return pos.clone()
    glob = _global_labels(labels, batch)
    _, dense = torch.unique(glob, return_inverse=True)
    G = get_group(f"{group}^parts")
    g = G.sample(generator=generator, dtype=pos.dtype, device=pos.device, labels=dense)
    if g.part_translation is not None:
        g = dataclasses.replace(g, part_translation=g.part_translation * std)
    return act("node:points", g, pos)


def piecewise_bound(model, pos: torch.Tensor, labels: torch.Tensor, batch: torch.Tensor | None = None, *,
                    x: torch.Tensor | None = None, n_samples: int = 4, group: str = "E3",
                    translation_std: float = 0.5, generator: torch.Generator | None = None) -> dict:
    """The measured piecewise equivariance error of an :class:`~geodl.nn.apen.APEN` beside its bound's terms.

    The model runs in eval mode on predicted partitions (no ``parts=``), on ``pos`` and on ``n_samples`` copies
    (1 to 10 000) whose true parts were moved independently (:func:`piecewise_motion`).

    Returns
    -------
    dict
        ``error_seg`` / ``error_cls``: mean over the samples of ``‖f(g x) − f(x)‖ / ‖f(x)‖`` of the
        segmentation / classification logits (None for a missing head); ``flip_seg`` / ``flip_cls``: the
        fraction of argmax predictions that change; ``layers``: per layer, the partition's
        ``probability`` of not being a sub-partition, its ``impurity``, its ``uncertainty`` and
        ``num_parts`` (mean non-empty parts per cloud); ``error_seg_sub`` / ``error_seg_not_sub``: the
        segmentation error over the clouds whose partitions were all sub-partitions / the others (None when
        there are none); ``fraction_sub``: the share of the former.

    Examples
    --------
    >>> from geodl.nn.apen import APEN
    >>> _ = torch.manual_seed(0)
    >>> net = APEN(num_part_labels=2, widths=(8,), components=(4,), bandwidths=(0.3,), hidden_channels=(8,),
    ...            head_channels=(), degeneracy="flag").double()
    >>> pos = torch.randn(30, 3, dtype=torch.float64)
    >>> out = piecewise_bound(net, pos, (pos[:, 0] > 0).long(), n_samples=2)
    >>> sorted(out["layers"][0])
    ['impurity', 'num_parts', 'probability', 'uncertainty']
    """
    from geodl.nn.apen._model import APEN

    if not isinstance(model, APEN):
        raise TypeError(f"model: expected an APEN, got {type(model).__name__}")
    check_tensor("pos", pos, ndim=2, floating=True, finite=True)
    n = pos.shape[0]
    labels = _labels_arg(labels, n)
    n_samples = check_int("n_samples", n_samples, min=1, max=10_000)
    batch = _batch_arg(batch, n, pos.device)
    B = int(batch.max()) + 1 if n else 0
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model.forward_details(pos, x, batch, num_graphs=B)
            layers, sub = [], torch.ones(B, dtype=torch.bool, device=pos.device)
            for p in ref.partitions:
                v = subpartition_violation(p, labels, batch)
                sub &= ~v["violated"]
                layers.append({"probability": v["probability"], "impurity": v["impurity"],
                               "uncertainty": assignment_uncertainty(p),
                               "num_parts": float((p.counts > 0).sum()) / max(B, 1)})
            errs = {"seg": [], "cls": [], "seg_sub": [], "seg_not": []}
            flips = {"seg": [], "cls": []}
            for _ in range(n_samples):
                moved = piecewise_motion(pos, labels, batch, group=group, translation_std=translation_std,
                                         generator=generator)
                out = model.forward_details(moved, x, batch, num_graphs=B)
                for key in ("seg", "cls"):
                    a, b = getattr(ref, key), getattr(out, key)
                    if a is None:
                        continue
                    errs[key].append(float((b - a).norm() / a.norm().clamp_min(1e-30)))
                    flips[key].append(float((b.argmax(-1) != a.argmax(-1)).float().mean()) if a.numel() else 0.0)
                if ref.seg is not None:
                    for key, keep in (("seg_sub", sub), ("seg_not", ~sub)):
                        rows = keep[batch]
                        if bool(rows.any()):
                            a, b = ref.seg[rows], out.seg[rows]
                            errs[key].append(float((b - a).norm() / a.norm().clamp_min(1e-30)))
    finally:
        model.train(was)

    def mean(v):
        return sum(v) / len(v) if v else None

    return {"error_seg": mean(errs["seg"]), "error_cls": mean(errs["cls"]), "flip_seg": mean(flips["seg"]),
            "flip_cls": mean(flips["cls"]), "error_seg_sub": mean(errs["seg_sub"]),
            "error_seg_not_sub": mean(errs["seg_not"]), "fraction_sub": float(sub.float().mean()) if B else 0.0,
            "layers": layers, "n_samples": n_samples, "group": group, "translation_std": translation_std}
