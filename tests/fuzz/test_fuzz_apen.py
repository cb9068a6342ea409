"""Fuzz of :mod:`geodl.nn.apen` (entries registered with ``@fuzz`` in this file), on tiny clouds of
anisotropic blobs (a few dozen points, widths of 4): the EM partition against its invariants (rows summing
to 1, hard ids = the cloud's argmax, counts) and a rigid motion of the votes; the labelled partition
against the one-hot; the partition diagnostics against brute-force loops; the piecewise motion against the
distances within each part; the layer and the model against their shapes, finiteness and exact piecewise
invariance (float64) given the true partition; the bound's report against its ranges; the vote loss
against its formula."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, bad_ints, cases, check_entry, close, expect, finite, fuzz, poison, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
TINY = dict(widths=(4,), components=(3,), bandwidths=(0.3,), hidden_channels=(4,), head_channels=())


def _idx(v):
    import torch

    return torch.tensor(v, dtype=torch.long)


def _rigid(seed, reflect=False):
    """A random orthogonal matrix (a rotation unless ``reflect``) and a translation, float64."""
    import torch

    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if (torch.linalg.det(q) < 0) != reflect:
        q[:, 0] *= -1
    return q, torch.randn(3, generator=g, dtype=torch.float64)


def _blobs(sizes, parts_per_cloud, seed, scale=1.0, dtype="float64"):
    """``(pos (N, 3), labels (N,), batch (N,))``: cloud ``b`` of ``sizes[b]`` points split over
    ``parts_per_cloud[b]`` anisotropic blobs about 2 units apart (``scale`` times)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    pos, labels, batch = [], [], []
    for b, (n, k) in enumerate(zip(sizes, parts_per_cloud)):
        k = max(1, min(k, n)) if n else 1
        lab = torch.arange(n) % k
        centres = torch.randn(k, 3, generator=g, dtype=torch.float64) * 2.0
        axes = torch.linalg.qr(torch.randn(k, 3, 3, generator=g, dtype=torch.float64))[0]
        local = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.3, 0.15, 0.07]).double()
        p = torch.einsum("nij,nj->ni", axes[lab], local) + centres[lab] if n else torch.zeros(0, 3, dtype=torch.float64)
        pos.append(p * scale)
        labels.append(lab)
        batch.append(torch.full((n,), b, dtype=torch.long))
    return torch.cat(pos).to(getattr(torch, dtype)), torch.cat(labels).long(), torch.cat(batch)


def _need(cond, value):
    """``value`` when ``cond`` holds; else the mutation does not apply (``cases`` keeps the valid input)."""
    if not cond:
        raise ValueError("does not apply")
    return value


def _features(n, in_channels, seed, x):
    """``(x (N, in_channels) or None, whether it is broken)``: ``x`` "ok", "wide" (a column too many), "int"
    (int64) or "none" (missing)."""
    import torch

    c = in_channels if isinstance(in_channels, int) and not isinstance(in_channels, bool) and 0 <= in_channels < 8 else 0
    feats = torch.randn(n, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) if c else None
    if x == "wide":
        feats = torch.zeros(n, c + 1, dtype=torch.float64)
    elif x == "int":
        feats = torch.zeros(n, max(c, 1), dtype=torch.long)
    elif x == "none":
        feats = None
    return feats, x != "ok" and not (x == "none" and c == 0)


def _move_parts(pos, labels, batch, seed, reflect):
    """Every (cloud, part) moved by its own rigid motion (float64 reference, in ``pos``'s dtype)."""
    import torch

    out = pos.double().clone()
    keys = (batch * 10**6 + labels).tolist()
    for j, key in enumerate(sorted(set(keys))):
        rows = torch.tensor([k == key for k in keys])
        q, t = _rigid(seed + 17 * j, reflect and j % 2 == 1)
        out[rows] = out[rows] @ q.T + t
    return out.to(pos.dtype)


# ------------------------------------------------------------------------------------------- em_partition
@S.composite
def _em_case(draw):
    import torch

    sizes = draw(S.lists(S.integers(0, 14), min_size=1, max_size=3))
    seed = draw(SEEDS)
    scale = draw(S.sampled_from([1.0, 1e-3, 1e3]))
    dtype = draw(S.sampled_from(["float64", "float32"]))
    pos, _, batch = _blobs(sizes, [draw(S.integers(1, 3)) for _ in sizes], seed, scale, dtype)
    mode = draw(S.sampled_from(["batch", "none", "more graphs"]))
    if mode == "none":
        batch_arg, ng = None, draw(S.sampled_from([None, 1]))
    else:
        batch_arg, ng = batch, (None if mode == "batch" else len(sizes) + 1)
    return dict(votes=pos, batch=batch_arg, num_components=draw(S.integers(1, 6)),
                bandwidth=scale * draw(S.sampled_from([0.05, 0.2, 1.0, 5.0])), num_graphs=ng,
                iters=draw(S.integers(1, 4)), repulsion=draw(S.sampled_from([0.0, 0.5, 2.0])),
                merge_radius=draw(S.sampled_from([None, 0.0, 0.3 * scale])), min_points=draw(S.integers(1, 5)),
                seed=seed)


def _batch_muts(size_of="votes", names=()):
    def n(kw):
        return kw[size_of].shape[0]

    return [Mut("wrong length", lambda kw: _idx([0] * (n(kw) + 1)), names=names),
            Mut("negative", lambda kw: _idx([-1] * n(kw)) if n(kw) else _idx([-1]), names=names),
            Mut("float", lambda kw: kw[size_of].new_zeros(n(kw)).double(), names=names),
            Mut("int32", lambda kw: _idx([0] * n(kw)).int(), names=names),
            Mut("a string", "abc", names=names)]


_EM_MUTS = {
    "votes": tensor_muts("votes", shapes={"(N, 2)": lambda x: x[:, :2], "1-D": lambda x: x[:, 0]}),
    "batch": _batch_muts("votes"),
    "num_components": values(*bad_ints(), 5000),
    "bandwidth": values(0.0, -1.0, float("nan"), float("inf"), "0.1", None, True)
    + values(1e-200, 1e-30, mode="maybe"),  # a bandwidth whose 1 / 2σ² overflows may be refused
    "num_graphs": [Mut("below the largest id", lambda kw: 0 if kw["votes"].shape[0] else -1,
                       names=("num_graphs",))] + values(-1, True, 2.5, "2", HUGE),
    "iters": values(0, 1001, True, 2.5, None),
    "repulsion": values(-0.1, float("nan"), float("inf"), "0.5", None),
    "merge_radius": values(-1.0, float("nan"), "0.1"),
    "min_points": values(0, -1, True, 2.5, None),
}


@fuzz("geodl.nn.apen.em_partition", examples=40)
@with_cases(lambda: cases(_em_case(), _EM_MUTS))
def build_em_partition(votes, batch, num_components, bandwidth, num_graphs, iters, repulsion, merge_radius,
                       min_points, seed):
    import torch
    from geodl.nn.apen import Partition, em_partition

    kw = dict(num_components=num_components, bandwidth=bandwidth, num_graphs=num_graphs, iters=iters,
              repulsion=repulsion, merge_radius=merge_radius, min_points=min_points)

    def call():
        return em_partition(votes, batch, **kw)

    def verify(p):
        n, K = votes.shape[0], num_components
        b = torch.zeros(n, dtype=torch.long) if batch is None else batch
        B = num_graphs if num_graphs is not None else (1 if batch is None else (int(b.max()) + 1 if n else 0))
        expect(isinstance(p, Partition) and p.num_components == K and p.num_parts == B * K, "Partition record")
        expect(p.soft.shape == (n, K) and p.hard.shape == (n,) and p.centres.shape == (B, K, 3)
               and p.counts.shape == (B, K), f"shapes {tuple(p.soft.shape)} {tuple(p.centres.shape)}")
        expect(p.soft.dtype == votes.dtype and p.hard.dtype == torch.int64, "dtypes")
        finite(p.soft, p.centres)
        tol = 1e-5 if votes.dtype == torch.float32 else 1e-9
        expect(bool((p.soft >= 0).all()), "negative responsibilities")
        close(p.soft.sum(1), torch.ones(n, dtype=votes.dtype), atol=tol, msg="rows sum to 1")
        local = p.local()
        expect(torch.equal(p.hard, b * K + local), "hard = batch K + local")
        if n:
            expect(bool((p.soft.gather(1, local[:, None])[:, 0] >= p.soft.amax(1) - tol).all()), "hard = argmax")
        ref = torch.zeros(B * K, dtype=torch.long).index_add_(0, p.hard, torch.ones(n, dtype=torch.long))
        expect(torch.equal(p.counts.reshape(-1), ref), "counts")
        if votes.dtype == torch.float64 and n:  # a rigid motion of the votes moves the centres with them
            q, t = _rigid(seed % 1000, reflect=seed % 2 == 1)
            t = t * float(votes.abs().max())
            p2 = em_partition(votes @ q.T + t, batch, **kw)
            expect(torch.equal(p2.hard, p.hard), "hard partition changed under a rigid motion of the votes")
            close(p2.soft, p.soft, atol=1e-6, msg="responsibilities under a rigid motion")
            live = torch.bincount(b, minlength=B) > 0  # an empty cloud's centres are placeholders at 0
            close(p2.centres[live], (p.centres @ q.T + t)[live], atol=1e-6 * (1 + float(t.abs().max())),
                  msg="centres move with the votes")
        if n:
            grad = votes.detach().clone().requires_grad_(True)
            q = em_partition(grad, batch, **kw)
            (q.soft * torch.arange(K, dtype=votes.dtype)).sum().backward()
            expect(grad.grad is not None, "no gradient")
            finite(grad.grad, msg="gradient")

    return call, verify


# ------------------------------------------------------------------------------------ partition_from_labels
@S.composite
def _labels_case(draw):
    import torch

    sizes = draw(S.lists(S.integers(0, 8), min_size=1, max_size=3))
    g = torch.Generator().manual_seed(draw(SEEDS))
    k = draw(S.integers(1, 4))
    labels = torch.randint(0, k, (sum(sizes),), generator=g)
    batch = _idx([b for b, n in enumerate(sizes) for _ in range(n)])
    with_batch = draw(S.booleans()) or len(sizes) > 1
    return dict(labels=labels.to(draw(S.sampled_from([torch.int64, torch.int32]))),
                batch=batch if with_batch else None,
                num_graphs=draw(S.sampled_from([None, len(sizes), len(sizes) + 1])) if with_batch else None,
                num_parts=draw(S.sampled_from([None, k, k + 2])),
                dtype=draw(S.sampled_from([torch.float32, torch.float64])))


@fuzz("geodl.nn.apen.partition_from_labels", examples=30)
@with_cases(lambda: cases(_labels_case(), {
    "labels": [Mut("float", lambda kw: kw["labels"].double()), Mut("bool", lambda kw: kw["labels"] > 0),
               Mut("2-D", lambda kw: kw["labels"][:, None]),
               Mut("negative", lambda kw: kw["labels"] - 5 if kw["labels"].numel() else _idx([-1]))]
    + values("abc", None),
    "batch": _batch_muts("labels"),
    "num_graphs": [Mut("below the largest id", lambda kw: int(kw["batch"].max()) if kw["batch"] is not None
                       and kw["batch"].numel() else -1)] + values(-1, True, 2.5, "2", HUGE),
    "num_parts": [Mut("below the largest label", lambda kw: int(kw["labels"].max()) if kw["labels"].numel() and
                      int(kw["labels"].max()) > 0 else 0)] + values(0, True, "3", 2.5, HUGE),
    "dtype": values("float32", 3) + values(__import__("torch").int64, __import__("torch").bool),
}))
def build_partition_from_labels(labels, batch, num_graphs, num_parts, dtype):
    import torch
    from geodl.nn.apen import partition_from_labels

    def call():
        return partition_from_labels(labels, batch, num_graphs=num_graphs, num_parts=num_parts, dtype=dtype)

    def verify(p):
        n = labels.shape[0]
        lab = labels.long()
        b = torch.zeros(n, dtype=torch.long) if batch is None else batch
        B = num_graphs if num_graphs is not None else (int(b.max()) + 1 if n else 0)
        K = num_parts if num_parts is not None else (int(lab.max()) + 1 if n else 1)
        expect(p.num_components == K and p.soft.dtype == dtype and p.centres.shape == (B, K, 3), "record")
        close(p.soft, torch.nn.functional.one_hot(lab, K).to(dtype), atol=0, msg="one-hot")
        expect(torch.equal(p.hard, b * K + lab) and torch.equal(p.local(), lab), "hard ids")
        ref = torch.zeros(B, K, dtype=torch.long)
        for i in range(n):
            ref[b[i], lab[i]] += 1
        expect(torch.equal(p.counts, ref), f"counts {p.counts.tolist()} != {ref.tolist()}")

    return call, verify


# ------------------------------------------------------------------------------- partition diagnostics
@S.composite
def _diag_case(draw):
    import torch

    sizes = draw(S.lists(S.integers(0, 10), min_size=1, max_size=3))
    seed = draw(SEEDS)
    pos, labels, cloud = _blobs(sizes, [draw(S.integers(1, 3)) for _ in sizes], seed)
    how = draw(S.sampled_from(["em", "labels", "true"]))
    g = torch.Generator().manual_seed(seed)
    if how == "em":
        pred = dict(kind="em", votes=pos, K=draw(S.integers(1, 4)), bandwidth=draw(S.sampled_from([0.2, 1.0])))
    elif how == "labels":
        pred = dict(kind="labels", labels=torch.randint(0, 3, labels.shape, generator=g))
    else:
        pred = dict(kind="labels", labels=labels.clone())
    # batch may be left out for a single cloud
    batch = cloud if len(sizes) > 1 or draw(S.booleans()) else None
    return dict(pred=pred, labels=labels, cloud=cloud, num_graphs=len(sizes), batch=batch)


def _predicted(pred, cloud, num_graphs):
    """The predicted partition described by ``pred`` (a dict; any other value is passed as is)."""
    from geodl.nn.apen import em_partition, partition_from_labels

    if not isinstance(pred, dict):
        return pred
    if pred["kind"] == "em":
        return em_partition(pred["votes"], cloud, num_components=pred["K"], bandwidth=pred["bandwidth"],
                            num_graphs=num_graphs, iters=3, min_points=1)
    return partition_from_labels(pred["labels"], cloud, num_graphs=num_graphs)


_LABEL_MUTS = [Mut("wrong length", lambda kw: _idx([0] * (kw["labels"].shape[0] + 1))),
               Mut("negative", lambda kw: kw["labels"] - 4 if kw["labels"].numel() else _idx([-1])),
               Mut("float", lambda kw: kw["labels"].double())] + values("abc", None)


@fuzz("geodl.nn.apen.subpartition_violation", examples=30)
@with_cases(lambda: cases(_diag_case(), {
    "pred": values("abc", None, 3, names=("partition",)), "labels": _LABEL_MUTS,
    "batch": [Mut("wrong length", lambda kw: _idx([0] * (kw["labels"].shape[0] + 1))),
              Mut("float", lambda kw: kw["cloud"].double()),
              Mut("negative", lambda kw: kw["cloud"] - 1 if kw["cloud"].numel() else _idx([-1])),
              Mut("beyond the partition's clouds", lambda kw: kw["cloud"] + kw["num_graphs"]
                  if kw["cloud"].numel() else _idx([kw["num_graphs"]]))] + values("abc")}))
def build_subpartition_violation(pred, labels, cloud, num_graphs, batch):
    from geodl.nn.apen import subpartition_violation

    p = _predicted(pred, cloud, num_graphs)

    def call():
        return subpartition_violation(p, labels, batch)

    def verify(out):
        n = labels.shape[0]
        B = p.counts.shape[0]
        lab = labels.long()
        parts = {}
        for i in range(n):
            parts.setdefault(int(p.hard[i]), []).append(int(lab[i]))
        violated = [False] * B
        impure = 0
        for pid, ls in parts.items():
            violated[pid // p.num_components] |= len(set(ls)) > 1
            impure += len(ls) - max(ls.count(v) for v in set(ls))
        expect(out["violated"].tolist() == violated, f"violated {out['violated'].tolist()} != {violated}")
        present = sorted(set(cloud.tolist()))
        prob = sum(violated[c] for c in present) / len(present) if present else 0.0
        expect(abs(out["probability"] - prob) < 1e-12, f"probability {out['probability']} != {prob}")
        expect(abs(out["impurity"] - (impure / n if n else 0.0)) < 1e-12, f"impurity {out['impurity']}")

    return call, verify


@fuzz("geodl.nn.apen.assignment_uncertainty", examples=20)
@with_cases(lambda: cases(_diag_case(), {"pred": values("abc", None, 3, names=("partition",))}))
def build_assignment_uncertainty(pred, labels, cloud, num_graphs, batch):
    from geodl.nn.apen import assignment_uncertainty

    p = _predicted(pred, cloud, num_graphs)

    def call():
        return assignment_uncertainty(p)

    def verify(u):
        ref = float((1 - p.soft.double().amax(1)).mean()) if p.soft.shape[0] else 0.0
        expect(isinstance(u, float) and abs(u - ref) < 1e-6 and -1e-9 <= u <= 1, f"{u} != {ref}")

    return call, verify


# ------------------------------------------------------------------------------------- piecewise_motion
@S.composite
def _motion_case(draw):
    sizes = draw(S.lists(S.integers(0, 10), min_size=1, max_size=3))
    seed = draw(SEEDS)
    dtype = draw(S.sampled_from(["float64", "float32"]))
    pos, labels, batch = _blobs(sizes, [draw(S.integers(1, 3)) for _ in sizes], seed, dtype=dtype)
    return dict(pos=pos, labels=labels, batch=batch if len(sizes) > 1 or draw(S.booleans()) else None,
                group=draw(S.sampled_from(["E3", "SE3"])), translation_std=draw(S.sampled_from([0.0, 0.5, 3.0])),
                generator=draw(S.integers(0, 1000)))


_POS_MUTS = tensor_muts("pos", shapes={"(N, 2)": lambda x: x[:, :2], "1-D": lambda x: x[:, 0]})


@fuzz("geodl.nn.apen.piecewise_motion", examples=30)
@with_cases(lambda: cases(_motion_case(), {
    "pos": _POS_MUTS, "labels": _LABEL_MUTS, "batch": _batch_muts("pos"),
    "group": values("SO2", "E2", "O3", 3, None), "translation_std": values(-1.0, float("nan"), "0.5", None),
    "generator": values("seed", 3.5)}))
def build_piecewise_motion(pos, labels, batch, group, translation_std, generator):
    import torch
    from geodl.nn.apen import piecewise_motion

    def gen():
        return torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator

    def call():
        return piecewise_motion(pos, labels, batch, group=group, translation_std=translation_std, generator=gen())

    def verify(out):
        expect(out.shape == pos.shape and out.dtype == pos.dtype, f"{tuple(out.shape)} {out.dtype}")
        finite(out)
        b = torch.zeros(pos.shape[0], dtype=torch.long) if batch is None else batch
        tol = 1e-4 if pos.dtype == torch.float32 else 1e-10
        keys = (b * 1000 + labels).tolist()
        for key in set(keys):
            rows = torch.tensor([k == key for k in keys])
            a, m = pos[rows].double(), out[rows].double()
            close(torch.cdist(m, m), torch.cdist(a, a), atol=tol * 10, msg="distances within a part")
            if group == "SE3" and a.shape[0] >= 4:
                e, f = a[1:4] - a[0], m[1:4] - m[0]
                da, dm = float(torch.linalg.det(e)), float(torch.linalg.det(f))
                expect(abs(da) < 1e-3 or da * dm > 0, "SE3 motion reflected a part")
        again = piecewise_motion(pos, labels, batch, group=group, translation_std=translation_std, generator=gen())
        close(again, out, atol=0, msg="same generator, same motion")

    return call, verify


# ------------------------------------------------------------------------------------------ the layer
@S.composite
def _model_clouds(draw, max_clouds=2):
    """Clouds of 0 or 5..16 points (every non-empty cloud needs 2), 1..3 parts of at least 5 points each (4-point
    parts may be nearly degenerate)."""
    sizes = draw(S.lists(S.sampled_from([0, 5, 10, 16]), min_size=1, max_size=max_clouds))
    if not any(sizes):
        sizes[0] = draw(S.sampled_from([0, 10]))
    seed = draw(SEEDS)
    pos, labels, batch = _blobs(sizes, [max(1, min(draw(S.integers(1, 3)), n // 5)) for n in sizes], seed)
    return dict(pos=pos, parts=labels, batch=batch if len(sizes) > 1 or draw(S.booleans()) else None,
                num_graphs=draw(S.sampled_from([None, len(sizes) + 1])) if len(sizes) > 1 else None, seed=seed)


_X_MUTS = [Mut("wrong width", lambda kw: "wide"), Mut("int64", lambda kw: "int"),
           Mut("missing", lambda kw: _need(kw["in_channels"], "none"))]
_FWD_MUTS = {
    "pos": _POS_MUTS,
    "batch": _batch_muts("pos") + [Mut("a one-point cloud", lambda kw: _idx(list(range(kw["pos"].shape[0]))),
                                      names=("batch", "num_graphs"))],
    "parts": [Mut("wrong length", lambda kw: _idx([0] * (kw["pos"].shape[0] + 1))),
              Mut("negative", lambda kw: kw["parts"] - 4 if kw["parts"].numel() else _idx([-1])),
              Mut("float", lambda kw: kw["parts"].double()), Mut("a string", "abc")],
    "num_graphs": [Mut("below the largest id", lambda kw: 0 if kw["pos"].shape[0] else -1)]
    + values(-1, True, 2.5, "2", HUGE),
}


@S.composite
def _layer_case(draw):
    kw = draw(_model_clouds())
    kw.update(in_channels=draw(S.sampled_from([0, 2])), out_channels=draw(S.sampled_from([2, 4])),
              num_components=draw(S.integers(1, 3)), bandwidth=draw(S.sampled_from([0.2, 1.0])),
              min_points=draw(S.integers(1, 4)), degeneracy=draw(S.sampled_from(["flag", "warn", "augment", "raise"])),
              group=draw(S.sampled_from(["E3", "SE3"])), part_scale=draw(S.sampled_from([1.0, 0.1])))
    if kw["degeneracy"] == "raise":  # a degenerate part (e.g. one of fewer than min_points points) is refused
        return kw, "maybe", ("pos",)
    return kw


@fuzz("geodl.nn.apen.APENLayer", examples=36)
@with_cases(lambda: cases(_layer_case(), {
    **_FWD_MUTS,
    "in_channels": values(-1, True, "0", HUGE), "out_channels": values(0, -1, True, 2.5, HUGE),
    "num_components": values(0, 5000, True, "3"), "bandwidth": values(0.0, -1.0, float("nan"), "0.1"),
    "min_points": values(0, -1, True, None), "degeneracy": values("bogus", None, 3),
    "group": values("E2", "bogus", 3, None), "part_scale": values(0.0, -1.0, float("nan"), "1"),
    "x": _X_MUTS}))
def build_apen_layer(pos, parts, batch, num_graphs, seed, in_channels, out_channels, num_components, bandwidth,
                     min_points, degeneracy, group, part_scale, x="ok"):
    import torch
    from geodl.nn.apen import APENLayer, partition_from_labels

    n = pos.shape[0] if isinstance(pos, torch.Tensor) and pos.dim() else 0
    feats, bad_x = _features(n, in_channels, seed, x)

    def call():
        torch.manual_seed(seed % 1000)
        layer = APENLayer(in_channels, out_channels, (4,), (), num_components=num_components, bandwidth=bandwidth,
                          iters=2, min_points=min_points, degeneracy=degeneracy, group=group,
                          part_scale=part_scale).double()
        return layer, layer(pos, feats, batch, parts=parts, num_graphs=num_graphs)

    def verify(res):
        expect(not bad_x, "a bad x was accepted")
        layer, (h, votes) = res
        expect(h.shape == (n, 3 * out_channels) and votes.shape == (n, 3),
               f"shapes {tuple(h.shape)} {tuple(votes.shape)}")
        finite(h, votes)
        b = torch.zeros(n, dtype=torch.long) if batch is None else batch
        B = num_graphs if num_graphs is not None else (int(b.max()) + 1 if n else (1 if batch is None else 0))
        part = partition_from_labels(parts, b, num_graphs=B, dtype=pos.dtype)
        with torch.no_grad():
            _, _, _, degenerate = layer.run(pos, feats, b, part, B, next_partition=part)
        if degeneracy == "augment" or bool(degenerate.any()) or not n:
            return
        moved = _move_parts(pos, parts, b, seed % 997, reflect=group == "E3")
        h2, votes2 = layer(moved, feats, batch, parts=parts, num_graphs=num_graphs)
        close(h2, h, atol=1e-7, rtol=1e-6, msg="features invariant under a piecewise motion")
        close(votes2 - moved, _move_parts(votes, parts, b, seed % 997, reflect=group == "E3") - moved, atol=1e-7,
              rtol=1e-6, msg="votes move with their part")

    return call, verify


# ------------------------------------------------------------------------------------------ the model
@S.composite
def _apen_case(draw):
    kw = draw(_model_clouds())
    kw.update(heads=draw(S.sampled_from(["seg", "cls", "both"])), in_channels=draw(S.sampled_from([0, 2])),
              widths=draw(S.sampled_from([(4,), (4, 4)])),
              degeneracy=draw(S.sampled_from(["flag", "warn", "augment", "raise"])),
              group=draw(S.sampled_from(["E3", "SE3", "O3"])), use_parts=draw(S.booleans()),
              min_points=draw(S.integers(1, 4)), train=draw(S.booleans()))
    L = len(kw["widths"])
    kw.update(components=(3,) * L, bandwidths=(0.3,) * L)
    if kw["degeneracy"] == "raise":
        return kw, "maybe", ("pos",)
    return kw


@fuzz("geodl.nn.apen.APEN", examples=48)
@with_cases(lambda: cases(_apen_case(), {
    **_FWD_MUTS,
    "in_channels": values(-1, True, "0", HUGE), "heads": values("none", names=("num_part_labels",)),
    "num_part_labels": values(0, -1, True, "3", HUGE), "num_classes": values(0, True, 2.5, HUGE),
    "widths": values((), (0,), "4", 4, None, (HUGE,)),
    "components": values((0,), (3, 3, 3), 3, "3", (5000,), None),
    "bandwidths": values((0.0,), (-1.0,), (float("nan"),), (0.1, 0.2, 0.3), 0.1, ("a",), None),
    "hidden_channels": values((), (0,), "4", None), "iters": values(0, 1001, True),
    "repulsion": values(-1.0, float("nan")), "merge_factor": values(-1.0, float("nan"), "1"),
    "min_points": values(0, True, None), "degeneracy": values("bogus", None), "gap_tol": values(-1.0, float("nan")),
    "group": values("E2", "bogus", 3),
    "x": _X_MUTS}))
def build_apen(pos, parts, batch, num_graphs, seed, heads, in_channels, widths, degeneracy, group, use_parts,
               min_points, train, components, bandwidths, num_part_labels=3, num_classes=2, hidden_channels=(4,),
               iters=2, repulsion=0.5, merge_factor=1.0, gap_tol=1e-4, x="ok"):
    import torch
    from geodl.nn.apen import APEN, APENOutput, vote_loss

    n = pos.shape[0] if isinstance(pos, torch.Tensor) and pos.dim() else 0
    feats, bad_x = _features(n, in_channels, seed, x)
    npl = None if heads in ("cls", "none") and num_part_labels == 3 else num_part_labels  # a mutated value is passed
    ncl = None if heads in ("seg", "none") and num_classes == 2 else num_classes
    fwd_parts = parts if use_parts else None

    def call():
        torch.manual_seed(seed % 1000)
        net = APEN(in_channels, npl, ncl, widths=widths, components=components, bandwidths=bandwidths,
                   hidden_channels=hidden_channels, head_channels=(), iters=iters, repulsion=repulsion,
                   merge_factor=merge_factor, min_points=min_points, degeneracy=degeneracy, gap_tol=gap_tol,
                   group=group).double().train(train)
        return net, net.forward_details(pos, feats, batch, parts=fwd_parts, num_graphs=num_graphs)

    def verify(res):
        expect(not bad_x, "a bad x was accepted")
        net, out = res
        b = torch.zeros(n, dtype=torch.long) if batch is None else batch
        B = num_graphs if num_graphs is not None else (int(b.max()) + 1 if n else (1 if batch is None else 0))
        L = len(widths)
        expect(isinstance(out, APENOutput) and len(out.votes) == len(out.partitions) == len(out.degenerate) == L,
               "APENOutput lists")
        expect((out.seg is None) == (npl is None) and (out.cls is None) == (ncl is None), "heads")
        if npl is not None:
            expect(out.seg.shape == (n, npl), f"seg {tuple(out.seg.shape)}")
        if ncl is not None:
            expect(out.cls.shape == (B, ncl), f"cls {tuple(out.cls.shape)}")
        for v in out.votes:
            expect(v.shape == (n, 3), f"votes {tuple(v.shape)}")
        finite(*[t for t in (out.seg, out.cls) if t is not None], *out.votes)
        plain = net(pos, feats, batch, parts=fwd_parts, num_graphs=num_graphs)
        heads_out = tuple(t for t in (out.seg, out.cls) if t is not None)
        if not train:
            got = plain if isinstance(plain, tuple) else (plain,)
            for a, r in zip(got, heads_out):
                close(a, r, atol=1e-12, msg="forward = forward_details' heads")
        loss = sum(t.square().mean() for t in heads_out if t.numel())
        loss = loss + vote_loss(out.votes, torch.zeros(n, 3, dtype=pos.dtype))
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
            for prm in net.parameters():
                if prm.grad is not None:
                    finite(prm.grad, msg="gradient")
        if not n or degeneracy == "augment" or group == "O3":
            return
        if any(bool(d.any()) for d in out.degenerate):
            return
        net.eval()
        with torch.no_grad():
            ref = net.forward_details(pos, feats, batch, parts=fwd_parts, num_graphs=num_graphs)
            if use_parts:  # exact piecewise invariance given the true partition
                moved = _move_parts(pos, parts, b, seed % 991, reflect=group == "E3")
                msg = "piecewise invariance with parts="
            else:  # predicted partitions: invariant under one rigid motion of each cloud
                moved = _move_parts(pos, torch.zeros_like(parts), b, seed % 991, reflect=group == "E3")
                msg = "E(3) invariance with predicted partitions"
            got = net.forward_details(moved, feats, batch, parts=fwd_parts, num_graphs=num_graphs)
        for a, r in ((got.seg, ref.seg), (got.cls, ref.cls)):
            if a is not None:
                close(a, r, atol=1e-6, rtol=1e-5, msg=msg)

    return call, verify


# ------------------------------------------------------------------------------------------ the bound
@S.composite
def _bound_case(draw):
    kw = draw(_model_clouds())
    kw.pop("num_graphs")
    kw["labels"] = kw.pop("parts")
    kw.update(n_samples=draw(S.integers(1, 2)), group=draw(S.sampled_from(["E3", "SE3"])),
              translation_std=draw(S.sampled_from([0.0, 0.5])), heads=draw(S.sampled_from(["seg", "cls", "both"])))
    return kw


@fuzz("geodl.nn.apen.piecewise_bound", examples=14)
@with_cases(lambda: cases(_bound_case(), {
    "pos": _POS_MUTS, "labels": _LABEL_MUTS, "batch": _batch_muts("pos"),
    "model": values("abc", None), "n_samples": values(*bad_ints(), HUGE * 10),
    "group": values("SO3", "E2", None), "translation_std": values(-1.0, float("nan"), "0.5")}))
def build_piecewise_bound(pos, labels, batch, seed, n_samples, group, translation_std, heads, model="apen"):
    import torch
    from geodl.nn.apen import APEN, piecewise_bound

    def call():
        torch.manual_seed(seed % 1000)
        net = APEN(0, None if heads == "cls" else 3, None if heads == "seg" else 2, degeneracy="flag",
                   **TINY).double() if model == "apen" else model
        return piecewise_bound(net, pos, labels, batch, n_samples=n_samples, group=group,
                               translation_std=translation_std, generator=torch.Generator().manual_seed(seed % 1000))

    def verify(out):
        expect(out["n_samples"] == n_samples and out["group"] == group, "echo")
        expect(len(out["layers"]) == len(TINY["widths"]), "one entry per layer")
        for layer in out["layers"]:
            expect(0 <= layer["probability"] <= 1 and 0 <= layer["impurity"] <= 1 and -1e-9 <= layer["uncertainty"] <= 1
                   and layer["num_parts"] >= 0, f"layer terms {layer}")
        for key in ("error_seg", "error_cls", "error_seg_sub", "error_seg_not_sub"):
            v = out[key]
            expect(v is None or (v == v and 0 <= v < float("inf")), f"{key} = {v}")
        for key, head in (("error_seg", "cls"), ("error_cls", "seg")):
            expect((out[key] is None) == (heads == head), f"{key} for heads={heads}")
        for key in ("flip_seg", "flip_cls"):
            expect(out[key] is None or 0 <= out[key] <= 1, key)
        expect(0 <= out["fraction_sub"] <= 1, "fraction_sub")

    return call, verify


# ------------------------------------------------------------------------------------------ vote_loss
@S.composite
def _vote_case(draw):
    import torch

    n, L, seed = draw(S.integers(0, 8)), draw(S.integers(1, 3)), draw(SEEDS)
    g = torch.Generator().manual_seed(seed)
    dtype = draw(S.sampled_from([torch.float32, torch.float64]))
    votes = [torch.randn(n, 3, generator=g, dtype=torch.float64).to(dtype) for _ in range(L)]
    return dict(votes=votes[0] if L == 1 and draw(S.booleans()) else votes,
                centres=torch.randn(n, 3, generator=g, dtype=torch.float64).to(dtype))


def _first(v):
    import torch

    return v if isinstance(v, torch.Tensor) else v[0]


_V = ("votes[0]", "votes")
_VOTE_MUTS = [
    Mut("an empty list", []),
    Mut("a NaN vote", lambda kw: [poison(_first(kw["votes"]), 3)] if _first(kw["votes"]).numel() else [],
        mode="nonfinite"),
    Mut("wrong rows", lambda kw: [_first(kw["votes"])[:-1] if _first(kw["votes"]).shape[0]
                                  else _first(kw["votes"]).new_zeros(1, 3)], names=_V),
    Mut("complex", lambda kw: [_first(kw["votes"]).to(__import__("torch").complex64)], names=_V),
    Mut("int64", lambda kw: [_first(kw["votes"]).long()], names=_V),
    Mut("a string entry", lambda kw: ["abc"], names=_V)] + values(None, 3, "abc", names=_V)


@fuzz("geodl.nn.apen.vote_loss", examples=30)
@with_cases(lambda: cases(_vote_case(), {
    "votes": _VOTE_MUTS,
    "centres": tensor_muts("centres", shapes={"(N, 2)": lambda x: x[:, :2], "1-D": lambda x: x[:, 0]},
                           names=("centres", "votes[0]"))}))
def build_vote_loss(votes, centres):
    import torch
    from geodl.nn.apen import vote_loss

    def call():
        vs = [v.clone().requires_grad_(True) for v in votes] if isinstance(votes, list) and all(
            isinstance(v, torch.Tensor) and v.is_floating_point() for v in votes) else votes
        return vs, vote_loss(vs, centres)

    def verify(res):
        vs, loss = res
        vl = [vs] if isinstance(vs, torch.Tensor) else vs
        expect(loss.shape == (), f"shape {tuple(loss.shape)}")
        finite(loss)
        ref = sum(((v.detach().double() - centres.double()) ** 2).sum(-1).mean() if v.shape[0] else 0.0
                  for v in vl) / len(vl)
        close(loss, torch.as_tensor(ref, dtype=torch.float64), atol=1e-5, rtol=1e-5, msg="mean squared distance")
        if loss.requires_grad:
            loss.backward()
            for v in vl:
                if v.grad is not None:
                    finite(v.grad, msg="gradient")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_apen"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
