"""APEN (geodl.nn.apen): piecewise equivariance with the true partition, clustering, degeneracy, bad input, bound."""

from __future__ import annotations

import warnings

import pytest
import torch

from geodl.groups import get_group
from geodl.nn.apen import (APEN, APENLayer, assignment_uncertainty, em_partition, partition_from_labels,
                           piecewise_bound, piecewise_motion, subpartition_violation, vote_loss)
from geodl.testing import CHECKS, check_module

# The clustering reads sizes and merge decisions on the host (data-dependent control flow), so the model does
# not trace with fullgraph=True: every other item of the battery runs.
NO_COMPILE = tuple(c for c in CHECKS if c != "compile")


def _clouds(n_clouds=2, n_parts=3, per_part=20, seed=1, spread=1.0, dtype=torch.float64):
    """Clouds of anisotropic blobs (one per part), with part labels and cloud ids."""
    g = torch.Generator().manual_seed(seed)
    pos, parts, batch = [], [], []
    for b in range(n_clouds):
        for k in range(n_parts):
            p = torch.randn(per_part, 3, generator=g, dtype=dtype) * torch.tensor([0.3, 0.15, 0.05], dtype=dtype)
            pos.append(p @ torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))[0]
                       + spread * torch.randn(3, generator=g, dtype=dtype))
            parts.append(torch.full((per_part,), k))
            batch.append(torch.full((per_part,), b))
    return torch.cat(pos), torch.cat(parts), torch.cat(batch)


def _net(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    args = dict(num_part_labels=4, num_classes=3, widths=(16, 16), components=(8, 4), bandwidths=(0.1, 0.2),
                hidden_channels=(16, 32), head_channels=(16,), degeneracy="flag")
    args.update(kw)
    return APEN(**args).to(dtype)


# --------------------------------------------------------------------------- check_module, the piecewise kind


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_check_module_with_the_true_partition(dtype):
    pos, parts, batch = _clouds()
    rtol = 1e-5 if dtype == torch.float32 else None
    check_module(_net(), {"pos": pos, "parts": parts, "batch": batch}, dtype=dtype, rtol=rtol, checks=NO_COMPILE)


def test_check_module_with_features_and_one_head():
    pos, parts, batch = _clouds(seed=3)
    x = torch.randn(pos.shape[0], 2, dtype=torch.float64)
    net = _net(in_channels=2, num_classes=None)
    assert net.symmetry.out_kinds == "node:scalar" and net.symmetry.in_kinds["x"] == "node:scalar"
    check_module(net, {"pos": pos, "x": x, "parts": parts, "batch": batch}, checks=NO_COMPILE)


def test_piecewise_relative_error_float32_below_1e5():
    """Independent rotations, reflections and translations of the true parts: ≤ 1e-5 relative in float32."""
    pos, parts, batch = _clouds(n_clouds=3, n_parts=4, per_part=24, seed=5, dtype=torch.float32)
    net = _net(torch.float32).eval()
    glob = batch * 4 + parts
    G = get_group("E3^parts")
    with torch.no_grad():
        ref_seg, ref_cls = net(pos, batch=batch, parts=parts)
    gen = torch.Generator().manual_seed(0)
    reflected = 0
    for _ in range(6):
        g = G.sample(generator=gen, dtype=torch.float32, labels=glob)
        reflected += int((torch.linalg.det(g.part_rotation) < 0).sum())
        moved = pos.clone()
        for p in range(12):
            rows = glob == p
            moved[rows] = pos[rows] @ g.part_rotation[p].T + 3.0 * g.part_translation[p]
        with torch.no_grad():
            seg, cls = net(moved, batch=batch, parts=parts)
        assert float((seg - ref_seg).norm() / ref_seg.norm()) <= 1e-5
        assert float((cls - ref_cls).norm() / ref_cls.norm()) <= 1e-5
    assert reflected > 0  # reflections were among the motions


def test_predicted_partitions_are_globally_invariant_but_not_piecewise():
    """With predicted partitions: E(3)+perm invariant exactly, piecewise only approximately (the check fails)."""
    pos, parts, batch = _clouds(spread=0.3, seed=2)
    net = _net()
    check_module(net, {"pos": pos, "batch": batch}, group="E3+perm",
                 in_kinds={"pos": "node:points", "batch": "batch"}, out_kinds=("node:scalar", "scalar"),
                 checks=("equivariance", "batching"))
    rep = check_module(net, {"pos": pos, "parts": parts, "batch": batch}, checks=("equivariance",),
                       raise_on_fail=False)
    assert rep.passed  # given the true partition
    loose = lambda pos, batch, parts: net(pos, batch=batch)  # noqa: E731  (ignores the partition)
    wrapped = torch.nn.Module()
    wrapped.forward = loose
    rep = check_module(wrapped, {"pos": pos, "batch": batch, "parts": parts}, group="E3^parts+perm",
                       in_kinds={"pos": "node:points", "batch": "batch", "parts": "parts"},
                       out_kinds=("node:scalar", "scalar"), checks=("equivariance",), raise_on_fail=False)
    assert not rep.passed


# --------------------------------------------------------------------------- clustering


def test_em_separates_blobs_and_merges_duplicates():
    g = torch.Generator().manual_seed(0)
    votes = torch.cat([torch.randn(40, 3, generator=g) * 0.05, torch.randn(40, 3, generator=g) * 0.05 + 3.0,
                       torch.randn(40, 3, generator=g) * 0.05 - 3.0])
    p = em_partition(votes, num_components=9, bandwidth=0.2)
    labels = torch.arange(3).repeat_interleave(40)
    assert subpartition_violation(p, labels)["probability"] == 0.0
    assert int((p.counts > 0).sum()) == 3  # 9 components merged into the 3 blobs
    assert torch.allclose(p.soft.sum(1), torch.ones(120))
    assert assignment_uncertainty(p) < 1e-6


def test_em_is_rigid_and_permutation_equivariant():
    pos, _, batch = _clouds(n_clouds=2, n_parts=4, seed=7, spread=0.5)
    p = em_partition(pos, batch, num_components=6, bandwidth=0.15)
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0]
    q = em_partition(pos @ Q.T + 5.0, batch, num_components=6, bandwidth=0.15)
    assert torch.equal(p.hard, q.hard)
    assert torch.allclose(p.soft, q.soft, atol=1e-10)
    perm = torch.randperm(pos.shape[0], generator=torch.Generator().manual_seed(2))
    r = em_partition(pos[perm], batch[perm], num_components=6, bandwidth=0.15)
    assert torch.equal(r.hard, p.hard[perm])


def test_em_tiny_parts_merge_and_votes_get_gradients():
    g = torch.Generator().manual_seed(0)
    votes = torch.cat([torch.randn(50, 3, generator=g) * 0.1, torch.tensor([[1.5, 0.0, 0.0], [1.55, 0.0, 0.0]])])
    votes.requires_grad_(True)
    p = em_partition(votes, num_components=4, bandwidth=0.1, min_points=5)
    assert int(p.counts.min()) == 0 or int(p.counts[p.counts > 0].min()) >= 5
    (p.soft[:, 0] * torch.arange(52.0)).sum().backward()
    assert votes.grad is not None and torch.isfinite(votes.grad).all()


def test_em_bad_input():
    with pytest.raises(ValueError, match="votes"):
        em_partition(torch.full((4, 3), float("nan")), num_components=2, bandwidth=0.1)
    with pytest.raises(ValueError, match="num_components"):
        em_partition(torch.randn(4, 3), num_components=0, bandwidth=0.1)
    with pytest.raises(ValueError, match="bandwidth"):
        em_partition(torch.randn(4, 3), num_components=2, bandwidth=0.0)
    with pytest.raises(ValueError, match="votes"):
        em_partition(torch.randn(4, 2), num_components=2, bandwidth=0.1)
    with pytest.raises(ValueError, match="num_graphs"):
        em_partition(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), num_graphs=1, num_components=2, bandwidth=0.1)


def test_em_empty_input():
    p = em_partition(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), num_graphs=2, num_components=3,
                     bandwidth=0.1)
    assert p.soft.shape == (0, 3) and p.hard.shape == (0,) and p.counts.shape == (2, 3)


# --------------------------------------------------------------------------- degenerate parts (shared policy)


def _with_collinear_part(dtype=torch.float64):
    pos, parts, batch = _clouds(n_clouds=1, n_parts=2, seed=4, dtype=dtype)
    line = torch.linspace(-0.5, 0.5, 10, dtype=dtype)[:, None] * torch.tensor([[1.0, 2.0, 0.5]], dtype=dtype) + 4.0
    return (torch.cat([pos, line]), torch.cat([parts, torch.full((10,), 2)]),
            torch.cat([batch, torch.zeros(10, dtype=torch.long)]))


@pytest.mark.parametrize("case", ["collinear", "two_points", "disc"])
def test_degenerate_parts_follow_the_policy(case):
    pos, parts, batch = _clouds(n_clouds=1, n_parts=2, seed=4)
    if case == "collinear":
        extra = torch.linspace(-0.5, 0.5, 10, dtype=torch.float64)[:, None] * torch.tensor([[1.0, 2.0, 0.5]]) + 4.0
    elif case == "two_points":
        extra = torch.tensor([[4.0, 0.0, 0.0], [4.2, 0.1, 0.0]], dtype=torch.float64)
    else:  # an isotropic planar disc: two tied eigenvalues
        t = torch.arange(12, dtype=torch.float64) * (2 * torch.pi / 12)
        extra = torch.stack([t.cos(), t.sin(), torch.zeros_like(t)], 1) * 0.3 + 4.0
    pos = torch.cat([pos, extra])
    parts = torch.cat([parts, torch.full((extra.shape[0],), 2)])
    batch = torch.cat([batch, torch.zeros(extra.shape[0], dtype=torch.long)])
    with pytest.raises(ValueError, match="pos: 1 part is degenerate"):
        _net(degeneracy="raise")(pos, batch=batch, parts=parts)
    with pytest.warns(UserWarning, match="degenerate"):
        _net(degeneracy="warn")(pos, batch=batch, parts=parts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _net(degeneracy="flag").double().forward_details(pos, batch=batch, parts=parts)
    for mask in out.degenerate:
        assert mask.tolist() == [False, False, True]
    assert torch.isfinite(out.seg).all() and torch.isfinite(out.cls).all()
    out = _net(degeneracy="augment").double().forward_details(pos, batch=batch, parts=parts)
    assert torch.isfinite(out.seg).all()


def test_good_parts_are_not_degenerate():
    pos, parts, batch = _clouds(n_clouds=2, n_parts=3, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _net(degeneracy="warn").double().forward_details(pos, batch=batch, parts=parts)
    assert not any(bool(m.any()) for m in out.degenerate)


# --------------------------------------------------------------------------- bad and empty input


def test_bad_input_names_the_argument():
    pos, parts, batch = _clouds(n_clouds=1)
    net = _net()
    bad = pos.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="pos"):
        net(bad, batch=batch)
    with pytest.raises(ValueError, match="pos"):
        net(pos[:, :2], batch=batch)
    with pytest.raises(ValueError, match="parts"):
        net(pos, batch=batch, parts=parts[:-1])
    with pytest.raises(ValueError, match="parts"):
        net(pos, batch=batch, parts=parts - 1)
    with pytest.raises(ValueError, match="batch"):
        net(pos, batch=batch[:-1])
    with pytest.raises(ValueError, match="batch"):
        net(pos[:1], batch=batch[:1])  # a one-point cloud
    with pytest.raises(ValueError, match="x"):
        _net(in_channels=2)(pos, batch=batch)
    with pytest.raises(ValueError, match=r"components\[0\]"):
        _net(components=(0, 4))
    with pytest.raises(ValueError, match="components"):
        _net(components=(8,))
    with pytest.raises(ValueError, match="num_part_labels"):
        _net(num_part_labels=0)
    with pytest.raises(ValueError, match="num_part_labels"):
        APEN(widths=(8,), components=(4,), bandwidths=(0.1,))
    with pytest.raises(ValueError, match=r"bandwidths\[1\]"):
        _net(bandwidths=(0.1, -1.0))
    with pytest.raises(ValueError, match="degeneracy"):
        _net(degeneracy="ignore")
    with pytest.raises(ValueError, match="group"):
        APENLayer(3, 4, group="E2")


def test_empty_clouds_in_a_batch():
    pos, parts, batch = _clouds(n_clouds=1)
    seg, cls = _net().double()(pos, batch=batch, num_graphs=3)
    assert seg.shape == (pos.shape[0], 4) and cls.shape == (3, 3)
    assert torch.isfinite(cls).all()


def test_no_nan_for_finite_input_at_large_and_small_scales():
    pos, parts, batch = _clouds(n_clouds=2)
    net = _net().double()
    for s in (1e-3, 1e3):
        seg, cls = net(pos * s, batch=batch, parts=parts)
        assert torch.isfinite(seg).all() and torch.isfinite(cls).all()
        seg, cls = net(pos * s, batch=batch)
        assert torch.isfinite(seg).all() and torch.isfinite(cls).all()


# --------------------------------------------------------------------------- votes and training


def test_vote_loss_and_training_pull_votes_to_the_centres():
    pos, parts, batch = _clouds(n_clouds=4, n_parts=3, per_part=16, seed=11, spread=1.5, dtype=torch.float32)
    glob = batch * 3 + parts
    centres = torch.zeros(12, 3).index_add(0, glob, pos) / torch.bincount(glob).float()[:, None]
    centres = centres[glob]
    torch.manual_seed(0)
    net = APEN(num_part_labels=3, widths=(16,), components=(6,), bandwidths=(0.2,), hidden_channels=(16, 32),
               head_channels=(16,), degeneracy="flag")
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    first = None
    for _ in range(60):
        out = net.forward_details(pos, batch=batch, parts=parts)
        loss = vote_loss(out.votes, centres) + torch.nn.functional.cross_entropy(out.seg, parts)
        first = float(vote_loss(out.votes, centres).detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(vote_loss(net.forward_details(pos, batch=batch, parts=parts).votes, centres))
    assert last < 0.2 * first
    with pytest.raises(ValueError, match="centres"):
        vote_loss(out.votes, centres[:-1])
    with pytest.raises(ValueError, match="votes"):
        vote_loss([], centres)


# --------------------------------------------------------------------------- the bound's terms


def test_subpartition_violation_and_uncertainty():
    labels = torch.tensor([0, 0, 1, 1])
    fine = partition_from_labels(torch.tensor([0, 1, 2, 2]))
    coarse = partition_from_labels(torch.tensor([0, 0, 0, 1]))
    assert subpartition_violation(fine, labels)["probability"] == 0.0
    out = subpartition_violation(coarse, labels)
    assert out["probability"] == 1.0 and out["impurity"] == 0.25
    assert assignment_uncertainty(fine) == 0.0
    with pytest.raises(ValueError, match="labels"):
        subpartition_violation(fine, labels[:3])


def test_piecewise_motion_is_rigid_per_part():
    pos, parts, batch = _clouds(n_clouds=2, n_parts=3)
    moved = piecewise_motion(pos, parts, batch, translation_std=2.0, generator=torch.Generator().manual_seed(0))
    glob = batch * 3 + parts
    for p in range(6):
        a, b = pos[glob == p], moved[glob == p]
        assert torch.allclose(torch.cdist(a, a), torch.cdist(b, b), atol=1e-10)
    assert not torch.allclose(torch.cdist(pos, pos), torch.cdist(moved, moved))
    with pytest.raises(ValueError, match="group"):
        piecewise_motion(pos, parts, batch, group="SO3")


def test_bound_is_zero_when_the_partition_is_the_true_one():
    """Two far-apart parts, one component each: both partitions are the true one, the error is round-off."""
    pos, parts, batch = _clouds(n_clouds=2, n_parts=2, spread=0.0, seed=9)
    pos = pos + torch.where(parts[:, None] == 1, 10.0, 0.0)
    net = _net(components=(2, 2), bandwidths=(1.0, 1.0), merge_factor=0.5)
    out = piecewise_bound(net, pos, parts, batch, n_samples=3, translation_std=0.5,
                          generator=torch.Generator().manual_seed(0))
    assert out["fraction_sub"] == 1.0 and all(layer["probability"] == 0.0 for layer in out["layers"])
    assert out["error_seg"] < 1e-6 and out["error_seg_not_sub"] is None


def test_bound_reports_violations_for_touching_parts():
    pos, parts, batch = _clouds(n_clouds=2, n_parts=3, spread=0.2, seed=9)
    net = _net(components=(2, 2), bandwidths=(0.5, 0.5))
    out = piecewise_bound(net, pos, parts, batch, n_samples=2, generator=torch.Generator().manual_seed(0))
    assert out["layers"][0]["probability"] > 0 and out["error_seg"] > 1e-3
    with pytest.raises(TypeError, match="model"):
        piecewise_bound(torch.nn.Linear(3, 3), pos, parts, batch)


# --------------------------------------------------------------------------- the layer alone


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layer_check_module(dtype):
    pos, parts, batch = _clouds(seed=12)
    torch.manual_seed(0)
    layer = APENLayer(0, 8, (8, 16), (8,), num_components=4, bandwidth=0.2, degeneracy="flag")
    assert layer.symmetry.out_kinds == ("node:scalar", "node:points")
    check_module(layer, {"pos": pos, "parts": parts, "batch": batch}, dtype=dtype,
                 rtol=1e-5 if dtype == torch.float32 else None, checks=NO_COMPILE)
    x = torch.randn(pos.shape[0], 3, dtype=torch.float64)
    layer = APENLayer(3, 8, (8,), (), num_components=4, bandwidth=0.2, degeneracy="flag")
    check_module(layer, {"pos": pos, "x": x, "parts": parts, "batch": batch}, checks=("equivariance", "batching"))
    with pytest.raises(ValueError, match="parts"):
        layer.double()(pos, x, batch, parts=None)
    with pytest.raises(ValueError, match="x"):
        layer.double()(pos, None, batch, parts=parts)
