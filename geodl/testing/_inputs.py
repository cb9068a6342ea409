"""Random example inputs matching a list of kinds (what ``geodl check`` feeds a model)."""

from __future__ import annotations

import torch

from geodl._checks import check_choice, check_memory, check_positive_int

__all__ = ["random_inputs"]


def random_inputs(kinds, n_points: int = 16, *, dim: int = 3, dtype: torch.dtype = torch.float64,
                  generator: torch.Generator | None = None, device=None) -> tuple:
    """Random tensors with the shapes the given kinds expect, ``n_points`` rows each.

    Each kind's generator comes from the kind registry (:func:`geodl.groups.register_kind`).

    Parameters
    ----------
    kinds : sequence of str
        E.g. ``["node:points", "edge_index"]``. Standard normal: ``scalar``/``perm`` give ``(n,)``,
        ``points``/``vectors``/``pseudovectors`` ``(n, dim)``, ``tensor2`` ``(n, dim, dim)``, ``sh:L``
        ``(n, (L+1)**2)``, ``so3:L`` ``(n, sum_l (2l+1)**2)``, irreps ``(n, irreps.dim)``,
        ``equirect:HxW`` ``(n, H, W)``, ``image2d`` ``(n, 8, 8)``; ``rotation`` gives ``n`` Haar
        rotations ``(n, dim, dim)``; ``edge_index`` a random ``(2, 2n)`` long tensor without
        self-loops, ``batch`` sorted graph ids of 3 graphs, ``parts`` ids of 3 parts (each present).
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

    Raises
    ------
    TypeError, ValueError
        Naming the argument: ``kinds`` not a list/tuple of known kind strings, ``n_points`` not a
        positive int or so large that the inputs would not fit in memory, a bad ``dim`` or ``dtype``.

    Examples
    --------
    >>> import torch
    >>> from geodl.testing import random_inputs
    >>> pos, ei = random_inputs(["node:points", "edge_index"], 5, generator=torch.Generator().manual_seed(0))
    >>> tuple(pos.shape), tuple(ei.shape), ei.dtype
    ((5, 3), (2, 10), torch.int64)
    """
    from geodl.groups import random_input

    if isinstance(kinds, str):
        raise TypeError("kinds: expected a sequence of kind strings, got a single str (wrap it in a list)")
    if not isinstance(kinds, (tuple, list)):
        raise TypeError(f"kinds: expected a list or tuple of kind strings, got {type(kinds).__name__}")
    check_positive_int("n_points", n_points)
    check_choice("dim", dim, (2, 3))
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    for i, kind in enumerate(kinds):
        if not isinstance(kind, str):
            raise TypeError(f"kinds[{i}]: expected a kind string, got {type(kind).__name__}")
    # the memory n_points rows would take: one 2-row example per kind (its own generator, so that
    # the caller's is not advanced), each value drawn in float64 first, then cast
    probe_gen, per_row = torch.Generator().manual_seed(0), 0
    for i, kind in enumerate(kinds):
        try:
            probe = random_input(kind, 2, dim=dim, dtype=dtype, generator=probe_gen)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"kinds[{i}]: cannot make an input of kind {kind!r} ({exc})") from None
        per_row += -(-probe.numel() // 2) * (8 + probe.element_size())
    check_memory("n_points", n_points, n_points * per_row, "cpu" if device is None else device,
                 what=f"random inputs of {n_points} rows for kinds {list(kinds)}")
    out = []
    for i, kind in enumerate(kinds):
        try:
            out.append(random_input(kind, n_points, dim=dim, dtype=dtype, generator=generator, device=device))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"kinds[{i}]: cannot make an input of kind {kind!r} ({exc})") from None
    return tuple(out)
