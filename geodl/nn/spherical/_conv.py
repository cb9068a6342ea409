"""SPA-SConv: convolutions and max-pooling on equirectangular spherical maps.

A map ``x (B, C, H, W)`` holds rows of polar angle (row 0 = north) and columns of azimuth. Two
things make a grid convolution respect the sphere:

* **spherical padding** (:func:`spherical_pad`): above row 0 sit the nearest rows reversed and
  rolled by ``W/2`` (across the pole the azimuth jumps by π), likewise below row ``H - 1``; the
  columns wrap around (the seam φ = 0 / 2π is no edge). ``W`` must be even.
* the **symmetric convolution** (:class:`SPAConv2d`): the kernel ``K`` is applied to the map and
  to its pole-flipped copy ``flip(x)`` (both axes reversed: the half turn diag(1, -1, -1)), the
  second result is flipped back and the two are combined by an element-wise max,
  ``conv(x) = max(K * x, flip(K * flip(x)))``. Then ``conv(flip(x)) = flip(conv(x))`` exactly.

Which symmetries hold exactly (group ``equirect:<W>``: whole-bin azimuth rolls and the pole flip):

* the pole flip, for the symmetric convolution: ``conv(flip(x)) = max(A(flip(x)), flip(A(x))) =
  flip(max(flip(A(flip(x))), A(x))) = flip(conv(x))`` for ``A = K * pad(·)``, whatever the padding,
  stride or dilation (``flip`` is an involution and commutes with the element-wise max). The
  padding matters for the geometry (the rows across the pole are the real neighbours) and for
  operations that are not built this way: :func:`spherical_pad` itself commutes with the flip only
  for an even ``W`` (``flip(roll(r, m)) = roll(flip(r), -m)``, and ``m ≡ -m (mod W)`` for the half
  turn ``m = W/2`` needs ``2m = W``), and max-pooling commutes with it when its window grid is
  mirror-symmetric, i.e. ``kernel − stride`` of each axis is even and non-negative (2×2 at
  stride 2, 3×3 at stride 1; not 3×3 or 1×1 at stride 2);
* azimuth rolls by ``k`` bins, with spherical padding: at stride ``s`` for every ``k`` that is a
  multiple of ``s`` (the output rolls by ``k / s``).

``padding="zeros", symmetric=False`` is the plain zero-padded convolution (the ablation): it
commutes with neither.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geodl._checks import check_choice, check_int, check_positive_int, check_tensor
from geodl.groups import Symmetry

__all__ = ["spherical_pad", "SPAConv2d", "SphericalMaxPool2d"]

PADDINGS = ("spherical", "zeros")


# ------------------------------------------------------------------------------------------ helpers
def _pair(name: str, v, *, min: int = 1) -> tuple[int, int]:
    """``v`` as a pair of ints ``>= min`` (an int means the same for both axes)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")
        return check_int(name, v[0], min=min), check_int(name, v[1], min=min)
    v = check_int(name, v, min=min)
    return v, v


def _sides(name: str, v) -> tuple[int, int]:
    """A padding amount: an int (both sides) or a (before, after) pair of non-negative ints."""
    return _pair(name, v, min=0)


def _same_padding(kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding giving ``size / stride`` outputs; even split when the total is even."""
    total = max(dilation * (kernel - 1) + 1 - stride, 0)
    return total // 2, total - total // 2


def _resolution(name: str, v) -> tuple[int, int]:
    return _pair(name, v, min=1)


def spherical_pad(x: torch.Tensor, pad_h, pad_w) -> torch.Tensor:
    """Pad an equirectangular map across the poles and around the azimuth seam.

    The ``top`` rows added above row 0 are rows ``top - 1, ..., 1, 0`` (the nearest rows,
    reversed) rolled by ``W/2`` columns: going over the north pole continues on the opposite
    meridian. The bottom likewise, from the last rows. Then the columns wrap around: ``left``
    columns from the right end are put before column 0 and ``right`` from the left end after
    column ``W - 1`` (the corners follow from both). With an even ``W`` this padding commutes with
    the pole flip ``torch.flip(x, (-2, -1))`` for a symmetric split (``top == bottom``,
    ``left == right``) and with whole-bin azimuth rolls.

    Parameters
    ----------
    x : Tensor, shape (..., H, W)
        The map (rows = polar angle from north, columns = azimuth); ``W`` even when ``pad_h > 0``.
    pad_h : int or (int, int)
        Rows added at the top and bottom (an int: the same on both), each at most ``H``.
    pad_w : int or (int, int)
        Columns added at the left and right (an int: the same on both), each at most ``W``.

    Returns
    -------
    Tensor, shape (..., H + top + bottom, W + left + right)

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.spherical import spherical_pad
    >>> x = torch.arange(8.0).reshape(1, 1, 2, 4)
    >>> spherical_pad(x, 1, 1)[0, 0]
    tensor([[1., 2., 3., 0., 1., 2.],
            [3., 0., 1., 2., 3., 0.],
            [7., 4., 5., 6., 7., 4.],
            [5., 6., 7., 4., 5., 6.]])
    """
    check_tensor("x", x, ndim=None)
    if x.dim() < 2:
        raise ValueError(f"x: expected a map of shape (..., H, W), got shape {tuple(x.shape)}")
    top, bottom = _sides("pad_h", pad_h)
    left, right = _sides("pad_w", pad_w)
    H, W = x.shape[-2:]
    if max(top, bottom) > H:
        raise ValueError(f"pad_h: at most H = {H} rows can be padded on each side, got ({top}, {bottom})")
    if max(left, right) > W:
        raise ValueError(f"pad_w: at most W = {W} columns can be padded on each side, got ({left}, {right})")
    if top or bottom:
        if W % 2:
            raise ValueError(f"x: spherical padding needs an even number of azimuth bins W (the pole padding "
                             f"rolls the rows by W/2 = half a turn), got shape {tuple(x.shape)}")
        parts = []
        if top:
            parts.append(torch.roll(torch.flip(x[..., :top, :], (-2,)), W // 2, -1))
        parts.append(x)
        if bottom:
            parts.append(torch.roll(torch.flip(x[..., H - bottom:, :], (-2,)), W // 2, -1))
        x = torch.cat(parts, dim=-2)
    if left or right:
        x = torch.cat([x[..., W - left:], x, x[..., :right]], dim=-1)
    return x


def _pad(x: torch.Tensor, padding: str, ph: tuple[int, int], pw: tuple[int, int]) -> torch.Tensor:
    if padding == "spherical":
        return spherical_pad(x, ph, pw)
    if any(ph) or any(pw):
        return F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
    return x


def _check_map(x, channels: int | None, stride: tuple[int, int], padding: str) -> torch.Tensor:
    check_tensor("x", x, ndim=4, floating=True)
    B, C, H, W = x.shape
    if channels is not None and C != channels:
        raise ValueError(f"x: expected {channels} channels (shape (B, {channels}, H, W)), got shape {tuple(x.shape)}")
    if H == 0 or W == 0:
        raise ValueError(f"x: expected a map with H, W >= 1, got shape {tuple(x.shape)}")
    if H % stride[0] or W % stride[1]:
        raise ValueError(f"x: H and W must be divisible by the stride {stride} (the output is H/stride x "
                         f"W/stride), got shape {tuple(x.shape)}")
    if padding == "spherical" and W % 2:
        raise ValueError(f"x: spherical padding needs an even number of azimuth bins W (the pole padding rolls "
                         f"the rows by W/2 = half a turn), got shape {tuple(x.shape)}")
    return x


def _flip(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, (-2, -1))


class _SphericalModule(nn.Module):
    """Shared declaration logic: ``symmetry_for(H, W)`` and the ``symmetry`` property."""

    stride: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    padding: str

    def _flip_holds(self) -> bool:  # SPAConv2d: always (the symmetric max); pooling: mirror-symmetric windows
        return True

    def symmetry_for(self, H: int, W: int) -> Symmetry:
        """The declaration for input maps of ``H x W`` bins.

        Group ``equirect:<W/stride>`` (rolls by multiples of the stride, and the pole flip). For
        :class:`SPAConv2d` this is the symmetry of SPA-SConv whatever ``padding`` and ``symmetric``
        are: the ablations declare the same and fail the check (zeros break the rolls, a
        non-symmetric kernel the flip). :class:`SphericalMaxPool2d` declares ``azimuth:<W/stride>``
        (rolls only) unless ``kernel − stride`` is even and non-negative (else its windows are not
        mirror-symmetric).
        """
        H = check_positive_int("H", H)
        W = check_positive_int("W", W)
        sh, sw = self.stride
        if H % sh or W % sw:
            raise ValueError(f"W: H and W must be divisible by the stride {self.stride}, got {H} x {W}")
        group = ("equirect" if self._flip_holds() else "azimuth") + f":{W // sw}"
        return Symmetry(group, {"x": f"equirect:{H}x{W}"}, f"equirect:{H // sh}x{W // sw}",
                        note=f"padding={self.padding!r}")

    @property
    def symmetry(self) -> Symmetry:
        if self.resolution is None:
            raise TypeError(f"module: {type(self).__name__} was built without resolution=(H, W); its declaration "
                            "depends on the map size: use module.symmetry_for(H, W)")
        return self.symmetry_for(*self.resolution)


# ---------------------------------------------------------------------------------------- SPA-SConv
class SPAConv2d(_SphericalModule):
    """SPA-SConv (VI-Net): a 2-D convolution on equirectangular maps with spherical padding and a
    pole-flip symmetric kernel.

    ``y = max(K * pad(x), flip(K * pad(flip(x)))) + bias`` with ``flip = torch.flip(·, (-2, -1))``
    (the pole flip) and ``pad`` = :func:`spherical_pad` ("same" padding: the output is
    ``H/stride x W/stride``; an odd total ``dilation·(kernel−1)+1−stride`` puts the extra row and
    column at the bottom and right). Exact symmetries: ``conv(flip(x)) = flip(conv(x))`` at every
    stride and dilation (the symmetric max), and rolls by whole multiples of the stride. The
    ablation ``padding="zeros", symmetric=False`` is a plain zero-padded ``Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output maps.
    kernel_size, stride, dilation : int or (int, int)
        As in ``torch.nn.Conv2d`` (rows, columns).
    padding : {"spherical", "zeros"}
        Pole + seam padding (needs an even ``W``) or zeros.
    symmetric : bool
        Combine the kernel on the map and on its pole-flipped copy by max (SPA-SConv) or not.
    bias : bool
        Add a learned bias per output channel.
    resolution : int or (int, int), optional
        Input size ``(H, W)``, used only by the ``symmetry`` declaration (otherwise call
        :meth:`symmetry_for`).

    Shapes
    ------
    x (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride); ``H, W`` divisible by the
    stride, ``W`` even with spherical padding (else ``ValueError`` naming ``x``). ``B = 0`` is fine.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.spherical import SPAConv2d
    >>> _ = torch.manual_seed(0)
    >>> conv = SPAConv2d(2, 4)
    >>> x = torch.randn(1, 2, 8, 16)
    >>> y = conv(x)
    >>> y.shape
    torch.Size([1, 4, 8, 16])
    >>> bool(torch.allclose(conv(torch.flip(x, (-2, -1))), torch.flip(y, (-2, -1))))
    True
    >>> bool(torch.allclose(conv(torch.roll(x, 3, -1)), torch.roll(y, 3, -1), atol=1e-6))
    True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, dilation=1, *,
                 padding: str = "spherical", symmetric: bool = True, bias: bool = True, resolution=None):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _pair("stride", stride)
        self.dilation = _pair("dilation", dilation)
        self.padding = check_choice("padding", padding, PADDINGS)
        if not isinstance(symmetric, bool):
            raise TypeError(f"symmetric: expected a bool, got {type(symmetric).__name__}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias: expected a bool, got {type(bias).__name__}")
        self.symmetric = symmetric
        self.resolution = None if resolution is None else _resolution("resolution", resolution)
        self.pads = tuple(_same_padding(k, s, d) for k, s, d in zip(self.kernel_size, self.stride, self.dilation))
        self.conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                              dilation=self.dilation, padding=0, bias=False)
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        if bias:  # torch.nn.Conv2d's default bias init
            fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
            bound = 1.0 / fan_in ** 0.5
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.in_channels, self.stride, self.padding)
        ph, pw = self.pads
        if max(ph) > x.shape[-2] or max(pw) > x.shape[-1]:
            raise ValueError(f"x: a {x.shape[-2]} x {x.shape[-1]} map is smaller than the padding {ph}, {pw} of "
                             f"kernel_size={self.kernel_size}, dilation={self.dilation}")
        if self.symmetric and self.stride == (1, 1) and ph[0] == ph[1] and pw[0] == pw[1]:
            # stride 1, symmetric padding: pad(flip(x)) = flip(pad(x)) (even W; zeros trivially), so
            # flip(K * pad(flip(x))) = flip(K) * pad(x): one convolution with [K, flip(K)] stacked along the
            # output channels on the map padded once, instead of two on the map and its flipped copy
            # (the same FLOPs, no flipped copies in and out; see benchmarks/vinet_bench.py)
            w = self.conv.weight
            y = F.conv2d(_pad(x, self.padding, ph, pw), torch.cat([w, _flip(w)], 0), dilation=self.dilation)
            y = torch.maximum(y[:, :self.out_channels], y[:, self.out_channels:])
        elif self.symmetric:
            B = x.shape[0]
            y = self.conv(_pad(torch.cat([x, _flip(x)], dim=0), self.padding, ph, pw))
            y = torch.maximum(y[:B], _flip(y[B:]))
        else:
            y = self.conv(_pad(x, self.padding, ph, pw))
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, padding={self.padding!r}, symmetric={self.symmetric}")


class SphericalMaxPool2d(_SphericalModule):
    """Max-pooling on equirectangular maps with the spherical padding of :class:`SPAConv2d`.

    Max-pooling is symmetric by itself; with the default ``kernel_size = stride = 2`` no padding is
    needed and the output commutes exactly with the pole flip and with azimuth rolls by an even
    number of bins (the output rolls by half as many). Generally: rolls by multiples of the stride,
    and the flip when ``kernel − stride`` is even and non-negative (e.g. 3×3 at stride 1; not 3×3
    or 1×1 at stride 2).

    Parameters
    ----------
    kernel_size, stride : int or (int, int)
        Window and step (rows, columns); "same" padding gives ``H/stride x W/stride``.
    padding : {"spherical", "zeros"}
        Pole + seam padding or zeros (zero padding of a non-negative map only; ``-inf`` is not used).
    resolution : int or (int, int), optional
        Input size ``(H, W)`` for the ``symmetry`` declaration (otherwise :meth:`symmetry_for`).

    Shapes
    ------
    x (B, C, H, W) -> (B, C, H / stride, W / stride); ``H, W`` divisible by the stride and ``W`` even
    with spherical padding (else ``ValueError`` naming ``x``).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.spherical import SphericalMaxPool2d
    >>> pool = SphericalMaxPool2d()
    >>> x = torch.randn(2, 3, 8, 16)
    >>> pool(x).shape
    torch.Size([2, 3, 4, 8])
    >>> bool(torch.equal(pool(torch.flip(x, (-2, -1))), torch.flip(pool(x), (-2, -1))))
    True
    """

    def __init__(self, kernel_size=2, stride=2, *, padding: str = "spherical", resolution=None):
        super().__init__()
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _pair("stride", stride)
        self.padding = check_choice("padding", padding, PADDINGS)
        self.resolution = None if resolution is None else _resolution("resolution", resolution)
        self.pads = tuple(_same_padding(k, s, 1) for k, s in zip(self.kernel_size, self.stride))

    def _flip_holds(self) -> bool:  # mirror-symmetric windows: kernel >= stride, kernel - stride even
        return all(k >= s and (k - s) % 2 == 0 for k, s in zip(self.kernel_size, self.stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, None, self.stride, self.padding)
        ph, pw = self.pads
        if max(ph) > x.shape[-2] or max(pw) > x.shape[-1]:
            raise ValueError(f"x: a {x.shape[-2]} x {x.shape[-1]} map is smaller than the padding {ph}, {pw} of "
                             f"kernel_size={self.kernel_size}")
        if x.shape[0] == 0:
            H, W = x.shape[-2:]
            return x.new_zeros(0, x.shape[1], H // self.stride[0], W // self.stride[1])
        return F.max_pool2d(_pad(x, self.padding, ph, pw), self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"
