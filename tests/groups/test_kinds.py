"""The kind registry and the kinds added with it: homomorphism, exactness, consistency with points."""

import math

import pytest
import torch

from geodl.groups import (
    KINDS,
    GroupElement,
    act,
    get_group,
    kind_table,
    parse_kind,
    random_input,
    random_rotation,
    register_kind,
    wigner_D,
)

from ._helpers import F64, gen

N = 6


def _elements(group, n=3, **kw):
    G = get_group(group)
    return G, [G.sample(generator=gen(10 + i), **kw) for i in range(n)] + G.structured(**kw)


@pytest.mark.parametrize("kind,group,kw", [
    ("so3:3", "O3", {}),
    ("node:so3:2", "O3+perm", {"n_nodes": N}),
    ("rotation", "O3", {}),
    ("node:rotation", "SE3+perm", {"n_nodes": N}),
    ("sh:3", "O3", {}),
    ("sh:3:e3nn", "O3", {}),
    ("2x0e+1x1o+1x1e+1x2o", "O3", {}),
    ("node:1x0o+2x2e", "O3+perm", {"n_nodes": N}),
    ("equirect:4x8", "equirect:8", {}),
    ("equirect:4x16", "equirect:8", {}),  # rolls by 2 bins of a finer map
    ("node:equirect:3x6", "equirect:6+perm", {"n_nodes": N}),
    ("image2d", "D4", {}),
    ("node:image2d", "D4+perm", {"n_nodes": N}),
    ("batch", "E3+perm", {"n_nodes": N}),
    ("parts", "E3+perm", {"n_nodes": N}),
])
def test_new_kinds_are_homomorphisms(kind, group, kw):
    """act(g∘h) = act(g)∘act(h), inverse undoes, identity is exact."""
    G, elems = _elements(group, **kw)
    x = random_input(kind, N, generator=gen(0), dim=G.dim or 3)
    for g in elems:
        for h in elems[:4]:
            lhs = act(kind, G.compose(g, h), x)
            rhs = act(kind, g, act(kind, h, x))
            assert torch.allclose(lhs, rhs, atol=1e-12), (g.label, h.label)
        assert torch.allclose(act(kind, G.inverse(g), act(kind, g, x)), x, atol=1e-12)
    assert torch.equal(act(kind, G.identity(**kw), x), x)


@pytest.mark.parametrize("kind,shape", [
    ("node:points", (N, 3)), ("vectors", (N, 3)), ("pseudovectors", (N, 3)), ("tensor2", (N, 3, 3)),
    ("node:sh:2", (N, 9)), ("so3:2", (N, 35)), ("rotation", (N, 3, 3)), ("1x0e+1x1o", (N, 4)),
])
@pytest.mark.parametrize("group", ["E3^parts", "SE3^parts+perm"])
def test_piecewise_elements_are_homomorphisms(kind, shape, group):
    G = get_group(group)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    kw = {"labels": labels, **({"n_nodes": N} if G.has_permutations else {})}
    if G.has_permutations and not kind.startswith("node:"):
        kind = "node:" + kind  # rows are nodes: labels travel with them
    x = torch.randn(*shape, generator=gen(1), dtype=F64)
    elems = [G.sample(generator=gen(s), **kw) for s in range(3)] + G.structured(**kw)
    for g in elems:
        # h then g: g's labels are h's after h's permutation, as in an equivariance check
        for h in elems[:3]:
            hl = h.part_labels if h.perm is None else h.part_labels[h.perm]
            g2 = GroupElement(perm=g.perm, label=g.label, part_rotation=g.part_rotation,
                              part_translation=g.part_translation, part_labels=hl)
            assert torch.allclose(act(kind, G.compose(g2, h), x), act(kind, g2, act(kind, h, x)), atol=1e-12)
        assert torch.allclose(act(kind, G.inverse(g), act(kind, g, x)), x, atol=1e-12)


def test_piecewise_points_move_per_part():
    G = get_group("E3^parts")
    labels = torch.tensor([0, 1, 1, 0])
    g = G.sample(generator=gen(3), labels=labels)
    x = torch.randn(4, 3, generator=gen(4), dtype=F64)
    y = act("points", g, x)
    for i, p in enumerate(labels.tolist()):
        assert torch.allclose(y[i], g.part_rotation[p] @ x[i] + g.part_translation[p], atol=1e-14)
    assert torch.allclose(act("vectors", g, x)[2], g.part_rotation[1] @ x[2], atol=1e-14)
    with pytest.raises(ValueError, match="x"):
        act("points", g, x[:3])
    with pytest.raises(ValueError, match="labels"):
        G.sample(generator=gen(0))
    with pytest.raises(ValueError, match="piecewise"):
        act("image2d", g, torch.zeros(4, 5, 5, dtype=F64))


def test_irreps_match_e3nn_D_from_matrix():
    from e3nn.o3 import Irreps

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn's D_from_matrix is only float32-exact otherwise
    try:
        for text in ("2x0e+1x1o", "1x0o+1x1e+2x2o+1x3e", "3x1o"):
            irreps = Irreps(text)
            for s in range(3):
                R = random_rotation(generator=gen(s), dtype=F64)
                for M in (R, -R):
                    x = torch.randn(5, irreps.dim, generator=gen(7), dtype=F64)
                    ref = x @ irreps.D_from_matrix(M).T
                    assert torch.allclose(act(text, GroupElement(rotation=M), x), ref, atol=1e-9)
    finally:
        torch.set_default_dtype(old)
    assert parse_kind("irreps:1x1o") == parse_kind("1o")
    # "1x1o" are vectors, "1x1e" pseudovectors
    g = get_group("O3").structured()[2]
    v = torch.randn(4, 3, generator=gen(2), dtype=F64)
    assert torch.allclose(act("1x1o", g, v), act("vectors", g, v))
    assert torch.allclose(act("1x1e", g, v), act("pseudovectors", g, v))


def test_sh_kind_uses_the_default_basis_of_spherical_harmonics():
    """act("sh:3", g, Y(x)) = Y(g·x) for spherical_harmonics' default basis; ':e3nn' for e3nn's."""
    from geodl.ops import spherical_harmonics

    x = torch.randn(50, 3, generator=gen(5), dtype=F64)
    elems = [get_group("O3").sample(generator=gen(s)) for s in range(4)] + get_group("O3").structured()
    for g in elems:
        gx = act("points", g, x)
        assert torch.allclose(act("sh:3", g, spherical_harmonics(3, x)), spherical_harmonics(3, gx), atol=1e-12)
        got = act("sh:3:e3nn", g, spherical_harmonics(3, x, convention="e3nn"))
        assert torch.allclose(got, spherical_harmonics(3, gx, convention="e3nn"), atol=1e-12)
    # D_real(R) = D_e3nn(Pᵀ R P) with P v = (v_z, v_x, v_y)
    P = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    R = random_rotation(generator=gen(9), dtype=F64)
    e = torch.eye(16, dtype=F64)
    D_real = act("sh:3", GroupElement(rotation=R), e).T
    blocks = torch.block_diag(*[wigner_D(l, P.T @ R @ P) for l in range(4)])
    assert torch.allclose(D_real, blocks, atol=1e-13)


def test_so3_kind_is_the_left_regular_action_on_functions():
    """f(R) = sum_l <F^l, D^l(R)>: the coefficients of f(R0⁻¹ R) are D^l(R0) F^l."""
    lmax = 3
    F = torch.randn(random_input("so3:3", 1).shape[-1], generator=gen(1), dtype=F64)

    def f(coef, R):
        out, i = 0.0, 0
        for l in range(lmax + 1):
            k = 2 * l + 1
            out = out + (coef[i:i + k * k].view(k, k) * wigner_D(l, R)).sum((-1, -2))
            i += k * k
        return out

    R0 = random_rotation(generator=gen(2), dtype=F64)
    Rs = random_rotation(7, generator=gen(3), dtype=F64)
    moved = act("so3:3", GroupElement(rotation=R0), F)
    assert torch.allclose(f(moved, Rs), f(F, R0.T @ Rs), atol=1e-12)


def test_rotation_kind_left_multiplies():
    g = get_group("SE3").sample(generator=gen(0))
    R = random_rotation(4, generator=gen(1), dtype=F64)
    assert torch.allclose(act("rotation", g, R), g.rotation @ R)
    # a frame's columns are vectors
    assert torch.allclose(act("rotation", g, R)[:, :, 0], act("vectors", g, R[:, :, 0]))


def test_equirect_action_is_the_bin_permutation_of_the_rotation():
    """A point in bin (i, j) lands, after g, in the bin that act('equirect', g) moves (i, j) to."""
    H, W = 6, 8
    G = get_group("equirect:8")
    assert len(G.table) == 16 and not G.has_reflections
    i, j = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    theta = (i + 0.5) * math.pi / H
    phi = (j + 0.5) * 2 * math.pi / W
    xyz = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], -1).to(F64)
    ident = torch.arange(H * W, dtype=F64).view(H, W)  # each bin holds its own id
    for R in G.table:
        g = GroupElement(rotation=R)
        moved = act("equirect:6x8", g, ident)
        p = act("points", g, xyz.view(-1, 3))
        th = torch.arccos(p[:, 2].clamp(-1, 1))
        ph = torch.atan2(p[:, 1], p[:, 0]) % (2 * math.pi)
        ii = torch.floor(th / (math.pi / H)).long()
        jj = torch.floor(ph / (2 * math.pi / W)).long() % W
        # bin (i, j)'s content now sits at the bin of its rotated centre
        assert torch.equal(moved[ii, jj], ident.view(-1))
    with pytest.raises(ValueError, match="whole-bin"):
        act("equirect:6x8", GroupElement(rotation=get_group("SO3").sample(generator=gen(0)).rotation), ident)


def test_image2d_matches_2d_points():
    """Pixel (i, j) sits at (j - (W-1)/2, (H-1)/2 - i): the image of g·points is g·(image of points)."""
    H = W = 5
    i, j = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    centres = torch.stack([j - (W - 1) / 2, (H - 1) / 2 - i], -1).to(F64).view(-1, 2)
    img = torch.randn(H, W, generator=gen(0), dtype=F64)
    G = get_group("D4")
    assert len(G.table) == 8 and G.dim == 2 and G.has_reflections
    for R in G.table:
        g = GroupElement(rotation=R)
        moved = act("image2d", g, img)
        p = act("points", g, centres)
        jj = (p[:, 0] + (W - 1) / 2).round().long()
        ii = ((H - 1) / 2 - p[:, 1]).round().long()
        assert torch.equal(moved[ii, jj], img.view(-1))
    r90 = GroupElement(rotation=G.table[1])
    assert torch.equal(act("image2d", r90, img), torch.rot90(img, 1, dims=(-2, -1)))
    with pytest.raises(ValueError, match="square"):
        act("image2d", r90, torch.zeros(3, 4, dtype=F64))
    flip = GroupElement(rotation=G.table[4])
    assert act("image2d", flip, torch.zeros(3, 4, dtype=F64)).shape == (3, 4)
    with pytest.raises(ValueError, match="quarter turns"):
        act("image2d", GroupElement(rotation=get_group("SO2").sample(generator=gen(0)).rotation), img)


def test_batch_and_parts_kinds():
    g = get_group("E3+perm").sample(generator=gen(0), n_nodes=N)
    b = random_input("batch", N)
    assert b.tolist() == [0, 0, 1, 1, 2, 2] and parse_kind("node:batch") == parse_kind("batch")
    assert torch.equal(act("batch", g, b), b[g.perm])
    labels = random_input("parts", N, generator=gen(1))
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    with pytest.raises(TypeError, match="x"):
        act("batch", g, torch.zeros(N))
    with pytest.raises(ValueError, match="kind"):
        parse_kind("edge_index:2")


def test_registry_is_the_one_table():
    """A kind registered once is known to act, parse_kind, KINDS, kind_table, random_input and
    the checker and help of geodl.testing."""
    from geodl.testing import assert_equivariant, random_inputs
    from geodl.testing._cli import _epilog

    def act_double(spec, g, x):  # a vector pair (..., 2, d)
        R = g.rotation.to(x.dtype) if g.rotation is not None else torch.eye(x.shape[-1], dtype=x.dtype)
        return x @ R.T

    def rand_double(spec, n, *, dim, dtype, generator, device):
        return torch.randn(n, 2, dim, generator=generator, dtype=torch.float64).to(dtype)

    register_kind("vector_pair_test", act=act_double, random=rand_double, shape="(..., 2, d)",
                  doc="two vectors", replace=True)
    assert "vector_pair_test" in KINDS and any(r[0] == "vector_pair_test" for r in kind_table())
    assert "vector_pair_test" in _epilog()
    (x,) = random_inputs(["node:vector_pair_test"], 4, generator=gen(0))
    assert x.shape == (4, 2, 3)
    assert_equivariant(lambda v: v.sum(1), (x,), ("node:vector_pair_test",), "node:vectors", "O3+perm", generator=0)
    with pytest.raises(ValueError, match="already registered"):
        register_kind("vector_pair_test", act=act_double)
    with pytest.raises(TypeError, match="act"):
        register_kind("broken_kind_test", act=None)
    with pytest.raises(ValueError, match="kind"):
        parse_kind("vector_pair_test:3")


@pytest.mark.parametrize("name, exc, match", [
    ("equirect", ValueError, "group"),
    ("equirect:0", ValueError, "group"),
    ("equirect:x", ValueError, "group"),
    ("tetrahedral^parts", ValueError, "parts"),
    ("E3^parts+scale", ValueError, "scale"),
    ("D4+SO3", ValueError, "several geometric"),
])
def test_bad_group_names(name, exc, match):
    with pytest.raises(exc, match=match):
        get_group(name)


@pytest.mark.parametrize("kind", ["sh:2:real", "sh:2:", "so3:x", "equirect:8", "equirect:0x4", "image2d:3",
                                  "node:edge_index", "3x9q", "irreps:foo"])
def test_bad_kinds(kind):
    with pytest.raises(ValueError, match="kind"):
        parse_kind(kind)


def test_table_groups():
    assert get_group("equirect:8").name == "equirect:8" and get_group("Equirect:8+perm").name == "equirect:8+perm"
    assert get_group("image_D4").name == "D4" and len(get_group("C4").table) == 4
    assert get_group("SE3^parts+perm").name == "SE3^parts+perm" and get_group("E3^parts").has_reflections
    G = get_group("D4+perm")
    assert [e.label for e in G.structured(n_nodes=3)].count("finite:D4") == 7
    g = G.sample(generator=gen(0), n_nodes=3)
    assert any(torch.equal(g.rotation, m) for m in G.table)
