"""The spherical feature pyramid of VI-Net: one or two streams of SPA-SConv (e.g. radius and
colour maps), fused at three scales (full, 1/2, 1/4 resolution) and merged top-down."""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_positive_int, check_tensor
from geodl.groups import Symmetry

__all__ = ["SphericalFPN"]


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest upsampling by 2 in rows and columns (commutes with the pole flip and with azimuth rolls)."""
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def _channels(name: str, v, n: int | None = None) -> tuple[int, ...]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v,)
    if not isinstance(v, (tuple, list)) or not v:
        raise TypeError(f"{name}: expected an int or a tuple of ints, got {v!r}")
    out = tuple(check_positive_int(name, c) for c in v)
    if n is not None and len(out) != n:
        raise ValueError(f"{name}: expected {n} ints, got {v!r}")
    return out


def _resolution(name: str, v) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise TypeError(f"{name}: expected an int or (H, W), got {v!r}")
    H, W = (check_positive_int(name, s) for s in v)
    if H % 4 or W % 8:
        raise ValueError(f"{name}: the FPN halves the map twice: H must be divisible by 4 and W by 8 (the 1/4 map "
                         f"needs an even width for the pole padding), got {H} x {W}")
    return H, W


class SphericalFPN(nn.Module):
    """The VI-Net spherical feature pyramid.

    Each stream (one per entry of ``in_channels``; with one entry, one stream) is
    ``SPAConv2d → BN → ReLU`` at full resolution, then ``SphericalMaxPool2d`` and the same block at
    1/2 and again at 1/4. The streams are fused by addition at each of the three scales; the
    pyramid is merged top-down (1×1 lateral convolutions, nearest upsampling by 2 in rows and
    columns -- a whole-bin operation, so it wraps in azimuth and commutes with the pole flip) and
    smoothed by one more SPA-SConv at full resolution.

    With SPA-SConv (the defaults) the whole map-to-map function commutes exactly with the pole
    flip and with azimuth rolls by multiples of 4 bins (two poolings by 2): group
    ``equirect:<W/4>`` (``symmetry_for(H, W)``; eval mode, since batch statistics are
    not per-sample). ``padding="zeros", symmetric=False`` is the ablation, declared the same and
    failing the check.

    Parameters
    ----------
    in_channels : int or tuple of int
        Channels of each stream, e.g. ``(1, 3)`` (radius, colour) or ``(1,)``.
    channels : tuple of 3 ints
        Channels at full, 1/2 and 1/4 resolution; the output has ``channels[0]``.
    padding, symmetric
        As in :class:`~geodl.nn.spherical.SPAConv2d`.
    resolution : int or (H, W), optional
        Input map size, for the ``symmetry`` declaration only (H divisible by 4, W by 8).

    Shapes: ``forward(x (B, sum(in_channels), H, W))`` or ``forward(x1, x2)`` (one map per
    stream) -> ``(B, channels[0], H, W)``; H divisible by 4, W by 8 (the 1/4 map has an even width).

    Examples
    --------
    >>> fpn = SphericalFPN((1, 3), (8, 16, 16)).eval()
    >>> fpn(torch.randn(2, 4, 16, 16)).shape
    torch.Size([2, 8, 16, 16])
    """

    def __init__(self, in_channels=(1, 3), channels=(32, 64, 128), *, padding: str = "spherical",
                 symmetric: bool = True, resolution=None):
        super().__init__()
        from ._conv import SPAConv2d, SphericalMaxPool2d
        from ._heads import _check_weights, _conv_block

        self.in_channels = _channels("in_channels", in_channels)
        if len(self.in_channels) > 2:
            raise ValueError(f"in_channels: expected one or two streams, got {in_channels!r}")
        self.channels = _channels("channels", channels, 3)
        self.out_channels = self.channels[0]
        self.resolution = None if resolution is None else _resolution("resolution", resolution)
        self.padding, self.symmetric = padding, symmetric
        c1, c2, c3 = self.channels
        _check_weights("in_channels", in_channels, 9 * sum(self.in_channels) * c1)
        _check_weights("channels", channels, 9 * (sum(self.in_channels) * c1 + len(self.in_channels) * (
            c1 * c2 + c2 * c3) + 2 * c1 * c1) + c1 * (c1 + c2 + c3))

        def stream(cin):
            return nn.ModuleList([_conv_block(cin, c1, padding=padding, symmetric=symmetric),
                                  nn.Sequential(SphericalMaxPool2d(2, 2), _conv_block(c1, c2, padding=padding,
                                                                                      symmetric=symmetric)),
                                  nn.Sequential(SphericalMaxPool2d(2, 2), _conv_block(c2, c3, padding=padding,
                                                                                      symmetric=symmetric))])

        self.streams = nn.ModuleList([stream(c) for c in self.in_channels])
        self.lateral = nn.ModuleList([nn.Conv2d(c, c1, 1) for c in (c1, c2, c3)])
        self.smooth = nn.Sequential(_conv_block(c1, c1, padding=padding, symmetric=symmetric),
                                    SPAConv2d(c1, c1, 3, padding=padding, symmetric=symmetric))

    def symmetry_for(self, H: int, W: int) -> Symmetry:
        """The declaration for ``H x W`` input maps: group ``equirect:<W/4>`` (the pole flip and
        rolls by multiples of 4 bins), map in, map out."""
        H, W = _resolution("resolution", (H, W))
        return Symmetry(f"equirect:{W // 4}", {"x": f"equirect:{H}x{W}"}, f"equirect:{H}x{W}",
                        note=f"padding={self.padding!r}, symmetric={self.symmetric}; eval mode (batch norm)")

    @property
    def symmetry(self) -> Symmetry:
        if self.resolution is None:
            raise TypeError("module: SphericalFPN was built without resolution=(H, W); its declaration depends on "
                            "the map size: use module.symmetry_for(H, W)")
        return self.symmetry_for(*self.resolution)

    def forward(self, x: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
        x = check_tensor("x", x, ndim=4, floating=True)
        if x2 is not None:
            x2 = check_tensor("x2", x2, ndim=4, floating=True)
            if x2.shape[0] != x.shape[0] or x2.shape[-2:] != x.shape[-2:]:
                raise ValueError(f"x2: expected the batch and map size of x {tuple(x.shape)}, got {tuple(x2.shape)}")
            x = torch.cat([x, x2], 1)
        B, C, H, W = x.shape
        if C != sum(self.in_channels):
            raise ValueError(f"x: expected {sum(self.in_channels)} channels (in_channels={self.in_channels}), "
                             f"got shape {tuple(x.shape)}")
        if H % 4 or W % 8:
            raise ValueError(f"x: the FPN halves the map twice: H must be divisible by 4 and W by 8 (the 1/4 map "
                             f"needs an even width for the pole padding), got {H} x {W}")
        parts = torch.split(x, list(self.in_channels), dim=1)
        fused = [None, None, None]
        for s, h in zip(self.streams, parts):
            for k in range(3):
                h = s[k](h)
                fused[k] = h if fused[k] is None else fused[k] + h
        p = self.lateral[2](fused[2])
        p = self.lateral[1](fused[1]) + _upsample2(p)
        p = self.lateral[0](fused[0]) + _upsample2(p)
        return self.smooth(p)
