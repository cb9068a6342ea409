"""Classification tasks on the sphere: land/ocean and the spherical checkerboard.

Both are procedural and seeded: a call with the same arguments returns the same tensors. The only
cache is a bit-packed copy of the land mask under ``geodl.data.default_root()`` (built on first use;
rebuilt with a ``RuntimeWarning`` when it does not load or has the wrong shape). Points are ``(longitude, latitude)`` in degrees, float32; labels are int64.

- land/ocean: labels from the GLOBE 1 km land mask shipped in the ``global-land-mask`` package
  (the paper used Natural Earth 110 m polygons, so numbers are not comparable with it). Train and
  validation points are uniform on the sphere; the test set is the equal-area HEALPix grid of
  ``nside`` (pixel centres), which also makes a map of the predictions a HEALPix map.
- checkerboard (Rußwurm et al., ICLR'24): ``num_support`` Fibonacci-lattice support points take
  classes ``0, 1, …, num_classes-1`` in turn; a point's label is its nearest support point's class.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from geodl._checks import check_choice, check_int, check_memory, check_positive_int, check_tensor
from geodl.groups import lonlat_to_xyz, xyz_to_lonlat
from geodl.groups._grids import _float_dtype

__all__ = ["fibonacci_sphere", "uniform_sphere", "landocean_dataset", "checkerboard_dataset", "land_mask",
           "healpix_lonlat"]

_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}

# Peak bytes per point while the points are made (float64 temporaries, measured from the code):
_FIBONACCI_BYTES = 160
_UNIFORM_BYTES = 64
_LOOKUP_BYTES = 128  # land_mask: numpy indices, sort order, result


def _check_points(name: str, n: int, per_point: int, what: str) -> None:
    check_memory(name, n, n * per_point, "cpu", what=f"{n} {what}")


def fibonacci_sphere(n: int, *, output: str = "lonlat", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The Fibonacci (golden-angle) lattice: ``n`` nearly equal-area points on the unit sphere.

    Point i has ``z = 1 - (2i + 1)/n`` and longitude ``i · π(3 - √5)``.

    Parameters
    ----------
    n : int
        Number of points, ``>= 0`` (0 gives an empty ``(0, 2)`` or ``(0, 3)`` tensor); a number
        whose points would not fit in memory raises ``ValueError``.
    output : {"lonlat", "xyz"}
        ``(n, 2)`` longitude/latitude in degrees or ``(n, 3)`` unit vectors.
    dtype : torch.dtype
        A floating-point dtype (``TypeError`` otherwise, also for strings such as ``"float32"``).

    Examples
    --------
    >>> p = fibonacci_sphere(200)
    >>> p.shape, bool(p[:, 1].abs().max() < 90)
    (torch.Size([200, 2]), True)
    >>> fibonacci_sphere(4, output="xyz").norm(dim=1).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    check_int("n", n, min=0)
    check_choice("output", output, ("lonlat", "xyz"))
    dtype = _float_dtype(torch.float64 if dtype is None else dtype)
    _check_points("n", n, _FIBONACCI_BYTES, "Fibonacci points")
    i = torch.arange(n, dtype=torch.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    phi = torch.remainder(i * math.pi * (3.0 - math.sqrt(5.0)), 2 * math.pi)
    r = torch.sqrt(torch.clamp(1.0 - z * z, min=0.0))
    xyz = torch.stack([r * phi.cos(), r * phi.sin(), z], dim=1)
    xyz = xyz / xyz.norm(dim=1, keepdim=True)
    return (xyz if output == "xyz" else xyz_to_lonlat(xyz)).to(dtype)


def uniform_sphere(n: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` points uniform on the sphere as lon/lat degrees ``(n, 2)`` (z and longitude uniform).

    ``dtype`` is a floating-point ``torch.dtype`` (``TypeError`` otherwise). ``n >= 0`` (0 gives an
    empty ``(0, 2)`` tensor); a number whose points would not fit in memory raises ``ValueError``.

    Examples
    --------
    >>> uniform_sphere(3, seed=1).equal(uniform_sphere(3, seed=1))
    True
    """
    check_int("n", n, min=0)
    dtype = _float_dtype(torch.float64 if dtype is None else dtype)
    seed = check_int("seed", seed)
    _check_points("n", n, _UNIFORM_BYTES, "uniform points")
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    lon = u[:, 0] * 360.0 - 180.0
    lat = torch.rad2deg(torch.asin(u[:, 1] * 2.0 - 1.0))
    return torch.stack([lon, lat], dim=1).to(dtype)


def _index(v, grid0: float, step: float, lo: float, hi: float):
    import numpy as np

    return ((np.clip(v, lo, hi) - grid0) / step).astype("int64")


def _build_land_bits(root: Path, bits_path: Path, meta_path: Path) -> None:
    """Pack the GLOBE mask of ``global_land_mask`` into ``bits_path`` and write ``meta_path``."""
    import json

    import numpy as np
    from global_land_mask import globe

    from geodl._io import atomic_write, atomic_write_text

    root.mkdir(parents=True, exist_ok=True)
    lat, lon = globe._lat, globe._lon
    meta = {"lat": [float(lat[0]), float(lat[1] - lat[0]), float(lat.min()), float(lat.max())],
            "lon": [float(lon[0]), float(lon[1] - lon[0]), float(lon.min()), float(lon.max())],
            "shape": list(globe._mask.shape)}
    bits = np.packbits(~globe._mask, axis=1)
    rng = np.random.default_rng(0)
    qlat, qlon = rng.uniform(-90, 90, 20000), rng.uniform(-180, 180, 20000)
    i, j = _index(qlat, *meta["lat"]), _index(qlon, *meta["lon"])
    mine = (bits[i, j >> 3] >> (7 - (j & 7))) & 1
    if not np.array_equal(mine.astype(bool), globe.is_land(qlat, qlon)):
        raise RuntimeError("global_land_mask: packed copy disagrees with globe.is_land")
    def save(tmp):  # through a handle: np.save would append ".npy" to the temporary name
        with open(tmp, "wb") as fh:
            np.save(fh, bits, allow_pickle=False)

    atomic_write(bits_path, save)
    atomic_write_text(meta_path, json.dumps(meta))


def _read_land_cache(bits_path: Path, meta_path: Path):
    """``(bits, meta, None)`` for a valid land-mask cache, else ``(None, None, why)``."""
    import json
    import math as _math

    import numpy as np

    try:
        meta = json.loads(meta_path.read_text())
        bits = np.load(bits_path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # truncated, garbage, not JSON / not .npy
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return None, None, f"does not load (truncated or damaged: {type(exc).__name__}: {msg})"
    ok_axis = lambda v: (isinstance(v, list) and len(v) == 4  # noqa: E731
                         and all(isinstance(x, (int, float)) and _math.isfinite(x) for x in v)
                         and v[1] != 0)
    shape = meta.get("shape") if isinstance(meta, dict) else None
    if not (isinstance(meta, dict) and ok_axis(meta.get("lat")) and ok_axis(meta.get("lon"))
            and isinstance(shape, list) and len(shape) == 2
            and all(isinstance(x, int) and x > 0 for x in shape)):
        return None, None, f"{meta_path.name} expected {{'lat': [4 numbers], 'lon': [4 numbers], 'shape': [rows, cols]}}"
    rows, cols = shape
    if bits.dtype != np.uint8 or bits.shape != (rows, -(-cols // 8)):
        return None, None, (f"expected uint8 of shape ({rows}, {-(-cols // 8)}), got {bits.dtype} "
                            f"{bits.shape}")
    return bits, meta, None


def _land_bits(root=None):
    """The GLOBE land mask as packed bits, memory-mapped from ``default_root()`` (built once).

    Importing ``global_land_mask`` decompresses a 21600 × 43200 boolean array (≈ 1 GB, ~15 s);
    the bit-packed copy (117 MB) is memory-mapped instead, so a lookup reads only the pages it
    touches. The copy is checked against ``globe.is_land`` at 20,000 random points when built.
    An existing copy is validated, not trusted: one that does not load (truncated, garbage) or has
    the wrong dtype or shape is rebuilt with a ``RuntimeWarning`` naming the file.
    """
    import warnings

    from geodl.data._root import resolve_root

    root = resolve_root(root) / "global_land_mask"
    bits_path, meta_path = root / "land_bits.npy", root / "land_bits.json"
    if bits_path.exists() and meta_path.exists():
        bits, meta, problem = _read_land_cache(bits_path, meta_path)
        if problem is None:
            return bits, meta
        warnings.warn(f"{bits_path}: {problem}; rebuilding it (to rebuild it by hand, delete it or "
                      f"run `geodl data generate landmask`)", RuntimeWarning, stacklevel=2)
    _build_land_bits(root, bits_path, meta_path)
    bits, meta, problem = _read_land_cache(bits_path, meta_path)
    if problem is not None:
        raise RuntimeError(f"{bits_path}: freshly built land-mask cache is invalid: {problem}")
    return bits, meta


def land_mask(lonlat: torch.Tensor) -> torch.Tensor:
    """1 where ``(lon, lat)`` (degrees) is land in the GLOBE mask of ``global-land-mask``, else 0.

    The first call builds a bit-packed copy of the mask under ``geodl.data.default_root()``
    (about 20 s once); later calls memory-map it. Most lakes count as land (as in the package).
    ``lonlat`` is ``(N, 2)`` real degrees (finite, latitudes in [-90, 90]; ``ValueError`` /
    ``TypeError`` naming ``lonlat`` otherwise); ``N = 0`` gives an empty int64 tensor (without
    touching the mask).

    Examples
    --------
    >>> land_mask(torch.tensor([[8.5, 47.4], [-30.0, 0.0]])).tolist()  # Zürich, mid-Atlantic
    [1, 0]
    """
    import numpy as np

    check_tensor("lonlat", lonlat, shape=(None, 2), finite=True)
    if lonlat.is_complex() or lonlat.dtype == torch.bool:
        raise TypeError(f"lonlat: expected real (floating or integer) degrees, got dtype {lonlat.dtype}")
    if lonlat.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    if bool((lonlat[:, 1].abs() > 90).any()):
        raise ValueError("lonlat: latitudes (lonlat[:, 1]) must lie in [-90, 90] degrees")
    _check_points("lonlat", lonlat.shape[0], _LOOKUP_BYTES, "land-mask lookups")
    bits, meta = _land_bits()
    ll = lonlat.detach().double().cpu().numpy()
    lon = ((ll[:, 0] + 180.0) % 360.0) - 180.0
    i, j = _index(ll[:, 1], *meta["lat"]), _index(lon, *meta["lon"])
    order = np.argsort(i, kind="stable")  # row-sorted reads touch each mapped page once
    out = np.empty(len(i), dtype=np.int64)
    out[order] = (np.asarray(bits[i[order], j[order] >> 3]) >> (7 - (j[order] & 7))) & 1
    return torch.from_numpy(out)


def healpix_lonlat(nside: int) -> torch.Tensor:
    """HEALPix pixel centres in RING order as ``(12 nside², 2)`` lon/lat degrees, lon in [-180, 180).

    The same as :func:`geodl.groups.s2_healpix_lonlat` (kept here under its old name).

    Examples
    --------
    >>> healpix_lonlat(1).shape
    torch.Size([12, 2])
    """
    from geodl.groups import s2_healpix_lonlat

    return s2_healpix_lonlat(nside)


def landocean_dataset(split: str = "train", num_samples: int | None = None, *, seed: int = 0,
                      nside: int = 32) -> TensorDataset:
    """Land/ocean classification on the sphere.

    Parameters
    ----------
    split : {"train", "val", "test"}
        Train/val: ``num_samples`` points uniform on the sphere (default 5000 / 1000), seeded by
        ``seed`` and the split. Test: the ``12·nside²`` HEALPix pixel centres (RING order; the
        default ``nside=32`` gives 12,288 points), ``num_samples`` ignored.
    num_samples : int, optional
        ``>= 1`` (0 is refused: ``ValueError``); sizes whose points would not fit in memory raise
        ``ValueError`` naming the argument.
    seed : int
    nside : int
        HEALPix resolution of the test grid (a power of two).

    Returns
    -------
    TensorDataset of ``(lonlat float32 (N, 2), label int64 (N,))``, label 1 = land.

    Examples
    --------
    >>> ds = landocean_dataset("train", 200, seed=0)
    >>> x, y = ds.tensors
    >>> x.shape, y.dtype, 0.1 < float(y.float().mean()) < 0.5  # about 29 % of the Earth is land
    (torch.Size([200, 2]), torch.int64, True)
    """
    check_choice("split", split, _SPLIT_OFFSET)
    seed = check_int("seed", seed)
    if split == "test":
        check_int("nside", nside, min=1)
        if nside & (nside - 1):
            raise ValueError(f"nside: expected a power of two, got {nside!r}")
        pts = healpix_lonlat(nside)
    else:
        n = check_positive_int("num_samples", num_samples if num_samples is not None else (5000 if split == "train" else 1000))
        _check_points("num_samples", n, _UNIFORM_BYTES + _LOOKUP_BYTES + 8, "points")
        pts = uniform_sphere(n, seed=1000 * int(seed) + _SPLIT_OFFSET[split])
    return TensorDataset(pts.float(), land_mask(pts))


def checkerboard_dataset(split: str = "train", num_samples: int = 10000, *, num_support: int = 200,
                         num_classes: int = 16, seed: int = 0) -> TensorDataset:
    """The spherical checkerboard: labels by the nearest of ``num_support`` Fibonacci points.

    Support point i has class ``i mod num_classes``; samples are uniform on the sphere, seeded by
    ``seed`` and the split (train/val/test are disjoint draws). ``num_samples``, ``num_support``
    and ``num_classes`` are ``>= 1`` (``ValueError`` otherwise); the nearest-support search takes
    ``num_samples x num_support`` float64 scores, checked against the memory available first.

    Returns
    -------
    TensorDataset of ``(lonlat float32 (N, 2), label int64 (N,))``.

    Examples
    --------
    >>> x, y = checkerboard_dataset("val", 500, seed=0).tensors
    >>> x.shape, int(y.min()), int(y.max())
    (torch.Size([500, 2]), 0, 15)
    """
    check_choice("split", split, _SPLIT_OFFSET)
    check_positive_int("num_samples", num_samples)
    seed = check_int("seed", seed)
    check_positive_int("num_support", num_support)
    check_positive_int("num_classes", num_classes)
    _check_points("num_support", num_support, _FIBONACCI_BYTES, "support points")
    check_memory("num_samples", num_samples, num_samples * (8 * num_support + _UNIFORM_BYTES + 64), "cpu",
                 what=f"{num_samples} samples scored against {num_support} support points")
    support = fibonacci_sphere(num_support, output="xyz")
    classes = torch.arange(num_support) % num_classes
    pts = uniform_sphere(num_samples, seed=1000 * int(seed) + 10 + _SPLIT_OFFSET[split])
    nearest = (lonlat_to_xyz(pts) @ support.T).argmax(dim=1)  # max cosine = min geodesic distance
    return TensorDataset(pts.float(), classes[nearest])
