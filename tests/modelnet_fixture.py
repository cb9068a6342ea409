"""A tiny ModelNet folder in the official layout and the real ``.off`` format, for tests.

``write_modelnet_fixture(root, version="10", train=2, test=1, seed=0)`` writes
``<root>/ModelNet<version>/<class>/{train,test}/<class>_<NNNN>.off`` for every official class
(numbering as in the archive: the test files continue after the train files) and returns the
``ModelNet<version>`` folder. Each mesh is a small box whose proportions depend on the class
(so a classifier can tell the classes apart) with a seeded jitter. The files cycle through the
variants met in the real archive:

- the standard header (``OFF`` on its own line, the counts on the next line), triangles;
- the header variant where the counts follow ``OFF`` on the same line (``OFF8 12 0``, as in
  many ModelNet files), triangles;
- quads (6 quad faces, fan-triangulated by the reader), with ``#`` comments and blank lines;
- ``OFF 8 6 0`` (counts after a space) with quads.

Importable from any test as ``from modelnet_fixture import write_modelnet_fixture`` (pytest puts
``tests/`` on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_modelnet_fixture", "box_off_text", "CUBE_QUADS", "CUBE_TRIANGLES"]

_CORNERS = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]],
    dtype=np.float64,
)
CUBE_QUADS = (
    (0, 3, 2, 1),
    (4, 5, 6, 7),
    (0, 1, 5, 4),
    (1, 2, 6, 5),
    (2, 3, 7, 6),
    (3, 0, 4, 7),
)
CUBE_TRIANGLES = tuple(t for q in CUBE_QUADS for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3])))


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def box_off_text(vertices, faces, variant: int = 0) -> str:
    """The text of an ``.off`` file of ``vertices`` (V, 3) and ``faces`` (polygons) in one of the
    four header variants (0: standard, 1: ``OFF<V> <F> 0``, 2: comments and blank lines,
    3: ``OFF <V> <F> 0``)."""
    nv, nf = len(vertices), len(faces)
    vlines = [" ".join(_fmt(c) for c in v) for v in vertices]
    flines = [f"{len(f)} " + " ".join(str(int(i)) for i in f) for f in faces]
    if variant == 0:
        lines = ["OFF", f"{nv} {nf} 0", *vlines, *flines]
    elif variant == 1:
        lines = [f"OFF{nv} {nf} 0", *vlines, *flines]
    elif variant == 2:
        lines = ["OFF", "# written by the geodl test fixture", "", f"{nv} {nf} 0", "# vertices", *vlines, "", "# faces", *flines]
    elif variant == 3:
        lines = [f"OFF {nv} {nf} 0", *vlines, *flines]
    else:
        raise ValueError(f"variant must be 0, 1, 2 or 3, got {variant!r}")
    return "\n".join(lines) + "\n"


def _classes(version: str):
    from geodl.data import MODELNET10_CLASSES, MODELNET40_CLASSES

    if version == "10":
        return MODELNET10_CLASSES
    if version == "40":
        return MODELNET40_CLASSES
    raise ValueError(f"version must be '10' or '40', got {version!r}")


def write_modelnet_fixture(root, version: str = "10", train: int = 2, test: int = 1, seed: int = 0) -> Path:
    """Write a small ModelNet``version`` folder under ``root``; return ``root / "ModelNet<version>"``.

    Every official class gets ``train`` files in ``train/`` and ``test`` files in ``test/``.
    """
    version = str(version)
    classes = _classes(version)
    rng = np.random.default_rng(seed)
    base = Path(root) / f"ModelNet{version}"
    n = 0
    for c, name in enumerate(classes):
        # class-dependent proportions: distinct boxes (sizes in [0.3, 3])
        dims = np.array([1.0 + 2.0 * ((c * 7) % 10) / 10, 1.0 + 1.5 * ((c * 3) % 10) / 10, 0.3 + 2.5 * c / len(classes)])
        for split, count, start in (("train", train, 1), ("test", test, train + 1)):
            folder = base / name / split
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                verts = _CORNERS * dims * (1.0 + 0.05 * rng.standard_normal(3)) + 0.02 * rng.standard_normal((8, 3))
                verts = verts * 10.0 + rng.standard_normal(3)  # ModelNet meshes are not normalised
                variant = n % 4
                faces = CUBE_QUADS if variant in (2, 3) else CUBE_TRIANGLES
                text = box_off_text(verts, faces, variant)
                (folder / f"{name}_{start + k:04d}.off").write_text(text)
                n += 1
    return base
