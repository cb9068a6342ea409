"""Random example inputs matching a list of kinds (what ``geodl check`` feeds a model)."""

from __future__ import annotations

import torch

from geodl._checks import check_choice

__all__ = ["random_inputs"]


def _one(kind: str, n: int, dim: int, dtype, generator, device) -> torch.Tensor:
    base = kind[len("node:"):] if kind.startswith("node:") else kind
    if base == "edge_index":
        if n < 2:
            return torch.zeros(2, 0, dtype=torch.long, device=device)
        src = torch.randint(0, n, (2 * n,), generator=generator)
        dst = (src + torch.randint(1, n, (2 * n,), generator=generator)) % n  # no self-loops
        return torch.stack([src, dst]).to(device)
    if base.startswith("sh:"):
        shape = (n, (int(base[3:]) + 1) ** 2)
    else:
        shape = {"scalar": (n,), "perm": (n,), "points": (n, dim), "vectors": (n, dim),
                 "pseudovectors": (n, dim), "tensor2": (n, dim, dim)}[base]
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)


def random_inputs(kinds, n_points: int = 16, *, dim: int = 3, dtype: torch.dtype = torch.float64,
                  generator: torch.Generator | None = None, device=None) -> tuple:
    """Standard-normal tensors with the shapes the given kinds expect, ``n_points`` rows each.

    Parameters
    ----------
    kinds : sequence of str
        E.g. ``["node:points", "edge_index"]``. ``scalar``/``perm`` give ``(n,)``, ``points``/
        ``vectors``/``pseudovectors`` ``(n, dim)``, ``tensor2`` ``(n, dim, dim)``, ``sh:L``
        ``(n, (L+1)**2)``, ``edge_index`` a random ``(2, 2n)`` long tensor without self-loops.
    n_points : int
        Number of rows (nodes).
    dim : int
        Space dimension (2 or 3).
    dtype : torch.dtype
        Floating dtype of the non-index tensors.
    generator : torch.Generator, optional
        Source of randomness (CPU); ``None`` uses the global one.
    device : torch.device or str, optional

    Returns
    -------
    tuple of Tensor
        One tensor per kind.

    Examples
    --------
    >>> import torch
    >>> from geodl.testing import random_inputs
    >>> pos, ei = random_inputs(["node:points", "edge_index"], 5, generator=torch.Generator().manual_seed(0))
    >>> tuple(pos.shape), tuple(ei.shape), ei.dtype
    ((5, 3), (2, 10), torch.int64)
    """
    from geodl.groups import parse_kind

    if isinstance(kinds, str):
        raise TypeError("kinds: expected a sequence of kind strings, got a single str (wrap it in a list)")
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1:
        raise ValueError(f"n_points: expected a positive int, got {n_points!r}")
    check_choice("dim", dim, (2, 3))
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    out = []
    for i, kind in enumerate(kinds):
        if not isinstance(kind, str):
            raise TypeError(f"kinds[{i}]: expected a kind string, got {type(kind).__name__}")
        try:
            parse_kind(kind)
            out.append(_one(kind, n_points, dim, dtype, generator, device))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"kinds[{i}]: cannot make an input of kind {kind!r} ({exc})") from None
    return tuple(out)
