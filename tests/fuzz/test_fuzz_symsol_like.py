"""Fuzz of the SYMSOL-like renders and their symmetry sets (entries registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, st, values, with_cases

S = st()
SHAPES = ("tet", "cube", "icosa", "cone", "cyl", "tetX", "cylO", "sphereX")
ORDERS = (12, 24, 60, 360, 720, 3, 1, 1)


@fuzz("geodl.data.SymsolLike", "geodl.data.SYMSOL_SHAPES", examples=20)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "split": S.sampled_from(["train", "val", "test"]),
    "shapes": S.one_of(S.none(), S.lists(S.sampled_from(SHAPES), min_size=1, max_size=3, unique=True)),
    "per_shape": S.integers(1, 2), "size": S.sampled_from([64, 65, 80, 96]), "seed": S.integers(0, 5)}), {
    "split": values("training", "", 3, None),
    "shapes": values(["sphere"], [], "cube", [3], ["tet", "tet"], 5, ("cyl", None), ["TET"]),
    "per_shape": values(0, -1, True, 1.5, "2", None) + values(HUGE, names=("per_shape",)),
    "size": values(63, 97, 0, -64, 32, 128, True, 64.0, "64", None, HUGE),
    "seed": values(-1, "0", 2.5, None)}))
def build_symsol_like(split, shapes, per_shape, size, seed):
    import torch
    from geodl.data import SYMSOL_SHAPES, SymsolLike

    kw = dict(shapes=shapes, per_shape=per_shape, size=size, seed=seed)

    def call():
        return SymsolLike(split, **kw)

    def verify(ds):
        names = tuple(SYMSOL_SHAPES) if shapes is None else tuple(shapes)
        k = len(names)
        expect(tuple(SYMSOL_SHAPES) == SHAPES and tuple(SYMSOL_SHAPES.values()) == ORDERS, "SYMSOL_SHAPES")
        expect(ds.shapes == names and ds.orders == tuple(SYMSOL_SHAPES[s] for s in names), f"shapes {ds.shapes}")
        expect(len(ds) == per_shape * k, f"len {len(ds)}")
        expect(ds.y.tolist() == [c for c in range(k) for _ in range(per_shape)], "labels by shape then index")
        expect(ds.images.shape == (len(ds), 3, size, size) and ds.images.dtype == torch.float32,
               f"images {tuple(ds.images.shape)} {ds.images.dtype}")
        finite(ds.images, ds.rotation)
        expect(float(ds.images.min()) >= 0 and float(ds.images.max()) <= 1, "pixels outside [0, 1]")
        expect(float(ds.images.amax(dim=(1, 2, 3)).min()) > 0.2, "an image without its object")
        image, R, y = ds[len(ds) - 1]
        expect(image.shape == (3, size, size) and R.shape == (3, 3) and int(y) == k - 1, "item")
        Rd = ds.rotation.double()
        eye = torch.eye(3, dtype=torch.float64)
        close(Rd @ Rd.transpose(1, 2), eye.expand_as(Rd), atol=1e-5, msg="orthogonal")
        close(torch.linalg.det(Rd), torch.ones(len(Rd), dtype=torch.float64), atol=1e-5, msg="det +1")
        S_last = ds.symmetries(len(ds) - 1)
        expect(S_last.shape == (ds.orders[-1], 3, 3), f"symmetries {tuple(S_last.shape)}")
        close(S_last[0], ds.rotation[-1], atol=1e-6, msg="R_i first in its set")
        again = SymsolLike(split, **kw)
        close(again.images, ds.images, atol=0, rtol=0, msg="same seed, same images")
        close(again.rotation, ds.rotation, atol=0, rtol=0, msg="same seed, same rotations")
        other = SymsolLike({"train": "test", "val": "train", "test": "val"}[split], **kw)
        expect(not torch.equal(other.rotation, ds.rotation), "another split gave the same rotations")

    return call, verify


def _dtype_muts():
    import torch

    return [Mut("the string 'float32'", "float32"), Mut("torch.int64", torch.int64), Mut("an int", 3)]


def _dtypes():
    import torch

    return S.sampled_from([None, torch.float32, torch.float64])


@fuzz("geodl.data.symmetry_set", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({"shape": S.sampled_from(SHAPES), "dtype": _dtypes()}), {
    "shape": values("sphere", "", None, 3, "TET", ("tet",)), "dtype": _dtype_muts()}))
def build_symmetry_set(shape, dtype):
    import torch
    from geodl.data import symmetry_set

    def call():
        return symmetry_set(shape) if dtype is None else symmetry_set(shape, dtype)

    def verify(G):
        n = dict(zip(SHAPES, ORDERS))[shape]
        want = dtype or torch.float64
        expect(G.shape == (n, 3, 3) and G.dtype == want, f"shape {tuple(G.shape)} {G.dtype}")
        Gd = G.double()
        tol = 1e-5 if want == torch.float32 else 1e-9
        eye = torch.eye(3, dtype=torch.float64)
        close(Gd[0], eye, atol=tol, msg="identity first")
        close(Gd @ Gd.transpose(1, 2), eye.expand_as(Gd), atol=tol * 10, msg="orthogonal")
        if n <= 60:  # closed under products (the large sets: tests/data/test_symsol_like.py)
            P = (Gd[:, None] @ Gd[None]).reshape(-1, 1, 9)
            dist = (P - Gd.reshape(1, -1, 9)).abs().amax(-1).amin(-1)
            expect(float(dist.max()) < tol * 100, "not closed under products")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_symsol_like"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
