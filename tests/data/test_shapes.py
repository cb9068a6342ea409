"""SyntheticShapes: classes, item format, determinism, splits, normals, canonical pose, bad arguments."""

from __future__ import annotations

import pytest
import torch

from geodl.data import SHAPE_CLASSES, SyntheticShapes


def test_classes_and_items():
    assert len(SHAPE_CLASSES) >= 10 and list(SHAPE_CLASSES) == sorted(set(SHAPE_CLASSES))
    ds = SyntheticShapes("train", num_points=50, per_class=2, seed=1)
    assert ds.classes == SHAPE_CLASSES and len(ds) == 2 * len(SHAPE_CLASSES)
    item = ds[3]
    assert item.pos.shape == (50, 3) and item.pos.dtype == torch.float32
    assert item.y.shape == (1,) and item.y.dtype == torch.long and int(item.y) == 1
    assert getattr(item, "normal", None) is None
    assert torch.equal(ds[-1].pos, ds.pos[-1])
    assert sorted(set(ds.y.tolist())) == list(range(len(SHAPE_CLASSES)))
    assert torch.isfinite(ds.pos).all() and ds.pos.abs().max() < 2.0


def test_same_seed_same_points_other_split_or_seed_other_points():
    a = SyntheticShapes("train", num_points=40, per_class=2, seed=0)
    b = SyntheticShapes("train", num_points=40, per_class=2, seed=0)
    assert torch.equal(a.pos, b.pos)
    # a smaller per_class is a prefix: each sample has its own generator
    c = SyntheticShapes("train", num_points=40, per_class=1, seed=0)
    assert torch.equal(c.pos, a.pos[::2])
    for other in (SyntheticShapes("test", num_points=40, per_class=2, seed=0),
                  SyntheticShapes("val", num_points=40, per_class=2, seed=0),
                  SyntheticShapes("train", num_points=40, per_class=2, seed=1)):
        assert not torch.isclose(other.pos, a.pos, atol=1e-3).all(dim=-1).any(), "points repeated across splits / seeds"


def test_normals_are_unit_and_orthogonal_to_flat_faces():
    ds = SyntheticShapes("test", num_points=64, per_class=1, normals=True, noise=0.0)
    assert ds[0].normal.shape == (64, 3)
    assert torch.allclose(ds.normal.norm(dim=-1), torch.ones(len(ds), 64), atol=1e-5)
    box = ds.pos[SHAPE_CLASSES.index("box")].double()
    n = ds.normal[SHAPE_CLASSES.index("box")].double()
    # on an axis-aligned box every normal is a signed axis and the point lies on that face
    assert torch.allclose(n.abs().amax(1), torch.ones(64, dtype=torch.float64), atol=1e-6)
    axis = n.abs().argmax(1)
    face = box.gather(1, axis[:, None])[:, 0] * n.gather(1, axis[:, None])[:, 0]
    assert torch.allclose(face, box.abs().amax(0)[axis], atol=1e-5)


def test_canonical_pose_z_up():
    ds = SyntheticShapes("train", num_points=256, per_class=3, noise=0.0, deform=0.0)
    ext = {name: ds.pos[ds.y == c].amax(1).mean(0) - ds.pos[ds.y == c].amin(1).mean(0)
           for c, name in enumerate(SHAPE_CLASSES)}
    assert ext["cylinder"][2] > 1.5 * ext["cylinder"][0]  # upright
    assert ext["torus"][2] < 0.5 * ext["torus"][0]  # lying flat
    assert abs(ext["cylinder"][0] - ext["cylinder"][1]) < 0.05  # round about z without deformation
    # the deformation is anisotropic: per-axis extents vary between samples
    d = SyntheticShapes("train", num_points=256, per_class=4, noise=0.0, deform=0.3)
    cyl = d.pos[d.y == SHAPE_CLASSES.index("cylinder")]
    w = cyl.amax(1) - cyl.amin(1)
    assert (w[:, 0] / w[:, 1]).std() > 0.05


def test_noise_moves_points_off_the_surface():
    clean = SyntheticShapes("train", num_points=64, per_class=1, noise=0.0)
    noisy = SyntheticShapes("train", num_points=64, per_class=1, noise=0.05)
    box = SHAPE_CLASSES.index("box")
    half = clean.pos[box].abs().amax(0)
    off_clean = (clean.pos[box].abs() - half).abs().amin(1)
    assert off_clean.max() < 1e-5
    assert (noisy.pos[box] - clean.pos[box]).norm(dim=-1).mean() > 0.03


@pytest.mark.parametrize("kwargs, name, exc", [
    ({"split": "training"}, "split", ValueError),
    ({"num_points": 2}, "num_points", ValueError),
    ({"num_points": 2.5}, "num_points", TypeError),
    ({"per_class": 0}, "per_class", ValueError),
    ({"per_class": True}, "per_class", TypeError),
    ({"seed": -1}, "seed", ValueError),
    ({"normals": 1}, "normals", TypeError),
    ({"deform": 2.0}, "deform", ValueError),
    ({"noise": -0.1}, "noise", ValueError),
    ({"noise": float("nan")}, "noise", ValueError),
    ({"num_points": 10**9, "per_class": 10**6}, "num_points", ValueError),
])
def test_bad_arguments(kwargs, name, exc):
    split = kwargs.pop("split", "train")
    with pytest.raises(exc, match=name):
        SyntheticShapes(split, **kwargs)


def test_index_and_iteration():
    ds = SyntheticShapes(num_points=8, per_class=1)
    with pytest.raises(IndexError, match="^index: "):
        ds[len(ds)]
    with pytest.raises(TypeError, match="^index: "):
        ds[1.0]
    items = list(ds)  # the sequence protocol stops at the IndexError
    assert len(items) == len(ds) and torch.equal(items[-1].pos, ds[-1].pos)
