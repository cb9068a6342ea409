"""S2Conv, SO3Conv, SO3Activation (geodl.nn.pose._convs): check_module, the float32 bound, the meaning of the
outputs, the activation's round trip and equivariance error, a composed block, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from geodl.groups import random_rotation
from geodl.groups._actions import _sh_blocks
from geodl.groups._wigner_grid import _flat_blocks
from geodl.nn.pose import S2Conv, SO3Activation, SO3Conv, s2_near_pole_grid
from geodl.testing import check_module

F64 = torch.float64


def _x(*shape, seed=0, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _rot(seed, dtype=F64):
    return random_rotation(generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _act_so3(x, R, lmax):
    """F^l -> D^l(R) F^l per block (the so3 kind)."""
    out, i = [], 0
    for l, D in enumerate(_sh_blocks(R, lmax)):
        k = 2 * l + 1
        out.append((D @ x[..., i:i + k * k].unflatten(-1, (k, k))).flatten(-2))
        i += k * k
    return torch.cat(out, -1)


def _act_sh(x, R, lmax):
    """x^l -> D_real^l(R) x^l, D_real(R) = D_e3nn(Pᵀ R P) (the sh kind)."""
    idx = torch.tensor([1, 2, 0])
    Rr = R.index_select(-2, idx).index_select(-1, idx)
    return torch.cat([x[..., l * l:(l + 1) ** 2] @ D.T for l, D in enumerate(_sh_blocks(Rr, lmax))], -1)


# --------------------------------------------------------------------------- check_module


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kw", [{}, {"kernel_grid": "sh"}, {"basis": "e3nn"}])
def test_s2conv_check_module(dtype, kw):
    torch.manual_seed(0)
    rtol = 1e-5 if dtype == torch.float32 else None
    check_module(S2Conv(2, 3, 3, **kw), {"x": _x(4, 2, 16)}, dtype=dtype, rtol=rtol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("grid", [False, True])
def test_so3conv_check_module(dtype, grid):
    torch.manual_seed(0)
    rtol = 1e-5 if dtype == torch.float32 else None
    kernel_grid = random_rotation(5, generator=torch.Generator().manual_seed(3), dtype=F64) if grid else None
    check_module(SO3Conv(2, 3, 2, kernel_grid=kernel_grid), {"x": _x(4, 2, 35)}, dtype=dtype, rtol=rtol)


def test_activation_check_module_loose():
    """Approximate equivariance: the battery with a tolerance above the measured grid error (rec 2, lmax 2)."""
    check_module(SO3Activation(2, 2, "tanh", rec=2), {"x": _x(3, 2, 35) * 0.3}, rtol=2e-2, atol=2e-2)


def test_float32_relative_error_below_1e5():
    """Rotating the input coefficients by D(R) rotates the outputs by D(R): ≤ 1e-5 relative in float32."""
    torch.manual_seed(1)
    s2, so3 = S2Conv(4, 5, 4).float().eval(), SO3Conv(5, 3, 4).float().eval()
    x = _x(6, 4, 25, seed=2, dtype=torch.float32)
    for s in range(5):
        R = _rot(10 + s, torch.float32)
        with torch.no_grad():
            y = s2(x)
            e1 = (s2(_act_sh(x, R, 4)) - _act_so3(y, R, 4)).norm() / y.norm()
            z = so3(y)
            e2 = (so3(_act_so3(y, R, 4)) - _act_so3(z, R, 4)).norm() / z.norm()
        assert float(e1) <= 1e-5 and float(e2) <= 1e-5, (float(e1), float(e2))


# --------------------------------------------------------------------------- what the outputs mean


def test_s2conv_is_the_correlation_with_point_masses():
    """(f ⋆ ψ)(R) = (C K)^{-1/2} Σ_k w_k f(R x_k) for the default near-pole kernel."""
    from geodl.ops import spherical_harmonics

    torch.manual_seed(0)
    conv = S2Conv(1, 1, 3).double()
    x = _x(1, 1, 16)
    R = random_rotation(5, generator=torch.Generator().manual_seed(1), dtype=F64)
    val = conv(x)[0, 0] @ _flat_blocks(3, R).T
    pts = torch.einsum("rij,kj->rki", R, s2_near_pole_grid(dtype=F64))
    ref = ((spherical_harmonics(3, pts) @ x[0, 0]) * conv.weight[0, 0].detach()).sum(-1) / math.sqrt(24)
    torch.testing.assert_close(val, ref, atol=1e-12, rtol=0)


def test_s2conv_outer_product_formula():
    torch.manual_seed(0)
    conv = S2Conv(2, 1, 2, basis="e3nn", kernel_grid="sh").double()
    x = _x(1, 2, 9)
    F = conv(x)[0, 0]
    psi = conv.kernel().detach()
    for l in range(3):
        off = sum((2 * k + 1) ** 2 for k in range(l))
        ref = sum(torch.outer(x[0, c, l * l:(l + 1) ** 2], psi[c, 0, l * l:(l + 1) ** 2]) for c in range(2))
        torch.testing.assert_close(F[off:off + (2 * l + 1) ** 2].reshape(2 * l + 1, -1), ref)


def test_so3conv_point_masses_are_right_translates():
    torch.manual_seed(0)
    Rk = random_rotation(3, generator=torch.Generator().manual_seed(1), dtype=F64)
    conv = SO3Conv(1, 1, 3, kernel_grid=Rk).double()
    x = _x(1, 1, 84)
    G = random_rotation(4, generator=torch.Generator().manual_seed(2), dtype=F64)
    val = conv(x)[0, 0] @ _flat_blocks(3, G).T
    f = lambda Q: x[0, 0] @ _flat_blocks(3, Q).T  # noqa: E731
    ref = sum(conv.weight[0, 0, k].detach() * f(G @ Rk[k]) for k in range(3)) / math.sqrt(3)
    torch.testing.assert_close(val, ref, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- the activation


@pytest.mark.parametrize("transform,rec,tol", [("lstsq", 1, 1e-12), ("lstsq", 2, 1e-12),
                                               ("quadrature", 1, 0.05), ("quadrature", 2, 0.015)])
def test_activation_round_trip_of_band_limited_signals(transform, rec, tol):
    """Identity σ: coefficients -> grid -> coefficients. Least squares is exact; quadrature ~3e-2 / 8e-3."""
    a = SO3Activation(2, 2, lambda t: t, rec=rec, transform=transform).double()
    x = _x(2, 3, 35)
    assert float((a(x) - x).norm() / x.norm()) <= tol


def test_activation_values_on_the_grid():
    from geodl.groups import so3_healpix_grid

    a = SO3Activation(1, 1, "relu", rec=0).double()
    x = _x(1, 1, 10)
    vals = x[0, 0] @ _flat_blocks(1, so3_healpix_grid(0, dtype=F64)).T
    torch.testing.assert_close(a(x)[0, 0], torch.linalg.lstsq(_flat_blocks(1, so3_healpix_grid(0, dtype=F64)),
                                                              vals.relu()[:, None]).solution[:, 0])


def test_activation_normalize2mom():
    a = SO3Activation(1, 1, "relu", rec=0, normalize2mom=True)
    assert a.scale == pytest.approx(math.sqrt(2), rel=1e-6)
    assert SO3Activation(1, 1, "relu", rec=0).scale == 1.0


@pytest.mark.parametrize("lmax,rec,bound", [(2, 1, 0.03), (2, 2, 0.005), (4, 2, 0.015)])
def test_activation_equivariance_error_bound(lmax, rec, bound):
    """Measured (docstring table): relu, lmax 2: 2.1e-2 at rec 1, 3.1e-3 at rec 2; lmax 4, rec 2: 1.1e-2."""
    a = SO3Activation(lmax, lmax, "relu", rec=rec).double()
    x = _x(8, 2, a.synthesis.shape[0], seed=4)
    x = x / (x @ a.synthesis).std()
    y = a(x)
    for s in range(4):
        R = _rot(20 + s)
        assert float((a(_act_so3(x, R, lmax)) - _act_so3(y, R, lmax)).norm() / y.norm()) <= bound


def test_composed_block_equivariant_to_the_stated_accuracy():
    """S2Conv -> SO3Activation (rec 2) -> SO3Conv: exact convolutions, the activation's grid error (< 1e-2)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(S2Conv(3, 4, 2), SO3Activation(2, 2, "relu", rec=2), SO3Conv(4, 2, 2)).double()
    x = _x(5, 3, 9, seed=7)
    y = net(x)
    errs = []
    for s in range(4):
        R = _rot(30 + s)
        with torch.no_grad():
            errs.append(float((net(_act_sh(x, R, 2)) - _act_so3(y, R, 2)).norm() / y.norm()))
    assert max(errs) <= 1e-2, errs
    loss = net(x).square().sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_float32_module_converted_to_float64_keeps_exact_constants():
    torch.manual_seed(0)
    conv = S2Conv(1, 1, 3).float().double()
    from geodl.groups import wigner_D_blocks

    P = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=F64)
    torch.testing.assert_close(conv.basis_change, torch.block_diag(*wigner_D_blocks(3, P)), atol=1e-15, rtol=0)


# --------------------------------------------------------------------------- edge cases and bad input


@pytest.mark.parametrize("make,width", [(lambda: S2Conv(2, 3, 2), 9), (lambda: SO3Conv(2, 3, 2), 35),
                                        (lambda: SO3Activation(2, 1, rec=1), 35)])
def test_empty_batch(make, width):
    m = make().double()
    out = m(torch.zeros(0, 2, width, dtype=F64))
    assert out.shape[0] == 0 and out.shape[1] in (2, 3)


@pytest.mark.parametrize("make,width", [(lambda: S2Conv(2, 3, 2), 9), (lambda: SO3Conv(2, 3, 2), 35),
                                        (lambda: SO3Activation(2, 2, rec=1), 35)])
def test_bad_input_names_x(make, width):
    m = make().double()
    with pytest.raises(ValueError, match=r"^x:.*lmax=1"):
        m(torch.zeros(1, 2, 4 if width == 9 else 10, dtype=F64))
    with pytest.raises(ValueError, match=r"^x:"):
        m(torch.zeros(2, width, dtype=F64))
    bad = torch.zeros(1, 2, width, dtype=F64)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^x:"):
        m(bad)
    with pytest.raises(TypeError, match=r"^x:"):
        m(torch.zeros(1, 2, width, dtype=torch.long))


def test_bad_constructor_arguments():
    for make in (lambda: S2Conv(1, 1, -1), lambda: SO3Conv(1, 1, -1)):
        with pytest.raises(ValueError, match="lmax"):
            make()
    with pytest.raises(ValueError, match="lmax_in"):
        SO3Activation(-1, 1)
    with pytest.raises(ValueError, match="in_channels"):
        S2Conv(0, 1, 1)
    with pytest.raises(ValueError, match="kernel_grid"):
        S2Conv(1, 1, 1, kernel_grid=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="kernel_grid"):
        SO3Conv(1, 1, 1, kernel_grid=torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match="basis"):
        S2Conv(1, 1, 1, basis="complex")
    with pytest.raises(ValueError, match="act"):
        SO3Activation(1, 1, "swish")
    with pytest.raises(ValueError, match="^rec:"):
        SO3Activation(3, 3, rec=0)  # 72 rotations < 84 coefficients
    with pytest.raises(ValueError, match="rec"):
        SO3Activation(1, 1, rec=9)


def test_sizes_checked_before_allocation():
    with pytest.raises(ValueError, match="in_channels"):
        SO3Conv(10**7, 10**7, 2)
    conv = SO3Conv(1, 1, 1)
    big = torch.zeros(1, 1, 10).expand(10**12, 1, 10)
    with pytest.raises(ValueError, match="^x:"):
        conv(big)
    with pytest.raises(ValueError, match="^x:"):
        SO3Activation(1, 1, rec=0)(big)
