"""Procedural datasets (the embedded defaults) and real-format loaders. Nothing is downloaded.

Generated data is cached under :func:`default_root` (``$GEODL_DATA``, a root set with
:func:`set_root`, or the user cache ``~/.cache/geodl``); ``geodl data`` shows, lists, verifies
and generates it.
"""

from geodl._lazy import lazy_module

_EXPORTS = {
    # the data home (_root.py)
    "default_root": "_root",
    "set_root": "_root",
    # charged n-body (_nbody.py)
    "NBodyDataset": "_nbody",
    "generate_nbody": "_nbody",
    "reference_initial_states": "_nbody",
    # sphere tasks (_sphere.py)
    "landocean_dataset": "_sphere",
    "checkerboard_dataset": "_sphere",
    "fibonacci_sphere": "_sphere",
    "uniform_sphere": "_sphere",
    "land_mask": "_sphere",
    "healpix_lonlat": "_sphere",
    # ModelNet10/40 from a local folder (_modelnet.py) and the OFF reader (_off.py)
    "ModelNet": "_modelnet",
    "MODELNET10_CLASSES": "_modelnet",
    "MODELNET40_CLASSES": "_modelnet",
    "read_off": "_off",
    # DynLab articulated scans from a local folder (_dynlab.py)
    "DynLab": "_dynlab",
    "read_dynlab_pose": "_dynlab",
    # SYMSOL and PASCAL3D+ from a local folder (_symsol.py, _pascal3d.py)
    "Symsol": "_symsol",
    "Pascal3D": "_pascal3d",
    "PASCAL3D_CATEGORIES": "_pascal3d",
    "pascal3d_rotation": "_pascal3d",
    # synthetic shapes, the embedded default of the rotated-classification task (_shapes.py)
    "SyntheticShapes": "_shapes",
    "SHAPE_CLASSES": "_shapes",
    # partial category-level point clouds with poses, the embedded default of VI-Net (_categories.py)
    "CategoryPoses": "_categories",
    "POSE_CATEGORIES": "_categories",
    "symmetric_rotation_error": "_categories",
    # articulated multi-part shapes, the embedded default of APEN (_articulated.py)
    "ArticulatedShapes": "_articulated",
    "ARTICULATED_CLASSES": "_articulated",
    "PART_LABELS": "_articulated",
    "PART_OFFSETS": "_articulated",
    # SYMSOL-like renders, the embedded default of the pose benchmark (_symsol_like.py)
    "SymsolLike": "_symsol_like",
    "SYMSOL_SHAPES": "_symsol_like",
    "symmetry_set": "_symsol_like",
    # image data of the Poincaré ResNet benchmark: sklearn's 8x8 digits, CIFAR-10/100 binary (_images.py)
    "Digits": "_images",
    "CIFAR": "_images",
    "CIFAR10_CLASSES": "_images",
    "CIFAR100_CLASSES": "_images",
    # modified inertia, the soft-equivariance benchmark's data (_inertia.py)
    "ModifiedInertia": "_inertia",
    "inertia_tensor": "_inertia",
    # the cached-dataset registry behind `geodl data` (_registry.py)
    "DATASETS": "_registry",
    "cached_files": "_registry",
}

__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)
