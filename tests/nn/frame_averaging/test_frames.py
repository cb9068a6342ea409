"""PCA frames: shapes, equivariance of the frame set, batching, degeneracy policies, bad input."""

import itertools
import math

import pytest
import torch

from geodl.groups import random_rotation, random_rotation_2d
from geodl.nn import Frames, frames

F64 = torch.float64
GROUPS = {"O3": (3, 8), "SO3": (3, 4), "E3": (3, 8), "SE3": (3, 4), "O2": (2, 4), "SO2": (2, 2), "E2": (2, 4), "SE2": (2, 2)}


def generic_cloud(n, d=3, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    scale = torch.arange(1, d + 1, dtype=F64)
    return (torch.randn(n, d, generator=g, dtype=F64) * scale + 0.5).to(dtype)


def group_element(name, seed=0, reflect=True):
    """A random element (R, t) of ``name``; improper when the group has reflections and ``reflect``."""
    d = GROUPS[name][0]
    g = torch.Generator().manual_seed(seed)
    R = random_rotation(generator=g, dtype=F64) if d == 3 else random_rotation_2d(generator=g, dtype=F64)
    if reflect and not name.startswith("S"):
        R = R * torch.tensor([-1.0] + [1.0] * (d - 1), dtype=F64)
    t = torch.randn(d, generator=g, dtype=F64) if name.startswith(("E", "SE")) else torch.zeros(d, dtype=F64)
    return R, t


def frame_set_distance(A, B):
    """max over frames of A of the distance to the nearest frame in B: (F, d, d) sets."""
    return float((A[:, None] - B[None]).abs().amax((-1, -2)).amin(1).max())


def cube():
    return torch.tensor(list(itertools.product((-1.0, 1.0), repeat=3)), dtype=F64) + 2.0


def tetrahedron():
    return torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=F64)


def octahedron():
    return torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64)])


def fibonacci_sphere(n=1000):
    i = torch.arange(n, dtype=F64) + 0.5
    z = 1 - 2 * i / n
    r, phi = (1 - z**2).sqrt(), math.pi * (1 + 5**0.5) * i
    return torch.stack([r * phi.cos(), r * phi.sin(), z], 1)


def line():
    return torch.linspace(-1, 2, 7, dtype=F64)[:, None] * torch.tensor([1.0, 2.0, -0.5], dtype=F64)


def square_grid_plane():
    g = torch.linspace(-1, 1, 4, dtype=F64)
    xy = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    R = random_rotation(generator=torch.Generator().manual_seed(3), dtype=F64)
    return torch.cat([xy, torch.zeros(16, 1, dtype=F64)], 1) @ R.T


DEGENERATE = {f.__name__: f for f in (cube, tetrahedron, octahedron, fibonacci_sphere, line, square_grid_plane)}


@pytest.mark.parametrize("group", list(GROUPS))
def test_frame_shapes_orthogonality_and_order(group):
    d, F = GROUPS[group]
    pos = generic_cloud(30, d)
    fr = frames(pos, group=group)
    assert isinstance(fr, Frames)
    assert fr.rotations.shape == (1, F, d, d) and fr.centroid.shape == (1, d)
    R = fr.rotations[0]
    eye = torch.eye(d, dtype=F64).expand(F, d, d)
    assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-12)
    dets = torch.linalg.det(R)
    if group.startswith("S"):
        assert torch.allclose(dets, torch.ones(F, dtype=F64))
    else:  # all sign patterns: half of them improper, all distinct
        assert int((dets < 0).sum()) == F // 2
        pairwise = (R[:, None] - R[None]).abs().amax((-1, -2))
        assert float(pairwise[~torch.eye(F, dtype=torch.bool)].min()) > 0.5
    assert bool((fr.eigenvalues[:, 1:] >= fr.eigenvalues[:, :-1]).all())
    expected_c = pos.mean(0) if group.startswith(("E", "SE")) else torch.zeros(d, dtype=F64)
    assert torch.allclose(fr.centroid[0], expected_c, atol=1e-12)
    # columns are eigenvectors of the second moment about the centroid
    r = pos - fr.centroid[0]
    C = r.T @ r / len(pos)
    assert torch.allclose(C @ R[0], R[0] * fr.eigenvalues[0], atol=1e-10)
    # canonical coordinates round trip
    canon = fr.to_canonical(pos)
    assert canon.shape == (30, F, d)
    assert torch.allclose(fr.from_canonical(canon, "points"), pos[:, None].expand(30, F, d), atol=1e-12)


@pytest.mark.parametrize("group", list(GROUPS))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_frame_set_is_equivariant(group, dtype):
    """F(g·X) = g·F(X) up to the order of the frames, and the centroid moves with X."""
    pos = generic_cloud(25, GROUPS[group][0], seed=1)
    R, t = group_element(group, seed=2)
    fr = frames(pos.to(dtype), group=group)
    fg = frames((pos @ R.T + t).to(dtype), group=group)
    tol = 1e-10 if dtype == F64 else 1e-4
    assert frame_set_distance(R @ fr.rotations[0].double(), fg.rotations[0].double()) < tol
    assert torch.allclose(fg.centroid[0].double(), fr.centroid[0].double() @ R.T + t, atol=tol)
    assert torch.allclose(fg.eigenvalues.double(), fr.eigenvalues.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("group", ["SO3", "SE3", "SO2"])
def test_proper_frames_do_not_follow_reflections(group):
    pos = generic_cloud(25, GROUPS[group][0], seed=4)
    R, _ = group_element(group, seed=5)
    R = R * torch.tensor([-1.0] + [1.0] * (R.shape[0] - 1), dtype=F64)  # improper
    fr, fg = frames(pos, group=group), frames(pos @ R.T, group=group)
    assert frame_set_distance(R @ fr.rotations[0], fg.rotations[0]) > 0.5


def test_batched_frames_equal_per_sample_with_unsorted_batch():
    clouds = [generic_cloud(n, seed=s) for s, n in enumerate((5, 9, 12))]
    pos = torch.cat(clouds)
    batch = torch.cat([torch.full((len(c),), i) for i, c in enumerate(clouds)])
    perm = torch.randperm(len(pos), generator=torch.Generator().manual_seed(0))
    fr = frames(pos[perm], batch[perm], group="E3")
    assert fr.rotations.shape == (3, 8, 3, 3)
    assert torch.equal(fr.index, batch[perm])
    for i, c in enumerate(clouds):
        single = frames(c, group="E3")
        assert torch.allclose(fr.rotations[i], single.rotations[0], atol=1e-10)
        assert torch.allclose(fr.centroid[i], single.centroid[0], atol=1e-12)
        assert torch.allclose(fr.gap[i], single.gap[0], atol=1e-12)


def test_segment_frames_match_each_part():
    parts = [generic_cloud(n, seed=10 + s) for s, n in enumerate((6, 8, 7))]
    pos = torch.cat(parts)
    seg = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])
    fr = frames(pos, group="SE3", kind="segment", segment=seg)
    assert fr.rotations.shape == (3, 4, 3, 3) and torch.equal(fr.index, seg)
    for i, p in enumerate(parts):
        assert torch.allclose(fr.rotations[i], frames(p, group="SE3").rotations[0], atol=1e-10)


def test_knn_frames_are_local_and_equivariant():
    pos = generic_cloud(30, seed=7)
    batch = torch.tensor([0] * 14 + [1] * 16)
    fr = frames(pos, batch, group="E3", kind="knn", k=6, degeneracy="flag")
    assert fr.rotations.shape == (30, 8, 3, 3) and torch.equal(fr.index, torch.arange(30))
    # point 3's frame is the frame of its 6 nearest neighbours in its own graph (itself included)
    d = torch.cdist(pos[:14], pos[:14])[3]
    nbrs = pos[:14][d.argsort()[:6]]
    assert torch.allclose(fr.centroid[3], nbrs.mean(0), atol=1e-12)
    assert torch.allclose(fr.rotations[3], frames(nbrs, group="E3").rotations[0], atol=1e-8)
    R, t = group_element("E3", seed=8)
    fg = frames(pos @ R.T + t, batch, group="E3", kind="knn", k=6, degeneracy="flag")
    ok = ~fr.degenerate
    for i in ok.nonzero().flatten().tolist():
        assert frame_set_distance(R @ fr.rotations[i], fg.rotations[i]) < 1e-8


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_inputs_are_detected(name):
    fr = frames(DEGENERATE[name](), group="E3", degeneracy="flag")
    assert bool(fr.degenerate.all()), f"{name}: gap {fr.gap}"
    assert float(fr.gap.max()) < 1e-4


def test_generic_plane_is_not_degenerate():
    pos = generic_cloud(20, 2, seed=3)
    pos = torch.cat([pos, torch.zeros(20, 1, dtype=F64)], 1)  # eigenvalues 0 < λ2 < λ3
    fr = frames(pos, group="E3", degeneracy="raise")
    assert not bool(fr.degenerate.any())


def _mixed_batch():
    pos = torch.cat([generic_cloud(10, seed=1), cube(), generic_cloud(9, seed=2), line()])
    batch = torch.cat([torch.full((n,), i) for i, n in enumerate((10, 8, 9, 7))])
    return pos, batch


def test_policy_flag_returns_mask():
    pos, batch = _mixed_batch()
    fr = frames(pos, batch, group="E3", degeneracy="flag")
    assert fr.degenerate.tolist() == [False, True, False, True]


def test_policy_raise_names_pos_ids_and_gaps():
    pos, batch = _mixed_batch()
    with pytest.raises(ValueError, match=r"pos: degenerate frames.*samples \[1, 3\].*gaps"):
        frames(pos, batch, group="E3", degeneracy="raise")


def test_policy_warn_warns_and_proceeds():
    pos, batch = _mixed_batch()
    with pytest.warns(RuntimeWarning, match=r"samples \[1, 3\]"):
        fr = frames(pos, batch, group="E3", degeneracy="warn")
    assert fr.rotations.shape == (4, 8, 3, 3)


def test_policy_augment_samples_the_tied_eigenspace():
    pos, batch = _mixed_batch()
    M = 5
    fr = frames(pos, batch, group="E3", degeneracy="augment", augment_samples=M, generator=torch.Generator().manual_seed(0))
    again = frames(pos, batch, group="E3", degeneracy="augment", augment_samples=M, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fr.rotations, again.rotations)  # seeded
    assert fr.rotations.shape == (4, 8 * M, 3, 3)
    plain = frames(pos, batch, group="E3", degeneracy="flag").rotations
    # untied samples repeat their 8 frames M times (average unchanged)
    for i in (0, 2):
        assert torch.equal(fr.rotations[i], plain[i].repeat(M, 1, 1))
    # line (λ1 = λ2 = 0): the extra frames rotate only about the line's axis (third column ±)
    R = fr.rotations[3]
    axis = plain[3, 0, :, 2]
    assert torch.allclose((R[:, :, 2] @ axis).abs(), torch.ones(8 * M, dtype=F64), atol=1e-12)
    assert frame_set_distance(R[:8], R[8:16]) > 1e-3  # genuinely different rotations
    # cube (all tied): frames spread over SO(3)·signs
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3, dtype=F64).expand_as(R), atol=1e-12)
    assert frame_set_distance(fr.rotations[1, :8], fr.rotations[1, 8:16]) > 1e-2


def test_augment_makes_fa_of_cube_invariant_in_expectation():
    """A cube's second moment is isotropic, so its eigenbasis is arbitrary and plain frame
    averaging is not invariant. With ``augment`` the frames are Haar over SO(3)·signs, whose
    exact expectation of Σ_p y_0(p)^4 is Σ_p |p|^4 E[u_0^4] = 8 · 9 / 5 = 14.4 for every pose."""

    def fourth_moment(P, policy, seed):
        fr = frames(P, group="E3", degeneracy=policy, augment_samples=1000, generator=torch.Generator().manual_seed(seed))
        return float((fr.to_canonical(P)[..., 0] ** 4).sum(0).mean())

    X = cube()
    R, t = group_element("E3", seed=11)
    gX = X @ R.T + t
    assert abs(fourth_moment(X, "flag", 0) - fourth_moment(gX, "flag", 0)) > 0.5
    for P, seed in ((X, 1), (gX, 2)):
        assert abs(fourth_moment(P, "augment", seed) - 14.4) < 0.3  # Monte-Carlo error ~0.05


def test_augment_2d_rotates_a_square():
    sq = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=F64)
    fr = frames(sq, group="SE2", degeneracy="augment", augment_samples=3, generator=torch.Generator().manual_seed(0))
    assert bool(fr.degenerate.all()) and fr.rotations.shape == (1, 6, 2, 2)
    assert torch.allclose(torch.linalg.det(fr.rotations[0]), torch.ones(6, dtype=F64))


def test_differentiable_frames_keep_the_graph():
    pos = generic_cloud(12).requires_grad_()
    fr = frames(pos, group="E3", differentiable=True)
    assert fr.rotations.requires_grad and fr.centroid.requires_grad
    assert not frames(pos, group="E3").rotations.requires_grad


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(pos=torch.zeros(0, 3)), ValueError, "pos: empty"),
        (dict(pos=torch.ones(1, 3)), ValueError, "pos: .*fewer than 2 points"),
        (dict(pos=torch.tensor([[0.0, 0, 0], [1, float("nan"), 0]])), ValueError, "pos: contains NaN"),
        (dict(pos=torch.tensor([[0.0, 0, 0], [1, float("inf"), 0]])), ValueError, "pos: contains inf"),
        (dict(pos=torch.randn(5, 2)), ValueError, r"pos: expected shape \(N, 3\)"),
        (dict(pos=torch.randn(5, 3, 1)), ValueError, "pos: expected a tensor with 2 dimensions"),
        (dict(pos=torch.ones(5, 3, dtype=torch.long)), TypeError, "pos: expected a floating-point"),
        (dict(pos=[[0.0, 1.0, 2.0]]), TypeError, "pos: expected a torch.Tensor"),
        (dict(pos=torch.randn(5, 3), batch=torch.zeros(4, dtype=torch.long)), ValueError, r"batch: expected shape \(5,\)"),
        (dict(pos=torch.randn(5, 3), batch=torch.zeros(5)), TypeError, "batch: expected an int64"),
        (dict(pos=torch.randn(5, 3), batch=torch.tensor([0, 0, 0, 0, 1])), ValueError, r"batch: clouds \[1\] have fewer than 2"),
        (dict(pos=torch.randn(5, 3), batch=torch.tensor([0, 0, 2, 2, 2])), ValueError, r"batch: clouds \[1\]"),
        (dict(pos=torch.randn(5, 3), batch=torch.tensor([0, 0, -1, 1, 1])), ValueError, "batch: expected non-negative"),
        (dict(pos=torch.randn(5, 3), group="SO4"), ValueError, "group: "),
        (dict(pos=torch.randn(5, 3), group=3), TypeError, "group:"),
        (dict(pos=torch.randn(5, 3), kind="local"), ValueError, "kind: expected one of"),
        (dict(pos=torch.randn(5, 3), degeneracy="ignore"), ValueError, "degeneracy: expected one of"),
        (dict(pos=torch.randn(5, 3), gap_tol=-1.0), ValueError, "gap_tol"),
        (dict(pos=torch.randn(5, 3), kind="segment"), ValueError, "segment: required"),
        (dict(pos=torch.randn(5, 3), kind="segment", segment=torch.tensor([0, 0, 1, 1, 2])), ValueError, r"segment: segments \[2\]"),
        (dict(pos=torch.randn(5, 3), kind="knn", k=1), ValueError, "k: expected an int"),
        (dict(pos=torch.randn(5, 3), batch=torch.tensor([0, 0, 1, 1, 1]), num_graphs=1), ValueError, "num_graphs"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        frames(**kwargs)
