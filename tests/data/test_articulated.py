"""Articulated multi-part shapes (geodl.data.ArticulatedShapes), the embedded default of APEN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("trimesh")

from geodl.data import ARTICULATED_CLASSES, PART_LABELS, PART_OFFSETS, ArticulatedShapes  # noqa: E402
from geodl.data import _articulated as art  # noqa: E402

A, B = art._DEFAULT_RANGE
NAMES = tuple(ARTICULATED_CLASSES)


@pytest.fixture(scope="module")
def train_ds():
    return ArticulatedShapes("train", num_points=128, per_class=3, seed=1, noise=0.0)


@pytest.fixture(scope="module")
def test_ds():
    return ArticulatedShapes("test", num_points=128, per_class=3, seed=1, noise=0.0)


def _joints(name):
    return sum(len(axes) for _, _, axes in art._TREES[name])


# ---------------------------------------------------------------- classes, labels, items

def test_classes_and_part_labels():
    assert 4 <= len(ARTICULATED_CLASSES) <= 5 and list(ARTICULATED_CLASSES) == sorted(ARTICULATED_CLASSES)
    assert all(2 <= len(p) <= 5 and len(set(p)) == len(p) for p in ARTICULATED_CLASSES.values())
    assert ARTICULATED_CLASSES["figure"] == ("torso", "head", "arm", "leg")
    assert len(PART_LABELS) == sum(len(p) for p in ARTICULATED_CLASSES.values()) == len(set(PART_LABELS))
    for c, (name, parts) in enumerate(ARTICULATED_CLASSES.items()):
        for j, p in enumerate(parts):
            assert PART_LABELS[PART_OFFSETS[c] + j] == f"{name}/{p}"
        assert ArticulatedShapes.class_part_labels[c] == tuple(PART_OFFSETS[c] + j for j in range(len(parts)))
    assert ArticulatedShapes.classes == NAMES
    assert ArticulatedShapes.part_labels is PART_LABELS and ArticulatedShapes.part_offsets is PART_OFFSETS
    assert all(isinstance(o, int) for o in PART_OFFSETS)
    # the trees match the classes: every label has an instance, the root comes first, parents before children
    for name, tree in art._TREES.items():
        assert {j for j, _, _ in tree} == set(range(len(ARTICULATED_CLASSES[name])))
        assert tree[0][1] == -1 and all(0 <= p < k for k, (_, p, _) in enumerate(tree) if k)
    assert art.NUM_JOINTS == max(_joints(n) for n in NAMES) and art.MAX_PARTS == 6


def test_shapes_dtypes_and_items(train_ds):
    n, P = 3 * len(NAMES), 128
    assert len(train_ds) == n
    assert train_ds.pos.shape == (n, P, 3) and train_ds.pos.dtype == torch.float32
    assert train_ds.y.tolist() == [c for c in range(len(NAMES)) for _ in range(3)]
    assert train_ds.part.shape == (n, P) and train_ds.part.dtype == torch.int64
    assert train_ds.instance.shape == (n, P) and train_ds.instance.dtype == torch.int64
    assert train_ds.centre.shape == (n, P, 3) and train_ds.centre.dtype == torch.float32
    assert train_ds.num_parts.shape == (n,) and train_ds.num_parts.dtype == torch.int64
    assert train_ds.joint_angles.shape == (n, art.NUM_JOINTS) and train_ds.joint_angles.dtype == torch.float32
    assert torch.isfinite(train_ds.pos).all() and torch.isfinite(train_ds.centre).all()
    d = train_ds[n - 1]
    assert set(d.keys()) == {"pos", "y", "part", "instance", "centre", "num_parts"}
    assert d.pos.shape == (P, 3) and d.part.shape == (P,) and d.instance.shape == (P,) and d.centre.shape == (P, 3)
    assert d.y.tolist() == [len(NAMES) - 1] and d.num_parts.tolist() == [len(art._TREES[NAMES[-1]])]
    with pytest.raises(IndexError):
        train_ds[n]
    assert len(list(iter(train_ds))) == n
    assert "ArticulatedShapes('train'" in repr(train_ds)


def test_part_labels_instances_and_counts(train_ds, test_ds):
    for ds in (train_ds, test_ds):
        for m in range(len(ds)):
            c = int(ds.y[m])
            tree = art._TREES[NAMES[c]]
            inst, part = ds.instance[m], ds.part[m]
            assert int(ds.num_parts[m]) == len(tree)
            assert set(part.tolist()) == set(ds.class_part_labels[c])  # every label present, no other
            counts = torch.bincount(inst, minlength=len(tree))
            assert len(counts) == len(tree) and int(counts.min()) >= 16
            for k, (j, _, _) in enumerate(tree):  # one label per instance
                assert set(part[inst == k].tolist()) == {PART_OFFSETS[c] + j}
    # the figure's two arms and two legs are two instances of one label each
    fig = train_ds.part[0]
    arm = PART_OFFSETS[0] + ARTICULATED_CLASSES["figure"].index("arm")
    assert len(set(train_ds.instance[0][fig == arm].tolist())) == 2


def test_min_part_points_exact():
    ds = ArticulatedShapes("val", num_points=6 * 20, per_class=1, seed=0, min_part_points=20)
    fig = torch.bincount(ds.instance[0])
    assert fig.tolist() == [20] * 6  # the figure has exactly the minimum on each of its 6 instances
    assert all(int(torch.bincount(ds.instance[m]).min()) >= 20 for m in range(len(ds)))


def test_centre_is_the_instance_mean():
    ds = ArticulatedShapes("train", num_points=96, per_class=2, seed=3, noise=0.05)
    for m in range(len(ds)):
        for k in range(int(ds.num_parts[m])):
            sel = ds.instance[m] == k
            mean = ds.pos[m][sel].double().mean(0)
            assert torch.allclose(ds.centre[m][sel].double(), mean.expand(int(sel.sum()), 3), atol=1e-5)


# ---------------------------------------------------------------- seeds, splits, poses

def test_determinism_and_prefix(train_ds):
    again = ArticulatedShapes("train", num_points=128, per_class=3, seed=1, noise=0.0)
    for f in ("pos", "part", "instance", "centre", "num_parts", "y"):
        assert torch.equal(getattr(again, f), getattr(train_ds, f)), f
    assert torch.equal(again.joint_angles.nan_to_num(9.0), train_ds.joint_angles.nan_to_num(9.0))
    other = ArticulatedShapes("train", num_points=128, per_class=3, seed=2, noise=0.0)
    assert not torch.equal(other.pos, train_ds.pos)
    small = ArticulatedShapes("train", num_points=128, per_class=2, seed=1, noise=0.0)
    for c in range(len(NAMES)):
        assert torch.equal(small.pos[2 * c:2 * c + 2], train_ds.pos[3 * c:3 * c + 2])
        assert torch.equal(small.instance[2 * c:2 * c + 2], train_ds.instance[3 * c:3 * c + 2])
    val = ArticulatedShapes("val", num_points=128, per_class=3, seed=1, noise=0.0)
    assert not torch.equal(val.pos, train_ds.pos)


def test_joint_angle_ranges(train_ds, test_ds):
    for ds, lo, hi in ((train_ds, 0.0, A), (test_ds, A, B)):
        for m in range(len(ds)):
            nj = _joints(NAMES[int(ds.y[m])])
            a = ds.joint_angles[m]
            assert torch.isfinite(a[:nj]).all() and torch.isnan(a[nj:]).all()
            assert float(a[:nj].abs().min()) >= lo - 1e-6 and float(a[:nj].abs().max()) <= hi + 1e-6
    both = torch.cat([train_ds.joint_angles, test_ds.joint_angles]).nan_to_num(0.0)
    assert float(both.min()) < 0 < float(both.max())  # both signs
    custom = ArticulatedShapes("test", num_points=96, per_class=2, seed=0, joint_range=(0.1, 0.2))
    got = custom.joint_angles[torch.isfinite(custom.joint_angles)].abs()
    assert float(got.min()) >= 0.1 - 1e-6 and float(got.max()) <= 0.2 + 1e-6
    assert custom.joint_range == (0.1, 0.2)


def test_noise_and_rotate():
    base = dict(num_points=96, per_class=2, seed=4)
    clean = ArticulatedShapes("train", noise=0.0, rotate="none", **base)
    noisy = ArticulatedShapes("train", noise=0.01, rotate="none", **base)
    diff = (noisy.pos - clean.pos).double()
    assert 0.005 < float(diff.std()) < 0.02
    # "none": centred at the centroid, the canonical frame; the objects have radius about 1
    assert float(clean.pos.double().mean(1).abs().max()) < 1e-5
    r = clean.pos.norm(dim=-1).amax(1)
    assert float(r.max()) < 1.6 and float(r.min()) > 0.6
    # the global motion is rigid and the same for every rotate mode (the pose draws come first)
    for mode in ("z", "so3"):
        ds = ArticulatedShapes("train", noise=0.0, rotate=mode, **base)
        assert torch.equal(ds.instance, clean.instance)
        x, y = ds.pos.double(), clean.pos.double()
        assert torch.allclose(torch.cdist(x, x), torch.cdist(y, y), atol=1e-4)
        centred = x - x.mean(1, keepdim=True)
        if mode == "z":  # heights above the centroid are kept
            assert torch.allclose(centred[..., 2], y[..., 2], atol=1e-4)
        assert float(x.mean(1).norm(dim=-1).max()) > 0.05  # translated


# ---------------------------------------------------------------- rigid parts

def _on_surface(points, mesh, tol=1e-7):
    """Distance (P,) from each point to the nearest face it projects into (inf if none)."""
    tri = np.asarray(mesh.triangles)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    d = np.einsum("pfi,fi->pf", points[:, None] - a[None], n)
    q = points[:, None] - d[..., None] * n[None]  # projections (P, F, 3)
    v0, v1, v2 = b - a, c - a, q - a[None]
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    den = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    inside = (v >= -tol) & (w >= -tol) & (v + w <= 1 + tol)
    return np.where(inside, np.abs(d), np.inf).min(1)


def _winding(points, mesh):
    """Generalised winding number of a closed mesh at each point (1 inside, 0 outside)."""
    tri = np.asarray(mesh.triangles)[None] - points[:, None, None, :]
    a, b, c = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
    la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    dot = lambda x, y: np.einsum("pfi,pfi->pf", x, y)  # noqa: E731
    den = la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb
    return np.arctan2(det, den).sum(1) / (2 * np.pi)


@pytest.mark.parametrize("name", NAMES)
def test_each_part_is_moved_rigidly(name):
    c = NAMES.index(name)
    ds = ArticulatedShapes("test", num_points=128, per_class=2, seed=5, noise=0.0)
    for i in range(2):
        rng = np.random.default_rng([5, 2, c, i])  # the dataset's seed of this sample
        s = art._sample(name, rng, 128, (A, B), "so3", 0.0, 16)
        m = c * 2 + i
        assert np.allclose(s["pos"], ds.pos[m].double().numpy(), atol=1e-5)
        assert np.array_equal(s["instance"], ds.instance[m].numpy())
        assert np.allclose(s["angles"], ds.joint_angles[m, :len(s["angles"])].double().numpy(), atol=1e-6)
        R, t, inst, local = s["R"], s["t"], s["instance"], s["local"]
        assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-10)
        assert np.allclose(np.linalg.det(R), 1.0, atol=1e-10)
        # every point is its part's canonical (local) surface point moved by the part's rigid motion
        assert np.allclose(np.einsum("pij,pj->pi", R[inst], local) + t[inst], s["clean"], atol=1e-10)
        for k, mesh in enumerate(s["meshes"]):
            assert float(_on_surface(local[inst == k], mesh).max()) < 1e-6
        # the joints: a child's frame origin is its joint point carried by its parent's motion
        for k, (_, parent, _) in enumerate(art._TREES[name]):
            if parent >= 0:
                assert np.allclose(t[k], R[parent] @ s["joints"][k] + t[parent], atol=1e-10)
                assert not np.allclose(R[k], R[parent], atol=1e-3)  # the child turned (|θ| >= 30 degrees)
        # distances inside an instance are kept, distances across instances are not (the pose)
        x = ds.pos[m].double()
        same = torch.from_numpy(inst[:, None] == inst[None])
        dl = torch.cdist(torch.from_numpy(local), torch.from_numpy(local))
        assert torch.allclose(torch.cdist(x, x)[same], dl[same], atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_parts_do_not_interpenetrate_at_the_largest_angles(name):
    for i in range(6):
        rng = np.random.default_rng([7, i])
        s = art._sample(name, rng, 160, (B, B), "none", 0.0, 16)  # every |θ| = 75 degrees, random signs
        for k, mesh in enumerate(s["meshes"]):
            other = s["instance"] != k
            x = (s["clean"][other] - s["t"][k]) @ s["R"][k]  # into part k's frame
            assert int((_winding(x, mesh) > 0.5).sum()) == 0, (name, i, k)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw, name", [
    ({"split": "training"}, "split"), ({"rotate": "SO3"}, "rotate"), ({"rotate": None}, "rotate"),
    ({"num_points": 95}, "num_points"), ({"num_points": 40, "min_part_points": 7}, "num_points"),
    ({"num_points": 0}, "num_points"), ({"per_class": 0}, "per_class"), ({"noise": -0.01}, "noise"),
    ({"noise": float("nan")}, "noise"), ({"seed": -1}, "seed"), ({"min_part_points": 0}, "min_part_points"),
    ({"joint_range": (0.5, 0.5)}, "joint_range"), ({"joint_range": (0.6, 0.5)}, "joint_range"),
    ({"joint_range": (-0.1, 0.5)}, "joint_range"), ({"joint_range": (0.1, 3.5)}, "joint_range"),
    ({"joint_range": (0.1, float("inf"))}, "joint_range"),
    ({"num_points": 10**12}, "num_points"), ({"per_class": 10**12}, "num_points"),
])
def test_bad_values(kw, name):
    args = {"num_points": 96, "per_class": 1, **kw}
    split = args.pop("split", "train")
    with pytest.raises(ValueError, match=f"^{name}:"):
        ArticulatedShapes(split, **args)


@pytest.mark.parametrize("kw, name", [
    ({"num_points": 96.0}, "num_points"), ({"per_class": True}, "per_class"), ({"noise": "0.1"}, "noise"),
    ({"joint_range": 1.0}, "joint_range"), ({"joint_range": (0.1,)}, "joint_range"),
    ({"joint_range": ("a", 1.0)}, "joint_range"), ({"min_part_points": 2.5}, "min_part_points"),
])
def test_bad_types(kw, name):
    with pytest.raises(TypeError, match=f"^{name}:"):
        ArticulatedShapes("train", **{"num_points": 96, "per_class": 1, **kw})


def test_pi_range_is_accepted():
    ds = ArticulatedShapes("test", num_points=96, per_class=1, joint_range=(0.0, math.pi))
    assert torch.isfinite(ds.pos).all()
