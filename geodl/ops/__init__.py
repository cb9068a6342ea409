"""Kernels every geodl method runs on.

Each op has a plain-torch reference (CPU, any device) and, where it pays, a Triton kernel used on
CUDA; both are registered with ``torch.library.custom_op`` so ``torch.compile(fullgraph=True)``
works. One switch picks the back end of every op: :func:`set_backend` / :func:`use_backend`
(``"auto"``, ``"torch"``, ``"triton"``) and ``GEODL_DISABLE_TRITON=1``; :func:`record_backends`
shows which back end each op ran. Importing ``geodl.ops`` needs only torch: names resolve lazily
from private modules.
"""

from geodl._lazy import lazy_module

_EXPORTS = {
    # scatter / segment / gather (_scatter.py)
    "scatter": "_scatter",
    "segment": "_scatter",
    "gather": "_scatter",
    "gather_csr": "_scatter",
    "scatter_softmax": "_scatter",
    "scatter_log_softmax": "_scatter",
    "scatter_logsumexp": "_scatter",
    "scatter_std": "_scatter",
    # the back-end switch and back-end discovery (_dispatch.py)
    "available_backends": "_dispatch",
    "get_backend": "_dispatch",
    "set_backend": "_dispatch",
    "use_backend": "_dispatch",
    "record_backends": "_dispatch",
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

__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)
