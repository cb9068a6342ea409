"""Group objects and group elements: sampling, structured test elements, composition, inverse.

A :class:`GroupElement` is one transformation ``x -> s · R x + t`` together with an optional node
permutation; how it acts on a tensor depends on the tensor's *kind* (see :func:`geodl.groups.act`).
A :class:`Group` (from :func:`get_group`) knows which parts it has and how to sample them.

Besides the continuous groups there are finite *tables* of matrices (``"D4"``, ``"C4"``: the exact
pixel symmetries of square images; ``"equirect:<W>"``, ``"azimuth:<W>"``: whole-bin azimuth rolls
and the pole flip of equirectangular maps) and *piecewise* groups (``"E3^parts"``): one element of
the base group per part of a point set, the parts given by an integer label per point.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from geodl._checks import check_alloc, check_memory, check_number, check_positive_int, check_tensor
from geodl.groups._finite import finite_group
from geodl.groups._grids import _float_dtype
from geodl.groups._rotations import (
    euler_to_matrix,
    random_rotation,
    random_rotation_2d,
    rotation_2d,
)

__all__ = ["GroupElement", "Group", "get_group", "GROUP_NAMES", "POLE_FLIP"]

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
# finite tables of exact matrices: name -> (dim, has_reflections); parametrised ones take ":<W>"
_TABLES = {"D4": (2, True), "C4": (2, False)}
_PARAM_TABLES = {"equirect": (3, False), "azimuth": (3, False)}
MAX_AZIMUTH_BINS = 1 << 16  # "equirect:<W>" / "azimuth:<W>": tables are built element by element
_PART_BASES = ("SO2", "O2", "SE2", "E2", "SO3", "O3", "SE3", "E3")
_EXTRA = ("perm", "scale")
GROUP_NAMES = tuple(_GEOMETRIC) + tuple(_TABLES) + tuple(f"{n}:<W>" for n in _PARAM_TABLES) + \
    tuple(f"{b}^parts" for b in ("SE3", "E3")) + _EXTRA


# --------------------------------------------------------------------------------------------- element
def _orthogonality_tol(dtype: torch.dtype, d: int) -> float:
    """Largest accepted ``max |RᵀR - I|``: ``100 · eps · d`` (float32/64), ``10 · eps · d`` (16-bit)."""
    eps = torch.finfo(dtype).eps
    return (10.0 if torch.finfo(dtype).bits <= 16 else 100.0) * eps * d


def _check_orthogonal(name: str, R: torch.Tensor) -> None:
    """``ValueError`` unless every matrix of ``R (..., d, d)`` is orthogonal (CPU only: no host sync)."""
    if R.device.type != "cpu" or R.numel() == 0:
        return
    with torch.no_grad():
        M = R.detach().to(torch.float64)
        d = M.shape[-1]
        err = float((M.transpose(-1, -2) @ M - torch.eye(d, dtype=torch.float64)).abs().max())
    tol = _orthogonality_tol(R.dtype, d)
    if not err <= tol:
        raise ValueError(f"{name}: expected an orthogonal matrix (max |RᵀR - I| <= {tol:.3g} for {R.dtype}), "
                         f"got max |RᵀR - I| = {err:.3g}; put a scale factor in `scale`, not in the matrix")


def _check_perm(perm: torch.Tensor) -> None:
    """``ValueError`` unless ``perm (N,)`` holds each of ``0..N-1`` once (CPU only: no host sync)."""
    n = perm.shape[0]
    if perm.device.type != "cpu" or n == 0:
        return
    lo, hi = int(perm.min()), int(perm.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"perm: expected a permutation of 0..{n - 1}, got values in [{lo}, {hi}]")
    counts = torch.bincount(perm, minlength=n)
    if bool((counts != 1).any()):
        dup = int(torch.nonzero(counts > 1)[0, 0])
        raise ValueError(f"perm: expected a permutation of 0..{n - 1}, got value {dup} {int(counts[dup])} times")


@dataclass(frozen=True, eq=False)
class GroupElement:
    """One group element: ``x -> scale · rotation @ x + translation``, plus a node permutation.

    Parameters
    ----------
    rotation : Tensor ``(d, d)`` or None
        Orthogonal matrix, ``d`` in {2, 3}; determinant -1 for reflections. None means identity.
        On the CPU it is checked: ``max |RᵀR - I|`` must be at most ``100 · eps · d`` for float32 and
        float64 (``10 · eps · d`` for 16-bit types), which float32 matrices rounded from float64 and
        long chains of compositions pass. CUDA tensors are not checked (no host sync).
    translation : Tensor ``(d,)`` or None
        None means zero.
    scale : float or None
        Positive scale factor; None means 1.
    perm : LongTensor ``(N,)`` or None
        Node permutation: a node-indexed tensor ``x`` becomes ``x[perm]``. None means identity.
        Must hold each of ``0..N-1`` exactly once (checked on the CPU only).
    label : str
        What kind of element this is: ``"identity"``, ``"haar"``, ``"reflection"``, ``"translation"``,
        ``"perm"``, ``"scale"``, ``"finite:<name>"``, ``"roll"``, ``"pole_flip"``, ``"parts"``,
        ``"composed"``, ``"inverse"``.
    part_rotation : Tensor ``(P, d, d)`` or None
        Piecewise elements (groups ``"<G>^parts"``): one orthogonal matrix per part (checked as
        ``rotation``). Set together
        with ``part_labels`` and instead of ``rotation``/``translation``.
    part_translation : Tensor ``(P, d)`` or None
        One translation per part (None means zero).
    part_labels : LongTensor ``(N,)`` or None
        The part (in ``[0, P)``) of each row of the tensors acted on: row ``i`` of a ``points`` tensor
        becomes ``part_rotation[part_labels[i]] @ x_i + part_translation[part_labels[i]]``. These are
        the labels *before* the element's permutation (if any) is applied.

    Examples
    --------
    >>> g = GroupElement(rotation=torch.eye(3).flip(0), translation=torch.ones(3), label="reflection")
    >>> g.dim, float(g.det)
    (3, -1.0)
    >>> GroupElement(rotation=2 * torch.eye(3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: rotation: expected an orthogonal matrix ...
    """

    rotation: torch.Tensor | None = None
    translation: torch.Tensor | None = None
    scale: float | None = None
    perm: torch.Tensor | None = None
    label: str = "identity"
    part_rotation: torch.Tensor | None = None
    part_translation: torch.Tensor | None = None
    part_labels: torch.Tensor | None = None

    def __post_init__(self):
        self._check_parts()
        R, t = self.rotation, self.translation
        if R is not None:
            check_tensor("rotation", R, floating=True)
            if R.dim() != 2 or R.shape[0] != R.shape[1] or R.shape[0] not in (2, 3):
                raise ValueError(f"rotation: expected shape (2, 2) or (3, 3), got {tuple(R.shape)}")
            check_tensor("rotation", R, finite=R.device.type == "cpu")
            _check_orthogonal("rotation", R)
        if t is not None:
            check_tensor("translation", t, ndim=1, floating=True)
            if t.shape[0] not in (2, 3) or (R is not None and t.shape[0] != R.shape[0]):
                d = R.shape[0] if R is not None else "2 or 3"
                raise ValueError(f"translation: expected shape ({d},), got {tuple(t.shape)}")
            check_tensor("translation", t, finite=t.device.type == "cpu")
        if self.scale is not None:
            check_number("scale", self.scale, positive=True)
        if self.perm is not None:
            check_tensor("perm", self.perm, ndim=1, dtypes=(torch.int64,))
            _check_perm(self.perm)
        if not isinstance(self.label, str):
            raise TypeError(f"label: expected a string, got {type(self.label).__name__}")

    def _check_parts(self):
        PR, Pt, lab = self.part_rotation, self.part_translation, self.part_labels
        if PR is None and Pt is None and lab is None:
            return
        if lab is None or (PR is None and Pt is None):
            raise ValueError("part_labels: a piecewise element needs part_labels and part_rotation and/or "
                             "part_translation")
        if self.rotation is not None or self.translation is not None:
            raise ValueError("part_rotation: a piecewise element has no global rotation/translation")
        check_tensor("part_labels", lab, ndim=1, dtypes=(torch.int64,))
        P = None
        if PR is not None:
            check_tensor("part_rotation", PR, ndim=3, floating=True)
            if PR.shape[-1] != PR.shape[-2] or PR.shape[-1] not in (2, 3):
                raise ValueError(f"part_rotation: expected shape (P, d, d) with d in (2, 3), got {tuple(PR.shape)}")
            check_tensor("part_rotation", PR, finite=PR.device.type == "cpu")
            _check_orthogonal("part_rotation", PR)
            P = PR.shape[0]
        if Pt is not None:
            check_tensor("part_translation", Pt, ndim=2, floating=True)
            if (PR is not None and Pt.shape != PR.shape[:2]) or Pt.shape[1] not in (2, 3):
                raise ValueError(f"part_translation: expected shape (P, d) = {tuple(PR.shape[:2]) if PR is not None else '(P, d)'}, "
                                 f"got {tuple(Pt.shape)}")
            P = Pt.shape[0]
        if lab.device.type == "cpu" and lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= P):
            raise ValueError(f"part_labels: values must lie in [0, {P}), got range [{int(lab.min())}, {int(lab.max())}]")

    @property
    def has_parts(self) -> bool:
        """Whether this is a piecewise element (one transform per part)."""
        return self.part_labels is not None

    @property
    def n_parts(self) -> int | None:
        """Number of parts ``P`` of a piecewise element, else None."""
        if not self.has_parts:
            return None
        return (self.part_rotation if self.part_rotation is not None else self.part_translation).shape[0]

    @property
    def dim(self) -> int | None:
        """Spatial dimension (2 or 3), or None when the element has no geometric part."""
        if self.rotation is not None:
            return self.rotation.shape[0]
        if self.translation is not None:
            return self.translation.shape[0]
        if self.part_rotation is not None:
            return self.part_rotation.shape[-1]
        return None if self.part_translation is None else self.part_translation.shape[-1]

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
            part_rotation=cast(self.part_rotation),
            part_translation=cast(self.part_translation),
            part_labels=cast(self.part_labels, floating=False),
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
    if g.has_parts or h.has_parts:
        return _compose_parts(g, h)
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


def _lift(g: GroupElement, P: int, labels: torch.Tensor):
    """``(R (P, d, d) or None, t (P, d) or None)`` of ``g`` as a piecewise element with ``P`` parts."""
    if g.has_parts:
        if g.n_parts != P or g.part_labels.shape != labels.shape:
            raise ValueError(f"h: {g.n_parts} parts / {g.part_labels.shape[0]} labels do not match the other "
                             f"element's {P} parts / {labels.shape[0]} labels")
        return g.part_rotation, g.part_translation
    R = None if g.rotation is None else g.rotation.expand(P, *g.rotation.shape)
    t = None if g.translation is None else g.translation.expand(P, *g.translation.shape)
    return R, t


def _compose_parts(g: GroupElement, h: GroupElement) -> GroupElement:
    # A node keeps its part when it is permuted, so part p of g∘h is (part p of g)∘(part p of h);
    # the labels are h's (those of the input), g's being h's labels after h's permutation.
    if g.scale is not None or h.scale is not None:
        raise ValueError("g: piecewise elements do not combine with scaling")
    src = h if h.has_parts else g
    P, labels = src.n_parts, src.part_labels
    Rg, tg = _lift(g, P, labels)
    Rh, th = _lift(h, P, labels)
    R = Rg if Rh is None else (Rh if Rg is None else Rg @ Rh)
    t = None
    if th is not None:
        t = th if Rg is None else (Rg @ th.unsqueeze(-1)).squeeze(-1)
    if tg is not None:
        t = tg if t is None else t + tg
    perm = g.perm if h.perm is None else (h.perm if g.perm is None else h.perm[g.perm])
    label = h.label if g.label == "identity" else (g.label if h.label == "identity" else "composed")
    return GroupElement(perm=perm, label=label, part_rotation=R, part_translation=t, part_labels=labels)


def inverse(g: GroupElement) -> GroupElement:
    """The element undoing ``g``: ``(1/s, Rᵀ, -(1/s) Rᵀ t, argsort(perm))``."""
    if not isinstance(g, GroupElement):
        raise TypeError(f"g: expected a GroupElement, got {type(g).__name__}")
    if g.has_parts:
        # the inverse acts on the transformed input, whose labels are the permuted ones
        Rt = None if g.part_rotation is None else g.part_rotation.transpose(-1, -2)
        t = None
        if g.part_translation is not None:
            t = -g.part_translation if Rt is None else -(Rt @ g.part_translation.unsqueeze(-1)).squeeze(-1)
        labels = g.part_labels if g.perm is None else g.part_labels[g.perm]
        perm = None if g.perm is None else torch.argsort(g.perm)
        return GroupElement(perm=perm, label="inverse" if g.label != "identity" else "identity",
                            part_rotation=Rt, part_translation=t, part_labels=labels)
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
# Bytes per part of a piecewise group's element while it is drawn (Python objects and 3x3 tensors).
_PART_BYTES = 4096


def _device(device) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def _check_dtype(dtype) -> None:
    """``TypeError`` unless ``dtype`` is None or a floating-point ``torch.dtype`` (strings get a hint)."""
    if dtype is not None:
        _float_dtype(dtype)


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
    has_parts : bool
        Piecewise groups ``"<G>^parts"``: sampling needs ``labels`` (one part id per node) and gives
        one element of ``G`` per part.
    table : Tensor ``(K, d, d)`` or None
        The elements (float64, identity first) of the finite groups ``"D4"``, ``"C4"``,
        ``"equirect:<W>"`` and ``"azimuth:<W>"``.
    """

    def __init__(self, geometric: str | None, permutations: bool, scaling: bool, axis=None, parts: bool = False):
        if geometric is not None:
            if not isinstance(geometric, str):
                raise TypeError(f"geometric: expected a geometric group name (str) or None, got {type(geometric).__name__}")
            base, _, w = geometric.partition(":")
            if geometric not in _GEOMETRIC and geometric not in _TABLES and not (
                    base in _PARAM_TABLES and w.isdigit() and 1 <= int(w) <= MAX_AZIMUTH_BINS):
                raise ValueError(f"geometric: unknown geometric group {geometric!r}; build groups with get_group(name)")
        for flag, v in (("permutations", permutations), ("scaling", scaling), ("parts", parts)):
            if not isinstance(v, bool):
                raise TypeError(f"{flag}: expected a bool, got {type(v).__name__}")
        if geometric is None and not (permutations or scaling):
            raise ValueError("geometric: a group needs a geometric part, permutations or scaling")
        self._geo = geometric
        self.dim, self._rot, self.has_translations = _geometric_info(geometric) if geometric else (None, None, False)
        self.has_permutations = permutations
        self.has_scaling = scaling
        self.has_parts = parts
        self.table = _table(geometric) if self._rot == "table" else None
        self.has_reflections = self._rot in ("O", "axis") or (self._rot == "table" and _table_reflects(geometric))
        self.is_finite = self._rot in ("finite", "table", None) and not scaling and not self.has_translations and not parts
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
        names = ([geometric + ("^parts" if parts else "")] if geometric else []) + (["perm"] if permutations else []) \
            + (["scale"] if scaling else [])
        self.name = "+".join(names)

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

    def _need_nodes(self, n_nodes, device=None):
        if not self.has_permutations:
            return None
        if n_nodes is None:
            raise ValueError(f"n_nodes: group {self.name!r} permutes nodes, so n_nodes (an int >= 1) is required")
        n_nodes = check_positive_int("n_nodes", n_nodes)
        # the permutations drawn (randperm's work space, the structured ones): a few int64 per node
        check_alloc("n_nodes", n_nodes, n_nodes, 4, torch.int64, _device(device))
        return n_nodes

    def _need_labels(self, labels):
        if not self.has_parts:
            if labels is not None:
                raise ValueError(f"labels: group {self.name!r} is not piecewise ('<G>^parts'); it takes no labels")
            return None, None
        if labels is None:
            raise ValueError(f"labels: group {self.name!r} acts per part, so labels (a LongTensor (N,) of part "
                             "ids in [0, P)) are required")
        check_tensor("labels", labels, ndim=1, dtypes=(torch.int64, torch.int32), min_rows=1)
        lo, P = int(labels.min()), int(labels.max()) + 1
        if lo < 0:
            raise ValueError(f"labels: expected part ids >= 0, got {lo}")
        # one element per part id up to the largest (a Python object and small tensors each)
        check_memory("labels", f"(largest part id {P - 1})", P * _PART_BYTES, _device(labels.device),
                     what=f"{P} per-part group elements")
        return labels.to(torch.int64), P

    def _parts_element(self, elems: list[GroupElement], labels, label: str, perm=None) -> GroupElement:
        R = None if elems[0].rotation is None else torch.stack([e.rotation for e in elems])
        t = None if elems[0].translation is None else torch.stack([e.translation for e in elems])
        return GroupElement(perm=perm, label=label, part_rotation=R, part_translation=t,
                            part_labels=labels.to(device=(R if R is not None else t).device))

    def _axis_element(self, angle: float, reflect: bool, dtype, device) -> torch.Tensor:
        # rotation by `angle` about the axis, optionally followed by the reflection through the plane
        # spanned by the axis and the first basis vector; all these fix the axis pointwise.
        Q = self._basis
        c, s = math.cos(angle), math.sin(angle)
        flip = -1.0 if reflect else 1.0
        M = torch.tensor([[c, -s * flip, 0.0], [s, c * flip, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        return (Q @ M @ Q.T).to(dtype=dtype, device=device)

    # --- elements
    def identity(self, dtype=torch.float64, device=None, n_nodes=None, labels=None) -> GroupElement:
        """The identity, with explicit parts for what the group has (``perm`` only when ``n_nodes`` given;
        piecewise groups need ``labels``)."""
        _check_dtype(dtype)
        d = self.dim
        if self.has_parts:
            labels, P = self._need_labels(labels)
            e = self._base().identity(dtype=dtype, device=device)
            perm = None if (n_nodes is None or not self.has_permutations) else torch.arange(n_nodes, device=device)
            return self._parts_element([e] * P, labels, "identity", perm)
        return GroupElement(
            rotation=None if d is None else torch.eye(d, dtype=dtype, device=device),
            translation=torch.zeros(d, dtype=dtype, device=device) if self.has_translations else None,
            scale=1.0 if self.has_scaling else None,
            perm=None if (n_nodes is None or not self.has_permutations) else torch.arange(n_nodes, device=device),
            label="identity",
        )

    def _base(self) -> "Group":
        """The geometric group of one part of a piecewise group."""
        return Group(self._geo, False, False)

    def sample(self, generator=None, dtype=torch.float64, device=None, n_nodes=None, labels=None) -> GroupElement:
        """One random element: Haar on the compact part, uniform on permutations and finite groups.

        Translations are standard normal; scales are ``2**u`` with ``u`` uniform on ``[-1, 1]``
        (neither has a normalisable invariant measure). All draws use ``generator`` on ``device``.
        Piecewise groups (``"E3^parts"``) draw one independent element per part of ``labels``.

        Examples
        --------
        >>> G = get_group("E3+perm")
        >>> g = G.sample(generator=torch.Generator().manual_seed(0), n_nodes=5)
        >>> g.rotation.shape, g.translation.shape, g.perm.shape, g.label
        (torch.Size([3, 3]), torch.Size([3]), torch.Size([5]), 'haar')
        """
        _check_dtype(dtype)
        n_nodes = self._need_nodes(n_nodes, device)
        if self.has_parts:
            labels, P = self._need_labels(labels)
            base = self._base()
            elems = [base.sample(generator=generator, dtype=dtype, device=device) for _ in range(P)]
            perm = torch.randperm(n_nodes, generator=generator, device=device) if n_nodes is not None else None
            return self._parts_element(elems, labels, "haar", perm)
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
        elif self._rot == "table":
            T = self.table.to(dtype=dtype, device=device)
            R = T[torch.randint(len(T), (), generator=generator, device=device)]
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

    def structured(self, dtype=torch.float64, device=None, n_nodes=None, generator=None,
                   labels=None) -> list[GroupElement]:
        """Structured test elements that random sampling rarely or never hits.

        The identity; for groups with reflections: inversion ``-I``, the plane reflection ``x -> -x``,
        a reflection through a generic plane and an improper rotation (O(2): two line reflections;
        ``O2_axis``: two plane reflections fixing the axis), all labelled ``"reflection"``; for finite
        groups their non-identity elements (at most 12, every rotation order represented), labelled
        ``"finite:<name>"``; pure translations (``"translation"``); the reversing and one random
        permutation (``"perm"``); scales 0.5 and 2 (``"scale"``). Each non-identity element changes
        one part only. ``"D4"``/``"C4"``: every non-identity element (``"finite:D4"``); ``"equirect:<W>"``:
        the rolls by ±1 and W/2 bins (``"roll"``), the pole flip and the flip after a one-bin roll
        (``"pole_flip"``). Piecewise groups: the base group's structured elements applied to part 0
        only, and one element moving every part differently (``"parts"``).

        Examples
        --------
        >>> [g.label for g in get_group("SE3+scale").structured()]
        ['identity', 'translation', 'translation', 'scale', 'scale']
        >>> [g.label for g in get_group("equirect:8").structured()]
        ['identity', 'roll', 'roll', 'roll', 'pole_flip', 'pole_flip']
        """
        _check_dtype(dtype)
        n_nodes = self._need_nodes(n_nodes, device)
        if self.has_parts:
            return self._structured_parts(dtype, device, n_nodes, generator, labels)
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
        elif self._rot == "table":
            rot = [(m.to(dtype=dtype, device=device), lab) for m, lab in _table_structured(self._geo, self.table)]
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

    def _structured_parts(self, dtype, device, n_nodes, generator, labels):
        labels, P = self._need_labels(labels)
        base = self._base()
        ident = base.identity(dtype=dtype, device=device)
        perm0 = None if n_nodes is None else torch.arange(n_nodes, device=device)
        out = [self._parts_element([ident] * P, labels, "identity", perm0)]
        for e in base.structured(dtype=dtype, device=device)[1:]:  # part 0 moves, the others stay
            out.append(self._parts_element([e] + [ident] * (P - 1), labels, e.label, perm0))
        # every part differently: part p rotated by (p+1)·0.7 rad about a tilted axis, translated by p
        mats = []
        for p in range(P):
            ang = (p + 1) * 0.7
            if self.dim == 3:
                R = euler_to_matrix(torch.tensor([ang, 0.4 * (p + 1), -ang], dtype=torch.float64))
            else:
                R = rotation_2d(torch.tensor(ang, dtype=torch.float64))
            t = torch.full((self.dim,), float(p), dtype=torch.float64) if self.has_translations else None
            mats.append(GroupElement(R.to(dtype=dtype, device=device), None if t is None else t.to(dtype=dtype, device=device)))
        out.append(self._parts_element(mats, labels, "parts", perm0))
        if self.has_permutations:
            rev = torch.arange(n_nodes - 1, -1, -1, device=device)
            rnd = torch.randperm(n_nodes, generator=generator, device=device)
            out += [self._parts_element([ident] * P, labels, "perm", p) for p in (rev, rnd)]
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


def _geometric_info(name: str):
    """``(dim, rotation part, has_translations)`` of a geometric group name (tables included)."""
    if name in _GEOMETRIC:
        return _GEOMETRIC[name]
    if name in _TABLES:
        return _TABLES[name][0], "table", False
    base = name.partition(":")[0]
    return _PARAM_TABLES[base][0], "table", False


def _table_reflects(name: str) -> bool:
    return (_TABLES.get(name) or _PARAM_TABLES[name.partition(":")[0]])[1]


def _rz(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


POLE_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))  # rotation by π about x


@functools.lru_cache(maxsize=32)
def _table(name: str) -> torch.Tensor:
    """The elements of a table group, float64, identity first (exact: entries of the 2D tables are 0, ±1)."""
    if name in ("D4", "C4"):
        r = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # +90° (counter-clockwise)
        rots = [torch.linalg.matrix_power(r, k) for k in range(4)]
        flips = [m @ torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64)) for m in rots] if name == "D4" else []
        return torch.stack(rots + flips)
    base, _, w = name.partition(":")
    W = int(w)
    rolls = [_rz(2 * math.pi * k / W) for k in range(W)]
    # entries that are exactly 0 / ±1 (quarter turns) should be exact
    rolls = [torch.where((m - m.round()).abs() < 1e-15, m.round(), m) for m in rolls]
    flips = [m @ POLE_FLIP for m in rolls] if base == "equirect" else []
    return torch.stack(rolls + flips)


def _table_structured(name: str, table: torch.Tensor):
    if name in ("D4", "C4"):
        return [(m, f"finite:{name}") for m in table[1:]]
    W = int(name.partition(":")[2])
    ks = sorted({1 % W, (W - 1) % W, (W // 2) % W} - {0})
    out = [(table[k], "roll") for k in ks]
    if name.startswith("equirect"):
        out += [(table[W], "pole_flip"), (table[W + 1 % W], "pole_flip")]
    return out


def _canonical_part(part: str) -> str:
    p = part.strip().replace("(", "").replace(")", "").replace(" ", "")
    for name in tuple(_GEOMETRIC) + tuple(_TABLES) + _EXTRA:
        if p.lower() == name.lower():
            return name
    base, sep, w = p.partition(":")
    if base.lower() in _PARAM_TABLES:
        if not w.isdigit() or int(w) < 1:
            raise ValueError(f"group: {part!r} needs a positive number of azimuth bins, e.g. '{base.lower()}:64'")
        if int(w) > MAX_AZIMUTH_BINS:
            raise ValueError(f"group: {part!r} has {int(w)} azimuth bins; at most {MAX_AZIMUTH_BINS} are supported "
                             f"(the group's table holds 2W exact 3x3 matrices)")
        return f"{base.lower()}:{int(w)}"
    aliases = {"permutation": "perm", "permutations": "perm", "scaling": "scale", "o2axis": "O2_axis",
               "image_d4": "D4", "image_c4": "C4"}
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
        Finite tables: ``"D4"`` (the 8 exact symmetries of a square image: quarter turns and flips, as
        2x2 matrices) and ``"C4"`` (quarter turns); ``"equirect:<W>"`` (the 2W rotations generated by the
        roll about z by one of W azimuth bins, ``Rz(2π/W)``, and the pole flip ``diag(1, -1, -1)``,
        the half turn about the x axis) and ``"azimuth:<W>"`` (the rolls only). Piecewise:
        ``"<G>^parts"`` for a continuous ``G`` (``"E3^parts"``, ``"SE3^parts"``, ``"SO2^parts"``, ...),
        one independent element of ``G`` per part; sampling needs ``labels``.
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
    parts, piecewise = [], False
    for p in group.split("+"):
        p = p.strip()
        if p.lower().endswith("^parts"):
            p, piecewise = p[: -len("^parts")], True
            c = _canonical_part(p)
            if c not in _PART_BASES:
                raise ValueError(f"group: '^parts' needs one of {list(_PART_BASES)}, got {p!r} in {group!r}")
            parts.append(c)
            continue
        parts.append(_canonical_part(p))
    known = set(_GEOMETRIC) | set(_TABLES) | set(_EXTRA)
    bad = [p for p in parts if p not in known and p.partition(":")[0] not in _PARAM_TABLES]
    if bad or len(set(parts)) != len(parts):
        why = f"unknown name(s) {bad}" if bad else "a repeated part"
        raise ValueError(f"group: {group!r} has {why}; expected one of {list(GROUP_NAMES)} or a '+' product of them")
    geo = [p for p in parts if p not in _EXTRA]
    if len(geo) > 1:
        raise ValueError(f"group: {group!r} combines several geometric groups {geo}; use at most one")
    geometric = geo[0] if geo else None
    if "axis" in kwargs and geometric != "O2_axis":
        raise ValueError(f"axis: only the 'O2_axis' group takes an axis, not {group!r}")
    if piecewise and "scale" in parts:
        raise ValueError(f"group: {group!r}: piecewise groups do not combine with 'scale'")
    return Group(geometric, "perm" in parts, "scale" in parts, axis=kwargs.get("axis"), parts=piecewise)
