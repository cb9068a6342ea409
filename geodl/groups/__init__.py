"""The group vocabulary of geodl: groups, elements, actions on feature kinds, rotations, Wigner-D, grids.

Everything here works on any batch shape, dtype and device; every sampler takes ``generator=``.

- Groups: :func:`get_group` (``"SO2"``, ``"O2"``, ``"SE2"``, ``"E2"``, ``"SO3"``, ``"O3"``, ``"SE3"``,
  ``"E3"``, ``"tetrahedral"``, ``"octahedral"``, ``"icosahedral"``, ``"O2_axis"``, ``"perm"``,
  ``"scale"`` and ``+`` products such as ``"E3+perm"``) returning a :class:`Group` that samples
  :class:`GroupElement` s (Haar / uniform, plus structured test elements).
  Finite tables ``"D4"``, ``"C4"`` (exact image symmetries), ``"equirect:<W>"``, ``"azimuth:<W>"``
  (whole-bin azimuth rolls and the pole flip) and piecewise groups such as ``"E3^parts"``.
- Kinds: one registry (:func:`register_kind`, :func:`parse_kind`, :func:`kind_table`) read by
  :func:`act` (apply an element to a tensor of a given kind: ``scalar``, ``points``, ``vectors``,
  ``pseudovectors``, ``tensor2``, ``sh:<lmax>[:e3nn]``, ``so3:<lmax>``, ``rotation``,
  ``equirect:<H>x<W>``, ``image2d``, ``edge_index``, ``batch``, ``parts``, ``perm``, e3nn irreps
  strings, ``node:`` prefix), by :func:`random_input` and by :mod:`geodl.testing`.
- Rotations: :func:`random_rotation`, :func:`geodesic_distance` and conversions between matrices,
  quaternions ``(x, y, z, w)``, rotation vectors, 6D and Euler angles.
- :func:`wigner_D` in e3nn's real basis, :func:`wigner_D_chunks` of a whole grid in chunks; :func:`finite_group`; HEALPix :func:`s2_healpix_grid`,
  :func:`so3_healpix_grid` and :func:`nearest_rotation`.

Examples
--------
>>> import torch
>>> from geodl.groups import get_group, act
>>> G = get_group("SO3")
>>> g = G.sample(generator=torch.Generator().manual_seed(0))
>>> x = torch.randn(10, 3, dtype=torch.float64)
>>> y = act("points", g, x)
>>> bool(torch.allclose(y.norm(dim=-1), x.norm(dim=-1)))
True
"""

from geodl.groups import _rotations
from geodl.groups._actions import KINDS, KindSpec, act, parse_kind
from geodl.groups._coordinates import lonlat_to_xyz, xyz_to_lonlat
from geodl.groups._finite import FINITE_GROUPS, finite_group
from geodl.groups._grids import nearest_rotation, s2_healpix_grid, s2_healpix_lonlat, so3_healpix_grid
from geodl.groups._group import GROUP_NAMES, Group, GroupElement, get_group
from geodl.groups._kinds import KindDef, kind_table, random_input, register_kind
from geodl.groups._rotations import *  # noqa: F403 (the names listed in _rotations.__all__)
from geodl.groups._symmetry import Symmetry, get_symmetry
from geodl.groups._wigner import wigner_D, wigner_D_blocks
from geodl.groups._wigner_grid import so3_fourier_width, wigner_D_chunks

__all__ = [
    # groups, kinds and actions
    "Group",
    "GroupElement",
    "GROUP_NAMES",
    "get_group",
    "KindSpec",
    "KindDef",
    "KINDS",
    "register_kind",
    "parse_kind",
    "kind_table",
    "act",
    "random_input",
    "Symmetry",
    "get_symmetry",
    # rotations: random_rotation, conversions, geodesic_distance, ...
    *_rotations.__all__,
    # representations, finite groups, grids
    "wigner_D",
    "wigner_D_blocks",
    "wigner_D_chunks",
    "so3_fourier_width",
    "finite_group",
    "FINITE_GROUPS",
    "s2_healpix_grid",
    "s2_healpix_lonlat",
    "so3_healpix_grid",
    "nearest_rotation",
    # sphere coordinates
    "lonlat_to_xyz",
    "xyz_to_lonlat",
]
