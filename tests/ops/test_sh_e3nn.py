"""spherical_harmonics with e3nn's options (normalize=False, normalization, degree lists, zero
vectors) against ``e3nn.o3.spherical_harmonics``: values, gradients, memory, torch.compile."""

import math

import pytest
import torch

from geodl.ops import spherical_harmonics

o3 = pytest.importorskip("e3nn.o3")

NORMALIZATIONS = ("integral", "norm", "component")
DEGREES = (8, [0, 2, 3], [8], [3, 1, 3], [5, 0])  # an int: all degrees 0..8 (e3nn: list(range(9)))


def _vectors(n, dtype=torch.float64, seed=0):
    """Vectors of lengths 0.3..3 (not unit), the axes and two near-polar directions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True) * (0.3 + 2.7 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    special = torch.tensor([[1.5, 0, 0], [0, 0.5, 0], [0, 0, 2.0], [0, -1, 1e-7], [1e-6, 2, 0]], dtype=torch.float64)
    return torch.cat([special, x]).to(dtype)


def _e3nn(degrees, x, normalize, normalization):
    ls = list(range(degrees + 1)) if isinstance(degrees, int) else list(degrees)
    return o3.spherical_harmonics(ls, x, normalize=normalize, normalization=normalization)


def _scale(degrees, x, normalize):
    """Per-entry size of the harmonics (|x|^l with normalize=False, else 1; times √(2l+1))."""
    ls = range(degrees + 1) if isinstance(degrees, int) else degrees
    l = torch.tensor([k for k in ls for _ in range(2 * k + 1)], dtype=x.dtype)
    r = x.norm(dim=-1, keepdim=True).clamp_min(1.0) if not normalize else torch.ones(x.shape[0], 1, dtype=x.dtype)
    return r**l * torch.sqrt(2 * l + 1)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("normalize", [True, False])
def test_values_match_e3nn_float64(backend, normalize, normalization):
    """Every option combination, degrees up to 8, to 1e-12 of the entries' size (e3nn's basis)."""
    x = _vectors(40)
    for degrees in DEGREES:
        ours = spherical_harmonics(degrees, x, convention="e3nn", normalize=normalize, normalization=normalization)
        ref = _e3nn(degrees, x, normalize, normalization)
        assert ours.shape == ref.shape
        err = ((ours - ref).abs() / _scale(degrees, x, normalize)).max().item()
        assert err <= 1e-12, (degrees, err)


@pytest.mark.parametrize("normalize", [True, False])
def test_values_match_e3nn_float32(backend, normalize):
    x = _vectors(40, torch.float32)
    for normalization in NORMALIZATIONS:
        ours = spherical_harmonics(8, x, convention="e3nn", normalize=normalize, normalization=normalization)
        ref = _e3nn(8, x.double(), normalize, normalization)
        assert ours.dtype == torch.float32
        assert ((ours.double() - ref).abs() / _scale(8, x.double(), normalize)).max() <= 2e-6


def test_options_apply_to_the_real_and_complex_conventions():
    """normalize=False is |x|^l times the harmonics of the direction, the normalisations are fixed
    factors per degree, a degree list selects blocks, in every convention."""
    x = _vectors(12)
    r = x.norm(dim=1, keepdim=True)
    l = torch.arange(5).repeat_interleave(2 * torch.arange(5) + 1).double()
    factor = {"integral": torch.ones_like(l), "component": torch.full_like(l, math.sqrt(4 * math.pi)),
              "norm": torch.sqrt(4 * math.pi / (2 * l + 1))}
    for convention in ("real", "e3nn", "complex"):
        unit = spherical_harmonics(4, x, convention=convention)
        for normalization, f in factor.items():
            got = spherical_harmonics(4, x, convention=convention, normalize=False, normalization=normalization)
            torch.testing.assert_close(got, unit * r**l * f, atol=1e-12 * 81, rtol=1e-13)
        blocks = spherical_harmonics([3, 1, 3], x, convention=convention, normalize=False)
        full = spherical_harmonics(3, x, convention=convention, normalize=False)
        torch.testing.assert_close(blocks, torch.cat([full[:, 9:16], full[:, 1:4], full[:, 9:16]], 1), atol=0, rtol=0)


@pytest.mark.parametrize("normalize", [True, False])
def test_zero_vectors_like_e3nn(backend, normalize):
    """allow_zero_vectors=True: a zero vector (a self-loop) gives [Y_0, 0, ...] as in e3nn, the
    other rows are untouched; by default a zero vector raises."""
    x = _vectors(6)
    x[[0, 4]] = 0.0
    for normalization in NORMALIZATIONS:
        for degrees in (6, [0, 2, 3], [2]):
            ours = spherical_harmonics(degrees, x, convention="e3nn", normalize=normalize,
                                       normalization=normalization, allow_zero_vectors=True)
            ref = _e3nn(degrees, x, normalize, normalization)
            err = ((ours - ref).abs() / _scale(degrees, x, normalize)).max().item()
            assert err <= 1e-12, (normalization, degrees, err)
    y = spherical_harmonics(3, x, allow_zero_vectors=True, normalize=normalize)
    assert y[0, 0] == y[4, 0] == pytest.approx(1 / math.sqrt(4 * math.pi), abs=1e-15)
    assert (y[[0, 4], 1:] == 0).all()
    with pytest.raises(ValueError, match="allow_zero_vectors"):
        spherical_harmonics(3, x, normalize=normalize)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_gradients_match_e3nn(backend, normalization):
    """First-order gradients against autograd through e3nn's polynomials, degree lists included;
    with normalize=False at zero vectors too (the polynomial's exact gradient, nonzero for
    degree 1). With normalize=True a zero vector's gradient is 0 (e3nn's degree 1 there is about
    1e12: it divides by max(|x|, 1e-12))."""
    x = _vectors(20)
    x[3] = 0.0
    g = torch.Generator().manual_seed(3)
    for degrees in (6, [0, 2, 3], [1], [3, 1]):
        for normalize in (False, True):
            ref_x = x.clone().requires_grad_(True)
            ref = _e3nn(degrees, ref_x, normalize, normalization)
            w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
            (ref_g,) = torch.autograd.grad((ref * w).sum(), ref_x)
            ours_x = x.clone().requires_grad_(True)
            ours = spherical_harmonics(degrees, ours_x, convention="e3nn", normalize=normalize,
                                       normalization=normalization, allow_zero_vectors=True)
            (ours_g,) = torch.autograd.grad((ours * w).sum(), ours_x)
            keep = torch.ones(x.shape[0], dtype=torch.bool)
            if normalize:
                keep[3] = False
                assert (ours_g[3] == 0).all()
            scale = ref_g[keep].abs().max().item()
            assert (ours_g[keep] - ref_g[keep]).abs().max().item() <= 1e-12 * scale, (degrees, normalize)
            if not normalize and (degrees == 6 or 1 in degrees):
                assert ours_g[3].abs().max() > 0  # degree 1 is linear: its gradient at 0 is not 0


@pytest.mark.parametrize("normalize", [False, True])
def test_gradcheck_every_option(normalize):
    """Finite differences agree with the custom backward for each option (float64)."""
    x = _vectors(3)[[0, 3, 5, 6, 7]].clone()
    if not normalize:
        x[1] = 0.0  # the polynomial is smooth at 0 (with normalize=True the direction is not)
    x.requires_grad_(True)
    for normalization in NORMALIZATIONS:
        for degrees in (4, [0, 2, 3], [3, 1]):
            for convention in ("real", "e3nn"):
                def fn(p):
                    return spherical_harmonics(degrees, p, convention=convention, normalize=normalize,
                                               normalization=normalization, allow_zero_vectors=True)

                assert torch.autograd.gradcheck(fn, (x,))
    fn = lambda p: spherical_harmonics([0, 1, 2, 3], p, normalize=normalize, allow_zero_vectors=True)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_zero_vector_gradient_with_normalize_is_zero_and_finite():
    x = torch.tensor([[0.0, 0.0, 0.0], [0.3, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    y = spherical_harmonics(5, x, allow_zero_vectors=True)
    (g,) = torch.autograd.grad((y * torch.arange(36.0, dtype=torch.float64)).sum(), x)
    assert (g[0] == 0).all() and torch.isfinite(g).all() and g[1].abs().max() > 0


@pytest.mark.parametrize("kwargs", [dict(normalize=False), dict(normalize=False, allow_zero_vectors=True),
                                    dict(normalization="norm"), dict(normalize=False, normalization="component"),
                                    dict(allow_zero_vectors=True), dict(convention="e3nn", normalize=False)])
def test_backward_keeps_only_inputs_sized_tensors(kwargs):
    """The new options keep the custom backward's memory: no (N, K) tensor is saved for backward."""
    x = _vectors(40).requires_grad_(True)
    x.data[2] = 0.0
    saved = []  # numel of every tensor autograd saves
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        y = spherical_harmonics(6, x, **{"allow_zero_vectors": True, **kwargs})
        z = spherical_harmonics([0, 2, 3], x, **{"allow_zero_vectors": True, **kwargs})
    assert max(saved) <= max(x.numel(), y.shape[1])  # 135 or 49; an (N, K) tensor would hold 2,205
    (y.sum() + z.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_compile_fullgraph_with_the_new_options():
    """torch.compile(fullgraph=True, backend="aot_eager") of the new options (zero vectors
    included) gives eager's values and gradients."""
    x = _vectors(6)
    x[2] = 0.0

    def loss(p):
        a = spherical_harmonics([0, 2, 3], p, convention="e3nn", normalize=False, normalization="component",
                                allow_zero_vectors=True)
        b = spherical_harmonics(4, p, normalization="norm", allow_zero_vectors=True)
        c = spherical_harmonics([1], p, normalize=False, allow_zero_vectors=True)
        w = torch.arange(1.0, 26.0, dtype=p.dtype)
        return (a**3).sum() + (b**2 * w).sum() + (c * w[:3]).sum()  # c: the gradient at 0 is w's

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    xe = x.clone().requires_grad_(True)
    xc = x.clone().requires_grad_(True)
    (ge,) = torch.autograd.grad(loss(xe), xe)
    out = compiled(xc)
    (gc,) = torch.autograd.grad(out, xc)
    torch.testing.assert_close(out, loss(x), atol=1e-10, rtol=1e-12)
    torch.testing.assert_close(gc, ge, atol=1e-10, rtol=1e-12)
    assert ge[2].abs().max() > 0  # degree 1 of normalize=False at the zero vector
