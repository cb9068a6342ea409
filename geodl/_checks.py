"""Argument validation shared by every subpackage.

Errors name the argument and say what was expected (see docs/architecture.md, conventions). These helpers never
force a host sync on CUDA unless the caller asks for value checks (``finite=True`` on a CUDA
tensor does sync; hot paths pass ``finite=False`` there).
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import torch

__all__ = ["check_tensor", "check_choice", "check_finite", "check_index", "check_int", "check_positive_int", "check_number",
           "check_memory", "check_alloc", "check_path", "check_item_index"]


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


def check_path(name: str, value):
    """Raise ``TypeError`` unless ``value`` is a ``str`` or ``os.PathLike`` (not bytes); return a ``Path``."""
    from pathlib import Path

    if isinstance(value, (bytes, bytearray)) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike path, got {type(value).__name__} ({value!r:.60})")
    return Path(value)


# Output sizes are checked against the memory they would take before anything is allocated.
# Requests below _CHECKED_BYTES are never looked at further (no cost in hot paths); above it the
# memory available on the device is read and a request that does not fit raises ValueError.
_CHECKED_BYTES = 1 << 30
_FALLBACK_LIMIT = 16 << 30  # where the available memory cannot be read


def _available_bytes(device: torch.device) -> int:
    """Memory that an allocation on ``device`` can take now (free + cached on CUDA, MemAvailable on CPU)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    return _FALLBACK_LIMIT


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def check_memory(name: str, value, nbytes: int, device, what: str = "an output") -> None:
    """Raise ``ValueError`` naming ``name`` (whose value ``value`` asks for ``what`` taking
    ``nbytes`` bytes) when that would not fit in the memory available on ``device``; requests up
    to 1 GiB are not looked at (no cost in hot paths). Skipped under ``torch.compile``.

    >>> check_memory("lmax", 10, 1000, "cpu")
    >>> check_memory("lmax", 10**9, 2**70, "cpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: lmax: 1000000000 asks for an output, which would need ... GiB of memory; ...
    """
    if nbytes <= _CHECKED_BYTES or torch.compiler.is_compiling():
        return
    device = torch.device(device)
    limit = _available_bytes(device)
    if nbytes > limit:
        raise ValueError(f"{name}: {value} asks for {what}, which would need {_gib(nbytes)} of memory; "
                         f"{_gib(limit)} is available on {device}")


def check_alloc(name: str, value, rows: int, width: int, dtype: torch.dtype, device: torch.device,
                row_bytes: int = 0, elem_bytes: int = 0) -> None:
    """Raise ``ValueError`` naming ``name`` (whose value ``value`` asks for ``rows`` output rows of
    ``width`` elements of ``dtype``, plus ``elem_bytes`` per element and ``row_bytes`` per row of
    bookkeeping) when that output would not fit in the memory available on ``device``. Skipped
    under ``torch.compile``."""
    need = rows * (width * (dtype.itemsize + elem_bytes) + row_bytes)
    check_memory(name, value, need, device, what=f"an output of {rows} rows x {width} {dtype} values")


def check_item_index(index, n: int, what: str = "clouds") -> int:
    """The non-negative position of dataset item ``index`` among ``n`` (negative indices count from the end).

    ``TypeError`` naming ``index`` unless it is an int; ``IndexError`` (so that iterating over a
    dataset stops at its end) when it is out of range.

    Examples
    --------
    >>> check_item_index(-1, 5)
    4
    """
    i = check_int("index", index)
    if not -n <= i < n:
        raise IndexError(f"index: {index} out of range for a dataset of {n} {what}")
    return i % n


def check_name_selection(name: str, value, known, *, item: str, what: str, none_hint: str, aliases=None) -> list[str]:
    """A non-empty selection of names from ``known`` (a str is one name, or an alias for a list), without
    repeats, in the order of ``known``. ``TypeError``/``ValueError`` naming ``name``; ``item`` names one entry
    ("category"), ``what`` the known set ("the PASCAL3D+ categories"), ``none_hint`` what None selects.

    Examples
    --------
    >>> check_name_selection("shapes", ["cyl", "tet"], ("tet", "cube", "cyl"), item="shape", what="the shapes",
    ...                      none_hint="every shape")
    ['tet', 'cyl']
    """
    aliases = aliases or {}
    if isinstance(value, str):
        if value in aliases:
            return list(aliases[value])
        value = [value]
    alias_text = f" (or {', '.join(map(repr, aliases))})" if aliases else ""
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name}: expected None, a {item} name{alias_text} or a list of them, got "
                        f"{type(value).__name__}") from None
    for v in items:
        if not isinstance(v, str):
            raise TypeError(f"{name}: expected str entries, got {type(v).__name__} ({v!r:.40})")
    if not items:
        raise ValueError(f"{name}: an empty selection; pass None for {none_hint}")
    unknown = [v for v in items if v not in known]
    if unknown:
        raise ValueError(f"{name}: unknown {', '.join(map(repr, unknown))}; {what} are {', '.join(known)}{alias_text}")
    if len(set(items)) != len(items):
        raise ValueError(f"{name}: {items} names a {item} twice")
    return sorted(items, key=list(known).index)
