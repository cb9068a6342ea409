"""SPA-SConv (spherical padding + pole-flip symmetric kernel) and spherical max-pooling."""

import pytest
import torch

from geodl.nn.spherical import SPAConv2d, SphericalMaxPool2d, spherical_pad
from geodl.testing import check_module


def flip(x):
    return torch.flip(x, (-2, -1))


def _declared(module, H, W):
    s = module.symmetry_for(H, W)
    return dict(group=s.group, in_kinds=dict(s.in_kinds), out_kinds=s.out_kinds)


# ------------------------------------------------------------------------------------- padding
def test_spherical_pad_pole_rows_reversed_and_rolled_by_half_the_width():
    H, W = 4, 6
    x = torch.arange(H * W, dtype=torch.float64).reshape(1, 1, H, W)
    p = spherical_pad(x, 2, 1)[0, 0]
    assert p.shape == (H + 4, W + 2)
    core = p[:, 1:-1]
    assert torch.equal(core[2:-2], x[0, 0])
    # row just above row 0 is row 0 across the pole (azimuth + pi), the next one row 1
    assert torch.equal(core[1], torch.roll(x[0, 0, 0], W // 2))
    assert torch.equal(core[0], torch.roll(x[0, 0, 1], W // 2))
    assert torch.equal(core[-2], torch.roll(x[0, 0, -1], W // 2))
    assert torch.equal(core[-1], torch.roll(x[0, 0, -2], W // 2))
    # columns wrap around the seam
    assert torch.equal(p[:, 0], core[:, -1]) and torch.equal(p[:, -1], core[:, 0])


def test_spherical_pad_commutes_with_the_flip_only_for_even_width():
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    assert torch.equal(spherical_pad(flip(x), 1, 1), flip(spherical_pad(x, 1, 1)))
    assert torch.equal(spherical_pad(torch.roll(x, 3, -1), 2, 1)[..., 1:-1],
                       torch.roll(spherical_pad(x, 2, 1)[..., 1:-1], 3, -1))
    # why W must be even: the pole padding rolls by W/2, and flip(roll(r, W//2)) = roll(flip(r), W//2)
    # needs W//2 = -W//2 (mod W). With an odd W (if the roll were floor(W/2)) the flip breaks:
    r = torch.arange(7.0)
    assert not torch.equal(torch.flip(torch.roll(r, 7 // 2), (0,)), torch.roll(torch.flip(r, (0,)), 7 // 2))
    with pytest.raises(ValueError, match="^x: .*even"):
        spherical_pad(torch.randn(1, 1, 4, 7), 1, 1)
    with pytest.raises(ValueError, match="^pad_h"):
        spherical_pad(x, 7, 0)
    with pytest.raises(ValueError, match="^pad_w"):
        spherical_pad(x, 0, -1)


# ------------------------------------------------------------------------------- check_module
def test_spa_sconv_passes_check_module_with_the_equirect_kind():
    torch.manual_seed(0)
    H, W = 6, 8
    conv = SPAConv2d(2, 3, padding="spherical", symmetric=True, resolution=(H, W))
    assert conv.symmetry.group == "equirect:8" and conv.symmetry.in_kinds["x"] == "equirect:6x8"
    x = torch.randn(4, 2, H, W)
    report = check_module(conv, {"x": x}, n_samples=6, atol=1e-6, rtol=0.0)
    assert report.passed, str(report)
    # float32 as well, at the 1e-6 of the issue
    report = check_module(conv, {"x": x}, dtype=torch.float32, atol=1e-6, rtol=0.0,
                          checks=("equivariance",), n_samples=6)
    assert report.passed, str(report)


def test_spa_sconv_exact_under_flip_and_every_roll_float64():
    torch.manual_seed(1)
    conv = SPAConv2d(3, 4, kernel_size=3, dilation=(1, 2)).double()
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    y = conv(x)
    assert (conv(flip(x)) - flip(y)).abs().max() <= 1e-12
    for k in range(1, 12):
        assert (conv(torch.roll(x, k, -1)) - torch.roll(y, k, -1)).abs().max() <= 1e-12
    # and with a non-symmetric kernel (no symmetric max) the flip breaks
    plain = SPAConv2d(3, 4, symmetric=False).double()
    assert (plain(flip(x)) - flip(plain(x))).abs().max() > 1e-3


def test_zero_padded_ablation_fails_check_module():
    torch.manual_seed(0)
    H, W = 6, 8
    abl = SPAConv2d(2, 3, padding="zeros", symmetric=False)
    x = torch.randn(4, 2, H, W)
    report = check_module(abl, {"x": x}, **_declared(abl, H, W), n_samples=6, raise_on_fail=False,
                          checks=("equivariance",))
    assert not report.passed and "equivariance" in report.failed
    table = str(report)
    assert "FAIL" in table and "roll" in table and "pole_flip" in table
    # the same declaration passes for SPA-SConv with the same weights shape
    spa = SPAConv2d(2, 3)
    assert check_module(spa, {"x": x}, **_declared(spa, H, W), n_samples=6, checks=("equivariance",)).passed
    # each half of the ablation is wrong on its own: zeros break the rolls, no symmetric max breaks the flip
    zs = SPAConv2d(2, 3, padding="zeros", symmetric=True).double()
    xd = x.double()
    assert (zs(flip(xd)) - flip(zs(xd))).abs().max() <= 1e-12
    assert (zs(torch.roll(xd, 1, -1)) - torch.roll(zs(xd), 1, -1)).abs().max() > 1e-3


def test_stride_two_declares_what_holds():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    # 3x3 at stride 2: the padding (0, 1) is not mirror-symmetric, yet the symmetric max keeps the flip
    c3 = SPAConv2d(2, 2, kernel_size=3, stride=2).double()
    assert c3.pads == ((0, 1), (0, 1)) and c3.symmetry_for(8, 8).group == "equirect:4"
    y = c3(x)
    assert y.shape == (2, 2, 4, 4)
    assert (c3(flip(x)) - flip(y)).abs().max() <= 1e-12
    assert (c3(torch.roll(x, 2, -1)) - torch.roll(y, 1, -1)).abs().max() <= 1e-12
    assert check_module(c3, {"x": x}, **_declared(c3, 8, 8), checks=("equivariance",), n_samples=6).passed
    # a roll by an odd number of bins is not a whole output bin: it is not in the group, and indeed fails
    assert min((c3(torch.roll(x, 1, -1)) - torch.roll(y, s, -1)).abs().max() for s in range(4)) > 1e-3
    # without the symmetric max the flip is lost (at stride 1 as well)
    c3.symmetric = False
    assert (c3(flip(x)) - flip(c3(x))).abs().max() > 1e-3
    assert not check_module(c3, {"x": x}, **_declared(c3, 8, 8), checks=("equivariance",), n_samples=6,
                            raise_on_fail=False).passed


def test_max_pool_commutes_with_flip_and_even_rolls():
    torch.manual_seed(0)
    pool = SphericalMaxPool2d(resolution=(8, 12))
    x = torch.randn(3, 2, 8, 12)
    y = pool(x)
    assert y.shape == (3, 2, 4, 6)
    assert torch.equal(pool(flip(x)), flip(y))
    for k in (2, 4, 10):
        assert torch.equal(pool(torch.roll(x, k, -1)), torch.roll(y, k // 2, -1))
    assert not torch.equal(pool(torch.roll(x, 1, -1))[..., :, :], torch.roll(y, 0, -1))
    report = check_module(pool, {"x": x}, n_samples=6, checks=("equivariance", "batching", "compile"))
    assert report.passed, str(report)
    # 3x3 at stride 2: windows not mirror-symmetric: declared (and holding) rolls only
    p32 = SphericalMaxPool2d(3, 2)
    assert p32.symmetry_for(8, 12).group == "azimuth:6"
    assert not torch.equal(p32(flip(x)), flip(p32(x)))
    assert check_module(p32, {"x": x}, **_declared(p32, 8, 12), checks=("equivariance",)).passed
    # 3x3 at stride 1: padded across the poles and the seam, commutes with every roll and the flip
    p3 = SphericalMaxPool2d(3, 1)
    assert torch.equal(p3(flip(x)), flip(p3(x)))
    assert torch.equal(p3(torch.roll(x, 5, -1)), torch.roll(p3(x), 5, -1))
    # the max over the 3x3 neighbourhood of row 0 sees row 0 across the pole
    z = torch.zeros(1, 1, 4, 8)
    z[0, 0, 0, 0] = 1.0
    assert p3(z)[0, 0, 0, 4] == 1.0  # half a turn away, across the north pole


# ----------------------------------------------------------------------------------- bad input
def test_bad_inputs():
    conv = SPAConv2d(2, 3)
    with pytest.raises(ValueError, match="^x: .*even"):
        conv(torch.randn(1, 2, 4, 7))
    with pytest.raises(ValueError, match="^x: .*even"):
        SphericalMaxPool2d(1, 1)(torch.randn(1, 2, 4, 7))
    with pytest.raises(ValueError, match="^x: expected 2 channels"):
        conv(torch.randn(1, 3, 4, 8))
    with pytest.raises(ValueError, match="^x"):
        conv(torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="^x: .*divisible"):
        SPAConv2d(2, 3, stride=4)(torch.randn(1, 2, 6, 8))
    with pytest.raises(ValueError, match="^x: .*smaller"):
        SPAConv2d(2, 3, kernel_size=7)(torch.randn(1, 2, 2, 8))
    with pytest.raises(ValueError, match="^padding"):
        SPAConv2d(2, 3, padding="circular")
    with pytest.raises(ValueError, match="^kernel_size"):
        SPAConv2d(2, 3, kernel_size=0)
    with pytest.raises(TypeError, match="^symmetric"):
        SPAConv2d(2, 3, symmetric=1)
    with pytest.raises(ValueError, match="^in_channels"):
        SPAConv2d(0, 3)
    with pytest.raises(TypeError, match="resolution"):
        _ = SPAConv2d(2, 3).symmetry
    # zero padding works for odd W (nothing is rolled); empty batches are fine
    assert SPAConv2d(2, 3, padding="zeros", symmetric=False)(torch.randn(1, 2, 4, 7)).shape == (1, 3, 4, 7)
    assert conv(torch.randn(0, 2, 4, 8)).shape == (0, 3, 4, 8)
    assert SphericalMaxPool2d()(torch.randn(0, 2, 4, 8)).shape == (0, 2, 2, 4)


def test_empty_batch_backward_and_pool_declarations():
    conv = SPAConv2d(2, 3).double()
    x = torch.zeros(0, 2, 4, 8, dtype=torch.float64, requires_grad=True)
    conv(x).sum().backward()
    assert x.grad.shape == x.shape
    # pooling windows are mirror-symmetric only for kernel >= stride with an even difference
    assert SphericalMaxPool2d(2, 2).symmetry_for(4, 8).group == "equirect:4"
    assert SphericalMaxPool2d(3, 1).symmetry_for(4, 8).group == "equirect:8"
    assert SphericalMaxPool2d(1, 2).symmetry_for(4, 8).group == "azimuth:4"
    y = torch.randn(1, 1, 4, 8)
    p12 = SphericalMaxPool2d(1, 2)
    assert not torch.equal(p12(flip(y)), flip(p12(y)))


@pytest.mark.parametrize("padding", ["spherical", "zeros"])
@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 1), (3, 1, 2), (5, 1, 1), (2, 1, 1), (3, 2, 1)])
def test_symmetric_conv_is_the_two_copy_formula(padding, kernel, stride, dilation):
    """conv(x) = max(K * pad(x), flip(K * pad(flip x))) + b, whichever path computes it (stride 1 with
    odd kernels: one convolution with [K, flip(K)]; otherwise the map and its flipped copy)."""
    import torch.nn.functional as F

    from geodl.nn.spherical._conv import _pad

    torch.manual_seed(0)
    conv = SPAConv2d(3, 4, kernel, stride=stride, dilation=dilation, padding=padding).double()
    x = torch.randn(2, 3, 8, 16, dtype=torch.float64)
    ph, pw = conv.pads
    w = conv.conv.weight

    def flip(t):
        return torch.flip(t, (-2, -1))

    a = F.conv2d(_pad(x, padding, ph, pw), w, stride=stride, dilation=dilation)
    b = flip(F.conv2d(_pad(flip(x), padding, ph, pw), w, stride=stride, dilation=dilation))
    ref = torch.maximum(a, b) + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(conv(x), ref, atol=1e-12)
