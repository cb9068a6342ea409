"""Soft equivariance under mixed symmetries (Kim et al., ICML'23): representations, projectors,
regularisers and automatic strength tuning.

- ``_reps.py``: :class:`Rep`, direct sums and tensor products of scalars, vectors, points,
  pseudovectors, tensor2 and ``sh<l>``; acted on through :func:`geodl.groups.act` block by block;
  importing this package registers the kind ``"rep:<spec>"``;
- ``_groups.py``: :func:`candidate_group` (O3, SO3, O2/SO2 about each axis, scale, T3 and products
  such as ``"O2z+scale"``), :class:`CandidateGroup`, :data:`CANDIDATE_GROUPS`;
- ``_projector.py``: :func:`equivariant_basis` (cached :class:`EquivariantBasis`: one small
  orthonormal basis per pair of bases, never a dense ``d²×d²`` matrix) and :func:`projection_penalty`;
- ``_layers.py``: :class:`RepLinear` (free or hard), :class:`RPPLinear`, :class:`RepTensorProduct`,
  :class:`GatedNonlinearity` / :func:`gated_rep`, :class:`RepMLP`;
- ``_regularisers.py``: :func:`projection_regulariser`, :func:`mc_regulariser`, :class:`StrengthTuner`
  (automatic strengths, an epoch hook of :func:`geodl.bench.train`) and :func:`symmetry_report`.
"""

from geodl._lazy import lazy_module
from geodl.nn.soft_equivariance import _reps  # noqa: F401  (registers the kind "rep:<spec>")

_EXPORTS = {
    # representations (_reps.py)
    "Rep": "_reps",
    # candidate groups (_groups.py)
    "CandidateGroup": "_groups",
    "candidate_group": "_groups",
    "CANDIDATE_GROUPS": "_groups",
    # projectors (_projector.py)
    "EquivariantBasis": "_projector",
    "equivariant_basis": "_projector",
    "projection_penalty": "_projector",
    # layers and the EMLP-style network (_layers.py)
    "RepLinear": "_layers",
    "RPPLinear": "_layers",
    "RepTensorProduct": "_layers",
    "GatedNonlinearity": "_layers",
    "gated_rep": "_layers",
    "RepMLP": "_layers",
    # regularisers, strength tuning and the symmetry report (_regularisers.py)
    "projection_regulariser": "_regularisers",
    "mc_regulariser": "_regularisers",
    "StrengthTuner": "_regularisers",
    "symmetry_report": "_regularisers",
}

__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)
