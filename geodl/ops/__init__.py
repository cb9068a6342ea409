"""Kernels every geodl method runs on (DESIGN.md layer 2).

Each op has a plain-torch reference (CPU, any device) and, where it pays, a Triton kernel used on
CUDA; both are registered with ``torch.library.custom_op`` so ``torch.compile(fullgraph=True)``
works. Importing ``geodl.ops`` needs only torch: names resolve lazily from private modules.
"""

from geodl._lazy import lazy_exports

_EXPORTS = {
    # scatter / segment / gather (_scatter.py)
    "scatter": "_scatter",
    "segment": "_scatter",
    "gather": "_scatter",
    "gather_csr": "_scatter",
    "scatter_softmax": "_scatter",
    "scatter_logsumexp": "_scatter",
    # back-end discovery (_backends.py)
    "available_backends": "_backends",
    # 3x3 symmetric eigensolver and segment covariances (_eigh.py)
    "eigh3x3": "_eigh",
    "segment_covariance": "_eigh",
    # neighbour search (_neighbors.py)
    "knn_graph": "_neighbors",
    "radius_graph": "_neighbors",
    "farthest_point_sampling": "_neighbors",
    # spherical harmonics (_sh.py)
    "spherical_harmonics": "_sh",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__():
    return __all__
