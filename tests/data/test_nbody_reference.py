"""``reference_streams``: the EGNN reference's numpy draws, transcribed here independently.

The reference is github.com/vgsatorras/egnn (commit bd2b4fc), ``n_body_system/dataset/``:

* ``generate_dataset.py``: ``np.random.seed(args.seed)`` once (the "nbody_small" command in its
  docstring passes ``--seed 43 --num-train 10000``; ``--num-valid``/``--num-test`` default to 2000,
  ``--length``/``--length_test`` to 5000, ``--sample-freq`` to 100), then
  ``generate_dataset(num_train)``, ``generate_dataset(num_valid)``, ``generate_dataset(num_test)``
  in that order, each calling ``sim.sample_trajectory(T=length, sample_freq=sample_freq)`` per
  trajectory, all on the one global stream.
* ``synthetic_sim.py``, ``ChargedParticlesSim.sample_trajectory``: ``np.random.choice([-1., 0., 1.],
  size=(n, 1), p=[1/2, 0, 1/2])`` (charges), ``np.random.randn(3, n) * loc_std`` (positions),
  ``np.random.randn(3, n)`` scaled to norm ``vel_norm`` per particle (velocities), ``_clamp``
  (one reflection at the box ±5), the leapfrog, and at the end two
  ``np.random.randn(T_save, 3, n) * noise_var`` (noise_var = 0, but the draws happen),
  ``T_save = T / sample_freq - 1``.

``_reference_run`` below writes that sequence out plainly with ``numpy.random.RandomState``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geodl.data import NBodyDataset, _nbody
from geodl.data._nbody import generate_nbody, load_splits, reference_initial_states

# short trajectories: frame 1 -> frame 3 with 10 steps per frame; T = 50 steps in the stream
SMALL = dict(frame_in=1, frame_out=3, sample_freq=10)
SMALL_T = 50


def _reference_run(num, *, seed=43, n=5, T=5000, sample_freq=100, simulate=False):
    """The reference's draws (and optionally its leapfrog) for the first ``num`` trajectories.

    Returns per trajectory (charges (n, 1), loc0 (3, n), vel0 (3, n), saved loc, saved vel), the
    saved frames as (T_save, 3, n) arrays (None unless ``simulate``).
    """
    rs = np.random.RandomState(seed)
    out = []
    t_save = T // sample_freq - 1
    for _ in range(num):
        charges = rs.choice(np.array([-1.0, 0.0, 1.0]), size=(n, 1), p=[0.5, 0, 0.5])
        loc = rs.randn(3, n) * (1.0 * (float(n) / 5.0) ** (1 / 3))
        vel = rs.randn(3, n)
        vel = vel * 0.5 / np.sqrt((vel ** 2).sum(axis=0)).reshape(1, -1)
        over = loc > 5.0
        loc[over] = 10.0 - loc[over]
        vel[over] = -np.abs(vel[over])
        under = loc < -5.0
        loc[under] = -10.0 - loc[under]
        vel[under] = np.abs(vel[under])
        loc0, vel0 = loc.copy(), vel.copy()
        saved_loc = saved_vel = None
        if simulate:
            saved_loc, saved_vel = np.zeros((t_save, 3, n)), np.zeros((t_save, 3, n))
            qq = charges @ charges.T

            def force(x):
                f = np.zeros((3, n))
                for i in range(n):
                    for j in range(n):
                        if i != j:
                            r = x[:, i] - x[:, j]
                            f[:, i] += qq[i, j] * r / np.sqrt((r ** 2).sum()) ** 3
                return np.clip(f, -100.0, 100.0)

            vel = vel + 0.001 * force(loc)
            counter = 0
            for step in range(1, T):
                loc = loc + 0.001 * vel
                if step % sample_freq == 0:
                    saved_loc[counter], saved_vel[counter] = loc, vel
                    counter += 1
                vel = vel + 0.001 * force(loc)
        rs.randn(t_save, 3, n)  # observation noise of the locations (times noise_var = 0)
        rs.randn(t_save, 3, n)  # and of the velocities
        out.append((charges, loc0, vel0, saved_loc, saved_vel))
    return out


def test_initial_states_equal_the_reference_bit_for_bit():
    ref = _reference_run(3)
    got = reference_initial_states(3)
    assert {k: tuple(t.shape) for k, t in got.items()} == {"charges": (3, 5, 1), "loc": (3, 5, 3), "vel": (3, 5, 3)}
    for k, (charges, loc0, vel0, _, _) in enumerate(ref):
        np.testing.assert_array_equal(got["charges"][k].numpy(), charges)
        np.testing.assert_array_equal(got["loc"][k].numpy(), loc0.T)
        np.testing.assert_array_equal(got["vel"][k].numpy(), vel0.T)
    # the stream position: trajectory 2 alone is the third of the stream
    third = reference_initial_states(1, start=2)
    assert all(torch.equal(third[k][0], got[k][2]) for k in got)


def test_validation_starts_after_the_reference_train_trajectories():
    # "nbody_small" validation trajectory 0 is trajectory 10000 of the one stream
    ref = _reference_run(10001)[-1]
    got = reference_initial_states(1, start=10000)
    np.testing.assert_array_equal(got["charges"][0].numpy(), ref[0])
    np.testing.assert_array_equal(got["loc"][0].numpy(), ref[1].T)
    np.testing.assert_array_equal(got["vel"][0].numpy(), ref[2].T)


def test_frames_match_the_reference_leapfrog():
    ref = _reference_run(3, T=SMALL_T, sample_freq=10, simulate=True)
    d = generate_nbody(3, reference_streams=True, reference_length=SMALL_T, **SMALL)
    for k, (charges, _, _, saved_loc, saved_vel) in enumerate(ref):
        np.testing.assert_array_equal(d["charges"][k].numpy(), charges)
        np.testing.assert_allclose(d["loc"][k].numpy(), saved_loc[1].T, rtol=0, atol=1e-12)
        np.testing.assert_allclose(d["vel"][k].numpy(), saved_vel[1].T, rtol=0, atol=1e-12)
        np.testing.assert_allclose(d["target"][k].numpy(), saved_loc[3].T, rtol=0, atol=1e-12)


def test_deterministic_shapes_and_seeds():
    kw = dict(reference_streams=True, reference_length=SMALL_T, **SMALL)
    a, b = generate_nbody(4, **kw), generate_nbody(4, **kw)
    assert {k: tuple(t.shape) for k, t in a.items()} == {
        "loc": (4, 5, 3), "vel": (4, 5, 3), "charges": (4, 5, 1), "target": (4, 5, 3)}
    assert all(t.dtype == torch.float64 for t in a.values())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(a["charges"].unique().tolist()) <= {-1.0, 1.0}
    # the torch seed is not used; the numpy seed and the torch stream give other data
    assert torch.equal(generate_nbody(4, seed=7, **kw)["target"], a["target"])
    assert not torch.equal(generate_nbody(4, reference_seed=44, **kw)["loc"], a["loc"])
    assert not torch.equal(generate_nbody(4, **SMALL)["loc"], a["loc"])
    # the trajectory length sets how many normals each trajectory uses: only the first is unchanged
    longer = generate_nbody(2, reference_streams=True, reference_length=60, **SMALL)
    assert torch.equal(longer["loc"][0], a["loc"][0]) and not torch.equal(longer["loc"][1], a["loc"][1])


def test_splits_come_from_one_stream_and_are_cached(tmp_path, monkeypatch):
    kw = dict(root=tmp_path, sizes=(2, 3, 1), reference_streams=True, reference_counts=(4, 3, 2),
              reference_length=SMALL_T, dtype=torch.float64, **SMALL)
    train, val, test = (NBodyDataset(s, **kw) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (2, 3, 1)
    ref = _reference_run(8, T=SMALL_T, sample_freq=10, simulate=True)
    for ds, stream in ((train, [0, 1]), (val, [4, 5, 6]), (test, [7])):
        for i, k in enumerate(stream):
            np.testing.assert_array_equal(ds.charges[i].numpy(), ref[k][0])
            np.testing.assert_allclose(ds.loc[i].numpy(), ref[k][3][1].T, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ds.target[i].numpy(), ref[k][3][3].T, rtol=0, atol=1e-12)
    (cached,) = (tmp_path / "nbody").glob("*.pt")
    assert "refnumpy43-4-3-2-T50" in cached.name

    class Regenerated(Exception):
        pass

    def regenerate(*a, **k):
        raise Regenerated

    monkeypatch.setattr(_nbody, "generate_nbody", regenerate)
    again = NBodyDataset("val", **kw)  # read from the cache
    assert torch.equal(again.target, val.target)
    # the torch-stream data of the same sizes is a different cache entry
    with pytest.raises(Regenerated):
        NBodyDataset("val", root=tmp_path, sizes=(2, 3, 1), **SMALL)


def test_bad_reference_settings():
    with pytest.raises(ValueError, match="sizes"):
        load_splits(None, sizes=(5, 1, 1), reference_streams=True, reference_counts=(4, 3, 2), **SMALL)
    with pytest.raises(ValueError, match="reference_length"):
        generate_nbody(1, reference_streams=True, reference_length=45, **SMALL)  # not a multiple of 10
    with pytest.raises(ValueError, match="reference_length"):
        generate_nbody(1, reference_streams=True, reference_length=40, **SMALL)  # frame 3 not saved
    with pytest.raises(TypeError, match="reference_streams"):
        generate_nbody(1, reference_streams=1, **SMALL)
    with pytest.raises(ValueError, match="reference_seed"):
        generate_nbody(1, reference_streams=True, reference_seed=-1, **SMALL)


def test_replay_matches_the_charges_the_fa_repository_ships():
    """The FA paper's repository (omri1348/Frame-Averaging, nbody/n_body_system/dataset/) ships the charges of
    the reference data it trained on: charges_{train,valid,test}_charged5_initvel1small.npy, (10000|2000|2000,
    5, 1) float64. Their SHA-256 (of the little-endian float64 bytes, C order) are below; the replay of the
    numpy-seed-43 stream gives exactly those arrays, for all 14,000 trajectories."""
    import hashlib

    import numpy as np

    from geodl.data import reference_initial_states

    expected = {  # split: (first trajectory in the stream, count, sha256)
        "train": (0, 10000, "59984cd512a1e8bdedd5e1776f1b6a6d3c314d0b69264924c7c1e71f0fa87810"),
        "valid": (10000, 2000, "5de6d2fae0dc19eb67125ba6f3ead38b79b35bc0dc34fa747be87b1750b00e85"),
        "test": (12000, 2000, "c1bc374d88c071be8995ba6f34c5da20f86d16ac260d8ab4148d3ea6fa4e28c9"),
    }
    for split, (start, num, digest) in expected.items():
        q = reference_initial_states(num, start=start)["charges"].numpy()
        assert q.shape == (num, 5, 1)
        got = hashlib.sha256(np.ascontiguousarray(q, dtype="<f8").tobytes()).hexdigest()
        assert got == digest, split
