"""Frame averaging (Puny et al., "Frame Averaging for Invariant and Equivariant Network Design", ICLR 2022).

- :func:`frames` / :class:`Frames`: PCA frames of point clouds for O(d), SO(d), E(d), SE(d)
  (global, per segment or per kNN neighbourhood) with an explicit degeneracy policy;
- :class:`FrameAveraging`: any backbone on the call protocol
  ``forward(x, pos, batch=None, *, num_graphs=None, **extra)`` (PointNet, EGNN, a PyG
  ``MessagePassing`` model taking ``edge_index``) made invariant or equivariant;
- :class:`FAGNN`: the frame-averaged message-passing network of the paper's n-body experiment.
"""

# Eager imports: the method's modules need only torch and geodl's lower layers.
from geodl.nn.frame_averaging._averaging import FrameAveraging
from geodl.nn.frame_averaging._fagnn import FAGNN
from geodl.nn.frame_averaging._frames import Frames, frames

__all__ = ["frames", "Frames", "FrameAveraging", "FAGNN"]
