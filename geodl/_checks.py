"""Argument validation shared by every subpackage.

Errors name the argument and say what was expected (DESIGN.md, conventions). These helpers never
force a host sync on CUDA unless the caller asks for value checks (``finite=True`` on a CUDA
tensor does sync; hot paths pass ``finite=False`` there).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

__all__ = ["check_tensor", "check_choice", "check_finite", "check_index"]


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
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= size:
            raise ValueError(f"{name}: values must lie in [0, {size}), got range [{lo}, {hi}]")
    return index
