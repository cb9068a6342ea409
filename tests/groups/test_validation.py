"""Validation of indices and group elements: edge ids, orthogonal rotations, permutations, dtypes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geodl.data import fibonacci_sphere, uniform_sphere
from geodl.groups import GroupElement, act, get_group, random_input, s2_healpix_grid, so3_healpix_grid

from ._helpers import F64, gen

F32 = torch.float32


# ------------------------------------------------------------------ edge_index
@pytest.mark.parametrize("bad", [-1, 5, 100])
def test_edge_index_out_of_range_ids_are_refused(bad):
    g = get_group("perm").sample(generator=gen(0), n_nodes=5)
    edges = torch.tensor([[0, 1, 2], [1, bad, 3]])
    with pytest.raises(ValueError, match=r"x: .*\[0, 5\)"):
        act("edge_index", g, edges)
    with pytest.raises(ValueError, match="x"):
        act("edge_index", g, edges.int())


def test_edge_index_negative_ids_refused_without_permutation():
    with pytest.raises(ValueError, match="x: .*non-negative"):
        act("edge_index", GroupElement(), torch.tensor([[0, -1], [1, 0]]))


def test_edge_index_valid_ids_still_relabel():
    g = get_group("perm").sample(generator=gen(1), n_nodes=5)
    edges = torch.tensor([[0, 4, 2], [1, 3, 0]])
    moved = act("edge_index", g, edges)
    assert torch.equal(g.perm[moved], edges)
    assert act("edge_index", g, torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0)


# ------------------------------------------------------------------ rotations
@pytest.mark.parametrize("dtype", [F32, F64])
def test_non_orthogonal_rotation_is_refused(dtype):
    for M in (2 * torch.eye(3), torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
              torch.zeros(2, 2), torch.eye(3) * (1 + 1e-3)):
        with pytest.raises(ValueError, match="rotation: .*orthogonal"):
            GroupElement(rotation=M.to(dtype))


def test_non_orthogonal_part_rotation_is_refused():
    PR = torch.stack([torch.eye(3, dtype=F64), 2 * torch.eye(3, dtype=F64)])
    with pytest.raises(ValueError, match="part_rotation: .*orthogonal"):
        GroupElement(part_rotation=PR, part_labels=torch.tensor([0, 1, 1]))


def test_float32_rotations_and_long_compositions_pass():
    G = get_group("O3")
    g = G.sample(generator=gen(2), dtype=F32)
    # a float32 matrix rounded from float64 by a user
    R64 = get_group("SO3").sample(generator=gen(3)).rotation
    GroupElement(rotation=R64.float())
    h = g
    for i in range(50):  # rounding errors accumulate over compositions and inverses
        h = G.compose(h, G.sample(generator=gen(10 + i), dtype=F32))
        h = G.compose(G.inverse(g), h) if i % 2 else h
    assert h.rotation.dtype == F32


@pytest.mark.parametrize("name", ["E3+perm+scale", "O2+perm", "D4", "C4", "equirect:8", "icosahedral",
                                  "O2_axis", "E3^parts", "SE2^parts"])
def test_every_builtin_element_is_valid(name):
    G = get_group(name)
    kw = {"n_nodes": 6} if G.has_permutations else {}
    if G.has_parts:
        kw["labels"] = torch.tensor([0, 1, 1, 2, 0, 2])
    for dtype in (F32, F64):
        elems = G.structured(dtype=dtype, generator=gen(0), **kw) + \
            [G.sample(generator=gen(s), dtype=dtype, **kw) for s in range(5)]
        for g in elems:
            G.inverse(g)
            G.compose(g, G.inverse(g))


# ------------------------------------------------------------------ permutations
@pytest.mark.parametrize("perm", [[0, 0, 1], [0, 1, 3], [-1, 0, 1], [2, 2, 2]])
def test_invalid_permutations_are_refused(perm):
    with pytest.raises(ValueError, match="perm: .*permutation of 0..2"):
        GroupElement(perm=torch.tensor(perm))


def test_valid_permutation_accepted():
    assert GroupElement(perm=torch.tensor([2, 0, 1])).perm.tolist() == [2, 0, 1]
    assert GroupElement(perm=torch.zeros(0, dtype=torch.long)).perm.numel() == 0


# ------------------------------------------------------------------ generator dtypes
_GENERATORS = [
    lambda dtype: s2_healpix_grid(0, dtype=dtype),
    lambda dtype: so3_healpix_grid(0, dtype=dtype),
    lambda dtype: fibonacci_sphere(8, dtype=dtype),
    lambda dtype: uniform_sphere(8, dtype=dtype),
]


@pytest.mark.parametrize("make", _GENERATORS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_generators_refuse_non_float_dtypes(make, dtype):
    with pytest.raises(TypeError, match="dtype: .*floating-point"):
        make(dtype)


@pytest.mark.parametrize("make", _GENERATORS)
def test_generators_refuse_dtype_strings_with_a_hint(make):
    with pytest.raises(TypeError, match=r"dtype: .*torch\.float32"):
        make("float32")
    with pytest.raises(TypeError, match="dtype"):
        make(float)


@pytest.mark.parametrize("make", _GENERATORS)
def test_generators_accept_float_dtypes(make):
    for dtype in (F32, F64):
        assert make(dtype).dtype == dtype


def test_group_methods_and_random_input_refuse_bad_dtypes():
    G = get_group("E3+perm")
    for method in (G.identity, G.sample, G.structured):
        with pytest.raises(TypeError, match=r"dtype: .*torch\.float32"):
            method(dtype="float32", n_nodes=3)
        with pytest.raises(TypeError, match="dtype: .*floating-point"):
            method(dtype=torch.int64, n_nodes=3)
    for kind in ("node:vectors", "edge_index"):
        with pytest.raises(TypeError, match=r"dtype: .*torch\.float32"):
            random_input(kind, 4, dtype="float32")
    with pytest.raises(TypeError, match="dtype: .*floating-point"):
        random_input("node:vectors", 4, dtype=torch.int64)
    assert random_input("node:vectors", 4).dtype == F64


# ------------------------------------------------------------------ property: permutations
@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 12), min_size=1, max_size=10))
def test_perm_accepted_iff_it_is_a_permutation(values):
    p = torch.tensor(values)
    if sorted(values) == list(range(len(values))):
        assert torch.equal(GroupElement(perm=p).perm, p)
    else:
        with pytest.raises(ValueError, match="perm"):
            GroupElement(perm=p)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 8), min_size=2, max_size=12), st.integers(1, 6))
def test_edge_index_accepted_iff_ids_in_range(ids, n):
    edges = torch.tensor(ids[: len(ids) // 2 * 2]).view(2, -1)
    g = GroupElement(perm=torch.randperm(n, generator=gen(n)))
    if edges.numel() == 0 or (int(edges.min()) >= 0 and int(edges.max()) < n):
        assert torch.equal(g.perm[act("edge_index", g, edges)], edges)
    else:
        with pytest.raises(ValueError, match="x"):
            act("edge_index", g, edges)
