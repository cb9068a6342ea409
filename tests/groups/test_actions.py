"""Actions on feature kinds: every kind, composition, permutations, bad input."""

import pytest
import torch

from geodl.groups import GroupElement, KindSpec, act, get_group, parse_kind

from ._helpers import F64, gen

N = 8


def _pair(name, n_nodes=N):
    G = get_group(name)
    return G, G.sample(generator=gen(1), n_nodes=n_nodes), G.sample(generator=gen(2), n_nodes=n_nodes)


@pytest.mark.parametrize(
    "kind,shape,group",
    [
        ("points", (5, N, 3), "E3+scale"),
        ("vectors", (N, 3), "E3+scale"),
        ("pseudovectors", (N, 3), "O3+scale"),
        ("tensor2", (4, 3, 3), "O3"),
        ("sh:3", (N, 16), "O3"),
        ("sh:3:e3nn", (N, 16), "O3"),
        ("points", (N, 2), "E2+scale"),
        ("node:points", (N, 3), "E3+perm+scale"),
        ("node:sh:2", (N, 9), "O3+perm"),
        ("perm", (N, 4), "perm"),
        ("node:tensor2", (N, 3, 3), "O3+perm"),
    ],
)
def test_composed_element_equals_acting_twice(kind, shape, group):
    G, g, h = _pair(group)
    x = torch.randn(*shape, generator=gen(3), dtype=F64)
    assert torch.allclose(act(kind, G.compose(g, h), x), act(kind, g, act(kind, h, x)), atol=1e-12)
    assert torch.allclose(act(kind, G.inverse(g), act(kind, g, x)), x, atol=1e-12)
    assert torch.equal(act(kind, G.identity(n_nodes=N), x), x)


def test_points_vectors_and_translations():
    g = GroupElement(rotation=None, translation=torch.tensor([1.0, 2.0, 3.0], dtype=F64), label="translation")
    x = torch.randn(N, 3, generator=gen(0), dtype=F64)
    assert torch.equal(act("points", g, x), x + g.translation)
    assert torch.equal(act("vectors", g, x), x)  # vectors do not translate
    _, g, _ = _pair("E3+scale")
    assert torch.allclose(act("points", g, x), g.scale * x @ g.rotation.T + g.translation)
    # differences of points are vectors
    d = x[1:] - x[:-1]
    y = act("points", g, x)
    assert torch.allclose(y[1:] - y[:-1], act("vectors", g, d), atol=1e-13)


def test_pseudovectors_flip_under_reflection():
    a, b = torch.randn(2, N, 3, generator=gen(4), dtype=F64)
    for g in get_group("O3").structured() + [get_group("O3").sample(generator=gen(s)) for s in range(6)]:
        # the cross product of two vectors is a pseudovector
        lhs = act("pseudovectors", g, torch.linalg.cross(a, b))
        rhs = torch.linalg.cross(act("vectors", g, a), act("vectors", g, b))
        assert torch.allclose(lhs, rhs, atol=1e-13)
    inversion = GroupElement(rotation=-torch.eye(3, dtype=F64), label="reflection")
    assert torch.equal(act("pseudovectors", inversion, a), a)
    assert torch.equal(act("vectors", inversion, a), -a)
    mirror = GroupElement(rotation=torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=F64)), label="reflection")
    assert torch.equal(act("pseudovectors", mirror, a), a * torch.tensor([1.0, -1.0, -1.0], dtype=F64))


def test_tensor2_is_r_t_rt():
    _, g, _ = _pair("O3")
    v = torch.randn(N, 3, generator=gen(5), dtype=F64)
    T = v[:, :, None] * v[:, None, :]  # outer products transform as R T Rᵀ
    Rv = act("vectors", g, v)
    assert torch.allclose(act("tensor2", g, T), Rv[:, :, None] * Rv[:, None, :], atol=1e-13)
    # invariants: trace and eigenvalues
    S = T.sum(0)
    assert torch.allclose(torch.linalg.eigvalsh(act("tensor2", g, S)), torch.linalg.eigvalsh(S), atol=1e-12)


def test_sh_blocks_and_parity():
    g = GroupElement(rotation=-torch.eye(3, dtype=F64), label="reflection")
    x = torch.randn(3, 16, generator=gen(6), dtype=F64)
    parity = torch.cat([torch.full((2 * l + 1,), (-1.0) ** l, dtype=F64) for l in range(4)])
    assert torch.allclose(act("sh:3", g, x), x * parity)
    assert torch.equal(act("sh:3", GroupElement(translation=torch.ones(3, dtype=F64)), x), x)  # translations: no effect


def test_node_kinds_permute_and_others_do_not():
    _, g, _ = _pair("perm")
    x = torch.randn(N, 4, generator=gen(7), dtype=F64)
    assert torch.equal(act("perm", g, x), x[g.perm])
    assert torch.equal(act("node:scalar", g, x), x[g.perm])
    assert torch.equal(act("scalar", g, x), x)  # e.g. a per-graph output
    _, g, _ = _pair("E3+perm")
    v = torch.randn(N, 3, generator=gen(8), dtype=F64)
    assert torch.allclose(act("node:vectors", g, v), act("vectors", g, v)[g.perm])
    with pytest.raises(ValueError, match="^x:"):
        act("node:vectors", g, v[:-1])


def test_edge_index_relabelling_keeps_edges_on_the_same_node_features():
    _, g, h = _pair("perm", n_nodes=N)
    x = torch.randn(N, 4, generator=gen(9), dtype=F64)
    edge_index = torch.randint(0, N, (2, 20), generator=gen(10))
    for el in (g, h, get_group("perm").compose(g, h)):
        x2, e2 = act("perm", el, x), act("edge_index", el, edge_index)
        assert e2.dtype == edge_index.dtype and e2.shape == edge_index.shape
        # the features at both ends of every edge are unchanged
        assert torch.equal(x2[e2[0]], x[edge_index[0]]) and torch.equal(x2[e2[1]], x[edge_index[1]])
    # composition holds for edge indices too
    G = get_group("perm")
    assert torch.equal(act("edge_index", G.compose(g, h), edge_index),
                       act("edge_index", g, act("edge_index", h, edge_index)))
    # no permutation: unchanged; int32 supported
    assert torch.equal(act("edge_index", GroupElement(), edge_index), edge_index)
    assert act("edge_index", g, edge_index.int()).dtype == torch.int32


def test_dtype_follows_input_and_broadcasting():
    _, g, _ = _pair("E3+scale")
    x = torch.randn(2, 5, 3, generator=gen(11))
    y = act("points", g, x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.allclose(y.double(), act("points", g, x.double()), atol=1e-5)


def test_parse_kind():
    assert parse_kind("vectors") == KindSpec("vectors", "vectors", False)
    assert parse_kind("node:sh:4") == KindSpec("node:sh:4", "sh", True, 4)
    assert parse_kind("node:sh:4:e3nn") == KindSpec("node:sh:4:e3nn", "sh", True, 4, "e3nn")
    assert parse_kind("so3:2").lmax == 2 and parse_kind("equirect:4x8").param == (4, 8)
    assert parse_kind("perm") == KindSpec("node:scalar", "scalar", True)
    assert parse_kind("edge_index").base == "edge_index"
    assert parse_kind(parse_kind("points")).kind == "points"
    assert parse_kind("points").is_geometric and not parse_kind("perm").is_geometric


G3 = get_group("E3+perm").sample(generator=gen(0), n_nodes=4)


@pytest.mark.parametrize(
    "kind,g,x,exc,name",
    [
        ("spinor", G3, torch.ones(4, 3), ValueError, "kind"),
        ("sh", G3, torch.ones(4, 9), ValueError, "kind"),
        ("sh:x", G3, torch.ones(4, 9), ValueError, "kind"),
        ("node:edge_index", G3, torch.zeros(2, 3, dtype=torch.long), ValueError, "kind"),
        (3, G3, torch.ones(4, 3), TypeError, "kind"),
        ("points", G3, torch.ones(4, 2), ValueError, "x"),
        ("vectors", G3, torch.ones(4, 3, dtype=torch.long), TypeError, "x"),
        ("tensor2", G3, torch.ones(4, 3, 2), ValueError, "x"),
        ("sh:2", G3, torch.ones(4, 8), ValueError, "x"),
        ("node:points", G3, torch.ones(5, 3), ValueError, "x"),
        ("edge_index", G3, torch.zeros(2, 3), TypeError, "x"),
        ("edge_index", G3, torch.zeros(3, 3, dtype=torch.long), ValueError, "x"),
        ("points", G3, [[1.0, 2.0, 3.0]], TypeError, "x"),
        ("points", "g", torch.ones(4, 3), TypeError, "g"),
        ("sh:1", GroupElement(rotation=torch.eye(2)), torch.ones(4, 4), ValueError, "g"),
    ],
)
def test_bad_input_names_the_argument(kind, g, x, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        act(kind, g, x)
