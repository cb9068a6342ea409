"""The Poincaré-ball functional core: parity with geoopt, accuracy near the boundary, gradcheck, validation."""

import math

import pytest
import torch

from geodl.nn.poincare import _ball as B

F64 = torch.float64


def _points(n, d, *, c=1.0, near=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=F64, generator=g)
    x = x / x.norm(dim=-1, keepdim=True)
    if near:  # within 1e-5 of the boundary: sqrt(c)|x| in [1 - 1e-5, 1 - 5e-6]
        r = 1 - (0.5 + 0.5 * torch.rand(n, 1, dtype=F64, generator=g)) * 1e-5
    else:
        r = torch.rand(n, 1, dtype=F64, generator=g) * 0.99
    return x * r / math.sqrt(c)


def _rel(a, b):
    return float(((a - b).abs() / (1 + b.abs())).max())


@pytest.mark.parametrize("c", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("near", [False, True])
def test_parity_with_geoopt(c, near):
    gm = pytest.importorskip("geoopt.manifolds.stereographic.math")
    k = torch.tensor(-c, dtype=F64)
    x, y = _points(500, 8, c=c, near=near, seed=1), _points(500, 8, c=c, near=near, seed=2)
    u = torch.randn(500, 8, dtype=F64, generator=torch.Generator().manual_seed(3))
    pairs = {
        "mobius_add": (B.mobius_add(x, y, c=c), gm.mobius_add(x, y, k=k)),
        "mobius_scalar_mul": (B.mobius_scalar_mul(0.7, x, c=c), gm.mobius_scalar_mul(torch.tensor(0.7, dtype=F64), x, k=k)),
        "expmap0": (B.expmap0(u, c=c), gm.expmap0(u, k=k)),
        "logmap0": (B.logmap0(x, c=c), gm.logmap0(x, k=k)),
        "expmap": (B.expmap(x, 0.1 * u, c=c), gm.expmap(x, 0.1 * u, k=k)),
        "lambda_x": (B.lambda_x(x, c=c), gm.lambda_x(x, k=k)),
        "gyration": (B.gyration(x, y, u, c=c), gm.gyration(x, y, u, k=k)),
        "parallel_transport": (B.parallel_transport(x, y, u, c=c), gm.parallel_transport(x, y, u, k=k)),
        "gyromidpoint": (B.gyromidpoint(x[:50], c=c), gm.weighted_midpoint(x[:50], k=k, reducedim=[0])),
        "project": (B.project(x * 1.5, c=c), gm.project(x * 1.5, k=k, eps=B.ball_margin(F64))),
    }
    if not near:  # near the boundary geoopt's dist and logmap lose their digits (next test)
        pairs["dist"] = (B.dist(x, y, c=c), gm.dist(x, y, k=k))
        pairs["logmap"] = (B.logmap(x, y, c=c), gm.logmap(x, y, k=k))
    errs = {n: _rel(a, b) for n, (a, b) in pairs.items()}
    bad = {n: e for n, e in errs.items() if not e <= 1e-6}
    assert not bad, bad


def _mp_reference(x, y):
    """dist and logmap in 50-digit arithmetic (c = 1)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    D, L = [], []
    for a, b in zip(x.tolist(), y.tolist()):
        a = [mpmath.mpf(t) for t in a]
        b = [mpmath.mpf(t) for t in b]
        x2, y2 = sum(t * t for t in a), sum(t * t for t in b)
        xy = sum(p * q for p, q in zip(a, b))
        A, Bq, Dn = 1 - 2 * xy + y2, 1 - x2, 1 - 2 * xy + x2 * y2
        w = [(-A * p + Bq * q) / Dn for p, q in zip(a, b)]
        nw = mpmath.sqrt(sum(t * t for t in w))
        D.append(float(2 * mpmath.atanh(nw)))
        L.append([float((1 - x2) * mpmath.atanh(nw) * t / nw) for t in w])
    return torch.tensor(D, dtype=F64), torch.tensor(L, dtype=F64)


def test_dist_and_logmap_accurate_near_the_boundary():
    x, y = _points(60, 6, near=True, seed=4), _points(60, 6, near=True, seed=5)
    d_ref, l_ref = _mp_reference(x, y)
    d, lg = B.dist(x, y), B.logmap(x, y)
    assert float(((d - d_ref).abs() / d_ref).max()) < 1e-8
    assert float(((lg - l_ref).norm(dim=-1) / l_ref.norm(dim=-1)).max()) < 1e-8
    gm = pytest.importorskip("geoopt.manifolds.stereographic.math")
    k = torch.tensor(-1.0, dtype=F64)
    # what geoopt gives there (the reason geodl does not use the artanh form): far more than 1e-6 off
    assert float(((gm.dist(x, y, k=k) - d_ref).abs() / d_ref).max()) > 1e-3


def test_dist_accurate_for_close_points():
    x = _points(20, 4, seed=6)
    y = x + 1e-9
    ref = 2 * torch.asinh((x - y).norm(dim=-1) / torch.sqrt((1 - (x * x).sum(-1)) * (1 - (y * y).sum(-1))))
    assert torch.allclose(B.dist(x, y), ref, rtol=1e-12, atol=0)
    assert bool((B.dist(x, x) == 0).all())


@pytest.mark.parametrize("c", [1.0, 0.5])
def test_gradcheck_custom_backward(c):
    g = torch.Generator().manual_seed(7)
    x = (_points(5, 4, c=c, seed=8) * 0.9).requires_grad_()
    y = (_points(5, 4, c=c, seed=9) * 0.9).requires_grad_()
    u = torch.randn(5, 4, dtype=F64, generator=g).requires_grad_()
    small = (1e-4 * torch.randn(5, 4, dtype=F64, generator=g)).requires_grad_()  # the series branch
    assert torch.autograd.gradcheck(lambda a, b: B.mobius_add(a, b, c=c, check=False), (x, y))
    assert torch.autograd.gradcheck(lambda a: B.expmap0(a, c=c, check=False), (u,))
    assert torch.autograd.gradcheck(lambda a: B.expmap0(a, c=c, check=False), (small,))
    assert torch.autograd.gradcheck(lambda a: B.logmap0(a, c=c, check=False), (x,))
    assert torch.autograd.gradcheck(lambda a: B.logmap0(a, c=c, check=False), (small,))
    # broadcasting in mobius_add: a single point against a batch
    x1 = x[:1].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: B.mobius_add(a, b, c=c, check=False), (x1, y))


def test_custom_backward_matches_autograd_and_learnable_curvature():
    x = _points(6, 5, seed=10).requires_grad_()
    y = _points(6, 5, seed=11).requires_grad_()
    out = B.mobius_add(x, y, c=0.7)
    gx, gy = torch.autograd.grad(out.square().sum(), (x, y))
    ref = B._mobius_add_raw(x, y, 0.7, -1)
    rx, ry = torch.autograd.grad(ref.square().sum(), (x, y))
    assert torch.allclose(gx, rx, atol=1e-12) and torch.allclose(gy, ry, atol=1e-12)
    c = torch.tensor(0.7, dtype=F64, requires_grad=True)  # learnable: plain autograd, gradient in c
    assert torch.autograd.gradcheck(lambda cc: B.dist(B.expmap0(x.detach(), c=cc), y.detach(), c=cc), (c,))


def test_identities():
    x, y = _points(50, 5, seed=12), _points(50, 5, seed=13)
    u = torch.randn(50, 5, dtype=F64)
    assert torch.allclose(B.mobius_add(-x, B.mobius_add(x, y)), y, atol=1e-10)  # left cancellation
    assert torch.allclose(B.logmap0(B.expmap0(u)), u, atol=1e-10)
    assert torch.allclose(B.expmap(x, B.logmap(x, y)), y, atol=1e-9)
    assert torch.allclose(B.dist(x, y), B.dist(y, x), atol=1e-12)
    assert torch.allclose(B.dist(x, y), 2 * B.logmap0(B.mobius_add(-x, y)).norm(dim=-1), atol=1e-9)
    # parallel transport keeps the Riemannian norm λ|v|
    pv = B.parallel_transport(x, y, u)
    assert torch.allclose(B.lambda_x(y) * pv.norm(dim=-1), B.lambda_x(x) * u.norm(dim=-1), rtol=1e-10)
    # scalar multiplication: 2 ⊗ x = x ⊕ x
    assert torch.allclose(B.mobius_scalar_mul(2.0, x), B.mobius_add(x, x), atol=1e-12)


def test_ops_are_rotation_equivariant():
    from geodl.groups import random_rotation

    R = random_rotation(generator=torch.Generator().manual_seed(0), dtype=F64)
    x, y = _points(30, 3, seed=14), _points(30, 3, seed=15)
    r = lambda t: t @ R.T  # noqa: E731
    assert torch.allclose(B.mobius_add(r(x), r(y)), r(B.mobius_add(x, y)), atol=1e-12)
    assert torch.allclose(B.dist(r(x), r(y)), B.dist(x, y), atol=1e-12)
    assert torch.allclose(B.gyromidpoint(r(x)), r(B.gyromidpoint(x)), atol=1e-12)


def test_half_precision_computed_in_float32_inside_the_ball():
    u = torch.randn(100, 16).mul(5).to(torch.bfloat16)
    x = B.project(B.expmap0(u))
    assert x.dtype == torch.float32 and bool((x.norm(dim=-1) < 1).all())
    assert B.ball_margin(torch.bfloat16) == B.ball_margin(torch.float32)


@pytest.mark.parametrize("bad_c", [0.0, -1.0, float("nan"), float("inf"), torch.tensor([1.0, -0.5])])
def test_bad_curvature(bad_c):
    with pytest.raises(ValueError, match="^c: "):
        B.expmap0(torch.zeros(3), c=bad_c)


def test_bad_inputs_name_the_argument():
    inside = torch.tensor([0.1, 0.2])
    outside = torch.tensor([0.9, 0.9])
    with pytest.raises(ValueError, match="^y: points must lie inside"):
        B.mobius_add(inside, outside)
    with pytest.raises(ValueError, match="^x: points must lie inside"):
        B.dist(outside, inside)
    with pytest.raises(ValueError, match="^x: points must lie inside"):
        B.lambda_x(torch.tensor([0.6, 0.0]), c=4.0)  # inside for c = 1, outside for c = 4
    with pytest.raises(ValueError, match="^u: contains NaN"):
        B.expmap0(torch.tensor([float("nan"), 0.0]))
    with pytest.raises(ValueError, match="^x: contains NaN"):
        B.mobius_add(torch.tensor([float("nan"), 0.0]), inside)
    with pytest.raises(TypeError, match="^c: "):
        B.expmap0(inside, c="1")
    with pytest.raises(ValueError, match="^dim: "):
        B.expmap0(inside, dim=3)
    with pytest.raises(ValueError, match="^y: shape"):
        B.mobius_add(torch.zeros(2, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="^x: the set along reduce_dim"):
        B.gyromidpoint(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="^weights: "):
        B.gyromidpoint(torch.zeros(4, 3), torch.tensor([1.0, -1.0, 0.0, 0.0]))


def test_empty_inputs():
    e = torch.zeros(0, 4)
    assert B.expmap0(e).shape == (0, 4) and B.mobius_add(e, e).shape == (0, 4) and B.dist(e, e).shape == (0,)


def test_no_nan_at_extremes():
    u = torch.tensor([[1e4, 0.0], [1e-30, 0.0], [0.0, 0.0]])
    x = B.project(B.expmap0(u))
    assert bool(torch.isfinite(x).all()) and bool((x.norm(dim=-1) < 1).all())
    lg = B.logmap0(x)
    assert bool(torch.isfinite(lg).all())
    x.requires_grad_()
    B.logmap0(B.mobius_add(x, x.detach().flip(0), check=False), check=False).sum().backward()
    assert bool(torch.isfinite(x.grad).all())


# ----------------------------------------------------------------------------- PoincareLinear / PoincareMLR


def test_fc_tail_gradcheck_and_matches_autograd():
    from geodl.nn.poincare._layers import _FCTail, _tail_forward

    g = torch.Generator().manual_seed(20)
    s = torch.randn(3, 4, 5, dtype=F64, generator=g).requires_grad_()
    lam = (2 + 3 * torch.rand(3, 4, 1, dtype=F64, generator=g)).requires_grad_()
    zn = (0.5 + torch.rand(5, dtype=F64, generator=g)).requires_grad_()
    r = (0.3 * torch.randn(5, dtype=F64, generator=g)).requires_grad_()
    sc = torch.tensor(0.8, dtype=F64)
    assert torch.autograd.gradcheck(lambda *a: _FCTail.apply(*a, sc), (s, lam, zn, r))
    y1 = _FCTail.apply(s, lam, zn, r, sc)
    y2, _ = _tail_forward(s, lam, zn, r, sc)
    g1 = torch.autograd.grad(y1.square().sum(), (s, lam, zn, r))
    g2 = torch.autograd.grad(y2.square().sum(), (s, lam, zn, r))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g1, g2))


def test_poincare_linear_identity_init_and_hnn_init():
    from geodl.nn.poincare import PoincareLinear

    x = B.expmap0(torch.randn(8, 4, dtype=F64), c=0.5)
    y = PoincareLinear(4, 7, c=0.5).double()(x)
    assert torch.allclose(y[:, :4], x, atol=1e-7) and float(y[:, 4:].abs().max()) < 1e-2
    narrow = PoincareLinear(7, 3, c=0.5).double()
    out = narrow(B.expmap0(torch.randn(8, 7, dtype=F64), c=0.5))
    assert out.shape == (8, 3) and bool((0.5 * out.square().sum(-1) < 1).all())


def test_poincare_linear_check_module_and_errors():
    from geodl.nn.poincare import PoincareLinear, PoincareMLR
    from geodl.testing import check_module

    x = B.expmap0(torch.randn(6, 4, generator=torch.Generator().manual_seed(21)))
    for m in (PoincareLinear(4, 5), PoincareLinear(4, 3, bias=False), PoincareMLR(4, 3)):
        assert check_module(m, {"x": x}).passed
    with pytest.raises(ValueError, match="^x: expected 4 features"):
        PoincareLinear(4, 5)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="^c: "):
        PoincareLinear(4, 5, c=-1.0)
    with pytest.raises(ValueError, match="^in_features: "):
        PoincareLinear(0, 5)
    with pytest.raises(ValueError, match="^in_features: .*too large"):
        PoincareLinear(1 << 20, 1 << 20)


def test_poincare_linear_no_nan_and_inside_ball_float32_and_bf16():
    from geodl.nn.poincare import PoincareLinear

    layer = PoincareLinear(16, 16, id_init=False)
    with torch.no_grad():
        layer.weight.mul_(50.0)  # huge pre-activations: sinh saturates, the output stays inside
    x = B.project(B.expmap0(torch.randn(64, 16) * 5))
    y = layer(x)
    assert bool(torch.isfinite(y).all()) and bool((y.norm(dim=-1) < 1).all())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb = layer(x)
    assert yb.dtype == torch.float32 and bool(torch.isfinite(yb).all()) and bool((yb.norm(dim=-1) < 1).all())
    y.sum().backward()
    assert bool(torch.isfinite(layer.weight.grad).all())


# ----------------------------------------------------------------------------- PoincareConv2d


@pytest.mark.parametrize("cfg", [dict(kernel_size=3, padding=1), dict(kernel_size=(3, 2), stride=2),
                                 dict(kernel_size=3, dilation=2, padding=2, c=0.5), dict(kernel_size=1, bias=False)])
def test_conv_equals_the_unfold_definition(cfg):
    from geodl.nn.poincare import PoincareConv2d

    torch.manual_seed(0)
    c = cfg.get("c", 1.0)
    for id_init in (True, False):
        conv = PoincareConv2d(3, 5, **cfg, id_init=id_init).double()
        with torch.no_grad():
            if conv.bias is not None:
                conv.bias.normal_(0, 0.3)
        x = B.expmap0(torch.randn(2, 3, 7, 6, dtype=F64), c=c, dim=1)
        y, ref = conv(x), conv._unfold_reference(x)
        assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-12)
        assert bool((c * y.square().sum(1) < 1).all())


def test_conv_gradcheck_and_less_saved_memory_than_unfold():
    from geodl.bench._memory import saved_activation_bytes
    from geodl.nn.poincare import PoincareConv2d

    conv = PoincareConv2d(2, 3, 3, padding=1, id_init=False).double()
    x = B.expmap0(torch.randn(1, 2, 4, 4, dtype=F64), dim=1).requires_grad_()
    assert torch.autograd.gradcheck(conv, (x,))
    big = PoincareConv2d(16, 16, 3, padding=1)
    xb = B.expmap0(torch.randn(8, 16, 16, 16), dim=1).requires_grad_()
    fast = saved_activation_bytes(lambda t: big(t).sum(), xb)
    unfold = saved_activation_bytes(lambda t: big._unfold_reference(t).sum(), xb)
    assert fast * 3 < unfold, (fast, unfold)  # the unfolded patches are 9 times the input


def test_conv_check_module_and_errors():
    from geodl.nn.poincare import PoincareConv2d
    from geodl.testing import check_module

    x = B.expmap0(torch.randn(4, 2, 5, 5, generator=torch.Generator().manual_seed(22)), dim=1)
    assert check_module(PoincareConv2d(2, 3, 3, padding=1), {"x": x}).passed
    conv = PoincareConv2d(2, 3, 3)
    with pytest.raises(ValueError, match="^x: expected 2 channels"):
        conv(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="^x: height 2"):
        conv(torch.zeros(1, 2, 2, 5))
    with pytest.raises(ValueError, match="^x: expected a tensor with 4 dimensions"):
        conv(torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match="^kernel_size: "):
        PoincareConv2d(2, 3, (1, 2, 3))
    with pytest.raises(ValueError, match="^stride: "):
        PoincareConv2d(2, 3, 3, stride=0)
    assert conv(torch.zeros(0, 2, 5, 5)).shape == (0, 3, 3, 3)


# ----------------------------------------------------------------------------- batch norm, ReLU


def test_batchnorm_normalises_and_eval_uses_running_statistics():
    from geodl.nn.poincare import PoincareBatchNorm2d
    from geodl.testing import check_module

    g = torch.Generator().manual_seed(23)
    shift = B.expmap0(torch.tensor([0.8, -0.5, 0.3], dtype=F64)).reshape(1, 3, 1, 1)
    x = B.mobius_add(shift, B.expmap0(0.7 * torch.randn(16, 3, 4, 4, dtype=F64, generator=g), dim=1), dim=1)
    bn = PoincareBatchNorm2d(3).double()
    y = bn(x)
    flat = y.transpose(0, 1).reshape(3, -1).T
    mid = B.gyromidpoint(flat)
    # centred on β = origin: exactly before the rescaling (the gyromidpoint commutes with (−μ) ⊕ ·), nearly after
    assert float(mid.norm()) < 0.05
    var = B.dist(flat, torch.zeros(3, dtype=F64)).square().mean()
    assert abs(float(var) - 1.0) < 0.05  # unit Fréchet variance about the midpoint
    for _ in range(150):  # running statistics converge to the data's
        bn(x)
    bmu = B.gyromidpoint(x.transpose(0, 1).reshape(3, -1).T)
    assert float(B.dist(bn.running_mean, bmu)) < 1e-3
    bn.eval()
    assert torch.allclose(bn(x[:3]), bn(x)[:3], atol=1e-12)  # eval: per sample
    assert torch.allclose(bn(x), y, atol=0.05)  # eval ≈ train once the running stats have converged
    assert check_module(bn, {"x": x[:4]}).passed


def test_batchnorm_gradcheck_and_errors():
    from geodl.nn.poincare import PoincareBatchNorm2d

    bn = PoincareBatchNorm2d(2).double()
    x = B.expmap0(torch.randn(3, 2, 2, 2, dtype=F64), dim=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: bn(t), (x,))
    with pytest.raises(ValueError, match="^x: expected 2 channels"):
        bn(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="^x: batch norm in training mode needs at least one pixel"):
        bn(torch.zeros(0, 2, 2, 2))
    with pytest.raises(ValueError, match="^momentum: "):
        PoincareBatchNorm2d(2, momentum=2.0)
    bn.eval()
    assert bn(torch.zeros(0, 2, 2, 2)).shape == (0, 2, 2, 2)


def test_relu_in_tangent_space():
    from geodl.nn.poincare import PoincareReLU
    from geodl.testing import check_module

    x = B.expmap0(torch.randn(4, 3, 2, 2, dtype=F64), dim=1)
    y = PoincareReLU()(x)
    assert torch.allclose(B.logmap0(y, dim=1), torch.relu(B.logmap0(x, dim=1)), atol=1e-12)
    assert check_module(PoincareReLU(), {"x": x}).passed
    with pytest.raises(ValueError, match="^x: shape"):
        PoincareReLU(dim=3)(torch.zeros(2, 2))
