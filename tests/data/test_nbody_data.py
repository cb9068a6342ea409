"""Charged n-body generator: determinism, physics against a naive integrator, caching, bad input."""

from __future__ import annotations

import pytest
import torch

from geodl.data import NBodyDataset, generate_nbody
from geodl.data import _nbody

SMALL = dict(frame_in=1, frame_out=3, sample_freq=10)


def _naive_leapfrog(x, v, q, steps, dt=0.001, k=1.0, max_force=100.0):
    """Per-pair Python loops, continuing the leapfrog from a saved (positions, velocities) state."""
    x, v = x.clone(), v.clone()
    n = x.shape[0]
    for _ in range(steps):
        f = torch.zeros_like(x)
        for i in range(n):
            for j in range(n):
                if i != j:
                    r = x[i] - x[j]
                    f[i] += k * q[i, 0] * q[j, 0] * r / r.norm() ** 3
        v = v + dt * f.clamp(-max_force, max_force)
        x = x + dt * v
    return x


def test_shapes_charges_and_seed():
    a = generate_nbody(6, seed=1, **SMALL)
    assert {k: tuple(t.shape) for k, t in a.items()} == {
        "loc": (6, 5, 3), "vel": (6, 5, 3), "charges": (6, 5, 1), "target": (6, 5, 3)}
    assert all(t.dtype == torch.float64 for t in a.values())
    assert set(a["charges"].unique().tolist()) <= {-1.0, 1.0}
    b = generate_nbody(6, seed=1, **SMALL)
    c = generate_nbody(6, seed=2, **SMALL)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["loc"], c["loc"])


def test_target_matches_naive_integrator():
    d = generate_nbody(3, seed=0, **SMALL)
    steps = SMALL["sample_freq"] * (SMALL["frame_out"] - SMALL["frame_in"])
    for t in range(3):
        ref = _naive_leapfrog(d["loc"][t], d["vel"][t], d["charges"][t], steps)
        torch.testing.assert_close(d["target"][t], ref, rtol=0, atol=1e-12)


def test_centre_of_mass_moves_with_mean_velocity():
    # pairwise forces cancel (unless clipped in a close encounter), so over 1000 steps of dt = 0.001
    # the centroid moves by exactly the mean velocity times 1.0
    d = generate_nbody(64, seed=3)
    err = (d["target"].mean(1) - d["loc"].mean(1) - d["vel"].mean(1)).norm(dim=-1)
    assert (err < 1e-12).float().mean() >= 0.75  # about 15 % of systems have a clipped encounter
    # and the particles really interact: the motion is not a straight line
    straight = (d["target"] - d["loc"] - d["vel"]).norm(dim=-1)
    assert straight.mean() > 1e-2


def test_dataset_splits_cache_and_dtype(tmp_path, monkeypatch):
    kw = dict(root=tmp_path, seed=0, sizes=(5, 3, 2), **SMALL)
    train, val, test = (NBodyDataset(s, **kw) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (5, 3, 2)
    assert train[0][0].dtype == torch.float32 and train[0][2].shape == (5, 1)
    cached = list((tmp_path / "nbody").glob("*.pt"))
    assert len(cached) == 1 and not list((tmp_path / "nbody").glob("*.tmp*"))
    full = generate_nbody(10, seed=0, **SMALL)
    torch.testing.assert_close(val.loc, full["loc"][5:8].float())
    torch.testing.assert_close(test.target, full["target"][8:].float())

    def boom(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(_nbody, "generate_nbody", boom)
    again = NBodyDataset("val", **kw, max_samples=2, dtype=torch.float64)
    assert len(again) == 2 and again.loc.dtype == torch.float64
    torch.testing.assert_close(again.loc, full["loc"][5:7])


@pytest.mark.parametrize("kw, name", [
    ({"num": 0}, "num"), ({"n_particles": 1}, "n_particles"), ({"frame_out": 1, "frame_in": 1}, "frame_out"),
    ({"frame_in": -1}, "frame_in"), ({"dt": 0.0}, "dt"), ({"loc_std": float("nan")}, "loc_std"),
    ({"sample_freq": 0}, "sample_freq"), ({"interaction_strength": -1.0}, "interaction_strength"),
])
def test_generator_bad_input(kw, name):
    args = {"num": 2, **SMALL, **kw}
    with pytest.raises(ValueError, match=name):
        generate_nbody(**args)


def test_dataset_bad_input(tmp_path):
    with pytest.raises(ValueError, match="split"):
        NBodyDataset("training", root=tmp_path)
    with pytest.raises(ValueError, match="sizes"):
        NBodyDataset("train", root=tmp_path, sizes=(3, 2))
    with pytest.raises(TypeError, match="dtype"):
        NBodyDataset("train", root=tmp_path, dtype=torch.int64)
    with pytest.raises(TypeError, match="seed"):
        generate_nbody(2, seed=1.5, **SMALL)
