"""Fuzz of :mod:`geodl.groups`: conversions against scipy / healpy (float64), Wigner-D and the
actions against group-law invariants, constructors and parsers with malformed arguments."""

from __future__ import annotations

import math

import pytest

from ._harness import HUGE, Mut, cases, check_entry, close, expect, finite, fuzz, seeded_tensor, st, tensor_muts
from ._harness import REGISTRY, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
FLOATS = S.sampled_from(["float64", "float32"])
BATCH = S.sampled_from([(), (0,), (1,), (4,), (2, 3)])


def _dt(name):
    import torch

    return getattr(torch, name)


def rotations(shape, seed, dtype="float64", d=3):
    import torch

    x = seeded_tensor(tuple(shape) + (d, d), seed)
    q, r = torch.linalg.qr(x) if x.numel() else (x, x)
    if x.numel():
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        q[..., :, 0] *= torch.sign(torch.linalg.det(q)).unsqueeze(-1)
    return q.to(_dt(dtype))


def _tol(t):
    import torch

    return 1e-9 if t.dtype == torch.float64 else 2e-5


def _is_rotation(R, d=3, det=1.0, msg="output"):
    import torch

    expect(R.shape[-2:] == (d, d), f"{msg}: shape {tuple(R.shape)}")
    finite(R, msg=msg)
    if R.numel():
        Rd = R.double()
        eye = torch.eye(d, dtype=torch.float64).expand(Rd.shape)
        close(Rd.transpose(-1, -2) @ Rd, eye, atol=_tol(R) * 10, msg=f"{msg}: R^T R")
        if det is not None:
            close(torch.linalg.det(Rd), torch.full(Rd.shape[:-2], det, dtype=torch.float64), atol=_tol(R) * 10,
                  msg=f"{msg}: det")


def _rot_muts(arg, d=3):
    return tensor_muts(arg, shapes={f"(..., {d}, {d + 1})": lambda x: x.new_zeros(x.shape[:-1] + (d + 1,)),
                                    "(3,)": lambda x: x.new_zeros(3)})


def _dtype_muts():
    import torch

    return [Mut("the string 'float32'", "float32"), Mut("torch.int64", torch.int64), Mut("an int", 3)]


def _dtypes(*names):
    import torch

    return S.sampled_from([getattr(torch, n) if n else None for n in names])


# --------------------------------------------------------------------------- random samplers
@S.composite
def _sampler_valid(draw):
    return dict(shape=draw(S.sampled_from([(), (0,), (3,), (2, 2), ((2, 3),)])), seed=draw(SEEDS),
                dtype=draw(_dtypes(None, "float32", "float64")))


_SAMPLER_MUTS = {
    "shape": values((-1,), (HUGE,), (True,), (2.5,), ("3",), (HUGE, HUGE), names=("shape", "size")),
    "dtype": _dtype_muts(),
    "seed": [Mut("generator is a string", "gen", names=("generator",))],
}


def _sampler(fn_name):
    import torch
    import geodl.groups as G

    fn = getattr(G, fn_name)

    def make(shape, seed, dtype):
        gen = seed if isinstance(seed, str) else torch.Generator().manual_seed(seed)
        dt = dtype

        def call():
            return fn(*shape, generator=gen, dtype=dt)

        def verify(out):
            bshape = tuple(shape[0]) if shape and isinstance(shape[0], tuple) else tuple(shape)
            expect(out.dtype == (dt or torch.get_default_dtype()), f"dtype {out.dtype}")
            if fn_name == "random_quaternion":
                expect(tuple(out.shape) == bshape + (4,), f"shape {tuple(out.shape)}")
                finite(out)
                close(out.double().norm(dim=-1), torch.ones(bshape, dtype=torch.float64), atol=_tol(out) * 10)
            else:
                d = 2 if fn_name.endswith("2d") else 3
                expect(tuple(out.shape) == bshape + (d, d), f"shape {tuple(out.shape)}")
                _is_rotation(out, d)

        return call, verify

    return make


@fuzz("geodl.groups.random_rotation", examples=40)
@with_cases(lambda: cases(_sampler_valid(), _SAMPLER_MUTS))
def build_random_rotation(**kw):
    return _sampler("random_rotation")(**kw)


@fuzz("geodl.groups.random_rotation_2d", examples=40)
@with_cases(lambda: cases(_sampler_valid(), _SAMPLER_MUTS))
def build_random_rotation_2d(**kw):
    return _sampler("random_rotation_2d")(**kw)


@fuzz("geodl.groups.random_quaternion", examples=40)
@with_cases(lambda: cases(_sampler_valid(), _SAMPLER_MUTS))
def build_random_quaternion(**kw):
    return _sampler("random_quaternion")(**kw)


# --------------------------------------------------------------------------- conversions
@S.composite
def _angle_valid(draw):
    b = draw(BATCH)
    return dict(angle=(seeded_tensor(b, draw(SEEDS)) * draw(S.sampled_from([1.0, 100.0, 1e-8]))).to(_dt(draw(FLOATS))))


@fuzz("geodl.groups.rotation_2d", examples=40)
@with_cases(lambda: cases(_angle_valid(), {"angle": tensor_muts("angle")}))
def build_rotation_2d(angle):
    import torch
    from geodl.groups import rotation_2d

    def call():
        return rotation_2d(angle)

    def verify(R):
        a = angle.double()
        ref = torch.stack([torch.stack([a.cos(), -a.sin()], -1), torch.stack([a.sin(), a.cos()], -1)], -2)
        close(R, ref, atol=_tol(angle) * 10)

    return call, verify


@S.composite
def _rot_valid(draw, arg="R"):
    return {arg: rotations(draw(BATCH), draw(SEEDS), draw(FLOATS))}


def _scipy(R):
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R.double().reshape(-1, 3, 3).numpy())


@fuzz("geodl.groups.geodesic_distance", examples=50)
@with_cases(lambda: cases(S.builds(lambda a, b, s1, s2, f: dict(R1=rotations(a, s1, f), R2=rotations(b, s2, f)),
                                   BATCH, S.sampled_from([(), (1,)]), SEEDS, SEEDS, FLOATS),
                          {"R1": _rot_muts("R1"),
                           "R2": _rot_muts("R2") + [Mut("batch (5,): broadcastable only with R1 of batch () or (1,)",
                                                        lambda kw: rotations((5,), 1, "float64"), mode="maybe",
                                                        names=("R1", "R2"))]}))
def build_geodesic_distance(R1, R2):
    import torch
    from geodl.groups import geodesic_distance

    def call():
        return geodesic_distance(R1, R2)

    def verify(d):
        a, b = torch.broadcast_tensors(R1.double(), R2.double())
        ref = torch.as_tensor(_scipy(a.transpose(-1, -2) @ b).magnitude()).reshape(a.shape[:-2]) if a.numel() \
            else a[..., 0, 0]
        close(d, ref, atol=1e-6 if R1.dtype == torch.float64 else 1e-3)

    return call, verify


@fuzz("geodl.groups.matrix_to_quaternion", examples=50)
@with_cases(lambda: cases(_rot_valid(), {"R": _rot_muts("R")}))
def build_matrix_to_quaternion(R):
    import torch
    from geodl.groups import matrix_to_quaternion

    def call():
        return matrix_to_quaternion(R)

    def verify(q):
        expect(q.shape == R.shape[:-2] + (4,), f"shape {tuple(q.shape)}")
        finite(q)
        if R.numel():
            ref = torch.as_tensor(_scipy(R).as_quat()).reshape(q.shape)
            ref = ref * torch.where(ref[..., 3:] < 0, -1.0, 1.0)
            err = torch.minimum((q.double() - ref).abs().amax(-1), (q.double() + ref).abs().amax(-1))
            expect(float(err.max()) < _tol(R) * 100, f"vs scipy: {float(err.max()):.3g}")
            expect(bool((q[..., 3] >= -_tol(R)).all()), "w < 0")

    return call, verify


@S.composite
def _quat_valid(draw):
    b = draw(BATCH)
    return dict(q=(seeded_tensor(b + (4,), draw(SEEDS)) * draw(S.sampled_from([1.0, 1e-20, 1e20]))).to(_dt(draw(FLOATS))))


@fuzz("geodl.groups.quaternion_to_matrix", examples=50)
@with_cases(lambda: cases(_quat_valid(), {"q": tensor_muts("q", shapes={"(..., 3)": lambda x: x[..., :3],
                                                                        "zero": lambda x: x * 0 if x.numel() else x.new_zeros(4)})}))
def build_quaternion_to_matrix(q):
    import torch
    from scipy.spatial.transform import Rotation
    from geodl.groups import quaternion_to_matrix

    def call():
        return quaternion_to_matrix(q)

    def verify(R):
        _is_rotation(R)
        if q.numel():
            qq = q.double().reshape(-1, 4)
            ref = torch.as_tensor(Rotation.from_quat((qq / qq.norm(dim=-1, keepdim=True)).numpy()).as_matrix())
            close(R, ref.reshape(R.shape), atol=_tol(q) * 10)

    return call, verify


@fuzz("geodl.groups.matrix_to_axis_angle", examples=50)
@with_cases(lambda: cases(_rot_valid(), {"R": _rot_muts("R")}))
def build_matrix_to_axis_angle(R):
    import torch
    from scipy.spatial.transform import Rotation
    from geodl.groups import matrix_to_axis_angle

    def call():
        return matrix_to_axis_angle(R)

    def verify(v):
        expect(v.shape == R.shape[:-2] + (3,), f"shape {tuple(v.shape)}")
        finite(v)
        if R.numel():
            back = torch.as_tensor(Rotation.from_rotvec(v.double().reshape(-1, 3).numpy()).as_matrix())
            close(back.reshape(R.shape), R, atol=_tol(R) * 100, msg="from_rotvec(out) vs R")
            expect(float(v.double().norm(dim=-1).max()) <= math.pi + 1e-6, "angle > pi")

    return call, verify


@S.composite
def _aa_valid(draw):
    b = draw(BATCH)
    v = seeded_tensor(b + (3,), draw(SEEDS)) * draw(S.sampled_from([1.0, 3.0, 1e-9, 0.0]))
    return dict(v=v.to(_dt(draw(FLOATS))))


@fuzz("geodl.groups.axis_angle_to_matrix", examples=50)
@with_cases(lambda: cases(_aa_valid(), {"v": tensor_muts("v", shapes={"(..., 4)": lambda x: x.new_zeros(x.shape[:-1] + (4,))})}))
def build_axis_angle_to_matrix(v):
    import torch
    from scipy.spatial.transform import Rotation
    from geodl.groups import axis_angle_to_matrix

    def call():
        return axis_angle_to_matrix(v)

    def verify(R):
        _is_rotation(R)
        if v.numel():
            ref = torch.as_tensor(Rotation.from_rotvec(v.double().reshape(-1, 3).numpy()).as_matrix())
            close(R, ref.reshape(R.shape), atol=_tol(v) * 10)

    return call, verify


@fuzz("geodl.groups.matrix_to_6d", examples=40)
@with_cases(lambda: cases(_rot_valid(), {"R": _rot_muts("R")}))
def build_matrix_to_6d(R):
    import torch
    from geodl.groups import matrix_to_6d

    def call():
        return matrix_to_6d(R)

    def verify(d6):
        close(d6, torch.cat([R[..., :, 0], R[..., :, 1]], -1), atol=0)

    return call, verify


@S.composite
def _6d_valid(draw):
    b = draw(BATCH)
    x = seeded_tensor(b + (6,), draw(SEEDS)) * draw(S.sampled_from([1.0, 1e-30, 1e30]))
    return dict(d6=x.to(_dt(draw(FLOATS))))


@fuzz("geodl.groups.sixd_to_matrix", examples=40)
@with_cases(lambda: cases(_6d_valid(), {"d6": tensor_muts("d6", shapes={
    "(..., 5)": lambda x: x[..., :5], "collinear": lambda x: x.new_ones(x.shape) if x.numel() else x.new_ones(6),
    "zero": lambda x: x.new_zeros(x.shape) if x.numel() else x.new_zeros(6)})}))
def build_sixd_to_matrix(d6):
    import torch
    from geodl.groups import sixd_to_matrix

    def call():
        return sixd_to_matrix(d6)

    def verify(R):
        _is_rotation(R)
        if d6.numel():
            a = d6.double()[..., :3]
            close(R[..., :, 0], a / a.norm(dim=-1, keepdim=True), atol=_tol(d6) * 10, msg="first column")

    return call, verify


EULER = ["ZYZ", "XYZ", "ZYX", "XZX", "YXY", "zyz", "xyz", "zyx", "yzx", "xzy"]


@S.composite
def _euler_valid(draw, to_matrix):
    b = draw(BATCH)
    conv = draw(S.sampled_from(EULER))
    if to_matrix:
        a = seeded_tensor(b + (3,), draw(SEEDS)) * draw(S.sampled_from([1.0, 10.0]))
        return dict(angles=a.to(_dt(draw(FLOATS))), convention=conv)
    return dict(R=rotations(b, draw(SEEDS), draw(FLOATS)), convention=conv)


_CONV_MUTS = values("ZZY", "abc", "XYz", "", 3, None)


@fuzz("geodl.groups.euler_to_matrix", examples=50)
@with_cases(lambda: cases(_euler_valid(True), {"angles": tensor_muts("angles", shapes={"(..., 2)": lambda x: x[..., :2]}),
                                              "convention": _CONV_MUTS}))
def build_euler_to_matrix(angles, convention):
    import torch
    from scipy.spatial.transform import Rotation
    from geodl.groups import euler_to_matrix

    def call():
        return euler_to_matrix(angles, convention)

    def verify(R):
        _is_rotation(R)
        if angles.numel():
            ref = torch.as_tensor(Rotation.from_euler(convention, angles.double().reshape(-1, 3).numpy()).as_matrix())
            close(R, ref.reshape(R.shape), atol=_tol(angles) * 10)

    return call, verify


@fuzz("geodl.groups.matrix_to_euler", examples=50)
@with_cases(lambda: cases(_euler_valid(False), {"R": _rot_muts("R"), "convention": _CONV_MUTS}))
def build_matrix_to_euler(R, convention):
    import torch
    from scipy.spatial.transform import Rotation

    from geodl.groups import matrix_to_euler

    def call():
        return matrix_to_euler(R, convention)

    def verify(a):
        expect(a.shape == R.shape[:-2] + (3,), f"shape {tuple(a.shape)}")
        finite(a)
        if R.numel():
            back = torch.as_tensor(Rotation.from_euler(convention, a.double().reshape(-1, 3).numpy()).as_matrix())
            close(back.reshape(R.shape), R, atol=_tol(R) * 100, msg="from_euler(out) vs R")

    return call, verify


# --------------------------------------------------------------------------- Wigner-D
@S.composite
def _wigner_valid(draw):
    return dict(l=draw(S.integers(0, 6)), R=rotations(draw(BATCH), draw(SEEDS), draw(FLOATS)))


_WIGNER_MUTS = {"l": values(-1, True, 2.5, "2", None, HUGE, 10**5, names=("l", "lmax")),
                "R": _rot_muts("R")}


def _check_wigner(D, l, R, wigner_D):
    import torch

    d = 2 * l + 1
    expect(D.shape == R.shape[:-2] + (d, d), f"shape {tuple(D.shape)}")
    expect(D.dtype == R.dtype, f"dtype {D.dtype}")
    finite(D)
    if not R.numel():
        return
    tol = _tol(R) * 10 * d
    Dd = D.double()
    close(Dd @ Dd.transpose(-1, -2), torch.eye(d, dtype=torch.float64).expand(Dd.shape), atol=tol, msg="D D^T")
    if l == 1:
        close(D, R, atol=tol, msg="D^1 = R")
    R2 = rotations((), 12345, "float64").to(R.dtype)
    close(wigner_D(l, R @ R2).double(), Dd @ wigner_D(l, R2).double(), atol=tol * 10, msg="homomorphism")


@fuzz("geodl.groups.wigner_D", examples=50)
@with_cases(lambda: cases(_wigner_valid(), _WIGNER_MUTS))
def build_wigner_D(l, R):
    from geodl.groups import wigner_D

    def call():
        return wigner_D(l, R)

    def verify(D):
        _check_wigner(D, l, R, wigner_D)

    return call, verify


@fuzz("geodl.groups.wigner_D_blocks", examples=40)
@with_cases(lambda: cases(_wigner_valid(), _WIGNER_MUTS))
def build_wigner_D_blocks(l, R):
    from geodl.groups import wigner_D, wigner_D_blocks

    def call():
        return wigner_D_blocks(l, R)

    def verify(blocks):
        expect(len(blocks) == l + 1, f"{len(blocks)} blocks")
        for k, D in enumerate(blocks):
            _check_wigner(D, k, R, wigner_D)
            close(D, wigner_D(k, R), atol=_tol(R) * 10, msg=f"block {k} vs wigner_D")

    return call, verify


# --------------------------------------------------------------------------- finite groups and grids
@fuzz("geodl.groups.finite_group", examples=45)
@with_cases(lambda: cases(S.fixed_dictionaries({"name": S.sampled_from(["tetrahedral", "octahedral", "icosahedral"]),
                                                "dtype": _dtypes(None, "float32", "float64")}),
                          {"name": values("dodecahedral", "", None, 3, "Octahedral"), "dtype": _dtype_muts()}))
def build_finite_group(name, dtype):
    import torch
    from geodl.groups import finite_group

    def call():
        return finite_group(name, dtype) if dtype is not None else finite_group(name)

    def verify(G):
        n = {"tetrahedral": 12, "octahedral": 24, "icosahedral": 60}[name]
        expect(G.shape == (n, 3, 3), f"shape {tuple(G.shape)}")
        _is_rotation(G)
        close(G[0], torch.eye(3, dtype=G.dtype), atol=0, msg="identity first")
        P = (G.double()[:, None] @ G.double()[None]).reshape(-1, 1, 9)
        dist = (P - G.double().reshape(1, -1, 9)).abs().amax(-1).amin(-1)
        expect(float(dist.max()) < _tol(G) * 100, "not closed under products")

    return call, verify


@fuzz("geodl.groups.s2_healpix_grid", "geodl.groups.so3_healpix_grid", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({"rec": S.integers(0, 2), "dtype": _dtypes(None, "float64"),
                                                "so3": S.booleans()}),
                          {"rec": values(-1, True, 2.5, "1", None, 40, HUGE), "dtype": _dtype_muts()}))
def build_healpix_grid(rec, dtype, so3):
    import torch
    from geodl.groups import s2_healpix_grid, so3_healpix_grid

    def call():
        fn = so3_healpix_grid if so3 else s2_healpix_grid
        return fn(rec, dtype=dtype) if dtype is not None else fn(rec)

    def verify(x):
        if so3:
            expect(x.shape == (72 * 8**rec, 3, 3), f"shape {tuple(x.shape)}")
            _is_rotation(x)
        else:
            expect(x.shape == (12 * 4**rec, 3), f"shape {tuple(x.shape)}")
            finite(x)
            close(x.double().norm(dim=-1), torch.ones(len(x), dtype=torch.float64), atol=_tol(x) * 10)
            try:
                import healpy as hp
                import numpy as np
            except ImportError:
                return
            ref = np.stack(hp.pix2vec(2**rec, np.arange(12 * 4**rec), nest=True), -1)
            close(x, torch.as_tensor(ref), atol=_tol(x) * 10, msg="vs healpy")

    return call, verify


@fuzz("geodl.groups.s2_healpix_lonlat", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({"nside": S.sampled_from([1, 2, 4, 8]), "nest": S.booleans()}),
                          {"nside": values(0, -1, True, 2.5, "2", None, HUGE) + values(3, mode="maybe")}))
def build_s2_healpix_lonlat(nside, nest):
    import numpy as np
    import torch
    from geodl.groups import s2_healpix_lonlat

    def call():
        return s2_healpix_lonlat(nside, nest=nest)

    def verify(ll):
        import healpy as hp

        lon, lat = hp.pix2ang(nside, np.arange(12 * nside * nside), nest=nest, lonlat=True)
        ref = torch.as_tensor(np.stack([lon, lat], -1))
        ll = ll.double().clone()
        dl = (ll[:, 0] - ref[:, 0] + 180) % 360 - 180
        close(dl, torch.zeros_like(dl), atol=1e-6, msg="longitude vs healpy")
        close(ll[:, 1], ref[:, 1], atol=1e-6, msg="latitude vs healpy")

    return call, verify


@S.composite
def _nearest_valid(draw):
    f = draw(FLOATS)
    return dict(R=rotations(draw(BATCH), draw(SEEDS), f), grid=rotations((draw(S.integers(1, 30)),), draw(SEEDS), f),
                chunk_size=draw(S.sampled_from([None, 1, 5])))


@fuzz("geodl.groups.nearest_rotation", examples=50)
@with_cases(lambda: cases(_nearest_valid(), {
    "R": _rot_muts("R"),
    "grid": _rot_muts("grid") + [Mut("empty grid", lambda kw: kw["grid"][:0], mode="maybe"),
                                 Mut("2-D", lambda kw: kw["grid"][0])],
    "chunk_size": values(0, -1, True, 2.5, "4")}))
def build_nearest_rotation(R, grid, chunk_size):
    import torch
    from geodl.groups import nearest_rotation

    def call():
        return nearest_rotation(R, grid, chunk_size)

    def verify(idx):
        expect(idx.dtype == torch.long and idx.shape == R.shape[:-2], f"index {idx.dtype} {tuple(idx.shape)}")
        if R.numel():
            score = torch.einsum("...ij,gij->...g", R.double(), grid.double())
            best = score.amax(-1)
            got = score.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
            expect(bool((got >= best - _tol(R) * 100).all()), "not the nearest grid rotation")

    return call, verify


@S.composite
def _lonlat_valid(draw):
    import torch

    b = draw(BATCH)
    g = torch.Generator().manual_seed(draw(SEEDS))
    lon = torch.rand(b, generator=g, dtype=torch.float64) * 360 - 180
    lat = torch.rand(b, generator=g, dtype=torch.float64) * 180 - 90
    if draw(S.booleans()) and lat.numel():
        lat.view(-1)[0] = draw(S.sampled_from([90.0, -90.0]))
    return dict(lonlat=torch.stack([lon, lat], -1).to(_dt(draw(FLOATS))))


@fuzz("geodl.groups.lonlat_to_xyz", examples=40)
@with_cases(lambda: cases(_lonlat_valid(), {"lonlat": tensor_muts("lonlat", shapes={
    "(..., 3)": lambda x: x.new_zeros(x.shape[:-1] + (3,)),
    "latitude 100": lambda x: x.new_tensor([[0.0, 100.0]])}) + [Mut("longitude 720", lambda kw: kw["lonlat"].new_tensor([[720.0, 0.0]]), mode="maybe")]}))
def build_lonlat_to_xyz(lonlat):
    import torch
    from geodl.groups import lonlat_to_xyz

    def call():
        return lonlat_to_xyz(lonlat)

    def verify(x):
        lon, lat = torch.deg2rad(lonlat.double()).unbind(-1)
        ref = torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], -1)
        close(x, ref, atol=_tol(lonlat) * 10)

    return call, verify


@S.composite
def _xyz_valid(draw):
    b = draw(BATCH)
    return dict(xyz=(seeded_tensor(b + (3,), draw(SEEDS)) * draw(S.sampled_from([1.0, 1e-20, 1e20]))).to(_dt(draw(FLOATS))))


@fuzz("geodl.groups.xyz_to_lonlat", examples=40)
@with_cases(lambda: cases(_xyz_valid(), {"xyz": tensor_muts("xyz", shapes={
    "(..., 2)": lambda x: x[..., :2]}) + [Mut("a zero vector", lambda kw: kw["xyz"].new_zeros(2, 3), mode="maybe")]}))
def build_xyz_to_lonlat(xyz):
    import torch
    from geodl.groups import lonlat_to_xyz, xyz_to_lonlat

    def call():
        return xyz_to_lonlat(xyz)

    def verify(ll):
        expect(ll.shape == xyz.shape[:-1] + (2,), f"shape {tuple(ll.shape)}")
        finite(ll)
        if xyz.numel() and bool((xyz.double().norm(dim=-1) > 0).all()):
            u = xyz.double() / xyz.double().norm(dim=-1, keepdim=True)
            close(lonlat_to_xyz(ll.double()), u, atol=_tol(xyz) * 10, msg="round trip")

    return call, verify


# --------------------------------------------------------------------------- groups and elements
GROUPS = ["SO2", "O2", "SE2", "E2", "SO3", "O3", "SE3", "E3", "tetrahedral", "octahedral", "icosahedral", "O2_axis",
          "D4", "C4", "equirect:8", "azimuth:4", "SE3^parts", "E3^parts", "perm", "scale", "E3+perm", "SO3+perm+scale",
          "SO(3)", "so3"]


@fuzz("geodl.groups.get_group", examples=50)
@with_cases(lambda: cases(S.fixed_dictionaries({"group": S.sampled_from(GROUPS), "seed": SEEDS}), {
    "group": values("E4", "", None, 3, "perm+perm", "E3+SO3", "equirect:0", "equirect:x", "azimuth:-1", "E3^parts^parts",
                    "equirect:1000000000000"),
    "seed": [Mut("axis [0, 0, 0] for O2_axis", "axis0", names=("axis",)),
             Mut("axis of length 2", "axis2", names=("axis",)),
             Mut("an unknown keyword", "kw", names=("bogus", "kwargs", "keyword"))]}))
def build_get_group(group, seed):
    import torch
    from geodl.groups import Group, get_group

    def call():
        if seed == "axis0":
            return get_group("O2_axis", axis=[0.0, 0.0, 0.0])
        if seed == "axis2":
            return get_group("O2_axis", axis=[1.0, 0.0])
        if seed == "kw":
            return get_group("E3", bogus=1)
        return get_group(group)

    def verify(G):
        expect(isinstance(G, Group), f"returned {type(G).__name__}")
        labels = torch.tensor([0, 0, 1, 1, 1]) if G.has_parts else None
        g = G.sample(torch.Generator().manual_seed(seed), n_nodes=5, labels=labels)
        if g.rotation is not None:
            _is_rotation(g.rotation, g.rotation.shape[-1], det=None)
        h = G.compose(g, G.inverse(g))
        if h.rotation is not None:
            close(h.rotation, torch.eye(h.rotation.shape[-1], dtype=h.rotation.dtype), atol=1e-9, msg="g g^-1")
        if h.perm is not None:
            expect(h.perm.tolist() == list(range(len(h.perm))), "g g^-1 permutes")

    return call, verify


def _group_kw(kw):  # the trivial group (no geometric part, no permutations, no scaling) may be refused
    if kw["geometric"] is None and not kw["permutations"] and not kw["scaling"]:
        return kw, "maybe", ("geometric",)
    return kw


@fuzz("geodl.groups.Group", examples=40)
@with_cases(lambda: cases(S.fixed_dictionaries({"geometric": S.sampled_from(["SO3", "O3", "E3", "SE2", None, "icosahedral"]),
                                                "permutations": S.booleans(), "scaling": S.booleans()}).map(_group_kw),
                          {"geometric": values("E4", 3, "")}))
def build_Group(geometric, permutations, scaling):
    import torch
    from geodl.groups import Group

    def call():
        return Group(geometric, permutations, scaling)

    def verify(G):
        g = G.sample(torch.Generator().manual_seed(0), n_nodes=4)
        expect((g.perm is not None) == bool(permutations) or not permutations, "perm")

    return call, verify


@S.composite
def _element_valid(draw):
    import torch

    d = draw(S.sampled_from([2, 3]))
    f = draw(FLOATS)
    rot = rotations((), draw(SEEDS), f, d=d)
    if draw(S.booleans()):
        rot = rot.clone()
        rot[..., 0] *= -1  # a reflection
    n = draw(S.integers(0, 5))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(draw(SEEDS))) if draw(S.booleans()) else None
    return dict(rotation=rot, translation=seeded_tensor((d,), draw(SEEDS), dtype=_dt(f)) if draw(S.booleans()) else None,
                scale=draw(S.sampled_from([None, 0.5, 2.0])), perm=perm)


@fuzz("geodl.groups.GroupElement", examples=60)
@with_cases(lambda: cases(_element_valid(), {
    "rotation": tensor_muts("rotation", none_ok=True, shapes={"2 * I": lambda x: 2 * x, "(3, 4)": lambda x: x.new_zeros(3, 4),
                                                              "(4, 4)": lambda x: torch_eye(4, x)}),
    "translation": values("abc", names=("translation",)) + [
        Mut("wrong length", lambda kw: kw["rotation"].new_zeros(kw["rotation"].shape[-1] + 1)),
        Mut("NaN", lambda kw: kw["rotation"].new_full((kw["rotation"].shape[-1],), float("nan")), mode="nonfinite")],
    "scale": values(0.0, -1.0, float("nan"), float("inf"), "2", True),
    "perm": [Mut("repeated entry", lambda kw: _long([0, 0, 1])), Mut("out of range", lambda kw: _long([0, 5])),
             Mut("negative", lambda kw: _long([-1, 0])), Mut("float", lambda kw: _long([1, 0]).float()),
             Mut("2-D", lambda kw: _long([[0, 1]])), Mut("a list", [1, 0])]}))
def build_GroupElement(rotation, translation, scale, perm):
    import torch
    from geodl.groups import GroupElement, act

    def call():
        return GroupElement(rotation=rotation, translation=translation, scale=scale, perm=perm)

    def verify(g):
        x = torch.ones(len(perm) if perm is not None else 3, rotation.shape[-1], dtype=torch.float64)
        y = act("node:points", g, x) if perm is not None else act("points", g, x)
        ref = (x @ rotation.double().T) * (scale or 1.0) + (translation.double() if translation is not None else 0.0)
        close(y, ref[perm] if perm is not None else ref, atol=1e-5)

    return call, verify


def _long(v):
    import torch

    return torch.tensor(v, dtype=torch.long)


def torch_eye(n, like):
    import torch

    return torch.eye(n, dtype=like.dtype)


# --------------------------------------------------------------------------- kinds
KIND_STRINGS = ["scalar", "points", "vectors", "pseudovectors", "tensor2", "sh:2", "sh:3:e3nn", "so3:1",
                "irreps:1x0e+1x1o", "2x0e + 1x1o", "node:vectors", "node:sh:1", "node:so3:2", "rotation", "node:points",
                "equirect:4x8", "image2d", "edge_index", "batch", "parts", "perm", "node:scalar"]
BAD_KINDS = ["sh:-1", "sh:x", "node:node:vectors", "equirect:0x4", "equirect:4", "irreps:garbage", "bogus", "", "sh:",
             "node:", "so3:1000000000000", "sh:1000000000000"]


@fuzz("geodl.groups.parse_kind", examples=50)
@with_cases(lambda: cases(S.fixed_dictionaries({"kind": S.sampled_from(KIND_STRINGS)}),
                          {"kind": values(*BAD_KINDS, 3, None)}))
def build_parse_kind(kind):
    from geodl.groups import KindSpec, parse_kind

    def call():
        return parse_kind(kind)

    def verify(spec):
        expect(isinstance(spec, KindSpec), type(spec).__name__)
        expect(parse_kind(spec.kind) == spec, "parse_kind(spec.kind) != spec")
        expect(parse_kind(spec) is spec, "a KindSpec is not returned unchanged")

    return call, verify


ACT_KINDS = ["scalar", "points", "vectors", "pseudovectors", "tensor2", "sh:2", "sh:2:e3nn", "so3:1", "1x0e+1x1o",
             "rotation", "node:vectors", "node:points", "node:sh:1", "edge_index", "node:scalar", "batch"]


@S.composite
def _act_valid(draw):
    import torch
    from geodl.groups import random_input

    kind = draw(S.sampled_from(ACT_KINDS))
    n = draw(S.integers(1, 5))
    x = random_input(kind, n, generator=torch.Generator().manual_seed(draw(SEEDS)))
    if x.is_floating_point():
        x = x.to(_dt(draw(FLOATS)))
    return dict(kind=kind, g=("E3+perm", draw(SEEDS), n), x=x)


@fuzz("geodl.groups.act", examples=70)
@with_cases(lambda: cases(_act_valid(), {
    "kind": values(*BAD_KINDS[:8], 3, None),
    "g": values("identity", None, names=("g",)) + [Mut("perm of another size", lambda kw: ("E3+perm", 1, kw["g"][2] + 2),
                                                       mode="maybe", names=("g", "x", "perm"))],
    "x": tensor_muts("x", floating=False, nonfinite=True, shapes={
        "last dim + 1": lambda x: torch_cat1(x), "0-d": lambda x: x.reshape(-1)[:1].reshape(())}) + [
        Mut("NaN entries", lambda kw: kw["x"] * float("nan") if kw["x"].is_floating_point() else kw["x"], mode="nonfinite")]}))
def build_act(kind, g, x):
    import torch
    from geodl.groups import GroupElement, act, get_group

    G = get_group(g[0]) if isinstance(g, tuple) else None
    elem = G.sample(torch.Generator().manual_seed(g[1]), n_nodes=g[2]) if G is not None else g
    elem2 = G.sample(torch.Generator().manual_seed(g[1] + 1), n_nodes=g[2]) if G is not None else None

    def call():
        return act(kind, elem, x)

    def verify(y):
        expect(y.shape == x.shape and y.dtype == x.dtype, f"shape/dtype {tuple(y.shape)} {y.dtype}")
        finite(y)
        tol = 1e-9 if x.dtype == torch.float64 else 1e-4
        ident = G.identity(n_nodes=g[2])
        close(act(kind, ident, x), x, atol=tol, msg="identity")
        both = G.compose(elem, elem2)
        close(act(kind, both, x).double(), act(kind, elem, act(kind, elem2, x)).double(), atol=tol * 100,
              msg="act(g h) = act(g) act(h)")

    return call, verify


def torch_cat1(x):
    import torch

    return torch.cat([x, x[..., :1]], -1) if x.dim() else x.reshape(1, 1)


@fuzz("geodl.groups.random_input", examples=110)
@with_cases(lambda: cases(S.fixed_dictionaries({"kind": S.sampled_from(KIND_STRINGS), "n": S.integers(0, 6),
                                                "dtype": _dtypes(None, "float32"), "seed": SEEDS}), {
    "kind": values(*BAD_KINDS[:8], 3),
    "n": values(-1, True, 2.5, "3", None, HUGE),
    "dtype": _dtype_muts(),
    "seed": [Mut("generator is a string", "gen", names=("generator",))]}))
def build_random_input(kind, n, dtype, seed):
    import torch
    from geodl.groups import parse_kind, random_input

    def call():
        gen = seed if isinstance(seed, str) else torch.Generator().manual_seed(seed)
        return random_input(kind, n, dtype=dtype if dtype is not None else torch.float64, generator=gen)

    def verify(x):
        expect(isinstance(x, torch.Tensor), type(x).__name__)
        finite(x)
        spec = parse_kind(kind)
        if x.is_floating_point():
            expect(x.dtype == (dtype or torch.float64), f"dtype {x.dtype}")
        if spec.node or spec.base in ("batch", "parts"):
            expect(x.shape[0] == n, f"{x.shape[0]} rows for n={n}")

    return call, verify


_MUT: dict = {}


@fuzz("geodl.groups.register_kind", examples=40)
@with_cases(lambda: cases(S.fixed_dictionaries({"name": S.just("fz"), "act": S.just("scale"),
                                                "node": S.sampled_from(["optional", "always", "never"]),
                                                "shape": S.just("(..., 3)")}), {
    "name": values("bad name!", "", 3, None, "vectors", "node"),
    "act": values("not callable", 3),
    "node": values("sometimes", None, True)}))
def build_register_kind(name, act, node, shape):
    import os
    import torch
    import geodl.groups as G

    if name == "fz":
        _MUT["n"] = _MUT.get("n", 0) + 1
        name = f"fz{os.getpid()}x{_MUT['n']}"
    fn = (lambda spec, g, x: x * 1.0) if act == "scale" else act

    def call():
        return G.register_kind(name, act=fn, shape=shape, doc="a fuzz kind", node=node)

    def verify(_):
        spec = G.parse_kind(("node:" if node == "always" else "") + name)
        g = G.get_group("SO3").sample(torch.Generator().manual_seed(0))
        x = torch.ones(2, 3, dtype=torch.float64)
        close(G.act(spec, g, x), x, atol=0, msg="registered action")

    return call, verify


@fuzz("geodl.groups.Symmetry", examples=40)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "group": S.sampled_from(["E3+perm", "SO3", "O3+perm"]),
    "in_kinds": S.sampled_from([{"pos": "node:points"}, {"pos": "node:points", "batch": "batch"}, {}]),
    "out_kinds": S.sampled_from(["scalar", ("scalar", "node:vectors"), {"y": "node:scalar"}]),
    "batch_arg": S.just(None)}), {
    "group": values("E4", 3, None, ""),
    "in_kinds": values({"pos": "bogus"}, ["pos"], "node:points", {3: "scalar"}),
    "out_kinds": values("bogus", 3, None, ("scalar", 3)),
    "batch_arg": values(3, "missing")}))
def build_Symmetry(group, in_kinds, out_kinds, batch_arg):
    from geodl.groups import Symmetry

    def call():
        return Symmetry(group, in_kinds, out_kinds, batch_arg)

    def verify(s):
        expect(s.group == group and dict(s.in_kinds) == in_kinds, "fields")

    return call, verify


@fuzz("geodl.groups.get_symmetry", examples=12)
@with_cases(lambda: cases(S.fixed_dictionaries({"module": S.sampled_from(["EGNN", "PointNet", "Cartesian3D"])}),
                          {"module": values("Linear", 3, None, "a string")}))
def build_get_symmetry(module):
    import torch
    from geodl.groups import Symmetry, get_symmetry

    def make():
        if module == "EGNN":
            from geodl.nn import EGNN

            return EGNN(8, 1)
        if module == "PointNet":
            from geodl.nn import PointNet

            return PointNet(0, 1, (8,), (8,))
        if module == "Cartesian3D":
            from geodl.nn.location import Cartesian3D

            return Cartesian3D()
        if module == "Linear":
            return torch.nn.Linear(2, 2)
        return module

    def call():
        return get_symmetry(make())

    def verify(s):
        expect(isinstance(s, Symmetry), type(s).__name__)

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_groups"))  # this file's builders only


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
