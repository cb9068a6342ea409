"""Real Wigner-D matrices: homomorphism, orthogonality, agreement with e3nn, action on SH."""

import pytest
import torch

from geodl.groups import GroupElement, act, random_rotation, wigner_D, wigner_D_blocks

from ._helpers import F64, gen

LMAX = 10


@pytest.fixture
def e3nn_float64():
    """e3nn builds its matrices in torch's default dtype: run it in float64, restore afterwards."""
    o3 = pytest.importorskip("e3nn.o3")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield o3
    finally:
        torch.set_default_dtype(old)


def test_homomorphism_and_orthogonality():
    R1 = random_rotation(64, generator=gen(0), dtype=F64)
    R2 = random_rotation(64, generator=gen(1), dtype=F64)
    B1, B2, B12 = wigner_D_blocks(LMAX, R1), wigner_D_blocks(LMAX, R2), wigner_D_blocks(LMAX, R1 @ R2)
    for l in range(LMAX + 1):
        eye = torch.eye(2 * l + 1, dtype=F64)
        assert B1[l].shape == (64, 2 * l + 1, 2 * l + 1)
        assert float((B12[l] - B1[l] @ B2[l]).abs().max()) <= 1e-10, l
        assert float((B1[l] @ B1[l].transpose(-1, -2) - eye).abs().max()) <= 1e-10, l
        assert float((wigner_D(l, R1.transpose(-1, -2)) - B1[l].transpose(-1, -2)).abs().max()) <= 1e-10, l
    assert torch.equal(wigner_D(1, R1), R1)
    assert torch.equal(wigner_D(0, R1), torch.ones(64, 1, 1, dtype=F64))


def test_agrees_with_e3nn(e3nn_float64):
    o3 = e3nn_float64
    R = random_rotation(32, generator=gen(2), dtype=F64)
    alpha, beta, gamma = o3.matrix_to_angles(R)
    for l in range(LMAX + 1):
        ref = o3.wigner_D(l, alpha, beta, gamma)
        assert float((wigner_D(l, R) - ref).abs().max()) <= 1e-10, l


def test_sh_action_matches_e3nn_harmonics_of_rotated_points(e3nn_float64):
    o3 = e3nn_float64
    x = torch.randn(200, 3, generator=gen(3), dtype=F64)
    ls = list(range(LMAX + 1))
    for seed in range(4):
        R = random_rotation(generator=gen(10 + seed), dtype=F64)
        for det in (1.0, -1.0):  # proper and improper (parity (-1)^l)
            M = det * R
            g = GroupElement(rotation=M, label="haar")
            Y = o3.spherical_harmonics(ls, x, normalize=True)
            Y_rot = o3.spherical_harmonics(ls, x @ M.T, normalize=True)
            assert float((act(f"sh:{LMAX}:e3nn", g, Y) - Y_rot).abs().max()) <= 1e-10


def test_batched_over_any_leading_shape_equals_single_calls():
    R = random_rotation(2, 3, generator=gen(4), dtype=F64)
    D = wigner_D(4, R)
    assert D.shape == (2, 3, 9, 9)
    single = torch.stack([torch.stack([wigner_D(4, R[i, j]) for j in range(3)]) for i in range(2)])
    assert torch.allclose(D, single, atol=1e-14, rtol=0)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_input(device, dtype):
    R = random_rotation(5, generator=gen(5), dtype=F64)
    D64 = wigner_D(6, R)
    D = wigner_D(6, R.to(device=device, dtype=dtype))
    assert D.dtype == dtype and D.device.type == device
    assert torch.allclose(D.cpu().double(), D64, atol=1e-5 if dtype == torch.float32 else 1e-13)


def test_gradient_flows_to_rotation():
    R = random_rotation(3, generator=gen(6), dtype=F64).requires_grad_(True)
    wigner_D(3, R).sum().backward()
    assert R.grad is not None and torch.isfinite(R.grad).all()


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: wigner_D(-1, torch.eye(3)), ValueError, "l"),
        (lambda: wigner_D(2.0, torch.eye(3)), TypeError, "l"),
        (lambda: wigner_D(2, torch.eye(4)), ValueError, "R"),
        (lambda: wigner_D(2, torch.full((3, 3), float("nan"))), ValueError, "R"),
        (lambda: wigner_D(2, torch.eye(3, dtype=torch.int64)), TypeError, "R"),
        (lambda: wigner_D_blocks(-2, torch.eye(3)), ValueError, "lmax"),
    ],
)
def test_bad_input_names_the_argument(call, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        call()
