"""Group objects and group elements: sampling, structured test elements, composition, inverse.

A :class:`GroupElement` is one transformation ``x -> s · R x + t`` together with an optional node
permutation; how it acts on a tensor depends on the tensor's *kind* (see :func:`geodl.groups.act`).
A :class:`Group` (from :func:`get_group`) knows which parts it has and how to sample them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from geodl._checks import check_tensor
from geodl.groups._finite import finite_group
from geodl.groups._rotations import (
    euler_to_matrix,
    random_rotation,
    random_rotation_2d,
    rotation_2d,
)

__all__ = ["GroupElement", "Group", "get_group", "GROUP_NAMES"]

# name -> (dim, rotation part, has_translations)
_GEOMETRIC = {
    "SO2": (2, "SO", False),
    "O2": (2, "O", False),
    "SE2": (2, "SO", True),
    "E2": (2, "O", True),
    "SO3": (3, "SO", False),
    "O3": (3, "O", False),
    "SE3": (3, "SO", True),
    "E3": (3, "O", True),
    "tetrahedral": (3, "finite", False),
    "octahedral": (3, "finite", False),
    "icosahedral": (3, "finite", False),
    "O2_axis": (3, "axis", False),
}
_EXTRA = ("perm", "scale")
GROUP_NAMES = tuple(_GEOMETRIC) + _EXTRA


# --------------------------------------------------------------------------------------------- element
@dataclass(frozen=True, eq=False)
class GroupElement:
    """One group element: ``x -> scale · rotation @ x + translation``, plus a node permutation.

    Parameters
    ----------
    rotation : Tensor ``(d, d)`` or None
        Orthogonal matrix, ``d`` in {2, 3}; determinant -1 for reflections. None means identity.
    translation : Tensor ``(d,)`` or None
        None means zero.
    scale : float or None
        Positive scale factor; None means 1.
    perm : LongTensor ``(N,)`` or None
        Node permutation: a node-indexed tensor ``x`` becomes ``x[perm]``. None means identity.
    label : str
        What kind of element this is: ``"identity"``, ``"haar"``, ``"reflection"``, ``"translation"``,
        ``"perm"``, ``"scale"``, ``"finite:<name>"``, ``"composed"``, ``"inverse"``.

    Examples
    --------
    >>> g = GroupElement(rotation=torch.eye(3).flip(0), translation=torch.ones(3), label="reflection")
    >>> g.dim, float(g.det)
    (3, -1.0)
    """

    rotation: torch.Tensor | None = None
    translation: torch.Tensor | None = None
    scale: float | None = None
    perm: torch.Tensor | None = None
    label: str = "identity"

    def __post_init__(self):
        R, t = self.rotation, self.translation
        if R is not None:
            check_tensor("rotation", R, floating=True)
            if R.dim() != 2 or R.shape[0] != R.shape[1] or R.shape[0] not in (2, 3):
                raise ValueError(f"rotation: expected shape (2, 2) or (3, 3), got {tuple(R.shape)}")
            check_tensor("rotation", R, finite=R.device.type == "cpu")
        if t is not None:
            check_tensor("translation", t, ndim=1, floating=True)
            if t.shape[0] not in (2, 3) or (R is not None and t.shape[0] != R.shape[0]):
                d = R.shape[0] if R is not None else "2 or 3"
                raise ValueError(f"translation: expected shape ({d},), got {tuple(t.shape)}")
            check_tensor("translation", t, finite=t.device.type == "cpu")
        if self.scale is not None:
            if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)):
                raise TypeError(f"scale: expected a positive float, got {type(self.scale).__name__}")
            if not (math.isfinite(self.scale) and self.scale > 0):
                raise ValueError(f"scale: expected a positive finite float, got {self.scale!r}")
        if self.perm is not None:
            check_tensor("perm", self.perm, ndim=1, dtypes=(torch.int64,))
        if not isinstance(self.label, str):
            raise TypeError(f"label: expected a string, got {type(self.label).__name__}")

    @property
    def dim(self) -> int | None:
        """Spatial dimension (2 or 3), or None when the element has no geometric part."""
        if self.rotation is not None:
            return self.rotation.shape[0]
        return None if self.translation is None else self.translation.shape[0]

    @property
    def det(self) -> torch.Tensor:
        """Sign of ``det(rotation)`` as a 0-dim tensor (+1 without rotation); no host sync."""
        if self.rotation is None:
            dtype = self.translation.dtype if self.translation is not None else torch.float64
            return torch.ones((), dtype=dtype)
        return torch.sign(torch.linalg.det(self.rotation))

    def to(self, dtype=None, device=None) -> "GroupElement":
        """Copy with floating tensors cast to ``dtype`` and all tensors moved to ``device``."""

        def cast(x, floating=True):
            if x is None:
                return None
            return x.to(dtype=dtype if floating else None, device=device)

        return GroupElement(
            rotation=cast(self.rotation),
            translation=cast(self.translation),
            scale=self.scale,
            perm=cast(self.perm, floating=False),
            label=self.label,
        )

    def __matmul__(self, other: "GroupElement") -> "GroupElement":
        """``g @ h`` is the composition ``x -> g(h(x))``."""
        return compose(self, other)


def compose(g: GroupElement, h: GroupElement) -> GroupElement:
    """``x -> g(h(x))``: ``(s_g s_h, R_g R_h, s_g R_g t_h + t_g, h.perm[g.perm])``."""
    if not isinstance(g, GroupElement):
        raise TypeError(f"g: expected a GroupElement, got {type(g).__name__}")
    if not isinstance(h, GroupElement):
        raise TypeError(f"h: expected a GroupElement, got {type(h).__name__}")
    if g.dim is not None and h.dim is not None and g.dim != h.dim:
        raise ValueError(f"h: dimension {h.dim} does not match g's dimension {g.dim}")
    if g.perm is not None and h.perm is not None and g.perm.shape != h.perm.shape:
        raise ValueError(f"h: perm of length {h.perm.shape[0]} does not match g's length {g.perm.shape[0]}")
    R = g.rotation if h.rotation is None else (h.rotation if g.rotation is None else g.rotation @ h.rotation)
    sg = 1.0 if g.scale is None else g.scale
    t = None
    if h.translation is not None:
        t = h.translation if g.rotation is None else g.rotation @ h.translation
        t = sg * t
    if g.translation is not None:
        t = g.translation if t is None else t + g.translation
    scale = None if g.scale is None and h.scale is None else sg * (1.0 if h.scale is None else h.scale)
    perm = g.perm if h.perm is None else (h.perm if g.perm is None else h.perm[g.perm])
    label = h.label if g.label == "identity" else (g.label if h.label == "identity" else "composed")
    return GroupElement(rotation=R, translation=t, scale=scale, perm=perm, label=label)


def inverse(g: GroupElement) -> GroupElement:
    """The element undoing ``g``: ``(1/s, Rᵀ, -(1/s) Rᵀ t, argsort(perm))``."""
    if not isinstance(g, GroupElement):
        raise TypeError(f"g: expected a GroupElement, got {type(g).__name__}")
    Rt = None if g.rotation is None else g.rotation.transpose(0, 1)
    inv_s = None if g.scale is None else 1.0 / g.scale
    t = None
    if g.translation is not None:
        t = -g.translation if Rt is None else -(Rt @ g.translation)
        if inv_s is not None:
            t = inv_s * t
    perm = None if g.perm is None else torch.argsort(g.perm)
    label = g.label if g.label in ("identity", "reflection", "translation", "perm") else "inverse"
    return GroupElement(rotation=Rt, translation=t, scale=inv_s, perm=perm, label=label)


# ----------------------------------------------------------------------------------------------- group
def _orthonormal_basis(axis: torch.Tensor) -> torch.Tensor:
    """A rotation matrix whose third column is ``axis`` (unit, float64)."""
    a = axis / axis.norm()
    helper = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(a[0])) > 0.9:
        helper = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    u = torch.linalg.cross(helper, a)
    u = u / u.norm()
    v = torch.linalg.cross(a, u)
    return torch.stack([u, v, a], dim=1)


class Group:
    """A symmetry group: a geometric part (rotations/reflections, optional translations) and optional
    node permutations and positive scaling. Build with :func:`get_group`.

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"E3+perm"``.
    dim : int or None
        2 or 3; None for the pure ``"perm"`` / ``"scale"`` groups (and their product).
    has_reflections, has_translations, has_permutations, has_scaling, is_finite : bool
        ``is_finite`` is True for the finite rotation groups, ``"perm"`` and their products.
    axis : Tensor ``(3,)`` or None
        The axis of ``"O2_axis"``.
    """

    def __init__(self, geometric: str | None, permutations: bool, scaling: bool, axis=None):
        self._geo = geometric
        self.dim, self._rot, self.has_translations = _GEOMETRIC[geometric] if geometric else (None, None, False)
        self.has_permutations = permutations
        self.has_scaling = scaling
        self.has_reflections = self._rot in ("O", "axis")
        self.is_finite = self._rot in ("finite", None) and not scaling and not self.has_translations
        if self._rot is None and not permutations:
            self.is_finite = False
        self.axis = None
        self._basis = None
        if self._rot == "axis":
            a = torch.as_tensor((0.0, 0.0, 1.0) if axis is None else axis, dtype=torch.float64)
            if a.shape != (3,) or not bool(torch.isfinite(a).all()) or float(a.norm()) == 0.0:
                raise ValueError(f"axis: expected a finite non-zero 3-vector, got {axis!r}")
            self.axis = a / a.norm()
            self._basis = _orthonormal_basis(self.axis)
        parts = ([geometric] if geometric else []) + (["perm"] if permutations else []) + (["scale"] if scaling else [])
        self.name = "+".join(parts)

    # --- helpers
    def __repr__(self) -> str:
        extra = "" if self.axis is None else f", axis={tuple(round(float(v), 6) for v in self.axis)}"
        return f"Group({self.name!r}{extra})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Group) or other.name != self.name:
            return False
        return self.axis is None or bool(torch.allclose(self.axis, other.axis))

    def __hash__(self) -> int:
        return hash(self.name)

    def _need_nodes(self, n_nodes):
        if not self.has_permutations:
            return None
        if n_nodes is None:
            raise ValueError(f"n_nodes: group {self.name!r} permutes nodes, so n_nodes (an int >= 1) is required")
        if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 1:
            raise ValueError(f"n_nodes: expected an int >= 1, got {n_nodes!r}")
        return n_nodes

    def _axis_element(self, angle: float, reflect: bool, dtype, device) -> torch.Tensor:
        # rotation by `angle` about the axis, optionally followed by the reflection through the plane
        # spanned by the axis and the first basis vector; all these fix the axis pointwise.
        Q = self._basis
        c, s = math.cos(angle), math.sin(angle)
        flip = -1.0 if reflect else 1.0
        M = torch.tensor([[c, -s * flip, 0.0], [s, c * flip, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        return (Q @ M @ Q.T).to(dtype=dtype, device=device)

    # --- elements
    def identity(self, dtype=torch.float64, device=None, n_nodes=None) -> GroupElement:
        """The identity, with explicit parts for what the group has (``perm`` only when ``n_nodes`` given)."""
        d = self.dim
        return GroupElement(
            rotation=None if d is None else torch.eye(d, dtype=dtype, device=device),
            translation=torch.zeros(d, dtype=dtype, device=device) if self.has_translations else None,
            scale=1.0 if self.has_scaling else None,
            perm=None if (n_nodes is None or not self.has_permutations) else torch.arange(n_nodes, device=device),
            label="identity",
        )

    def sample(self, generator=None, dtype=torch.float64, device=None, n_nodes=None) -> GroupElement:
        """One random element: Haar on the compact part, uniform on permutations and finite groups.

        Translations are standard normal; scales are ``2**u`` with ``u`` uniform on ``[-1, 1]``
        (neither has a normalisable invariant measure). All draws use ``generator`` on ``device``.

        Examples
        --------
        >>> G = get_group("E3+perm")
        >>> g = G.sample(generator=torch.Generator().manual_seed(0), n_nodes=5)
        >>> g.rotation.shape, g.translation.shape, g.perm.shape, g.label
        (torch.Size([3, 3]), torch.Size([3]), torch.Size([5]), 'haar')
        """
        n_nodes = self._need_nodes(n_nodes)
        kw = dict(generator=generator, dtype=dtype, device=device)
        R = None
        if self._rot in ("SO", "O"):
            R = random_rotation(**kw) if self.dim == 3 else random_rotation_2d(**kw)
            if self._rot == "O":
                flip = torch.rand((), **kw) < 0.5
                sign = torch.where(flip, -1.0, 1.0).to(dtype)
                R = torch.cat([R[:, :1] * sign, R[:, 1:]], dim=1)  # R @ diag(±1, 1, ...)
        elif self._rot == "finite":
            elems = finite_group(self._geo, dtype=dtype, device=device)
            R = elems[torch.randint(len(elems), (), generator=generator, device=device)]
        elif self._rot == "axis":
            u = torch.rand(2, generator=generator, dtype=torch.float64, device=device).tolist()
            R = self._axis_element(2 * math.pi * u[0], u[1] < 0.5, dtype, device)
        t = torch.randn(self.dim, **kw) if self.has_translations else None
        scale = None
        if self.has_scaling:
            u = float(torch.rand((), generator=generator, dtype=torch.float64, device=device))
            scale = 2.0 ** (2 * u - 1)
        perm = torch.randperm(n_nodes, generator=generator, device=device) if n_nodes is not None else None
        return GroupElement(rotation=R, translation=t, scale=scale, perm=perm, label="haar")

    def structured(self, dtype=torch.float64, device=None, n_nodes=None, generator=None) -> list[GroupElement]:
        """Structured test elements that random sampling rarely or never hits.

        The identity; for groups with reflections: inversion ``-I``, the plane reflection ``x -> -x``,
        a reflection through a generic plane and an improper rotation (O(2): two line reflections;
        ``O2_axis``: two plane reflections fixing the axis), all labelled ``"reflection"``; for finite
        groups their non-identity elements (at most 12, every rotation order represented), labelled
        ``"finite:<name>"``; pure translations (``"translation"``); the reversing and one random
        permutation (``"perm"``); scales 0.5 and 2 (``"scale"``). Each non-identity element changes
        one part only.

        Examples
        --------
        >>> [g.label for g in get_group("SE3+scale").structured()]
        ['identity', 'translation', 'translation', 'scale', 'scale']
        """
        n_nodes = self._need_nodes(n_nodes)
        out = [self.identity(dtype=dtype, device=device, n_nodes=n_nodes)]
        as_t = lambda x: torch.as_tensor(x, dtype=torch.float64).to(dtype=dtype, device=device)  # noqa: E731
        rot = []
        if self._rot == "O" and self.dim == 3:
            n = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) / math.sqrt(14.0)
            generic = euler_to_matrix(torch.tensor([0.3, 1.1, -0.7], dtype=torch.float64))
            mats = [-torch.eye(3, dtype=torch.float64), torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)),
                    torch.eye(3, dtype=torch.float64) - 2 * torch.outer(n, n), -generic]
            rot = [(as_t(m), "reflection") for m in mats]
        elif self._rot == "O":
            flip = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
            rot = [(as_t(flip), "reflection"), (as_t(rotation_2d(torch.tensor(0.7, dtype=torch.float64)) @ flip), "reflection")]
        elif self._rot == "axis":
            rot = [(self._axis_element(a, True, dtype, device), "reflection") for a in (0.0, 1.9)]
        elif self._rot == "finite":
            rot = [(m, f"finite:{self._geo}") for m in _finite_subset(self._geo, 12).to(dtype=dtype, device=device)]
        base = out[0]
        for m, label in rot:
            out.append(GroupElement(m, base.translation, base.scale, base.perm, label))
        if self.has_translations:
            for t in ((0.5, -1.5, 2.0), (-3.0, 1.0, 0.25)):
                out.append(GroupElement(base.rotation, as_t(t[: self.dim]), base.scale, base.perm, "translation"))
        if self.has_permutations:
            rev = torch.arange(n_nodes - 1, -1, -1, device=device)
            rnd = torch.randperm(n_nodes, generator=generator, device=device)
            out += [GroupElement(base.rotation, base.translation, base.scale, p, "perm") for p in (rev, rnd)]
        if self.has_scaling:
            out += [GroupElement(base.rotation, base.translation, s, base.perm, "scale") for s in (0.5, 2.0)]
        return out

    def compose(self, g: GroupElement, h: GroupElement) -> GroupElement:
        """``x -> g(h(x))``.

        Examples
        --------
        >>> G = get_group("SO3")
        >>> g = G.sample(generator=torch.Generator().manual_seed(0))
        >>> e = G.compose(g, G.inverse(g))
        >>> bool(torch.allclose(e.rotation, torch.eye(3, dtype=torch.float64)))
        True
        """
        return compose(g, h)

    def inverse(self, g: GroupElement) -> GroupElement:
        """The inverse element (see :meth:`compose`)."""
        return inverse(g)


def _finite_subset(name: str, k: int) -> torch.Tensor:
    """Up to ``k`` non-identity elements, taken round-robin over rotation angles (so every order appears)."""
    G = finite_group(name)[1:]
    if len(G) <= k:
        return G
    angles = torch.round(torch.arccos(((G.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)) * 1e6).tolist()
    classes: dict[float, list[int]] = {}
    for i, a in enumerate(angles):
        classes.setdefault(a, []).append(i)
    picked, queues = [], [classes[a] for a in sorted(classes)]
    while len(picked) < k:
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop(0))
    return G[sorted(picked)]


def _canonical_part(part: str) -> str:
    p = part.strip().replace("(", "").replace(")", "").replace(" ", "")
    for name in GROUP_NAMES:
        if p.lower() == name.lower():
            return name
    aliases = {"permutation": "perm", "permutations": "perm", "scaling": "scale", "o2axis": "O2_axis"}
    return aliases.get(p.lower(), part)


def get_group(group, **kwargs) -> Group:
    """Look up a group by name.

    Parameters
    ----------
    group : str or Group
        One of ``"SO2"``, ``"O2"``, ``"SE2"``, ``"E2"``, ``"SO3"``, ``"O3"``, ``"SE3"``, ``"E3"``,
        ``"tetrahedral"``, ``"octahedral"``, ``"icosahedral"``, ``"O2_axis"``, ``"perm"``, ``"scale"``, or
        a product joined with ``"+"`` of at most one geometric group with ``"perm"`` and/or ``"scale"``,
        e.g. ``"E3+perm"``. ``"SO(3)"`` and ``"so3"`` are accepted too. A ``Group`` is returned as is.
    axis : 3-vector, optional
        Only for ``"O2_axis"``: the axis (default ``(0, 0, 1)``). The group is the stabiliser of the
        axis in O(3): rotations about it and reflections through planes containing it.

    Returns
    -------
    Group

    Examples
    --------
    >>> G = get_group("E3+perm")
    >>> G.name, G.dim, G.has_reflections, G.has_translations, G.has_permutations
    ('E3+perm', 3, True, True, True)
    >>> get_group("O2_axis", axis=(1, 0, 0)).axis
    tensor([1., 0., 0.], dtype=torch.float64)
    """
    if isinstance(group, Group):
        if kwargs:
            raise TypeError(f"get_group: keyword arguments {sorted(kwargs)} are not allowed with a Group instance")
        return group
    if not isinstance(group, str):
        raise TypeError(f"group: expected a group name (str) or a Group, got {type(group).__name__}")
    unknown = set(kwargs) - {"axis"}
    if unknown:
        raise TypeError(f"get_group: unexpected keyword arguments {sorted(unknown)}")
    parts = [_canonical_part(p) for p in group.split("+")]
    bad = [p for p in parts if p not in GROUP_NAMES]
    if bad or len(set(parts)) != len(parts):
        why = f"unknown name(s) {bad}" if bad else "a repeated part"
        raise ValueError(f"group: {group!r} has {why}; expected one of {list(GROUP_NAMES)} or a '+' product of them")
    geo = [p for p in parts if p in _GEOMETRIC]
    if len(geo) > 1:
        raise ValueError(f"group: {group!r} combines several geometric groups {geo}; use at most one")
    geometric = geo[0] if geo else None
    if "axis" in kwargs and geometric != "O2_axis":
        raise ValueError(f"axis: only the 'O2_axis' group takes an axis, not {group!r}")
    return Group(geometric, "perm" in parts, "scale" in parts, axis=kwargs.get("axis"))
