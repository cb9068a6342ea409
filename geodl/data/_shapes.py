"""Synthetic shapes: seeded point clouds of 12 classes of solids, the embedded default of the
rotated point-cloud classification task (``geodl bench shapes``).

Each class is one trimesh solid in a canonical pose (z up, centred at the origin, a
class-specific base aspect ratio). A sample stretches it by a random per-axis factor
``exp(U(-deform, deform))`` (an anisotropic deformation in the canonical frame, so z stays the
vertical axis), samples ``num_points`` points on the surface (area weighted, trimesh's
``sample_surface`` with a numpy ``Generator``) and adds Gaussian noise of standard deviation
``noise``; the optional normals are the face normals of the deformed solid at the sampled
points. Every sample has its own generator, seeded by ``(seed, split, class, index)``: the
splits ("train", "val", "test") are drawn from different seeds, and a smaller ``per_class``
gives a prefix of a larger one.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import Dataset

from geodl._checks import check_item_index, check_alloc, check_choice, check_int, check_number

__all__ = ["SyntheticShapes", "SHAPE_CLASSES"]

SHAPE_CLASSES = ("box", "capsule", "cone", "cylinder", "ellipsoid", "hexagonal_prism", "octahedron",
                 "pyramid", "table", "tetrahedron", "torus", "tube")
"""The class names of :class:`SyntheticShapes` (sorted; the label is the index)."""

_SPLITS = ("train", "val", "test")


def _poly(vertices, faces):
    import trimesh

    return trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=True)


def _convex(vertices):
    import trimesh

    return trimesh.Trimesh(np.asarray(vertices, dtype=np.float64)).convex_hull


def _table():
    import trimesh

    parts = [trimesh.creation.box(extents=(1.6, 1.0, 0.12), transform=_shift(0, 0, 0.44))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(trimesh.creation.box(extents=(0.12, 0.12, 0.9), transform=_shift(0.7 * sx, 0.4 * sy, -0.06)))
    return trimesh.util.concatenate(parts)


def _shift(x, y, z):
    t = np.eye(4)
    t[:3, 3] = (x, y, z)
    return t


def _build(name: str):
    """The canonical solid of class ``name`` (z up, bounding box centred at the origin)."""
    import trimesh.creation as c

    s2 = 2 ** -0.5
    mesh = {
        "box": lambda: c.box(extents=(1.6, 1.0, 0.6)),
        "capsule": lambda: c.capsule(height=1.2, radius=0.35, count=(16, 16)),
        "cone": lambda: c.cone(radius=0.6, height=1.5, sections=32),
        "cylinder": lambda: c.cylinder(radius=0.45, height=1.6, sections=32),
        "ellipsoid": lambda: c.icosphere(subdivisions=2, radius=1.0).apply_scale((0.9, 0.6, 0.45)),
        "hexagonal_prism": lambda: c.cylinder(radius=0.7, height=0.6, sections=6),
        "octahedron": lambda: _convex([[0.7, 0, 0], [-0.7, 0, 0], [0, 0.7, 0], [0, -0.7, 0], [0, 0, 1.0], [0, 0, -1.0]]),
        "pyramid": lambda: _convex([[0.65, 0.65, 0], [0.65, -0.65, 0], [-0.65, 0.65, 0], [-0.65, -0.65, 0], [0, 0, 1.2]]),
        "table": _table,
        "tetrahedron": lambda: _convex([[1, 0, -s2], [-1, 0, -s2], [0, 1, s2], [0, -1, s2]]),
        "torus": lambda: c.torus(major_radius=0.65, minor_radius=0.22, major_sections=32, minor_sections=16),
        "tube": lambda: c.annulus(r_min=0.3, r_max=0.5, height=1.5, sections=32),
    }[name]()
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _canonical(name: str):
    v, f = _build(name)
    v.setflags(write=False)
    f.setflags(write=False)
    return v, f


def _sample(name: str, rng: np.random.Generator, num_points: int, deform: float, noise: float, normals: bool):
    """One sample of class ``name``: points (num_points, 3) and normals (or None), float64."""
    import trimesh

    v, f = _canonical(name)
    scale = np.exp(rng.uniform(-deform, deform, size=3))
    mesh = trimesh.Trimesh(v * scale, f, process=False)
    pts, face = trimesh.sample.sample_surface(mesh, num_points, seed=rng)
    pts = pts + rng.normal(0.0, noise, size=pts.shape) if noise > 0 else pts
    return pts, (np.asarray(mesh.face_normals)[face] if normals else None)


class _StackedClouds(Dataset):
    """A dataset held as stacked per-cloud tensors: ``pos`` (M, P, 3), ``y`` (M,), the per-point fields
    named in ``_point_fields`` (M, P, ...) or None, and the per-cloud fields in ``_cloud_fields``
    (M, ...), given to each item with a leading 1 (as ``y``). Items are PyG ``Data``."""

    _point_fields: tuple = ()
    _cloud_fields: tuple = ()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int):
        from torch_geometric.data import Data

        i = check_item_index(index, len(self))
        kw = {"pos": self.pos[i], **{k: getattr(self, k)[i:i + 1] for k in self._cloud_fields}, "y": self.y[i:i + 1]}
        kw.update({k: getattr(self, k)[i] for k in self._point_fields if getattr(self, k) is not None})
        return Data(**kw)


class SyntheticShapes(_StackedClouds):
    """Seeded point clouds of :data:`SHAPE_CLASSES` solids (z up, deformed, noisy), like ModelNet.

    Parameters
    ----------
    split : str
        "train", "val" or "test"; each split is drawn from its own seeds.
    num_points : int
        Points per cloud (>= 3).
    per_class : int
        Clouds per class (>= 1); the dataset holds ``per_class * len(classes)`` clouds, ordered
        by class then index.
    normals : bool
        Also return the unit surface normals (``normal``).
    seed : int
        Seed (>= 0) of the deformations, the surface samples and the noise.
    deform : float
        Per-axis log-scale range: each axis is stretched by ``exp(U(-deform, deform))``
        (0 <= deform <= 1).
    noise : float
        Standard deviation of the Gaussian noise added to the points (>= 0; the solids are about
        2 units wide).

    Attributes
    ----------
    classes : tuple of str
        :data:`SHAPE_CLASSES`.
    pos : torch.Tensor
        ``(len, num_points, 3)`` float32, all clouds.
    y : torch.Tensor
        ``(len,)`` int64 labels.
    normal : torch.Tensor or None
        ``(len, num_points, 3)`` float32 when ``normals``.

    Items
    -----
    ``dataset[i]`` is a ``torch_geometric.data.Data`` with ``pos`` (num_points, 3) float32,
    ``y`` (1,) int64 and, with ``normals``, ``normal`` (num_points, 3) float32, as
    :class:`~geodl.data.ModelNet`.

    Examples
    --------
    >>> from geodl.data import SyntheticShapes
    >>> ds = SyntheticShapes("train", num_points=64, per_class=2, normals=True, seed=0)
    >>> len(ds), len(ds.classes), ds[0].pos.shape, ds[0].normal.shape, ds[0].y
    (24, 12, torch.Size([64, 3]), torch.Size([64, 3]), tensor([0]))
    >>> ds.classes[int(ds[5].y)]
    'cone'
    >>> bool((SyntheticShapes("train", num_points=64, per_class=2).pos == ds.pos).all())
    True
    """

    classes = SHAPE_CLASSES

    _point_fields = ("normal",)

    def __init__(self, split: str = "train", *, num_points: int = 1024, per_class: int = 100,
                 normals: bool = False, seed: int = 0, deform: float = 0.25, noise: float = 0.01):
        self.split = check_choice("split", split, _SPLITS)
        self.num_points = check_int("num_points", num_points, min=3)
        self.per_class = check_int("per_class", per_class, min=1)
        if not isinstance(normals, bool):
            raise TypeError(f"normals: expected a bool, got {type(normals).__name__}")
        self.normals = normals
        self.seed = check_int("seed", seed, min=0)
        self.deform = float(check_number("deform", deform, lo=0.0, hi=1.0))
        self.noise = float(check_number("noise", noise, nonnegative=True))
        total = self.per_class * len(SHAPE_CLASSES)
        check_alloc("num_points", f"{self.num_points} (x {total} clouds, per_class={self.per_class})",
                    total * self.num_points, 3 * (1 + normals), torch.float64, "cpu")
        pos, nrm = [], []
        code = _SPLITS.index(split)
        for c, name in enumerate(SHAPE_CLASSES):
            for i in range(self.per_class):
                rng = np.random.default_rng([self.seed, code, c, i])
                p, n = _sample(name, rng, self.num_points, self.deform, self.noise, normals)
                pos.append(p)
                nrm.append(n)
        self.pos = torch.from_numpy(np.stack(pos)).float()
        self.y = torch.arange(len(SHAPE_CLASSES)).repeat_interleave(self.per_class)
        self.normal = torch.from_numpy(np.stack(nrm)).float() if normals else None

    def __repr__(self) -> str:
        return (f"SyntheticShapes({self.split!r}, num_points={self.num_points}, per_class={self.per_class}, "
                f"classes={len(self.classes)}, seed={self.seed})")
