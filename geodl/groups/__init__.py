"""The group vocabulary of geodl: groups, elements, actions on feature kinds, rotations, Wigner-D, grids.

Everything here works on any batch shape, dtype and device; every sampler takes ``generator=``.

- Groups: :func:`get_group` (``"SO2"``, ``"O2"``, ``"SE2"``, ``"E2"``, ``"SO3"``, ``"O3"``, ``"SE3"``,
  ``"E3"``, ``"tetrahedral"``, ``"octahedral"``, ``"icosahedral"``, ``"O2_axis"``, ``"perm"``,
  ``"scale"`` and ``+`` products such as ``"E3+perm"``) returning a :class:`Group` that samples
  :class:`GroupElement` s (Haar / uniform, plus structured test elements).
- Actions: :func:`act` applies an element to a tensor of a given kind (``scalar``, ``points``,
  ``vectors``, ``pseudovectors``, ``tensor2``, ``sh:<lmax>``, ``perm``, ``edge_index``, ``node:`` prefix).
- Rotations: :func:`random_rotation`, :func:`geodesic_distance` and conversions between matrices,
  quaternions ``(x, y, z, w)``, rotation vectors, 6D and Euler angles.
- :func:`wigner_D` in e3nn's real basis; :func:`finite_group`; HEALPix :func:`s2_healpix_grid`,
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

from geodl.groups._actions import KINDS, KindSpec, act, parse_kind
from geodl.groups._finite import FINITE_GROUPS, finite_group
from geodl.groups._grids import nearest_rotation, s2_healpix_grid, so3_healpix_grid
from geodl.groups._group import GROUP_NAMES, Group, GroupElement, get_group
from geodl.groups._rotations import (
    axis_angle_to_matrix,
    euler_to_matrix,
    geodesic_distance,
    matrix_to_6d,
    matrix_to_axis_angle,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
    random_quaternion,
    random_rotation,
    random_rotation_2d,
    rotation_2d,
    sixd_to_matrix,
)
from geodl.groups._wigner import wigner_D, wigner_D_blocks
from geodl.groups._coordinates import lonlat_to_xyz, xyz_to_lonlat
from geodl.groups._symmetry import Symmetry, get_symmetry

__all__ = [
    # groups and actions
    "Group",
    "GroupElement",
    "GROUP_NAMES",
    "get_group",
    "KindSpec",
    "KINDS",
    "parse_kind",
    "act",
    "Symmetry",
    "get_symmetry",
    # rotations
    "random_rotation",
    "random_rotation_2d",
    "random_quaternion",
    "rotation_2d",
    "geodesic_distance",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_matrix",
    "matrix_to_6d",
    "sixd_to_matrix",
    "matrix_to_euler",
    "euler_to_matrix",
    # representations, finite groups, grids
    "wigner_D",
    "wigner_D_blocks",
    "finite_group",
    "FINITE_GROUPS",
    "s2_healpix_grid",
    "so3_healpix_grid",
    "nearest_rotation",
    # sphere coordinates
    "lonlat_to_xyz",
    "xyz_to_lonlat",
]
