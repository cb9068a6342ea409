"""SO3Distribution, the chunked Wigner-D of a grid and the pose metrics (issue 14, deliverable 3)."""

import math

import pytest
import torch

from geodl.groups import (finite_group, geodesic_distance, nearest_rotation, random_rotation, so3_fourier_width,
                          so3_healpix_grid, wigner_D, wigner_D_blocks, wigner_D_chunks)
from geodl.nn.pose import SO3Distribution, accuracy_at, average_log_likelihood, median_error, rotation_errors
from geodl.nn.pose._distribution import cell_radius

F64 = torch.float64
LOG_PI2 = math.log(math.pi**2)


def _rot(n, seed, dtype=F64):
    return random_rotation(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _peaked(R, lmax, scale=1.0):
    """Coefficients of f(R') = scale Σ_l (2l+1) χ_l(Rᵀ R'), peaked at R: C^l = scale (2l+1) D^l(R)."""
    return torch.cat([(scale * (2 * l + 1) * wigner_D(l, R)).flatten(-2) for l in range(lmax + 1)], -1)


def _random_coeffs(B, lmax, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, so3_fourier_width(lmax), generator=g, dtype=F64) * scale


# ----------------------------------------------------------------------------- chunked Wigner-D
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_wigner_chunks_match_blocks(chunk):
    R = _rot(50, 0)
    ref = torch.cat([b.flatten(-2) for b in wigner_D_blocks(5, R)], -1)
    starts, parts = zip(*wigner_D_chunks(5, R, chunk))
    assert list(starts) == list(range(0, 50, chunk))
    out = torch.cat(parts)
    assert out.shape == (50, so3_fourier_width(5)) == (50, 286)
    torch.testing.assert_close(out, ref, atol=1e-14, rtol=0)


def test_wigner_chunks_follow_dtype_and_batch_shape():
    R = _rot(12, 1, torch.float32).reshape(3, 4, 3, 3)
    (_, D), = list(wigner_D_chunks(2, R, 100))
    assert D.dtype == torch.float32 and D.shape == (12, 35)
    assert list(wigner_D_chunks(2, R[:0], 4)) == []


def test_wigner_chunks_bad_input():
    R = _rot(4, 0)
    for kw, name in [(dict(lmax=-1), "lmax"), (dict(chunk_size=0), "chunk_size"), (dict(chunk_size=-3), "chunk_size"),
                     (dict(R=R[..., :2]), "R"), (dict(R=torch.full((2, 3, 3), float("nan"), dtype=F64)), "R")]:
        args = dict(lmax=2, R=R, chunk_size=2) | kw
        with pytest.raises(ValueError, match=f"^{name}"):
            wigner_D_chunks(**args)  # raised on the call, before any chunk
    many = R[:1].expand(10**7, 3, 3)  # a view: nothing allocated
    with pytest.raises(ValueError, match="^chunk_size"):
        wigner_D_chunks(20, many, 10**7)  # one chunk far beyond the memory: refused before allocating
    with pytest.raises(ValueError, match="^lmax"):
        wigner_D_chunks(10**5, R, 1)
    assert so3_fourier_width(6) == 455


# ----------------------------------------------------------------------------- convention and normalisation
def test_logits_convention_against_direct_evaluation():
    """f(R) = Σ_l Σ_mn C^l[m, n] D^l[m, n](R) (D, not its transpose; blocks flattened row-major)."""
    lmax = 3
    c = _random_coeffs(2, lmax, 0)
    R = _rot(2 * 5, 3).reshape(2, 5, 3, 3)
    direct = torch.zeros(2, 5, dtype=F64)
    off = 0
    for l in range(lmax + 1):
        n = 2 * l + 1
        C = c[:, off:off + n * n].reshape(2, n, n)
        direct += (C[:, None] * wigner_D(l, R)).sum((-1, -2))
        off += n * n
    dist = SO3Distribution(c, lmax, rec=0)
    torch.testing.assert_close(dist.logits(R), direct, atol=1e-12, rtol=0)
    # the transposed convention differs (so the test can tell them apart)
    transposed = sum((c[:, so3_fourier_width(l - 1) if l else 0:so3_fourier_width(l)].reshape(2, 2 * l + 1, 2 * l + 1)[:, None]
                      * wigner_D(l, R).transpose(-1, -2)).sum((-1, -2)) for l in range(lmax + 1))
    assert (transposed - direct).abs().max() > 1e-3
    # the peaked coefficients put the maximum of f at their rotation
    Rp = _rot(1, 9)
    d = SO3Distribution(_peaked(Rp, 4), 4, rec=0)
    assert float(d.logits(Rp)[0]) == pytest.approx(sum((2 * l + 1) ** 2 for l in range(5)), rel=1e-12)


@pytest.mark.parametrize("rec", [0, 1, 2])
def test_probs_sum_to_one(rec):
    dist = SO3Distribution(_random_coeffs(3, 2, rec), 2, rec=rec, chunk_size=500)
    p = dist.probs()
    assert p.shape == (3, 72 * 8**rec)
    torch.testing.assert_close(p.sum(-1), torch.ones(3, dtype=F64), atol=1e-12, rtol=0)
    assert bool((p > 0).all())


@pytest.mark.parametrize("rec", [0, 1, 2])
def test_uniform_log_likelihood(rec):
    dist = SO3Distribution(torch.zeros(2, 35, dtype=F64), 2, rec=rec)
    lp = dist.log_prob(_rot(8, rec).reshape(2, 4, 3, 3))
    torch.testing.assert_close(lp, torch.full((2, 4), -LOG_PI2, dtype=F64), atol=1e-12, rtol=0)
    assert -LOG_PI2 == pytest.approx(-2.2895, abs=1e-4)


def test_density_integrates_to_one_on_a_finer_grid():
    """The grid normalisation makes exp(log_prob) integrate to ~1 (quadrature on the next level)."""
    dist = SO3Distribution(_random_coeffs(1, 2, 5, scale=0.5), 2, rec=1)
    G = so3_healpix_grid(2, dtype=F64)
    integral = dist.log_prob(G[None]).exp().mean() * math.pi**2
    assert float(integral) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("chunk", [1000, 4096, 333, 4608, 10**6])
def test_chunked_equals_unchunked(chunk):
    """Online log-sum-exp over chunks (333 does not divide 4608) == one logsumexp over the whole grid."""
    lmax = 3
    c = _random_coeffs(4, lmax, 1, scale=2.0)  # peaked enough for the running maximum to matter
    R = _rot(8, 2).reshape(4, 2, 3, 3)
    dist = SO3Distribution(c, lmax, rec=2, chunk_size=chunk)
    G = so3_healpix_grid(2, dtype=F64)
    D = torch.cat([b.flatten(-2) for b in wigner_D_blocks(lmax, G)], -1)
    logits = c @ D.T
    ref = dist.logits(R) - torch.logsumexp(logits, -1)[:, None] + math.log(G.shape[0]) - LOG_PI2
    torch.testing.assert_close(dist.log_prob(R), ref, atol=1e-11, rtol=0)
    torch.testing.assert_close(dist.grid_logits(), logits, atol=1e-11, rtol=0)


def test_chunked_large_grid_path_matches(monkeypatch):
    """The path that streams Wigner-D chunks (grids too large to cache) gives the cached path's values."""
    import geodl.nn.pose._distribution as mod

    c = _random_coeffs(2, 2, 4, scale=1.5)
    R = _rot(2, 5)
    cached = SO3Distribution(c, 2, rec=1).log_prob(R)
    monkeypatch.setattr(mod, "_CACHE_BYTES", 0)
    streamed = SO3Distribution(c, 2, rec=1, chunk_size=100).log_prob(R)
    torch.testing.assert_close(streamed, cached, atol=1e-12, rtol=0)


def test_gradient_of_log_prob_matches_autograd_of_the_unchunked_formula():
    c = _random_coeffs(2, 2, 7).requires_grad_(True)
    R = _rot(2, 8)
    SO3Distribution(c, 2, rec=1, chunk_size=50).log_prob(R).sum().backward()
    g = c.grad.clone()
    c.grad = None
    d = SO3Distribution(c, 2, rec=1)
    (d.logits(R) - torch.logsumexp(d.grid_logits(), -1)).sum().backward()
    torch.testing.assert_close(g, c.grad, atol=1e-12, rtol=0)


def test_float32_log_prob():
    c = _random_coeffs(2, 3, 2).float()
    lp = SO3Distribution(c, 3, rec=1).log_prob(_rot(2, 3).float())
    ref = SO3Distribution(c.double(), 3, rec=1).log_prob(_rot(2, 3))
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp.double(), ref, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- mode, samples, cross-entropy
def test_mode_lands_within_a_fraction_of_a_cell():
    Rp = _rot(3, 11)
    dist = SO3Distribution(_peaked(Rp, 4), 4, rec=1)
    cell = cell_radius(dist.num_grid)
    grid_only = geodesic_distance(dist.mode(steps=0), Rp)
    refined = geodesic_distance(dist.mode(), Rp)
    assert bool((grid_only < 1.5 * cell).all())
    assert bool((refined < 0.02 * cell).all()), (refined, cell)
    M = dist.mode()
    torch.testing.assert_close(M.transpose(-1, -2) @ M, torch.eye(3, dtype=F64).expand(3, 3, 3), atol=1e-12, rtol=0)


def test_sample_statistics():
    lmax, rec, n = 2, 0, 20000
    dist = SO3Distribution(_random_coeffs(2, lmax, 3, scale=0.6), lmax, rec=rec)
    p = dist.probs()
    S = dist.sample(n, generator=torch.Generator().manual_seed(0))
    assert S.shape == (2, n, 3, 3)
    idx = nearest_rotation(S, dist.grid)
    freq = torch.stack([torch.bincount(i, minlength=dist.num_grid) for i in idx]).to(F64) / n
    # every sample is a grid rotation, the frequencies match the probabilities (5 sigma)
    assert float(geodesic_distance(S, dist.grid[idx]).max()) < 1e-6
    sigma = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() <= 5 * sigma + 1e-4).all())
    again = dist.sample(n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(S, again)
    # jittered draws leave the grid but stay within a cell radius of their grid rotation
    J = dist.sample(2000, generator=torch.Generator().manual_seed(1), jitter=True)
    J0 = dist.sample(2000, generator=torch.Generator().manual_seed(1))
    d = geodesic_distance(J, J0)
    r = cell_radius(dist.num_grid)
    assert float(d.max()) <= r + 1e-9 and float(d.min()) > 0
    # uniform in the ball of radius r: P(d < r/2) = 1/8
    assert float((d < r / 2).double().mean()) == pytest.approx(1 / 8, abs=0.03)


def test_cross_entropy_to_the_nearest_grid_rotation():
    c = _random_coeffs(3, 2, 4, scale=1.0)
    dist = SO3Distribution(c, 2, rec=1)
    R = _rot(3, 6)
    idx = nearest_rotation(R, dist.grid)
    logp = torch.log_softmax(dist.grid_logits(), -1)
    ref = -logp[torch.arange(3), idx]
    torch.testing.assert_close(dist.cross_entropy(R, reduction="none"), ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(dist.cross_entropy(R), ref.mean(), atol=1e-12, rtol=0)
    uniform = SO3Distribution(torch.zeros(3, 35, dtype=F64), 2, rec=1)
    torch.testing.assert_close(uniform.cross_entropy(R, "sum"), torch.tensor(3 * math.log(576), dtype=F64))


# ----------------------------------------------------------------------------- metrics
def test_errors_take_the_minimum_over_the_symmetry_set():
    T = finite_group("tetrahedral")
    R_true = _rot(5, 20)
    g = torch.tensor([3, 7, 0, 11, 5])
    R_pred = R_true @ T[g]  # an equivalent pose: no error under the symmetry
    plain = rotation_errors(R_pred, R_true)
    assert bool((plain[g != 0] > 60).all())
    torch.testing.assert_close(rotation_errors(R_pred, R_true, T), torch.zeros(5, dtype=F64), atol=1e-5, rtol=0)
    # per-sample symmetry sets (B, S, 3, 3), and sets given directly (B, K, 3, 3)
    torch.testing.assert_close(rotation_errors(R_pred, R_true, T.expand(5, 12, 3, 3)), torch.zeros(5, dtype=F64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(rotation_errors(R_pred, R_true[:, None] @ T), torch.zeros(5, dtype=F64), atol=1e-5, rtol=0)
    # a small extra rotation: the error is its angle, brute force over the set
    from geodl.groups import axis_angle_to_matrix

    small = axis_angle_to_matrix(torch.tensor([0.0, 0.1, 0.0], dtype=F64))
    e = rotation_errors(R_pred @ small, R_true, T)
    brute = torch.stack([geodesic_distance(R_pred @ small, R_true @ T[k]) for k in range(12)]).amin(0)
    torch.testing.assert_close(e, torch.rad2deg(brute), atol=1e-9, rtol=0)
    torch.testing.assert_close(e, torch.full((5,), math.degrees(0.1), dtype=F64), atol=1e-6, rtol=0)


def test_median_and_accuracy():
    e = torch.tensor([1.0, 14.0, 16.0, 29.0, 31.0, 90.0], dtype=F64)
    assert float(median_error(e)) == 22.5
    assert float(median_error(e[:5])) == 16.0
    assert accuracy_at(e, (15, 30)).tolist() == [2 / 6, 4 / 6]
    assert float(accuracy_at(e, 15.0)) == pytest.approx(1 / 3)


def test_ipdf_average_on_a_hand_made_case():
    """lmax 1, C^0 = 0, C^1 = a I: f(R) = a tr R. Symmetry set {I, Rz(π)}: f = 3a and -a."""
    a = 0.7
    coeffs = torch.zeros(1, 10, dtype=F64)
    coeffs[0, 1:] = a * torch.eye(3, dtype=F64).flatten()
    dist = SO3Distribution(coeffs, 1, rec=1)
    G = so3_healpix_grid(1, dtype=F64)
    logz = math.log(sum(math.exp(a * float(t)) for t in G.diagonal(dim1=-2, dim2=-1).sum(-1)))
    const = math.log(576) - math.log(math.pi**2)
    lp_id, lp_flip = 3 * a - logz + const, -a - logz + const
    flip = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=F64))
    sets = torch.stack([torch.eye(3, dtype=F64), flip])[None]
    assert float(average_log_likelihood(dist, sets)) == pytest.approx((lp_id + lp_flip) / 2, abs=1e-12)
    torch.testing.assert_close(dist.log_prob(sets)[0], torch.tensor([lp_id, lp_flip], dtype=F64), atol=1e-12, rtol=0)
    # lists of sets of different sizes: padded and masked
    d2 = SO3Distribution(coeffs.expand(2, 10), 1, rec=1)
    per = average_log_likelihood(d2, [sets[0], sets[0, :1]], reduction="none")
    torch.testing.assert_close(per, torch.tensor([(lp_id + lp_flip) / 2, lp_id], dtype=F64), atol=1e-12, rtol=0)


def test_one_random_is_seeded_and_draws_members():
    a = 0.7
    coeffs = torch.zeros(64, 10, dtype=F64)
    coeffs[:, 1:] = a * torch.eye(3, dtype=F64).flatten()
    dist = SO3Distribution(coeffs, 1, rec=0)
    flip = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=F64))
    sets = torch.stack([torch.eye(3, dtype=F64), flip])[None].expand(64, 2, 3, 3)
    lp = dist.log_prob(sets)[0]
    r1 = average_log_likelihood(dist, sets, one_random=True, generator=torch.Generator().manual_seed(3), reduction="none")
    r2 = average_log_likelihood(dist, sets, one_random=True, generator=torch.Generator().manual_seed(3), reduction="none")
    r3 = average_log_likelihood(dist, sets, one_random=True, generator=torch.Generator().manual_seed(4), reduction="none")
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)
    hit = torch.isclose(r1[:, None], lp[None]).any(1)  # every value is one member's log-likelihood
    assert bool(hit.all())
    assert 0 < int(torch.isclose(r1, lp[0]).sum()) < 64  # both members drawn


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises_naming_the_argument():
    c = torch.zeros(2, 35, dtype=F64)
    R = _rot(2, 0)
    with pytest.raises(ValueError, match=r"coeffs: width 35 \(the width of lmax=2\) does not match lmax=3"):
        SO3Distribution(c, 3)
    with pytest.raises(ValueError, match="^coeffs"):
        SO3Distribution(torch.zeros(2, 36, dtype=F64), 2)
    with pytest.raises(ValueError, match="^coeffs"):
        SO3Distribution(torch.zeros(35, dtype=F64), 2)
    nan = c.clone()
    nan[1, 3] = float("nan")
    with pytest.raises(ValueError, match="^coeffs: contains NaN"):
        SO3Distribution(nan, 2)
    with pytest.raises(ValueError, match="^rec"):
        SO3Distribution(c, 2, rec=-1)
    with pytest.raises(ValueError, match="^lmax"):
        SO3Distribution(c, -1)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="^chunk_size"):
            SO3Distribution(c, 2, chunk_size=bad)
    dist = SO3Distribution(c, 2, rec=0)
    scaled = R * 1.01
    reflected = R * torch.tensor([1.0, 1.0, -1.0], dtype=F64)  # orthonormal, det -1
    for bad in (scaled, reflected, R + 1e-3):
        with pytest.raises(ValueError, match="^R: not rotation matrices"):
            dist.log_prob(bad)
        with pytest.raises(ValueError, match="^R_true: not rotation matrices"):
            dist.cross_entropy(bad)
        with pytest.raises(ValueError, match="^R_true: not rotation matrices"):
            rotation_errors(R, bad)
        with pytest.raises(ValueError, match="^R_sets: not rotation matrices"):
            average_log_likelihood(dist, bad)
        with pytest.raises(ValueError, match="^symmetries: not rotation matrices"):
            rotation_errors(R, R, symmetries=bad)
    with pytest.raises(ValueError, match="^R_pred: not rotation matrices"):
        rotation_errors(reflected, R)
    with pytest.raises(ValueError, match="^R"):
        dist.log_prob(_rot(3, 0))  # batch 3 for a batch of 2 distributions
    with pytest.raises(ValueError, match="^R_true"):
        dist.cross_entropy(_rot(3, 0))
    with pytest.raises(ValueError, match="^R_true"):
        rotation_errors(R, _rot(3, 0))
    with pytest.raises(ValueError, match="^R_sets"):
        average_log_likelihood(dist, [R[0][None]])
    with pytest.raises(ValueError, match="^errors"):
        median_error(torch.zeros(0))
    with pytest.raises(ValueError, match="^errors"):
        accuracy_at(torch.tensor([-1.0]), 15)
    with pytest.raises(ValueError, match="^degrees"):
        accuracy_at(torch.tensor([1.0]), -15)
    with pytest.raises(ValueError, match="^n"):
        dist.sample(0)
    with pytest.raises(ValueError, match="^steps"):
        dist.mode(steps=-1)
    with pytest.raises(ValueError, match="^reduction"):
        dist.cross_entropy(R, reduction="max")
    torch.testing.assert_close(dist.log_prob(R.float().double()), torch.full((2,), -LOG_PI2, dtype=F64))



def test_spread_is_small_on_the_set_and_haar_for_uniform():
    import math

    from geodl.groups import finite_group
    from geodl.nn.pose import SO3Distribution, spread

    uniform = SO3Distribution(torch.zeros(1, 35, dtype=torch.float64), lmax=2, rec=2)
    haar = math.degrees(math.pi / 2 + 2 / math.pi)  # E[angle] of a Haar rotation: 126.5 degrees
    assert abs(float(spread(uniform, torch.eye(3, dtype=torch.float64)[None])) - haar) < 1.0
    G = finite_group("tetrahedral", dtype=torch.float64)
    near_set = float(spread(uniform, G[None]))  # the nearest of 12 ground truths is much closer
    assert near_set < 0.6 * haar
    # a distribution peaked at the identity: small spread to {I}, and to a set holding I
    from geodl.groups import so3_fourier_width, wigner_D_blocks

    lmax = 4
    coeffs = 3.0 * torch.cat([D.flatten() for D in wigner_D_blocks(lmax, torch.eye(3, dtype=torch.float64))])[None]
    peaked = SO3Distribution(coeffs, lmax, rec=2)
    assert coeffs.shape[1] == so3_fourier_width(lmax)
    s1 = float(spread(peaked, torch.eye(3, dtype=torch.float64)[None]))
    assert s1 < 40 and float(spread(peaked, G[None])) <= s1 + 1e-9
    with pytest.raises(ValueError, match="R_sets"):
        spread(peaked, torch.eye(3, dtype=torch.float64)[None] * 2)
    with pytest.raises(ValueError, match="chunk_size"):
        spread(peaked, G[None], chunk_size=0)
