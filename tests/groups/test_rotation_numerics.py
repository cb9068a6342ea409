"""Rotation conversions at the ends of the floating-point range, and inputs that define no rotation."""

import itertools

import pytest
import roma
import torch

from geodl.groups import axis_angle_to_matrix, euler_to_matrix, quaternion_to_matrix, sixd_to_matrix

F32, F64 = torch.float32, torch.float64


def _is_rotation(R, tol):
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    return bool(torch.isfinite(R).all()) and torch.allclose(R.mT @ R, eye, atol=tol) and \
        torch.allclose(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype), atol=tol)


# ------------------------------------------------------------------ quaternions


@pytest.mark.parametrize("dtype,scales", [(F32, (1e-30, 1e30, 1e-38, 1e38)), (F64, (1e-300, 1e300, 1e-200, 1e200))])
def test_quaternion_any_norm(dtype, scales):
    u = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    u = u / u.norm(dim=-1, keepdim=True)
    expected = roma.unitquat_to_rotmat(u)
    for s in scales:
        R = quaternion_to_matrix((s * u).to(dtype))
        assert _is_rotation(R, 10 * torch.finfo(dtype).eps), s
        assert torch.allclose(R.double(), expected, atol=10 * torch.finfo(dtype).eps), s


def test_quaternion_ordinary_bit_for_bit_unchanged():
    for dtype in (F32, F64):
        q = torch.randn(500, 4, generator=torch.Generator().manual_seed(1), dtype=F64).to(dtype) * 3.7
        assert torch.equal(quaternion_to_matrix(q), roma.unitquat_to_rotmat(q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)))


def test_zero_quaternion_raises_naming_q():
    with pytest.raises(ValueError, match=r"^q: zero quaternion"):
        quaternion_to_matrix(torch.zeros(4))
    q = torch.randn(3, 2, 4)
    q[1, 0] = 0.0
    with pytest.raises(ValueError, match=r"q: zero quaternion at batch positions \[\[1, 0\]\]"):
        quaternion_to_matrix(q)
    quaternion_to_matrix(torch.tensor([0.0, 0.0, 0.0, 1e-45]))  # the smallest subnormal is a rotation


# ------------------------------------------------------------------ 6D


@pytest.mark.parametrize("dtype,scales", [(F32, (1e-30, 1e30, 1e-38, 1e38)), (F64, (1e-300, 1e300))])
def test_sixd_any_norm(dtype, scales):
    d6 = torch.randn(6, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    expected = roma.special_gramschmidt(d6.unflatten(-1, (2, 3)).transpose(-1, -2))
    for s1, s2 in itertools.product(scales, repeat=2):
        x = torch.cat([s1 * d6[:, :3], s2 * d6[:, 3:]], -1).to(dtype)
        R = sixd_to_matrix(x)
        assert _is_rotation(R, 20 * torch.finfo(dtype).eps), (s1, s2)
        assert torch.allclose(R.double(), expected, atol=50 * torch.finfo(dtype).eps), (s1, s2)


def test_sixd_ordinary_bit_for_bit_unchanged():
    for dtype in (F32, F64):
        d6 = torch.randn(500, 6, generator=torch.Generator().manual_seed(3), dtype=F64).to(dtype) * 5.3
        assert torch.equal(sixd_to_matrix(d6), roma.special_gramschmidt(d6.unflatten(-1, (2, 3)).transpose(-1, -2)))


@pytest.mark.parametrize("d6,what", [
    ([1.0, 0.0, 0.0, 2.0, 0.0, 0.0], "collinear"),
    ([1.0, 1.0, 1.0, -3.0, -3.0, -3.0], "collinear"),
    ([0.3, -0.7, 2.0, 0.6, -1.4, 4.0], "collinear"),
    ([1.0, 2.0, 3.0, 0.0, 0.0, 0.0], "zero or collinear"),
    ([0.0, 0.0, 0.0, 1.0, 2.0, 3.0], "zero first column"),
])
def test_sixd_undefined_raises_naming_d6(d6, what):
    for dtype in (F32, F64):
        with pytest.raises(ValueError, match=rf"^d6: .*{what}"):
            sixd_to_matrix(torch.tensor(d6, dtype=dtype))


def test_sixd_nearly_collinear_is_a_rotation():
    for angle in (1e-3, 1e-6, 1e-10):
        d6 = torch.tensor([1.0, 0.0, 0.0, 1.0, angle, 0.0], dtype=F64)
        assert torch.allclose(sixd_to_matrix(d6), torch.eye(3, dtype=F64), atol=1e-15)
    batch = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 5.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"d6: .* at batch positions \[\[1\]\]"):
        sixd_to_matrix(batch)


# ------------------------------------------------------------------ huge angles


def _direct(v64):
    """Rotation by exactly the angle |v| (float64 sin/cos of the exactly halved angle)."""
    n = v64.abs().amax(-1, keepdim=True)
    n = n * (v64 / n).norm(dim=-1, keepdim=True)
    q = torch.cat([torch.sin(n / 2) * v64 / n, torch.cos(n / 2)], -1)
    return roma.unitquat_to_rotmat(q)


@pytest.mark.parametrize("dtype,angles", [(F32, (1e20, 1e30, 3e38)), (F64, (1e160, 1e200, 1e300, 1.7e308))])
def test_axis_angle_huge_angles(dtype, angles):
    axes = torch.randn(5, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    # on a coordinate axis the angle is exact; elsewhere rounding the norm moves it by ~eps * angle
    exact = torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64)])
    for a in angles:
        R = axis_angle_to_matrix((a * axes).to(dtype))
        assert _is_rotation(R, 20 * torch.finfo(dtype).eps), a
        v = (a * exact).to(dtype)
        R = axis_angle_to_matrix(v)
        ref = roma.rotvec_to_rotmat(v.double()) if dtype == F32 else _direct(v)  # roma is right in float64 there
        assert torch.allclose(R.double(), ref, atol=1e3 * torch.finfo(dtype).eps), a


def test_axis_angle_ordinary_bit_for_bit_unchanged():
    for dtype in (F32, F64):
        v = torch.randn(500, 3, generator=torch.Generator().manual_seed(5), dtype=F64).to(dtype) * 4.0
        assert torch.equal(axis_angle_to_matrix(v), roma.unitquat_to_rotmat(roma.rotvec_to_unitquat(v)))


@pytest.mark.parametrize("convention", ["ZYZ", "xyz", "XZX", "zxy"])
def test_euler_huge_angles(convention):
    gen = torch.Generator().manual_seed(6)
    for a in (1e20, 1e30, 3e38):
        angles = (a * torch.rand(4, 3, generator=gen, dtype=F64)).float()
        R = euler_to_matrix(angles, convention)
        assert _is_rotation(R, 1e-5), a
        ref = roma.euler_to_rotmat(convention, angles.double())  # float64 roma: right up to 1e154
        assert torch.allclose(R.double(), ref, atol=1e-4), a
    angles = torch.tensor([[1e300, -1e250, 1.7e308]], dtype=F64)
    R = euler_to_matrix(angles, convention)
    assert _is_rotation(R, 1e-13)
    q = [roma.rotvec_to_unitquat(torch.zeros(1, 3, dtype=F64)) for _ in range(3)]
    axes = convention.upper() if convention.isupper() else convention.upper()[::-1]
    parts = list(angles.unbind(-1)) if convention.isupper() else list(angles.unbind(-1))[::-1]
    for i, (ax, ang) in enumerate(zip(axes, parts)):
        v = torch.zeros(1, 3, dtype=F64)
        v[:, "XYZ".index(ax)] = ang
        q[i] = roma.rotmat_to_unitquat(_direct(v))
    assert torch.allclose(R, roma.unitquat_to_rotmat(roma.quat_composition(q, normalize=True)), atol=1e-13)


def test_euler_ordinary_bit_for_bit_unchanged():
    gen = torch.Generator().manual_seed(7)
    for dtype in (F32, F64):
        angles = (10 * torch.rand(300, 3, generator=gen, dtype=F64) - 5).to(dtype)
        for convention in ("ZYZ", "XYZ", "zyx", "xzx"):
            assert torch.equal(euler_to_matrix(angles, convention), roma.euler_to_rotmat(convention, angles))


def test_compile_fullgraph_matches_eager():
    x4, x6, x3 = torch.randn(5, 4), torch.randn(5, 6), torch.randn(5, 3)
    for fn, x in [(quaternion_to_matrix, x4), (sixd_to_matrix, x6), (axis_angle_to_matrix, x3), (euler_to_matrix, x3)]:
        torch._dynamo.reset()
        assert torch.allclose(torch.compile(fn, fullgraph=True, backend="aot_eager")(x), fn(x), atol=1e-6)


def test_random_samplers_refuse_shapes_that_do_not_fit_in_memory():
    """Fuzz finding F05: RuntimeError "Storage size calculation overflowed" before."""
    from geodl.groups import random_quaternion, random_rotation, random_rotation_2d

    for fn in (random_rotation, random_rotation_2d, random_quaternion):
        with pytest.raises(ValueError, match=r"^shape: \(1000000000000, 1000000000000\) asks for .* GiB of memory"):
            fn(10**12, 10**12)
    assert random_rotation(0, 3).shape == (0, 3, 3, 3)


def test_geodesic_distance_batch_shapes_must_broadcast():
    """Fuzz finding F30: a RuntimeError from matmul before."""
    from geodl.groups import geodesic_distance, random_rotation

    with pytest.raises(ValueError, match=r"^R1, R2: batch shapes \(4,\) and \(5,\) do not broadcast"):
        geodesic_distance(random_rotation(4), random_rotation(5))
    assert geodesic_distance(random_rotation(4, 1), random_rotation(5)).shape == (4, 5)
