"""The cached procedural datasets behind ``geodl data``: generate one, verify its cache file, list the cache.

Each entry of :data:`DATASETS` knows where its cache file lives under the data root, how to build
it (``generate``) and what a valid file holds (``verify``: it loads and has the expected shapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["DATASETS", "CachedDataset", "cached_files"]

# the sizes of `geodl bench nbody` (full / --quick)
NBODY_SIZES = {"full": (3000, 2000, 2000), "quick": (300, 200, 200)}


@dataclass(frozen=True)
class CachedDataset:
    """A procedural dataset with a cache file: ``path(root, quick, seed)``, ``generate``, ``verify``.

    ``generate(root, quick, seed) -> Path`` builds (or reuses) the cache file;
    ``verify(root, quick, seed) -> str`` returns a one-line description of a valid file and raises
    ``FileNotFoundError`` (not generated) or ``ValueError`` (wrong content).
    """

    name: str
    summary: str
    path: Callable[[Path, bool, int], Path]
    generate: Callable[[Path, bool, int], Path]
    verify: Callable[[Path, bool, int], str]


def _nbody_path(root: Path, quick: bool, seed: int) -> Path:
    from geodl.data._nbody import _cache_path

    return _cache_path(Path(root), seed, NBODY_SIZES["quick" if quick else "full"], {})


def _nbody_generate(root: Path, quick: bool, seed: int) -> Path:
    from geodl.data._nbody import load_splits

    load_splits(root, seed, NBODY_SIZES["quick" if quick else "full"])
    return _nbody_path(root, quick, seed)


def _nbody_verify(root: Path, quick: bool, seed: int) -> str:
    from geodl.data._nbody import _read_cache

    path = _nbody_path(root, quick, seed)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (run `geodl data generate nbody"
                                f"{' --quick' if quick else ''}`)")
    n = sum(NBODY_SIZES["quick" if quick else "full"])
    _, problem = _read_cache(path, n)  # the same checks as the loader's
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    return f"{path}: {n} trajectories, loc/vel/target (N, 5, 3), charges (N, 5, 1), float64"


def _land_path(root: Path, quick: bool, seed: int) -> Path:
    return Path(root) / "global_land_mask" / "land_bits.npy"


def _land_generate(root: Path, quick: bool, seed: int) -> Path:
    from geodl.data._sphere import _land_bits

    _land_bits(root)
    return _land_path(root, quick, seed)


def _land_verify(root: Path, quick: bool, seed: int) -> str:
    from geodl.data._sphere import _read_land_cache

    path = _land_path(root, quick, seed)
    meta_path = path.with_name("land_bits.json")
    if not (path.exists() and meta_path.exists()):
        raise FileNotFoundError(f"{path} does not exist (run `geodl data generate landmask`)")
    _, meta, problem = _read_land_cache(path, meta_path)  # the same checks as the loader's
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    rows, cols = meta["shape"]
    return f"{path}: {rows} x {cols} land mask, bit-packed"


DATASETS: dict[str, CachedDataset] = {
    "nbody": CachedDataset("nbody", "charged 5-body trajectories (EGNN protocol); --quick: the 300/200/200 "
                           "subset of `geodl bench nbody --quick`", _nbody_path, _nbody_generate, _nbody_verify),
    "landmask": CachedDataset("landmask", "bit-packed GLOBE land mask of the land/ocean task "
                              "(from the global-land-mask package)", _land_path, _land_generate, _land_verify),
}


def cached_files(root=None) -> list[tuple[str, int, int]]:
    """``(folder, number of files, bytes)`` for every top-level folder (or file) under the data root.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "nbody").mkdir(); _ = (d / "nbody" / "a.pt").write_bytes(b"123")
    >>> cached_files(d)
    [('nbody', 1, 3)]
    """
    from geodl.data._root import resolve_root

    root = resolve_root(root)
    if not root.is_dir():
        return []
    out = []
    for entry in sorted(root.iterdir()):
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        out.append((entry.name, len(files), sum(p.stat().st_size for p in files)))
    return out
