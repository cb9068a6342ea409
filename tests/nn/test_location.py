"""Location encoders: shapes, gradients, continuity, factories and bad input."""

import math

import pytest
import torch

from geodl.nn import location
from geodl.nn.location import ENCODERS, NETWORKS, LocationEncoder, Siren, make_encoder
from geodl.testing import check_module

SMALL = {
    "sphericalharmonics": {"lmax": 6},
    "grid": {"frequency_num": 4},
    "theory": {"frequency_num": 4},
    "spherec": {"frequency_num": 4},
    "spherec+": {"frequency_num": 4},
    "spherem": {"frequency_num": 4},
    "spherem+": {"frequency_num": 4},
}


def _lonlat(n=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(n, generator=g) * 360 - 180, torch.rand(n, generator=g) * 180 - 90], 1).to(dtype)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_check_module_encoders(name):
    enc = make_encoder(name, **SMALL.get(name, {})).double()
    assert enc.symmetry.group == "perm"  # rows are independent samples; no rotation symmetry declared
    check_module(enc, {"lonlat": _lonlat(dtype=torch.float64)})


@pytest.mark.parametrize("build", [
    lambda: location.SirenLayer(5, 3, w0=30.0, is_first=True),
    lambda: Siren(5, 3, dim_hidden=8, num_layers=2),
    lambda: location.FcNet(5, 3, dim_hidden=8, num_blocks=1).eval(),  # rows independent in eval mode
    lambda: location.LinearHead(5, 3),
], ids=["SirenLayer", "Siren", "FcNet", "LinearHead"])
def test_check_module_networks(build):
    torch.manual_seed(0)
    net = build().double()
    check_module(net, {"x": torch.randn(9, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)})


def test_check_module_location_encoder():
    torch.manual_seed(0)
    model = LocationEncoder("sphericalharmonics", "siren", 2, encoder_kwargs={"lmax": 4},
                            network_kwargs={"dim_hidden": 8, "num_layers": 1}).double()
    check_module(model, {"lonlat": _lonlat(dtype=torch.float64)})


def test_cartesian3d_is_the_lonlat_to_xyz_helper():
    from geodl.groups import lonlat_to_xyz

    x = _lonlat(dtype=torch.float64)
    assert torch.equal(location.Cartesian3D()(x), lonlat_to_xyz(x))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_shape_grad_and_batching(name):
    enc = make_encoder(name, **SMALL.get(name, {}))
    x = _lonlat().requires_grad_(True)
    y = enc(x)
    assert y.shape == (16, enc.embedding_dim)
    assert torch.isfinite(y).all()
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * w).sum().backward()  # a random projection (sums of sin² + cos² have zero gradient)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    torch.testing.assert_close(enc(x[5:6].detach()), y[5:6].detach())


@pytest.mark.parametrize("name", ["sphericalharmonics", "cartesian3d", "wrap"])
def test_continuous_encoders_agree_across_dateline_and_at_poles(name):
    enc = make_encoder(name, **SMALL.get(name, {}))
    a = enc(torch.tensor([[180.0, 20.0], [0.0, 90.0]], dtype=torch.float64))
    b = enc(torch.tensor([[-180.0, 20.0], [123.0, 90.0]], dtype=torch.float64))
    if name == "wrap":  # wrap is continuous across the dateline but not at the pole (it encodes λ there)
        a, b = a[:1], b[:1]
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_direct_is_discontinuous_at_dateline():
    """Why the baselines exist: 'direct' separates two points that are the same place."""
    enc = make_encoder("direct")
    d = enc(torch.tensor([[180.0, 0.0], [-180.0, 0.0]]))
    assert (d[0] - d[1]).abs().max() == pytest.approx(2 * math.pi)


def test_sh_encoder_is_the_op():
    from geodl.ops import spherical_harmonics

    x = _lonlat(dtype=torch.float64)
    torch.testing.assert_close(make_encoder("sphericalharmonics", lmax=5)(x), spherical_harmonics(5, x, input="lonlat"))


def test_siren_init_keeps_activations_spread():
    torch.manual_seed(0)
    net = Siren(64, 1, dim_hidden=256, num_layers=4)
    h = torch.rand(2000, 64) * 2 - 1
    for layer in net.layers[:-1]:
        h = layer(h)
        # SIREN's init: hidden activations are arcsine-distributed on [-1, 1], std ≈ 1/√2
        assert 0.5 < h.std().item() < 0.85
    first = net.layers[0]
    assert first.w0 == 30.0 and first.linear.weight.abs().max() <= 1 / 64


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_location_encoder_composition_and_gradients(network):
    model = LocationEncoder("sphericalharmonics", network, 3, encoder_kwargs={"lmax": 4})
    out = model(_lonlat())
    assert out.shape == (16, 3)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_module_encoder_and_network():
    enc = location.Wrap()
    model = LocationEncoder(enc, torch.nn.Linear(4, 2), 2)
    assert model(_lonlat()).shape == (16, 2)


@pytest.mark.parametrize(
    "build,exc,match",
    [
        (lambda: make_encoder("nope"), ValueError, "encoder"),
        (lambda: location.make_network("nope", 3, 1), ValueError, "network"),
        (lambda: LocationEncoder("wrap", "linear", 0), ValueError, "num_classes"),
        (lambda: LocationEncoder(torch.nn.Identity(), "linear", 1), TypeError, "encoder"),
        (lambda: location.Grid(frequency_num=0), ValueError, "frequency_num"),
        (lambda: location.SphericalHarmonicsEncoder(-2), ValueError, "lmax"),
    ],
)
def test_bad_construction(build, exc, match):
    with pytest.raises(exc, match=match):
        build()


@pytest.mark.parametrize(
    "x", [torch.tensor([[0.0, 95.0]]), torch.tensor([[float("nan"), 0.0]]), torch.tensor([[1.0, 2.0, 3.0]])]
)
@pytest.mark.parametrize("name", ["sphericalharmonics", "spherem", "direct"])
def test_bad_lonlat(name, x):
    with pytest.raises(ValueError, match="lonlat"):
        make_encoder(name, **SMALL.get(name, {}))(x)
