"""Category-level pose data: partial, visible-surface point clouds of trimesh-generated objects
under random rotation, the embedded default of VI-Net (``geodl bench vinet``).

Categories (:data:`POSE_CATEGORIES`, name -> symmetry of the canonical shape):

========  ==================================================================  ========
name      shape (canonical pose: z up, bounding box centred at the origin)   symmetry
========  ==================================================================  ========
bottle    revolved profile: body, shoulder, neck (closed)                    "z"
bowl      revolved thick shell, open at the top                              "z"
camera    box body, lens cylinder along -y, shutter button at +x on top      "none"
can       closed cylinder, shoulder to a narrower lid (top and bottom differ)  "z"
laptop    base box and a thinner lid hinged at the back edge (+y), tilted    "none"
mug       revolved open cup and a torus handle at +x                         "none"
========  ==================================================================  ========

"z" is the continuous symmetry about the canonical z axis; "none" none (the handle, lens, button
and lid break every rotation); a finite group name of :func:`geodl.groups.finite_group` is also
understood by :func:`symmetric_rotation_error`.

One sample (its own numpy generator, seeded by ``(seed, split, category, index)``: the splits
"train", "val" and "test" come from different seeds, and a smaller ``per_category`` gives a prefix
of a larger one):

1. random proportions of the category's parts (radii, heights, lid angle, handle size), a
   per-part colour ``U(0, 1)^3``;
2. the mesh is centred (bounding-box centre at the origin; this is "the object's centre") and
   scaled so that its farthest vertex is at ``s ~ U(scale)`` (the full object's radius);
3. a Haar-random rotation ``R`` (:func:`geodl.groups.random_rotation` with a torch generator
   seeded from the sample's generator): world = ``R @ canonical``;
4. ``max(8 * num_points, 16384)`` points are sampled on the rotated surface, area weighted;
5. visibility: the camera is orthographic, on the -z side looking along +z (image plane = the
   world xy-plane, depth = world z). A point is kept when its face faces the camera (world
   normal z < 0) and its depth is within ``2 * pixel`` of the nearest point of its pixel, on a
   ``32 x 32`` grid covering ``[-s, s]^2`` (``pixel = 2 s / 32``; the tolerance passes surfaces
   sloped up to about 60 degrees within a pixel);
6. ``num_points`` of the visible points are drawn without replacement, or with replacement when
   fewer are visible (rare: thin parts seen edge-on);
7. Gaussian noise of standard deviation ``noise`` (in the units of the object, whose radius is
   ``s``) is added, then the cloud is divided by ``s``: it is centred at the object's centre (not
   at the centroid of the partial cloud, which moves with the viewpoint) and the full object has
   radius 1 (so a random scale shows as a relative noise ``noise / s``);
8. with ``colored``, each point has the colour of its part plus Gaussian noise (std 0.05),
   clipped to ``[0, 1]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from geodl._checks import check_alloc, check_choice, check_int, check_number, check_tensor
from geodl.data._shapes import _SPLITS, _StackedClouds, _shift

__all__ = ["CategoryPoses", "POSE_CATEGORIES", "symmetric_rotation_error"]

POSE_CATEGORIES = {"bottle": "z", "bowl": "z", "camera": "none", "can": "z", "laptop": "none", "mug": "none"}
"""Category name -> symmetry of its canonical shape ("none", "z" or a finite group name); sorted,
the label is the index."""

_GRID = 32  # z-buffer pixels per side over [-s, s]
_TOL = 2.0  # depth tolerance, in pixels
_COLOR_NOISE = 0.05
_DENSE = 16384  # at least this many dense surface samples per object (16 per z-buffer pixel)


def _revolve(profile, sections=48):
    import trimesh.creation as c

    return c.revolve(np.asarray(profile, dtype=np.float64), sections=sections)


def _rot_x(angle):
    t = np.eye(4)
    ca, sa = math.cos(angle), math.sin(angle)
    t[1:3, 1:3] = [[ca, -sa], [sa, ca]]
    return t


def _parts(name: str, rng: np.random.Generator) -> list:
    """The parts (trimesh meshes, canonical frame, z up) of one random instance of ``name``."""
    import trimesh.creation as c

    u = rng.uniform
    if name == "can":
        # a closed cylinder whose top narrows to a seamed lid: a plain cylinder would also be symmetric
        # under the half turn about x (top <-> bottom), a symmetry the "z" label does not cover
        r, h = u(0.3, 0.5), u(0.8, 1.6)
        return [_revolve([[0, 0], [r, 0], [r, h], [0.6 * r, 1.2 * h], [0, 1.2 * h]])]
    if name == "bottle":
        r, h, rn = u(0.25, 0.4), u(0.8, 1.4), u(0.08, 0.14)
        sh, hn = u(0.15, 0.3), u(0.2, 0.45)
        return [_revolve([[0, 0], [r, 0], [r, h], [rn, h + sh], [rn, h + sh + hn], [0, h + sh + hn]])]
    if name == "bowl":
        r, d, t = u(0.5, 0.8), u(0.25, 0.5), u(0.03, 0.06)
        rb = u(0.3, 0.6) * r
        return [_revolve([[0, 0], [rb, 0], [r, d], [r - t, d], [rb - t, t], [0, t]])]
    if name == "mug":
        r, h, t = u(0.3, 0.45), u(0.6, 1.0), u(0.03, 0.06)
        body = _revolve([[0, 0], [r, 0], [r, h], [r - t, h], [r - t, t], [0, t]])
        R, rm = u(0.15, 0.22) * h, u(0.035, 0.06)
        handle = c.torus(major_radius=R, minor_radius=rm, major_sections=24, minor_sections=12)
        handle.apply_transform(_rot_x(math.pi / 2))  # the ring in the xz-plane
        handle.apply_translation((r + 0.3 * R, 0, h / 2))
        return [body, handle]
    if name == "laptop":
        w, d, tb = u(1.0, 1.4), u(0.7, 1.0), u(0.05, 0.08)
        tl = u(0.3, 0.6) * tb
        dl = d * u(0.85, 1.0)
        base = c.box(extents=(w, d, tb), transform=_shift(0, 0, tb / 2))
        tilt = math.radians(u(95, 130))  # angle between base and lid
        lid = c.box(extents=(w, dl, tl), transform=_shift(0, -dl / 2, tl / 2))
        # hinge at the back edge (y = d/2) on top of the base: turn the lid up about x, leaning back
        lid.apply_transform(_rot_x(-tilt))
        lid.apply_translation((0, d / 2, tb))
        return [base, lid]
    if name == "camera":
        w, h, d = u(0.9, 1.3), u(0.55, 0.8), u(0.3, 0.5)
        body = c.box(extents=(w, d, h), transform=_shift(0, 0, h / 2))
        rl, ll = u(0.18, 0.3) * h / 0.6, u(0.2, 0.5)
        lens = c.cylinder(radius=rl, height=ll, sections=32)
        lens.apply_transform(_rot_x(math.pi / 2))  # along y
        lens.apply_translation((u(-0.1, 0.1) * w, -d / 2 - ll / 2, h / 2))
        button = c.cylinder(radius=u(0.05, 0.08), height=u(0.05, 0.1), sections=16)
        button.apply_translation((0.3 * w, 0, h + button.extents[2] / 2))
        return [body, lens, button]
    raise AssertionError(name)  # pragma: no cover - names are checked by the caller


def _visible(pts: np.ndarray, normal_z: np.ndarray, s: float) -> np.ndarray:
    """Indices of the points (M, 3) seen by the camera on the -z side looking along +z.

    Orthographic z-buffer on a ``_GRID x _GRID`` grid over ``[-s, s]^2`` (points outside are put
    in the border pixels): a point is visible when its surface normal faces the camera
    (``normal_z < 0``) and its depth ``z`` is within ``_TOL`` pixels of the nearest point of its
    pixel. Falls back to the nearest point of each pixel if no point passes the normal test.
    """
    pix = np.clip(((pts[:, :2] + s) * (_GRID / (2 * s))).astype(np.int64), 0, _GRID - 1)
    cell = pix[:, 0] * _GRID + pix[:, 1]
    near = np.full(_GRID * _GRID, np.inf)
    np.minimum.at(near, cell, pts[:, 2])
    visible = np.flatnonzero((normal_z < 0) & (pts[:, 2] <= near[cell] + _TOL * 2 * s / _GRID))
    if len(visible) == 0:
        visible = np.flatnonzero(pts[:, 2] <= near[cell])
    return visible


def _instance(name: str, rng: np.random.Generator, scale):
    """One random object: its rotated mesh (trimesh, radius ``s``), face -> part (F,), part colours
    (P, 3), the rotation R (3, 3) float64 and ``s`` (steps 1-3 of the module docstring)."""
    import trimesh

    from geodl.groups import random_rotation

    parts = _parts(name, rng)
    colors = rng.uniform(0.0, 1.0, size=(len(parts), 3))
    mesh = trimesh.util.concatenate(parts)
    part = np.concatenate([np.full(len(p.faces), k) for k, p in enumerate(parts)])
    v = np.asarray(mesh.vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    v = v - (lo + hi) / 2
    s = rng.uniform(*scale)
    v *= s / np.linalg.norm(v, axis=1).max()
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    R = random_rotation(generator=g, dtype=torch.float64).numpy()
    return trimesh.Trimesh(v @ R.T, np.asarray(mesh.faces), process=False), part, colors, R, s


def _sample(name: str, rng: np.random.Generator, num_points: int, scale, noise: float, colored: bool):
    """One sample: points (num_points, 3) float64 (unit radius), R (3, 3), colours or None."""
    import trimesh

    world, part, colors, R, s = _instance(name, rng, scale)
    m = max(8 * num_points, _DENSE)
    pts, face = trimesh.sample.sample_surface(world, m, seed=rng)
    visible = _visible(pts, np.asarray(world.face_normals)[face, 2], s)
    pick = rng.choice(visible, num_points, replace=len(visible) < num_points)
    out = pts[pick]
    if noise > 0:
        out = out + rng.normal(0.0, noise, size=out.shape)
    col = None
    if colored:
        col = np.clip(colors[part[face[pick]]] + rng.normal(0.0, _COLOR_NOISE, size=(num_points, 3)), 0.0, 1.0)
    return out / s, R, col


def _check_scale(scale):
    if not isinstance(scale, (tuple, list)) or len(scale) != 2:
        raise TypeError(f"scale: expected a pair (lo, hi), got {scale!r}")
    lo = check_number("scale", scale[0], positive=True)
    hi = check_number("scale", scale[1], positive=True)
    if lo > hi:
        raise ValueError(f"scale: expected lo <= hi, got {scale!r}")
    return float(lo), float(hi)


class CategoryPoses(_StackedClouds):
    """Partial point clouds of :data:`POSE_CATEGORIES` objects with their ground-truth rotations.

    Each cloud is the surface seen by a camera on the -z side looking along +z (z-buffer and
    normal test), centred at the full object's centre and scaled so that the full object has
    radius 1; see the module docstring for the generator, the camera and the constants.

    Parameters
    ----------
    split : str
        "train", "val" or "test"; each split is drawn from its own seeds.
    num_points : int
        Points per cloud (>= 3).
    per_category : int
        Clouds per category (>= 1); ordered by category then index.
    categories : sequence of str, optional
        A subset of :data:`POSE_CATEGORIES` (default all, sorted); the labels index this tuple.
    colored : bool
        Also return per-point colours (``color``, in ``[0, 1]``).
    seed : int
        Seed (>= 0).
    noise : float
        Standard deviation of the Gaussian noise on the points, in object units (an object has
        radius ``U(scale)`` before normalisation; >= 0).
    scale : (float, float)
        Range of the object radius before normalisation (0 < lo <= hi).

    Attributes
    ----------
    categories : tuple of str
    symmetries : tuple of str
        The symmetry of each category (``POSE_CATEGORIES[c]``).
    pos : torch.Tensor
        ``(len, num_points, 3)`` float32.
    rotation : torch.Tensor
        ``(len, 3, 3)`` float32, world = ``R @ canonical``.
    y : torch.Tensor
        ``(len,)`` int64.
    color : torch.Tensor or None
        ``(len, num_points, 3)`` float32 when ``colored``.

    Items
    -----
    ``dataset[i]`` is a ``torch_geometric.data.Data`` with ``pos`` (num_points, 3) float32,
    ``rotation`` (1, 3, 3) float32, ``y`` (1,) int64 and, with ``colored``, ``color``
    (num_points, 3) float32.

    Examples
    --------
    >>> from geodl.data import CategoryPoses
    >>> ds = CategoryPoses("train", num_points=64, per_category=2, colored=True, seed=0)
    >>> len(ds), ds.categories[:3], ds.symmetries[:3]
    (12, ('bottle', 'bowl', 'camera'), ('z', 'z', 'none'))
    >>> d = ds[0]
    >>> d.pos.shape, d.rotation.shape, d.color.shape, d.y
    (torch.Size([64, 3]), torch.Size([1, 3, 3]), torch.Size([64, 3]), tensor([0]))
    >>> bool(d.pos.norm(dim=1).max() < 1.1)
    True
    """

    _point_fields = ("color",)
    _cloud_fields = ("rotation",)

    def __init__(self, split: str = "train", *, num_points: int = 1024, per_category: int = 100,
                 categories=None, colored: bool = False, seed: int = 0, noise: float = 0.01,
                 scale=(0.5, 1.5)):
        self.split = check_choice("split", split, _SPLITS)
        self.num_points = check_int("num_points", num_points, min=3)
        self.per_category = check_int("per_category", per_category, min=1)
        if categories is None:
            categories = tuple(POSE_CATEGORIES)
        elif isinstance(categories, str) or not isinstance(categories, (tuple, list)):
            raise TypeError(f"categories: expected a sequence of category names, got {categories!r}")
        categories = tuple(categories)
        if not categories:
            raise ValueError("categories: expected at least one category")
        for c in categories:
            if not isinstance(c, str) or c not in POSE_CATEGORIES:
                raise ValueError(f"categories: {c!r} is not one of {sorted(POSE_CATEGORIES)}")
        if len(set(categories)) != len(categories):
            raise ValueError(f"categories: repeated names in {categories!r}")
        if not isinstance(colored, bool):
            raise TypeError(f"colored: expected a bool, got {type(colored).__name__}")
        self.categories = categories
        self.symmetries = tuple(POSE_CATEGORIES[c] for c in categories)
        self.colored = colored
        self.seed = check_int("seed", seed, min=0)
        self.noise = float(check_number("noise", noise, nonnegative=True))
        self.scale = _check_scale(scale)
        total = self.per_category * len(categories)
        dense = max(8 * self.num_points, _DENSE)
        check_alloc("num_points", f"{self.num_points} (x {total} clouds, per_category={self.per_category})",
                    total * self.num_points, 3 * (1 + colored), torch.float64, "cpu")
        check_alloc("num_points", f"{self.num_points} (dense surface sample of {dense} points per cloud)",
                    dense, 8, torch.float64, "cpu")
        pos, rot, col = [], [], []
        code = _SPLITS.index(split)
        for c in categories:
            k = tuple(POSE_CATEGORIES).index(c)  # the seed does not depend on the chosen subset
            for i in range(self.per_category):
                rng = np.random.default_rng([self.seed, code, k, i])
                p, R, q = _sample(c, rng, self.num_points, self.scale, self.noise, colored)
                pos.append(p)
                rot.append(R)
                col.append(q)
        self.pos = torch.from_numpy(np.stack(pos)).float()
        self.rotation = torch.from_numpy(np.stack(rot)).float()
        self.y = torch.arange(len(categories)).repeat_interleave(self.per_category)
        self.color = torch.from_numpy(np.stack(col)).float() if colored else None

    def __repr__(self) -> str:
        return (f"CategoryPoses({self.split!r}, num_points={self.num_points}, per_category={self.per_category}, "
                f"categories={len(self.categories)}, colored={self.colored}, seed={self.seed})")


def _vector_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # atan2(|a x b|, a . b): accurate near 0 and near pi (acos of the dot product is not)
    a, b = torch.broadcast_tensors(a, b)
    return torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(a, b), dim=-1), (a * b).sum(-1))


def symmetric_rotation_error(R_pred: torch.Tensor, R_gt: torch.Tensor, symmetry: str = "none") -> torch.Tensor:
    """Rotation error in degrees, modulo the symmetry of the object.

    With world = ``R @ canonical``, a symmetry ``g`` of the canonical shape (``g X = X``) makes
    ``R`` and ``R g`` give the same cloud, so the error is ``min_g angle(R_predᵀ R_gt g)``:

    * ``"none"``: the geodesic angle (:func:`geodl.groups.geodesic_distance`);
    * ``"z"`` (continuous symmetry about the canonical z axis): the angle between ``R_pred e_z``
      and ``R_gt e_z`` (the minimum over all ``g = Rz(t)``);
    * a finite group name of :func:`geodl.groups.finite_group`: the minimum over its elements.

    Angles are computed by ``atan2`` (no NaN, accurate near 0 and 180 degrees).

    Parameters
    ----------
    R_pred, R_gt : Tensor ``(..., 3, 3)``
        Rotation matrices (floating point, finite); batch dims broadcast.
    symmetry : str
        "none", "z", or "tetrahedral" / "octahedral" / "icosahedral".

    Returns
    -------
    Tensor ``(...)`` of errors in degrees, in ``[0, 180]``.

    Examples
    --------
    >>> import torch
    >>> from geodl.groups import euler_to_matrix
    >>> Rz = euler_to_matrix(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # 57.3 deg about z
    >>> I = torch.eye(3, dtype=torch.float64)
    >>> round(float(symmetric_rotation_error(Rz, I, "none")), 2), float(symmetric_rotation_error(Rz, I, "z"))
    (57.3, 0.0)
    """
    from geodl.groups import geodesic_distance
    from geodl.groups._finite import FINITE_GROUPS, finite_group

    R_pred = check_tensor("R_pred", R_pred, shape=(..., 3, 3), floating=True, finite=True)
    R_gt = check_tensor("R_gt", R_gt, shape=(..., 3, 3), floating=True, finite=True)
    if not isinstance(symmetry, str):
        raise TypeError(f"symmetry: expected a string, got {type(symmetry).__name__}")
    check_choice("symmetry", symmetry, ("none", "z", *FINITE_GROUPS))
    try:
        torch.broadcast_shapes(R_pred.shape[:-2], R_gt.shape[:-2])
    except RuntimeError:
        raise ValueError(f"R_pred, R_gt: batch shapes {tuple(R_pred.shape[:-2])} and {tuple(R_gt.shape[:-2])} "
                         "do not broadcast") from None
    dtype = torch.promote_types(R_pred.dtype, R_gt.dtype)
    R_pred, R_gt = R_pred.to(dtype), R_gt.to(dtype)
    if symmetry == "none":
        rad = geodesic_distance(R_pred, R_gt)
    elif symmetry == "z":
        rad = _vector_angle(R_pred[..., :, 2], R_gt[..., :, 2])
    else:
        G = finite_group(symmetry, dtype=dtype, device=R_gt.device)
        rad = geodesic_distance(R_pred.unsqueeze(-3), R_gt.unsqueeze(-3) @ G).amin(-1)
    return torch.rad2deg(rad)
