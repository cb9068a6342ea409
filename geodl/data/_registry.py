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
    import torch

    path = _nbody_path(root, quick, seed)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (run `geodl data generate nbody"
                                f"{' --quick' if quick else ''}`)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: does not load ({type(exc).__name__}: {exc})") from None
    n = sum(NBODY_SIZES["quick" if quick else "full"])
    expected = {"loc": (n, 5, 3), "vel": (n, 5, 3), "charges": (n, 5, 1), "target": (n, 5, 3)}
    if not isinstance(data, dict) or set(data) != set(expected):
        raise ValueError(f"{path}: expected the keys {sorted(expected)}")
    for k, shape in expected.items():
        t = data[k]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != torch.float64:
            raise ValueError(f"{path}: {k!r} expected float64 of shape {shape}, got "
                             f"{getattr(t, 'dtype', type(t))} {tuple(getattr(t, 'shape', ()))}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path}: {k!r} holds non-finite values")
    if not bool(data["charges"].abs().eq(1).all()):
        raise ValueError(f"{path}: charges expected in {{-1, +1}}")
    return f"{path}: {n} trajectories, loc/vel/target (N, 5, 3), charges (N, 5, 1), float64"


def _land_path(root: Path, quick: bool, seed: int) -> Path:
    return Path(root) / "global_land_mask" / "land_bits.npy"


def _land_generate(root: Path, quick: bool, seed: int) -> Path:
    from geodl.data._sphere import _land_bits

    _land_bits(root)
    return _land_path(root, quick, seed)


def _land_verify(root: Path, quick: bool, seed: int) -> str:
    import json

    import numpy as np

    path = _land_path(root, quick, seed)
    meta_path = path.with_name("land_bits.json")
    if not (path.exists() and meta_path.exists()):
        raise FileNotFoundError(f"{path} does not exist (run `geodl data generate landmask`)")
    try:
        bits = np.load(path, mmap_mode="r")
        meta = json.loads(meta_path.read_text())
    except Exception as exc:
        raise ValueError(f"{path}: does not load ({type(exc).__name__}: {exc})") from None
    rows, cols = meta["shape"]
    if bits.dtype != np.uint8 or bits.shape != (rows, -(-cols // 8)):
        raise ValueError(f"{path}: expected uint8 of shape ({rows}, {-(-cols // 8)}), got {bits.dtype} {bits.shape}")
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
    from geodl.data._root import default_root

    root = Path(root) if root is not None else default_root()
    if not root.is_dir():
        return []
    out = []
    for entry in sorted(root.iterdir()):
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        out.append((entry.name, len(files), sum(p.stat().st_size for p in files)))
    return out
