"""Parameter lists for pytest: the devices and dtypes a test should sweep."""

from __future__ import annotations

import torch

__all__ = ["devices", "dtypes"]


def devices(cuda: bool = True) -> list[str]:
    """``["cpu"]``, plus ``"cuda"`` when ``cuda`` is true and a CUDA device is present.

    Examples
    --------
    >>> import pytest, torch
    >>> from geodl.testing import devices
    >>> devices()[0], ("cuda" in devices()) == torch.cuda.is_available()
    ('cpu', True)
    >>> mark = pytest.mark.parametrize("device", devices())
    """
    return ["cpu"] + (["cuda"] if cuda and torch.cuda.is_available() else [])


def dtypes(half: bool = False) -> list[torch.dtype]:
    """``[torch.float32, torch.float64]`` (with ``half=True`` also ``torch.bfloat16``).

    Examples
    --------
    >>> from geodl.testing import dtypes
    >>> dtypes()
    [torch.float32, torch.float64]
    """
    return [torch.float32, torch.float64] + ([torch.bfloat16] if half else [])
