"""Haar sampling, geodesic distance and conversions (geodl.groups._rotations)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from geodl.groups import (
    axis_angle_to_matrix,
    euler_to_matrix,
    geodesic_distance,
    matrix_to_6d,
    matrix_to_axis_angle,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
    random_quaternion,
    random_rotation,
    random_rotation_2d,
    sixd_to_matrix,
)

from ._helpers import F64, gen, rotations_near_0_and_pi

EYE = torch.eye(3, dtype=F64)


def _haar_cdf(theta):
    return (theta - np.sin(theta)) / math.pi


def test_haar_rotation_angle_ks():
    R = random_rotation(100_000, generator=gen(0), dtype=F64)
    theta = geodesic_distance(EYE, R)
    p = stats.kstest(theta.numpy(), _haar_cdf).pvalue
    assert p > 0.01, p


def test_ks_rejects_a_non_haar_sampler():
    # The same test must reject rotations with a uniform angle (axis-angle sampled naively).
    g = gen(0)
    axis = torch.randn(100_000, 3, generator=g, dtype=F64)
    angle = math.pi * torch.rand(100_000, 1, generator=g, dtype=F64)
    R = axis_angle_to_matrix(axis / axis.norm(dim=-1, keepdim=True) * angle)
    theta = geodesic_distance(EYE, R)
    p = stats.kstest(theta.numpy(), _haar_cdf).pvalue
    assert p < 1e-6


def test_haar_is_left_invariant_in_distribution():
    # The angle of Q @ R (Q fixed) has the same law: compare two samples with a 2-sample KS test.
    Q = euler_to_matrix(torch.tensor([0.4, 2.0, -1.0], dtype=F64))
    a = geodesic_distance(EYE, Q @ random_rotation(20_000, generator=gen(1), dtype=F64))
    b = geodesic_distance(EYE, random_rotation(20_000, generator=gen(2), dtype=F64))
    assert stats.ks_2samp(a.numpy(), b.numpy()).pvalue > 0.01


def test_same_seed_same_samples_and_shapes():
    a = random_rotation(3, 4, generator=gen(7), dtype=F64)
    b = random_rotation((3, 4), generator=gen(7), dtype=F64)
    c = random_rotation(3, 4, generator=gen(8), dtype=F64)
    assert a.shape == (3, 4, 3, 3)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert random_rotation().shape == (3, 3)
    assert torch.equal(random_rotation_2d(5, generator=gen(1)), random_rotation_2d(5, generator=gen(1)))
    assert torch.equal(random_quaternion(5, generator=gen(1)), random_quaternion(5, generator=gen(1)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_respected(dtype, device_list=("cpu",) + (("cuda",) if torch.cuda.is_available() else ())):
    for device in device_list:
        g = torch.Generator(device=device).manual_seed(0)
        R = random_rotation(100, generator=g, dtype=dtype, device=device)
        assert R.dtype == dtype and R.device.type == device
        tol = 1e-5 if dtype == torch.float32 else 1e-13
        eye = torch.eye(3, dtype=dtype, device=device)
        assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=tol)
        assert torch.allclose(torch.linalg.det(R), torch.ones(100, dtype=dtype, device=device), atol=tol)
        R2 = random_rotation_2d(10, generator=g, dtype=dtype, device=device)
        assert R2.shape == (10, 2, 2) and R2.dtype == dtype
        assert torch.allclose(torch.linalg.det(R2), torch.ones(10, dtype=dtype, device=device), atol=tol)
    assert random_rotation(2).dtype == torch.get_default_dtype()


def test_geodesic_distance_accurate_near_0_and_pi():
    R, angle = rotations_near_0_and_pi(2000)
    d = geodesic_distance(EYE, R)
    # relative accuracy near 0, absolute near π
    small = angle < 1e-2
    assert ((d - angle).abs()[small] <= 1e-15 * angle[small]).all()
    assert ((d - angle).abs() <= 1e-15).all()
    # symmetric, broadcasting
    Q = random_rotation(50, generator=gen(3), dtype=F64)
    assert torch.allclose(geodesic_distance(Q, R[:50]), geodesic_distance(R[:50], Q), atol=1e-15)
    assert geodesic_distance(EYE, Q[:, None]).shape == (50, 1)


def _all_rotations(n=100_000):
    R_rand = random_rotation(n, generator=gen(11), dtype=F64)
    R_edge, _ = rotations_near_0_and_pi(2000, seed=1)
    return torch.cat([R_rand, R_edge])


def _max_err(a, b):
    return float((a - b).abs().max())


def test_quaternion_round_trip():
    R = _all_rotations()
    q = matrix_to_quaternion(R)
    assert q.shape == (len(R), 4) and (q[:, 3] >= 0).all()
    assert _max_err(quaternion_to_matrix(q), R) <= 1e-12
    # and quaternion -> matrix -> quaternion, up to the sign of q
    q0 = random_quaternion(100_000, generator=gen(5), dtype=F64)
    q1 = matrix_to_quaternion(quaternion_to_matrix(q0))
    assert _max_err(q1 * torch.sign(q1[:, 3:] * q0[:, 3:]), q0) <= 1e-12
    # convention: (x, y, z, w), a quarter turn about z
    Rz = quaternion_to_matrix(torch.tensor([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)], dtype=F64))
    assert torch.allclose(Rz @ torch.tensor([1.0, 0, 0], dtype=F64), torch.tensor([0.0, 1, 0], dtype=F64), atol=1e-15)


def test_axis_angle_round_trip():
    R = _all_rotations()
    v = matrix_to_axis_angle(R)
    assert (v.norm(dim=-1) <= math.pi + 1e-15).all()
    assert _max_err(axis_angle_to_matrix(v), R) <= 1e-12
    _, angle = rotations_near_0_and_pi(2000, seed=1)
    assert torch.allclose(v[-len(angle):].norm(dim=-1), angle, rtol=1e-14, atol=1e-15)
    # vector -> matrix -> vector away from π (at π the axis sign is ambiguous)
    v0 = torch.randn(100_000, 3, generator=gen(6), dtype=F64)
    v0 = v0 / v0.norm(dim=-1, keepdim=True) * (3.0 * torch.rand(100_000, 1, generator=gen(7), dtype=F64))
    assert _max_err(matrix_to_axis_angle(axis_angle_to_matrix(v0)), v0) <= 1e-12


def test_sixd_round_trip():
    R = _all_rotations()
    d6 = matrix_to_6d(R)
    assert d6.shape == (len(R), 6)
    assert torch.equal(d6[:, :3], R[:, :, 0]) and torch.equal(d6[:, 3:], R[:, :, 1])
    assert _max_err(sixd_to_matrix(d6), R) <= 1e-12
    # Gram-Schmidt of a perturbed, scaled 6D vector still gives a rotation
    M = sixd_to_matrix(3.0 * d6[:100] + 0.1 * torch.randn(100, 6, generator=gen(1), dtype=F64))
    assert torch.allclose(M @ M.transpose(-1, -2), EYE.expand(100, 3, 3), atol=1e-13)


@pytest.mark.parametrize("convention", ["ZYZ", "zyz", "XYZ", "zxy"])
def test_euler_round_trip(convention):
    R = _all_rotations()
    # gimbal-lock neighbourhoods: middle angle near 0 and near π (ZYZ) / ±π/2 (Tait–Bryan)
    g = gen(9)
    ang = (2 * torch.rand(20_000, 3, generator=g, dtype=F64) - 1) * math.pi
    eps = 10.0 ** torch.empty(5_000, dtype=F64).uniform_(-16, -1, generator=g)
    mid = torch.cat([eps, math.pi - eps, -eps, eps - math.pi]) if convention[0] == convention[2] else \
        torch.cat([math.pi / 2 - eps, eps - math.pi / 2, math.pi / 2 + 0 * eps, -math.pi / 2 + 0 * eps])
    ang[:, 1] = mid
    R = torch.cat([R, euler_to_matrix(ang, convention)])
    e = matrix_to_euler(R, convention)
    assert _max_err(euler_to_matrix(e, convention), R) <= 1e-12


def test_euler_convention_is_intrinsic_zyz():
    phi, theta, psi = 0.3, 1.2, -2.0
    R = euler_to_matrix(torch.tensor([phi, theta, psi], dtype=F64))

    def rz(a):
        return torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=F64)

    ry = torch.tensor([[math.cos(theta), 0, math.sin(theta)], [0, 1, 0], [-math.sin(theta), 0, math.cos(theta)]], dtype=F64)
    assert torch.allclose(R, rz(phi) @ ry @ rz(psi), atol=1e-15)
    assert torch.allclose(matrix_to_euler(R), torch.tensor([phi, theta, psi], dtype=F64), atol=1e-14)


def test_conversions_keep_batch_shape():
    R = random_rotation(2, 3, generator=gen(0), dtype=F64)
    assert matrix_to_quaternion(R).shape == (2, 3, 4)
    assert matrix_to_axis_angle(R).shape == (2, 3, 3)
    assert matrix_to_6d(R).shape == (2, 3, 6)
    assert matrix_to_euler(R).shape == (2, 3, 3)
    for back in (quaternion_to_matrix(matrix_to_quaternion(R)), axis_angle_to_matrix(matrix_to_axis_angle(R)),
                 sixd_to_matrix(matrix_to_6d(R)), euler_to_matrix(matrix_to_euler(R))):
        assert back.shape == R.shape and torch.allclose(back, R, atol=1e-13)


BAD = [
    (lambda: random_rotation("3"), TypeError, "shape"),
    (lambda: random_rotation(-1), TypeError, "shape"),
    (lambda: random_rotation(3, dtype=torch.int64), TypeError, "dtype"),
    (lambda: geodesic_distance(EYE, torch.zeros(3, 4, dtype=F64)), ValueError, "R2"),
    (lambda: geodesic_distance([[1.0]], EYE), TypeError, "R1"),
    (lambda: matrix_to_quaternion(torch.full((3, 3), float("nan"))), ValueError, "R"),
    (lambda: matrix_to_quaternion(torch.eye(4)), ValueError, "R"),
    (lambda: quaternion_to_matrix(torch.ones(3)), ValueError, "q"),
    (lambda: quaternion_to_matrix(torch.tensor([0.0, 0.0, float("inf"), 1.0])), ValueError, "q"),
    (lambda: axis_angle_to_matrix(torch.ones(2, 4)), ValueError, "v"),
    (lambda: axis_angle_to_matrix(torch.tensor([1, 2, 3])), TypeError, "v"),
    (lambda: sixd_to_matrix(torch.ones(5)), ValueError, "d6"),
    (lambda: euler_to_matrix(torch.ones(3), convention="ZZY"), ValueError, "convention"),
    (lambda: euler_to_matrix(torch.ones(3), convention="ZyZ"), ValueError, "convention"),
    (lambda: euler_to_matrix(torch.ones(3), convention=3), TypeError, "convention"),
    (lambda: euler_to_matrix(torch.tensor([0.0, float("nan"), 0.0])), ValueError, "angles"),
    (lambda: matrix_to_euler(torch.ones(3)), ValueError, "R"),
]


@pytest.mark.parametrize("call,exc,name", BAD)
def test_bad_input_names_the_argument(call, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        call()
