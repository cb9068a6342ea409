"""Frame averaging (Puny et al., "Frame Averaging for Invariant and Equivariant Network Design", ICLR 2022).

- :func:`frames` / :class:`Frames`: PCA frames of point clouds for O(d), SO(d), E(d), SE(d)
  (global, per segment or per kNN neighbourhood) with an explicit degeneracy policy;
- :class:`FrameAveraging`: any backbone on the call protocol
  ``forward(x, pos, batch=None, *, num_graphs=None, **extra)`` (PointNet, EGNN, a PyG
  ``MessagePassing`` model taking ``edge_index``) made invariant or equivariant;
- :class:`FAGNN`: the frame-averaged message-passing network of the paper's n-body experiment.
"""

from geodl._lazy import lazy_module

_EXPORTS = {
    "frames": "_frames",
    "Frames": "_frames",
    "FrameAveraging": "_averaging",
    "FAGNN": "_fagnn",
}

__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)
