"""Candidate symmetry groups of soft equivariance: subgroups of O(3), scaling, translations, products.

A candidate group is named ``"O3"``, ``"SO3"``, ``"O2x"``/``"O2y"``/``"O2z"`` (the stabiliser of a
coordinate axis in O(3): rotations about it and reflections through planes containing it, geodl's
``"O2_axis"``), ``"SO2x"``/``"SO2y"``/``"SO2z"`` (rotations about the axis), ``"scale"`` (positive
scaling), ``"T3"`` (translations), or a ``+`` product of at most one rotation part with ``scale``
and/or ``T3`` (``"O2z+scale"``). Its elements are plain :class:`geodl.groups.GroupElement` s.

For the projector a group is given by its Lie algebra (so(3) generators, and the scaling flag) and
the discrete generators of its component group (``-I`` for O(3), one reflection for O(2)).
"""

from __future__ import annotations

import functools
import math

import torch

from geodl.groups import GroupElement, random_rotation

__all__ = ["CandidateGroup", "candidate_group", "CANDIDATE_GROUPS"]

CANDIDATE_GROUPS = ("O3", "SO3", "O2x", "O2y", "O2z", "SO2x", "SO2y", "SO2z", "scale", "T3")
_AXES = "xyz"


def _L(k: int) -> torch.Tensor:
    """so(3) generator ``L_k`` (``L_k v = e_k × v``), float64."""
    L = torch.zeros(3, 3, dtype=torch.float64)
    i, j = (k + 1) % 3, (k + 2) % 3
    L[j, i], L[i, j] = 1.0, -1.0
    return L


def _axis_rotation(k: int, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    i, j = (k + 1) % 3, (k + 2) % 3
    R = torch.eye(3, dtype=torch.float64)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _axis_reflection(k: int) -> torch.Tensor:
    """The reflection through the plane spanned by axis ``k`` and axis ``k+2`` (flips axis ``k+1``)."""
    d = torch.ones(3, dtype=torch.float64)
    d[(k + 1) % 3] = -1.0
    return torch.diag(d)


class CandidateGroup:
    """One candidate symmetry group (build with :func:`candidate_group`).

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"O2z+scale"`` (rotation part, then ``scale``, then ``T3``).
    rotation : str or None
        ``"O3"``, ``"SO3"``, ``"O2"``, ``"SO2"`` or None (no rotations).
    axis : int or None
        0, 1, 2 for the O2/SO2 axis x, y, z.
    scaling, translations : bool
        Whether the group contains positive scaling / translations.
    linear : bool
        False when translations are included (then no projector exists: only the Monte-Carlo
        regulariser handles the group).

    Examples
    --------
    >>> G = candidate_group("O2z+scale")
    >>> G.name, G.rotation, G.axis, G.scaling, G.linear
    ('O2z+scale', 'O2', 2, True, True)
    """

    def __init__(self, rotation, axis, scaling, translations):
        self.rotation = rotation
        self.axis = axis
        self.scaling = bool(scaling)
        self.translations = bool(translations)
        parts = [] if rotation is None else [rotation + ("" if axis is None else _AXES[axis])]
        parts += (["scale"] if scaling else []) + (["T3"] if translations else [])
        self.name = "+".join(parts)

    @property
    def linear(self) -> bool:
        """Whether the group acts linearly on every representation (no translations)."""
        return not self.translations

    def __repr__(self) -> str:
        return f"candidate_group({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other) -> bool:
        return isinstance(other, CandidateGroup) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("CandidateGroup", self.name))

    def __reduce__(self):
        return (candidate_group, (self.name,))

    # ------------------------------------------------------------------------------ structure
    def lie_algebra(self) -> list[torch.Tensor]:
        """The so(3) generators ``(3, 3)`` float64 of the rotation part (scaling: see ``.scaling``).

        >>> [tuple(A.shape) for A in candidate_group("SO2z").lie_algebra()]
        [(3, 3)]
        >>> len(candidate_group("O3").lie_algebra()), len(candidate_group("scale").lie_algebra())
        (3, 0)
        """
        if self.rotation in ("O3", "SO3"):
            return [_L(0), _L(1), _L(2)]
        if self.rotation in ("O2", "SO2"):
            return [_L(self.axis)]
        return []

    def discrete(self) -> list[GroupElement]:
        """Generators of the component group: ``-I`` for O(3), one axis reflection for O(2), else none.

        >>> [float(g.det) for g in candidate_group("O3").discrete()]
        [-1.0]
        >>> candidate_group("SO3").discrete()
        []
        """
        if self.rotation == "O3":
            return [GroupElement(rotation=-torch.eye(3, dtype=torch.float64), label="reflection")]
        if self.rotation == "O2":
            return [GroupElement(rotation=_axis_reflection(self.axis), label="reflection")]
        return []

    def sample(self, generator=None, dtype=torch.float64) -> GroupElement:
        """One Haar-random element: uniform rotations (and reflections), scale ``2**u`` with ``u``
        uniform on ``[-1, 1]`` (log-uniform on ``[1/2, 2]``), translation standard normal.

        Parameters
        ----------
        generator : torch.Generator, optional
        dtype : torch.dtype
            Of the element's tensors (float64 by default).

        Returns
        -------
        GroupElement (``rotation (3, 3)``; ``scale`` and ``translation (3,)`` when the group has them).

        Examples
        --------
        >>> g = candidate_group("SO2z+scale").sample(generator=torch.Generator().manual_seed(0))
        >>> float(g.rotation[2, 2]), 0.5 <= g.scale <= 2
        (1.0, True)
        """
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point and not dtype.is_complex):
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        R = None
        if self.rotation in ("O3", "SO3"):
            R = random_rotation(generator=generator, dtype=torch.float64)
            if self.rotation == "O3" and float(torch.rand((), generator=generator, dtype=torch.float64)) < 0.5:
                R = -R
        elif self.rotation in ("O2", "SO2"):
            u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
            R = _axis_rotation(self.axis, 2 * math.pi * u[0])
            if self.rotation == "O2" and u[1] < 0.5:
                R = R @ _axis_reflection(self.axis)
        scale = None
        if self.scaling:
            scale = 2.0 ** (2 * float(torch.rand((), generator=generator, dtype=torch.float64)) - 1)
        t = torch.randn(3, generator=generator, dtype=torch.float64).to(dtype) if self.translations else None
        if R is None and scale is None and t is None:  # not reachable for a valid group; keep an identity
            R = torch.eye(3, dtype=torch.float64)
        return GroupElement(rotation=None if R is None else R.to(dtype), translation=t, scale=scale, label="haar")

    def issubgroup(self, other) -> bool:
        """Whether ``self ⊂ other`` (e.g. ``SO2z ⊂ O2z ⊂ O3``, ``SO2z ⊂ SO3``, ``O2z ⊄ SO3``).

        >>> candidate_group("SO2z").issubgroup("O2z+scale"), candidate_group("O2z").issubgroup("SO3")
        (True, False)
        """
        other = candidate_group(other)
        if self.scaling and not other.scaling or self.translations and not other.translations:
            return False
        a, b = self.rotation, other.rotation
        if a is None:
            return True
        if b is None:
            return False
        if b == "O3":
            return True
        if b == "SO3":
            return a in ("SO3", "SO2")
        if b == "O2":
            return a in ("O2", "SO2") and self.axis == other.axis
        return a == "SO2" and b == "SO2" and self.axis == other.axis

    def geodl_group(self):
        """The group of :func:`geodl.groups.get_group` equal to this one, or None when geodl has none
        (``SO2<a>``, ``T3`` without rotations: declare a larger group or none).

        >>> candidate_group("O2x+scale").geodl_group()
        Group('O2_axis+scale', axis=(1.0, 0.0, 0.0))
        """
        from geodl.groups import get_group

        extra = ("+scale" if self.scaling else "")
        if self.rotation in ("O3", "SO3"):
            base = {"O3": "E3", "SO3": "SE3"}[self.rotation] if self.translations else self.rotation
            return get_group(base + extra)
        if self.rotation == "O2" and not self.translations:
            axis = [0.0, 0.0, 0.0]
            axis[self.axis] = 1.0
            return get_group("O2_axis" + extra, axis=tuple(axis))
        if self.rotation is None and self.scaling and not self.translations:
            return get_group("scale")
        return None


@functools.lru_cache(maxsize=64)
def _parse(name: str) -> CandidateGroup:
    rotation = axis = None
    scaling = translations = False
    seen = set()
    for raw in name.split("+"):
        p = raw.strip()
        match = [c for c in CANDIDATE_GROUPS if c.lower() == p.lower()]
        if not match:
            raise ValueError(f"group: unknown candidate group {p!r} in {name!r}; expected one of "
                             f"{list(CANDIDATE_GROUPS)} or a '+' product of one rotation group with 'scale' "
                             f"and/or 'T3' (e.g. 'O2z+scale')")
        c = match[0]
        if c in seen:
            raise ValueError(f"group: {name!r} repeats {c!r}")
        seen.add(c)
        if c == "scale":
            scaling = True
        elif c == "T3":
            translations = True
        else:
            if rotation is not None:
                raise ValueError(f"group: {name!r} combines several rotation groups; use at most one of "
                                 f"{list(CANDIDATE_GROUPS[:8])}")
            rotation = c.rstrip("xyz") if c.startswith(("O2", "SO2")) else c
            axis = _AXES.index(c[-1]) if c.startswith(("O2", "SO2")) else None
    return CandidateGroup(rotation, axis, scaling, translations)


def candidate_group(name) -> CandidateGroup:
    """Look up a candidate group by name (a :class:`CandidateGroup` is returned unchanged).

    Parameters
    ----------
    name : str or CandidateGroup
        One of :data:`CANDIDATE_GROUPS` or a ``+`` product (``"O2z+scale"``, ``"SO3+T3"``); case is
        ignored. Unknown names raise ``ValueError`` naming ``group``.

    Returns
    -------
    CandidateGroup

    Examples
    --------
    >>> candidate_group("scale+o2z").name
    'O2z+scale'
    """
    if isinstance(name, CandidateGroup):
        return name
    if not isinstance(name, str):
        raise TypeError(f"group: expected a candidate group name (str) such as 'O3', got {type(name).__name__}")
    return _parse(name)
