"""DynLab files for tests: a PLY vertex writer and the pose-file text, in the documented formats.

``write_ply(path, fields, fmt="ascii", faces=None, comment="written by a geodl test")`` writes ``fields``
({name: (N,) array}) as the vertex element of a PLY file (``ascii``, ``binary_little_endian`` or
``binary_big_endian``; property types from the arrays' dtypes), optionally followed by a face element (a
list property), as the real files do, and returns ``path``. ``pose_text(T, layout, decimals=None, crlf=False,
blank=False)`` is the text of a ``.pose`` file of the (k, 4, 4) poses ``T`` in one of ``LAYOUTS``: "4x4 rows"
(four lines per object), "4x4 line" (16 numbers per line), "3x4 rows", "3x4 line", "one per line"; numbers
as ``repr`` (exact float64 round trip) or with ``decimals``, optionally CRLF line ends and blank lines.

Importable from any test as ``from dynlab_fixture import write_ply, pose_text`` (pytest puts ``tests/`` on
``sys.path``), as ``tests/data/test_dynlab.py`` and ``tests/fuzz/test_fuzz_dynlab.py`` do.
"""

from __future__ import annotations

import numpy as np

LAYOUTS = ("4x4 rows", "4x4 line", "3x4 rows", "3x4 line", "one per line")
PLY_TYPES = {"f4": "float", "f8": "double", "u1": "uchar", "i1": "char", "i2": "short", "u2": "ushort",
             "i4": "int", "u4": "uint"}


def write_ply(path, fields: dict, fmt: str = "ascii", faces=None, comment: str | None = "written by a geodl test"):
    names = list(fields)
    n = len(fields[names[0]])
    head = ["ply", f"format {fmt} 1.0"] + ([f"comment {comment}"] if comment else [])
    head += [f"element vertex {n}"] + [f"property {PLY_TYPES[np.asarray(fields[k]).dtype.str[1:]]} {k}" for k in names]
    if faces:
        head += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    head.append("end_header")
    header = ("\n".join(head) + "\n").encode()
    if fmt == "ascii":
        rows = [" ".join(repr(fields[k][i].item()) for k in names) for i in range(n)]
        rows += [f"{len(f)} " + " ".join(map(str, f)) for f in (faces or [])]
        body = ("\n".join(rows) + "\n").encode()
    else:
        e = "<" if fmt == "binary_little_endian" else ">"
        table = np.empty(n, np.dtype([(k, e + np.asarray(fields[k]).dtype.str[1:]) for k in names]))
        for k in names:
            table[k] = fields[k]
        body = table.tobytes()
        for f in faces or []:
            body += np.uint8(len(f)).tobytes() + np.asarray(f, dtype=e + "i4").tobytes()
    path.write_bytes(header + body)
    return path


def pose_text(T, layout: str = "4x4 rows", decimals=None, crlf: bool = False, blank: bool = False) -> str:
    fmt1 = (lambda x: repr(float(x))) if decimals is None else (lambda x: f"{float(x):.{decimals}f}")

    def fmt(a):
        return " ".join(fmt1(x) for x in a)

    if layout == "4x4 rows":
        lines = [fmt(r) for t in T for r in t]
    elif layout == "4x4 line":
        lines = [fmt(t.ravel()) for t in T]
    elif layout == "3x4 rows":
        lines = [fmt(r) for t in T for r in t[:3]]
    elif layout == "3x4 line":
        lines = [fmt(t[:3].ravel()) for t in T]
    else:
        lines = [fmt1(x) for t in T for x in t.ravel()]
    if blank:
        lines = [""] + [ln + ("\n" if i % 3 == 0 else "") for i, ln in enumerate(lines)] + ["", "  "]
    return ("\r\n" if crlf else "\n").join(lines) + "\n"
