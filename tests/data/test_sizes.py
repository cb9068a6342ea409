"""Dataset sizes of geodl.data checked against the memory they would take before allocating, and what
0 samples does: point generators give empty tensors, datasets refuse 0 samples (``ValueError``)."""

from __future__ import annotations

import pytest
import torch

from geodl import _checks
from geodl.data import NBodyDataset, checkerboard_dataset, landocean_dataset
from geodl.data._nbody import generate_nbody, load_splits
from geodl.data._sphere import fibonacci_sphere, land_mask, uniform_sphere

SMALL = dict(frame_in=1, frame_out=2, sample_freq=5)


@pytest.mark.parametrize("call,match", [
    (lambda root: generate_nbody(10**10, **SMALL), r"^num: 10000000000 asks for 10000000000 trajectories of 5 particles"),
    (lambda root: generate_nbody(2, n_particles=10**6, **SMALL), r"^n_particles: 1000000 asks for the pair tables"),
    (lambda root: load_splits(root, sizes=(10**10, 1, 1)), r"^sizes: \(10000000000, 1, 1\) asks for"),
    (lambda root: NBodyDataset("val", root=root, sizes=(10**10, 1, 1)), r"^sizes: "),
    (lambda root: fibonacci_sphere(10**11), r"^n: 100000000000 asks for 100000000000 Fibonacci points"),
    (lambda root: uniform_sphere(10**11), r"^n: 100000000000 asks for 100000000000 uniform points"),
    (lambda root: landocean_dataset("train", 10**11), r"^num_samples: 100000000000 asks for"),
    (lambda root: checkerboard_dataset("train", 10**7, num_support=10**5), r"^num_samples: 10000000 asks for 10000000 samples "
                                                                       r"scored against 100000 support points"),
    (lambda root: checkerboard_dataset("train", 10, num_support=10**11), r"^num_support: 100000000000 asks for"),
])
def test_oversize_datasets_raise_before_allocating(call, match, tmp_path):
    with pytest.raises(ValueError, match=match) as info:
        call(tmp_path)
    assert "GiB of memory" in str(info.value) and "available" in str(info.value)
    assert not any(tmp_path.iterdir())  # nothing generated or written


@pytest.fixture
def tiny_memory(monkeypatch):
    """Every request is looked at, and only 100 kB are available."""
    monkeypatch.setattr(_checks, "_CHECKED_BYTES", 0)
    monkeypatch.setattr(_checks, "_available_bytes", lambda device: 100_000)


def test_limits_follow_available_memory(tiny_memory, tmp_path):
    with pytest.raises(ValueError, match=r"^num: 1000 "):
        generate_nbody(1000, **SMALL)
    with pytest.raises(ValueError, match=r"^sizes: \(400, 300, 300\) "):
        NBodyDataset("train", root=tmp_path, sizes=(400, 300, 300), **SMALL)
    assert not any(tmp_path.rglob("*.pt"))  # refused before generating
    with pytest.raises(ValueError, match=r"^n: 10000 "):
        fibonacci_sphere(10_000)
    with pytest.raises(ValueError, match=r"^num_samples: 1000 "):
        checkerboard_dataset("val", 1000, num_support=200)
    with pytest.raises(ValueError, match=r"^nside: 64 asks for"):
        landocean_dataset("test", nside=64)
    with pytest.raises(ValueError, match=r"^lonlat: 10000 asks for 10000 land-mask lookups"):
        land_mask(torch.zeros(10_000, 2))
    # small requests fit
    assert generate_nbody(2, **SMALL)["loc"].shape == (2, 5, 3)
    assert fibonacci_sphere(10).shape == (10, 2)


def test_point_generators_accept_zero_points():
    assert fibonacci_sphere(0).shape == (0, 2)
    assert fibonacci_sphere(0, output="xyz").shape == (0, 3)
    assert uniform_sphere(0).shape == (0, 2) and uniform_sphere(0, dtype=torch.float32).dtype == torch.float32
    out = land_mask(torch.zeros(0, 2))
    assert out.shape == (0,) and out.dtype == torch.int64


@pytest.mark.parametrize("call,match", [
    (lambda root: generate_nbody(0, **SMALL), "num"),
    (lambda root: load_splits(root, sizes=(3, 0, 2)), r"sizes\[1\] \(n_val\)"),
    (lambda root: NBodyDataset("val", root=root, sizes=(3, 2, 2), max_samples=0, **SMALL),
     "max_samples"),
    (lambda root: landocean_dataset("val", 0), "num_samples"),
    (lambda root: checkerboard_dataset("val", 0), "num_samples"),
    (lambda root: checkerboard_dataset("val", 5, num_support=0), "num_support"),
    (lambda root: fibonacci_sphere(-1), "n"),
    (lambda root: uniform_sphere(-3), "n"),
])
def test_datasets_refuse_zero_samples(call, match, tmp_path):
    with pytest.raises(ValueError, match=f"^{match}:"):
        call(tmp_path)
    assert not any(tmp_path.iterdir())  # refused before generating


def test_land_mask_checks_its_input():
    with pytest.raises(ValueError, match="^lonlat: expected shape"):
        land_mask(torch.zeros(3))


@pytest.mark.parametrize("call,err,match", [
    (lambda root: uniform_sphere(4, seed=2.5), TypeError, "seed: expected an int"),
    (lambda root: uniform_sphere(4, seed=None), TypeError, "seed: expected an int"),
    (lambda root: landocean_dataset("test", seed=2.5, nside=2), TypeError, "seed: expected an int"),
    (lambda root: checkerboard_dataset("val", 5, seed="1"), TypeError, "seed: expected an int"),
    (lambda root: NBodyDataset("val", root=3, sizes=(3, 2, 2), **SMALL), TypeError, "root: expected a str or os.PathLike"),
    (lambda root: NBodyDataset("val", root=root, sizes=(0, 1, 1), **SMALL), ValueError, r"sizes\[0\] \(n_train\)"),
])
def test_bad_arguments_name_the_argument(call, err, match, tmp_path):
    with pytest.raises(err, match=f"^{match}"):
        call(tmp_path)


@pytest.mark.parametrize("root", [b"x", ["a"], 3])
def test_cached_files_refuses_a_root_that_is_not_a_path(root):
    from geodl.data import cached_files

    with pytest.raises(TypeError, match="^root: expected a str or os.PathLike"):
        cached_files(root)


@pytest.mark.parametrize("lonlat,err,match", [
    (torch.zeros(2, 2, dtype=torch.complex64), TypeError, "lonlat: expected real"),
    (torch.zeros(2, 2, dtype=torch.bool), TypeError, "lonlat: expected real"),
    (torch.tensor([[0.0, 100.0]]), ValueError, r"lonlat: latitudes \(lonlat\[:, 1\]\) must lie in \[-90, 90\]"),
    (torch.tensor([[float("nan"), 0.0]]), ValueError, "lonlat: contains NaN"),
])
def test_land_mask_refuses_bad_lonlat(lonlat, err, match):
    with pytest.raises(err, match=f"^{match}"):
        land_mask(lonlat)


def test_set_root_refuses_a_non_path():
    from geodl.data import set_root

    with pytest.raises(TypeError, match="^path: expected a str or os.PathLike"):
        set_root(3)
