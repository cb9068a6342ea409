"""The OFF reader: the header variants of ModelNet, comments, blank lines, polygons -> triangles, and
a clear ValueError naming the file (and the line) for every malformed file."""

from __future__ import annotations

import numpy as np
import pytest

from geodl.data import read_off
from modelnet_fixture import CUBE_QUADS, CUBE_TRIANGLES, box_off_text

TRI = "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
CUBE = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)


def _write(tmp_path, text, name="m.off"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def test_standard_triangle(tmp_path):
    v, f = read_off(_write(tmp_path, TRI))
    assert v.dtype == np.float64 and f.dtype == np.int64
    np.testing.assert_array_equal(v, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(f, [[0, 1, 2]])


@pytest.mark.parametrize("variant", [0, 1, 2, 3])
def test_header_variants_read_the_same_mesh(tmp_path, variant):
    text = box_off_text(CUBE, CUBE_TRIANGLES, variant)
    if variant == 1:
        assert text.startswith("OFF8 12 0\n")  # the ModelNet header variant: counts glued to OFF
    if variant == 3:
        assert text.startswith("OFF 8 12 0\n")
    v, f = read_off(_write(tmp_path, text))
    np.testing.assert_array_equal(v, CUBE)
    np.testing.assert_array_equal(f, CUBE_TRIANGLES)


def test_comments_blank_lines_and_trailing_comments(tmp_path):
    text = ("# leading comment\n\nOFF # the magic\n\n# counts next\n3 1 0\n0 0 0 # a vertex\n\n"
            "1 0 0\n   \n0 1 0\n# faces\n3 0 1 2  # the face\n\n# trailing comment\n")
    v, f = read_off(_write(tmp_path, text))
    np.testing.assert_array_equal(v, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(f, [[0, 1, 2]])


def test_quads_and_polygons_are_fan_triangulated(tmp_path):
    v, f = read_off(_write(tmp_path, box_off_text(CUBE, CUBE_QUADS, 0)))
    assert f.shape == (12, 3)
    np.testing.assert_array_equal(f, CUBE_TRIANGLES)  # (a, b, c, d) -> (a, b, c), (a, c, d)
    pent = "OFF\n5 2 0\n0 0 0\n1 0 0\n2 1 0\n1 2 0\n0 1 0\n5 0 1 2 3 4\n3 4 3 2\n"
    _, f = read_off(_write(tmp_path, pent, "p.off"))
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 2]])


def test_face_colours_and_a_missing_edge_count_are_accepted(tmp_path):
    v, f = read_off(_write(tmp_path, "OFF\n3 1\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2 255 0 0\n"))
    np.testing.assert_array_equal(f, [[0, 1, 2]])


def test_no_faces_and_crlf(tmp_path):
    v, f = read_off(_write(tmp_path, "OFF\r\n2 0 0\r\n0 0 0\r\n1 1 1\r\n"))
    assert v.shape == (2, 3) and f.shape == (0, 3) and f.dtype == np.int64


def test_fast_and_line_by_line_reads_agree(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((200, 3))
    f = rng.integers(0, 200, (300, 3))
    body = "\n".join(" ".join(repr(float(c)) for c in r) for r in v) + "\n" + "\n".join("3 %d %d %d" % tuple(r) for r in f)
    v1, f1 = read_off(_write(tmp_path, f"OFF\n200 300 0\n{body}\n", "a.off"))  # regular: vectorised read
    v2, f2 = read_off(_write(tmp_path, f"OFF200 300 0\n# comment\n{body}\n", "b.off"))  # line by line
    np.testing.assert_array_equal(v1, v)
    np.testing.assert_array_equal(f1, f)
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(f2, f)


BAD = {
    "empty": (b"", "empty", None),
    "whitespace": ("\n \n\t\n", "only whitespace", None),
    "only comments": ("# nothing\n# here\n", "no OFF header", None),
    "not OFF": ("ply\nformat ascii 1.0\n", "not an OFF file", 1),
    "no counts": ("OFF\n", "no counts", None),
    "bad counts": ("OFF\n3 x 0\n", "expected an integer", 2),
    "too many counts": ("OFF\n3 1 0 7\n", "counts", 2),
    "negative counts": ("OFF -3 1 0\n", "negative", 1),
    "truncated vertices": ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "truncated", None),
    "truncated faces": ("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n", "truncated", None),
    "extra lines": (TRI + "3 0 1 2\n", "after the 3 vertices and 1 faces", 7),
    "two coordinates": ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", "3 coordinates", 4),
    "four coordinates": ("OFF\n3 1 0\n0 0 0\n1 0 0 1\n0 1 0\n3 0 1 2\n", "3 coordinates", 4),
    "not a number": ("OFF\n3 1 0\n0 0 0\n1 zero 0\n0 1 0\n3 0 1 2\n", "not a number", 4),
    "nan": ("OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n", "non-finite", 4),
    "inf": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 -inf\n3 0 1 2\n", "non-finite", 5),
    "index out of range": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "out of range", 6),
    "negative index": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", "out of range", 6),
    "two-vertex face": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "at least 3", 6),
    "short face": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "expected 4 vertex indices", 6),
    "float index": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1.0 2\n", "expected an integer", 6),
    "binary": (b"OFF\n3 1 0\n\xff\xfe\x00\x01\n", "not a text OFF file", None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_files_name_the_file_and_line(tmp_path, case):
    text, what, line = BAD[case]
    p = _write(tmp_path, text, "bad_0001.off")
    with pytest.raises(ValueError) as e:
        read_off(p)
    msg = str(e.value)
    assert str(p) in msg, msg
    assert what in msg, msg
    if line is not None:
        assert f"line {line}" in msg, msg


def test_bad_path_arguments(tmp_path):
    with pytest.raises(TypeError, match="path"):
        read_off(3)
    with pytest.raises(TypeError, match="path"):
        read_off(b"m.off")
    with pytest.raises(FileNotFoundError):
        read_off(tmp_path / "missing.off")
    with pytest.raises(ValueError, match="folder"):
        read_off(tmp_path)
