"""Optional dependencies: import them on first use, and say which ``pip install`` fixes a missing one.

geodl's hard dependencies are the packages it imports at run time on its main paths (torch, numpy,
torch-geometric, e3nn, healpy, roma, tqdm); everything else is an extra of ``pyproject.toml``.
"""

from __future__ import annotations

import importlib

__all__ = ["require", "EXTRAS"]

# import name -> (pip distribution, geodl extra that brings it)
EXTRAS: dict[str, tuple[str, str]] = {
    "matplotlib": ("matplotlib", "bench"),
    "global_land_mask": ("global-land-mask", "bench"),
    "triton": ("triton", "gpu"),
    "geomstats": ("geomstats", "geo"),
    "hypothesis": ("hypothesis", "test"),
    "pytest": ("pytest", "test"),
    "trimesh": ("trimesh", "mesh"),
    "scipy": ("scipy", "bench"),  # also in the test extra
    "PIL": ("pillow", "bench"),
    "sklearn": ("scikit-learn", "bench"),
    "sphericart.torch": ("sphericart-torch", "peers"),
    "hypll": ("hypll", "peers"),
    "geoopt": ("geoopt", "peers"),
}


def require(module: str, what: str = ""):
    """Import ``module`` or raise ``ImportError`` naming the ``pip install`` that provides it.

    Parameters
    ----------
    module : str
        Import name, e.g. ``"matplotlib.pyplot"``.
    what : str
        What needs it, for the message (e.g. ``"plot_curves"``).

    Examples
    --------
    >>> require("math").sqrt(4.0)
    2.0
    >>> try:
    ...     require("matplotlib_does_not_exist", "a plot")
    ... except ImportError as exc:
    ...     print(str(exc).split(";")[0])
    a plot needs the optional package 'matplotlib_does_not_exist'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        dist, extra = EXTRAS.get(module, EXTRAS.get(top, (top, None)))
        fix = f"pip install {dist}" + (f"  (or: pip install 'geodl[{extra}]')" if extra else "")
        who = what or "this feature"
        raise ImportError(f"{who} needs the optional package {module!r}; install it with: {fix}") from exc
