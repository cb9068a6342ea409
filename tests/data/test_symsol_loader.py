"""The SYMSOL reader: ``{split}/rotations.npz`` (keyed by shape, ``(num_images, S, 3, 3)``) and
``{split}/images/{shape}_{idx:05d}.png`` written here in the release's format (numpy's npz, PIL's
PNGs), read back exactly, and a ValueError naming the file (or the argument) for every malformed
folder, npz or PNG."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
import torch

from geodl.data import Symsol

PIL = pytest.importorskip("PIL.Image")

SIZE = 8


def rotations(k: int, rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((k, 3, 3)))
    return q * np.sign(np.linalg.det(q))[:, None, None]


def symmetry_sets(n: int, s: int, rng) -> np.ndarray:
    """``(n, s, 3, 3)``: per image a rendering rotation and ``s - 1`` equivalents (R @ z-rotations)."""
    R = rotations(n, rng)
    ang = np.arange(s) * 2 * np.pi / s
    c, si = np.cos(ang), np.sin(ang)
    Z = np.zeros((s, 3, 3))
    Z[:, 0, 0], Z[:, 0, 1], Z[:, 1, 0], Z[:, 1, 1], Z[:, 2, 2] = c, -si, si, c, 1
    return R[:, None] @ Z[None]


def image(rng, size=SIZE) -> np.ndarray:
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def write_split(root, split="test", sets=None, n_images=None, seed=0, compressed=False, size=SIZE):
    """A split folder in the release layout; returns ``(rotations by shape, images by (shape, idx))``."""
    rng = np.random.default_rng(seed)
    sets = sets if sets is not None else {"tet": 12, "cone": 4, "tetX": 1}
    folder = root / split
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rots = {s: symmetry_sets(n_images or 3, k, rng).astype(np.float32) for s, k in sets.items()}
    (np.savez_compressed if compressed else np.savez)(folder / "rotations.npz", **rots)
    pixels = {}
    for s, R in rots.items():
        for i in range(R.shape[0]):
            pixels[s, i] = image(rng, size)
            PIL.fromarray(pixels[s, i]).save(folder / "images" / f"{s}_{i:05d}.png")
    return rots, pixels


def named(path):
    return re.escape(str(path))


# --------------------------------------------------------------------------- good folders
@pytest.mark.parametrize("compressed", [False, True])
def test_round_trip(tmp_path, compressed):
    rots, pixels = write_split(tmp_path, "test", compressed=compressed)
    ds = Symsol(tmp_path, "test", image_size=SIZE)
    assert ds.shapes == ["tet", "cone", "tetX"]  # the order of Symsol.SHAPES, not of the npz
    assert ds.items == [(s, i) for s in ("tet", "cone", "tetX") for i in range(3)]
    assert len(ds) == 9 and ds.root == tmp_path / "test"
    for s in ds.shapes:
        assert ds.rotations[s].dtype == torch.float32
        np.testing.assert_array_equal(ds.rotations[s].numpy(), rots[s])
    for k, (s, i) in enumerate(ds.items):
        img, R, label = ds[k]
        assert img.shape == (3, SIZE, SIZE) and img.dtype == torch.float32
        np.testing.assert_array_equal((img.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), pixels[s, i])
        assert 0 <= float(img.min()) and float(img.max()) <= 1
        np.testing.assert_array_equal(R.numpy(), rots[s][i])
        assert R.shape == (rots[s].shape[1], 3, 3)
        assert label.dtype == torch.int64 and Symsol.SHAPES[int(label)] == s
    assert ds[-1][2] == Symsol.SHAPES.index("tetX")


def test_shape_indices_are_the_tfds_labels():
    assert Symsol.SHAPES == ("tet", "cube", "icosa", "cone", "cyl", "tetX", "cylO", "sphereX")


def test_train_and_test_splits_and_parent_folder(tmp_path):
    train, _ = write_split(tmp_path / "symsol", "train", sets={"cube": 1}, seed=1)
    test, _ = write_split(tmp_path / "symsol", "test", sets={"cube": 24}, seed=2)
    a = Symsol(tmp_path / "symsol", image_size=SIZE)  # default split: train
    b = Symsol(tmp_path, "test", image_size=SIZE)  # the parent of symsol/
    assert a.split == "train" and a.rotations["cube"].shape == (3, 1, 3, 3)
    assert b.rotations["cube"].shape == (3, 24, 3, 3)
    np.testing.assert_array_equal(b.rotations["cube"].numpy(), test["cube"])


def test_three_dimensional_entry_is_one_rotation_per_image(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    R = rotations(2, np.random.default_rng(0))
    np.savez(tmp_path / "train" / "rotations.npz", sphereX=R)
    for i in range(2):
        PIL.fromarray(image(np.random.default_rng(i))).save(tmp_path / "train" / "images" / f"sphereX_{i:05d}.png")
    ds = Symsol(tmp_path, image_size=SIZE)
    assert ds.rotations["sphereX"].shape == (2, 1, 3, 3)
    np.testing.assert_allclose(ds[1][1][0].numpy(), R[1], atol=1e-7)


def test_shapes_and_limit(tmp_path):
    rots, _ = write_split(tmp_path, sets={"tet": 12, "cube": 24, "cone": 4, "cylO": 1}, n_images=5)
    with pytest.raises(ValueError, match=r"shapes: 'icosa', 'cyl' not in " + named(tmp_path / "test" / "rotations.npz")):
        Symsol(tmp_path, "test", shapes="symsol1", image_size=SIZE)
    ds = Symsol(tmp_path, "test", shapes=["cone", "tet"], limit=2, image_size=SIZE)
    assert ds.shapes == ["tet", "cone"] and len(ds) == 4
    np.testing.assert_array_equal(ds.rotations["cone"].numpy(), rots["cone"][:2])
    with pytest.raises(ValueError, match=r"shapes: 'tetX', 'sphereX' not in .*\(it holds tet, cube, cone, cylO\)"):
        Symsol(tmp_path, "test", shapes="symsol2", image_size=SIZE)
    assert Symsol(tmp_path, "test", shapes="cylO", image_size=SIZE).shapes == ["cylO"]
    assert len(Symsol(tmp_path, "test", shapes="cube", limit=100, image_size=SIZE)) == 5
    with pytest.raises(ValueError, match=r"shapes: unknown 'sphere'"):
        Symsol(tmp_path, "test", shapes=["sphere"])
    with pytest.raises(ValueError, match=r"shapes: an empty selection"):
        Symsol(tmp_path, "test", shapes=[])
    with pytest.raises(TypeError, match=r"shapes: expected str entries"):
        Symsol(tmp_path, "test", shapes=[3])
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"limit"):
            Symsol(tmp_path, "test", limit=bad)
    with pytest.raises(TypeError, match=r"limit"):
        Symsol(tmp_path, "test", limit=2.5)


def test_limit_reads_only_the_first_images(tmp_path):
    """Images past ``limit`` need not exist; the rotations past it are not read (a NaN there passes)."""
    rots, _ = write_split(tmp_path, sets={"cone": 4}, n_images=4)
    rots["cone"][3, 0, 0, 0] = np.nan
    np.savez(tmp_path / "test" / "rotations.npz", **rots)
    (tmp_path / "test" / "images" / "cone_00003.png").unlink()
    assert len(Symsol(tmp_path, "test", limit=3, image_size=SIZE)) == 3


def test_image_size_none_accepts_any_size(tmp_path):
    write_split(tmp_path, sets={"cyl": 2}, size=5)
    assert Symsol(tmp_path, "test", image_size=None)[0][0].shape == (3, 5, 5)


# --------------------------------------------------------------------------- folder and arguments
def test_folder_errors_name_root(tmp_path):
    with pytest.raises(ValueError, match=r"root: .*nope does not exist"):
        Symsol(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"root: .*file is not a folder"):
        Symsol(tmp_path / "file")
    with pytest.raises(ValueError, match=r"root: no test/ folder in " + named(tmp_path)):
        Symsol(tmp_path, "test")
    with pytest.raises(TypeError, match=r"root: expected a str or os.PathLike"):
        Symsol(3)
    with pytest.raises(ValueError, match=r"split: expected 'train' or 'test', got 'val'"):
        Symsol(tmp_path, "val")
    with pytest.raises(ValueError, match=r"image_size"):
        Symsol(tmp_path, "test", image_size=0)


def test_missing_npz_and_images_folder_are_named(tmp_path):
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match=named(tmp_path / "test" / "rotations.npz") + r": the rotations file is missing"):
        Symsol(tmp_path, "test")
    np.savez(tmp_path / "test" / "rotations.npz", tet=symmetry_sets(1, 12, np.random.default_rng(0)))
    with pytest.raises(ValueError, match=named(tmp_path / "test" / "images") + r": the images folder is missing"):
        Symsol(tmp_path, "test")


def test_missing_png_is_named(tmp_path):
    write_split(tmp_path)
    (tmp_path / "test" / "images" / "cone_00001.png").unlink()
    with pytest.raises(ValueError, match=named(tmp_path / "test" / "images" / "cone_00001.png") + r": the image is missing"):
        Symsol(tmp_path, "test", image_size=SIZE)


# --------------------------------------------------------------------------- malformed npz
def npz_path(tmp_path):
    return tmp_path / "test" / "rotations.npz"


def rewrite(tmp_path, **entries):
    np.savez(npz_path(tmp_path), **entries)


def test_npz_that_is_not_an_archive(tmp_path):
    write_split(tmp_path)
    npz_path(tmp_path).write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": not an npz archive"):
        Symsol(tmp_path, "test")


def test_truncated_npz(tmp_path):
    write_split(tmp_path, compressed=True)
    data = npz_path(tmp_path).read_bytes()
    npz_path(tmp_path).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=named(npz_path(tmp_path))):
        Symsol(tmp_path, "test")


def test_npz_member_truncated_inside_a_valid_zip(tmp_path):
    write_split(tmp_path)
    R = symmetry_sets(3, 12, np.random.default_rng(0))
    import io

    buf = io.BytesIO()
    np.save(buf, R)
    raw = buf.getvalue()
    with zipfile.ZipFile(npz_path(tmp_path), "w") as zf:
        zf.writestr("tet.npy", raw[: len(raw) - 100])
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": entry 'tet' is truncated"):
        Symsol(tmp_path, "test")


def test_unknown_key_is_named(tmp_path):
    rots, _ = write_split(tmp_path)
    rewrite(tmp_path, **rots, pyramid=rots["tet"])
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": unknown shape name 'pyramid'"):
        Symsol(tmp_path, "test")


def test_member_that_is_not_npy(tmp_path):
    write_split(tmp_path)
    with zipfile.ZipFile(npz_path(tmp_path), "a") as zf:
        zf.writestr("README.txt", "hello")
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": member 'README.txt' is not a .npy"):
        Symsol(tmp_path, "test")


def test_empty_npz(tmp_path):
    write_split(tmp_path)
    rewrite(tmp_path)
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": the npz holds no rotations"):
        Symsol(tmp_path, "test")


@pytest.mark.parametrize("shape", [(3, 12, 3, 4), (3, 9), (3, 12, 9), (3, 2, 2, 3, 3), (0, 12, 3, 3)])
def test_wrong_array_shapes(tmp_path, shape):
    write_split(tmp_path)
    rewrite(tmp_path, tet=np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": entry 'tet' has shape"):
        Symsol(tmp_path, "test")


def test_wrong_dtype(tmp_path):
    write_split(tmp_path)
    rewrite(tmp_path, tet=np.zeros((3, 12, 3, 3), dtype=np.int32))
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": entry 'tet' has dtype int32"):
        Symsol(tmp_path, "test")


def test_object_array_is_refused_without_unpickling(tmp_path):
    write_split(tmp_path)
    rewrite(tmp_path, tet=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": entry 'tet' has dtype object"):
        Symsol(tmp_path, "test")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_rotation(tmp_path, value):
    rots, _ = write_split(tmp_path)
    rots["cone"][2, 3, 1, 1] = value
    rewrite(tmp_path, **rots)
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": entry 'cone': image 2, rotation 3 has a non-finite"):
        Symsol(tmp_path, "test")


@pytest.mark.parametrize("damage", ["scaled", "reflection", "sheared", "zeros"])
def test_non_rotation_matrices(tmp_path, damage):
    rots, _ = write_split(tmp_path)
    R = rots["tet"]
    if damage == "scaled":
        R[1, 5] *= 1.001
    elif damage == "reflection":
        R[1, 5] = -R[1, 5]
    elif damage == "sheared":
        R[1, 5, 0, 1] += 1e-3
    else:
        R[1, 5] = 0
    rewrite(tmp_path, **rots)
    with pytest.raises(ValueError, match=named(npz_path(tmp_path)) + r": entry 'tet': image 1, rotation 5 is not a "
                       r"rotation matrix"):
        Symsol(tmp_path, "test")


def test_rounding_within_tolerance_is_accepted(tmp_path):
    rots, _ = write_split(tmp_path)
    rots["tet"] = (rots["tet"].astype(np.float64) * (1 + 2e-5)).astype(np.float32)
    rewrite(tmp_path, **rots)
    assert len(Symsol(tmp_path, "test", image_size=SIZE)) == 9


# --------------------------------------------------------------------------- malformed PNGs (read lazily)
def png(tmp_path, name="tet_00001.png"):
    return tmp_path / "test" / "images" / name


def test_truncated_png(tmp_path):
    write_split(tmp_path)
    data = png(tmp_path).read_bytes()
    png(tmp_path).write_bytes(data[: len(data) - 30])
    ds = Symsol(tmp_path, "test", image_size=SIZE)  # construction checks presence only
    with pytest.raises(ValueError, match=named(png(tmp_path)) + r": the PNG does not decode"):
        ds[1]
    ds[0]  # the others still read


def test_garbage_png(tmp_path):
    write_split(tmp_path)
    png(tmp_path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ValueError, match=named(png(tmp_path)) + r": the PNG does not decode"):
        Symsol(tmp_path, "test", image_size=SIZE)[1]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_wrong_mode(tmp_path, mode):
    write_split(tmp_path)
    PIL.new(mode, (SIZE, SIZE)).save(png(tmp_path))
    with pytest.raises(ValueError, match=named(png(tmp_path)) + rf": image mode {mode}; SYMSOL images are RGB"):
        Symsol(tmp_path, "test", image_size=SIZE)[1]


def test_wrong_size(tmp_path):
    write_split(tmp_path)
    PIL.new("RGB", (SIZE, SIZE + 1)).save(png(tmp_path))
    with pytest.raises(ValueError, match=named(png(tmp_path)) + rf": image size {SIZE} x {SIZE + 1}; expected "
                       rf"{SIZE} x {SIZE}"):
        Symsol(tmp_path, "test", image_size=SIZE)[1]
    with pytest.raises(ValueError, match=r"expected 224 x 224"):
        Symsol(tmp_path, "test")[0]  # the release's size by default


def test_jpeg_under_a_png_name(tmp_path):
    write_split(tmp_path)
    PIL.new("RGB", (SIZE, SIZE)).save(png(tmp_path), format="JPEG")
    with pytest.raises(ValueError, match=named(png(tmp_path)) + r": not a PNG image"):
        Symsol(tmp_path, "test", image_size=SIZE)[1]


def test_png_deleted_after_construction(tmp_path):
    write_split(tmp_path)
    ds = Symsol(tmp_path, "test", image_size=SIZE)
    png(tmp_path).unlink()
    with pytest.raises(ValueError, match=named(png(tmp_path)) + r": the image is missing"):
        ds[1]


def test_index_errors(tmp_path):
    write_split(tmp_path)
    ds = Symsol(tmp_path, "test", image_size=SIZE)
    with pytest.raises(IndexError):
        ds[9]
    with pytest.raises(TypeError, match=r"index"):
        ds["0"]
    assert "Symsol(split='test', images=9" in repr(ds)
