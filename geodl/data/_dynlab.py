"""DynLab (the real-scan test set of MultiBodySync, Huang et al., CVPR 2021) from a local folder;
never downloaded.

The raw release holds 8 scenes x 8 configurations (64 point cloud / pose pairs); per configuration a
pair of files::

    <scene>-<config>.ply     the point cloud: x, y, z, a colour and a per-point segment index
    <scene>-<config>.pose    one rigid pose per object, indexed like the segment index

What is confirmed and what is not. The MultiBodySync repository's README (section "DynLab
Dataset") states the 8 x 8 layout, the file names above, and that the PLY vertices carry ``x``,
``y``, ``z``, the colours ``red``, ``green``, ``blue`` and the segmentation ``idx``, and that "the
index in this file corresponds to the segmentation in PLY files". It does not describe the layout of
the ``.pose`` files, nor whether the index starts at 0, and the repository's code reads only its
processed ``.npz`` sets, not these files; the variants below were **not confirmed against the real
files**:

- the PLY: ascii, ``binary_little_endian`` or ``binary_big_endian``; the vertex element must have
  only scalar properties (other elements, e.g. faces, are skipped); the segment property is the first
  one present of ``idx`` (the documented name), ``segment``, ``seg``, ``label``, ``segment_id``,
  ``instance``, ``object``; it must hold non-negative integers (an integer type, or a floating-point
  type with integral values). The colour is ``red``/``green``/``blue`` (documented) or ``r``/``g``/
  ``b``; an integer type is read as 0-255 (divided by 255), a floating-point type as 0-1 (values
  outside [0, 1] are refused).
- the pose file: text, whitespace-separated numbers, the line breaks do not matter (a 4x4 matrix in
  four rows, one matrix per line, or one number per line read the same). Each object is a row-major
  4x4 matrix (16 numbers whose last four are ``0 0 0 1``) or 3x4 ``[R | t]`` rows (12 numbers,
  completed with ``0 0 0 1``). A count that is a multiple of 16 whose every 16-block ends in
  ``0 0 0 1`` is read as 4x4 matrices, else a multiple of 12 as 3x4 rows; any other count is refused.
  Pose ``s`` is taken to belong to the points with segment index ``s`` (0-based): the file must
  hold exactly ``max(segment) + 1`` poses. Every rotation block must be a rotation (``|R^T R - I|`` and
  ``|det R - 1|`` at most ``1e-3``, room for poses written with a few decimals).

Each problem is a ``ValueError`` naming the file (and, in a PLY header, the line).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geodl._checks import check_item_index, check_memory, check_path

__all__ = ["DynLab", "read_dynlab_pose"]  # read_ply_vertices and the property tables stay module-level

SEGMENT_PROPERTIES = ("idx", "segment", "seg", "label", "segment_id", "instance", "object")
COLOR_PROPERTIES = (("red", "green", "blue"), ("r", "g", "b"))
ROTATION_TOL = 1e-3

# Why a hand-written PLY reader: DynLab needs an arbitrary per-vertex property (the segment index)
# and errors that name the file. trimesh (5.2) loads a face-less PLY as a PointCloud that exposes
# only the vertices and the red/green/blue colours (r/g/b are not taken as colours); the other
# properties survive only in the private ``metadata["_ply_raw"]``, and a truncated file gives
# "PLY is unexpected length!" without the file's name.
_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER = 1 << 20  # bytes; a longer "header" is not a PLY header
_ASCII_MIN_BYTES = 2  # the fewest bytes one ascii value takes (a digit and a separator)
_ASCII_PARSE_BYTES = 96  # working memory per ascii value while parsing (the token and its array)


def _error(path, msg: str, line: int | None = None) -> ValueError:
    where = f"{path}" if line is None else f"{path}, header line {line}"
    return ValueError(f"{where}: {msg}")


def _parse_header(path, f):
    """``(format, elements, body offset)``; elements are ``(name, count, [(prop, type or None for a
    list, list types)], line)`` in file order."""
    first = f.readline(64)
    if first.rstrip(b"\r\n") != b"ply":
        raise _error(path, f"not a PLY file: the first line must be 'ply', got {first[:40]!r}", 1)
    fmt, elements, line = None, [], 1
    while True:
        raw = f.readline(_MAX_HEADER)
        line += 1
        if not raw:
            raise _error(path, "malformed header: the file ends before 'end_header'", line)
        if f.tell() > _MAX_HEADER:
            raise _error(path, f"malformed header: no 'end_header' in the first {_MAX_HEADER} bytes", line)
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise _error(path, "malformed header: a header line is not ascii text", line) from None
        toks = text.split()
        if not toks or toks[0] in ("comment", "obj_info"):
            continue
        key = toks[0]
        if key == "end_header":
            break
        if key == "format":
            if fmt is not None:
                raise _error(path, "malformed header: a second 'format' line", line)
            if len(toks) != 3 or toks[1] not in _FORMATS:
                raise _error(path, f"malformed header: expected 'format ascii|binary_little_endian|"
                             f"binary_big_endian 1.0', got {text!r}", line)
            fmt = toks[1]
        elif key == "element":
            if len(toks) != 3 or not toks[2].isdigit():
                raise _error(path, f"malformed header: expected 'element <name> <count>', got {text!r}", line)
            elements.append((toks[1], int(toks[2]), [], line))
        elif key == "property":
            if not elements:
                raise _error(path, f"malformed header: a property before any element ({text!r})", line)
            props = elements[-1][2]
            if len(toks) == 3 and toks[1] in _TYPES:
                name, spec = toks[2], _TYPES[toks[1]]
            elif len(toks) == 5 and toks[1] == "list" and toks[2] in _TYPES and toks[3] in _TYPES:
                name, spec = toks[4], None
            else:
                raise _error(path, f"malformed header: expected 'property <type> <name>' or 'property list "
                             f"<count type> <item type> <name>' with types among {sorted(set(_TYPES))}, "
                             f"got {text!r}", line)
            if any(p[0] == name for p in props):
                raise _error(path, f"malformed header: element {elements[-1][0]!r} has two properties "
                             f"named {name!r}", line)
            props.append((name, spec, toks[2:4] if spec is None else None))
        else:
            raise _error(path, f"malformed header: unknown keyword {key!r} ({text!r})", line)
    if fmt is None:
        raise _error(path, "malformed header: no 'format' line", line)
    return fmt, elements, f.tell()


def _row_bytes(props) -> int | None:
    if any(spec is None for _, spec, _ in props):
        return None
    return sum(int(spec[1]) for _, spec, _ in props)


def _parse_column(path, name: str, col: np.ndarray, dt: np.dtype) -> np.ndarray:
    """An ascii column (str tokens) as ``dt``; a ValueError naming the file, the vertex and the property."""
    try:
        v = col.astype(np.float64 if dt.kind == "f" else np.int64)
    except (ValueError, OverflowError):
        conv = float if dt.kind == "f" else int
        for i, t in enumerate(col):
            try:
                conv(t)
            except ValueError:
                raise _error(path, f"vertex {i}: {name} is not {'a number' if dt.kind == 'f' else 'an integer'}: "
                             f"{str(t)!r}") from None
        raise _error(path, f"{name}: a value does not fit in 64 bits") from None
    if dt.kind != "f":
        info = np.iinfo(dt)
        out = (v < info.min) | (v > info.max)
        if out.any():
            i = int(np.argmax(out))
            raise _error(path, f"vertex {i}: {name} = {v[i]} does not fit its type {dt.name}")
    return v.astype(dt)


def _layout(path, f, size: int):
    """Parse the header and check the announced vertex data against the file's size (nothing is
    allocated before): ``(format, vertex properties, vertex count, ascii lines to skip or binary
    byte offset of the vertices)``."""
    fmt, elements, offset = _parse_header(path, f)
    k = next((i for i, e in enumerate(elements) if e[0] == "vertex"), None)
    if k is None:
        raise _error(path, f"the header has no 'element vertex' (elements: "
                     f"{', '.join(e[0] for e in elements) or 'none'})")
    _, nv, props, line = elements[k]
    if not props:
        raise _error(path, "the vertex element has no properties", line)
    lists = [p[0] for p in props if p[1] is None]
    if lists:
        raise _error(path, f"the vertex element has list properties ({', '.join(lists)}); only scalar "
                     f"per-vertex properties are read", line)
    remaining = size - offset
    if fmt == "ascii":
        if nv * len(props) * _ASCII_MIN_BYTES > remaining + 1:  # the last value needs no separator
            raise _error(path, f"truncated: the header announces {nv} vertices of {len(props)} values, the "
                         f"{remaining} bytes after the header cannot hold them")
        return fmt, props, nv, sum(e[1] for e in elements[:k])  # one line per row of the elements before
    before = 0
    for name, count, eprops, eline in elements[:k]:
        rb = _row_bytes(eprops)
        if rb is None:
            raise _error(path, f"element {name!r} comes before the vertices and has list properties; "
                         f"cannot locate the binary vertex data", eline)
        before += count * rb
    row = _row_bytes(props)
    if before + nv * row > remaining:
        raise _error(path, f"truncated: the header announces {nv} vertices of {row} bytes ({nv * row} bytes"
                     f"{f' after {before} bytes of other elements' if before else ''}), the file has "
                     f"{remaining} bytes after the header")
    return fmt, props, nv, offset + before


def _ascii_vertices(path, f, skip: int, nv: int, props) -> dict[str, np.ndarray]:
    k = len(props)
    check_memory("path", path, nv * k * _ASCII_PARSE_BYTES, "cpu", what=f"{nv} ascii vertices of {k} values")
    try:
        text = f.read().decode("ascii")
    except UnicodeDecodeError as e:
        raise _error(path, f"not an ascii PLY body (byte {e.start} after the header is not ascii)") from None
    rows = [ln for ln in text.splitlines() if ln.strip()][skip:skip + nv]
    if len(rows) < nv:
        raise _error(path, f"truncated: the header announces {nv} vertices, the file has {len(rows)} vertex lines")
    tokens = " ".join(rows).split()
    if len(tokens) != nv * k:
        bad = next(i for i, r in enumerate(rows) if len(r.split()) != k)
        raise _error(path, f"vertex {bad}: expected {k} values ({', '.join(p[0] for p in props)}), got "
                     f"{len(rows[bad].split())} ({rows[bad].strip()[:80]!r})")
    table = np.array(tokens).reshape(nv, k)
    return {name: _parse_column(path, name, table[:, j], np.dtype(spec)) for j, (name, spec, _) in enumerate(props)}


def read_ply_vertices(path) -> dict[str, np.ndarray]:
    """Read the vertex element of a ``.ply`` file: every per-vertex property, by name.

    The header is parsed by hand; ascii, ``binary_little_endian`` and ``binary_big_endian`` bodies are
    read, binary ones with ``numpy.frombuffer``. The other elements (faces, edges, ...) are skipped;
    the vertex element must have only scalar properties. The size the header announces is checked
    against the file's size before anything is allocated.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.ply`` file.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{property name: (V,) array}`` in the order of the header, each of the declared type
        (``uchar`` -> uint8, ``float`` -> float32, ...) in native byte order.

    Raises
    ------
    TypeError
        ``path`` is not a str or path.
    FileNotFoundError
        The file does not exist.
    ValueError
        A malformed header (named with its line), no vertex element, a list property in it, a
        truncated body, a value that is not a number or does not fit its type; the message names
        the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "two.ply"
    >>> _ = p.write_text("ply\\nformat ascii 1.0\\nelement vertex 2\\nproperty float x\\n"
    ...                  "property uchar red\\nend_header\\n0.5 255\\n-1 7\\n")
    >>> v = read_ply_vertices(p)
    >>> list(v), v["x"].tolist(), v["red"].dtype.name
    (['x', 'red'], [0.5, -1.0], 'uint8')
    """
    path = check_path("path", path)
    if os.path.isdir(path):
        raise _error(path, "is a folder, expected a .ply file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        fmt, props, nv, where = _layout(path, f, size)
        if fmt == "ascii":
            return _ascii_vertices(path, f, where, nv, props)
        row = _row_bytes(props)
        check_memory("path", path, 2 * nv * row, "cpu", what=f"{nv} binary vertices of {row} bytes")
        f.seek(where)
        buf = f.read(nv * row)
    dtype = np.dtype([(name, _FORMATS[fmt] + spec) for name, spec, _ in props])
    table = np.frombuffer(buf, dtype=dtype, count=nv)
    return {name: table[name].astype(np.dtype(spec), copy=True) for name, spec, _ in props}


def read_dynlab_pose(path) -> np.ndarray:
    """Read a DynLab ``.pose`` file: one rigid pose per object (see the module notes on the layout).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.pose`` file: whitespace-separated numbers, 16 per object (a row-major 4x4 matrix whose
        last row is ``0 0 0 1``) or 12 per object (the 3x4 rows ``[R | t]``); line breaks are free.

    Returns
    -------
    numpy.ndarray
        (S, 4, 4) float64, the last row of each pose ``[0, 0, 0, 1]``.

    Raises
    ------
    TypeError
        ``path`` is not a str or path.
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is empty, holds a token that is not a finite number, a count of numbers that is
        neither a multiple of 12 nor of 16, or a block that is not a rotation (orthonormal with
        determinant +1 within ``1e-3``); the message names the file (and the pose).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "1-1.pose"
    >>> _ = p.write_text("1 0 0 0.5\\n0 1 0 0\\n0 0 1 2\\n" "0 -1 0 0\\n1 0 0 0\\n0 0 1 0\\n")
    >>> T = read_dynlab_pose(p)
    >>> T.shape, T[0, :, 3].tolist(), T[1, 3].tolist()
    ((2, 4, 4), [0.5, 0.0, 2.0, 1.0], [0.0, 0.0, 0.0, 1.0])
    """
    path = check_path("path", path)
    if os.path.isdir(path):
        raise _error(path, "is a folder, expected a .pose file")
    try:
        tokens = Path(path).read_bytes().decode("utf-8").split()
    except UnicodeDecodeError as e:
        raise _error(path, f"not a text pose file (byte {e.start} is not UTF-8)") from None
    if not tokens:
        raise _error(path, "the pose file is empty")
    try:
        x = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise _error(path, f"not a number: {bad[:40]!r} (a pose file holds whitespace-separated numbers)") from None
    if not np.isfinite(x).all():
        i = int(np.argmin(np.isfinite(x)))
        raise _error(path, f"number {i} is {tokens[i]!r}; expected finite numbers")
    n = x.size
    full = n % 16 == 0 and np.allclose(x.reshape(-1, 16)[:, 12:], [0, 0, 0, 1], rtol=0, atol=1e-9)
    if full:
        T = x.reshape(-1, 4, 4).copy()
        T[:, 3] = (0, 0, 0, 1)
        layout = "4x4 matrices"
    elif n % 12 == 0:
        T = np.zeros((n // 12, 4, 4))
        T[:, :3] = x.reshape(-1, 3, 4)
        T[:, 3, 3] = 1
        layout = "3x4 rows"
    elif n % 16 == 0:
        i = int(np.argmax(~np.isclose(x.reshape(-1, 16)[:, 12:], [0, 0, 0, 1], rtol=0, atol=1e-9).all(axis=1)))
        raise _error(path, f"{n} numbers read as {n // 16} 4x4 matrices, but the last row of pose {i} is "
                     f"{x[16 * i + 12:16 * i + 16].tolist()}, expected [0, 0, 0, 1]")
    else:
        raise _error(path, f"{n} numbers: expected a multiple of 16 (4x4 matrices) or of 12 (3x4 rows) per object")
    R = T[:, :3, :3]
    ortho = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(R)
    bad = np.flatnonzero((ortho > ROTATION_TOL) | (np.abs(det - 1) > ROTATION_TOL))
    if bad.size:
        i = int(bad[0])
        raise _error(path, f"pose {i} (read as {layout}, {n} numbers) is not a rotation: max |R^T R - I| = "
                     f"{ortho[i]:.3g}, det R = {det[i]:.6g} (expected orthonormal with det +1 within "
                     f"{ROTATION_TOL})")
    return T


def _is_float(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return False
    return True


def _dynlab_cloud(ply: Path, pose_path: Path):
    """``(pos, color, segment, pose)`` tensors of one pair, every value checked."""
    v = read_ply_vertices(ply)
    names = list(v)
    shown = ", ".join(names)
    missing = [c for c in ("x", "y", "z") if c not in v]
    if missing:
        raise _error(ply, f"no {', '.join(missing)} propert{'y' if len(missing) == 1 else 'ies'} in the vertex "
                     f"element (it has {shown})")
    rgb = next((c for c in COLOR_PROPERTIES if all(n in v for n in c)), None)
    if rgb is None:
        raise _error(ply, f"no colour: expected the vertex properties red, green, blue (or r, g, b), it has {shown}")
    seg_name = next((s for s in SEGMENT_PROPERTIES if s in v), None)
    if seg_name is None:
        raise _error(ply, f"no segment index: expected one of the vertex properties "
                     f"{', '.join(SEGMENT_PROPERTIES)}, it has {shown}")
    n = v["x"].shape[0]
    if n == 0:
        raise _error(ply, "the point cloud has no vertices")
    pos = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    finite = np.isfinite(pos).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise _error(ply, f"vertex {i} has a non-finite coordinate ({', '.join(map(str, pos[i].tolist()))})")
    color = np.empty((n, 3), dtype=np.float32)
    for j, c in enumerate(rgb):
        a = v[c]
        if a.dtype.kind in "iu":
            if a.min() < 0 or a.max() > 255:
                raise _error(ply, f"colour {c} ({a.dtype.name}) has values in [{a.min()}, {a.max()}], "
                             f"expected 0-255 for an integer colour")
            color[:, j] = a.astype(np.float32) / 255
        else:
            if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
                raise _error(ply, f"colour {c} ({a.dtype.name}) has values in [{a.min()}, {a.max()}], expected "
                             f"0-1 for a floating-point colour (0-255 colours must be stored as an integer type)")
            color[:, j] = a.astype(np.float32)
    s = v[seg_name]
    if s.dtype.kind == "f":
        if not (np.isfinite(s).all() and (s == np.round(s)).all()):
            raise _error(ply, f"segment index {seg_name} ({s.dtype.name}) holds non-integral values")
    seg = s.astype(np.int64)
    if seg.min() < 0:
        i = int(np.argmin(seg))
        raise _error(ply, f"vertex {i} has the negative segment index {seg_name} = {seg[i]}; expected indices >= 0")
    num_segments = int(seg.max()) + 1
    pose = read_dynlab_pose(pose_path)
    if pose.shape[0] != num_segments:
        raise _error(pose_path, f"{pose.shape[0]} poses, but the segment indices of {ply.name} run up to "
                     f"{num_segments - 1}: expected {num_segments} poses (one per segment index 0 .. "
                     f"{num_segments - 1})")
    return (torch.from_numpy(pos), torch.from_numpy(color), torch.from_numpy(seg),
            torch.from_numpy(pose.astype(np.float32)))


def _natural(s: str):
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def _selection(name: str, value, found: list[str]) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name}: expected None, a str or a list of str, got {type(value).__name__}") from None
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise TypeError(f"{name}: expected str entries, got {type(v).__name__} ({v!r})")
    items = [str(v) for v in items]
    if not items:
        raise ValueError(f"{name}: an empty selection; pass None for all of {', '.join(found)}")
    unknown = [v for v in items if v not in found]
    if unknown:
        raise ValueError(f"{name}: unknown {', '.join(map(repr, unknown))}; the folder has {', '.join(found)}")
    return items


_PAIR = re.compile(r"^(?P<scene>.+)-(?P<config>[^-]+)$")


def _scan(root: Path):
    plys, poses = {}, {}
    for p in root.iterdir():
        if p.name.startswith(".") or not p.is_file():
            continue
        ext = p.suffix.lower()
        if ext not in (".ply", ".pose"):
            continue
        m = _PAIR.match(p.stem)
        if m is None:
            raise ValueError(f"{p}: a DynLab file must be named <scene>-<config>{ext}")
        (plys if ext == ".ply" else poses)[(m["scene"], m["config"])] = p
    for key, p in sorted(plys.items()):
        if key not in poses:
            raise ValueError(f"{p}: no pose file beside it (expected {p.with_suffix('.pose')})")
    for key, p in sorted(poses.items()):
        if key not in plys:
            raise ValueError(f"{p}: no point cloud beside it (expected {p.with_suffix('.ply')})")
    return sorted(((s, c, plys[s, c], poses[s, c]) for s, c in plys),
                  key=lambda t: (_natural(t[0]), _natural(t[1])))


class DynLab(Dataset):
    """The DynLab articulated scans: one coloured, segmented point cloud and its per-object poses per
    (scene, configuration) pair of a local folder.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding the ``<scene>-<config>.ply`` / ``<scene>-<config>.pose`` pairs (hidden
        files and other extensions are ignored).
    scenes : str or list of str, optional
        Keep only these scenes (ints are taken as their decimal str); default all.
    configs : str or list of str, optional
        Keep only these configurations; default all.

    Attributes
    ----------
    pairs : list of (str, str, pathlib.Path, pathlib.Path)
        ``(scene, config, ply_path, pose_path)`` of the items, sorted by scene then config (numeric
        ids in numeric order).
    root : pathlib.Path

    Items are PyG ``Data(pos=(N, 3) float32, color=(N, 3) float32 in [0, 1], segment=(N,) int64,
    pose=(S, 4, 4) float32, scene=str, config=str)``, with ``S = max(segment) + 1``; pose ``s`` is
    the pose of the points whose segment is ``s``. The files are read when an item is accessed; their
    headers (and the sizes they announce) are checked at construction.

    Raises
    ------
    ValueError
        ``root`` does not exist, is not a folder or holds no pair; a ``.ply`` without its ``.pose``
        (or the reverse); an unknown scene or config in ``scenes`` / ``configs``; a malformed file
        (see :func:`read_ply_vertices`, :func:`read_dynlab_pose` and the module notes), named.
    TypeError
        An argument of the wrong type.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "1-2.ply").write_text(
    ...     "ply\\nformat ascii 1.0\\nelement vertex 3\\nproperty float x\\nproperty float y\\n"
    ...     "property float z\\nproperty uchar red\\nproperty uchar green\\nproperty uchar blue\\n"
    ...     "property int idx\\nend_header\\n0 0 0 255 0 0 0\\n1 0 0 0 255 0 1\\n0 1 0 0 0 255 1\\n")
    >>> _ = (d / "1-2.pose").write_text("1 0 0 0\\n0 1 0 0\\n0 0 1 0\\n" "1 0 0 0.5\\n0 1 0 0\\n0 0 1 0\\n")
    >>> ds = DynLab(d)
    >>> x = ds[0]
    >>> len(ds), x.scene, x.config, x.pos.shape, x.color[1].tolist(), x.segment.tolist(), x.pose.shape
    (1, '1', '2', torch.Size([3, 3]), [0.0, 1.0, 0.0], [0, 1, 1], torch.Size([2, 4, 4]))
    """

    def __init__(self, root, *, scenes=None, configs=None):
        root = check_path("root", root).expanduser()
        if not root.exists():
            raise ValueError(f"root: {root} does not exist (DynLab is never downloaded: unpack the raw "
                             f"release and pass the folder holding the <scene>-<config>.ply/.pose files)")
        if not root.is_dir():
            raise ValueError(f"root: {root} is not a folder")
        pairs = _scan(root)
        if not pairs:
            raise ValueError(f"root: no <scene>-<config>.ply / .pose pairs in {root}")
        all_scenes = sorted({p[0] for p in pairs}, key=_natural)
        keep_s = _selection("scenes", scenes, all_scenes)
        if keep_s is not None:
            pairs = [p for p in pairs if p[0] in keep_s]
        all_configs = sorted({p[1] for p in pairs}, key=_natural)
        keep_c = _selection("configs", configs, all_configs)
        if keep_c is not None:
            pairs = [p for p in pairs if p[1] in keep_c]
        for _, _, ply, _ in pairs:  # the headers and sizes: a malformed or truncated file fails here
            with open(ply, "rb") as f:
                _layout(ply, f, os.path.getsize(ply))
        self.root = root
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index):
        from torch_geometric.data import Data

        i = check_item_index(index, len(self.pairs), "scans")
        scene, config, ply, pose_path = self.pairs[i]
        pos, color, segment, pose = _dynlab_cloud(ply, pose_path)
        return Data(pos=pos, color=color, segment=segment, pose=pose, scene=scene, config=config)

    def __repr__(self) -> str:
        scenes = sorted({p[0] for p in self.pairs}, key=_natural)
        return f"DynLab(scans={len(self)}, scenes={scenes}, root='{self.root}')"
