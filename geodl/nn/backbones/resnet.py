"""The CIFAR ResNet of He et al. (CVPR 2016, section 4.2): the Euclidean baseline of the Poincaré ResNet.

Depth ``6n + 2``: a 3x3 convolution stem (+ BatchNorm + ReLU), three stages of ``n`` basic blocks
(``conv3x3 - BN - ReLU - conv3x3 - BN``, plus the shortcut, then ReLU) whose first block of stages 2
and 3 halves the resolution (stride 2) and changes the width through a ``1x1 conv + BN`` projection
shortcut, global average pooling and a linear head. ResNet-20 is ``depth=20`` with widths
``(16, 32, 64)``; :class:`geodl.nn.poincare.PoincareResNet` has the same topology with every layer
hyperbolic.
"""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_int, check_memory, check_tensor
from geodl.groups import Symmetry
from geodl.nn._layers import check_widths

__all__ = ["ResNet"]

_SYMMETRY = Symmetry("perm", {"x": "node:scalar"}, "node:scalar",
                     note="no geometric symmetry: the rows of the batch are independent samples "
                          "(BatchNorm uses its running statistics in eval mode)")


def check_resnet_arguments(depth, widths, in_channels, num_classes) -> tuple[int, tuple, int, int]:
    """Validate the size arguments of a CIFAR ResNet; return ``(n, widths, in_channels, num_classes)``
    with ``n = (depth - 2) / 6`` blocks per stage. Errors name the argument; the parameters are checked
    against the memory available before anything is allocated.

    Examples
    --------
    >>> check_resnet_arguments(20, [16, 32, 64], 3, 10)
    (3, (16, 32, 64), 3, 10)
    >>> check_resnet_arguments(21, (16, 32, 64), 3, 10)
    Traceback (most recent call last):
    ...
    ValueError: depth: expected 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got 21
    """
    depth = check_int("depth", depth, min=1)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth: expected 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
    widths = check_widths("widths", widths)
    if len(widths) != 3:
        raise ValueError(f"widths: expected 3 stage widths, got {len(widths)} ({widths!r:.80})")
    in_channels = check_int("in_channels", in_channels, min=1)
    num_classes = check_int("num_classes", num_classes, min=1)
    n = (depth - 2) // 6
    # the parameters must fit before anything is allocated; the error names the first argument (in the
    # order widths, depth, in_channels, num_classes) whose value makes them not fit
    itemsize = torch.get_default_dtype().itemsize
    steps = (("widths", widths, (1, widths, 1, 1)), ("depth", depth, (n, widths, 1, 1)),
             ("in_channels", in_channels, (n, widths, in_channels, 1)),
             ("num_classes", num_classes, (n, widths, in_channels, num_classes)))
    for name, value, sizes in steps:
        count = _parameter_count(*sizes)
        check_memory(name, value, count * itemsize, "cpu", what=f"a ResNet of {count} parameters and statistics")
    return n, widths, in_channels, num_classes


def check_images(x, in_channels: int, dtype: torch.dtype, width: int, maps: int = 4) -> None:
    """Check an image batch ``x`` (B, in_channels, H, W) of ``dtype`` for a network whose first stage has
    ``width`` channels at full resolution (``maps`` such maps alive at once must fit in memory)."""
    check_tensor("x", x, ndim=4, floating=True)
    b, c, h, w = x.shape
    if c != in_channels:
        raise ValueError(f"x: expected {in_channels} channels (shape (B, {in_channels}, H, W)), "
                         f"got shape {tuple(x.shape)}")
    if h < 1 or w < 1:
        raise ValueError(f"x: expected images of at least 1x1 pixels, got shape {tuple(x.shape)}")
    if x.dtype != dtype:
        raise TypeError(f"x: expected dtype {dtype} (the module's), got {x.dtype}")
    # the largest activations: the stem's and the first stage's maps, a few alive at once
    check_memory("x", f"of shape {tuple(x.shape)}", maps * b * width * h * w * x.element_size(), x.device,
                 what="the activations of the first stage")


def _parameter_count(n: int, widths: tuple, in_channels: int, num_classes: int) -> int:
    """Parameters and BatchNorm statistics of a ResNet with ``n`` blocks per stage."""
    a, b, c = widths
    count = 9 * in_channels * a + 4 * a  # the stem: 3x3 conv (no bias) + BatchNorm (2 parameters, 2 statistics)
    count += n * 2 * (9 * a * a + 4 * a)
    for w_in, w in ((a, b), (b, c)):
        count += 9 * w_in * w + (2 * n - 1) * 9 * w * w + 2 * n * 4 * w + w_in * w + 4 * w
    return count + c * num_classes + num_classes


class _BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; the shortcut a 1x1 conv + BN when the
    stride or the width changes, the identity otherwise."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + self.shortcut(x))


class ResNet(nn.Module):
    """The CIFAR ResNet (He et al. 2016): 3x3 stem, three stages of basic blocks, average pool, linear head.

    Parameters
    ----------
    depth : int
        ``6n + 2`` (8, 14, 20, 32, 44, 56, 110, ...): ``n`` basic blocks per stage.
    widths : sequence of 3 int
        Channels of the three stages (the stem has ``widths[0]``).
    in_channels : int
        Channels of the input images (3 for RGB, 1 for grey levels).
    num_classes : int
        Width of the logits.

    Forward
    -------
    ``forward(x)`` with ``x`` of shape ``(B, in_channels, H, W)`` (any ``H, W >= 1``; stages 2 and 3
    halve them, rounding up) in the module's dtype -> logits ``(B, num_classes)``. In eval mode the
    rows are independent (BatchNorm uses its running statistics); in training mode BatchNorm
    normalises with the batch statistics, so a training batch needs more than one value per channel.

    Notes
    -----
    Convolutions have no bias (BatchNorm follows each); they are initialised by He's normal
    initialisation (``fan_out``), BatchNorm to the identity, the head by torch's default.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import ResNet
    >>> _ = torch.manual_seed(0)
    >>> net = ResNet(depth=8, widths=(4, 8, 16), in_channels=1).eval()
    >>> net(torch.rand(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    >>> sum(p.numel() for p in ResNet().parameters())  # ResNet-20: 0.27 M parameters
    272474
    """

    def __init__(self, depth: int = 20, widths=(16, 32, 64), in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        n, widths, in_channels, num_classes = check_resnet_arguments(depth, widths, in_channels, num_classes)
        self.depth, self.widths, self.in_channels, self.num_classes = depth, widths, in_channels, num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, c_in = [], widths[0]
        for s, w in enumerate(widths):
            blocks = []
            for i in range(n):
                blocks.append(_BasicBlock(c_in, w, 2 if (s > 0 and i == 0) else 1))
                c_in = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def symmetry(self) -> Symmetry:
        return _SYMMETRY

    def extra_repr(self) -> str:
        return f"depth={self.depth}, widths={self.widths}, in_channels={self.in_channels}, num_classes={self.num_classes}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.in_channels, self.head.weight.dtype, self.widths[0])
        h = self.stages(self.stem(x))
        return self.head(h.mean(dim=(2, 3)))
