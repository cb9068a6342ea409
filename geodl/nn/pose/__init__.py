"""Pose estimation on SO(3): distributions from SO(3) Fourier coefficients and metrics under symmetry.

Methods: the SO(3) output distribution of Image2Sphere (Klee et al., ICLR'23) and of the induced
pose heads (Howell et al., NeurIPS'23), normalised on the HEALPix SO(3) grid as IPDF (Murphy et
al., ICML'21) does.

- :class:`SO3Distribution` (``_distribution.py``): logits ``Σ_l tr(C^lᵀ D^l(R))`` on the grid,
  ``log_prob`` with an online chunked log-sum-exp (the recursion-5 grid in well under 2 GB),
  ``probs``, ``mode`` (grid argmax + gradient ascent), ``sample``, ``cross_entropy``;
- :func:`rotation_errors`, :func:`median_error`, :func:`accuracy_at`, :func:`average_log_likelihood`
  (``_metrics.py``): geodesic errors in degrees as the minimum over each sample's symmetry set, and the
  log-likelihood averaged over every ground truth of the set (IPDF; Image2Sphere's one random draw as an option),
  :func:`spread` (IPDF's expected angle from the distribution to the nearest ground truth);
- :class:`S2Conv`, :class:`SO3Conv` (exactly equivariant, Fourier domain: ``F^l = y^l ψ^lᵀ`` and
  ``F^l Ψ^l``), :class:`SO3Activation` (pointwise on the HEALPix SO(3) grid, approximately
  equivariant), :func:`s2_near_pole_grid` (``_convs.py``);
- :class:`OrthographicLift`, :class:`InducedLift` (``_lifts.py``): image feature map -> S2 coefficients
  (Image2Sphere's orthographic hemisphere lift) and -> SO(3) (or S2) coefficients (the induced lift's
  circular-harmonic filters, exactly equivariant to quarter turns of a square map).
"""

from geodl.nn.pose._convs import S2Conv, SO3Activation, SO3Conv, s2_near_pole_grid
from geodl.nn.pose._distribution import SO3Distribution
from geodl.nn.pose._lifts import InducedLift, OrthographicLift
from geodl.nn.pose._metrics import accuracy_at, average_log_likelihood, median_error, rotation_errors, spread

__all__ = ["S2Conv", "SO3Activation", "SO3Conv", "s2_near_pole_grid", "SO3Distribution", "accuracy_at",
           "InducedLift", "OrthographicLift",
           "average_log_likelihood", "median_error", "rotation_errors", "spread"]
