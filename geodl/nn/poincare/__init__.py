"""Poincaré ResNet (van Spengler, Berkhout, Mettes, ICCV'23): hyperbolic layers that are correct, fast and lean.

- ``_ball.py``: the functional core on the Poincaré ball of curvature ``-c`` (``c > 0``), in the style
  of geoopt (keyword-only ``c``, ``dim=-1``): :func:`mobius_add`, :func:`mobius_scalar_mul`,
  :func:`expmap0`, :func:`logmap0`, :func:`expmap`, :func:`logmap`, :func:`project`, :func:`dist`,
  :func:`lambda_x`, :func:`gyromidpoint`, :func:`gyration`, :func:`parallel_transport`,
  :func:`ball_margin`; custom backward passes for the hot ones;
- ``_layers.py``: :class:`PoincareLinear` (HNN++'s layer, fused backward, identity initialisation) and
  :class:`PoincareMLR` (hyperbolic logits), :class:`PoincareConv2d` (β-concatenation computed by one
  Euclidean conv2d of the tangent map, no unfolding), :class:`PoincareReLU` (tangent space),
  :class:`PoincareBatchNorm2d` (midpoint batch norm with running statistics for eval mode),
  :class:`PoincareAvgPool2d` (tangent-space average pooling, global with ``kernel_size=None``);
- ``_resnet.py``: :class:`PoincareResidualBlock` (Möbius residual over channels, zero-initialised residual
  scale), :class:`PoincareResNet` and the factories :func:`poincare_resnet20`, :func:`poincare_resnet32`;
- ``_fused.py``: the per-pixel chains the blocks run (conv tail + midpoint batch norm + ReLU / Möbius
  residual), saving only their inputs and recomputing in backward; equal to the layer-by-layer definition.
"""

from geodl._lazy import lazy_module

_EXPORTS = {
    # functional core (_ball.py)
    "mobius_add": "_ball",
    "mobius_scalar_mul": "_ball",
    "expmap0": "_ball",
    "logmap0": "_ball",
    "expmap": "_ball",
    "logmap": "_ball",
    "project": "_ball",
    "dist": "_ball",
    "lambda_x": "_ball",
    "gyromidpoint": "_ball",
    "gyration": "_ball",
    "parallel_transport": "_ball",
    "ball_margin": "_ball",
    # layers (_layers.py)
    "PoincareLinear": "_layers",
    "PoincareMLR": "_layers",
    "PoincareConv2d": "_layers",
    "PoincareReLU": "_layers",
    "PoincareBatchNorm2d": "_layers",
    "PoincareAvgPool2d": "_layers",
    # the network (_resnet.py)
    "PoincareResidualBlock": "_resnet",
    "PoincareResNet": "_resnet",
    "poincare_resnet20": "_resnet",
    "poincare_resnet32": "_resnet",
}

__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)
