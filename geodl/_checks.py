"""Argument validation shared by every subpackage.

Errors name the argument and say what was expected (see docs/architecture.md, conventions). These helpers never
force a host sync on CUDA unless the caller asks for value checks (``finite=True`` on a CUDA
tensor does sync; hot paths pass ``finite=False`` there).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

__all__ = ["check_tensor", "check_choice", "check_finite", "check_index", "check_int", "check_positive_int", "check_number"]


def _shape_str(shape: Sequence) -> str:
    return "(" + ", ".join("..." if s is Ellipsis else ("*" if s is None else str(s)) for s in shape) + ")"


def check_tensor(
    name: str,
    x,
    *,
    shape: Sequence | None = None,
    ndim: int | Iterable[int] | None = None,
    dtypes: Iterable[torch.dtype] | None = None,
    floating: bool = False,
    finite: bool = False,
    min_rows: int | None = None,
) -> torch.Tensor:
    """Validate a tensor argument and return it.

    ``shape`` is a pattern: ints must match, ``None`` matches any size, a leading ``...`` matches any
    number of batch dimensions, e.g. ``(..., 3, 3)``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            raise ValueError(f"{name}: expected a tensor with {' or '.join(map(str, allowed))} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        pat = list(shape)
        ok = True
        if pat and pat[0] is Ellipsis:
            tail = pat[1:]
            if x.dim() < len(tail):
                ok = False
            else:
                ok = all(p is None or p == s for p, s in zip(tail, x.shape[x.dim() - len(tail):]))
        else:
            ok = x.dim() == len(pat) and all(p is None or p == s for p, s in zip(pat, x.shape))
        if not ok:
            raise ValueError(f"{name}: expected shape {_shape_str(pat)}, got {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if dtypes is not None:
        dtypes = tuple(dtypes)
        if x.dtype not in dtypes:
            raise TypeError(f"{name}: expected dtype in {[str(d) for d in dtypes]}, got {x.dtype}")
    if min_rows is not None and (x.dim() == 0 or x.shape[0] < min_rows):
        raise ValueError(f"{name}: expected at least {min_rows} rows, got shape {tuple(x.shape)}")
    if finite:
        check_finite(name, x)
    return x


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or inf (syncs on CUDA)."""
    if x.is_floating_point() or x.is_complex():
        if x.numel() and not bool(torch.isfinite(x).all()):
            bad = "NaN" if bool(torch.isnan(x).any()) else "inf"
            raise ValueError(f"{name}: contains {bad} values; expected finite numbers")
    return x


def check_choice(name: str, value, choices: Iterable) -> object:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_index(name: str, index: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Check an integer index tensor; with ``size``, also its range (syncs on CUDA)."""
    if not isinstance(index, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of integers, got {type(index).__name__}")
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: expected an int64 or int32 tensor, got {index.dtype}")
    if size is not None and index.numel():
        lo, hi = (int(v) for v in torch.aminmax(index))  # one pass over the index
        if lo < 0 or hi >= size:
            raise ValueError(f"{name}: values must lie in [0, {size}), got range [{lo}, {hi}]")
    return index


def check_int(name: str, value, *, min: int | None = None, max: int | None = None) -> int:
    """Raise unless ``value`` is a Python int (not bool) in ``[min, max]``; return it.

    ``TypeError`` for a non-integer (including ``bool`` and floats), ``ValueError`` out of range.
    Integral 0-d integer tensors and numpy integers are accepted and returned as ``int``.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an int, got a bool ({value!r})")
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and not value.is_complex() and value.dtype != torch.bool:
        value = int(value)
    elif not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
        except ImportError:  # numpy is a hard dependency; this only guards odd environments
            pass
    if not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r})")
    if (min is not None and value < min) or (max is not None and value > max):
        lo = "-inf" if min is None else str(min)
        hi = "inf" if max is None else str(max)
        what = {(1, None): "a positive int", (0, None): "a non-negative int"}.get((min, max), f"an int in [{lo}, {hi}]")
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return value


def check_positive_int(name: str, value) -> int:
    """Shorthand for ``check_int(name, value, min=1)``."""
    return check_int(name, value, min=1)


def check_number(name: str, value, *, positive: bool = False, nonnegative: bool = False,
                 lo: float | None = None, hi: float | None = None) -> float:
    """Raise unless ``value`` is a finite real number (not bool) meeting the bounds; return it as float."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            ok = isinstance(value, (np.integer, np.floating))
        except ImportError:
            ok = False
        if not ok:
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    if nonnegative and not value >= 0:
        raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name}: expected a number in [{lo}, {hi}], got {value!r}")
    return value
