"""Plain backbones that the symmetry methods wrap, one per file, all on the backbone call protocol.

``forward(x, pos, batch=None, *, num_graphs=None, **extra)`` with PyG-style flat ``(N, ...)``
tensors; :class:`~geodl.nn.FrameAveraging` calls its backbone this way. The exception is
:class:`ResNet` (``resnet.py``), the Euclidean image baseline of the Poincaré ResNet: ``forward(x)``
on ``(B, C, H, W)`` images.
"""

from geodl._lazy import lazy_module

_EXPORTS = {
    "PointNet": "pointnet",
    "DGCNN": "dgcnn",
    "EdgeConv": "dgcnn",
    "EGNN": "egnn",
    "EGNNConv": "egnn_conv",
    "full_graph_edges": "_common",
    "ResNet": "resnet",
}

__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)
