"""Projectors onto equivariant maps: P² = P = Pᵀ, rank against independent counts (Weyl-integrated characters,
brute-force null spaces of sampled constraints), equivariance of projected maps, subgroup ordering of the
penalties, check_module on a projected layer, bad input, no NaN."""

import math

import pytest
import torch

from geodl.groups import GroupElement, Symmetry
from geodl.nn.soft_equivariance import Rep, candidate_group, equivariant_basis, projection_penalty

F64 = torch.float64
PAIRS = [
    ("vectors", "vectors"),
    ("2xscalars+vectors", "scalars+2xvectors"),
    ("vectors+pseudovectors", "tensor2"),
    ("sh1+sh2", "vectors+sh2+pseudovectors"),
    ("3xvectors", "vectors*vectors+scalars"),
    ("scalars+sh3", "sh1+sh3+2xscalars"),
    ("tensor2", "tensor2"),
    ("vectors*pseudovectors", "2xscalars+pseudovectors+tensor2"),
]
GROUPS = ["O3", "SO3", "O2z", "O2x", "SO2x", "SO2z", "scale", "O2z+scale", "SO3+scale"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _rz(k, th):
    c, s = math.cos(th), math.sin(th)
    i, j = (k + 1) % 3, (k + 2) % 3
    R = torch.eye(3, dtype=F64)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _character_count(rep_in, rep_out, group, n=400):
    """dim Hom_G(in, out) = ∫ χ_out(g) χ_in(g) dg, integrated by quadrature (Weyl integration formula for
    SO(3), uniform angles for SO(2); component groups averaged). Compact rotation groups only."""
    a, b = Rep(rep_in), Rep(rep_out)
    chi = lambda R: float(torch.trace(a.matrix(GroupElement(rotation=R)))) * \
        float(torch.trace(b.matrix(GroupElement(rotation=R))))
    G = candidate_group(group)
    th = [(i + 0.5) * math.pi / n for i in range(n)]  # midpoint rule on [0, π]
    if G.rotation in ("O3", "SO3"):
        # class function of the rotation angle θ about any axis, density (1 - cos θ)/π on [0, π]
        vals = [chi(_rz(2, t)) * (1 - math.cos(t)) / math.pi * (math.pi / n) for t in th]
        total = sum(vals)
        if G.rotation == "O3":
            total = 0.5 * (total + sum(chi(-_rz(2, t)) * (1 - math.cos(t)) / math.pi * (math.pi / n) for t in th))
        return total
    k = G.axis
    phis = [2 * math.pi * (i + 0.5) / n for i in range(n)]
    total = sum(chi(_rz(k, p)) for p in phis) / n
    if G.rotation == "O2":
        F = G.discrete()[0].rotation
        total = 0.5 * (total + sum(chi(_rz(k, p) @ F) for p in phis) / n)
    return total


def _brute_force_rank(rep_in, rep_out, group, n=12):
    """dim of the null space of the stacked constraints kron(ρ_out(g), ρ_in(g)) - I over sampled g."""
    a, b = Rep(rep_in), Rep(rep_out)
    G = candidate_group(group)
    rows = []
    for s in range(n):
        g = G.sample(generator=_gen(100 + s))
        Mi, Mo = a.matrix(g), b.matrix(g)
        # vec_row(Mo W Mi^{-1}) = kron(Mo, Mi^{-T}) vec_row(W)
        rows.append(torch.kron(Mo, torch.linalg.inv(Mi).T) - torch.eye(a.dim * b.dim, dtype=F64))
    S = torch.linalg.svdvals(torch.cat(rows))
    return int((S < 1e-8 * max(1.0, float(S.max()))).sum()) + max(0, a.dim * b.dim - S.numel())


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("pair", PAIRS)
def test_projector_properties(pair, group):
    rep_in, rep_out = pair
    B = equivariant_basis(rep_in, rep_out, group)
    Q = B.basis_dense()
    D = Rep(rep_in).dim * Rep(rep_out).dim
    assert Q.shape == (D, B.rank)
    assert torch.allclose(Q.T @ Q, torch.eye(B.rank, dtype=F64), atol=1e-12)
    P = Q @ Q.T
    assert float((P @ P - P).abs().max()) <= 1e-10 and float((P - P.T).abs().max()) <= 1e-10
    # project() is the same P
    W = torch.randn(3, Rep(rep_out).dim, Rep(rep_in).dim, dtype=F64, generator=_gen(0))
    PW = B.project(W)
    assert torch.allclose(PW.flatten(-2), W.flatten(-2) @ P.T, atol=1e-12)
    # rank against brute force
    assert B.rank == _brute_force_rank(rep_in, rep_out, group)
    # coefficients / expand are inverse on the span
    assert torch.allclose(B.expand(B.coefficients(PW)), PW, atol=1e-12)


@pytest.mark.parametrize("group", ["O3", "SO3", "O2z", "O2y", "SO2x", "SO2z"])
@pytest.mark.parametrize("pair", PAIRS[:6])
def test_rank_equals_character_integral(pair, group):
    B = equivariant_basis(pair[0], pair[1], group)
    c = _character_count(pair[0], pair[1], group)
    assert abs(c - round(c)) < 1e-6, c
    assert B.rank == round(c)


@pytest.mark.parametrize("group", GROUPS)
def test_projected_maps_are_equivariant_large(group):
    rep_in, rep_out = Rep("8xscalars+6xvectors+3xsh2+2xtensor2+pseudovectors"), Rep("4xscalars+5xvectors+2xsh2+tensor2+sh3")
    B = equivariant_basis(rep_in, rep_out, group)
    W = torch.randn(rep_out.dim, rep_in.dim, dtype=F64, generator=_gen(1))
    PW = B.project(W)
    assert torch.allclose(B.project(PW), PW, atol=1e-10)
    A = torch.randn(rep_out.dim, rep_in.dim, dtype=F64, generator=_gen(2))
    assert abs(float((B.project(A) * W).sum() - (A * PW).sum())) <= 1e-10 * float(A.norm() * W.norm())  # P = Pᵀ
    x = torch.randn(16, rep_in.dim, dtype=F64, generator=_gen(3))
    G = candidate_group(group)
    for s in range(4):
        g = G.sample(generator=_gen(s))
        lhs = rep_out.act(g, x @ PW.T)
        rhs = rep_in.act(g, x) @ PW.T
        assert float((lhs - rhs).norm()) <= 1e-6 * float(rhs.norm())
        if s == 0:  # the unprojected W is not equivariant (the test can fail)
            assert float((rep_out.act(g, x @ W.T) - rep_in.act(g, x) @ W.T).norm()) > 1e-3 * float(rhs.norm())
    b = torch.randn(rep_out.dim, dtype=F64, generator=_gen(4))
    pb = B.project_bias(b)
    for s in range(3):
        g = G.sample(generator=_gen(10 + s))
        assert torch.allclose(pb @ rep_out.matrix(g).T, pb, atol=1e-10)
    assert B.bias_rank == equivariant_basis("scalars", rep_out, group).rank


@pytest.mark.parametrize("H,G", [("SO2z", "O2z"), ("O2z", "O3"), ("SO2z", "O3"), ("SO3", "O3"), ("SO2x", "SO3"),
                                 ("O2z", "O2z+scale"), ("scale", "SO3+scale"), ("O2z+scale", "O3+scale")])
def test_subgroup_penalty_is_smaller(H, G):
    assert candidate_group(H).issubgroup(G)
    rep_in, rep_out = "3xscalars+2xvectors+sh2+pseudovectors", "2xscalars+vectors+tensor2+sh2"
    gen = _gen(7)
    strict = False
    for _ in range(10):
        W = torch.randn(Rep(rep_out).dim, Rep(rep_in).dim, dtype=F64, generator=gen)
        b = torch.randn(Rep(rep_out).dim, dtype=F64, generator=gen)
        rh = float(projection_penalty(W, b, rep_in, rep_out, H))
        rg = float(projection_penalty(W, b, rep_in, rep_out, G))
        assert rh <= rg + 1e-10
        strict |= rh < rg - 1e-6
    assert strict
    assert equivariant_basis(rep_in, rep_out, H).rank > equivariant_basis(rep_in, rep_out, G).rank


def test_penalty_matches_definition_and_gradient():
    rep_in, rep_out = "scalars+vectors", "vectors+2xscalars"
    B = equivariant_basis(rep_in, rep_out, "O3")
    W = torch.randn(5, 4, dtype=F64, generator=_gen(0), requires_grad=True)
    b = torch.randn(5, dtype=F64, generator=_gen(1), requires_grad=True)
    pen = projection_penalty(W, b, rep_in, rep_out, "O3")
    ref = 0.5 * ((W - B.project(W)) ** 2).sum() + 0.5 * ((b - B.project_bias(b)) ** 2).sum()
    assert torch.allclose(pen, ref, atol=1e-12)
    pen.backward()
    with torch.no_grad():
        assert torch.allclose(W.grad, W - B.project(W), atol=1e-12) and torch.allclose(b.grad, b - B.project_bias(b))
    assert float(projection_penalty(B.project(W.detach()), None, rep_in, rep_out, "O3")) < 1e-25


def test_penalty_never_nan_for_huge_values():
    for scale, dtype in [(1e150, F64), (1e200, F64), (1e300, F64), (1.7e308, F64), (1e30, torch.float32),
                         (3e38, torch.float32)]:
        W = (torch.randn(6, 4, dtype=F64, generator=_gen(0)).clamp(-1, 1) * scale).to(dtype)
        assert bool(torch.isfinite(W).all())
        p = projection_penalty(W, None, "scalars+vectors", "2xvectors", "O2z")
        assert not bool(torch.isnan(p)) and float(p) > 0, (scale, dtype, p)
        Wr = W.clone().requires_grad_(True)
        projection_penalty(Wr, None, "scalars+vectors", "2xvectors", "O2z").backward()
        assert not bool(torch.isnan(Wr.grad).any())
        E = equivariant_basis("vectors", "vectors", "O3").expand(torch.tensor([scale], dtype=F64)).to(dtype)
        if bool(torch.isfinite(E).all()):
            assert not bool(torch.isnan(projection_penalty(E, None, "vectors", "vectors", "O3")))
    assert float(projection_penalty(torch.zeros(3, 3, dtype=F64), None, "vectors", "vectors", "O3")) == 0.0


def test_cache_and_structure():
    B = equivariant_basis("64xvectors", "64xvectors", "O3")
    assert B is equivariant_basis(Rep("64xvectors"), "64xvectors", candidate_group("O3"))
    assert B.rank == 64 * 64 and B.pairs == [("vectors", "vectors", 64, 64, 1)]
    assert B.nbytes < 1 << 20
    assert equivariant_basis("64xvectors", "64xvectors", "O2z+scale").rank == 2 * 64 * 64
    assert equivariant_basis("vectors", "scalars", "scale").rank == 0
    assert equivariant_basis("vectors", "vectors", "SO2z").rank == 3
    assert equivariant_basis("vectors", "pseudovectors", "SO3").rank == 1 and \
        equivariant_basis("vectors", "pseudovectors", "O3").rank == 0


def test_bad_input():
    with pytest.raises(ValueError, match="group"):
        equivariant_basis("vectors", "vectors", "O4")
    with pytest.raises(ValueError, match="group"):
        equivariant_basis("vectors", "vectors", "O3+T3")
    with pytest.raises(ValueError, match="spec"):
        equivariant_basis("3xvektors", "vectors", "O3")
    with pytest.raises(ValueError, match="rep_out"):
        equivariant_basis("vectors", "2x(vectors", "O3")
    with pytest.raises(TypeError, match="rep_in"):
        equivariant_basis(3, "vectors", "O3")
    B = equivariant_basis("vectors", "2xvectors", "O3")
    for W in [torch.zeros(3, 6, dtype=F64), torch.zeros(6, dtype=F64), torch.zeros(6, 4, dtype=F64)]:
        with pytest.raises(ValueError, match="W"):
            B.project(W)
        with pytest.raises(ValueError, match="W"):
            projection_penalty(W, None, "vectors", "2xvectors", "O3")
    bad = torch.zeros(6, 3, dtype=F64)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="W"):
        projection_penalty(bad, None, "vectors", "2xvectors", "O3")
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="W"):
        B.project(bad)
    with pytest.raises(ValueError, match="b"):
        projection_penalty(torch.zeros(6, 3, dtype=F64), torch.zeros(5, dtype=F64), "vectors", "2xvectors", "O3")
    with pytest.raises(ValueError, match="b"):
        projection_penalty(torch.zeros(6, 3, dtype=F64), torch.full((6,), float("nan"), dtype=F64),
                           "vectors", "2xvectors", "O3")
    with pytest.raises(ValueError, match="theta"):
        B.expand(torch.zeros(3, dtype=F64))
    with pytest.raises(TypeError, match="W"):
        B.project(torch.zeros(6, 3, dtype=torch.int64))


class _ProjectedLinear(torch.nn.Module):
    """A linear layer whose weight is expanded from the equivariant basis (declares its symmetry)."""

    def __init__(self, rep_in, rep_out, group, geodl_group):
        super().__init__()
        self.basis = equivariant_basis(rep_in, rep_out, group)
        self.theta = torch.nn.Parameter(torch.randn(self.basis.rank, dtype=F64, generator=_gen(0)))
        self.b = torch.nn.Parameter(self.basis.project_bias(torch.randn(Rep(rep_out).dim, dtype=F64, generator=_gen(1))))
        self.project_bias = True
        self.symmetry = Symmetry(geodl_group, {"x": Rep(rep_in).kind}, Rep(rep_out).kind)

    def forward(self, x):
        W = self.basis.expand(self.theta.to(x.dtype))
        b = self.b.to(x.dtype)
        return x @ W.T + (self.basis.project_bias(b) if self.project_bias else b)


@pytest.mark.parametrize("group,geodl_group", [("O3", "O3"), ("SO3", "SO3"), ("O2z", "O2_axis"), ("O3+scale", "O3+scale")])
def test_check_module_on_projected_layer(group, geodl_group):
    from geodl.testing import check_module

    rep_in, rep_out = "2xscalars+vectors+sh2+pseudovectors", "scalars+2xvectors+tensor2+sh2"
    m = _ProjectedLinear(rep_in, rep_out, group, geodl_group)
    x = torch.randn(6, Rep(rep_in).dim, dtype=F64, generator=_gen(2))
    rep = check_module(m, {"x": x}, checks=("equivariance", "batching", "state_dict", "gradients"), atol=1e-6)
    assert rep.passed
    # a broken layer (a free bias) fails the same check (the check can fail)
    with torch.no_grad():
        m.b.add_(torch.randn(m.b.shape, dtype=F64, generator=_gen(3)))
    m.project_bias = False
    with pytest.raises(AssertionError):
            check_module(m, {"x": x}, checks=("equivariance",), atol=1e-6)


def test_high_degree_and_size_limits():
    B = equivariant_basis("sh8+sh7", "sh8", "O3")
    assert B.rank == 1 and equivariant_basis("sh7", "sh7", "SO2z").rank == 15
    Q = B.basis_dense()
    assert torch.allclose(Q.T @ Q, torch.eye(1, dtype=F64), atol=1e-12)
    with pytest.raises(ValueError, match="rep_in"):
        equivariant_basis("sh40", "sh40", "O3")
    with pytest.raises(ValueError, match="rep_in"):
        equivariant_basis("1000000000xvectors", "1000000xvectors", "O3")
