"""The DynLab reader: ``<scene>-<config>.ply`` / ``.pose`` pairs written here in the documented format
(x, y, z, red, green, blue, idx; ascii and binary), read back exactly, and a ValueError naming the
file (or the argument) for every malformed folder, point cloud or pose file."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from geodl.data import DynLab, read_dynlab_pose
from geodl.data._dynlab import SEGMENT_PROPERTIES, read_ply_vertices
from dynlab_fixture import pose_text
from dynlab_fixture import write_ply as _write_ply

def write_ply(path, fields: dict, fmt: str = "ascii", faces=None, comment: bool = True):
    """``fields`` ({name: (N,) array}) as the vertex element of a PLY file (``dynlab_fixture.write_ply``)."""
    return _write_ply(path, fields, fmt, faces, "written by test_dynlab" if comment else None)


def rotations(k: int, rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((k, 3, 3)))
    return q * np.sign(np.linalg.det(q))[:, None, None]  # det +1


def poses(k: int, rng) -> np.ndarray:
    T = np.zeros((k, 4, 4))
    T[:, :3, :3] = rotations(k, rng)
    T[:, :3, 3] = rng.standard_normal((k, 3))
    T[:, 3, 3] = 1
    return T


def write_pose(path, T: np.ndarray, layout: str = "4x4 rows"):
    """``layout``: one of ``dynlab_fixture.LAYOUTS``."""
    path.write_text(pose_text(T, layout))
    return path


def cloud(n: int = 50, k: int = 3, seed: int = 0, color_names=("red", "green", "blue"), seg_name="idx",
          float_color: bool = False):
    rng = np.random.default_rng(seed)
    f = {c: rng.standard_normal(n).astype(np.float32) for c in "xyz"}
    for c in color_names:
        f[c] = rng.random(n).astype(np.float32) if float_color else rng.integers(0, 256, n).astype(np.uint8)
    seg = rng.integers(0, k, n).astype(np.int32)
    seg[:k] = np.arange(k)  # every segment present, max = k - 1
    f[seg_name] = seg
    return f, poses(k, rng)


def pair(root, scene="1", config="1", fmt="ascii", faces=None, layout="4x4 rows", **kw):
    root.mkdir(parents=True, exist_ok=True)
    f, T = cloud(**kw)
    ply = write_ply(root / f"{scene}-{config}.ply", f, fmt, faces=faces)
    pose = write_pose(root / f"{scene}-{config}.pose", T, layout)
    return ply, pose, f, T


def named(path):
    """``match`` for a message naming ``path``."""
    return re.escape(str(path))


# --------------------------------------------------------------------------- good files
@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_pair_round_trips_exactly(tmp_path, fmt):
    ply, pose, f, T = pair(tmp_path, fmt=fmt, faces=[[0, 1, 2], [1, 2, 3]], seed=3)
    ds = DynLab(tmp_path)
    assert len(ds) == 1 and ds.pairs == [("1", "1", ply, pose)]
    x = ds[0]
    assert (x.scene, x.config) == ("1", "1")
    assert x.pos.dtype == torch.float32 and x.color.dtype == torch.float32
    assert x.segment.dtype == torch.int64 and x.pose.dtype == torch.float32
    np.testing.assert_array_equal(x.pos.numpy(), np.stack([f["x"], f["y"], f["z"]], 1))
    rgb = np.stack([f["red"], f["green"], f["blue"]], 1)
    np.testing.assert_array_equal(x.color.numpy(), rgb.astype(np.float32) / 255)
    np.testing.assert_array_equal((x.color.numpy() * 255).round().astype(np.uint8), rgb)
    np.testing.assert_array_equal(x.segment.numpy(), f["idx"])
    np.testing.assert_array_equal(x.pose.numpy(), T.astype(np.float32))
    np.testing.assert_array_equal(read_dynlab_pose(pose), T)  # float64, exact


def test_read_ply_vertices_keeps_every_property_and_type(tmp_path):
    f, _ = cloud(n=7)
    f["confidence"] = np.linspace(0, 1, 7)  # a double property trimesh would not surface
    for fmt in ("ascii", "binary_little_endian", "binary_big_endian"):
        v = read_ply_vertices(write_ply(tmp_path / f"{fmt}.ply", f, fmt))
        assert list(v) == list(f)
        for k in f:
            assert v[k].dtype == f[k].dtype and v[k].dtype.isnative
            np.testing.assert_array_equal(v[k], f[k])


@pytest.mark.parametrize("layout", ["4x4 line", "3x4 rows", "3x4 line", "one per line"])
def test_pose_layouts_read_the_same(tmp_path, layout):
    T = poses(4, np.random.default_rng(1))
    np.testing.assert_array_equal(read_dynlab_pose(write_pose(tmp_path / "a-1.pose", T, layout)), T)


@pytest.mark.parametrize("seg_name", SEGMENT_PROPERTIES)
def test_segment_property_variants(tmp_path, seg_name):
    _, _, f, _ = pair(tmp_path, seg_name=seg_name)
    np.testing.assert_array_equal(DynLab(tmp_path)[0].segment.numpy(), f[seg_name])


def test_float_rgb_colours(tmp_path):
    _, _, f, _ = pair(tmp_path, fmt="binary_little_endian", color_names=("r", "g", "b"), float_color=True)
    np.testing.assert_array_equal(DynLab(tmp_path)[0].color.numpy(), np.stack([f["r"], f["g"], f["b"]], 1))


def test_sorted_pairs_and_filters(tmp_path):
    for s in ("10", "2"):
        for c in ("3", "1"):
            pair(tmp_path, s, c, seed=int(s) * 10 + int(c))
    (tmp_path / "README.txt").write_text("ignored")
    (tmp_path / ".hidden-1.ply").write_text("ignored")
    ds = DynLab(tmp_path)
    assert [(s, c) for s, c, _, _ in ds.pairs] == [("2", "1"), ("2", "3"), ("10", "1"), ("10", "3")]
    assert [(x.scene, x.config) for x in ds] == [("2", "1"), ("2", "3"), ("10", "1"), ("10", "3")]
    assert [p[:2] for p in DynLab(tmp_path, scenes=["10"]).pairs] == [("10", "1"), ("10", "3")]
    assert [p[:2] for p in DynLab(tmp_path, scenes=2).pairs] == [("2", "1"), ("2", "3")]
    assert [p[:2] for p in DynLab(tmp_path, scenes="2", configs=["3"]).pairs] == [("2", "3")]
    with pytest.raises(ValueError, match=r"scenes: unknown '7'; the folder has 2, 10"):
        DynLab(tmp_path, scenes=["2", "7"])
    with pytest.raises(ValueError, match=r"configs: unknown '2'; the folder has 1, 3"):
        DynLab(tmp_path, configs="2")
    with pytest.raises(ValueError, match=r"scenes: an empty selection"):
        DynLab(tmp_path, scenes=[])
    with pytest.raises(TypeError, match=r"scenes: expected str entries"):
        DynLab(tmp_path, scenes=[1.5])


# --------------------------------------------------------------------------- the folder
def test_missing_folder_names_root(tmp_path):
    with pytest.raises(ValueError, match=r"root: .*nope does not exist"):
        DynLab(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"root: .*file is not a folder"):
        DynLab(tmp_path / "file")
    with pytest.raises(TypeError, match=r"root: expected a str or os.PathLike"):
        DynLab(3)


def test_folder_without_pairs_names_root(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=r"root: no <scene>-<config>\.ply / \.pose pairs in " + named(tmp_path)):
        DynLab(tmp_path)


def test_unpaired_files_are_named(tmp_path):
    ply, pose, _, _ = pair(tmp_path)
    pose.unlink()
    with pytest.raises(ValueError, match=named(ply) + r": no pose file beside it"):
        DynLab(tmp_path)
    ply.unlink()
    write_pose(tmp_path / "1-2.pose", poses(1, np.random.default_rng(0)))
    with pytest.raises(ValueError, match=named(tmp_path / "1-2.pose") + r": no point cloud beside it"):
        DynLab(tmp_path)


def test_misnamed_file(tmp_path):
    pair(tmp_path)
    (tmp_path / "scan.ply").write_text("ply\n")
    with pytest.raises(ValueError, match=named(tmp_path / "scan.ply") + r": a DynLab file must be named"):
        DynLab(tmp_path)


# --------------------------------------------------------------------------- the point cloud
def _broken(tmp_path, drop=(), fmt="ascii", **kw):
    ply, pose, f, T = pair(tmp_path, fmt=fmt, **kw)
    for k in drop:
        del f[k]
    write_ply(ply, f, fmt)
    return ply, pose, f, T


def test_ply_without_segment_property(tmp_path):
    ply, *_ = _broken(tmp_path, drop=["idx"])
    with pytest.raises(ValueError, match=named(ply) + r": no segment index: expected one of .*idx, segment"):
        DynLab(tmp_path)[0]


@pytest.mark.parametrize("drop,msg", [(["z"], r"no z property"), (["x", "y"], r"no x, y properties"),
                                      (["green"], r"no colour: expected .*red, green, blue")])
def test_ply_missing_coordinates_or_colour(tmp_path, drop, msg):
    ply, *_ = _broken(tmp_path, drop=drop)
    with pytest.raises(ValueError, match=named(ply) + ": " + msg):
        DynLab(tmp_path)[0]


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian"])
def test_truncated_binary_body_fails_at_construction(tmp_path, fmt):
    ply, *_ = pair(tmp_path, fmt=fmt, n=40)
    ply.write_bytes(ply.read_bytes()[:-200])
    with pytest.raises(ValueError, match=named(ply) + r": truncated: the header announces 40 vertices of 19 bytes"):
        DynLab(tmp_path)
    with pytest.raises(ValueError, match=named(ply) + r": truncated"):
        read_ply_vertices(ply)


def test_truncated_ascii_body(tmp_path):
    ply, *_ = pair(tmp_path, n=40)
    data = ply.read_bytes()
    ply.write_bytes(data[:-200])  # a few lines short: found when the item is read
    ds = DynLab(tmp_path)
    with pytest.raises(ValueError, match=named(ply) + r": truncated: the header announces 40 vertices, the file "
                       r"has \d+ vertex lines"):
        ds[0]
    ply.write_bytes(data[:data.index(b"end_header") + 20])  # too short for 40 x 7 values: at construction
    with pytest.raises(ValueError, match=named(ply) + r": truncated: the header announces 40 vertices of 7 values"):
        DynLab(tmp_path)


def test_vertex_count_is_checked_against_the_file_size_before_reading(tmp_path):
    ply, *_ = pair(tmp_path, fmt="binary_little_endian", n=10)
    data = ply.read_bytes().replace(b"element vertex 10", b"element vertex 1000000000000")
    ply.write_bytes(data)
    with pytest.raises(ValueError, match=named(ply) + r": truncated: the header announces 1000000000000 vertices"):
        read_ply_vertices(ply)


HEADER = "format ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n"


@pytest.mark.parametrize("text,msg", [
    ("plx\n" + HEADER, r"header line 1: not a PLY file"),
    ("", r"header line 1: not a PLY file"),
    ("ply\nformat ascii 2 x\nelement vertex 1\nend_header\n", r"header line 2: malformed header: expected 'format"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", r"header line 5: malformed header: the file ends before"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n0\n", r"header line 5: malformed header: unknown keyword '0'"),
    ("ply\nformat ascii 1.0\nproperty float x\nend_header\n", r"header line 3: malformed header: a property before"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n", r"header line 4: malformed header: expected 'property"),
    ("ply\nformat ascii 1.0\nelement vertex one\nend_header\n", r"header line 3: malformed header: expected 'element"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float x\nend_header\n0 0\n", r"two properties named 'x'"),
    ("ply\nelement vertex 1\nproperty float x\nend_header\n0\n", r"malformed header: no 'format' line"),
    ("ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int v\nend_header\n3 0 1 2\n", r"no 'element vertex'"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar int v\nend_header\n1 0\n", r"list properties \(v\)"),
    ("ply\nformat ascii 1.0\nbogus line\nend_header\n", r"header line 3: malformed header: unknown keyword 'bogus'"),
])
def test_malformed_header(tmp_path, text, msg):
    ply = tmp_path / "1-1.ply"
    ply.write_text(text)
    write_pose(tmp_path / "1-1.pose", poses(1, np.random.default_rng(0)))
    with pytest.raises(ValueError, match=named(ply) + r"[,:] .*?" + msg):
        DynLab(tmp_path)


@pytest.mark.parametrize("fmt,bad", [("ascii", np.nan), ("binary_little_endian", np.inf), ("ascii", -np.inf)])
def test_non_finite_coordinates(tmp_path, fmt, bad):
    ply, pose, f, _ = pair(tmp_path, fmt=fmt)
    f["y"][5] = bad
    write_ply(ply, f, fmt)
    with pytest.raises(ValueError, match=named(ply) + r": vertex 5 has a non-finite coordinate"):
        DynLab(tmp_path)[0]


def test_negative_segment_ids(tmp_path):
    ply, pose, f, _ = pair(tmp_path, fmt="binary_big_endian")
    f["idx"][7] = -1
    write_ply(ply, f, "binary_big_endian")
    with pytest.raises(ValueError, match=named(ply) + r": vertex 7 has the negative segment index idx = -1"):
        DynLab(tmp_path)[0]


def test_bad_ascii_values_and_colours(tmp_path):
    ply, _, f, _ = pair(tmp_path)
    text = ply.read_text().splitlines()
    end = text.index("end_header")
    bad = text[:]
    bad[end + 3] = bad[end + 3].replace(" ", " oops ", 1).rsplit(" ", 1)[0]  # same count, one non-number
    ply.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=named(ply) + r": vertex 2: y is not a number: 'oops'"):
        DynLab(tmp_path)[0]
    bad = text[:]
    bad[end + 1] += " 9"
    ply.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=named(ply) + r": vertex 0: expected 7 values"):
        DynLab(tmp_path)[0]
    f["red"] = f["red"].astype(np.int32) + 300
    write_ply(ply, f)
    with pytest.raises(ValueError, match=named(ply) + r": colour red \(int32\) has values in"):
        DynLab(tmp_path)[0]
    f["red"] = np.full(len(f["x"]), 2.0, np.float32)
    write_ply(ply, f)
    with pytest.raises(ValueError, match=named(ply) + r": colour red \(float32\) .* expected 0-1"):
        DynLab(tmp_path)[0]


# --------------------------------------------------------------------------- the pose file
def test_pose_count_must_match_the_segments(tmp_path):
    _, pose, _, T = pair(tmp_path, k=3)
    write_pose(pose, T[:2])
    with pytest.raises(ValueError, match=named(pose) + r": 2 poses, but the segment indices of 1-1\.ply run up "
                       r"to 2: expected 3 poses"):
        DynLab(tmp_path)[0]
    write_pose(pose, np.concatenate([T, T[:1]]), "3x4 line")
    with pytest.raises(ValueError, match=named(pose) + r": 4 poses"):
        DynLab(tmp_path)[0]


@pytest.mark.parametrize("count", [13, 20, 1])
def test_pose_number_count_not_a_multiple(tmp_path, count):
    p = tmp_path / "1-1.pose"
    p.write_text(" ".join(["0"] * count))
    with pytest.raises(ValueError, match=named(p) + rf": {count} numbers: expected a multiple of 16 .* or of 12"):
        read_dynlab_pose(p)


def test_pose_blocks_must_be_rotations(tmp_path):
    T = poses(3, np.random.default_rng(2))
    p = tmp_path / "1-1.pose"
    for k, damage in ((1, lambda t: t[:3, :3] * 2), (2, lambda t: -t[:3, :3])):  # scaled; a reflection
        bad = T.copy()
        bad[k, :3, :3] = damage(bad[k])
        write_pose(p, bad)
        with pytest.raises(ValueError, match=named(p) + rf": pose {k} \(read as 4x4 matrices, 48 numbers\) is not a rotation"):
            read_dynlab_pose(p)
    bad = T.copy()
    bad[1, 3] = (0, 0, 1, 1)  # 48 numbers, last row of pose 1 wrong: read as 3x4 rows, not rotations
    write_pose(p, bad)
    with pytest.raises(ValueError, match=named(p) + r": pose \d \(read as 3x4 rows, 48 numbers\) is not a rotation"):
        read_dynlab_pose(p)
    bad = poses(1, np.random.default_rng(0))
    bad[0, 3] = (0, 0, 1, 1)  # 16 numbers, not 12k
    write_pose(p, bad)
    with pytest.raises(ValueError, match=named(p) + r": 16 numbers read as 1 4x4 matrices, but the last row of pose 0"):
        read_dynlab_pose(p)
    # the rotation check goes through the dataset too
    _, pose, _, T = pair(tmp_path / "ds", k=2)
    T[0, :3, :3] *= 1.01
    write_pose(pose, T)
    with pytest.raises(ValueError, match=named(pose) + r": pose 0 .* is not a rotation"):
        DynLab(tmp_path / "ds")[0]


@pytest.mark.parametrize("text,msg", [("", r"the pose file is empty"), ("1 0 0 x", r"not a number: 'x'"),
                                      ("nan " + "0 " * 11, r"number 0 is 'nan'")])
def test_pose_file_garbage(tmp_path, text, msg):
    p = tmp_path / "1-1.pose"
    p.write_text(text)
    with pytest.raises(ValueError, match=named(p) + ": " + msg):
        read_dynlab_pose(p)
