"""spherical_harmonics at the edges of floating point: huge and tiny vectors, half precision,
sizes checked against memory before allocating, empty input, and the defaults' numbers kept."""

import math

import pytest
import torch

from geodl.ops import spherical_harmonics


def _unit(x):
    """Directions in float64, scaled first (the plain norm of 1e308 or 5e-324 is inf or 0)."""
    x = x.double()
    x = x / x.abs().amax(-1, keepdim=True)
    return x / x.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("dtype,vectors", [
    (torch.float32, [[1e20, 0, 0], [3e38, -3e38, 1e38], [1e-30, 0, 0], [0, 1e-30, -2e-30], [1e-45, 0, 1e-45],
                     [1e-40, 3e-41, 0]]),
    (torch.float64, [[1e200, 0, 0], [1e308, 1e308, -1e308], [1e-200, 0, 0], [5e-324, 0, 5e-324], [0, 1e-310, 1e-310]]),
])
def test_huge_and_tiny_vectors_have_their_direction(backend, dtype, vectors):
    """Scaled before squaring: x² neither overflows (1e20 in float32 gave the harmonics of 0) nor
    underflows (1e-30 in float32 was called a zero vector); subnormal vectors work too."""
    x = torch.tensor(vectors, dtype=dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    for convention in ("real", "e3nn"):
        got = spherical_harmonics(6, x, convention=convention)
        ref = spherical_harmonics(6, _unit(x), convention=convention)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), ref, atol=tol, rtol=0)
    exact = spherical_harmonics(1, torch.tensor([[1e20, 0.0, 0.0]]))  # the example
    assert exact.tolist() == spherical_harmonics(1, torch.tensor([[1.0, 0.0, 0.0]])).tolist()


def test_homogeneous_polynomials_at_large_and_small_lengths():
    """normalize=False at lengths 1e-30..1e10 (float64) against e3nn's polynomials, relatively;
    float32 entries whose |x|^l overflows are inf where the harmonic is nonzero, and 0 (not NaN)
    where it is 0."""
    o3 = pytest.importorskip("e3nn.o3")
    d = torch.tensor([[0.48, -0.6, 0.64], [1.0, 0.0, 0.0], [0.0, 0.6, 0.8]], dtype=torch.float64)
    for length in (1e-30, 1e-3, 1e10):
        x = d * length
        got = spherical_harmonics(6, x, convention="e3nn", normalize=False)
        ref = o3.spherical_harmonics(list(range(7)), x, normalize=False, normalization="integral")
        l = torch.arange(7).repeat_interleave(2 * torch.arange(7) + 1).double()
        err = ((got - ref).abs() / length**l).max().item()
        assert err <= 1e-12, (length, err)
    big = spherical_harmonics(3, torch.tensor([[1e20, 0.0, 0.0]]), normalize=False)
    assert not big.isnan().any()
    assert big[0, 3] == pytest.approx(1e20 * math.sqrt(3 / (4 * math.pi)), rel=1e-6)
    assert big[0, 8] == math.inf and big[0, 4] == 0  # 1e40 overflows float32; Y_2,-2 ∝ xy is 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_computed_in_float32(dtype):
    """float16/bfloat16 input: computed in float32, rounded to the input's dtype (documented);
    their own recursion erred by many times their rounding at degree 20."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g).to(dtype)
    y = spherical_harmonics(20, x)
    assert y.dtype == dtype
    assert torch.equal(y, spherical_harmonics(20, x.float()).to(dtype))
    ref = spherical_harmonics(20, x.double())
    l = torch.arange(21).repeat_interleave(2 * torch.arange(21) + 1).double()
    rounding = torch.finfo(dtype).eps * torch.sqrt((2 * l + 1) / (4 * math.pi))  # one ulp of the largest value
    assert ((y.double() - ref).abs() <= rounding).all()
    for kwargs in (dict(normalize=False), dict(convention="e3nn", normalization="norm"), dict(input="lonlat")):
        p = (x[:, :2] * 20).requires_grad_(True) if kwargs.get("input") else x.clone().requires_grad_(True)
        y = spherical_harmonics([0, 3], p, **kwargs)
        assert y.dtype == dtype
        y.float().sum().backward()
        assert p.grad.dtype == dtype and torch.isfinite(p.grad).all()
    assert spherical_harmonics(4, x, convention="complex").dtype == torch.complex64


@pytest.mark.parametrize("lmax", [10**6, [0, 10**6], [3, 200_000]])
@pytest.mark.parametrize("convention", ["real", "complex"])
def test_giant_lmax_is_a_value_error_naming_the_memory(lmax, convention):
    """Checked before anything is allocated (was a RuntimeError from the allocator, or minutes
    building tables): a ValueError naming lmax and the memory needed."""
    for n in (4, 0):  # no points: the per-column tables would still take terabytes
        with pytest.raises(ValueError, match=r"lmax: .* would need [0-9.e+]+ GiB of memory"):
            spherical_harmonics(lmax, torch.ones(n, 3), convention=convention, normalization="norm")


def test_size_check_counts_the_whole_output(monkeypatch):
    """An output just above the memory said to be available is refused, one below it is not
    (the check reads the device's available memory; here it is set to 1.5 GiB)."""
    import geodl._checks as checks

    monkeypatch.setattr(checks, "_available_bytes", lambda device: 3 << 29)
    n = 1 << 20  # 2^20 points x 441 float32 values: 1.72 GiB > 1.5 GiB
    with pytest.raises(ValueError, match="lmax: 20 asks for an output of 1048576 rows x 441"):
        spherical_harmonics(20, torch.ones(n, 3))
    with pytest.raises(ValueError, match="lmax"):  # 2^20 x 100 complex values: real, imaginary, complex
        spherical_harmonics(9, torch.ones(n, 3), convention="complex")
    spherical_harmonics(9, torch.ones(1 << 10, 3))  # small requests are not looked at


@pytest.mark.parametrize("kwargs", [dict(), dict(normalize=False), dict(convention="e3nn", normalization="norm"),
                                    dict(allow_zero_vectors=True), dict(normalize=False, allow_zero_vectors=True),
                                    dict(convention="complex"), dict(input="lonlat")])
@pytest.mark.parametrize("degrees", [3, [0, 2, 3]])
def test_empty_input_gives_empty_output_with_gradients(backend, kwargs, degrees):
    width = 2 if kwargs.get("input") == "lonlat" else 3
    k = 16 if degrees == 3 else 13
    for shape in ((0, width), (2, 0, width)):
        x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
        y = spherical_harmonics(degrees, x, **kwargs)
        assert y.shape == shape[:-1] + (k,)
        (y.real if y.is_complex() else y).sum().backward()
        assert x.grad.shape == x.shape


def test_default_numbers_are_unchanged():
    """The default path is bit for bit the orthonormal harmonics of x/|x| (the power-of-two scaling
    is exact), values and gradients, in float32 and float64."""
    from geodl.ops._sh import _SHReal

    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        x = (torch.randn(300, 3, generator=g, dtype=torch.float64) * 7).to(dtype)
        w = torch.randn(300, 100, generator=g, dtype=torch.float64).to(dtype)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya = spherical_harmonics(9, a)
        yb = _SHReal.apply(b / torch.linalg.vector_norm(b, dim=-1, keepdim=True), 9)
        assert torch.equal(ya, yb)
        (ya * w).sum().backward()
        (yb * w).sum().backward()
        assert torch.equal(a.grad, b.grad)
        e3 = spherical_harmonics(9, x, convention="e3nn")
        assert torch.equal(e3, _SHReal.apply((x / torch.linalg.vector_norm(x, dim=-1, keepdim=True))[:, [2, 0, 1]], 9))


@pytest.mark.parametrize("lmax,kwargs,error,match", [
    ([], {}, ValueError, "lmax"),
    ([1, -1], {}, ValueError, r"lmax\[1\]"),
    ([1.5], {}, TypeError, r"lmax\[0\]"),
    (2, {"normalization": "unit"}, ValueError, "normalization"),
    (2, {"allow_zero_vectors": "yes"}, TypeError, "allow_zero_vectors: expected a bool"),
    (2, {"normalize": False}, ValueError, "zero vectors"),
])
def test_bad_options(lmax, kwargs, error, match):
    with pytest.raises(error, match=match):
        spherical_harmonics(lmax, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), **kwargs)


def test_degree_list_forms():
    """A list, tuple, range or 1-D integer tensor of degrees; all of 0..l in order is the int form."""
    x = torch.tensor([[0.3, -0.2, 0.9]], dtype=torch.float64)
    full = spherical_harmonics(4, x)
    assert torch.equal(spherical_harmonics(range(5), x), full)
    assert torch.equal(spherical_harmonics(torch.tensor([4, 1]), x), torch.cat([full[:, 16:25], full[:, 1:4]], 1))
    assert torch.equal(spherical_harmonics((2,), x), full[:, 4:9])
