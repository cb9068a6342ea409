"""Fuzz of :mod:`geodl.data`: sphere samplers against their formulas and healpy, the datasets at
tiny sizes (labels against a brute-force reference), the n-body generator and the data root."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
BAD_N = values(-1, True, 2.5, "3", None, HUGE)


def _dtype_muts():
    import torch

    return [Mut("the string 'float32'", "float32"), Mut("torch.int64", torch.int64), Mut("an int", 3)]


def _dtypes():
    import torch

    return S.sampled_from([torch.float32, torch.float64])


@fuzz("geodl.data.fibonacci_sphere", examples=40)
@with_cases(lambda: cases(S.fixed_dictionaries({"n": S.integers(0, 30), "output": S.sampled_from(["lonlat", "xyz"]),
                                                "dtype": _dtypes()}),
                          {"n": BAD_N, "output": values("XYZ", 3, None), "dtype": _dtype_muts()}))
def build_fibonacci_sphere(n, output, dtype):
    import torch
    from geodl.data import fibonacci_sphere
    from geodl.groups import lonlat_to_xyz

    def call():
        return fibonacci_sphere(n, output=output, dtype=dtype)

    def verify(x):
        expect(x.shape == (n, 2 if output == "lonlat" else 3) and x.dtype == dtype, f"{tuple(x.shape)} {x.dtype}")
        finite(x)
        xyz = lonlat_to_xyz(x.double()) if output == "lonlat" else x.double()
        i = torch.arange(n, dtype=torch.float64)
        tol = 1e-9 if dtype == torch.float64 else 1e-5
        close(xyz[:, 2], 1 - (2 * i + 1) / n if n else i, atol=tol * 10, msg="z = 1 - (2i+1)/n")
        close(xyz.norm(dim=-1), torch.ones(n, dtype=torch.float64), atol=tol * 10, msg="unit norm")

    return call, verify


@fuzz("geodl.data.uniform_sphere", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({"n": S.integers(0, 30), "seed": S.integers(0, 100), "dtype": _dtypes()}),
                          {"n": BAD_N, "seed": values("0", 2.5, None), "dtype": _dtype_muts()}))
def build_uniform_sphere(n, seed, dtype):
    from geodl.data import uniform_sphere

    def call():
        return uniform_sphere(n, seed=seed, dtype=dtype)

    def verify(x):
        expect(x.shape == (n, 2) and x.dtype == dtype, f"{tuple(x.shape)} {x.dtype}")
        finite(x)
        expect(bool((x[:, 0] >= -180).all() & (x[:, 0] <= 180).all() & (x[:, 1].abs() <= 90).all()), "out of range")
        close(uniform_sphere(n, seed=seed, dtype=dtype), x, atol=0, msg="same seed, same points")

    return call, verify


@fuzz("geodl.data.healpix_lonlat", examples=16)
@with_cases(lambda: cases(S.fixed_dictionaries({"nside": S.sampled_from([1, 2, 3, 4, 8])}),
                          {"nside": values(0, -1, True, 2.5, "2", None, HUGE)}))
def build_healpix_lonlat(nside):
    import numpy as np
    import torch
    from geodl.data import healpix_lonlat

    def call():
        return healpix_lonlat(nside)

    def verify(ll):
        import healpy as hp

        lon, lat = hp.pix2ang(nside, np.arange(12 * nside * nside), lonlat=True)
        dl = (ll[:, 0].double() - torch.as_tensor(lon) + 180) % 360 - 180
        close(dl, torch.zeros_like(dl), atol=1e-6, msg="longitude vs healpy")
        close(ll[:, 1], torch.as_tensor(lat), atol=1e-6, msg="latitude vs healpy")

    return call, verify


@S.composite
def _lonlat(draw):
    import torch

    n = draw(S.integers(0, 8))
    g = torch.Generator().manual_seed(draw(SEEDS))
    ll = torch.stack([torch.rand(n, generator=g, dtype=torch.float64) * 360 - 180,
                      torch.rand(n, generator=g, dtype=torch.float64) * 180 - 90], -1)
    return dict(lonlat=ll.to(draw(_dtypes())))


@fuzz("geodl.data.land_mask", examples=30)
@with_cases(lambda: cases(_lonlat(), {"lonlat": [m for m in tensor_muts("lonlat", shapes={
    "(N, 3)": lambda x: x.new_zeros(x.shape[0], 3), "1-D": lambda x: x.reshape(-1),
    "latitude 100": lambda x: x.new_tensor([[0.0, 100.0]])}) if m.note != "int64 dtype"]
    + [Mut("integer degrees", lambda kw: kw["lonlat"].round().long(), mode="maybe")]}))
def build_land_mask(lonlat):
    import torch
    from geodl.data import land_mask

    def call():
        return land_mask(lonlat)

    def verify(m):
        expect(m.shape == (lonlat.shape[0],) and m.dtype == torch.int64, f"{tuple(m.shape)} {m.dtype}")
        expect(set(m.tolist()) <= {0, 1}, "labels not in {0, 1}")
        if lonlat.shape[0]:
            try:
                from global_land_mask import globe
            except ImportError:
                return
            ll = lonlat.double()
            lat = ll[:, 1].clamp(-89.999, 89.999).numpy()
            lon = ((ll[:, 0] + 180) % 360 - 180).clamp(-180, 179.999).numpy()
            ref = torch.as_tensor(globe.is_land(lat, lon).astype("int64"))
            expect(int((ref != m).sum()) <= max(1, lonlat.shape[0] // 4), f"{m.tolist()} vs globe {ref.tolist()}")

    return call, verify


@fuzz("geodl.data.checkerboard_dataset", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "split": S.sampled_from(["train", "val", "test"]), "num_samples": S.integers(1, 30),
    "num_support": S.integers(1, 20), "num_classes": S.integers(1, 5), "seed": S.integers(0, 50)}), {
    "split": values("training", 3, None), "num_samples": values(0, -1, True, 2.5, "5", HUGE),
    "num_support": values(0, -1, True, HUGE), "num_classes": values(0, -1, True, "2"), "seed": values("0", 2.5)}))
def build_checkerboard(split, num_samples, num_support, num_classes, seed):
    import torch
    from geodl.data import checkerboard_dataset, fibonacci_sphere
    from geodl.groups import lonlat_to_xyz

    def call():
        return checkerboard_dataset(split, num_samples, num_support=num_support, num_classes=num_classes, seed=seed)

    def verify(ds):
        ll, y = ds.tensors
        expect(ll.shape == (num_samples, 2) and y.shape == (num_samples,), f"{tuple(ll.shape)} {tuple(y.shape)}")
        sup = fibonacci_sphere(num_support, output="xyz")
        d = lonlat_to_xyz(ll.double()) @ sup.T
        best = d.amax(1, keepdim=True)
        ok = (d >= best - 1e-5) & (torch.arange(num_support) % num_classes == y[:, None])
        expect(bool(ok.any(1).all()), "a label is not the class of the nearest support point")

    return call, verify


@fuzz("geodl.data.landocean_dataset", examples=20)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "split": S.sampled_from(["train", "val", "test"]), "num_samples": S.integers(1, 20), "seed": S.integers(0, 50),
    "nside": S.sampled_from([1, 2, 4])}), {
    "split": values("training", 3, None),
    # num_samples is ignored for the test split, nside for train / val: either may be accepted there
    "num_samples": values(0, -1, True, 2.5, "5", HUGE, mode="maybe"),
    "nside": values(0, -1, True, 2.5, HUGE, mode="maybe"), "seed": values("0", 2.5)}))
def build_landocean(split, num_samples, seed, nside):
    from geodl.data import land_mask, landocean_dataset

    def call():
        return landocean_dataset(split, num_samples, seed=seed, nside=nside)

    def verify(ds):
        ll, y = ds.tensors
        n = 12 * nside * nside if split == "test" else num_samples
        expect(ll.shape == (n, 2), f"{tuple(ll.shape)}, expected {n} points")
        expect(y.reshape(-1).tolist() == land_mask(ll).reshape(-1).tolist(), "labels != land_mask(lonlat)")

    return call, verify


@fuzz("geodl.data.generate_nbody", examples=25)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "num": S.integers(1, 3), "seed": S.integers(0, 20), "n_particles": S.integers(2, 5),
    "frame_in": S.just(3), "frame_out": S.just(5), "sample_freq": S.just(5), "dt": S.just(0.001)}), {
    "num": values(0, -1, True, 2.5, "2", HUGE), "n_particles": values(0, -1, True, HUGE),
    "frame_in": values(-1, True) + values(10, names=("frame_in", "frame_out")), "sample_freq": values(0, -1, True, HUGE),
    "dt": values(0.0, -0.001, float("nan"), float("inf"), "0.1")}))
def build_generate_nbody(num, seed, n_particles, frame_in, frame_out, sample_freq, dt):
    from geodl.data import generate_nbody

    def call():
        return generate_nbody(num, seed=seed, n_particles=n_particles, frame_in=frame_in, frame_out=frame_out,
                              sample_freq=sample_freq, dt=dt)

    def verify(out):
        parts = out if isinstance(out, (tuple, list)) else tuple(out.values())
        for t in parts:
            if hasattr(t, "shape"):
                expect(t.shape[0] == num, f"leading size {t.shape[0]} for num={num}")
                finite(t)
        again = generate_nbody(num, seed=seed, n_particles=n_particles, frame_in=frame_in, frame_out=frame_out,
                               sample_freq=sample_freq, dt=dt)
        again = again if isinstance(again, (tuple, list)) else tuple(again.values())
        for a, b in zip(parts, again):
            if hasattr(a, "shape"):
                close(a, b, atol=0, msg="same seed, same data")

    return call, verify


@fuzz("geodl.data.NBodyDataset", examples=20)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "split": S.sampled_from(["train", "val", "test"]), "seed": S.integers(0, 3),
    "sizes": S.sampled_from([(3, 2, 2), (2, 1, 1)]), "max_samples": S.sampled_from([None, 1, 2])}), {
    "split": values("training", 3, None), "sizes": values((0, 1, 1), (3, 2), (-1, 1, 1), "3,2,2", (HUGE, 1, 1)),
    "max_samples": values(0, -1, True, "2"), "seed": values("0", 2.5)}))
def build_nbody_dataset(split, seed, sizes, max_samples):
    import tempfile
    import torch
    from geodl.data import NBodyDataset

    root = tempfile.mkdtemp(prefix="geodl-fuzz-")

    def call():
        return NBodyDataset(split, root, seed=seed, sizes=sizes, max_samples=max_samples,
                            frame_in=3, frame_out=5, sample_freq=5)

    def verify(ds):
        n = {"train": sizes[0], "val": sizes[1], "test": sizes[2]}[split]
        n = min(n, max_samples) if max_samples else n
        expect(len(ds) == n, f"len {len(ds)}, expected {n}")
        loc, vel, charges, target = ds[0]
        expect(loc.shape == vel.shape == target.shape and charges.shape[-1] == 1, "item shapes")
        finite(loc, vel, charges, target)
        expect(loc.dtype == torch.float32, f"dtype {loc.dtype}")

    return call, verify


@fuzz("geodl.data.cached_files", "geodl.data.set_root", examples=24)
@with_cases(lambda: cases(S.fixed_dictionaries({"which": S.sampled_from(["cached_files", "set_root"]),
                                                "root": S.sampled_from(["tmp", "tmp_path", None])}),
                          {"root": values(3, ["a"], b"x", names=("root", "path"))}))
def build_root(which, root):
    import os
    import pathlib
    import tempfile
    import geodl.data as D

    tmp = tempfile.mkdtemp(prefix="geodl-fuzz-")
    (pathlib.Path(tmp) / "nbody").mkdir()
    (pathlib.Path(tmp) / "nbody" / "a.pt").write_bytes(b"123")
    arg = tmp if root == "tmp" else pathlib.Path(tmp) if root == "tmp_path" else root

    def call():
        if which == "cached_files":
            return D.cached_files(arg) if arg is not None else D.cached_files()
        env = os.environ.pop("GEODL_DATA", None)
        try:
            D.set_root(arg)
            return D.default_root()
        finally:
            D.set_root(None)
            if env is not None:
                os.environ["GEODL_DATA"] = env

    def verify(res):
        if which == "cached_files":
            expect(isinstance(res, list), type(res).__name__)
            if arg is not None:
                expect(res == [("nbody", 1, 3)], f"{res}")
        elif arg is not None:
            expect(pathlib.Path(res) == pathlib.Path(tmp), f"default_root() = {res}")

    return call, verify


def _rot_about(axis, theta):
    from geodl.nn.soft_equivariance._groups import _axis_rotation

    return _axis_rotation(axis, theta)


@fuzz("geodl.data.ModifiedInertia", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "n": S.integers(1, 50), "noise": S.sampled_from([0.0, 0.3, 0.9]) | S.floats(0, 5), "axis": S.integers(0, 2),
    "split": S.sampled_from(["train", "val", "test"]), "seed": S.integers(0, 2**40), "dtype": _dtypes()}), {
    "n": BAD_N + values(0), "noise": values(-1, -1e-9, float("nan"), float("inf"), "0.3", None, True),
    "axis": values(3, -1, 1.0, True, None, "z"), "split": values("dev", "TRAIN", 3, None),
    "seed": values(-1, "0", 2.5, True, None), "dtype": _dtype_muts() + [Mut("torch.float16", "float16")]}))
def build_modified_inertia(n, noise, axis, split, seed, dtype):
    import torch
    from geodl.data import ModifiedInertia, inertia_tensor

    if dtype == "float16":
        dtype = torch.float16

    def call():
        return ModifiedInertia(n, noise=noise, axis=axis, split=split, seed=seed, dtype=dtype)

    def target(m, pos):
        inertia = inertia_tensor(m, pos)
        e = torch.zeros(3, dtype=torch.float64)
        e[axis] = 1.0
        return inertia + noise * (inertia @ e)[..., :, None] * e

    def verify(ds):
        expect(len(ds) == n and ds.x.shape == (n, 20) and ds.y.shape == (n, 9), f"{len(ds)} {tuple(ds.x.shape)}")
        expect(ds.x.dtype == ds.y.dtype == dtype, f"{ds.x.dtype} {ds.y.dtype}")
        finite(ds.x, ds.y)
        expect(bool((ds.masses > 0).all()), "a mass is not positive")
        m, pos = ds.masses.double(), ds.positions.double()
        tol = 1e-9 if dtype == torch.float64 else 1e-4
        close(ds.y.double(), target(m, pos).reshape(n, 9), atol=tol * (1 + noise) * 100, rtol=tol, msg="target")
        flip = torch.ones(3, dtype=torch.float64)
        flip[(axis + 1) % 3] = -1.0  # a reflection through a plane containing e_a
        R = _rot_about(axis, 0.3 + seed % 5) @ torch.diag(flip)
        close(target(m, pos @ R.T), R @ target(m, pos) @ R.T, atol=1e-9 * (1 + noise), msg="O(2) about the axis")
        again = ModifiedInertia(n, noise=noise, axis=axis, split=split, seed=seed, dtype=dtype)
        close(again.x, ds.x, atol=0, rtol=0, msg="same (split, seed), same data")
        x, y = ds[n - 1]
        expect(x.shape == (20,) and y.shape == (9,), "item shapes")

    return call, verify


@S.composite
def _inertia_args(draw):
    import torch

    g = torch.Generator().manual_seed(draw(SEEDS))
    lead = draw(S.sampled_from([(), (3,), (2, 2)]))
    k = draw(S.integers(0, 6))
    dtype = draw(_dtypes())
    m = (torch.rand(*lead, k, generator=g, dtype=torch.float64) * 3).to(dtype)
    pos = torch.randn(*lead, k, 3, generator=g, dtype=torch.float64).to(dtype)
    return dict(masses=m, positions=pos)


@fuzz("geodl.data.inertia_tensor", examples=40)
@with_cases(lambda: cases(_inertia_args(), {
    "masses": tensor_muts("masses", shapes={"one mass more": lambda m: torch_cat_one(m),
                                            "a trailing 1": lambda m: m[..., None]}),
    "positions": tensor_muts("positions", shapes={"(..., k, 2)": lambda p: p[..., :2],
                                                  "1-D": lambda p: p.reshape(-1)})}))
def build_inertia_tensor(masses, positions):
    import torch
    from geodl.data import inertia_tensor

    def call():
        return inertia_tensor(masses, positions)

    def verify(out):
        expect(out.shape == positions.shape[:-2] + (3, 3), f"{tuple(out.shape)} for {tuple(positions.shape)}")
        finite(out)
        nb = masses.shape[:-1].numel()
        m, p = masses.double().reshape(nb, masses.shape[-1]), positions.double().reshape(nb, *positions.shape[-2:])
        ref = torch.zeros(m.shape[0], 3, 3, dtype=torch.float64)
        for b in range(m.shape[0]):
            for i in range(m.shape[1]):
                ref[b] += m[b, i] * (float(p[b, i] @ p[b, i]) * torch.eye(3, dtype=torch.float64) - torch.outer(p[b, i], p[b, i]))
        tol = 1e-10 if out.dtype == torch.float64 else 1e-4
        close(out.double().reshape(nb, 3, 3), ref, atol=tol * 100, rtol=tol, msg="against the loop")
        close(out, out.transpose(-1, -2), atol=0, rtol=0, msg="symmetric")

    return call, verify


def torch_cat_one(m):
    import torch

    return torch.cat([m, m.new_ones(*m.shape[:-1], 1)], -1)


@fuzz("geodl.data.reference_initial_states", examples=20)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "num": S.integers(1, 3), "start": S.integers(0, 5), "seed": S.integers(0, 50), "n_particles": S.integers(2, 6)}), {
    "num": values(0, -1, True, 2.5, "2", HUGE), "start": values(-1, True, "0", HUGE),
    "seed": values(-1, True, 2**33, "43"), "n_particles": values(0, 1, True, HUGE)}))
def build_reference_initial_states(num, start, seed, n_particles):
    import torch

    from geodl.data import reference_initial_states

    def call():
        return reference_initial_states(num, start=start, seed=seed, n_particles=n_particles)

    def verify(out):
        expect(out["charges"].shape == (num, n_particles, 1) and out["loc"].shape == (num, n_particles, 3),
               f"shapes {tuple(out['charges'].shape)}, {tuple(out['loc'].shape)}")
        expect(set(out["charges"].unique().tolist()) <= {-1.0, 1.0}, "charges not in {-1, +1}")
        norms = out["vel"].norm(dim=-1)
        close(norms, torch.full_like(norms, 0.5), atol=1e-12, msg="speeds are 0.5")
        finite(out["loc"])
        later = reference_initial_states(1, start=start + num - 1, seed=seed, n_particles=n_particles)
        close(later["loc"][0], out["loc"][-1], atol=0, msg="trajectory start + num - 1 from its own start")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_data"))  # this file's builders only


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)

