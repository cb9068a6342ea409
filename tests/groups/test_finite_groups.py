"""Finite rotation groups: size, closure, subgroup relations."""

import pytest
import torch

from geodl.groups import finite_group, geodesic_distance, get_group

from ._helpers import F64, gen

SIZES = {"tetrahedral": 12, "octahedral": 24, "icosahedral": 60}


def _index_in(A, G, tol=1e-12):
    """For each matrix in A, the index of the equal matrix in G (or -1)."""
    d = (A[:, None] - G[None]).abs().flatten(2).amax(-1)  # (len(A), len(G))
    best, idx = d.min(dim=1)
    return torch.where(best <= tol, idx, -1)


@pytest.mark.parametrize("name", SIZES)
def test_closed_under_composition_with_exact_size(name):
    G = finite_group(name)
    n = SIZES[name]
    assert G.shape == (n, 3, 3) and G.dtype == F64
    assert torch.equal(G[0], torch.eye(3, dtype=F64))
    # rotations
    assert torch.allclose(G @ G.transpose(-1, -2), torch.eye(3, dtype=F64).expand(n, 3, 3), atol=1e-14)
    assert torch.allclose(torch.linalg.det(G), torch.ones(n, dtype=F64), atol=1e-14)
    # distinct: every pair is at least 0.1 rad apart
    dist = geodesic_distance(G[:, None], G[None])
    assert float((dist + 10 * torch.eye(n, dtype=F64)).min()) > 0.1
    # closed: all n² products and all inverses are elements
    products = (G[:, None] @ G[None]).reshape(-1, 3, 3)
    assert (_index_in(products, G) >= 0).all()
    assert (_index_in(G.transpose(-1, -2), G) >= 0).all()
    # each row of the multiplication table is a permutation (Latin square): exactly n distinct products
    table = _index_in(products, G).reshape(n, n)
    assert all(len(set(row.tolist())) == n for row in table)


def test_rotation_orders():
    # element orders by rotation angle: T: 1 + 3 (π) + 8 (2π/3); O adds 6 (π/2) + 6 (π); I: 15 (π), 20, 24 (2π/5, 4π/5)
    def angle_counts(name):
        a = geodesic_distance(torch.eye(3, dtype=F64), finite_group(name))
        return sorted(torch.round(a * 1e6).unique(return_counts=True)[1].tolist())

    assert angle_counts("tetrahedral") == [1, 3, 8]
    assert angle_counts("octahedral") == [1, 6, 8, 9]
    assert angle_counts("icosahedral") == [1, 12, 12, 15, 20]


@pytest.mark.parametrize("big", ["octahedral", "icosahedral"])
def test_tetrahedral_is_a_subgroup(big):
    assert (_index_in(finite_group("tetrahedral"), finite_group(big)) >= 0).all()


def test_octahedral_is_not_inside_icosahedral():
    assert (_index_in(finite_group("octahedral"), finite_group("icosahedral")) < 0).any()


def test_dtype_device_and_copy():
    G = finite_group("tetrahedral", dtype=torch.float32)
    assert G.dtype == torch.float32
    G[0] = 0  # returned tensor is a copy: the cache is untouched
    assert torch.equal(finite_group("tetrahedral")[0], torch.eye(3, dtype=F64))


def test_group_object_samples_and_structured_elements_lie_in_the_group():
    for name, n in SIZES.items():
        group = get_group(name)
        assert group.is_finite and not group.has_reflections and group.dim == 3
        G = finite_group(name)
        sampled = torch.stack([group.sample(generator=gen(s)).rotation for s in range(30)])
        assert (_index_in(sampled, G) >= 0).all()
        structured = group.structured()[1:]
        assert 0 < len(structured) <= 12 and all(g.label == f"finite:{name}" for g in structured)
        S = torch.stack([g.rotation for g in structured])
        idx = _index_in(S, G)
        assert (idx > 0).all() and len(set(idx.tolist())) == len(S)  # non-identity, distinct
        # every rotation angle (order) of the group is represented
        ang = lambda M: set(torch.round(geodesic_distance(torch.eye(3, dtype=F64), M) * 1e4).tolist())  # noqa: E731
        assert ang(S) == ang(G[1:])


@pytest.mark.parametrize("name,exc", [("cube", ValueError), ("Icosahedral", ValueError), (60, TypeError)])
def test_bad_name(name, exc):
    with pytest.raises(exc, match=r"^name:"):
        finite_group(name)
