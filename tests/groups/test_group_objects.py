"""Group objects: names, attributes, sampling, structured elements, composition and inverse."""

import pytest
import torch

from geodl.groups import GROUP_NAMES, Group, GroupElement, act, get_group

from ._helpers import F64, gen

# name -> (dim, reflections, translations, permutations, scaling, finite)
ATTRS = {
    "SO2": (2, False, False, False, False, False),
    "O2": (2, True, False, False, False, False),
    "SE2": (2, False, True, False, False, False),
    "E2": (2, True, True, False, False, False),
    "SO3": (3, False, False, False, False, False),
    "O3": (3, True, False, False, False, False),
    "SE3": (3, False, True, False, False, False),
    "E3": (3, True, True, False, False, False),
    "tetrahedral": (3, False, False, False, False, True),
    "octahedral": (3, False, False, False, False, True),
    "icosahedral": (3, False, False, False, False, True),
    "O2_axis": (3, True, False, False, False, False),
    "perm": (None, False, False, True, False, True),
    "scale": (None, False, False, False, True, False),
    "E3+perm": (3, True, True, True, False, False),
    "SO3+scale": (3, False, False, False, True, False),
    "icosahedral+perm": (3, False, False, True, False, True),
    "perm+scale": (None, False, False, True, True, False),
}


@pytest.mark.parametrize("name", ATTRS)
def test_attributes(name):
    G = get_group(name)
    assert isinstance(G, Group) and G.name == name
    got = (G.dim, G.has_reflections, G.has_translations, G.has_permutations, G.has_scaling, G.is_finite)
    assert got == ATTRS[name]
    assert get_group(G) is G


def test_aliases_and_canonical_order():
    assert get_group("SO(3)").name == "SO3"
    assert get_group("so3").name == "SO3"
    assert get_group("scale + E3 + perm").name == "E3+perm+scale"
    assert get_group("E3+perm") == get_group("perm+E3")
    assert set(GROUP_NAMES) >= {"SO2", "O2", "SO3", "O3", "SE3", "E3", "perm", "scale", "O2_axis",
                                "tetrahedral", "octahedral", "icosahedral"}


@pytest.mark.parametrize("name", [n for n in ATTRS])
def test_sample_is_a_valid_element_and_reproducible(name):
    G = get_group(name)
    a = G.sample(generator=gen(0), n_nodes=6)
    b = G.sample(generator=gen(0), n_nodes=6)
    c = G.sample(generator=gen(1), n_nodes=6)
    assert a.label == "haar"
    for f in ("rotation", "translation", "perm"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None) and (x is None or torch.equal(x, y))
    assert a.scale == b.scale
    if G.dim is not None:
        R = a.rotation
        assert R.shape == (G.dim, G.dim) and R.dtype == F64
        assert torch.allclose(R @ R.T, torch.eye(G.dim, dtype=F64), atol=1e-13)
    assert (a.translation is not None) == G.has_translations
    assert (a.scale is not None) == G.has_scaling
    if G.has_permutations:
        assert torch.equal(a.perm.sort().values, torch.arange(6))
    else:
        assert a.perm is None
    if not G.is_finite or G.has_permutations:
        fields = [getattr(a, f) for f in ("rotation", "translation", "perm")]
        others = [getattr(c, f) for f in ("rotation", "translation", "perm")]
        assert any(x is not None and not torch.equal(x, y) for x, y in zip(fields, others)) or a.scale != c.scale


@pytest.mark.parametrize("name,dim", [("O3", 3), ("O2", 2), ("E3", 3)])
def test_reflection_groups_sample_both_components(name, dim):
    dets = {round(float(torch.linalg.det(get_group(name).sample(generator=gen(s)).rotation))) for s in range(40)}
    assert dets == {-1, 1}


def test_o2_axis_fixes_its_axis():
    axis = torch.tensor([1.0, 2.0, -2.0], dtype=F64) / 3
    G = get_group("O2_axis", axis=axis * 5)
    assert torch.allclose(G.axis, axis)
    dets = set()
    for s in range(40):
        R = G.sample(generator=gen(s)).rotation
        assert torch.allclose(R @ axis, axis, atol=1e-14)
        assert torch.allclose(R @ R.T, torch.eye(3, dtype=F64), atol=1e-14)
        dets.add(round(float(torch.linalg.det(R))))
    assert dets == {-1, 1}
    refl = [g for g in G.structured() if g.label == "reflection"]
    assert len(refl) == 2
    for g in refl:
        assert torch.allclose(g.rotation @ axis, axis, atol=1e-14)
        assert float(torch.linalg.det(g.rotation)) == pytest.approx(-1)
    assert torch.allclose(get_group("O2_axis").axis, torch.tensor([0.0, 0.0, 1.0], dtype=F64))


def test_structured_elements():
    G = get_group("E3+perm+scale")
    els = G.structured(n_nodes=5, generator=gen(0))
    labels = [g.label for g in els]
    assert labels[0] == "identity"
    assert labels.count("reflection") == 4 and labels.count("translation") == 2
    assert labels.count("perm") == 2 and labels.count("scale") == 2
    for g in els:
        if g.label == "reflection":
            assert float(torch.linalg.det(g.rotation)) == pytest.approx(-1)
            assert torch.allclose(g.rotation @ g.rotation.T, torch.eye(3, dtype=F64), atol=1e-14)
        if g.label == "translation":
            assert torch.equal(g.rotation, torch.eye(3, dtype=F64)) and g.translation.norm() > 0
        if g.label == "scale":
            assert g.scale in (0.5, 2.0)
    perms = [g.perm for g in els if g.label == "perm"]
    assert torch.equal(perms[0], torch.arange(4, -1, -1))
    refl = [g.rotation for g in els if g.label == "reflection"]
    assert torch.equal(refl[0], -torch.eye(3, dtype=F64))  # inversion x -> -x
    assert [g.label for g in get_group("SO3").structured()] == ["identity"]
    assert {g.label for g in get_group("O2").structured()} == {"identity", "reflection"}
    with pytest.raises(ValueError, match="^n_nodes:"):
        get_group("E3+perm").structured()
    with pytest.raises(ValueError, match="^n_nodes:"):
        get_group("perm").sample()


def _same_action(g, h, n=7):
    x = torch.randn(n, 3, generator=gen(99), dtype=F64)
    return all(torch.allclose(act(k, g, x), act(k, h, x), atol=1e-12) for k in ("node:points", "node:pseudovectors"))


def test_compose_inverse_identity_for_every_part():
    G = get_group("E3+perm+scale")
    g = G.sample(generator=gen(1), n_nodes=7)
    h = G.sample(generator=gen(2), n_nodes=7)
    e = G.identity(n_nodes=7)
    assert e.label == "identity" and torch.equal(e.perm, torch.arange(7))
    assert _same_action(G.compose(g, G.inverse(g)), e)
    assert _same_action(G.compose(G.inverse(g), g), e)
    assert _same_action(G.compose(g, e), g) and _same_action(G.compose(e, g), g)
    # associativity and g @ h shorthand
    k = G.sample(generator=gen(3), n_nodes=7)
    assert _same_action(G.compose(G.compose(g, h), k), G.compose(g, G.compose(h, k)))
    assert _same_action(g @ h, G.compose(g, h))
    # an element with missing parts composes with a full one
    assert _same_action(G.compose(GroupElement(), g), g)


def test_element_to_and_validation():
    g = get_group("SE3+perm").sample(generator=gen(0), n_nodes=3)
    h = g.to(dtype=torch.float32)
    assert h.rotation.dtype == torch.float32 and h.translation.dtype == torch.float32 and h.perm.dtype == torch.int64
    assert GroupElement().dim is None and float(GroupElement().det) == 1.0


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: get_group("SO4"), ValueError, "group"),
        (lambda: get_group("E3+SO3"), ValueError, "group"),
        (lambda: get_group("perm+perm"), ValueError, "group"),
        (lambda: get_group(3), TypeError, "group"),
        (lambda: get_group("SO3", axis=(0, 0, 1)), ValueError, "axis"),
        (lambda: get_group("O2_axis", axis=(0, 0, 0)), ValueError, "axis"),
        (lambda: GroupElement(rotation=torch.full((3, 3), float("nan"))), ValueError, "rotation"),
        (lambda: GroupElement(rotation=torch.eye(4)), ValueError, "rotation"),
        (lambda: GroupElement(rotation=torch.eye(3), translation=torch.ones(2)), ValueError, "translation"),
        (lambda: GroupElement(scale=-1.0), ValueError, "scale"),
        (lambda: GroupElement(perm=torch.arange(3.0)), TypeError, "perm"),
        (lambda: get_group("perm").sample(n_nodes=0), ValueError, "n_nodes"),
        (lambda: get_group("SO3").compose(GroupElement(), "g"), TypeError, "h"),
        (lambda: get_group("SO3").compose(GroupElement(rotation=torch.eye(2)), GroupElement(rotation=torch.eye(3))),
         ValueError, "h"),
    ],
)
def test_bad_input_names_the_argument(call, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        call()
