"""Point clouds -> equirectangular spherical maps (the input of VI-Net).

Bin convention (the whole of :mod:`geodl.nn.spherical` uses it): a map ``(B, C, H, W)`` has row
``i`` covering the polar angle ``θ ∈ [iπ/H, (i+1)π/H)`` measured from +z (row 0 = north pole) and
column ``j`` covering the azimuth ``φ ∈ [2πj/W, 2π(j+1)/W)`` with ``φ = atan2(y, x) mod 2π``. The
south pole ``θ = π`` goes to row ``H − 1`` (the original VI-Net code computed row ``H`` there, out
of range); ``φ`` that rounds to ``2π`` is the seam and goes to column 0. A point at the origin has
``θ = 0, φ = 0`` (row 0, column 0) and radius 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geodl._checks import check_alloc, check_finite, check_index, check_int, check_number, check_tensor
from geodl.groups import Symmetry

__all__ = ["spherical_projection", "SphericalProjection"]


def _check_resolution(resolution) -> tuple[int, int]:
    """``resolution`` (an int n -> (n, n), or (H, W)) as a pair of positive ints with an even ``W``."""
    if isinstance(resolution, (tuple, list)):
        if len(resolution) != 2:
            raise ValueError(f"resolution: expected an int or a pair (H, W), got {resolution!r}")
        H, W = (check_int("resolution", v, min=1) for v in resolution)
    else:
        H = W = check_int("resolution", resolution, min=1)
    if W % 2:
        raise ValueError(f"resolution: the number of azimuth bins W must be even (the spherical pole padding rolls "
                         f"by W/2 = half a turn), got (H, W) = ({H}, {W})")
    return H, W


def _bins(pos: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Flat bin ``row * W + col`` of each point (the convention of the module docstring)."""
    x, y, z = pos.unbind(-1)
    theta = torch.atan2(torch.hypot(x, y), z)  # [0, π]; exact at the poles, 0 at the origin
    phi = torch.remainder(torch.atan2(y, x), 2 * math.pi)
    row = torch.floor(theta * (H / math.pi)).long().clamp_(0, H - 1)  # θ = π -> H - 1
    col = torch.remainder(torch.floor(phi * (W / (2 * math.pi))).long(), W)  # φ -> 2π: the seam, column 0
    return row * W + col


def spherical_projection(pos: torch.Tensor, batch: torch.Tensor | None = None, *, num_graphs: int | None = None,
                         resolution=(64, 64), features: torch.Tensor | None = None,
                         fill: float = 0.0) -> torch.Tensor:
    """Project point clouds to equirectangular maps of the farthest point per bin.

    Each point falls into the bin of its polar angle (rows, from +z) and azimuth (columns) as in
    the module docstring. Channel 0 of a bin is the largest radius ``|p|`` among its points,
    channels ``1..F`` are the ``features`` of that farthest point (the lowest index among equal
    radii). Empty bins hold ``fill`` in every channel. Positions are used as given (centre them
    first). One ``geodl.ops.scatter`` max over the ``B·H·W`` bins of all clouds (no loop over
    clouds); gradients flow to the selected radii and features.

    Parameters
    ----------
    pos : Tensor, shape (N, 3), floating point
        Points of all clouds (finite, else ``ValueError`` naming ``pos``).
    batch : Tensor, shape (N,), int64 or int32, optional
        Cloud of each point (PyG style); ``None``: one cloud.
    num_graphs : int, optional
        Number of clouds ``B`` (default ``batch.max() + 1``, 0 without points; 1 with ``batch=None``).
        Clouds without points give maps of ``fill``. Pass it under ``torch.compile(fullgraph=True)``
        (the default reads the batch vector).
    resolution : int or (int, int)
        ``(H, W)`` (an int ``n`` means ``(n, n)``); positive, ``W`` even (else ``ValueError`` naming
        ``resolution``).
    features : Tensor, shape (N, F), floating point, optional
        Per-point features carried by the farthest point (e.g. colour).
    fill : float
        Value of empty bins (every channel).

    Returns
    -------
    Tensor, shape (B, 1 + F, H, W), dtype of ``pos``

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.spherical import spherical_projection
    >>> pos = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    >>> m = spherical_projection(pos, resolution=(4, 8), features=torch.arange(4.0)[:, None], fill=-1.0)
    >>> m.shape
    torch.Size([1, 2, 4, 8])
    >>> m[0, 0, 0, 0].item(), m[0, 0, 3, 0].item(), m[0, 0, 2, 0].item(), m[0, 1, 2, 0].item()
    (2.0, 1.0, 3.0, 3.0)
    >>> int((m[0, 0] == -1.0).sum())  # 32 bins, 3 occupied
    29
    """
    from geodl.ops import scatter

    compiling = torch.compiler.is_compiling()
    check_tensor("pos", pos, shape=(None, 3), floating=True)
    if not compiling:
        check_finite("pos", pos)
    H, W = _check_resolution(resolution)
    fill = check_number("fill", fill)
    N = pos.shape[0]
    if features is not None:
        check_tensor("features", features, ndim=2, floating=True)
        if features.shape[0] != N:
            raise ValueError(f"features: expected {N} rows (one per point of pos), got shape {tuple(features.shape)}")
        if features.device != pos.device:
            raise ValueError(f"features: expected a tensor on {pos.device} (the device of pos), got {features.device}")
        if not compiling:
            check_finite("features", features)
        features = features.to(pos.dtype)
    F = 0 if features is None else features.shape[1]
    if batch is None:
        B = 1 if num_graphs is None else check_int("num_graphs", num_graphs, min=0)
        if B == 0 and N:
            raise ValueError(f"num_graphs: 0 clouds cannot hold the {N} points of pos")
        index = _bins(pos, H, W)
    else:
        check_index("batch", batch)
        if batch.shape != (N,):
            raise ValueError(f"batch: expected shape ({N},) (one cloud id per point of pos), got {tuple(batch.shape)}")
        if batch.device != pos.device:
            raise ValueError(f"batch: expected a tensor on {pos.device} (the device of pos), got {batch.device}")
        if num_graphs is None:
            B = int(batch.max()) + 1 if N else 0
        else:
            B = check_int("num_graphs", num_graphs, min=0)
        if not compiling:
            check_index("batch", batch, B)
        index = batch.long() * (H * W) + _bins(pos, H, W)
    if not compiling:  # sizes checked before anything is allocated
        check_alloc("resolution", (H, W), B * H * W, 1 + F, pos.dtype, pos.device, row_bytes=8)
    radius = torch.linalg.vector_norm(pos, dim=-1)
    value, arg = scatter(radius, index, 0, B * H * W, reduce="max", return_arg=True)
    empty = arg >= N
    value = torch.where(empty, value.new_full((), fill), value)
    channels = [value.unsqueeze(-1)]
    if F:
        padded = torch.cat([features, features.new_full((1, F), fill)], dim=0)  # row N: the fill of empty bins
        channels.append(padded[arg.clamp(max=N)])
    return torch.cat(channels, dim=-1).view(B, H, W, 1 + F).permute(0, 3, 1, 2).contiguous()


class SphericalProjection(nn.Module):
    """:func:`spherical_projection` as a module (no parameters).

    Parameters
    ----------
    resolution : int or (int, int)
        ``(H, W)`` of the maps (an int ``n``: ``(n, n)``); ``W`` even.
    fill : float
        Value of empty bins.

    Forward
    -------
    ``forward(pos, batch=None, *, num_graphs=None, features=None)`` -> (B, 1 + F, H, W).

    The declaration is permutation invariance per cloud (group ``perm``, output kind
    ``equirect:<H>x<W>``); a rotation ``Rz(2πk/W)`` of a cloud rolls its map by ``k`` columns only
    for points away from bin boundaries (rounding at a boundary can move a point to the next bin),
    so it is tested, not declared.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.spherical import SphericalProjection
    >>> proj = SphericalProjection(resolution=(8, 16))
    >>> pos, batch = torch.randn(20, 3), torch.tensor([0] * 12 + [1] * 8)
    >>> proj(pos, batch, features=torch.rand(20, 3)).shape
    torch.Size([2, 4, 8, 16])
    """

    def __init__(self, resolution=(64, 64), fill: float = 0.0):
        super().__init__()
        self.resolution = _check_resolution(resolution)
        self.fill = check_number("fill", fill)

    @property
    def symmetry(self) -> Symmetry:
        H, W = self.resolution
        return Symmetry("perm", {"pos": "node:points", "batch": "batch", "features": "node:scalar"},
                        f"equirect:{H}x{W}", batch_arg="batch",
                        note="farthest point per bin; ties of equal radius go to the lowest index")

    def forward(self, pos: torch.Tensor, batch: torch.Tensor | None = None, *, num_graphs: int | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        return spherical_projection(pos, batch, num_graphs=num_graphs, resolution=self.resolution,
                                    features=features, fill=self.fill)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, fill={self.fill}"
