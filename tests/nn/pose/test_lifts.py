"""Lifts from an image feature map: OrthographicLift and InducedLift (issue 14, deliverable 1)."""

import math

import pytest
import torch

from geodl.groups import GroupElement, act
from geodl.groups import s2_healpix_grid, so3_fourier_width, wigner_D_blocks
from geodl.nn.pose import InducedLift, OrthographicLift
from geodl.testing import check_module

F64, F32 = torch.float64, torch.float32


def _rz(k, dtype=F64):
    c, s = round(math.cos(k * math.pi / 2)), round(math.sin(k * math.pi / 2))
    return torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=dtype)


def _x(shape, seed, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _blockwise_D(y, lmax, R):
    """``F^l -> D^l(R) F^l`` on ``(..., Σ(2l+1)²)`` by hand (not through the kind registry)."""
    out, i = [], 0
    for l, D in enumerate(wigner_D_blocks(lmax, R.to(y.dtype))):
        k = 2 * l + 1
        out.append((D @ y[..., i:i + k * k].unflatten(-1, (k, k))).flatten(-2))
        i += k * k
    return torch.cat(out, -1)


# ----------------------------------------------------------------------------- the must-show: exact quarter turns
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-12), (F32, 1e-6)])
@pytest.mark.parametrize("size", [7, 8])
def test_induced_lift_commutes_with_quarter_turns_blockwise(dtype, tol, size):
    torch.manual_seed(0)
    lmax = 4
    lift = InducedLift(3, 2, lmax, size).to(dtype)
    x = _x((2, 3, size, size), 1, dtype)
    y = lift(x)
    assert y.shape == (2, 2, so3_fourier_width(lmax)) and y.dtype == dtype
    scale = float(y.detach().abs().max())
    for k in range(4):
        got = lift(torch.rot90(x, k, (-2, -1)))  # counter-clockwise in the (u right, v up) frame
        want = _blockwise_D(y, lmax, _rz(k))
        err = float((got - want).detach().abs().max())
        assert err <= tol * max(scale, 1.0), (k, err)


@pytest.mark.parametrize("dtype", [F64, F32])
def test_induced_lift_check_module(dtype):
    torch.manual_seed(0)
    lift = InducedLift(2, 2, 3, 6)
    assert lift.symmetry.group == "azimuth:4" and lift.symmetry.in_kinds == {"x": "image2d"}
    assert lift.symmetry.out_kinds == "so3:3"
    rep = check_module(lift, {"x": _x((3, 2, 6, 6), 0)}, dtype=dtype)
    assert rep.passed


def test_induced_lift_s2_output_check_module_and_kind():
    torch.manual_seed(0)
    lift = InducedLift(2, 3, 3, 5, output="s2")
    assert lift.symmetry.out_kinds == "sh:3"
    assert lift(_x((2, 2, 5, 5), 0, F32)).shape == (2, 3, 16)
    assert check_module(lift, {"x": _x((2, 2, 5, 5), 0)}).passed


def test_image2d_action_of_rz_is_rot90():
    x = _x((2, 5, 5), 0)
    for k in range(4):
        assert torch.equal(act("image2d", GroupElement(rotation=_rz(k)), x), torch.rot90(x, k, (-2, -1)))
    with pytest.raises(ValueError, match="^g: .*about the z axis"):
        act("image2d", GroupElement(rotation=torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64))), x)


def test_check_module_catches_a_wrong_convention():
    """Negative control: the blocks without the change of axis D(Rx(π/2)) fail the battery."""
    torch.manual_seed(0)
    lift = InducedLift(1, 1, 2, 6)
    for l in range(3):
        getattr(lift, f"DQ{l}").copy_(torch.eye(2 * l + 1, dtype=F64))
    rep = check_module(lift, {"x": _x((2, 1, 6, 6), 0)}, checks=("equivariance",), raise_on_fail=False)
    assert not rep.passed


# ----------------------------------------------------------------------------- orthographic lift
def test_orthographic_lift_points_and_shapes():
    lift = OrthographicLift(3, 4, 2, rec=1)
    pts = s2_healpix_grid(1, dtype=F64)
    assert lift.num_points == int((pts[:, 2] > -1e-9).sum()) == 28  # 24 with z > 0, the 4 of the equator ring
    y = lift(torch.randn(2, 3, 9, 11))
    assert y.shape == (2, 4, 9)
    assert lift(torch.randn(0, 3, 9, 9)).shape == (0, 4, 9)


@pytest.mark.parametrize("transform", ["quadrature", "lstsq"])
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-12), (F32, 1e-5)])
def test_orthographic_lift_quarter_turns(transform, dtype, tol):
    """Measured: the HEALPix hemisphere is Rz(π/2)-invariant and bilinear sampling commutes with the square."""
    torch.manual_seed(0)
    lift = OrthographicLift(2, 3, 4, rec=2, transform=transform).to(dtype)
    x = _x((2, 2, 10, 10), 0, dtype)
    y = lift(x)
    scale = max(float(y.abs().max()), 1.0)
    for k in range(4):
        g = GroupElement(rotation=_rz(k))
        err = float((lift(torch.rot90(x, k, (-2, -1))).double() - act("sh:4", g, y.double())).abs().max())
        assert err <= tol * scale, (k, err)
    assert check_module(lift, {"x": _x((2, 2, 8, 8), 1)}, checks=("equivariance", "gradients")).passed


def test_orthographic_lift_reads_a_constant_map_as_a_hemisphere():
    """A constant map is the indicator of the front hemisphere: c_00 = (4π/N) · P · Y_00 by quadrature."""
    lift = OrthographicLift(1, 1, 2, rec=2, bias=False).double()
    with torch.no_grad():
        lift.weight.fill_(1.0)
    y = lift(torch.ones(1, 1, 8, 8, dtype=F64))
    N = 12 * 16
    assert math.isclose(float(y[0, 0, 0]), 4 * math.pi / N * lift.num_points / math.sqrt(4 * math.pi), rel_tol=1e-12)


def test_orthographic_lstsq_fits_a_band_limited_function():
    """lstsq recovers a degree <= lmax function from its hemisphere values (read at the points themselves)."""
    from geodl.ops import spherical_harmonics

    lift = OrthographicLift(1, 1, 2, rec=2, transform="lstsq").double()
    pts = s2_healpix_grid(2, dtype=F64)
    pts = pts[pts[:, 2] > -1e-9]
    c = torch.randn(9, dtype=F64)
    f = spherical_harmonics(2, pts) @ c
    torch.testing.assert_close(f @ lift.sh_transform.T, c, atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------- gradients, batches, bad input
@pytest.mark.parametrize("make", [lambda: InducedLift(2, 2, 2, 5), lambda: OrthographicLift(2, 2, 2, rec=1)])
def test_gradients_finite_and_empty_batch(make):
    lift = make()
    x = torch.randn(2, 2, 5, 5, requires_grad=True)
    lift(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for p in lift.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    out = lift(torch.randn(0, 2, 5, 5))
    assert out.shape[0] == 0


@pytest.mark.parametrize("x,match", [
    (torch.randn(2, 2, 5, 6), "^x: expected a square map of size 5"),
    (torch.randn(2, 2, 6, 6), "^x: expected a square map of size 5"),
    (torch.randn(2, 3, 5, 5), "^x: expected 2 channels"),
    (torch.randn(2, 5, 5), "^x"),
    (torch.full((1, 2, 5, 5), float("nan")), "^x"),
    (torch.ones(1, 2, 5, 5, dtype=torch.long), "^x"),
])
def test_induced_lift_bad_input(x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        InducedLift(2, 2, 2, 5)(x)


@pytest.mark.parametrize("x,match", [
    (torch.randn(2, 3, 5, 5), "^x: expected 2 channels"),
    (torch.randn(2, 2, 0, 5), "^x"),
    (torch.full((1, 2, 5, 5), float("inf")), "^x"),
])
def test_orthographic_lift_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        OrthographicLift(2, 2, 2, rec=1)(x)


@pytest.mark.parametrize("kw,name", [
    (dict(lmax=-1), "lmax"), (dict(lmax=2.5), "lmax"), (dict(in_channels=0), "in_channels"),
    (dict(out_channels=-2), "out_channels"), (dict(size=0), "size"), (dict(num_radial=0), "num_radial"),
    (dict(output="s3"), "output"),
])
def test_induced_lift_bad_arguments(kw, name):
    args = dict(in_channels=2, out_channels=2, lmax=2, size=5) | kw
    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        InducedLift(**args)


@pytest.mark.parametrize("kw,name", [
    (dict(lmax=-1), "lmax"), (dict(rec=-1), "rec"), (dict(rec=9), "rec"), (dict(in_channels=0), "in_channels"),
    (dict(transform="fft"), "transform"),
])
def test_orthographic_lift_bad_arguments(kw, name):
    args = dict(in_channels=2, out_channels=2, lmax=2) | kw
    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        OrthographicLift(**args)


def test_sizes_checked_before_allocation():
    with pytest.raises(ValueError, match="^out_channels"):
        InducedLift(64, 10**9, 8, 4)  # the profiles would not fit: refused before allocating
    with pytest.raises(ValueError, match="^size"):
        InducedLift(1, 1, 60, 4096, num_radial=4096)
    lift = OrthographicLift(1, 1, 1, rec=0)
    huge = torch.zeros(1, 1, 2, 2).expand(10**11, 1, 2, 2)  # a view: nothing allocated
    with pytest.raises(ValueError, match="^x"):
        lift(huge)
