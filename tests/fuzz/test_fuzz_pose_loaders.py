"""Fuzz of the pose-dataset loaders (entries registered with ``@fuzz`` in this file).

``Symsol``: small folders in the release format (an npz keyed by shape of ``(n, S, 3, 3)`` rotation
sets, PIL-written PNGs), random shapes, set sizes, ``limit`` and ``shapes`` selections, read back
exactly; damaged folders (an unknown key, a NaN or a non-rotation, a wrong array shape, a missing
or truncated PNG, a garbage npz) must raise a ValueError naming the file, bad arguments one naming
the argument. ``Pascal3D``: a release folder with ``scipy.io.savemat`` annotations in the nested
struct layout, random angles and flags, checked against :func:`pascal3d_rotation` and the filters;
damaged annotations or lists must name the file. ``pascal3d_rotation``: random angles against the
product ``Rz(theta) Rx(e - pi/2) Rz(-a)`` computed here in numpy.
"""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, Mut, cases, check_entry, expect, fuzz, st, values, with_cases

S = st()

_SHAPES = ("tet", "cube", "icosa", "cone", "cyl", "tetX", "cylO", "sphereX")
_CATEGORIES = ("aeroplane", "bicycle", "boat", "bottle", "bus", "car", "chair", "diningtable", "motorbike", "sofa",
               "train", "tvmonitor")


def _rotations(rng, k):
    import numpy as np

    q, _ = np.linalg.qr(rng.standard_normal((k, 3, 3)))
    return q * np.sign(np.linalg.det(q))[:, None, None]


# --------------------------------------------------------------------------- pascal3d_rotation
def _numpy_rotation(a, e, t):
    import math

    import numpy as np

    def rz(x):
        return np.array([[math.cos(x), -math.sin(x), 0], [math.sin(x), math.cos(x), 0], [0, 0, 1]])

    def rx(x):
        return np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])

    return rz(math.radians(t)) @ rx(math.radians(e) - math.pi / 2) @ rz(-math.radians(a))


@S.composite
def _angles(draw):
    n = draw(S.integers(0, 4))
    return dict(n=n, seed=draw(S.integers(0, 2**31 - 1)), as_tensor=draw(S.booleans()), poison=None)


@fuzz("geodl.data.pascal3d_rotation", examples=30)
@with_cases(lambda: cases(_angles(), {
    "poison": [Mut(f"{w} in {a}", (a, w), "invalid", (a,)) for a in ("azimuth", "elevation", "theta")
               for w in ("nan", "inf")] + values("str", names=("azimuth",)),
}))
def build_pascal3d_rotation(n, seed, as_tensor, poison):
    import numpy as np
    import torch

    from geodl.data import pascal3d_rotation

    rng = np.random.default_rng(seed)
    ang = {"azimuth": rng.uniform(-360, 720, max(n, 1)), "elevation": rng.uniform(-90, 90, max(n, 1)),
           "theta": rng.uniform(-180, 180, max(n, 1))}
    args = {k: (torch.from_numpy(v) if as_tensor else float(v[0])) for k, v in ang.items()}
    if poison == "str":
        args["azimuth"] = "30"
    elif poison is not None:
        name, what = poison
        x = torch.from_numpy(ang[name].copy())
        x[0] = float(what)
        args[name] = x

    def call():
        return pascal3d_rotation(args["azimuth"], args["elevation"], args["theta"])

    def verify(R):
        k = max(n, 1) if as_tensor else 1
        want = np.stack([_numpy_rotation(ang["azimuth"][i], ang["elevation"][i], ang["theta"][i]) for i in range(k)])
        got = R.reshape(-1, 3, 3).numpy() if as_tensor else R.numpy()[None]
        expect(R.dtype == torch.float64, f"dtype {R.dtype}")
        expect(got.shape == want.shape and np.allclose(got, want, atol=1e-12), "differs from Rz(t) Rx(e - pi/2) Rz(-a)")

    return call, verify


@fuzz("geodl.data.PASCAL3D_CATEGORIES", examples=2)
@with_cases(lambda: cases(S.fixed_dictionaries({"i": S.integers(0, 11)}), {}))
def build_categories(i):
    def call():
        import geodl.data

        return geodl.data.PASCAL3D_CATEGORIES

    def verify(cats):
        expect(tuple(cats) == _CATEGORIES and cats[i] == _CATEGORIES[i], f"{cats}")

    return call, verify


# --------------------------------------------------------------------------- Symsol
SYMSOL_DAMAGE = {
    "unknown key": ("rotations.npz",), "nan": ("rotations.npz",), "not a rotation": ("rotations.npz",),
    "wrong shape": ("rotations.npz",), "garbage npz": ("rotations.npz",), "missing png": ("images",),
    "truncated png": ("images",),
}


@S.composite
def _symsol(draw):
    shapes = draw(S.lists(S.sampled_from(_SHAPES), min_size=1, max_size=3, unique=True))
    return dict(sets={s: draw(S.integers(1, 6)) for s in shapes}, n_images=draw(S.integers(1, 3)),
                split=draw(S.sampled_from(["train", "test"])), select=draw(S.booleans()),
                limit=draw(S.one_of(S.none(), S.integers(1, 4))), fixture_seed=draw(S.integers(0, 2**31 - 1)),
                damage=None)


@fuzz("geodl.data.Symsol", examples=30)
@with_cases(lambda: cases(_symsol(), {
    "damage": [m for d, names in SYMSOL_DAMAGE.items() for m in values(d, names=names)],
    "split": values("val", "TRAIN", None, 1),
    "limit": values(0, -1, 2.5, "2", True),
}))
def build_symsol(sets, n_images, split, select, limit, fixture_seed, damage):
    import pathlib
    import tempfile

    import numpy as np
    import torch
    from PIL import Image

    from geodl.data import Symsol

    rng = np.random.default_rng(fixture_seed)
    top = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-symsol-"))
    sp = split if split in ("train", "test") else "train"
    folder = top / "symsol" / sp
    (folder / "images").mkdir(parents=True)
    rots = {s: np.stack([_rotations(rng, k) for _ in range(n_images)]).astype(np.float32) for s, k in sets.items()}
    pixels = {}
    for s in sets:
        for i in range(n_images):
            pixels[s, i] = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            Image.fromarray(pixels[s, i]).save(folder / "images" / f"{s}_{i:05d}.png")
    first = next(iter(sets))
    entries = dict(rots)
    if damage == "unknown key":
        entries["pyramid"] = rots[first]
    elif damage == "nan":
        entries[first] = rots[first].copy()
        entries[first][0, 0, int(rng.integers(0, 3)), int(rng.integers(0, 3))] = np.nan
    elif damage == "not a rotation":
        entries[first] = rots[first].copy()
        entries[first][0, 0] *= -1
    elif damage == "wrong shape":
        entries[first] = rots[first].reshape(n_images, -1)
    np.savez(folder / "rotations.npz", **entries)
    if damage == "garbage npz":
        (folder / "rotations.npz").write_bytes(b"PK\x03\x04 not really" * 4)
    if damage == "missing png":
        (folder / "images" / f"{first}_00000.png").unlink()
    elif damage == "truncated png":
        p = folder / "images" / f"{first}_00000.png"
        p.write_bytes(p.read_bytes()[:40])
    shapes = [first] if select else None

    def call():
        ds = Symsol(top / "symsol", split, shapes=shapes, limit=limit, image_size=4)
        return ds, [ds[i] for i in range(len(ds))]

    def verify(out):
        ds, items = out
        kept = [first] if select else sorted(sets, key=_SHAPES.index)
        n = n_images if limit is None else min(limit, n_images)
        expect(ds.shapes == kept, f"shapes {ds.shapes}")
        expect(ds.items == [(s, i) for s in kept for i in range(n)], f"items {ds.items}")
        for (s, i), (img, R, label) in zip(ds.items, items):
            expect(img.shape == (3, 4, 4) and img.dtype == torch.float32, f"image {tuple(img.shape)}")
            expect(np.array_equal((img.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), pixels[s, i]),
                   "pixels")
            expect(np.array_equal(R.numpy(), rots[s][i]), "rotations differ from the npz")
            expect(int(label) == _SHAPES.index(s), f"label {int(label)}")

    return call, verify


# --------------------------------------------------------------------------- Pascal3D
PASCAL_DAMAGE = {"garbage mat": ("Annotations",), "no record": ("Annotations",), "nan angle": ("Annotations",),
                 "missing annotation": ("Annotations",), "missing list": ("ImageSets",)}


@S.composite
def _pascal(draw):
    cats = draw(S.lists(S.sampled_from(_CATEGORIES), min_size=1, max_size=2, unique=True))
    return dict(categories=cats, split=draw(S.sampled_from(["train", "test"])), n_objects=draw(S.integers(1, 4)),
                skip=draw(S.tuples(S.booleans(), S.booleans(), S.booleans())), first_only=draw(S.booleans()),
                fixture_seed=draw(S.integers(0, 2**31 - 1)), damage=None)


@fuzz("geodl.data.Pascal3D", examples=30)
@with_cases(lambda: cases(_pascal(), {
    "damage": [m for d, names in PASCAL_DAMAGE.items() for m in values(d, names=names)],
    "split": values("val", None, 3),
    "categories": values(["truck"], [], [3], "Car"),
}))
def build_pascal3d(categories, split, n_objects, skip, first_only, fixture_seed, damage):
    import pathlib
    import tempfile

    import numpy as np
    import scipy.io
    import torch
    from PIL import Image

    from geodl.data import Pascal3D

    rng = np.random.default_rng(fixture_seed)
    d = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-pascal-")) / "PASCAL3D+_release1.1"
    voc = d / "PASCAL/VOCdevkit/VOC2012/ImageSets/Main"
    voc.mkdir(parents=True)
    (d / "Image_sets").mkdir()
    cats = [c for c in categories if c in _CATEGORIES] or ["car"]
    written = []  # (category, azimuth, elevation, theta, flags, object index), in the loader's order
    fields = ("class", "viewpoint", "bbox", "occluded", "truncated", "difficult")
    for cat in sorted(cats, key=_CATEGORIES.index):
        (voc / f"{cat}_train.txt").write_text(f"2008_000001 1\n")
        (voc / f"{cat}_val.txt").write_text(f"2009_000001 1\n2009_000002 -1\n")
        (d / "Image_sets" / f"{cat}_imagenet_train.txt").write_text("n1\n")
        (d / "Image_sets" / f"{cat}_imagenet_val.txt").write_text("")
        files = [("pascal", "2008_000001"), ("imagenet", "n1")] if split == "train" else [("pascal", "2009_000001")]
        for source, stem in [("pascal", "2008_000001"), ("imagenet", "n1"), ("pascal", "2009_000001")]:
            (d / "Images" / f"{cat}_{source}").mkdir(parents=True, exist_ok=True)
            (d / "Annotations" / f"{cat}_{source}").mkdir(parents=True, exist_ok=True)
            ext = ".jpg" if source == "pascal" else ".JPEG"
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
                d / "Images" / f"{cat}_{source}" / f"{stem}{ext}", format="JPEG")
            arr = np.zeros((1, n_objects), dtype=[(f, "O") for f in fields])
            for k in range(n_objects):
                a, e, t = rng.uniform(0, 360), rng.uniform(-90, 90), rng.uniform(-180, 180)
                flags = tuple(int(x) for x in rng.integers(0, 2, 3))
                cls = cat if rng.random() < 0.8 else "person"
                arr[0, k] = (cls, {"azimuth": a, "elevation": e, "theta": t, "distance": 4.0},
                             np.array([2.0, 2.0, 14.0, 10.0]), *flags)
                keep = cls == cat and not any(f and s for f, s in zip(flags, skip)) and (k == 0 or not first_only)
                if keep and (source, stem) in files:
                    written.append((cat, a, e, t, k))
            scipy.io.savemat(d / "Annotations" / f"{cat}_{source}" / f"{stem}.mat", {"record": {"objects": arr}})
    first_cat = sorted(cats, key=_CATEGORIES.index)[0]
    target = d / "Annotations" / f"{first_cat}_pascal" / ("2008_000001.mat" if split == "train" else "2009_000001.mat")
    if damage == "garbage mat":
        target.write_bytes(b"MATLAB 5.0 MAT-file, but not really" * 5)
    elif damage == "no record":
        scipy.io.savemat(target, {"other": np.zeros(2)})
    elif damage == "nan angle":
        arr = np.zeros((1, 1), dtype=[(f, "O") for f in fields])
        arr[0, 0] = (first_cat, {"azimuth": np.nan, "elevation": 0.0, "theta": 0.0}, np.array([2.0, 2, 14, 10]), 0, 0, 0)
        scipy.io.savemat(target, {"record": {"objects": arr}})
    elif damage == "missing annotation":
        target.unlink()
    elif damage == "missing list":
        (voc / f"{first_cat}_{'train' if split == 'train' else 'val'}.txt").unlink()

    def call():
        ds = Pascal3D(d, split, categories=categories, skip_occluded=skip[0], skip_truncated=skip[1],
                      skip_difficult=skip[2], first_object_only=first_only, image_size=8)
        return ds, [ds[i] for i in range(len(ds))]

    def verify(out):
        from geodl.data import pascal3d_rotation

        ds, items = out
        got = [(o.category, o.azimuth, o.elevation, o.theta, o.object_index) for o in ds.objects]
        expect(got == written, f"objects {got} != {written}")
        if written:
            want = pascal3d_rotation(torch.tensor([w[1] for w in written], dtype=torch.float64),
                                     torch.tensor([w[2] for w in written], dtype=torch.float64),
                                     torch.tensor([w[3] for w in written], dtype=torch.float64)).float()
            expect(torch.allclose(ds.rotations, want, atol=1e-6), "rotations")
        for (img, R, label), w in zip(items, written):
            expect(img.shape == (3, 8, 8) and float(img.min()) >= 0 and float(img.max()) <= 1, "image")
            expect(int(label) == _CATEGORIES.index(w[0]), f"label {int(label)}")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_pose_loaders"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
