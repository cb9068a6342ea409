"""The ModelNet loader on small folders written in the official layout and the real .off format:
the class lists, auto-detection, the header variant, comments, quads, missing / extra / hidden
folders, empty and truncated files, seeded area-weighted sampling with normals, and the cache."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("trimesh")  # the `mesh` extra: ModelNet samples surfaces with trimesh

import geodl.data._modelnet as mn  # noqa: E402
from geodl.data import MODELNET10_CLASSES, MODELNET40_CLASSES, ModelNet  # noqa: E402
from modelnet_fixture import CUBE_QUADS, box_off_text, write_modelnet_fixture  # noqa: E402

CUBE = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
FAST = dict(num_points=64, cache=False, progress=False)


@pytest.fixture
def mn10(tmp_path):
    return write_modelnet_fixture(tmp_path / "data", "10", train=2, test=1, seed=0)


@pytest.fixture(autouse=True)
def _data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GEODL_DATA", str(tmp_path / "home"))


def test_class_lists_are_the_official_ones():
    assert MODELNET10_CLASSES == ("bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa",
                                  "table", "toilet")
    assert len(MODELNET40_CLASSES) == 40 == len(set(MODELNET40_CLASSES))
    assert list(MODELNET40_CLASSES) == sorted(MODELNET40_CLASSES)
    assert set(MODELNET10_CLASSES) < set(MODELNET40_CLASSES)
    assert {"airplane", "flower_pot", "glass_box", "range_hood", "tv_stand", "xbox"} <= set(MODELNET40_CLASSES)


def test_fixture_has_the_real_variants(mn10):
    heads = [p.read_text().split("\n", 1)[0] for p in sorted(mn10.rglob("*.off"))]
    assert "OFF8 12 0" in heads and "OFF 8 6 0" in heads and "OFF" in heads
    texts = [p.read_text() for p in mn10.rglob("*.off")]
    assert any("#" in t for t in texts) and any("\n4 " in t for t in texts)  # comments and quads


def test_loads_the_fixture(mn10):
    ds = ModelNet(mn10, "train", **FAST)
    assert ds.version == "10" and ds.classes == MODELNET10_CLASSES and ds.root == mn10
    assert len(ds) == 20 and len(ds.files) == 20
    assert ds.files == sorted(ds.files, key=lambda p: (MODELNET10_CLASSES.index(p.parent.parent.name), p.name))
    assert all(p.parent.name == "train" for p in ds.files)
    for i in range(len(ds)):
        d = ds[i]
        assert d.pos.shape == (64, 3) and d.pos.dtype == torch.float32 and bool(torch.isfinite(d.pos).all())
        assert d.y.shape == (1,) and d.y.dtype == torch.int64
        assert ds.classes[int(d.y)] == ds.files[i].parent.parent.name
        assert "normal" not in d
    assert torch.equal(ds[-1].pos, ds[19].pos)
    test = ModelNet(mn10, "test", **FAST)
    assert len(test) == 10 and {p.name for p in test.files} == {f"{c}_0003.off" for c in MODELNET10_CLASSES}


def test_modelnet40_detected_and_parent_folder_accepted(tmp_path):
    base = write_modelnet_fixture(tmp_path / "unzipped", "40", train=1, test=1)
    ds = ModelNet(tmp_path / "unzipped", "test", **FAST)  # the folder the archive was unpacked into
    assert ds.version == "40" and ds.root == base and len(ds) == 40 and ds.classes == MODELNET40_CLASSES
    assert ModelNet(base, "test", version=40, **FAST).version == "40"
    with pytest.raises(ValueError, match="extra folder.*airplane"):
        ModelNet(base, "test", version="10", **FAST)


def test_samples_lie_on_the_surface_with_face_normals(tmp_path):
    ds = ModelNet(_cube_folder(tmp_path), "train", num_points=500, normals=True, cache=False, progress=False)
    d = ds[0]
    p, n = d.pos.double(), d.normal.double()
    assert d.normal.shape == (500, 3) and d.normal.dtype == torch.float32
    assert bool(((p >= -1e-6) & (p <= 1 + 1e-6)).all())
    on_face = ((p.abs() < 1e-6) | ((p - 1).abs() < 1e-6)).any(-1)
    assert bool(on_face.all())  # every point on the surface of the unit cube
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(500, dtype=torch.float64))
    axis = n.abs().argmax(-1)
    assert bool((n.abs().max(-1).values > 1 - 1e-6).all())  # axis-aligned face normals
    coord = p.gather(1, axis[:, None]).squeeze(1)
    outward = torch.where(coord > 0.5, 1.0, -1.0).double()  # the quads are wound outwards
    torch.testing.assert_close(n.gather(1, axis[:, None]).squeeze(1), outward)


def test_sampling_is_area_weighted(tmp_path):
    # two triangles, areas 1 and 3 (x < 2 and x > 10): a quarter of the points on the first
    text = "OFF\n6 2 0\n0 0 0\n2 0 0\n0 1 0\n10 0 0\n13 0 0\n10 2 0\n3 0 1 2\n3 3 4 5\n"
    ds = ModelNet(_cube_folder(tmp_path, text), "train", num_points=8000, cache=False, progress=False)
    frac = float((ds[0].pos[:, 0] < 5).double().mean())
    assert abs(frac - 0.25) < 0.02, frac


def test_same_seed_same_samples(mn10):
    a = ModelNet(mn10, "train", seed=3, normals=True, **FAST)
    b = ModelNet(mn10, "train", seed=3, normals=True, **FAST)
    c = ModelNet(mn10, "train", seed=4, normals=True, **FAST)
    for i in (0, 7, 19):
        assert torch.equal(a[i].pos, b[i].pos) and torch.equal(a[i].normal, b[i].normal)
        assert not torch.equal(a[i].pos, c[i].pos)
    # a file's samples do not depend on the other files present
    shutil.rmtree(mn10 / "bathtub" / "train")
    (mn10 / "bathtub" / "train").mkdir()
    d = ModelNet(mn10, "train", seed=3, normals=True, **FAST)
    assert len(d) == 18 and torch.equal(d[0].pos, a[2].pos)


def test_items_are_copies(mn10):
    ds = ModelNet(mn10, "train", **FAST)
    ds[0].pos.zero_()
    assert ds[0].pos.abs().sum() > 0


def test_pyg_dataloader_batches(mn10):
    from torch_geometric.loader import DataLoader

    batch = next(iter(DataLoader(ModelNet(mn10, "train", normals=True, **FAST), batch_size=4)))
    assert batch.pos.shape == (256, 3) and batch.normal.shape == (256, 3) and batch.y.shape == (4,)
    assert batch.num_graphs == 4 and batch.batch.shape == (256,)


# -- the folder checks ---------------------------------------------------------------------------

def test_missing_class_folder_is_named(mn10):
    shutil.rmtree(mn10 / "night_stand")
    for version in (None, "10"):
        with pytest.raises(ValueError, match=r"missing class folder\(s\) night_stand") as e:
            ModelNet(mn10, version=version, **FAST)
        assert str(mn10) in str(e.value)


def test_extra_folder_is_named(mn10):
    (mn10 / "spaceship" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="extra folder.*spaceship") as e:
        ModelNet(mn10, **FAST)
    assert "ModelNet10" in str(e.value)


def test_extra_and_missing_against_the_closest_list(tmp_path):
    base = write_modelnet_fixture(tmp_path / "d", "40", train=1, test=0)
    shutil.rmtree(base / "xbox")
    (base / "robot").mkdir()
    with pytest.raises(ValueError, match=r"ModelNet40 class list: missing class folder\(s\) xbox; extra folder.*robot"):
        ModelNet(base, **FAST)


def test_hidden_entries_are_ignored(mn10):
    (mn10 / ".DS_Store").write_bytes(b"\0\1")
    (mn10 / "__MACOSX" / "chair").mkdir(parents=True)
    (mn10 / ".git").mkdir()
    (mn10 / "README.txt").write_text("ModelNet10\n")
    (mn10 / "chair" / "train" / ".DS_Store").write_bytes(b"\0")
    (mn10 / "chair" / "train" / "._chair_0001.off").write_bytes(b"\0\5 AppleDouble")
    (mn10 / "chair" / "train" / "notes.txt").write_text("not a mesh")
    ds = ModelNet(mn10, "train", **FAST)
    assert ds.version == "10" and len(ds) == 20


def test_not_a_modelnet_folder_names_root(tmp_path):
    (tmp_path / "x" / "photos").mkdir(parents=True)
    (tmp_path / "x" / "music").mkdir()
    for root, what in ((tmp_path / "x", "not a ModelNet folder"), (tmp_path / "nope", "does not exist"),
                       (tmp_path / "empty", "not a ModelNet folder")):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match=what) as e:
            ModelNet(root, **FAST)
        assert str(e.value).startswith("root:") and str(root) in str(e.value)
    f = tmp_path / "file.off"
    f.write_text("OFF\n0 0 0\n")
    with pytest.raises(ValueError, match="root: .* is not a folder"):
        ModelNet(f, **FAST)
    with pytest.raises(ValueError, match="not a ModelNet folder"):  # an explicit version does not help
        ModelNet(tmp_path / "x", version="10", **FAST)


def test_class_without_split_folder(mn10):
    shutil.rmtree(mn10 / "sofa" / "test")
    assert len(ModelNet(mn10, "train", **FAST)) == 20
    with pytest.raises(ValueError, match="sofa has no test/ folder"):
        ModelNet(mn10, "test", **FAST)


def test_no_off_files(tmp_path):
    for c in MODELNET10_CLASSES:
        (tmp_path / c / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no .off files"):
        ModelNet(tmp_path, **FAST)


# -- bad files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("content, what", [
    ("", "empty"),
    ("OFF\n8 12 0\n0 0 0\n1 0 0\n", "truncated"),
    ("OFF8 6 0\n" + "\n".join(["0 0 0"] * 7) + "\n0 0\n" + "\n".join(["4 0 1 2 3"] * 6) + "\n", "line 9"),
    ("OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n", "zero total surface area"),
    ("OFF\n3 0 0\n0 0 0\n1 1 1\n2 2 2\n", "no faces"),
])
def test_a_bad_file_is_named(mn10, content, what):
    bad = mn10 / "desk" / "train" / "desk_0002.off"
    bad.write_text(content)
    with pytest.raises(ValueError, match=what) as e:
        ModelNet(mn10, "train", **FAST)
    assert str(bad) in str(e.value)
    assert len(ModelNet(mn10, "test", **FAST)) == 10  # the other split is unaffected


# -- arguments -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(split="val"), ValueError, "split"),
    (dict(split=None), ValueError, "split"),
    (dict(version="20"), ValueError, "version"),
    (dict(version=10.0), TypeError, "version"),
    (dict(version=True), TypeError, "version"),
    (dict(num_points=0), ValueError, "num_points"),
    (dict(num_points=-5), ValueError, "num_points"),
    (dict(num_points=2.5), TypeError, "num_points"),
    (dict(num_points=True), TypeError, "num_points"),
    (dict(num_points=10**12), ValueError, "num_points"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed="0"), TypeError, "seed"),
    (dict(normals="yes"), TypeError, "normals"),
    (dict(cache=1), TypeError, "cache"),
    (dict(progress=None), TypeError, "progress"),
])
def test_bad_arguments(mn10, kwargs, exc, name):
    kw = {**FAST, **kwargs}
    split = kw.pop("split", "train")
    with pytest.raises(exc, match=f"^{name}"):
        ModelNet(mn10, split, **kw)


def test_bad_root_type_and_index(mn10):
    with pytest.raises(TypeError, match="^root"):
        ModelNet(None)
    with pytest.raises(TypeError, match="^root"):
        ModelNet(12)
    ds = ModelNet(mn10, "test", **FAST)
    with pytest.raises(IndexError, match="index"):
        ds[10]
    with pytest.raises(IndexError, match="index"):
        ds[-11]
    with pytest.raises(TypeError, match="index"):
        ds["0"]
    assert torch.equal(ds[np.int64(2)].pos, ds[2].pos)


# -- the cache -----------------------------------------------------------------------------------

def _count_reads(monkeypatch):
    calls = []
    real = mn.read_off

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(mn, "read_off", counting)
    return calls


def test_cache_is_reused_and_matches_a_fresh_sampling(mn10, tmp_path, monkeypatch):
    calls = _count_reads(monkeypatch)
    a = ModelNet(mn10, "train", num_points=32, normals=True, progress=False)
    assert len(calls) == 20
    assert a.cache_path.is_file() and a.cache_path.is_relative_to(tmp_path / "home" / "modelnet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = ModelNet(mn10, "train", num_points=32, normals=True, progress=False)
    assert len(calls) == 20  # the second load reads no .off file
    assert b.cache_path == a.cache_path
    fresh = ModelNet(mn10, "train", num_points=32, normals=True, cache=False, progress=False)
    for i in range(20):
        assert torch.equal(a[i].pos, b[i].pos) and torch.equal(b[i].pos, fresh[i].pos)
        assert torch.equal(b[i].normal, fresh[i].normal) and torch.equal(b[i].y, fresh[i].y)
    # other options, other cache files
    paths = {ModelNet(mn10, s, num_points=n, normals=nm, seed=sd, progress=False).cache_path
             for s, n, nm, sd in [("train", 32, True, 0), ("test", 32, True, 0), ("train", 16, True, 0),
                                  ("train", 32, False, 0), ("train", 32, True, 1)]}
    assert len(paths) == 5


def test_cache_invalidated_when_a_file_changes(mn10, monkeypatch):
    calls = _count_reads(monkeypatch)
    a = ModelNet(mn10, "train", num_points=32, progress=False)
    f = a.files[5]
    text = box_off_text(CUBE * 100.0, CUBE_QUADS, 1)
    f.write_text(text)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    n = len(calls)
    b = ModelNet(mn10, "train", num_points=32, progress=False)
    assert len(calls) > n and b.cache_path != a.cache_path
    assert a.cache_path.exists()  # the old cache file is not deleted
    assert float(b[5].pos.max()) > 50 and torch.equal(b[4].pos, a[4].pos)
    assert f.read_text() == text  # the user's files are never touched


def test_a_corrupt_cache_is_rebuilt(mn10):
    a = ModelNet(mn10, "test", num_points=32, progress=False)
    ref = torch.stack([a[i].pos for i in range(len(a))])
    for damage in (b"", b"garbage", a.cache_path.read_bytes()[:100]):
        a.cache_path.write_bytes(damage)
        with pytest.warns(RuntimeWarning, match="rebuilding"):
            b = ModelNet(mn10, "test", num_points=32, progress=False)
        assert torch.equal(torch.stack([b[i].pos for i in range(len(b))]), ref)
    # a well-formed file with the wrong content is not trusted either
    bad = torch.load(a.cache_path, weights_only=True)
    bad["pos"] = bad["pos"][:, :16]
    torch.save(bad, a.cache_path)
    with pytest.warns(RuntimeWarning, match="'pos' expected float32"):
        ModelNet(mn10, "test", num_points=32, progress=False)
    bad = torch.load(a.cache_path, weights_only=True)
    bad["y"] = (bad["y"] + 1) % 10
    torch.save(bad, a.cache_path)
    with pytest.warns(RuntimeWarning, match="labels"):
        c = ModelNet(mn10, "test", num_points=32, progress=False)
    assert [int(c[i].y) for i in range(10)] == list(range(10))


def test_progress_bar(mn10, capsys):
    ModelNet(mn10, "test", num_points=8, cache=False, progress=False)
    assert capsys.readouterr().err == ""
    ModelNet(mn10, "test", num_points=8, cache=False, progress=True)
    assert "ModelNet10 test" in capsys.readouterr().err


def _cube_folder(tmp_path, text=None):
    """A ModelNet10 folder whose every mesh is the unit cube (quads, wound outwards) or ``text``."""
    text = text or box_off_text(CUBE, CUBE_QUADS, 2)
    root = tmp_path / "cubes"
    for c in MODELNET10_CLASSES:
        for s in ("train", "test"):
            (root / c / s).mkdir(parents=True, exist_ok=True)
            (root / c / s / f"{c}_0001.off").write_text(text)
    return root
