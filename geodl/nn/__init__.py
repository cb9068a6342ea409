"""The symmetry core: one module (or small package) per method, plus the plain backbones.

Public names resolve lazily from private modules. Method modules that are public in their own
right (``geodl.nn.location``) are imported as ``from geodl.nn import location``.
"""

from geodl._lazy import lazy_exports

_EXPORTS = {
    # frame averaging (_frame_averaging.py)
    "frames": "_frame_averaging",
    "Frames": "_frame_averaging",
    "FrameAveraging": "_frame_averaging",
    # backbones (_backbones.py)
    "PointNet": "_backbones",
    "EGNN": "_backbones",
    # FA-GNN (_fagnn.py)
    "FAGNN": "_fagnn",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__():
    return __all__ + ["location"]
