"""The Poincaré ResNet (van Spengler, Berkhout, Mettes, ICCV'23): the CIFAR ResNet with every layer hyperbolic.

Same topology as :class:`geodl.nn.ResNet` (depth ``6n + 2``, three stages of ``n`` basic blocks, the first
block of stages 2 and 3 halving the resolution): each pixel's channel vector is a point of the Poincaré
ball of curvature ``-c``.

- **Stem.** The Euclidean image is mapped into the ball by ``expmap0`` along the channels (the pixel's
  channel vector read as a tangent vector at the origin), then ``PoincareConv2d - PoincareBatchNorm2d -
  PoincareReLU``.
- **Block** (:class:`PoincareResidualBlock`): ``h = bn2(conv2(relu(bn1(conv1(x)))))`` and the residual by
  **Möbius addition over the channel dimension**, ``relu(s(x) ⊕ h)``, with ``s`` the identity or, where the
  stride or the width changes, a 1x1 ``PoincareConv2d`` + ``PoincareBatchNorm2d``.
- **Head.** Global average pooling in the tangent space (:class:`PoincareAvgPool2d`) and the hyperbolic
  logits of :class:`PoincareMLR`.

**Identity-based initialisation.** Every convolution starts as (nearly) the identity on its centre tap
(``id_init``, :class:`PoincareConv2d`), and with ``zero_init_residual=True`` (the default) the scale of the
second batch norm of each block starts at 0, so that the residual branch starts at the origin, the identity
element of ``⊕``: ``s(x) ⊕ 0 = s(x)``. A stack of blocks then starts as the identity and activation norms do
not grow with depth (the test ``test_norms_after_20_blocks``); the branch learns from the first step, since the
gradient of that scale is not zero. (torchvision's ``zero_init_residual`` is the same idea for Euclidean
ResNets; without it each ``⊕`` of two unit-variance points roughly adds their hyperbolic norms.)
"""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_int, check_tensor
from geodl.nn.backbones.resnet import _SYMMETRY, check_images, check_resnet_arguments
from geodl.nn.poincare._ball import _check_c, _check_input, _expmap0, _logmap0, _mobius_add, _project, _work
from geodl.nn.poincare._fused import clamp_tangent, expmap0_tangent, recompute, relu_tangent, residual_relu, tail_bn
from geodl.nn.poincare._layers import (PoincareAvgPool2d, PoincareBatchNorm2d, PoincareConv2d, PoincareMLR,
                                       PoincareReLU)

__all__ = ["PoincareResidualBlock", "PoincareResNet", "poincare_resnet20", "poincare_resnet32"]


def _layer_inputs(conv, bn, q, a):
    """The tensors a fused conv + batch norm segment needs (parameters and, in eval mode, running statistics)."""
    _, zn, r = conv._params(torch.float64 if q.dtype == torch.float64 else torch.float32)
    t = [q, a, zn, r, bn.scale, bn.shift]
    if not bn.training:
        t += [bn.running_mean, bn.running_var]
    return t


def _layer_call(conv, bn, ts, c):
    q = _work(ts[0])
    a = ts[1].to(q.dtype)
    stats = (ts[6], ts[7]) if len(ts) > 6 else None
    return tail_bn(q, a, ts[2].to(q.dtype), ts[3].to(q.dtype), conv.beta_scale, ts[4], ts[5], stats, c, bn.eps)


def _update(bn, mu, var, q):
    if bn.training:
        bn._update_running(mu, var, q.shape[0] * q.shape[2] * q.shape[3])


def _conv_bn(conv, bn, v, *, relu: bool):
    """Fused ``relu(bn(conv(x)))`` on tangent vectors: ``v = logmap0(x)`` -> ``logmap0(...)``."""
    q, a = conv._tangent_conv(v)
    inputs = _layer_inputs(conv, bn, q, a)

    def segment(*ts):
        point, mu, var = _layer_call(conv, bn, ts, bn.c)
        return (relu_tangent(point, bn.c) if relu else point.materialise()), mu, var

    out, mu, var = recompute(segment, 1, *inputs)
    _update(bn, mu, var, q)
    return out


class PoincareResidualBlock(nn.Module):
    """``relu(s(x) ⊕ bn2(conv2(relu(bn1(conv1(x))))))``: the Poincaré basic block, Möbius residual over channels.

    Parameters
    ----------
    in_channels, out_channels : int
    stride : int
        Of the first convolution (and of the 1x1 shortcut, present where ``stride != 1`` or the width changes).
    c : float
        Curvature magnitude.
    zero_init_residual : bool
        Start the scale of ``bn2`` at 0, so that the block starts as ``relu(s(x))`` (module docstring).
    fused : bool
        Run the fused per-pixel chain (``_fused.py``: the same function, fewer passes, about as much memory
        saved for backward as a Euclidean block); ``False`` runs the layers one by one (the definition).

    Shapes
    ------
    ``x`` (B, in_channels, H, W), each pixel in the ball -> (B, out_channels, ⌈H/stride⌉, ⌈W/stride⌉).

    Examples
    --------
    >>> from geodl.nn.poincare import expmap0
    >>> block = PoincareResidualBlock(4, 4).double()
    >>> x = expmap0(torch.rand(2, 4, 5, 5, dtype=torch.float64), dim=1)
    >>> torch.allclose(block(x), x)   # identity at initialisation (x is in the positive orthant: ReLU keeps it)
    True
    >>> PoincareResidualBlock(4, 8, stride=2)(x.float()).shape
    torch.Size([2, 8, 3, 3])
    """

    symmetry = _SYMMETRY

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, c=1.0,
                 zero_init_residual: bool = True, fused: bool = True):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, min=1, max=1 << 16)
        self.out_channels = check_int("out_channels", out_channels, min=1, max=1 << 16)
        self.stride = check_int("stride", stride, min=1, max=1 << 10)
        self.c = _check_c(c)
        if isinstance(self.c, torch.Tensor):
            raise TypeError("c: a block takes a float curvature (a learnable one would be shared by all layers: "
                            "pass it to each layer instead)")
        self.conv1 = PoincareConv2d(in_channels, out_channels, 3, stride=stride, padding=1, c=c)
        self.bn1 = PoincareBatchNorm2d(out_channels, c=c)
        self.relu = PoincareReLU(c=c)
        self.conv2 = PoincareConv2d(out_channels, out_channels, 3, padding=1, c=c)
        self.bn2 = PoincareBatchNorm2d(out_channels, c=c)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(PoincareConv2d(in_channels, out_channels, 1, stride=stride, c=c),
                                          PoincareBatchNorm2d(out_channels, c=c))
        self.fused = bool(fused)
        self.zero_init_residual = bool(zero_init_residual)
        if self.zero_init_residual:
            with torch.no_grad():
                self.bn2.scale.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, floating=True, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected {self.in_channels} channels (dim 1), got shape {tuple(x.shape)}")
        _check_input(x, self.c, 1)
        if not self.fused:
            return self._reference_forward(x)
        x = _work(x)
        return expmap0_tangent(self.forward_tangent(_logmap0(x, self.c, 1)), self.c)

    def _reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Module by module (the definition; ``fused=False``)."""
        h = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        s = _work(self.shortcut(x))
        return self.relu(_project(_mobius_add(s, h, self.c, 1), self.c, 1))

    def forward_tangent(self, v: torch.Tensor) -> torch.Tensor:
        """The fused block on tangent vectors at the origin: ``v = logmap0(x)`` -> ``logmap0(block(x))``."""
        c = self.c
        conv1, bn1, conv2, bn2 = self.conv1, self.bn1, self.conv2, self.bn2
        v1 = _conv_bn(conv1, bn1, v, relu=True)
        q2, a2 = conv2._tangent_conv(v1)
        layers = [(conv2, bn2, q2, a2)]
        if len(self.shortcut):
            conv_s, bn_s = self.shortcut[0], self.shortcut[1]
            layers.append((conv_s, bn_s) + conv_s._tangent_conv(v))
        inputs, n_in = [], []
        for conv, bn, q, a in layers:
            t = _layer_inputs(conv, bn, q, a)
            inputs += t
            n_in.append(len(t))

        def segment(*ts):
            main = _layer_call(conv2, bn2, ts[:n_in[0]], c)
            if len(layers) > 1:
                short = _layer_call(conv_s, bn_s, ts[n_in[0]:n_in[0] + n_in[1]], c)
                skip = short[0].materialise()
            else:
                skip, short = expmap0_tangent(_work(ts[-1]), c), None
            out = residual_relu(skip, main[0], c)
            stats = main[1:] + (short[1:] if short else ())
            return (out,) + stats

        if len(layers) == 1:
            inputs.append(v)
        outs = recompute(segment, 1, *inputs)
        _update(bn2, outs[1], outs[2], q2)
        if len(layers) > 1:
            _update(bn_s, outs[3], outs[4], layers[1][2])
        return outs[0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, stride={self.stride}, c={self.c}, "
                f"zero_init_residual={self.zero_init_residual}")


class PoincareResNet(nn.Module):
    """The Poincaré ResNet: :class:`geodl.nn.ResNet`'s topology with hyperbolic layers (module docstring).

    Parameters
    ----------
    depth : int
        ``6n + 2`` (8, 14, 20, 32, ...): ``n`` blocks per stage.
    widths : sequence of 3 int
        Channels (ball dimensions) of the three stages.
    in_channels : int
        Channels of the (Euclidean) input images.
    num_classes : int
        Width of the logits.
    c : float
        Curvature magnitude of the ball (``-c`` the curvature), shared by every layer.
    zero_init_residual : bool
        Start each block's residual branch at the origin (identity-based initialisation).
    fused : bool
        Run the fused per-pixel chains (the default; see :class:`PoincareResidualBlock`); ``False`` runs the
        layers one by one, the definition the fused path is tested against.

    Forward
    -------
    ``forward(x)`` with Euclidean images ``x`` (B, in_channels, H, W) in the module's dtype -> Euclidean
    logits (B, num_classes) (the scaled signed distances to the class hyperplanes). :meth:`features` returns
    the pooled point of the ball (B, widths[-1]). In eval mode the rows are independent (batch norm uses its
    running statistics). Under ``torch.autocast`` the convolutions run in the autocast dtype and the ball
    maths in float32.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> net = PoincareResNet(depth=8, widths=(4, 8, 8), in_channels=1).eval()
    >>> net(torch.rand(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    >>> bool((net.features(torch.rand(3, 1, 8, 8)).norm(dim=1) < 1).all())
    True
    """

    def __init__(self, depth: int = 20, widths=(16, 32, 64), in_channels: int = 3, num_classes: int = 10, *,
                 c=1.0, zero_init_residual: bool = True, fused: bool = True):
        super().__init__()
        n, widths, in_channels, num_classes = check_resnet_arguments(depth, widths, in_channels, num_classes)
        self.depth, self.widths, self.in_channels, self.num_classes = depth, widths, in_channels, num_classes
        self.c = _check_c(c)
        if isinstance(self.c, torch.Tensor):
            raise TypeError("c: PoincareResNet takes a float curvature")
        self.stem = nn.Sequential(PoincareConv2d(in_channels, widths[0], 3, padding=1, c=c),
                                  PoincareBatchNorm2d(widths[0], c=c), PoincareReLU(c=c))
        stages, c_in = [], widths[0]
        for s, w in enumerate(widths):
            blocks = []
            for i in range(n):
                blocks.append(PoincareResidualBlock(c_in, w, 2 if (s > 0 and i == 0) else 1, c=c,
                                                    zero_init_residual=zero_init_residual, fused=fused))
                c_in = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fused = bool(fused)
        self.pool = PoincareAvgPool2d(None, c=c)
        self.head = PoincareMLR(widths[-1], num_classes, c=c)

    @property
    def symmetry(self):
        return _SYMMETRY

    def extra_repr(self) -> str:
        return (f"depth={self.depth}, widths={self.widths}, in_channels={self.in_channels}, "
                f"num_classes={self.num_classes}, c={self.c}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled point of the ball, (B, widths[-1]), of Euclidean images ``x`` (B, in_channels, H, W)."""
        check_images(x, self.in_channels, self.head.weight.dtype, self.widths[0], maps=12)
        if not torch.compiler.is_compiling() and x.numel() and not bool(torch.isfinite(x.detach()).all()):
            raise ValueError("x: contains NaN or inf; expected finite (Euclidean) images")
        if not self.fused:
            p = _project(_expmap0(x, self.c, 1), self.c, 1)
            return self.pool(self.stages(self.stem(p))).flatten(1)
        c = self.c
        v = _conv_bn(self.stem[0], self.stem[1], clamp_tangent(_work(x), c), relu=True)  # logmap0(expmap0(x))
        for stage in self.stages:
            for block in stage:
                v = block.forward_tangent(v)
        # the tangent average pool: expmap0 of the mean of logmap0
        return _project(_expmap0(v.mean(dim=(2, 3)), c, 1), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def poincare_resnet20(**kwargs) -> PoincareResNet:
    """Poincaré ResNet-20 (widths (16, 32, 64) unless given); keyword arguments go to :class:`PoincareResNet`.

    >>> sum(p.numel() for p in poincare_resnet20().parameters())
    272495
    """
    return PoincareResNet(depth=20, **kwargs)


def poincare_resnet32(**kwargs) -> PoincareResNet:
    """Poincaré ResNet-32 (widths (16, 32, 64) unless given); keyword arguments go to :class:`PoincareResNet`.

    >>> poincare_resnet32(num_classes=100).depth
    32
    """
    return PoincareResNet(depth=32, **kwargs)
