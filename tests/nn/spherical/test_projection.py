"""Point cloud -> equirectangular maps: bins, the farthest point, empty bins, batching, bad input."""

import math
import time

import pytest
import torch

from geodl.nn.spherical import SphericalProjection, spherical_projection
from geodl.testing import check_module


def _sph(theta, phi, r=1.0):
    return [r * math.sin(theta) * math.cos(phi), r * math.sin(theta) * math.sin(phi), r * math.cos(theta)]


def _occupied(m, fill=0.0):
    return [tuple(i.tolist()) for i in torch.nonzero(m[0, 0] != fill)]


def test_known_points_land_in_the_expected_bins():
    H, W = 6, 8
    one = lambda p: _occupied(spherical_projection(torch.tensor([p], dtype=torch.float64), resolution=(H, W),
                                                   fill=-1.0), -1.0)
    assert one([0.0, 0.0, 1.0]) == [(0, 0)]            # north pole -> row 0
    assert one([0.0, 0.0, -1.0]) == [(H - 1, 0)]       # θ = π -> row H - 1 (the original code gave H)
    assert one([1e-300, 0.0, -1.0]) == [(H - 1, 0)]
    assert one([1.0, 0.0, 0.0]) == [(H // 2, 0)]       # equator, φ = 0: column 0
    assert one([1.0, -1e-12, 0.0]) == [(H // 2, W - 1)]  # just below the seam: φ -> 2π⁻, last column
    assert one([1.0, -1e-300, 0.0]) == [(H // 2, 0)]   # φ rounds to 2π: the seam, column 0 (not W)
    assert one([-1.0, 0.0, 0.0]) == [(H // 2, W // 2)]  # φ = π
    # negative y -> φ in (π, 2π): the columns of the second half
    assert one(_sph(math.pi / 2 + 0.1, -0.3)) == [(H // 2, 7)]
    assert one([0.3, -1.0, 0.2]) == [(2, 6)]          # φ ≈ 4.98 rad, θ ≈ 1.39 rad
    # bin interiors: θ, φ at the centre of bin (i, j)
    for i in range(H):
        for j in range(W):
            assert one(_sph((i + 0.5) * math.pi / H, (j + 0.5) * 2 * math.pi / W, 2.0)) == [(i, j)]
    # the origin: radius 0 in row 0, column 0
    m = spherical_projection(torch.zeros(1, 3), resolution=(H, W), fill=-1.0)
    assert m[0, 0, 0, 0] == 0.0 and int((m != -1.0).sum()) == 1


def test_maximum_radius_wins_and_carries_its_features():
    d = torch.tensor(_sph(1.0, 2.0))
    pos = torch.stack([d * 1.0, d * 3.0, d * 2.0, -d * 5.0])
    feats = torch.tensor([[10.0, 11.0], [30.0, 31.0], [20.0, 21.0], [50.0, 51.0]])
    m = spherical_projection(pos, resolution=(8, 8), features=feats)
    assert m.shape == (1, 3, 8, 8)
    occ = {b: m[0, :, b[0], b[1]].tolist() for b in _occupied(m)}
    assert sorted(v[0] for v in occ.values()) == [3.0, 5.0]
    assert [3.0, 30.0, 31.0] in occ.values() and [5.0, 50.0, 51.0] in occ.values()
    # gradients reach the winning radius and features only
    pos.requires_grad_(True)
    feats.requires_grad_(True)
    spherical_projection(pos, resolution=(8, 8), features=feats).sum().backward()
    assert torch.equal(feats.grad[:, 0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert pos.grad[0].abs().sum() == 0 and pos.grad[1].abs().sum() > 0


def test_empty_bins_get_the_fill_and_empty_clouds_are_maps_of_fill():
    pos = torch.tensor([[0.0, 0.0, 1.0]])
    m = spherical_projection(pos, resolution=4, features=torch.ones(1, 3), fill=-2.0)
    assert m.shape == (1, 4, 4, 4)
    assert int((m == -2.0).sum()) == 4 * 16 - 4 and torch.equal(m[0, :, 0, 0], torch.tensor([1.0, 1, 1, 1]))
    # no points: one map of fill (batch=None) or num_graphs maps; a cloud without points in a batch
    empty = torch.zeros(0, 3)
    assert torch.equal(spherical_projection(empty, resolution=(2, 4), fill=3.0), torch.full((1, 1, 2, 4), 3.0))
    no_ids = torch.zeros(0, dtype=torch.long)
    assert spherical_projection(empty, no_ids, resolution=(2, 4)).shape == (0, 1, 2, 4)
    m = spherical_projection(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), num_graphs=3, resolution=(2, 4),
                             fill=7.0)
    assert m.shape == (3, 1, 2, 4) and bool((m[1:] == 7.0).all()) and bool((m[0] != 7.0).any())


def test_batching_gives_per_cloud_maps():
    torch.manual_seed(0)
    pos, feats = torch.randn(50, 3), torch.rand(50, 2)
    batch = torch.tensor([0] * 20 + [2] * 30)
    m = spherical_projection(pos, batch, resolution=(6, 8), features=feats, fill=-1.0)
    assert m.shape == (3, 3, 6, 8)
    assert torch.equal(m[0], spherical_projection(pos[:20], resolution=(6, 8), features=feats[:20], fill=-1.0)[0])
    assert torch.equal(m[2], spherical_projection(pos[20:], resolution=(6, 8), features=feats[20:], fill=-1.0)[0])
    assert bool((m[1] == -1.0).all())
    proj = SphericalProjection((6, 8), fill=-1.0)
    report = check_module(proj, {"pos": pos, "batch": batch.clamp(max=1), "features": feats},
                          checks=("equivariance", "batching", "state_dict", "gradients", "side_effects"))
    assert report.passed, str(report)
    report = check_module(proj, {"pos": pos, "batch": batch.clamp(max=1), "num_graphs": 2, "features": feats},
                          checks=("compile",))
    assert report.passed, str(report)


def test_rotation_about_z_by_whole_bins_rolls_the_map():
    torch.manual_seed(0)
    H, W = 8, 16
    # points at bin centres (far from every boundary), random radii and bins
    i, j = torch.randint(0, H, (200,)), torch.randint(0, W, (200,))
    theta = (i + 0.5 + 0.4 * (torch.rand(200) - 0.5)) * math.pi / H
    phi = (j + 0.5 + 0.4 * (torch.rand(200) - 0.5)) * 2 * math.pi / W
    r = 0.5 + torch.rand(200)
    pos = torch.stack([r * theta.sin() * phi.cos(), r * theta.sin() * phi.sin(), r * theta.cos()], -1).double()
    m = spherical_projection(pos, resolution=(H, W), features=pos.double())
    for k in (1, 5, 15):
        a = 2 * math.pi * k / W
        Rz = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
                          dtype=torch.float64)
        mr = spherical_projection(pos @ Rz.T, resolution=(H, W), features=pos)
        assert torch.allclose(mr, torch.roll(m, k, -1), atol=1e-12)
    # the pole flip diag(1, -1, -1) flips rows and columns (points away from bin boundaries)
    mf = spherical_projection(pos * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64), resolution=(H, W))
    assert torch.allclose(mf, torch.flip(m[:, :1], (-2, -1)))


def test_bad_inputs():
    pos = torch.randn(10, 3)
    with pytest.raises(ValueError, match="^pos: contains NaN"):
        spherical_projection(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="^pos: contains inf"):
        spherical_projection(torch.tensor([[0.0, float("inf"), 1.0]]))
    with pytest.raises(ValueError, match="^pos"):
        spherical_projection(torch.randn(10, 2))
    with pytest.raises(TypeError, match="^pos"):
        spherical_projection(torch.ones(10, 3, dtype=torch.long))
    for bad in (0, -4, (4, 7), (0, 8), (4, 8, 2)):
        with pytest.raises(ValueError, match="^resolution"):
            spherical_projection(pos, resolution=bad)
    with pytest.raises(ValueError, match="^resolution"):
        SphericalProjection(resolution=5)
    with pytest.raises(TypeError, match="^resolution"):
        spherical_projection(pos, resolution=4.0)
    with pytest.raises(ValueError, match="^resolution: .*GiB"):  # checked before allocation
        spherical_projection(pos, resolution=(1 << 20, 1 << 20))
    with pytest.raises(ValueError, match="^features"):
        spherical_projection(pos, features=torch.rand(9, 3))
    with pytest.raises(ValueError, match="^features: contains NaN"):
        spherical_projection(pos, features=torch.full((10, 1), float("nan")))
    with pytest.raises(ValueError, match="^batch"):
        spherical_projection(pos, torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="^batch"):
        spherical_projection(pos, torch.full((10,), 3), num_graphs=2)
    with pytest.raises(TypeError, match="^batch"):
        spherical_projection(pos, torch.zeros(10))
    with pytest.raises(ValueError, match="^num_graphs"):
        spherical_projection(pos, num_graphs=0)
    with pytest.raises(ValueError, match="^fill"):
        spherical_projection(pos, fill=float("nan"))


def test_projection_of_32_clouds_is_fast():
    torch.manual_seed(0)
    pos, batch = torch.randn(32 * 1024, 3), torch.arange(32).repeat_interleave(1024)
    feats = torch.rand(32 * 1024, 3)
    spherical_projection(pos, batch, num_graphs=32, features=feats)  # warm-up
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        m = spherical_projection(pos, batch, num_graphs=32, resolution=64, features=feats)
        best = min(best, time.perf_counter() - t)
    assert m.shape == (32, 4, 64, 64)
    assert best < 0.1, f"{best * 1e3:.1f} ms"  # a few ms on one core; generous for a shared machine


def test_empty_cloud_backward_runs():
    pos = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    feats = torch.zeros(0, 2, dtype=torch.float64, requires_grad=True)
    m = spherical_projection(pos, resolution=(2, 4), features=feats, fill=1.0)
    assert m.shape == (1, 3, 2, 4) and bool((m == 1.0).all())
    m.sum().backward()
    assert pos.grad.shape == (0, 3) and feats.grad.shape == (0, 2)
