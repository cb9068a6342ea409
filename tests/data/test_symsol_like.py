"""SYMSOL-like data: symmetry sets (groups of the stated orders), renders that keep them, seeds."""

import math

import pytest
import torch

from geodl.data import SYMSOL_SHAPES, SymsolLike, symmetry_set
from geodl.data._symsol_like import _render
from geodl.groups import axis_angle_to_matrix, random_rotation

ORDERS = {"tet": 12, "cube": 24, "icosa": 60, "cone": 360, "cyl": 720, "tetX": 3, "cylO": 1, "sphereX": 1}


def _rot(n, seed):
    return random_rotation(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _nearest(A, G):
    """Frobenius distance of each matrix of A (N, 3, 3) to its nearest member of G (S, 3, 3)."""
    g = G.reshape(-1, 9)
    out = []
    for a in A.reshape(-1, 9).split(5000):
        # |a - g|^2 = |a|^2 + |g|^2 - 2 a.g
        d2 = (a * a).sum(1, keepdim=True) + (g * g).sum(1) - 2 * a @ g.T
        out.append(d2.amin(1).clamp(min=0).sqrt())
    return torch.cat(out)


def _mad(a, b):
    return (a - b).abs().mean(dim=(-3, -2, -1))


def test_shape_names_and_orders():
    assert tuple(SYMSOL_SHAPES) == ("tet", "cube", "icosa", "cone", "cyl", "tetX", "cylO", "sphereX")
    assert SYMSOL_SHAPES == ORDERS


@pytest.mark.parametrize("shape", list(ORDERS))
def test_symmetry_set_is_a_group_of_the_stated_order(shape):
    G = symmetry_set(shape)
    assert G.shape == (ORDERS[shape], 3, 3) and G.dtype == torch.float64
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(G[0], eye, atol=1e-12), "identity first"
    assert torch.allclose(G @ G.transpose(1, 2), eye.expand_as(G), atol=1e-12)
    assert torch.allclose(torch.linalg.det(G), torch.ones(len(G), dtype=torch.float64), atol=1e-12)
    if len(G) > 1:  # distinct members (1 degree apart at least)
        g = G.reshape(-1, 9)
        d2 = ((g[:, None] - g[None]) ** 2).sum(-1) + torch.eye(len(G), dtype=torch.float64) * 100
        assert float(d2.amin().sqrt()) > 1e-2
    # closed under composition: every product of two members is a member (to 1e-6)
    P = G[:, None] @ G[None]
    assert float(_nearest(P, G).max()) < 1e-6
    # and under inverses (implied for a finite closed set; checked directly)
    assert float(_nearest(G.transpose(1, 2), G).max()) < 1e-6


def test_continuous_sets_are_one_degree_steps():
    cone, cyl = symmetry_set("cone"), symmetry_set("cyl")
    step = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 180], dtype=torch.float64))
    assert torch.allclose(cone[1], step, atol=1e-12)
    assert torch.allclose(cone[:, 2, 2], torch.ones(360, dtype=torch.float64))  # all about z
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    assert torch.allclose(cyl[:360], cone) and torch.allclose(cyl[360:], cone @ flip)


def test_marked_sets_are_subgroups_of_the_unmarked_ones():
    for marked, plain in (("tetX", "tet"), ("cylO", "cyl")):
        assert float(_nearest(symmetry_set(marked), symmetry_set(plain)).max()) < 1e-9
    # tetX: the turns about the red face's normal -(1, 1, 1)/sqrt 3, which they fix
    n = -torch.ones(3, dtype=torch.float64) / math.sqrt(3)
    assert torch.allclose(symmetry_set("tetX") @ n, n.expand(3, 3), atol=1e-12)


def test_symmetry_set_dtype_and_bad_input():
    assert symmetry_set("cube", dtype=torch.float32).dtype == torch.float32
    a = symmetry_set("tet")
    a.zero_()  # a copy: the cached set is untouched
    assert torch.allclose(symmetry_set("tet")[0], torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        symmetry_set("sphere")
    with pytest.raises(TypeError, match="shape"):
        symmetry_set(3)
    with pytest.raises(TypeError, match="dtype"):
        symmetry_set("cube", dtype=torch.int64)


@pytest.mark.parametrize("shape", list(ORDERS))
def test_renders_keep_the_symmetry(shape):
    """The key property: the images of R and R g are (nearly) the same for every g of the set
    (cone, cyl: 12 of them), unlike the image of another random rotation."""
    G = symmetry_set(shape)
    if len(G) > 60:
        pick = torch.tensor([1, 359, 360, 540]) % len(G)
        G = G[torch.cat([pick, torch.randperm(len(G), generator=torch.Generator().manual_seed(0))[:8]])]
    R = _rot((), 11)
    ref = _render(shape, R[None], 64)[0]
    same = _mad(_render(shape, R @ G, 64), ref)
    other = _mad(_render(shape, _rot(8, 12), 64), ref)
    assert float(other.min()) > 0.01, "other rotations should look different"
    assert float(same.max()) < 1e-3 and float(same.max()) < 0.05 * float(other.min()), (same.max(), other.min())


@pytest.mark.parametrize("marked,breaker", [
    # the red face (normal -(1,1,1)/sqrt 3) turned towards the camera; a tet symmetry moving it
    ("tetX", axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi], dtype=torch.float64))),
    # the dot (azimuth 0) towards the camera; a 20 degree turn about the axis (a cyl symmetry)
    ("cylO", axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(20)], dtype=torch.float64))),
    # the X (+z pole) towards the camera; a quarter turn about the pole (a symmetry of an X alone)
    ("sphereX", axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))),
])
def test_marks_break_the_symmetry_of_the_plain_shape(marked, breaker):
    if marked == "tetX":  # take -(1,1,1)/sqrt 3 to -z (towards the camera)
        a = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) / math.sqrt(3)
        axis = torch.linalg.cross(a, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        R = axis_angle_to_matrix(axis / axis.norm() * math.acos(float(a[2])))
    elif marked == "cylO":  # +x to -z: a quarter turn about y
        R = axis_angle_to_matrix(torch.tensor([0.0, math.pi / 2, 0.0], dtype=torch.float64))
    else:  # +z to -z: a half turn about x
        R = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    imgs = _render(marked, torch.stack([R, R @ breaker]), 64)
    assert float(_mad(imgs[0], imgs[1])) > 2e-3
    assert float(imgs[0][0].sub(imgs[0][1]).max()) > 0.5, "the red mark is seen"


def test_dataset_shapes_dtypes_and_items():
    ds = SymsolLike("train", per_shape=2, size=64, seed=0)
    assert len(ds) == 16 and ds.shapes == tuple(ORDERS) and ds.orders == tuple(ORDERS.values())
    assert ds.images.shape == (16, 3, 64, 64) and ds.images.dtype == torch.float32
    assert float(ds.images.min()) >= 0 and float(ds.images.max()) <= 1
    assert float(ds.images.amax(dim=(1, 2, 3)).min()) > 0.3, "every image shows its object"
    assert float(ds.images[:, :, 0, 0].abs().max()) == 0, "black background"
    assert ds.rotation.shape == (16, 3, 3) and ds.rotation.dtype == torch.float32
    R = ds.rotation.double()
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(R), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(16, dtype=torch.float64), atol=1e-6)
    assert ds.y.tolist() == [k for k in range(8) for _ in range(2)] and ds.y.dtype == torch.int64
    image, rot, y = ds[-1]
    assert image.shape == (3, 64, 64) and rot.shape == (3, 3) and y.shape == () and int(y) == 7
    assert torch.equal(image, ds.images[15]) and torch.equal(rot, ds.rotation[15])
    for i in range(len(ds)):
        S = ds.symmetries(i)
        assert S.shape == (ds.orders[int(ds.y[i])], 3, 3) and S.dtype == torch.float32
        assert torch.allclose(S[0], ds.rotation[i], atol=1e-6)
    assert "SymsolLike" in repr(ds)
    with pytest.raises(IndexError):
        ds[16]
    big = SymsolLike("test", shapes=["cube"], per_shape=1, size=96)
    assert big.images.shape == (1, 3, 96, 96)


def test_every_member_of_a_samples_set_renders_its_image():
    ds = SymsolLike("test", shapes=["cube", "cone", "tetX"], per_shape=1, size=64, seed=3)
    for i, shape in enumerate(ds.shapes):
        S = ds.symmetries(i).double()  # R_i . g: right multiplication
        if len(S) > 24:
            S = S[::37]
        same = _mad(_render(shape, S, 64), ds.images[i])
        assert float(same.max()) < 2e-3, (shape, same.max())
    # the left products g . R_i are not the ground truth (for a generic R_i)
    G = symmetry_set("cube")[1:6]
    left = _mad(_render("cube", G @ ds.rotation[0].double(), 64), ds.images[0])
    assert float(left.min()) > 0.01


def test_seeds_prefix_and_subsets():
    a = SymsolLike("train", shapes=["tet", "cyl"], per_shape=3, seed=1)
    b = SymsolLike("train", shapes=["tet", "cyl"], per_shape=3, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.rotation, b.rotation)
    small = SymsolLike("train", shapes=["tet", "cyl"], per_shape=2, seed=1)
    for k in range(2):
        assert torch.equal(small.rotation[2 * k:2 * k + 2], a.rotation[3 * k:3 * k + 2])
        assert torch.equal(small.images[2 * k:2 * k + 2], a.images[3 * k:3 * k + 2])
    only = SymsolLike("train", shapes=["cyl"], per_shape=3, seed=1)
    assert torch.equal(only.rotation, a.rotation[3:]) and only.y.tolist() == [0, 0, 0]
    for other in (SymsolLike("test", shapes=["tet", "cyl"], per_shape=3, seed=1),
                  SymsolLike("train", shapes=["tet", "cyl"], per_shape=3, seed=2)):
        assert not torch.equal(other.rotation, a.rotation)


def test_rotations_are_spread_over_so3():
    ds = SymsolLike("train", shapes=["tet"], per_shape=100, seed=0)
    # the mean of Haar-random rotations is 0 (each entry has variance 1/3: |mean| ~ 0.05)
    assert float(ds.rotation.mean(0).abs().max()) < 0.2


@pytest.mark.parametrize("kw,name,err", [
    (dict(shapes=["sphere"]), "shapes", ValueError),
    (dict(shapes=[]), "shapes", ValueError),
    (dict(shapes=["tet", "tet"]), "shapes", ValueError),
    (dict(shapes="tet"), "shapes", TypeError),
    (dict(size=63), "size", ValueError),
    (dict(size=97), "size", ValueError),
    (dict(size=64.0), "size", TypeError),
    (dict(per_shape=0), "per_shape", ValueError),
    (dict(per_shape=10**12), "per_shape", ValueError),
    (dict(seed=-1), "seed", ValueError),
])
def test_bad_input(kw, name, err):
    with pytest.raises(err, match=name):
        SymsolLike("train", **{"per_shape": 1, **kw})
    with pytest.raises(ValueError, match="split"):
        SymsolLike("training", per_shape=1)
