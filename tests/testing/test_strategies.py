"""Hypothesis strategies: the spectra they promise, and property tests of the examples with them."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geodl.testing import assert_equivariant, assert_invariant
from geodl.testing import examples as ex
from geodl.testing.strategies import point_clouds, rotations, small_graphs, spectra


def _spectrum(x):
    a = x - x.mean(0)
    return torch.linalg.eigvalsh(a.T @ a / x.shape[0]).flip(0)  # descending


@settings(max_examples=25)
@given(st.data())
def test_point_clouds_have_the_drawn_spectrum(data):
    dim = data.draw(st.sampled_from([2, 3]))
    lam = data.draw(spectra(dim))
    x = data.draw(point_clouds(n=(dim + 1, 20), dim=dim, spectrum=st.just(lam)))
    assert x.shape[1] == dim and x.dtype == torch.float64 and dim + 1 <= x.shape[0] <= 20
    assert torch.allclose(_spectrum(x), torch.tensor(lam, dtype=torch.float64), rtol=1e-9, atol=0)


@settings(max_examples=25)
@given(point_clouds(n=12, spectrum="near_degenerate"))
def test_near_degenerate_clouds_have_a_tiny_relative_gap(x):
    lam = _spectrum(x)
    gaps = (lam[:-1] - lam[1:]) / lam[1:]
    assert float(gaps.min()) <= 1.01e-3 and float(gaps.max()) > 0


@settings(max_examples=10)
@given(point_clouds(n=10, spectrum="degenerate", translate=False))
def test_degenerate_clouds_tie_and_are_centred(x):
    lam = _spectrum(x)
    assert float(((lam[:-1] - lam[1:]) / lam[0]).abs().min()) < 1e-12
    assert float(x.mean(0).abs().max()) < 1e-12


@settings(max_examples=15)
@given(point_clouds(n=(4, 16), spectrum="near_degenerate"))
def test_invariant_example_passes_on_near_degenerate_clouds(x):
    assert_invariant(ex.invariant_model(), (x,), ("node:points",), "E3+perm", n_samples=2, generator=0)


@settings(max_examples=15)
@given(point_clouds(n=(4, 16), spectrum="near_degenerate"), rotations(proper=False))
def test_chiral_example_flips_sign_exactly_under_improper_rotations(x, R):
    model = ex.chiral_model()
    det = float(torch.linalg.det(R))
    assert torch.allclose(model(x @ R.T), det * model(x), rtol=1e-8, atol=1e-12)


@settings(max_examples=30)
@given(rotations(proper=False))
def test_rotations_are_orthogonal(R):
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype), atol=1e-12)
    assert abs(abs(float(torch.linalg.det(R))) - 1) < 1e-12


@settings(max_examples=10)
@given(rotations(dim=2, dtype=torch.float32))
def test_2d_rotations_are_proper(R):
    assert R.shape == (2, 2) and R.dtype == torch.float32
    assert abs(float(torch.linalg.det(R)) - 1) < 1e-6


@settings(max_examples=40)
@given(small_graphs(n_nodes=(1, 6)))
def test_small_graphs_are_valid_and_symmetric(graph):
    edge_index, n = graph
    assert edge_index.dtype == torch.long and edge_index.shape[0] == 2
    assert 1 <= n <= 6 and bool((edge_index >= 0).all() and (edge_index < n).all())
    assert bool((edge_index[0] != edge_index[1]).all())  # no self-loops by default
    edges = set(map(tuple, edge_index.T.tolist()))
    assert edges == {(j, i) for i, j in edges} and len(edges) == edge_index.shape[1]


@settings(max_examples=15)
@given(small_graphs(n_nodes=(2, 8)), st.integers(0, 2**31 - 1))
def test_message_passing_is_permutation_equivariant_on_random_graphs(graph, seed):
    edge_index, n = graph
    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))

    def aggregate(pos, ei):
        d = (pos[ei[0]] - pos[ei[1]]).norm(dim=-1)
        return torch.zeros(n, dtype=pos.dtype).index_add_(0, ei[1], d)

    assert_equivariant(aggregate, (x, edge_index), ("node:points", "edge_index"), "node:scalar", "E3+perm",
                       n_samples=2, generator=seed)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: point_clouds(n=2, dim=3), ValueError, "n"),
    (lambda: point_clouds(dim=4), ValueError, "dim"),
    (lambda: point_clouds(spectrum="flat"), ValueError, "kind"),
    (lambda: point_clouds(spectrum=(1.0, -1.0, 2.0)), ValueError, "spectrum"),
    (lambda: point_clouds(spectrum=(1.0, 2.0)), ValueError, "spectrum"),
    (lambda: point_clouds(n="many"), TypeError, "n"),
    (lambda: spectra(gap=(1e-3, 1e-6)), ValueError, "gap"),
    (lambda: rotations(dim=1), ValueError, "dim"),
    (lambda: small_graphs(max_edges=-1), ValueError, "max_edges"),
], ids=["n-too-small", "dim-4", "unknown-spectrum", "negative-eigenvalue", "short-spectrum", "n-str",
        "gap-reversed", "rotation-dim-1", "max-edges-negative"])
def test_bad_arguments_name_themselves(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
