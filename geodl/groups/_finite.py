"""Finite rotation groups: tetrahedral (12), octahedral (24), icosahedral (60).

Orientation: the coordinate axes are 2-fold (tetrahedral, icosahedral) or 4-fold (octahedral) axes
and ``(±1, ±1, ±1)`` are 3-fold axes, so that tetrahedral ⊂ octahedral and tetrahedral ⊂ icosahedral
(the icosahedron with vertices at the cyclic permutations of ``(0, ±1, ±φ)``).
"""

from __future__ import annotations

import functools
import math

import torch

from geodl._checks import check_choice

__all__ = ["finite_group", "FINITE_GROUPS"]

FINITE_GROUPS = {"tetrahedral": 12, "octahedral": 24, "icosahedral": 60}


def _axis_rotation(axis, angle) -> torch.Tensor:
    from geodl.groups._rotations import axis_angle_to_matrix

    a = torch.tensor(axis, dtype=torch.float64)
    return axis_angle_to_matrix(a / a.norm() * angle)


def _generators(name: str) -> list[torch.Tensor]:
    three = _axis_rotation((1, 1, 1), 2 * math.pi / 3)  # the cyclic permutation x -> y -> z -> x
    if name == "tetrahedral":
        return [_axis_rotation((0, 0, 1), math.pi), three]
    if name == "octahedral":
        return [_axis_rotation((0, 0, 1), math.pi / 2), three]
    phi = (1 + math.sqrt(5)) / 2
    return [_axis_rotation((0, 1, phi), 2 * math.pi / 5), _axis_rotation((0, 0, 1), math.pi), three]


@functools.lru_cache(maxsize=None)
def _closure(name: str) -> torch.Tensor:
    # Breadth-first closure under multiplication by the generators; elements are keyed by their
    # entries rounded to 1e-8 (distinct elements of these groups differ by >= 0.1 in some entry).
    gens = _generators(name)
    eye = torch.eye(3, dtype=torch.float64)
    key = lambda m: tuple(torch.round(m * 1e8).to(torch.int64).flatten().tolist())  # noqa: E731
    elems, seen, frontier = [eye], {key(eye)}, [eye]
    while frontier:
        nxt = []
        for m in frontier:
            for g in gens:
                p = g @ m
                k = key(p)
                if k not in seen:
                    seen.add(k)
                    elems.append(p)
                    nxt.append(p)
        frontier = nxt
    out = torch.stack(elems)
    # Project back onto SO(3) (polar factor) to remove the round-off accumulated along products.
    u, _, vh = torch.linalg.svd(out)
    return u @ vh


def finite_group(name: str, dtype=torch.float64, device=None) -> torch.Tensor:
    """All elements of a finite rotation group, identity first.

    Parameters
    ----------
    name : {"tetrahedral", "octahedral", "icosahedral"}
    dtype, device : optional
        Default float64 on the CPU; ``dtype`` a floating-point ``torch.dtype`` (``TypeError``
        otherwise, e.g. for ``torch.int64`` or the string ``"float64"``).

    Returns
    -------
    Tensor of shape ``(n, 3, 3)``, ``n`` = 12, 24 or 60, rotation matrices.

    Examples
    --------
    >>> G = finite_group("octahedral")
    >>> G.shape
    torch.Size([24, 3, 3])
    >>> bool(torch.equal(G[0], torch.eye(3, dtype=torch.float64)))
    True
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, got {type(name).__name__}")
    check_choice("name", name, FINITE_GROUPS)
    from geodl.groups._grids import _float_dtype

    dtype = torch.float64 if dtype is None else _float_dtype(dtype)  # None kept float64 before
    out = _closure(name)
    if len(out) != FINITE_GROUPS[name]:  # pragma: no cover - guards the generators above
        raise RuntimeError(f"finite_group: closure of {name!r} has {len(out)} elements")
    out = out.clone()
    out[0] = torch.eye(3, dtype=torch.float64)
    return out.to(dtype=dtype, device=device)
