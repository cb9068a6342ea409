"""VI-Net (Lin et al., "VI-Net: Boosting Category-level 6D Object Pose Estimation via Learning
Decoupled Rotations on the Spherical Representations", ICCV 2023): point clouds projected to
equirectangular spherical maps, SPA-SConv spherical convolutions (pole and seam padding, pole-flip
symmetric kernels), the spherical FPN, the V-branch (viewpoint bins) and the I-branch (in-plane
rotation), and :class:`VINet`.
"""

from geodl._lazy import lazy_module

_EXPORTS = {
    # point cloud -> spherical maps (_projection.py)
    "spherical_projection": "_projection",
    "SphericalProjection": "_projection",
    # SPA-SConv and pooling (_conv.py)
    "spherical_pad": "_conv",
    "SPAConv2d": "_conv",
    "SphericalMaxPool2d": "_conv",
    # FPN, branches, model (_fpn.py, _heads.py, _vinet.py)
    "SphericalFPN": "_fpn",
    "VBranch": "_heads",
    "IBranch": "_heads",
    "focal_loss": "_heads",
    "viewpoint_labels": "_heads",
    "VINet": "_vinet",
}

__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)
