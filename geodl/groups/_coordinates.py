"""Longitude/latitude (degrees) <-> unit vectors on S², the one copy every subpackage uses.

Convention: ``lon`` in degrees east of the x axis (atan2(y, x)), ``lat`` in degrees above the
xy plane; ``(lon, lat) = (0, 90)`` is the north pole ``(0, 0, 1)``.
"""

from __future__ import annotations

import torch

from geodl._checks import check_tensor

__all__ = ["lonlat_to_xyz", "xyz_to_lonlat"]


def lonlat_to_xyz(lonlat: torch.Tensor) -> torch.Tensor:
    """Unit vectors ``(..., 3)`` from ``(..., 2)`` longitude/latitude in degrees.

    ``lonlat`` must be floating point; on the CPU, latitudes outside [-90, 90] raise ``ValueError``
    (often swapped columns); on other devices and under ``torch.compile`` they are not read.

    Examples
    --------
    >>> import torch
    >>> lonlat_to_xyz(torch.tensor([[0.0, 90.0], [90.0, 0.0]], dtype=torch.float64)).round(decimals=12)
    tensor([[0., 0., 1.],
            [0., 1., 0.]], dtype=torch.float64)
    """
    check_tensor("lonlat", lonlat, shape=(..., 2), floating=True)
    if lonlat.device.type == "cpu" and lonlat.numel() and not torch.compiler.is_compiling():
        lat = lonlat[..., 1]
        if bool(((lat < -90.0) | (lat > 90.0)).any()):
            raise ValueError("lonlat: latitudes (lonlat[..., 1]) must lie in [-90, 90] degrees")
    lon, lat = torch.deg2rad(lonlat[..., 0]), torch.deg2rad(lonlat[..., 1])
    cl = torch.cos(lat)
    return torch.stack([cl * torch.cos(lon), cl * torch.sin(lon), torch.sin(lat)], dim=-1)


def xyz_to_lonlat(xyz: torch.Tensor) -> torch.Tensor:
    """Longitude/latitude ``(..., 2)`` in degrees of vectors ``(..., 3)`` (any non-zero length).

    Uses ``atan2`` for both angles, so it is accurate near the poles and needs no normalisation.

    Examples
    --------
    >>> import torch
    >>> xyz_to_lonlat(torch.tensor([[0.0, 2.0, 0.0]], dtype=torch.float64))
    tensor([[90.,  0.]], dtype=torch.float64)
    """
    check_tensor("xyz", xyz, shape=(..., 3), floating=True)
    lon = torch.rad2deg(torch.atan2(xyz[..., 1], xyz[..., 0]))
    lat = torch.rad2deg(torch.atan2(xyz[..., 2], torch.hypot(xyz[..., 0], xyz[..., 1])))
    return torch.stack([lon, lat], dim=-1)
