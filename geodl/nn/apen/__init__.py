"""APEN: approximately piecewise E(3)-equivariant point networks (Atzmon, Huang, Williams, Litany, ICLR'24).

- :func:`em_partition`, :func:`partition_from_labels`, :class:`Partition` (``_clustering.py``): partitions of
  point clouds from votes, by EM on a Gaussian mixture with repulsion and merging;
- :class:`APENLayer`, :class:`APEN`, :class:`APENOutput`, :func:`vote_loss` (``_model.py``): per-part frame
  averaging over predicted partitions, fine to coarse;
- :func:`piecewise_bound` and the partition diagnostics (``_bound.py``): the measured piecewise
  equivariance error beside the two terms of the paper's bound.
"""

from geodl.nn.apen._bound import assignment_uncertainty, piecewise_bound, piecewise_motion, subpartition_violation
from geodl.nn.apen._clustering import Partition, em_partition, partition_from_labels
from geodl.nn.apen._model import APEN, APENLayer, APENOutput, vote_loss

__all__ = ["APEN", "APENLayer", "APENOutput", "Partition", "assignment_uncertainty", "em_partition",
           "partition_from_labels", "piecewise_bound", "piecewise_motion", "subpartition_violation", "vote_loss"]
