"""Property tests of PCA frames over clouds with controlled covariance spectra (hypothesis)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geodl.groups import random_rotation
from geodl.nn import frames
from geodl.testing.strategies import point_clouds

F64 = torch.float64


def _frame_set_error(pos, R):
    fr, fg = frames(pos, group="E3", degeneracy="flag"), frames(pos @ R.T, group="E3", degeneracy="flag")
    A, B = R @ fr.rotations[0], fg.rotations[0]
    return fr, float((A[:, None] - B[None]).abs().amax((-1, -2)).amin(1).max())


@settings(max_examples=25, deadline=None)
@given(point_clouds(n=(8, 24), spectrum="degenerate"), st.integers(0, 2**31 - 1))
def test_exact_ties_are_always_flagged(pos, seed):
    R = random_rotation(generator=torch.Generator().manual_seed(seed), dtype=F64)
    fr = frames(pos @ R.T, group="E3", degeneracy="flag")
    assert bool(fr.degenerate.all()), float(fr.gap)


@settings(max_examples=25, deadline=None)
@given(point_clouds(n=(8, 24), spectrum="any"), st.integers(0, 2**31 - 1))
def test_unflagged_frames_are_equivariant_within_eps_over_gap(pos, seed):
    """The frame-set error is bounded by a small multiple of machine epsilon / eigengap."""
    R = random_rotation(generator=torch.Generator().manual_seed(seed), dtype=F64)
    fr, err = _frame_set_error(pos, R)
    if not bool(fr.degenerate.any()):
        assert err <= 100 * torch.finfo(F64).eps / float(fr.gap)


@settings(max_examples=25, deadline=None)
@given(point_clouds(n=(8, 24), spectrum="near_degenerate"), st.integers(0, 2**31 - 1))
def test_gap_matches_the_spectrum_and_flags_near_ties(pos, seed):
    fr = frames(pos, group="E3", degeneracy="flag", gap_tol=1e-4)
    lam = fr.eigenvalues[0]
    expected = float(((lam[1:] - lam[:-1]) / lam.abs().max()).min())
    assert abs(float(fr.gap) - expected) <= 1e-12
    assert bool(fr.degenerate) == (expected < 1e-4)
