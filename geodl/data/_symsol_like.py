"""SYMSOL-like procedural data: renders of symmetric solids under uniform random rotations with
each sample's full set of equivalent rotations, the embedded default of the pose benchmark.

The shapes follow SYMSOL I and II (Murphy et al., "Implicit-PDF", ICML'21). What was confirmed,
and where:

* the eight names and their order ``tet, cube, icosa, cone, cyl, tetX, cylO, sphereX`` (so that
  the label here is SYMSOL's ``label_shape`` index): ``SHAPE_NAMES`` in
  google-research ``implicit_pdf/data.py``;
* the five featureless shapes of SYMSOL I carry 12 (tetrahedron), 24 (cube), 60 (icosahedron)
  rotations, and the continuous symmetries of the cone and the cylinder are discretised at
  1 degree steps: 360 rotations about the cone's axis; for the cylinder those and the same
  composed with a half turn about an axis perpendicular to its axis, 720 (the TFDS catalogue page
  of ``symmetric_solids`` and ``compute_symsol_symmetries`` in ``implicit_pdf/data.py``; that
  function takes ``linspace(0, 2 pi, 360)`` with the end point, so its 360 angles repeat the
  identity and are 360/359 degrees apart: the sets here take exact 1 degree steps, which close
  under composition);
* the three marked shapes of SYMSOL II are "a tetrahedron with one red-colored face, a cylinder
  with an off-center dot, and a sphere with an X capped by a dot", and SYMSOL provides no set of
  equivalent rotations for them (the TFDS catalogue page).

The symmetry sets of the marked shapes are derived here, not taken from SYMSOL: ``tetX`` keeps
the 3 rotations about the normal of its red face; ``cylO`` (the dot on the side, above the
mid-height circle: the catalogue does not say where the dot is, any off-centre place leaves the
same group) and ``sphereX`` (the dot caps one end of the X) have only the identity.
:data:`SYMSOL_SHAPES` maps each name to the order of its set. The canonical frames are this
module's (below), not SYMSOL's: rendered SYMSOL images come with their own equivalent rotations.

Canonical shapes (the farthest point at distance 1 from the origin, the centre of symmetry):

========  ===================================================================  =====
name      shape and colours (albedo)                                           order
========  ===================================================================  =====
tet       vertices (1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1) / sqrt 3   12
cube      vertices (+-1, +-1, +-1) / sqrt 3                                    24
icosa     vertices the cyclic permutations of (0, +-1, +-phi), scaled          60
cone      axis z, apex up; a coloured band round the side, a coloured base     360
cyl       axis z; a coloured band round the middle, both caps coloured         720
tetX      tet, its face opposite the vertex (1, 1, 1) red                      3
cylO      cyl and a red dot on the side at azimuth 0, above the middle band    1
sphereX   a sphere (icosphere) with a red X at the +z pole and a red dot       1
          beyond one end of its vertical bisector
========  ===================================================================  =====

The frames put the groups in :func:`geodl.groups.finite_group`'s orientation (coordinate axes
2-fold or 4-fold, ``(+-1, +-1, +-1)`` 3-fold). The polyhedra are uniformly grey: their faces take
their colours from three coloured lights; the marks and bands are colours of the surface, so
every render keeps the symmetry of its shape.

Camera and images: the camera frame is OpenCV's (x right, y down, z forward), the projection
orthographic along z, the view ``[-1.05, 1.05]^2``; the object is rotated by ``R`` (a canonical
point ``X`` is at ``R X``). A symmetry ``g`` of the shape (``g X_shape = X_shape``) gives
``R g X_shape = R X_shape``: the renders of ``R`` and of ``R g`` are the same image, and the
ground-truth set of a sample is ``R · G`` (right multiplication, ``G = symmetry_set(shape)``).
Shading is Lambertian: colour = albedo x (ambient + sum over the fixed directional lights of
light colour x max(0, n . l)), n the smooth normal of the surface (interpolated from the exact
normals at the mesh corners), on a black background; rendered at twice the size and averaged
over 2 x 2 pixels (anti-aliasing).

The rasteriser is written by hand in torch (z-buffer, barycentric fill, vectorised over the
(triangle, pixel) pairs of the triangles' bounding boxes): pytorch3d has no installable
distribution here, and matplotlib's 3-D renderer (painter's algorithm) has no z-buffer and no
control of the shading.

One sample (its own numpy generator, seeded by ``(seed, split, shape, index)``: the splits
"train", "val" and "test" come from different seeds, the shape index is the position in
:data:`SYMSOL_SHAPES` whatever subset is asked for, and a smaller ``per_shape`` gives a prefix of
a larger one): a Haar-random rotation ``R`` (:func:`geodl.groups.random_rotation` with a torch
generator seeded from the sample's generator), then the render of the shape under ``R``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.utils.data import Dataset

from geodl._checks import check_alloc, check_choice, check_int, check_item_index
from geodl.data._shapes import _SPLITS

__all__ = ["SymsolLike", "SYMSOL_SHAPES", "symmetry_set"]

SYMSOL_SHAPES = {"tet": 12, "cube": 24, "icosa": 60, "cone": 360, "cyl": 720, "tetX": 3, "cylO": 1, "sphereX": 1}
"""Shape name -> order of its symmetry set (:func:`symmetry_set`), in SYMSOL's order (the label of
a shape is its position)."""

SIZES = (64, 96)  # allowed image sizes, inclusive
_EXTENT = 1.05  # the view is [-_EXTENT, _EXTENT]^2 in the camera's x, y
_SS = 2  # supersampling factor per axis
_CHUNK = 16  # images rendered at once
_SECTIONS = 96  # sides of the cone and cylinder meshes
_GREY = (0.8, 0.8, 0.8)
_RED = (0.95, 0.12, 0.08)
_GOLD = (0.95, 0.75, 0.2)
_TEAL = (0.2, 0.75, 0.85)
_AMBIENT = 0.12
# directions towards the lights (camera frame: x right, y down, the camera on the -z side) and colours
_LIGHTS = (((-0.4, -0.6, -1.0), (0.85, 0.7, 0.55)),  # warm key light, upper left
           ((0.9, 0.2, -0.5), (0.2, 0.35, 0.85)),   # blue, from the right
           ((-0.3, 0.9, -0.4), (0.35, 0.75, 0.25)))  # green, from below

_PHI = (1 + math.sqrt(5)) / 2
_CYL_R, _CYL_H = 0.5, 0.7  # radius and half-height before scaling to unit radius
_CONE_R, _CONE_H = 0.6, 0.75
_DOT = (0.55, 0.2)  # cylO: the dot's height (fraction of the half-height) and radius (unit-radius units)
_X_ARM, _X_WIDTH, _X_DOT, _X_DOT_R = 0.35, 0.06, 0.5, 0.09  # sphereX: half arm, half width, dot offset, radius


# --------------------------------------------------------------------------- symmetry sets
def _rz(deg: torch.Tensor) -> torch.Tensor:
    t = torch.deg2rad(deg.to(torch.float64))
    c, s = torch.cos(t), torch.sin(t)
    z, o = torch.zeros_like(t), torch.ones_like(t)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*t.shape, 3, 3)


@functools.lru_cache(maxsize=None)
def _symmetry64(shape: str) -> torch.Tensor:
    from geodl.groups import axis_angle_to_matrix, finite_group

    if shape in ("tet", "cube", "icosa"):
        return finite_group({"tet": "tetrahedral", "cube": "octahedral", "icosa": "icosahedral"}[shape])
    if shape in ("cone", "cyl"):
        rz = _rz(torch.arange(360))
        if shape == "cone":
            return rz
        flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))  # half turn about x
        return torch.cat([rz, rz @ flip])
    if shape == "tetX":
        axis = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) / math.sqrt(3)
        return torch.stack([axis_angle_to_matrix(axis * (2 * math.pi * k / 3)) for k in range(3)])
    return torch.eye(3, dtype=torch.float64)[None]


def _check_shape(shape) -> str:
    if not isinstance(shape, str):
        raise TypeError(f"shape: expected a shape name (str), got {type(shape).__name__}")
    if shape not in SYMSOL_SHAPES:
        raise ValueError(f"shape: {shape!r} is not one of {list(SYMSOL_SHAPES)}")
    return shape


def symmetry_set(shape: str, dtype=torch.float64) -> torch.Tensor:
    """The full set of rotations that map a shape of :data:`SYMSOL_SHAPES` onto itself (colours and
    marks included), in its canonical frame, identity first.

    tet 12, cube 24, icosa 60 (:func:`geodl.groups.finite_group`); cone 360 (rotations about z by
    0, 1, ..., 359 degrees); cyl 720 (those, then each composed with the half turn about x:
    ``Rz(k) Rx(pi)``); tetX 3 (about its red face's normal ``-(1, 1, 1) / sqrt 3``); cylO and
    sphereX 1 (the identity). Each set is a group: it closes under composition.

    Parameters
    ----------
    shape : str
        A name of :data:`SYMSOL_SHAPES` (``ValueError`` otherwise).
    dtype : torch.dtype
        A floating-point dtype (default float64).

    Returns
    -------
    Tensor ``(S, 3, 3)`` on the CPU, ``S = SYMSOL_SHAPES[shape]``.

    Examples
    --------
    >>> import torch
    >>> from geodl.data import SYMSOL_SHAPES, symmetry_set
    >>> [len(symmetry_set(s)) for s in SYMSOL_SHAPES]
    [12, 24, 60, 360, 720, 3, 1, 1]
    >>> G = symmetry_set("cyl")
    >>> bool(torch.allclose(G[0], torch.eye(3, dtype=torch.float64))), G.dtype
    (True, torch.float64)
    """
    shape = _check_shape(shape)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")
    return _symmetry64(shape).to(dtype).clone()


# --------------------------------------------------------------------------- meshes
def _hull(vertices):
    """Triangles (T, 3, 3) of the convex hull of ``vertices`` (scaled to unit radius), outward
    normals (T, 3): flat faces, every corner gets its face's normal."""
    from scipy.spatial import ConvexHull

    v = np.asarray(vertices, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1).max()
    hull = ConvexHull(v)
    tri = v[hull.simplices]
    normal = hull.equations[:, :3]
    return tri, np.repeat(normal[:, None], 3, axis=1)


def _band(ra, za, rb, zb, rings, normal):
    """Triangles (T, 3, 3) and corner normals of the surface of revolution (axis z) swept by the
    segment from ``(ra, za)`` to ``(rb, zb)`` (radius, height), cut into ``rings`` x ``_SECTIONS``
    quads (two triangles each; those of zero area, at a radius 0, dropped). ``normal(t)`` gives the
    outward normals (n, 3) at the azimuths ``t``. Short, near-isotropic triangles keep the
    bounding boxes of the rasteriser small."""
    t = 2 * np.pi * np.arange(_SECTIONS + 1) / _SECTIONS
    f = np.linspace(0.0, 1.0, rings + 1)
    r, z = ra + f * (rb - ra), za + f * (zb - za)
    zz = np.broadcast_to(z[:, None], (rings + 1, len(t)))
    pts = np.stack([r[:, None] * np.cos(t), r[:, None] * np.sin(t), zz], -1)
    nrm = np.broadcast_to(normal(t), pts.shape)
    a, b = np.meshgrid(np.arange(rings), np.arange(_SECTIONS), indexing="ij")
    a, b = a.ravel(), b.ravel()
    quads = [((a, b), (a, b + 1), (a + 1, b + 1)), ((a, b), (a + 1, b + 1), (a + 1, b))]
    tris = np.concatenate([np.stack([pts[i, j] for i, j in q], 1) for q in quads])
    nrms = np.concatenate([np.stack([nrm[i, j] for i, j in q], 1) for q in quads])
    e = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    keep = np.linalg.norm(e, axis=1) > 1e-12
    return tris[keep], nrms[keep]


def _revolved(name):
    """Triangles and corner normals of the cone or cylinder (axis z), before scaling."""
    up = lambda t: np.tile([0.0, 0.0, 1.0], (len(t), 1))  # noqa: E731
    down = lambda t: np.tile([0.0, 0.0, -1.0], (len(t), 1))  # noqa: E731
    if name == "cyl":
        r, h = _CYL_R, _CYL_H
        side = lambda t: np.stack([np.cos(t), np.sin(t), 0 * t], -1)  # noqa: E731
        parts = [_band(r, -h, r, h, 16, side), _band(0, h, r, h, 6, up), _band(r, -h, 0, -h, 6, down)]
    else:
        r, h = _CONE_R, _CONE_H
        slope = math.hypot(2 * h, r)
        side = lambda t: np.stack([2 * h * np.cos(t), 2 * h * np.sin(t), r + 0 * t], -1) / slope  # noqa: E731
        parts = [_band(r, -h, 0, h, 16, side), _band(r, -h, 0, -h, 6, down)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@functools.lru_cache(maxsize=None)
def _mesh(shape: str):
    """Canonical mesh of ``shape``: corner positions (T, 3, 3), corner normals (T, 3, 3), face
    normals (T, 3) float64 tensors, and the region of each triangle (T,) int64 (0: the main
    surface; 1: the red face of tetX, the caps and base of the cylinder and cone)."""
    base = {"tetX": "tet", "cylO": "cyl"}.get(shape, shape)
    if base == "tet":
        tri, nrm = _hull([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    elif base == "cube":
        tri, nrm = _hull([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)])
    elif base == "icosa":
        base_v = [[0, a, b * _PHI] for a in (-1, 1) for b in (-1, 1)]
        tri, nrm = _hull([np.roll(v, k) for v in base_v for k in range(3)])
    elif base == "sphereX":
        import trimesh

        sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
        v = np.asarray(sphere.vertices, dtype=np.float64)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        tri = v[np.asarray(sphere.faces)]
        nrm = tri.copy()
    else:
        tri, nrm = _revolved(base)
        tri = tri / np.linalg.norm(tri.reshape(-1, 3), axis=1).max()
    face = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    face /= np.linalg.norm(face, axis=1, keepdims=True)
    flip = (face * nrm.mean(1)).sum(1) < 0  # orient each face outwards (as its corner normals)
    face[flip] *= -1
    if base in ("cone", "cyl"):
        region = np.abs(face[:, 2]) > 1 - 1e-9  # the flat caps / base
    elif shape == "tetX":
        region = face @ (-np.ones(3) / math.sqrt(3)) > 1 - 1e-9
    else:
        region = np.zeros(len(tri), dtype=bool)
    out = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (tri, nrm, face))
    return out + (torch.from_numpy(region.astype(np.int64)),)


def _scales(shape: str):
    """(radius, half-height) of the cone / cylinder after scaling to unit radius."""
    if shape == "cone":
        s = 1 / math.hypot(_CONE_R, _CONE_H)
        return _CONE_R * s, _CONE_H * s
    s = 1 / math.hypot(_CYL_R, _CYL_H)
    return _CYL_R * s, _CYL_H * s


def _albedo(shape: str, c: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Surface colour (n, 3) at the canonical points ``c`` (n, 3) of triangles of ``region`` (n,)."""
    col = lambda rgb: torch.tensor(rgb, dtype=c.dtype)  # noqa: E731
    out = col(_GREY).expand(len(c), 3).clone()
    cap = region == 1
    if shape == "tetX":
        out[cap] = col(_RED)
    elif shape in ("cone", "cyl", "cylO"):
        r, h = _scales(shape)
        frac = c[:, 2] / h  # -1 at the base, +1 at the top
        band = (frac > -0.35) & (frac < 0.05) if shape == "cone" else frac.abs() < 0.25
        out[band & ~cap] = col(_GOLD)
        out[cap] = col(_TEAL)
        if shape == "cylO":
            arc = r * torch.atan2(c[:, 1], c[:, 0])
            dot = (arc ** 2 + (c[:, 2] - _DOT[0] * h) ** 2 < _DOT[1] ** 2) & ~cap
            out[dot] = col(_RED)
    elif shape == "sphereX":
        u, v = c[:, 0], c[:, 1]
        a, b = (u - v).abs() / math.sqrt(2), (u + v).abs() / math.sqrt(2)  # distances to the diagonals
        x = (((a < _X_WIDTH) & (b < _X_ARM)) | ((b < _X_WIDTH) & (a < _X_ARM))) & (c[:, 2] > 0)
        dot = (u ** 2 + (v - _X_DOT) ** 2 < _X_DOT_R ** 2) & (c[:, 2] > 0)
        out[x | dot] = col(_RED)
    return out


# --------------------------------------------------------------------------- rasteriser
def _lights(dtype):
    d = torch.tensor([l[0] for l in _LIGHTS], dtype=dtype)
    return d / d.norm(dim=1, keepdim=True), torch.tensor([l[1] for l in _LIGHTS], dtype=dtype)


def _render_chunk(shape: str, R: torch.Tensor, size: int) -> torch.Tensor:
    tri, nrm, face, region = _mesh(shape)
    B, res = len(R), size * _SS
    # visible triangles (back faces culled: the camera looks along +z)
    fz = torch.einsum("bj,tj->bt", R[:, 2], face)
    b_idx, t_idx = torch.nonzero(fz < -1e-9, as_tuple=True)
    P = torch.einsum("vij,vkj->vki", R[b_idx], tri[t_idx])  # (V, 3 corners, 3) camera frame
    x = (P[..., 0] + _EXTENT) * (res / (2 * _EXTENT)) - 0.5  # pixel centres at integers
    y = (P[..., 1] + _EXTENT) * (res / (2 * _EXTENT)) - 0.5
    j0 = torch.ceil(x.amin(1)).clamp(min=0).long()
    j1 = torch.floor(x.amax(1)).clamp(max=res - 1).long()
    i0 = torch.ceil(y.amin(1)).clamp(min=0).long()
    i1 = torch.floor(y.amax(1)).clamp(max=res - 1).long()
    w, h = (j1 - j0 + 1).clamp(min=0), (i1 - i0 + 1).clamp(min=0)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    count = torch.where(area.abs() > 1e-12, w * h, torch.zeros_like(w))
    # every (triangle, pixel of its bounding box) pair
    rep = torch.repeat_interleave(torch.arange(len(count)), count)
    local = torch.arange(len(rep)) - (torch.cumsum(count, 0) - count)[rep]
    pi = i0[rep] + local // w[rep]
    pj = j0[rep] + local % w[rep]
    qx, qy = pj.to(x.dtype), pi.to(x.dtype)
    xr, yr = x[rep], y[rep]
    ar = area[rep]
    l0 = ((xr[:, 1] - qx) * (yr[:, 2] - qy) - (xr[:, 2] - qx) * (yr[:, 1] - qy)) / ar
    l1 = ((xr[:, 2] - qx) * (yr[:, 0] - qy) - (xr[:, 0] - qx) * (yr[:, 2] - qy)) / ar
    lam = torch.stack([l0, l1, 1 - l0 - l1], -1)
    inside = (lam >= -1e-9).all(-1)
    rep, pi, pj, lam = rep[inside], pi[inside], pj[inside], lam[inside]
    # z-buffer: the nearest pair of each pixel (ties: the last triangle)
    key = (b_idx[rep] * res + pi) * res + pj
    z = (lam * P[rep, :, 2]).sum(-1)
    zbuf = torch.full((B * res * res,), math.inf, dtype=z.dtype).scatter_reduce(0, key, z, "amin")
    win = z <= zbuf[key]
    pid = torch.arange(len(key))
    best = torch.full((B * res * res,), -1, dtype=torch.long).scatter_reduce(0, key[win], pid[win], "amax")
    pix = torch.nonzero(best >= 0, as_tuple=True)[0]
    sel = best[pix]
    v, lam = rep[sel], lam[sel]
    # shading of the winners
    n = torch.einsum("pk,pkj->pj", lam, nrm[t_idx[v]])
    n = torch.einsum("pij,pj->pi", R[b_idx[v]], n)
    n = n / n.norm(dim=1, keepdim=True).clamp(min=1e-12)
    c = torch.einsum("pk,pkj->pj", lam, tri[t_idx[v]])
    d, lc = _lights(n.dtype)
    light = _AMBIENT + (n @ d.T).clamp(min=0) @ lc
    rgb = (_albedo(shape, c, region[t_idx[v]]) * light).clamp(0, 1)
    img = torch.zeros(B * res * res, 3, dtype=rgb.dtype)
    img[pix] = rgb
    img = img.reshape(B, size, _SS, size, _SS, 3).mean((2, 4))
    return img.permute(0, 3, 1, 2).to(torch.float32).contiguous()


def _render(shape: str, R: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Renders (B, 3, size, size) float32 in [0, 1] of ``shape`` under the rotations ``R`` (B, 3, 3)."""
    R = R.to(torch.float64).reshape(-1, 3, 3)
    if not len(R):
        return torch.zeros(0, 3, size, size)
    return torch.cat([_render_chunk(shape, R[k:k + _CHUNK], size) for k in range(0, len(R), _CHUNK)])


# --------------------------------------------------------------------------- dataset
class SymsolLike(Dataset):
    """Renders of :data:`SYMSOL_SHAPES` under Haar-random rotations, with each sample's full set of
    equivalent rotations (see the module docstring for the shapes, marks, camera and shading).

    Parameters
    ----------
    split : str
        "train", "val" or "test"; each split is drawn from its own seeds.
    shapes : sequence of str, optional
        A subset of :data:`SYMSOL_SHAPES` (default all, in SYMSOL's order); the labels index this
        tuple.
    per_shape : int
        Images per shape (>= 1); ordered by shape then index.
    size : int
        Image side in pixels, 64 to 96.
    seed : int
        Seed (>= 0).

    Attributes
    ----------
    shapes : tuple of str
    orders : tuple of int
        The order of each shape's symmetry set.
    images : torch.Tensor
        ``(len, 3, size, size)`` float32 in ``[0, 1]``, black background.
    rotation : torch.Tensor
        ``(len, 3, 3)`` float32: a canonical point ``X`` is seen at ``R X`` (camera frame x right,
        y down, z forward, orthographic).
    y : torch.Tensor
        ``(len,)`` int64 shape index into ``shapes``.

    Items
    -----
    ``dataset[i]`` is a tuple ``(image (3, size, size) float32, rotation (3, 3) float32, y ()
    int64)``; :meth:`symmetries` gives the full ground truth.

    Examples
    --------
    >>> from geodl.data import SymsolLike
    >>> ds = SymsolLike("train", shapes=["tet", "cone"], per_shape=2, size=64, seed=0)
    >>> len(ds), ds.shapes, ds.orders, tuple(ds.images.shape)
    (4, ('tet', 'cone'), (12, 360), (4, 3, 64, 64))
    >>> image, R, y = ds[2]
    >>> tuple(image.shape), tuple(R.shape), int(y)
    ((3, 64, 64), (3, 3), 1)
    >>> tuple(ds.symmetries(2).shape)
    (360, 3, 3)
    >>> bool(0 <= ds.images.min() and ds.images.max() <= 1)
    True
    """

    def __init__(self, split: str = "train", *, shapes=None, per_shape: int = 100, size: int = 64, seed: int = 0):
        from geodl.groups import random_rotation

        self.split = check_choice("split", split, _SPLITS)
        if shapes is None:
            shapes = tuple(SYMSOL_SHAPES)
        elif isinstance(shapes, str) or not isinstance(shapes, (tuple, list)):
            raise TypeError(f"shapes: expected a sequence of shape names, got {shapes!r}")
        shapes = tuple(shapes)
        if not shapes:
            raise ValueError("shapes: expected at least one shape")
        for s in shapes:
            if not isinstance(s, str) or s not in SYMSOL_SHAPES:
                raise ValueError(f"shapes: {s!r} is not one of {list(SYMSOL_SHAPES)}")
        if len(set(shapes)) != len(shapes):
            raise ValueError(f"shapes: repeated names in {shapes!r}")
        self.shapes = shapes
        self.orders = tuple(SYMSOL_SHAPES[s] for s in shapes)
        self.per_shape = check_int("per_shape", per_shape, min=1)
        self.size = check_int("size", size)
        if not SIZES[0] <= self.size <= SIZES[1]:
            raise ValueError(f"size: expected {SIZES[0]} to {SIZES[1]} pixels, got {size!r}")
        self.seed = check_int("seed", seed, min=0)
        total = self.per_shape * len(shapes)
        check_alloc("per_shape", f"{self.per_shape} (x {len(shapes)} shapes, {self.size}x{self.size} images)",
                    total, 3 * self.size * self.size + 9, torch.float32, "cpu")
        code = _SPLITS.index(self.split)
        images, rots = [], []
        for s in shapes:
            k = tuple(SYMSOL_SHAPES).index(s)  # the seed does not depend on the chosen subset
            R = []
            for i in range(self.per_shape):
                rng = np.random.default_rng([self.seed, code, k, i])
                g = torch.Generator().manual_seed(int(rng.integers(2**62)))
                R.append(random_rotation(generator=g, dtype=torch.float64))
            R = torch.stack(R)
            rots.append(R)
            images.append(_render(s, R, self.size))
        self._rotation64 = torch.cat(rots)
        self.images = torch.cat(images)
        self.rotation = self._rotation64.to(torch.float32)
        self.y = torch.arange(len(shapes)).repeat_interleave(self.per_shape)

    def symmetries(self, index: int) -> torch.Tensor:
        """The full ground truth of sample ``index``: ``R_i · G`` (S, 3, 3) float32, ``G`` the
        symmetry set of its shape (right multiplication: with the camera convention of the module,
        every member renders the same image as ``R_i``); ``R_i`` first."""
        i = check_item_index(index, len(self), "images")
        G = _symmetry64(self.shapes[int(self.y[i])])
        return (self._rotation64[i] @ G).to(torch.float32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        i = check_item_index(index, len(self), "images")
        return self.images[i].clone(), self.rotation[i].clone(), self.y[i].clone()

    def __repr__(self) -> str:
        return (f"SymsolLike({self.split!r}, shapes={len(self.shapes)}, per_shape={self.per_shape}, "
                f"size={self.size}, seed={self.seed})")
