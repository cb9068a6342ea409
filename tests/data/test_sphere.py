"""Sphere datasets: determinism, label correctness, lattice geometry, bad arguments."""

import math

import pytest
import torch

from geodl.data import checkerboard_dataset, fibonacci_sphere, landocean_dataset
from geodl.data._sphere import land_mask, uniform_sphere
from geodl.groups import lonlat_to_xyz as _lonlat_to_xyz


def test_fibonacci_lattice_is_spread_and_on_the_sphere():
    xyz = fibonacci_sphere(200, output="xyz")
    torch.testing.assert_close(xyz.norm(dim=1), torch.ones(200, dtype=torch.float64))
    d = torch.cdist(xyz, xyz) + 10 * torch.eye(200, dtype=torch.float64)
    nn = d.min(dim=1).values
    # nearly equal-area: nearest-neighbour distances within a factor ~1.5 of √(4π/n)
    spacing = math.sqrt(4 * math.pi / 200)
    assert 0.6 * spacing < nn.min() and nn.max() < 1.5 * spacing
    torch.testing.assert_close(_lonlat_to_xyz(fibonacci_sphere(200)), xyz)


def test_uniform_sphere_is_uniform_in_z():
    z = _lonlat_to_xyz(uniform_sphere(20000, seed=3))[:, 2]
    hist = torch.histc(z, bins=10, min=-1, max=1) / 20000
    assert (hist - 0.1).abs().max() < 0.01


def test_landocean_seeded_and_labels_from_mask():
    a = landocean_dataset("train", 300, seed=4).tensors
    b = landocean_dataset("train", 300, seed=4).tensors
    c = landocean_dataset("val", 300, seed=4).tensors
    assert a[0].equal(b[0]) and a[1].equal(b[1]) and not a[0].equal(c[0])
    assert a[1].equal(land_mask(a[0].double()))
    frac = a[1].float().mean().item()
    assert 0.2 < frac < 0.4  # ~29 % land


def test_landocean_known_places_and_test_grid():
    assert land_mask(torch.tensor([[2.35, 48.86], [-150.0, 0.0], [0.0, -89.0], [-40.0, 75.0]])).tolist() == [1, 0, 1, 1]
    x, y = landocean_dataset("test", nside=8).tensors
    assert x.shape == (768, 2) and y.shape == (768,)
    assert x[:, 0].abs().max() <= 180 and x[:, 1].abs().max() < 90


def test_checkerboard_labels_are_nearest_support_class():
    x, y = checkerboard_dataset("train", 2000, seed=1).tensors
    assert x.shape == (2000, 2) and y.dtype == torch.int64
    assert set(y.unique().tolist()) == set(range(16))
    support = fibonacci_sphere(200, output="xyz")
    dist = torch.cdist(_lonlat_to_xyz(x.double()), support)
    assert y.equal(dist.argmin(dim=1) % 16)
    x2, _ = checkerboard_dataset("test", 2000, seed=1).tensors
    assert not x.equal(x2)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: landocean_dataset("dev"), "split"),
        (lambda: landocean_dataset("train", 0), "num_samples"),
        (lambda: landocean_dataset("test", nside=12), "nside"),
        (lambda: checkerboard_dataset("train", num_support=0), "num_support"),
        (lambda: fibonacci_sphere(-1), "n"),
        (lambda: fibonacci_sphere(5, output="polar"), "output"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
