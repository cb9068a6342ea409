"""The modified-inertia dataset (geodl.data.ModifiedInertia) and inertia_tensor: layout, splits and seeds,
the formula against a loop, O(3) equivariance without noise, O(3) -> O(2) breaking with it, argument errors."""

import math

import pytest
import torch

from geodl.data import ModifiedInertia, inertia_tensor
from geodl.groups import get_group

N = 5  # point masses per sample


def _target(m, pos, noise, axis):
    """The documented target ``I + noise (I e_a) e_aᵀ`` (..., 3, 3), the inertia through inertia_tensor."""
    inertia = inertia_tensor(m, pos)
    e = torch.zeros(3, dtype=pos.dtype)
    e[axis] = 1.0
    return inertia + noise * (inertia @ e)[..., :, None] * e


def _rot(axis, theta):
    """The rotation by ``theta`` about coordinate axis ``axis`` (float64): the library's own helper."""
    from geodl.nn.soft_equivariance._groups import _axis_rotation

    return _axis_rotation(axis, theta)


def _o3(seed):
    g = get_group("O3").sample(generator=torch.Generator().manual_seed(seed))
    return g.rotation.to(torch.float64)


def _equiv_error(ds, R):
    """max |Y(R·X) − R Y(X) Rᵀ| for the dataset's masses and positions, R applied to each position."""
    m, pos = ds.masses.double(), ds.positions.double()
    y = _target(m, pos, ds.noise, ds.axis)
    y_rot = _target(m, pos @ R.T, ds.noise, ds.axis)
    return float((y_rot - R @ y @ R.T).abs().max())


# --------------------------------------------------------------------------- layout
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_and_layout(dtype):
    ds = ModifiedInertia(30, noise=0.3, dtype=dtype)
    assert ds.x.shape == (30, 4 * N) and ds.y.shape == (30, 9)
    assert ds.masses.shape == (30, N) and ds.positions.shape == (30, N, 3)
    for t in (ds.x, ds.y, ds.masses, ds.positions):
        assert t.dtype == dtype
        assert bool(torch.isfinite(t).all())
    assert torch.equal(ds.x[:, :N], ds.masses)
    assert torch.equal(ds.x[:, N:], ds.positions.reshape(30, 3 * N))
    x, y = ds.tensors()
    assert x is ds.x and y is ds.y
    assert (ModifiedInertia.rep_in, ModifiedInertia.rep_out) == ("5xscalars+5xpoints", "tensor2")


def test_target_is_the_documented_formula():
    for noise, axis in ((0.0, 2), (0.3, 2), (0.9, 0), (0.5, 1)):
        ds = ModifiedInertia(40, noise=noise, axis=axis, seed=3, dtype=torch.float64)
        ref = _target(ds.masses, ds.positions, noise, axis).reshape(40, 9)
        assert torch.allclose(ds.y, ref, rtol=0, atol=1e-12), (noise, axis)


def test_float32_is_the_float64_stream_rounded():
    a = ModifiedInertia(25, noise=0.3, seed=5, dtype=torch.float64)
    b = ModifiedInertia(25, noise=0.3, seed=5, dtype=torch.float32)
    assert torch.equal(a.x.float(), b.x) and torch.equal(a.y.float(), b.y)


def test_masses_positive():
    ds = ModifiedInertia(500, seed=1)
    assert bool((ds.masses > 0).all())
    assert bool((ds.x[:, :N] > 0).all())


# --------------------------------------------------------------------------- splits and seeds
def test_splits_differ_at_equal_size():
    sets = {s: ModifiedInertia(200, noise=0.3, split=s, seed=0) for s in ("train", "val", "test")}
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        assert not torch.allclose(sets[a].x, sets[b].x), (a, b)
        assert not torch.allclose(sets[a].y, sets[b].y), (a, b)
        # no sample repeats across the two splits
        assert not bool((sets[a].x[:, None, :] == sets[b].x[None, :, :]).all(-1).any()), (a, b)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_same_split_and_seed_reproducible(split):
    a = ModifiedInertia(200, noise=0.3, split=split, seed=7)
    b = ModifiedInertia(200, noise=0.3, split=split, seed=7)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_different_seeds_differ():
    a = ModifiedInertia(200, seed=0)
    b = ModifiedInertia(200, seed=1)
    assert not torch.allclose(a.x, b.x) and not torch.allclose(a.y, b.y)
    # noise and axis change the target only, not the inputs
    c = ModifiedInertia(200, noise=0.9, axis=0, seed=0)
    assert torch.equal(a.x, c.x) and not torch.allclose(a.y, c.y)


# --------------------------------------------------------------------------- inertia_tensor
def test_inertia_tensor_against_loop():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(4, 6, generator=g, dtype=torch.float64) + 0.1
    pos = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    out = inertia_tensor(m, pos)
    assert out.shape == (4, 3, 3) and out.dtype == torch.float64
    ref = torch.zeros(4, 3, 3, dtype=torch.float64)
    for b in range(4):
        for i in range(6):
            x = pos[b, i]
            r2 = float(x @ x)
            for j in range(3):
                for k in range(3):
                    ref[b, j, k] += m[b, i] * ((r2 if j == k else 0.0) - x[j] * x[k])
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    assert torch.allclose(out, out.transpose(-1, -2), rtol=0, atol=0)  # symmetric
    assert bool((torch.linalg.eigvalsh(out) > -1e-12).all())  # positive semi-definite for positive masses


def test_inertia_tensor_unbatched_and_batch_dims():
    m = torch.tensor([1.0, 2.0], dtype=torch.float64)
    pos = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    out = inertia_tensor(m, pos)
    assert torch.equal(out, torch.tensor([[3.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0]], dtype=torch.float64))
    big = inertia_tensor(m.expand(2, 3, 2), pos.expand(2, 3, 2, 3))
    assert big.shape == (2, 3, 3, 3) and torch.equal(big[1, 2], out)


# --------------------------------------------------------------------------- symmetry
def test_noise_zero_is_o3_equivariant():
    ds = ModifiedInertia(50, noise=0.0, seed=2, dtype=torch.float64)
    dets = set()
    for seed in range(8):
        R = _o3(seed)
        assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
        dets.add(round(float(torch.linalg.det(R))))
        assert _equiv_error(ds, R) <= 1e-10
        assert _equiv_error(ds, -R) <= 1e-10  # the other coset of SO(3) in O(3)
    # direct check on the stored target too: Y(R·X) against R Y Rᵀ with Y the dataset's own
    R = _o3(100)
    y = ds.y.reshape(50, 3, 3)
    y_rot = inertia_tensor(ds.masses, ds.positions @ R.T)
    assert float((y_rot - R @ y @ R.T).abs().max()) <= 1e-10


def test_noise_breaks_o3_to_o2_about_z():
    ds = ModifiedInertia(50, noise=0.3, axis=2, seed=4, dtype=torch.float64)
    for theta in (0.3, 1.0, 2.5, -1.7):
        assert _equiv_error(ds, _rot(2, theta)) <= 1e-10
    refl = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    assert _equiv_error(ds, refl) <= 1e-10
    assert _equiv_error(ds, refl @ _rot(2, 0.8)) <= 1e-10
    # a generic element of O(3) (and a rotation about x) is not a symmetry
    for seed in range(4):
        assert _equiv_error(ds, _o3(seed)) > 1e-3
    assert _equiv_error(ds, _rot(0, 0.7)) > 1e-3
    # the term is quadratic in e_z, so what maps e_z to -e_z is a symmetry too (the stabiliser of the line)
    assert _equiv_error(ds, torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))) <= 1e-10
    assert _equiv_error(ds, _rot(0, math.pi)) <= 1e-10


def test_axis_moves_the_broken_axis():
    ds = ModifiedInertia(50, noise=0.9, axis=0, seed=4, dtype=torch.float64)
    for theta in (0.3, 2.0):
        assert _equiv_error(ds, _rot(0, theta)) <= 1e-10
    assert _equiv_error(ds, torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))) <= 1e-10
    assert _equiv_error(ds, _rot(2, 0.7)) > 1e-3
    assert _equiv_error(ds, _o3(1)) > 1e-3
    ds1 = ModifiedInertia(50, noise=0.9, axis=1, seed=4, dtype=torch.float64)
    assert _equiv_error(ds1, _rot(1, 1.1)) <= 1e-10 and _equiv_error(ds1, _rot(0, 1.1)) > 1e-3


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, name", [
    (dict(n=0), "n"), (dict(n=-3), "n"), (dict(noise=-1), "noise"), (dict(noise=float("nan")), "noise"),
    (dict(noise=float("inf")), "noise"), (dict(axis=3), "axis"), (dict(axis=-1), "axis"),
    (dict(split="dev"), "split"), (dict(seed=-1), "seed"), (dict(dtype=torch.int64), "dtype"),
    (dict(dtype=torch.float16), "dtype"),
])
def test_bad_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        ModifiedInertia(**{"n": 10, **kwargs})


@pytest.mark.parametrize("kwargs, name", [
    (dict(n=2.5), "n"), (dict(n=True), "n"), (dict(noise="0.3"), "noise"), (dict(axis=1.0), "axis"),
    (dict(seed="0"), "seed"),
])
def test_bad_argument_types_raise(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=rf"^{name}\b"):
        ModifiedInertia(**{"n": 10, **kwargs})


def test_getitem_len_repr():
    ds = ModifiedInertia(12, noise=0.9, axis=1, split="val", seed=3)
    assert len(ds) == 12
    x, y = ds[0]
    assert x.shape == (20,) and y.shape == (9,)
    assert torch.equal(ds[-1][0], ds.x[-1]) and torch.equal(ds[11][1], ds.y[11])
    for bad in (12, -13, 100):
        with pytest.raises(IndexError):
            ds[bad]
    for bad in (1.0, "0", True, None):
        with pytest.raises(TypeError):
            ds[bad]
    assert repr(ds) == "ModifiedInertia(n=12, noise=0.9, axis=1, split='val', seed=3)"
    batches = list(torch.utils.data.DataLoader(ds, batch_size=5))
    assert [b[0].shape[0] for b in batches] == [5, 5, 2] and batches[0][1].shape == (5, 9)


@pytest.mark.parametrize("masses, positions, name, exc", [
    ("abc", torch.zeros(2, 3), "masses", TypeError),
    (torch.ones(2), None, "positions", TypeError),
    (torch.ones(2, dtype=torch.int64), torch.zeros(2, 3), "masses", TypeError),
    (torch.ones(2), torch.zeros(2, 3, dtype=torch.int64), "positions", TypeError),
    (torch.ones(2), torch.zeros(2, 2), "positions", ValueError),
    (torch.ones(3), torch.zeros(2, 3), "masses", ValueError),
    (torch.ones(1), torch.zeros(2, 3), "masses", ValueError),  # would broadcast silently
    (torch.ones(2, 1), torch.zeros(2, 3), "masses", ValueError),
])
def test_inertia_tensor_bad_arguments(masses, positions, name, exc):
    with pytest.raises(exc, match=rf"^{name}\b"):
        inertia_tensor(masses, positions)
