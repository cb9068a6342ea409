"""Fuzz of the ModelNet loader and the OFF reader (entries registered with ``@fuzz`` in this file).

``read_off``: random meshes (polygons of 3 to 6 vertices) written in every header variant, with
comments, blank lines, CRLF and face colours, read back against the generating arrays (polygons
fan-triangulated by the oracle); damaged files (empty, truncated, extra lines, NaN, bad indices,
garbage) must raise a ValueError naming the file. ``ModelNet``: small folders in the official
layout (the test fixture), every option, checked point by point against the meshes (each sample on
a triangle of its mesh, the normal perpendicular to it), plus damaged folders (a missing or extra
class folder, a bad file, not ModelNet at all) and bad arguments.
"""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, bad_ints, cases, check_entry, expect, fuzz, st, values, with_cases

S = st()

MESH_NAME = "mesh_0001.off"


# --------------------------------------------------------------------------- read_off
@S.composite
def _mesh(draw):
    nv = draw(S.integers(3, 10))
    coord = S.one_of(S.integers(-1000, 1000), S.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32))
    vertices = [[float(draw(coord)) for _ in range(3)] for _ in range(nv)]
    nf = draw(S.integers(0, 6))
    polygons = [draw(S.lists(S.integers(0, nv - 1), min_size=3, max_size=6)) for _ in range(nf)]
    return dict(vertices=vertices, polygons=polygons, variant=draw(S.integers(0, 3)),
                comments=draw(S.booleans()), crlf=draw(S.booleans()), colours=draw(S.booleans()),
                damage=None, path_kind="path")


def _render(vertices, polygons, variant, comments, crlf, colours, counts=None, tail=()):
    nv, nf = counts or (len(vertices), len(polygons))
    vl = [" ".join(c if isinstance(c, str) else repr(float(c)) for c in v) for v in vertices]
    fl = [f"{len(p)} " + " ".join(map(str, p)) + (" 128 64 32" if colours else "") for p in polygons]
    if comments:
        vl = [ln + (" # v" if i % 2 else "") for i, ln in enumerate(vl)] + ["", "# faces"]
    head = {0: ["OFF", f"{nv} {nf} 0"], 1: [f"OFF{nv} {nf} 0"], 2: ["# c", "OFF", "", f"{nv} {nf}"],
            3: [f"OFF {nv} {nf} 0"]}[variant]
    return ("\r\n" if crlf else "\n").join(head + vl + fl + list(tail)) + "\n"


def _damaged(damage, vertices, polygons, variant, comments, crlf, colours):
    """The text of the file with ``damage``."""
    nv, nf = len(vertices), len(polygons)
    style = (variant, comments, crlf, colours)
    if damage == "empty":
        return ""
    if damage == "binary":
        return b"OFF\n3 1 0\n\x00\xff\xfe\n"
    if damage == "not OFF":
        return "PLY" + _render(vertices, polygons, *style)[3:]
    if damage == "truncated":  # the header announces one face more than the file holds
        return _render(vertices, polygons, *style, counts=(nv, nf + 1))
    if damage == "extra line":
        return _render(vertices, polygons, *style, tail=["3 0 1 2"])
    if damage == "nan vertex":
        return _render([[0.0, float("nan"), 1.0]] + vertices[1:], polygons, *style)
    if damage == "garbage token":
        return _render([["1", "one", "0"]] + vertices[1:], polygons, *style)
    if damage == "index out of range":
        return _render(vertices, polygons + [[0, 1, nv]], *style)
    raise AssertionError(damage)


@fuzz("geodl.data.read_off", examples=60)
@with_cases(lambda: cases(_mesh(), {
    "damage": values("empty", "truncated", "extra line", "nan vertex", "index out of range", "not OFF",
                     "garbage token", "binary", names=(MESH_NAME,)),
    "path_kind": values("int", "bytes", "None", names=("path",)),
}))
def build_read_off(vertices, polygons, variant, comments, crlf, colours, damage, path_kind):
    import pathlib
    import tempfile

    import numpy as np

    from geodl.data import read_off

    style = (variant, comments, crlf, colours)
    text = _render(vertices, polygons, *style) if damage is None else _damaged(damage, vertices, polygons, *style)
    path = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-off-")) / MESH_NAME
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    arg = {"path": path, "int": 3, "bytes": bytes(path), "None": None}[path_kind]

    def call():
        return read_off(arg)

    def verify(out):
        v, f = out
        expect(v.dtype == np.float64 and f.dtype == np.int64 and v.shape == (len(vertices), 3), f"{v.dtype} {v.shape}")
        expect(np.array_equal(v, np.array(vertices, dtype=np.float64)), "vertices differ")
        tris = [(p[0], p[k], p[k + 1]) for p in polygons for k in range(1, len(p) - 1)]
        expect(f.shape == (len(tris), 3) and np.array_equal(f, np.array(tris, dtype=np.int64).reshape(-1, 3)),
               f"faces {f.tolist()} != fan triangulation {tris}")

    return call, verify


# --------------------------------------------------------------------------- the class lists
_OFFICIAL_40 = ("airplane bathtub bed bench bookshelf bottle bowl car chair cone cup curtain desk door dresser "
                "flower_pot glass_box guitar keyboard lamp laptop mantel monitor night_stand person piano plant "
                "radio range_hood sink sofa stairs stool table tent toilet tv_stand vase wardrobe xbox").split()
_OFFICIAL_10 = "bathtub bed chair desk dresser monitor night_stand sofa table toilet".split()


@fuzz("geodl.data.MODELNET10_CLASSES", "geodl.data.MODELNET40_CLASSES", examples=2)
@with_cases(lambda: cases(S.fixed_dictionaries({"version": S.sampled_from(["10", "40"])}), {}))
def build_class_lists(version):
    def call():
        import geodl.data

        return getattr(geodl.data, f"MODELNET{version}_CLASSES")

    def verify(classes):
        expect(isinstance(classes, tuple), type(classes).__name__)
        expect(list(classes) == (_OFFICIAL_10 if version == "10" else _OFFICIAL_40), f"{classes}")

    return call, verify


# --------------------------------------------------------------------------- ModelNet
FOLDER_DAMAGE = {
    "missing class": ("chair",),
    "extra folder": ("spaceship",),
    "empty file": ("desk_0001.off",),
    "truncated file": ("desk_0001.off",),
    "not ModelNet": ("root",),
    "no split folder": ("sofa",),
}


@S.composite
def _modelnet(draw):
    return dict(version=draw(S.sampled_from(["10", "40"])), auto=draw(S.booleans()),
                split=draw(S.sampled_from(["train", "test"])), num_points=draw(S.integers(1, 48)),
                normals=draw(S.booleans()), seed=draw(S.integers(0, 2**31 - 1)), cache=draw(S.booleans()),
                hidden=draw(S.booleans()), damage=None, fixture_seed=draw(S.integers(0, 1000)))


def _point_on_mesh(p, tri, tol, dist):
    """Index of a triangle of ``tri`` (F, 3, 3) containing the point ``p`` (3,) (barycentric
    coordinates within ``tol``, off the plane by less than ``dist``), or -1."""
    import numpy as np

    a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    for k in range(len(tri)):
        m = np.stack([e1[k], e2[k]], 1)
        (u, v), *_ = np.linalg.lstsq(m, p - a[k], rcond=None)
        if u >= -tol and v >= -tol and u + v <= 1 + tol and np.linalg.norm(m @ [u, v] + a[k] - p) < dist:
            return k
    return -1


@fuzz("geodl.data.ModelNet", examples=40)
@with_cases(lambda: cases(_modelnet(), {
    "damage": [v for d, names in FOLDER_DAMAGE.items() for v in values(d, names=names)],
    "split": values("val", "TRAIN", None, 1),
    "version": values("20", "ModelNet10", 10.5, True),
    "num_points": values(*bad_ints(), HUGE * 1000),
    "seed": values(-1, 2.5, "0", None),
    "normals": values("yes", None, 1),
    "cache": values("no", None),
}))
def build_modelnet(version, auto, split, num_points, normals, seed, cache, hidden, damage, fixture_seed):
    import os
    import pathlib
    import shutil
    import tempfile

    import numpy as np
    import torch

    from geodl.data import MODELNET10_CLASSES, MODELNET40_CLASSES, ModelNet, read_off
    from modelnet_fixture import write_modelnet_fixture

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-modelnet-"))
    os.environ["GEODL_DATA"] = str(tmp / "home")
    v = version if isinstance(version, str) and version in ("10", "40") else "10"
    root = write_modelnet_fixture(tmp / "data", v, train=1, test=1, seed=fixture_seed)
    if hidden:
        (root / ".DS_Store").write_bytes(b"\0")
        (root / "__MACOSX").mkdir()
    if damage == "missing class":
        shutil.rmtree(root / "chair")
    elif damage == "extra folder":
        (root / "spaceship" / "train").mkdir(parents=True)
    elif damage in ("empty file", "truncated file"):
        for s in ("train", "test"):
            (f,) = list((root / "desk" / s).iterdir())  # one file per split: give both the same name
            text = f.read_text()
            f.unlink()
            (f.parent / "desk_0001.off").write_text("" if damage == "empty file" else text[:-30])
    elif damage == "not ModelNet":
        root = tmp / "photos"
        (root / "holiday").mkdir(parents=True)
    elif damage == "no split folder":
        shutil.rmtree(root / "sofa" / "train")
        shutil.rmtree(root / "sofa" / "test")
    kwargs = dict(version=None if auto and version in ("10", "40") else version, num_points=num_points, normals=normals,
                  seed=seed, cache=cache, progress=False)

    def call():
        return ModelNet(root, split, **kwargs)

    def verify(ds):
        classes = MODELNET10_CLASSES if v == "10" else MODELNET40_CLASSES
        expect(ds.version == v and ds.classes == classes and ds.root == root, f"{ds.version} {ds.root}")
        expect(len(ds) == len(classes) and [f.parent.parent.name for f in ds.files] == list(classes), "files")
        again = ModelNet(root, split, **kwargs)  # the same seed: the same samples (a cache hit when cache)
        for i in range(len(ds)):
            d = ds[i]
            expect(d.pos.shape == (num_points, 3) and d.pos.dtype == torch.float32, f"pos {tuple(d.pos.shape)}")
            expect(d.y.tolist() == [i], f"label {d.y.tolist()} of {ds.files[i]}")
            expect(torch.equal(d.pos, again[i].pos), "same seed, other samples")
            expect(("normal" in d) == normals, "normal present iff normals")
            if i % 7:
                continue  # the geometric oracle on every 7th mesh
            vert, faces = read_off(ds.files[i])
            tri = vert[faces]
            scale = float(np.abs(vert).max())
            for j in range(num_points):
                p = d.pos[j].double().numpy()
                k = _point_on_mesh(p, tri, 1e-4, 1e-5 * max(scale, 1.0))
                expect(k >= 0, f"sample {p} is on no triangle of {ds.files[i]}")
                if normals:
                    n = d.normal[j].double().numpy()
                    c = np.cross(tri[k, 1] - tri[k, 0], tri[k, 2] - tri[k, 0])
                    expect(abs(np.linalg.norm(n) - 1) < 1e-5, "normal not unit")
                    expect(np.linalg.norm(np.cross(n, c / np.linalg.norm(c))) < 1e-4, "normal not the face normal")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_modelnet"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
