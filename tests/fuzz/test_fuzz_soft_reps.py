"""Fuzz of the soft-equivariance representations, candidate groups and projectors (registered with ``@fuzz``)."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, st, tensor_muts, values, with_cases  # noqa: F401

S = st()
_BASES = ["scalars", "vectors", "points", "pseudovectors", "tensor2", "sh0", "sh1", "sh2", "vectors*pseudovectors"]
_LIN_BASES = [b for b in _BASES if b != "points"]
_GROUPS = ["O3", "SO3", "O2x", "O2y", "O2z", "SO2x", "SO2y", "SO2z", "scale", "O2z+scale", "SO3+scale"]
_BAD_SPECS = values("", "3xfoo", "0xvectors", "vectors+", "2x(vectors+scalars)", "sh101", "points*vectors", "x",
                    f"{HUGE}x(tensor2*tensor2)", 3, None, 2.5)
_BAD_GROUPS = values("O4", "", "O3+SO3", "O3+T3", "T3", 3, None, "O2w")


@S.composite
def _spec(draw, bases=tuple(_BASES), max_terms=3):
    terms = []
    for _ in range(draw(S.integers(1, max_terms))):
        b = draw(S.sampled_from(bases))
        m = draw(S.integers(1, 3))
        terms.append(b if m == 1 else (f"{m}x({b})" if "*" in b else f"{m}x{b}"))
    return "+".join(terms)


@S.composite
def _rep_valid(draw):
    return dict(spec=draw(_spec()), seed=draw(S.integers(0, 2**31 - 1)))


@fuzz("geodl.nn.soft_equivariance.Rep", examples=40)
@with_cases(lambda: cases(_rep_valid(), {"spec": _BAD_SPECS}))
def build_rep(spec, seed):
    import torch

    from geodl.nn.soft_equivariance import Rep, candidate_group

    def call():
        return Rep(spec)

    def verify(r):
        expect(Rep(str(r)) == r and hash(Rep(str(r))) == hash(r), f"canonical form {r} does not re-parse")
        expect(r.slices()[-1].stop == r.dim, "slices do not cover dim")
        gen = torch.Generator().manual_seed(seed)
        g = candidate_group("O3+scale").sample(generator=gen)
        x = torch.randn(3, r.dim, dtype=torch.float64, generator=gen)
        y = r.act(g, x)
        finite(y)
        if "points" not in str(r):
            close(y, x @ r.matrix(g).T, atol=1e-10, msg="act vs matrix")

    return call, verify


@S.composite
def _group_valid(draw):
    return dict(name=draw(S.sampled_from(_GROUPS + ["T3", "SO3+T3", "scale+T3"])), seed=draw(S.integers(0, 2**31 - 1)))


@fuzz("geodl.nn.soft_equivariance.candidate_group", "geodl.nn.soft_equivariance.CandidateGroup", examples=30)
@with_cases(lambda: cases(_group_valid(), {"name": [Mut(m.note, m.fn, m.mode, ("group",)) for m in _BAD_GROUPS
                                                    if m.fn not in ("O3+T3", "T3")]}))
def build_candidate_group(name, seed):
    import torch

    from geodl.nn.soft_equivariance import candidate_group

    def call():
        G = candidate_group(name)
        return G, G.sample(generator=torch.Generator().manual_seed(seed))

    def verify(res):
        G, g = res
        expect(candidate_group(G.name) is G, "name is not canonical")
        expect(G.issubgroup(G), "not a subgroup of itself")
        if g.rotation is not None:
            close(g.rotation @ g.rotation.T, torch.eye(3, dtype=torch.float64), atol=1e-12, msg="orthogonal")
        expect((g.scale is not None) == G.scaling and (g.translation is not None) == G.translations, "parts")

    return call, verify


@fuzz("geodl.nn.soft_equivariance.CANDIDATE_GROUPS", examples=10)
@with_cases(lambda: cases(S.builds(lambda i: dict(i=i), S.integers(0, 9)), {}))
def build_candidate_groups(i):
    from geodl.nn.soft_equivariance import CANDIDATE_GROUPS, candidate_group

    def call():
        return CANDIDATE_GROUPS[i]

    def verify(name):
        expect(candidate_group(name).name == name, f"{name} is not canonical")

    return call, verify


@S.composite
def _basis_valid(draw):
    import torch

    rep_in, rep_out = draw(_spec(tuple(_LIN_BASES), 2)), draw(_spec(tuple(_LIN_BASES), 2))
    from geodl.nn.soft_equivariance import Rep

    seed = draw(S.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    lead = draw(S.sampled_from([(), (2,)]))
    W = torch.randn(*lead, Rep(rep_out).dim, Rep(rep_in).dim, generator=g, dtype=torch.float64)
    W = W * draw(S.sampled_from([1.0, 1e-30, 1e30]))
    return dict(rep_in=rep_in, rep_out=rep_out, group=draw(S.sampled_from(_GROUPS)), W=W, seed=seed)


_W_SHAPES = {"one row more": lambda W: W.new_zeros(*W.shape[:-2], W.shape[-2] + 1, W.shape[-1]),
             "transposed": lambda W: W.transpose(-1, -2).contiguous() if W.shape[-1] != W.shape[-2] else W[..., :-1],
             "1-d": lambda W: W.reshape(-1)}


@fuzz("geodl.nn.soft_equivariance.equivariant_basis", "geodl.nn.soft_equivariance.EquivariantBasis", examples=40)
@with_cases(lambda: cases(_basis_valid(), {"rep_in": _BAD_SPECS, "rep_out": _BAD_SPECS, "group": _BAD_GROUPS,
                                          "W": tensor_muts("W", shapes=_W_SHAPES)}))
def build_equivariant_basis(rep_in, rep_out, group, W, seed):
    import torch

    from geodl.nn.soft_equivariance import Rep, candidate_group, equivariant_basis

    def call():
        B = equivariant_basis(rep_in, rep_out, group)
        return B, B.project(W)

    def verify(res):
        B, PW = res
        finite(PW)
        c = float(W.abs().max()) or 1.0
        close(B.project(PW) / c, PW / c, atol=1e-10, msg="P² = P")
        close(B.expand(B.coefficients(PW)) / c, PW / c, atol=1e-10, msg="expand(coefficients)")
        g = candidate_group(group).sample(generator=torch.Generator().manual_seed(seed))
        Mi, Mo = Rep(rep_in).matrix(g), Rep(rep_out).matrix(g)
        close(Mo @ PW / c, PW @ Mi / c, atol=1e-9, msg="equivariance")

    return call, verify


@S.composite
def _penalty_valid(draw):
    import torch

    kw = draw(_basis_valid())
    from geodl.nn.soft_equivariance import Rep

    W = kw["W"].reshape(kw["W"].shape[-2:]) if kw["W"].dim() == 2 else kw["W"][0]
    kw["W"] = W / W.abs().max() * draw(S.sampled_from([1.0, 1e-30, 1e30, 1e150, 1e300]))
    kw["b"] = None if draw(S.booleans()) else torch.randn(Rep(kw["rep_out"]).dim, dtype=torch.float64,
                                                          generator=torch.Generator().manual_seed(kw["seed"]))
    kw["dtype"] = draw(S.sampled_from(["float64", "float32"]))
    return kw


@fuzz("geodl.nn.soft_equivariance.projection_penalty", examples=40)
@with_cases(lambda: cases(_penalty_valid(), {
    "rep_in": _BAD_SPECS, "rep_out": _BAD_SPECS, "group": _BAD_GROUPS, "W": tensor_muts("W", shapes=_W_SHAPES),
    "b": tensor_muts("b", none_ok=True, shapes={"one more": lambda b: b.new_zeros(b.shape[-1] + 1)})}))
def build_projection_penalty(W, b, rep_in, rep_out, group, dtype, seed):
    import torch

    from geodl.nn.soft_equivariance import equivariant_basis, projection_penalty

    dt = getattr(torch, dtype)
    Wd = W.to(dt) if isinstance(W, torch.Tensor) and W.is_floating_point() and torch.isfinite(W.to(dt)).all() else W

    def call():
        return projection_penalty(Wd, b, rep_in, rep_out, group)

    def verify(p):
        expect(p.dim() == 0 and not bool(torch.isnan(p)) and float(p) >= 0, f"penalty {p}")
        B = equivariant_basis(rep_in, rep_out, group)
        q = projection_penalty(B.project(Wd.double()), None if b is None else B.project_bias(b), rep_in, rep_out, group)
        c = float(Wd.double().abs().max())
        expect(not bool(torch.isnan(q)), "NaN penalty of a projected weight")
        if c < 1e100:
            expect(float(q) <= 1e-20 * max(1.0, c) ** 2, f"projected penalty {float(q)}")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_soft_reps"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
