"""Rep (parsing, algebra, matrices, actions through geodl.groups.act, the kind 'rep:<spec>') and the candidate groups."""

import math

import pytest
import torch

from geodl.groups import GroupElement, act, get_group, parse_kind, random_input, wigner_D
from geodl.nn.soft_equivariance import CANDIDATE_GROUPS, Rep, candidate_group
from geodl.nn.soft_equivariance._reps import _base_lie, _base_matrix

LINEAR = ["O3", "SO3", "O2x", "O2y", "O2z", "SO2x", "SO2y", "SO2z", "scale", "O2z+scale", "SO3+scale", "SO2x+scale"]
BIG = "2xscalars+points+pseudovectors+tensor2+sh0+sh1+2xsh2+sh3+vectors*pseudovectors+2x(vectors*sh2)"


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("spec,dim,canon", [
    ("5xscalars+5xpoints", 20, "5xscalars+5xpoints"),
    (" 2 x sh2 + tensor2 ", 19, "2xsh2+tensor2"),
    ("vectors*vectors", 9, "vectors*vectors"),
    ("3x(vectors*pseudovectors)", 27, "3x(vectors*pseudovectors)"),
    ("2xvectors+vectors+scalars", 10, "3xvectors+scalars"),
    ("scalars*sh1", 3, "sh1"),
    ("scalar+vector+pseudovector", 7, "scalars+vectors+pseudovectors"),
    ("sh:4", 9, "sh4"),
])
def test_parse_canonical_roundtrip(spec, dim, canon):
    r = Rep(spec)
    assert r.dim == dim and str(r) == canon
    assert Rep(str(r)) == r and hash(Rep(str(r))) == hash(r) and eval(repr(r)) == r
    assert r.kind == f"rep:{canon}" and parse_kind(r.kind).kind == r.kind
    sl = r.slices()
    assert sl[0].start == 0 and sl[-1].stop == dim and all(a.stop == b.start for a, b in zip(sl, sl[1:]))


def test_algebra():
    a, b = Rep("2xvectors"), Rep("scalars+sh1")
    assert a + b == Rep("2xvectors+scalars+sh1") and (a + "scalars").dim == 7
    assert 3 * Rep("vectors") == Rep("3xvectors") and 2 * (a + b) == Rep("2xvectors+scalars+sh1+2xvectors+scalars+sh1")
    t = a * b
    assert t == a.tensor(b) == Rep("2xvectors+2x(vectors*sh1)") and t.dim == a.dim * b.dim
    assert Rep("vectors") != Rep("points") and Rep("vectors*vectors") != Rep("tensor2")
    assert Rep("tensor2").scale_degrees == (0,) and Rep("vectors*pseudovectors").scale_degrees == (2,)


@pytest.mark.parametrize("spec", ["", "3xfoo", "0xvectors", "vectors+", "2x(vectors+scalars)", "sh101",
                                  "points*vectors", "((vectors))", "x", "2x", "vectors**sh1"])
def test_malformed_spec(spec):
    with pytest.raises(ValueError, match="spec"):
        Rep(spec)


def test_bad_types():
    with pytest.raises(TypeError, match="spec"):
        Rep(3)
    with pytest.raises(ValueError, match="x"):
        Rep("vectors").act(get_group("O3").sample(generator=_gen(0)), torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="g"):
        Rep("vectors").matrix("not an element")


@pytest.mark.parametrize("group", LINEAR)
def test_act_equals_matrix(group):
    """act (geodl.groups.act per block) and matrix (written independently) agree on every linear group."""
    G = candidate_group(group)
    r = Rep(BIG)
    x = torch.randn(5, r.dim, dtype=torch.float64, generator=_gen(1))
    for seed in range(4):
        g = G.sample(generator=_gen(seed))
        M = r.matrix(g)
        y = r.act(g, x)
        assert torch.allclose(y, x @ M.T, atol=1e-12), group
        assert torch.allclose(act(r.kind, g, x), y, atol=0)
    for h in G.discrete():
        assert torch.allclose(r.act(h, x), x @ r.matrix(h).T, atol=1e-12)


def test_matrix_homomorphism_and_orthogonality():
    r = Rep(BIG)
    G = candidate_group("O3+scale")
    for seed in range(3):
        g, h = G.sample(generator=_gen(seed)), G.sample(generator=_gen(seed + 10))
        gh = g @ h
        assert torch.allclose(r.matrix(gh), r.matrix(g) @ r.matrix(h), atol=1e-11)
    g = candidate_group("O3").sample(generator=_gen(3))
    M = r.matrix(g)
    assert torch.allclose(M @ M.T, torch.eye(r.dim, dtype=torch.float64), atol=1e-12)


def test_scaling_and_parity():
    s = GroupElement(rotation=torch.eye(3, dtype=torch.float64), scale=2.0)
    r = Rep("scalars+vectors+pseudovectors+tensor2+sh1+vectors*vectors")
    d = torch.diagonal(r.matrix(s))
    assert d.tolist() == [1.0] + [2.0] * 6 + [1.0] * 9 + [1.0] * 3 + [4.0] * 9
    inv = GroupElement(rotation=-torch.eye(3, dtype=torch.float64))
    r = Rep("scalars+vectors+pseudovectors+tensor2+sh1+sh2+vectors*pseudovectors")
    d = torch.diagonal(r.matrix(inv))
    assert d.tolist() == [1.0] + [-1.0] * 3 + [1.0] * 3 + [1.0] * 9 + [-1.0] * 3 + [1.0] * 5 + [-1.0] * 9


def test_points_are_translated():
    g = candidate_group("O3+T3").sample(generator=_gen(0))
    assert g.translation is not None
    r = Rep("vectors+points")
    x = torch.randn(4, 6, dtype=torch.float64, generator=_gen(1))
    y = r.act(g, x)
    lin = x @ r.matrix(g).T
    assert torch.allclose(y[:, :3], lin[:, :3]) and torch.allclose(y[:, 3:], lin[:, 3:] + g.translation)


def test_tensor_layout_is_kron():
    g = candidate_group("O3").sample(generator=_gen(2))
    a, b = Rep("vectors"), Rep("sh2")
    u = torch.randn(3, dtype=torch.float64, generator=_gen(0))
    v = torch.randn(5, dtype=torch.float64, generator=_gen(1))
    lhs = (a * b).act(g, torch.kron(u, v))
    rhs = torch.kron(a.act(g, u), b.act(g, v))
    assert torch.allclose(lhs, rhs, atol=1e-12)


def test_sh_is_wigner_D_basis():
    """sh<l> is e3nn's real basis (geodl.groups.wigner_D) with parity (-1)^l."""
    R = candidate_group("SO3").sample(generator=_gen(4)).rotation
    for l in range(5):
        assert torch.allclose(Rep(f"sh{l}").matrix(GroupElement(rotation=R)), wigner_D(l, R), atol=1e-12)
        assert torch.allclose(Rep(f"sh{l}").matrix(GroupElement(rotation=-R)), (-1) ** l * wigner_D(l, R), atol=1e-12)


@pytest.mark.parametrize("base", ["vectors", "pseudovectors", "tensor2", "sh0", "sh1", "sh2", "sh3", "sh5",
                                  "vectors*sh2", "pseudovectors*tensor2"])
def test_lie_generators_exponentiate_to_the_matrices(base):
    """The Lie generators (e3nn's so3_generators for sh<l>) are the derivatives of matrix(): exp(tρ(A)) = ρ(exp(tA))."""
    for k, A in enumerate(candidate_group("SO3").lie_algebra()):
        t = 0.7 + 0.3 * k
        lhs = torch.linalg.matrix_exp(t * _base_lie(base, A))
        rhs = _base_matrix(base, torch.linalg.matrix_exp(t * A), 1.0)
        assert torch.allclose(lhs, rhs, atol=1e-12), (base, k, float((lhs - rhs).abs().max()))


def test_rep_kind_in_registry():
    k = "rep:5xscalars + 5xvectors"
    assert parse_kind(k).kind == "rep:5xscalars+5xvectors"
    x = random_input(k, 7, generator=_gen(0))
    assert x.shape == (7, 20)
    g = get_group("O3").sample(generator=_gen(0))
    assert torch.allclose(act(k, g, x), x @ Rep("5xscalars+5xvectors").matrix(g, dtype=x.dtype).T, atol=1e-5)
    with pytest.raises(ValueError, match="kind"):
        parse_kind("rep:3xnothing")


# --------------------------------------------------------------------------------------- candidate groups
def test_candidate_names():
    assert CANDIDATE_GROUPS == ("O3", "SO3", "O2x", "O2y", "O2z", "SO2x", "SO2y", "SO2z", "scale", "T3")
    assert candidate_group("scale+O2z").name == "O2z+scale" and candidate_group("t3+so3").name == "SO3+T3"
    for bad in ["O4", "", "O3+SO3", "O3+O3", "O2w"]:
        with pytest.raises(ValueError, match="group"):
            candidate_group(bad)
    with pytest.raises(TypeError, match="group"):
        candidate_group(3)
    assert not candidate_group("O3+T3").linear and candidate_group("O3+scale").linear


@pytest.mark.parametrize("name", ["O3", "SO3", "O2x", "O2y", "O2z", "SO2x", "SO2y", "SO2z", "scale", "T3",
                                  "O2z+scale", "SO3+scale+T3"])
def test_samples_lie_in_the_group(name):
    G = candidate_group(name)
    dets = set()
    for seed in range(40):
        g = G.sample(generator=_gen(seed))
        R = g.rotation if g.rotation is not None else torch.eye(3, dtype=torch.float64)
        assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
        det = round(float(torch.linalg.det(R)))
        dets.add(det)
        if G.rotation in ("O2", "SO2"):
            e = torch.zeros(3, dtype=torch.float64)
            e[G.axis] = 1.0
            assert torch.allclose(R @ e, e, atol=1e-12)
        if G.rotation is None:
            assert torch.allclose(R, torch.eye(3, dtype=torch.float64))
        assert (g.scale is not None) == G.scaling and (g.scale is None or 0.5 <= g.scale <= 2.0)
        assert (g.translation is not None) == G.translations
    assert dets == ({1, -1} if G.rotation in ("O3", "O2") else {1})
    assert g.dim == 3 or G.rotation is None
    # generators: the discrete ones are in the group and fix the axis
    for h in G.discrete():
        if G.rotation == "O2":
            e = torch.zeros(3, dtype=torch.float64)
            e[G.axis] = 1.0
            assert torch.allclose(h.rotation @ e, e) and float(h.det) == -1.0


def test_haar_rotation_statistics():
    """E[R] = 0 and E[R_ij²] = 1/3 for Haar SO(3); SO2z: E[cos θ] = 0 (each element sampled with the generator)."""
    Rs = torch.stack([candidate_group("SO3").sample(generator=_gen(s)).rotation for s in range(2000)])
    assert float(Rs.mean(0).abs().max()) < 0.06 and float(((Rs**2).mean(0) - 1 / 3).abs().max()) < 0.04
    c = torch.stack([candidate_group("SO2z").sample(generator=_gen(s)).rotation[0, 0] for s in range(2000)])
    assert abs(float(c.mean())) < 0.06


def test_issubgroup_and_lie():
    sub = candidate_group
    assert sub("SO2z").issubgroup("O2z") and sub("O2z").issubgroup("O3") and sub("SO2z").issubgroup("SO3")
    assert sub("SO3").issubgroup("O3") and not sub("O3").issubgroup("SO3") and not sub("O2z").issubgroup("SO3")
    assert not sub("O2z").issubgroup("O2x") and not sub("O2z+scale").issubgroup("O3")
    assert sub("O2z").issubgroup("O3+scale") and sub("scale").issubgroup("SO2y+scale")
    for n in LINEAR:
        assert sub(n).issubgroup(n)
    L = sub("SO3").lie_algebra()
    v = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = 1.0
        assert torch.allclose(L[k] @ v, torch.linalg.cross(e, v))
    assert sub("O2z").geodl_group() == get_group("O2_axis") and sub("SO2z").geodl_group() is None
    assert sub("O3+scale").geodl_group().name == "O3+scale"


def test_o2_sample_matches_geodl_O2_axis_element():
    """An O2z sample fixes z (a rotation about z, possibly composed with a reflection through a plane containing z)."""
    g = candidate_group("O2z").sample(generator=_gen(5))
    R = g.rotation
    assert math.isclose(float(R[2, 2]), 1.0) and float(R[0, 2]) == 0.0
