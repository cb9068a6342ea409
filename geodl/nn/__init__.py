"""The symmetry core: one public module or subpackage per method, plus the plain backbones.

- :mod:`geodl.nn.frame_averaging`: ``frames``, ``Frames``, ``FrameAveraging``, ``FAGNN``;
- :mod:`geodl.nn.tinv`: TinvNN transformation-invariant, distance-preserving initial
  representations (``TinvNN``, ``tinv_coordinates``, ``classical_mds``, ``graph_mds``);
- :mod:`geodl.nn.apen`: APEN, approximately piecewise E(3)-equivariant point networks (partitions by EM on
  votes, per-part frame averaging, the measured bound);
- :mod:`geodl.nn.pose`: ``SO3Distribution`` (SO(3) Fourier coefficients normalised on the HEALPix
  SO(3) grid) and pose metrics under symmetry;
- :mod:`geodl.nn.spherical`: VI-Net spherical maps, SPA-SConv, the spherical FPN, ``VINet``;
- :mod:`geodl.nn.poincare`: Poincaré-ball operations (a geoopt-style functional core), the hyperbolic
  layers, ``PoincareResidualBlock`` and ``PoincareResNet``;
- :mod:`geodl.nn.location`: spherical-harmonic location encoders and their baselines;
- :mod:`geodl.nn.backbones`: ``PointNet``, ``DGCNN`` and its layer ``EdgeConv``, ``EGNN`` and its
  layer ``EGNNConv``, one per file.

The flagship names resolve lazily from here (``from geodl.nn import FrameAveraging``); method
modules are imported as ``from geodl.nn import location``.
"""

from geodl._lazy import lazy_module

_EXPORTS = {
    # frame averaging
    "frames": "frame_averaging",
    "Frames": "frame_averaging",
    "FrameAveraging": "frame_averaging",
    "FAGNN": "frame_averaging",
    # TinvNN
    "TinvNN": "tinv",
    "tinv_coordinates": "tinv",
    # VI-Net
    "VINet": "spherical",
    # APEN
    "APEN": "apen",
    # pose (SO(3) distributions)
    "SO3Distribution": "pose",
    # backbones
    "ResNet": "backbones",
    "PointNet": "backbones",
    "DGCNN": "backbones",
    "EdgeConv": "backbones",
    "EGNN": "backbones",
    "EGNNConv": "backbones",
}

__getattr__, __dir__, __all__ = lazy_module(
    __name__, _EXPORTS, extra=("apen", "backbones", "frame_averaging", "location", "poincare", "pose", "spherical", "tinv"), public=sorted(_EXPORTS))
