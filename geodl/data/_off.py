"""A strict, robust reader of Object File Format (``.off``) meshes, the format of ModelNet.

The format (one record per line; ``#`` starts a comment that runs to the end of the line; blank
lines are ignored)::

    OFF
    <num_vertices> <num_faces> <num_edges>
    x y z                      (num_vertices lines)
    n i_1 ... i_n [colour]     (num_faces lines: a polygon of n >= 3 vertex indices, 0-based)

The header variant of many ModelNet files, where the counts follow ``OFF`` on the same line
(``OFF490 518 0`` or ``OFF 490 518 0``), is read too. The edge count is ignored (it may be
omitted). Polygons are fan-triangulated (``(i_1, i_k, i_{k+1})``), so a quad becomes two
triangles. Everything else is checked: the vertex and face counts against the lines present, three
finite coordinates per vertex, integer face indices in ``[0, num_vertices)``; each problem is a
``ValueError`` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["read_off"]


def _error(path, msg: str, line: int | None = None) -> ValueError:
    where = f"{path}" if line is None else f"{path}, line {line}"
    return ValueError(f"{where}: {msg}")


def _records(lines, start: int = 0):
    """``(line number, tokens)`` of every non-blank line from ``lines[start]`` on, comments removed."""
    for i in range(start, len(lines)):
        raw = lines[i]
        cut = raw.find("#")
        if cut >= 0:
            raw = raw[:cut]
        tokens = raw.split()
        if tokens:
            yield i + 1, tokens


def _fast_body(lines, nv: int, nf: int):
    """The vertices and faces of a regular body (no comments, 3 coordinates per vertex, triangles
    only, every value valid) read vectorised, or ``None``: then the line-by-line read decides (and
    names the line of any problem)."""
    body = [ln for ln in lines if ln and not ln.isspace()]
    if len(body) != nv + nf or any("#" in ln for ln in body):
        return None
    vt = " ".join(body[:nv]).split()
    ft = " ".join(body[nv:]).split()
    if len(vt) != 3 * nv or len(ft) != 4 * nf:
        return None
    try:
        v = np.array(vt, dtype=np.float64).reshape(nv, 3)
        f = np.array(ft, dtype=np.int64).reshape(nf, 4)
    except (ValueError, OverflowError):
        return None
    if not np.isfinite(v).all():
        return None
    if nf and not ((f[:, 0] == 3).all() and f[:, 1:].min() >= 0 and f[:, 1:].max() < nv):
        return None
    return v, np.ascontiguousarray(f[:, 1:])


def _int(path, token: str, line: int, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise _error(path, f"{what}: expected an integer, got {token!r}", line) from None


def _parse_counts(path, tokens, line: int) -> tuple[int, int]:
    if len(tokens) not in (2, 3):
        raise _error(path, "expected the counts '<num_vertices> <num_faces> [<num_edges>]', got "
                     f"{' '.join(tokens)!r}", line)
    nv, nf = (_int(path, t, line, "header count") for t in tokens[:2])
    if len(tokens) == 3:
        _int(path, tokens[2], line, "header edge count")
    if nv < 0 or nf < 0:
        raise _error(path, f"negative counts in the header ({nv} vertices, {nf} faces)", line)
    return nv, nf


def _vertices(path, recs) -> np.ndarray:
    nv = len(recs)
    bad = next((r for r in recs if len(r[1]) != 3), None)
    if bad is not None:
        raise _error(path, f"a vertex needs 3 coordinates, got {len(bad[1])} ({' '.join(bad[1])!r})", bad[0])
    try:
        v = np.array([t for _, toks in recs for t in toks], dtype=np.float64).reshape(nv, 3)
    except ValueError:
        for line, toks in recs:  # find the offending line
            for t in toks:
                try:
                    float(t)
                except ValueError:
                    raise _error(path, f"vertex coordinate is not a number: {t!r}", line) from None
        raise  # pragma: no cover - numpy and float() disagree
    finite = np.isfinite(v).all(axis=1)
    if not finite.all():
        k = int(np.argmin(finite))
        raise _error(path, f"vertex {k} has a non-finite coordinate ({' '.join(recs[k][1])})", recs[k][0])
    return v


def _faces(path, recs, nv: int) -> np.ndarray:
    tris = []
    for k, (line, toks) in enumerate(recs):
        n = _int(path, toks[0], line, f"face {k}: vertex count")
        if n < 3:
            raise _error(path, f"face {k}: a face needs at least 3 vertices, got {n}", line)
        if len(toks) < n + 1:
            raise _error(path, f"face {k}: expected {n} vertex indices, got {len(toks) - 1}", line)
        idx = [_int(path, t, line, f"face {k}: vertex index") for t in toks[1:n + 1]]
        for i in idx:
            if not 0 <= i < nv:
                raise _error(path, f"face {k}: vertex index {i} out of range [0, {nv})", line)
        # the tokens after the indices (a colour) are allowed by the format and ignored
        tris.extend((idx[0], idx[j], idx[j + 1]) for j in range(1, n - 1))
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def read_off(path) -> tuple[np.ndarray, np.ndarray]:
    """Read an ``.off`` mesh; polygons are fan-triangulated.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.off`` file (plain ``OFF`` header, or the counts on the ``OFF`` line as in ModelNet).

    Returns
    -------
    vertices : numpy.ndarray
        (V, 3) float64.
    faces : numpy.ndarray
        (F, 3) int64 vertex indices; a polygon of n vertices gives n - 2 triangles.

    Raises
    ------
    TypeError
        ``path`` is not a str or path.
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is empty, not an OFF file, truncated, has extra lines, a malformed or non-finite
        vertex, or a malformed or out-of-range face; the message names the file and the line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "quad.off"
    >>> _ = p.write_text("OFF4 1 0\\n0 0 0\\n1 0 0\\n1 1 0\\n0 1 0\\n4 0 1 2 3\\n")
    >>> v, f = read_off(p)
    >>> v.shape, f.tolist()
    ((4, 3), [[0, 1, 2], [0, 2, 3]])
    """
    from geodl._checks import check_path

    path = check_path("path", path)
    if os.path.isdir(path):
        raise _error(path, "is a folder, expected an .off file")
    data = Path(path).read_bytes()
    if not data.strip():
        raise _error(path, "the file is empty" if not data else "the file holds only whitespace")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _error(path, f"not a text OFF file (byte {e.start} is not UTF-8)") from None
    lines = text.splitlines()
    head = _records(lines)
    first = next(head, None)
    if first is None:
        raise _error(path, "the file holds only comments, no OFF header")
    line, toks = first
    if not toks[0].startswith("OFF"):
        raise _error(path, f"not an OFF file: the first line must start with 'OFF', got {toks[0][:40]!r}", line)
    rest = ([toks[0][3:]] if len(toks[0]) > 3 else []) + toks[1:]  # 'OFF490 518 0' or 'OFF 490 518 0'
    if not rest:
        counts = next(head, None)
        if counts is None:
            raise _error(path, "truncated: the header has no counts line after 'OFF'")
        line, rest = counts
    nv, nf = _parse_counts(path, rest, line)
    fast = _fast_body(lines[line:], nv, nf)  # line numbers are 1-based: lines[line:] follows the header
    if fast is not None:
        return fast
    body = list(_records(lines, line))
    if len(body) < nv + nf:
        got_v = min(len(body), nv)
        raise _error(path, f"truncated: the header announces {nv} vertices and {nf} faces, the file has "
                     f"{got_v} vertex lines and {len(body) - got_v} face lines")
    if len(body) > nv + nf:
        extra = body[nv + nf]
        raise _error(path, f"{len(body) - nv - nf} line(s) after the {nv} vertices and {nf} faces the header "
                     f"announces (the counts are wrong)", extra[0])
    return _vertices(path, body[:nv]), _faces(path, body[nv:], nv)
