"""Which kernel back ends each :mod:`geodl.ops` op can use on this machine (``geodl info`` prints it).

Every op has the plain-torch reference (any device). An op module ``_x.py`` with Triton kernels
declares them in a module-level ``TRITON_OPS`` tuple of public op names; an op not named in such
a tuple runs on the torch reference everywhere. Triton is listed only when it is importable, and marked unusable when no
CUDA device is present (the kernels run only on CUDA tensors; tests use the interpreter).
"""

from __future__ import annotations

import importlib
import importlib.util

import torch

__all__ = ["available_backends"]


def _triton_label() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return None
    try:
        importlib.import_module("triton")
    except Exception:  # installed but broken (e.g. no compatible driver libraries)
        return None
    return "triton (cuda)" if torch.cuda.is_available() else "triton (cuda only; no CUDA device here)"


def available_backends() -> dict[str, list[str]]:
    """Map each public op of :mod:`geodl.ops` to the back ends usable here.

    Returns
    -------
    dict[str, list[str]]
        ``{op_name: ["torch", ...]}``; ``"torch"`` is always first.

    Examples
    --------
    >>> from geodl.ops import available_backends
    >>> available_backends()["scatter"][0]
    'torch'
    """
    from geodl import ops

    triton = _triton_label()
    table: dict[str, list[str]] = {}
    for name in ops.__all__:
        if name == "available_backends":
            continue
        table[name] = ["torch"]
        if triton is None:
            continue
        modname = ops._EXPORTS[name]
        try:
            module = importlib.import_module(f"geodl.ops.{modname}")
        except ImportError:  # another op module not written / importable yet
            continue
        if name in getattr(module, "TRITON_OPS", ()):
            table[name].append(triton)
    return table
