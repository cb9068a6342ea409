"""VI-Net: the spherical FPN, the V- and I-branches, the labels, the focal loss and the model."""

from __future__ import annotations

import math

import pytest
import torch

from geodl.groups import random_rotation
from geodl.nn.spherical import IBranch, SphericalFPN, VBranch, VINet, focal_loss, viewpoint_labels
from geodl.nn.spherical._heads import bin_centres, rotate_sphere_grid, viewpoint_rotation
from geodl.testing import check_module

SMALL = dict(channels=(4, 8, 8), hidden=4)


def _cloud(sizes, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(sum(sizes), 3, generator=g, dtype=dtype)
    batch = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    return pos, batch


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _ry(b):
    c, s = math.cos(b), math.sin(b)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)


# ------------------------------------------------------------------------------------ labels
def test_viewpoint_labels_known_bins_poles_and_seam():
    H, W = 8, 16
    R = torch.stack([torch.eye(3, dtype=torch.float64),                       # d = +z: north row 0
                     torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)),  # θ = π -> H - 1
                     _rz(0.3 * 2 * math.pi / W + 5 * 2 * math.pi / W) @ _ry(2.5 * math.pi / H),
                     _rz(-1e-9) @ _ry(math.pi / 2)])                           # just below 2π: last column
    p, a = viewpoint_labels(R, H, W)
    assert p.tolist() == [0, H - 1, 2, H // 2] and p.dtype == torch.int64
    assert a.tolist()[1:] == [0, 5, W - 1]


def test_viewpoint_labels_jitter_is_unbiased_and_bounded():
    H, W, j, n = 16, 16, 3, 20000
    R = (_rz(8.5 * 2 * math.pi / W) @ _ry(8.5 * math.pi / H)).expand(n, 3, 3)
    p0, a0 = viewpoint_labels(R[:1], H, W)
    p, a = viewpoint_labels(R, H, W, jitter=j, generator=torch.Generator().manual_seed(0))
    for off in (p - p0, a - a0):
        assert off.min() == -j and off.max() == j
        assert abs(off.double().mean()) < 0.05  # randint(-3, 3) would give -0.5
    # polar clamped at the poles, azimuth wrapped
    pn, an = viewpoint_labels(torch.eye(3).expand(500, 3, 3), H, W, jitter=j,
                              generator=torch.Generator().manual_seed(1))
    assert pn.min() == 0 and pn.max() == j and set(an.tolist()) == {0, 1, 2, 3, W - 3, W - 2, W - 1}


def test_bin_centres_and_viewpoint_rotation_round_trip():
    H, W = 8, 12
    pb, ab = torch.arange(H).repeat(W), torch.arange(W).repeat_interleave(H)
    alpha, beta = bin_centres(pb, ab, H, W, dtype=torch.float64)
    R = viewpoint_rotation(alpha, beta)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(len(pb), 3, 3))
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(pb), dtype=torch.float64))
    p, a = viewpoint_labels(R, H, W)
    assert torch.equal(p, pb) and torch.equal(a, ab)


def test_viewpoint_labels_bad_inputs():
    with pytest.raises(ValueError, match="R"):
        viewpoint_labels(torch.full((1, 3, 3), float("nan")), 4, 4)
    with pytest.raises(ValueError, match="W"):
        viewpoint_labels(torch.eye(3)[None], 4, 5)
    with pytest.raises(ValueError, match="jitter"):
        viewpoint_labels(torch.eye(3)[None], 4, 4, jitter=-1)
    with pytest.raises(TypeError, match="generator"):
        viewpoint_labels(torch.eye(3)[None], 4, 4, jitter=1, generator=0)


# -------------------------------------------------------------------------------- focal loss
def test_focal_loss_matches_formula_and_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, t = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.tensor([0, 3, 6, 2, 2])
    ce = torch.nn.functional.cross_entropy(logits, t)
    assert torch.allclose(focal_loss(logits, t, gamma=0.0), ce)
    p = torch.softmax(logits, -1)[torch.arange(5), t]
    assert torch.allclose(focal_loss(logits, t), (-(1 - p) ** 2 * p.log()).mean())
    assert focal_loss(logits, t) < ce
    assert focal_loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)) == 0
    with pytest.raises(ValueError, match="target"):
        focal_loss(logits, torch.tensor([0, 3, 7, 2, 2]))
    with pytest.raises(ValueError, match="target"):
        focal_loss(logits, t[:4])
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(logits, t, gamma=-1.0)


# ----------------------------------------------------------------------------------- the FPN
def _fpn_declared(fpn, H, W):
    s = fpn.symmetry_for(H, W)
    return dict(group=s.group, in_kinds=dict(s.in_kinds), out_kinds=s.out_kinds, batch_arg=None)


def test_fpn_spa_commutes_with_pole_flip_and_rolls_exactly():
    H, W = 8, 16
    fpn = SphericalFPN((1, 3), (4, 6, 8), resolution=(H, W)).eval()
    x = torch.randn(2, 4, H, W, dtype=torch.float64)
    report = check_module(fpn, {"x": x}, n_samples=6, atol=1e-6, rtol=0.0)  # every item, compile included
    assert report.passed, str(report)
    # directly: the pole flip, a roll by 4 bins, in float64
    f = fpn.double()
    y = f(x)
    assert torch.allclose(f(torch.flip(x, (-2, -1))), torch.flip(y, (-2, -1)), atol=1e-10, rtol=0)
    assert torch.allclose(f(torch.roll(x, 4, -1)), torch.roll(y, 4, -1), atol=1e-10, rtol=0)


def test_fpn_zero_padded_ablation_fails_the_check():
    H, W = 8, 16
    abl = SphericalFPN((1,), (4, 6, 8), padding="zeros", symmetric=False, resolution=(H, W)).eval()
    x = torch.randn(2, 1, H, W, dtype=torch.float64)
    report = check_module(abl, {"x": x}, n_samples=6, checks=("equivariance",), raise_on_fail=False)
    assert not report.passed and "equivariance" in report.failed
    f = abl.double()
    assert not torch.allclose(f(torch.flip(x, (-2, -1))), torch.flip(f(x), (-2, -1)), atol=1e-4)
    assert not torch.allclose(f(torch.roll(x, 4, -1)), torch.roll(f(x), 4, -1), atol=1e-4)


def test_fpn_shapes_streams_and_bad_inputs():
    two = SphericalFPN((1, 3), (4, 6, 8))
    assert two(torch.randn(2, 4, 8, 16)).shape == (2, 4, 8, 16)
    assert two(torch.randn(2, 1, 8, 16), torch.randn(2, 3, 8, 16)).shape == (2, 4, 8, 16)
    one = SphericalFPN(1, (4, 6, 8))
    assert len(one.streams) == 1 and one(torch.randn(1, 1, 4, 8)).shape == (1, 4, 4, 8)
    with pytest.raises(ValueError, match="x"):
        two(torch.randn(1, 4, 6, 16))
    with pytest.raises(ValueError, match="x"):
        two(torch.randn(1, 4, 8, 12))
    with pytest.raises(ValueError, match="x"):
        two(torch.randn(1, 2, 8, 16))
    with pytest.raises(ValueError, match="resolution"):
        SphericalFPN(resolution=(6, 8))
    with pytest.raises(ValueError, match="resolution"):
        SphericalFPN(resolution=(8, 12))
    with pytest.raises(ValueError, match="channels"):
        SphericalFPN(channels=(4, 8))
    with pytest.raises(TypeError, match="symmetry_for"):
        _ = SphericalFPN().symmetry


# ----------------------------------------------------------------------------------- branches
class _VMaps(torch.nn.Module):
    """The V-branch logits broadcast to maps (polar along columns, azimuth along rows), so that the
    equirect kind acts on them: a roll leaves the polar logits and rolls the azimuth ones, the pole
    flip reverses both."""

    def __init__(self, v):
        super().__init__()
        from geodl.groups import Symmetry

        self.v = v
        self.symmetry = Symmetry(f"equirect:{v.W}", {"x": f"equirect:{v.H}x{v.W}"},
                                 (f"equirect:{v.H}x{v.W}",) * 2)

    def forward(self, x):
        p, a = self.v(x)
        return p[:, :, None].expand(-1, -1, self.v.W), a[:, None, :].expand(-1, self.v.H, -1)


def test_vbranch_logits_follow_the_map_symmetries():
    H, W = 6, 8
    v = VBranch(3, H, W, hidden=4).eval()
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    report = check_module(_VMaps(v), {"x": x}, n_samples=6, atol=1e-6, rtol=0.0,
                          checks=("equivariance", "batching", "gradients"))
    assert report.passed, str(report)
    p, a = v.double()(x)
    (m,) = v.score_map(x)
    assert torch.equal(p, m[:, 0].amax(-1)) and torch.equal(a, m[:, 0].amax(-2))
    alpha, beta = v.predict(p, a)
    assert beta.dtype == torch.float64 and torch.allclose(beta, (p.argmax(-1) + 0.5).double() * math.pi / H)
    assert torch.allclose(alpha, (a.argmax(-1) + 0.5).double() * 2 * math.pi / W)
    with pytest.raises(ValueError, match="x"):
        v(torch.randn(2, 3, H, W + 2, dtype=torch.float64))


def test_rotate_sphere_grid_identity_rolls_and_flip():
    H, W = 6, 12
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    assert torch.allclose(rotate_sphere_grid(x, eye), x, atol=1e-9)
    # out(u) = x(R u): R = Rz(2π k / W) reads k bins further: a roll by -k
    Rk = _rz(2 * math.pi * 3 / W).expand(2, 3, 3)
    assert torch.allclose(rotate_sphere_grid(x, Rk), torch.roll(x, -3, -1), atol=1e-9)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)).expand(2, 3, 3)
    assert torch.allclose(rotate_sphere_grid(x, flip), torch.flip(x, (-2, -1)), atol=1e-9)
    # a smooth function of the direction is resampled to the rotated function (bilinear: approximately)
    H, W = 32, 64
    b = (torch.arange(H, dtype=torch.float64) + 0.5) * math.pi / H
    a = (torch.arange(W, dtype=torch.float64) + 0.5) * 2 * math.pi / W
    d = torch.stack([b.sin()[:, None] * a.cos(), b.sin()[:, None] * a.sin(), b.cos()[:, None].expand(H, W)])
    R = random_rotation(generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = rotate_sphere_grid(d[None], R[None])[0]  # the x, y, z coordinate maps
    assert (out - torch.einsum("kl,lhw->khw", R, d)).abs().max() < 0.05


def test_ibranch_shapes_and_rotations():
    ib = IBranch(3, 8, 8, hidden=4).eval()
    R = ib(torch.randn(3, 3, 8, 8), random_rotation(3, generator=torch.Generator().manual_seed(0)))
    assert R.shape == (3, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(3), atol=1e-5)
    assert ib(torch.zeros(0, 3, 8, 8), torch.zeros(0, 3, 3)).shape == (0, 3, 3)
    with pytest.raises(ValueError, match="r_vp"):
        ib(torch.randn(2, 3, 8, 8), torch.eye(3)[None])
    with pytest.raises(ValueError, match="H"):
        IBranch(3, 6 + 1, 8)


def test_ibranch_sees_the_in_plane_angle():
    """In the viewpoint frame an in-plane rotation is an azimuth roll of the resampled map. SPA-SConv
    commutes with rolls, so a global pooling read-out would make R_ip exactly invariant to it (the bug
    of an earlier version); the positional read-out must not be."""
    torch.manual_seed(0)
    ib = IBranch(3, 8, 16, hidden=8).double().eval()
    x = torch.randn(2, 3, 8, 16, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    with torch.no_grad():
        R0, R1 = ib(x, eye), ib(torch.roll(x, 4, -1), eye)
    assert (R0 - R1).abs().max() > 1e-3
    # the features themselves do commute with the roll (so the difference above is the read-out's)
    with torch.no_grad():
        f0 = ib.conv[:3](x)
        f1 = ib.conv[:3](torch.roll(x, 4, -1))
    assert torch.allclose(torch.roll(f0, 1, -1), f1, atol=1e-10)  # 4 bins at full size, 1 at a quarter


def test_ibranch_learns_an_in_plane_rotation():
    """A map rolled by k bins is the same object turned by 2πk/W about the pole: a few hundred Adam steps
    fit R_ip = Rz(2πk/W) for every roll of a fixed random map (the error falls below 10 degrees)."""
    from geodl.groups import geodesic_distance

    torch.manual_seed(0)
    H, W = 8, 16
    base = torch.randn(1, 2, H, W)
    ks = torch.arange(0, W, 2)
    x = torch.cat([torch.roll(base, int(k), -1) for k in ks])
    g = ks.double() * 2 * math.pi / W
    c, s_ = g.cos(), g.sin()
    z, o = torch.zeros_like(g), torch.ones_like(g)
    target = torch.stack([c, -s_, z, s_, c, z, z, z, o], -1).view(-1, 3, 3).float()
    ib = IBranch(2, H, W, hidden=16, readout=4)
    eye = torch.eye(3).expand(len(ks), 3, 3)
    opt = torch.optim.Adam(ib.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = (ib(x, eye) - target).flatten(1).norm(dim=1).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = torch.rad2deg(geodesic_distance(ib.eval()(x, eye).double(), target.double()))
    assert err.max() < 10.0, err


# -------------------------------------------------------------------------------------- VINet
def test_vinet_output_shapes_and_rotations():
    net = VINet(resolution=(8, 16), **SMALL).eval()
    pos, batch = _cloud([30, 20, 25])
    out = net(pos, batch)
    assert out["rotation"].shape == (3, 3, 3) and out["r_vp"].shape == (3, 3, 3) and out["r_ip"].shape == (3, 3, 3)
    assert out["polar_logits"].shape == (3, 8) and out["azimuth_logits"].shape == (3, 16)
    assert torch.allclose(out["rotation"], out["r_vp"] @ out["r_ip"])
    R = out["rotation"]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    # r_vp is the bin centre of the argmax bins
    p, a = viewpoint_labels(out["r_vp"], 8, 16)
    assert torch.equal(p, out["polar_logits"].argmax(-1)) and torch.equal(a, out["azimuth_logits"].argmax(-1))
    for v in out.values():
        assert torch.isfinite(v).all()


def test_vinet_colour_and_ablation_construct_and_run():
    pos, batch = _cloud([20, 20])
    col = torch.rand(40, 3)
    net = VINet(resolution=8, colour=True, **SMALL).eval()
    assert len(net.fpn.streams) == 2
    assert net(pos, batch, features=col)["rotation"].shape == (2, 3, 3)
    abl = VINet(resolution=8, padding="zeros", symmetric=False, **SMALL).eval()
    assert abl(pos, batch)["rotation"].shape == (2, 3, 3)
    assert all(not m.symmetric for m in abl.modules() if hasattr(m, "symmetric") and hasattr(m, "conv"))
    with pytest.raises(TypeError, match="features"):
        net(pos, batch)
    with pytest.raises(TypeError, match="features"):
        abl(pos, batch, features=col)


def test_vinet_bad_inputs():
    with pytest.raises(ValueError, match="resolution"):
        VINet(resolution=12)
    with pytest.raises(ValueError, match="resolution"):
        VINet(resolution=(8, 6))
    with pytest.raises(ValueError, match="in_channels"):
        VINet(in_channels=(2, 3))
    with pytest.raises(ValueError, match="in_channels"):
        VINet(in_channels=(1,), colour=True)
    net = VINet(resolution=8, **SMALL)
    pos, batch = _cloud([10, 10])
    bad = pos.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="pos"):
        net(bad, batch)
    with pytest.raises(ValueError, match="pos"):
        net(pos[:, :2], batch)
    out = net.eval()(pos, batch)
    with pytest.raises(ValueError, match="R_gt"):
        net.loss(out, torch.eye(3)[None])
    with pytest.raises(TypeError, match="out"):
        net.loss({}, torch.eye(3).expand(2, 3, 3))


def test_vinet_gradients_finite_and_training_uses_the_ground_truth_viewpoint():
    net = VINet(resolution=8, **SMALL).train()
    pos, batch = _cloud([15, 15, 15], seed=1)
    R = random_rotation(3, generator=torch.Generator().manual_seed(2))
    out = net(pos, batch, rotation=R)
    p, a = viewpoint_labels(R, 8, 8)
    alpha, beta = bin_centres(p, a, 8, 8)
    assert torch.allclose(out["r_vp"], viewpoint_rotation(alpha, beta), atol=1e-6)
    loss, logs = net.loss(out, R)
    assert set(logs) == {"loss", "polar", "azimuth", "rotation"} and math.isclose(
        logs["loss"], logs["polar"] + logs["azimuth"] + logs["rotation"], rel_tol=1e-5)
    loss.backward()
    grads = [q.grad for q in net.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in net.i_branch.parameters())


def test_vinet_overfits_a_few_clouds():
    torch.manual_seed(0)
    net = VINet(resolution=8, channels=(8, 8, 16), hidden=8).train()
    pos, batch = _cloud([40, 40, 40, 40], seed=3)
    R = random_rotation(4, generator=torch.Generator().manual_seed(4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss, logs = net.loss(net(pos, batch, rotation=R), R)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
    assert min(losses[-5:]) < 0.6 * losses[0], losses


def test_vinet_refuses_clouds_with_too_few_points():
    net = VINet(resolution=8, **SMALL).eval()
    with pytest.raises(ValueError, match=r"^pos: the cloud has 2 points; VINet needs at least 3"):
        net(torch.randn(2, 3))
    pos, batch = torch.randn(12, 3), torch.tensor([0] * 10 + [2] * 2)
    with pytest.raises(ValueError, match=r"^batch: clouds \[1, 2\] have fewer than 3 points \(counts \[0, 2\]\)"):
        net(pos, batch, num_graphs=3)
    with pytest.raises(ValueError, match="min_points"):
        VINet(resolution=8, min_points=-1, **SMALL)
    assert VINet(resolution=8, min_points=2, **SMALL).eval()(torch.randn(2, 3))["rotation"].shape == (1, 3, 3)


def test_vinet_empty_and_degenerate_clouds_are_defined():
    net = VINet(resolution=8, min_points=0, **SMALL).eval()
    # graph 1 has no points; graph 2 a single point at the origin
    pos = torch.cat([torch.randn(10, 3), torch.zeros(1, 3)])
    batch = torch.tensor([0] * 10 + [2])
    with torch.no_grad():
        out = net(pos, batch, num_graphs=3)
    assert out["rotation"].shape == (3, 3, 3)
    assert all(torch.isfinite(v).all() for v in out.values())
    with torch.no_grad():
        out = net(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), num_graphs=2)
    assert out["rotation"].shape == (2, 3, 3) and all(torch.isfinite(v).all() for v in out.values())


def test_vinet_is_permutation_invariant_check_module():
    net = VINet(resolution=8, **SMALL).eval()
    pos, batch = _cloud([12, 9], seed=5, dtype=torch.float64)
    report = check_module(net, {"pos": pos, "batch": batch}, n_samples=3,
                          checks=("equivariance", "batching", "state_dict", "gradients", "side_effects"))
    assert report.passed, str(report)
    col = VINet(resolution=8, colour=True, **SMALL).eval()
    report = check_module(col, {"pos": pos, "batch": batch, "features": torch.rand(21, 3, dtype=torch.float64)},
                          n_samples=3, checks=("equivariance", "batching"))
    assert report.passed, str(report)


def test_check_module_ibranch_map_and_viewpoint_move_together():
    """IBranch resamples the map at R_vp u: a whole-bin roll (or the pole flip) of the map together with the
    same rotation of r_vp samples the same values, so R_ip is invariant; rotating only r_vp is not."""
    import torch

    from geodl.groups import random_rotation
    from geodl.nn.spherical import IBranch
    from geodl.testing import check_module

    torch.manual_seed(0)
    ib = IBranch(3, 8, 16, hidden=8)
    x = torch.randn(2, 3, 8, 16, dtype=torch.float64)
    r_vp = random_rotation(2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    report = check_module(ib, {"x": x, "r_vp": r_vp}, checks=("equivariance", "batching", "state_dict", "gradients"))
    assert report.passed, report
    # the map alone rolled (viewpoint unchanged) changes the output: the check above is not vacuous
    ib = ib.double().eval()
    with torch.no_grad():
        assert not torch.allclose(ib(torch.roll(x, 3, -1), r_vp), ib(x, r_vp), atol=1e-6)
