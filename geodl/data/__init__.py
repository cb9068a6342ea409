"""Procedural datasets (the embedded defaults) and real-format loaders. Nothing is downloaded."""

from geodl._lazy import lazy_exports

_EXPORTS = {
    # charged n-body (_nbody.py)
    "NBodyDataset": "_nbody",
    "generate_nbody": "_nbody",
    # sphere tasks (_sphere.py)
    "landocean_dataset": "_sphere",
    "checkerboard_dataset": "_sphere",
    "fibonacci_sphere": "_sphere",
    "uniform_sphere": "_sphere",
    "land_mask": "_sphere",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)


def default_root():
    """The default data root: ``$GEODL_DATA`` or ``<repo>/datasets/cache`` (ignored by git)."""
    import os
    from pathlib import Path

    env = os.environ.get("GEODL_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "datasets" / "cache"
