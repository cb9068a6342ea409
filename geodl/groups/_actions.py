"""How a group element acts on a tensor, by the tensor's *kind*.

Kind grammar: an optional prefix ``node:`` (the tensor is indexed by node along dim 0, so the
element's permutation acts on it) followed by a base kind:

=================  =========================================  ===========================
base kind          action of ``g = (s, R, t, perm)``           shape (trailing dims)
=================  =========================================  ===========================
``scalar``         unchanged                                  any
``points``         ``s · R x + t``                            ``(..., d)``
``vectors``        ``s · R v``                                ``(..., d)``
``pseudovectors``  ``det(R) · s · R v``                       ``(..., d)``
``tensor2``        ``R T Rᵀ`` (not scaled)                    ``(..., d, d)``
``sh:<lmax>``      block-diagonal ``wigner_D(l, R)``; for     ``(..., (lmax+1)²)``
                   improper ``R = -R'``: ``(-1)^l D(R')``
``perm``           same as ``node:scalar``                    ``(N, ...)``
``edge_index``     node ids relabelled so edges follow nodes  ``(2, E)`` integer
=================  =========================================  ===========================

A node permutation ``perm`` maps a node tensor ``x`` to ``x[perm]``: new node ``i`` is old node
``perm[i]``. An edge ``(a, b)`` between old nodes therefore becomes ``(inv[a], inv[b])`` with
``inv = argsort(perm)``; edge order is unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from geodl._checks import check_tensor
from geodl.groups._group import GroupElement
from geodl.groups._wigner import wigner_D_blocks

__all__ = ["KindSpec", "parse_kind", "act", "KINDS"]

KINDS = ("scalar", "points", "vectors", "pseudovectors", "tensor2", "sh:<lmax>", "perm", "edge_index")
_GEOMETRIC_BASES = ("scalar", "points", "vectors", "pseudovectors", "tensor2", "sh")


@dataclass(frozen=True)
class KindSpec:
    """A parsed feature kind.

    Attributes
    ----------
    kind : str
        Canonical spelling, e.g. ``"node:vectors"``, ``"sh:2"``, ``"node:scalar"`` for ``"perm"``.
    base : str
        ``"scalar"``, ``"points"``, ``"vectors"``, ``"pseudovectors"``, ``"tensor2"``, ``"sh"`` or ``"edge_index"``.
    node : bool
        Whether node permutations act along dim 0.
    lmax : int or None
        Maximum degree for ``"sh"``.
    """

    kind: str
    base: str
    node: bool
    lmax: int | None = None

    @property
    def is_geometric(self) -> bool:
        """Whether rotations, translations or scalings change tensors of this kind."""
        return self.base not in ("scalar", "edge_index")


@functools.lru_cache(maxsize=256)
def _parse(kind: str) -> KindSpec:
    def bad(why=""):
        return ValueError(
            f"kind: unknown kind {kind!r}{why}; expected an optional 'node:' prefix and one of {list(KINDS)}"
        )

    rest, node = kind.strip(), False
    if rest.startswith("node:"):
        rest, node = rest[len("node:"):], True
    if rest == "perm":
        return KindSpec("node:scalar", "scalar", True)
    if rest == "edge_index":
        if node:
            raise bad(" ('edge_index' takes no prefix)")
        return KindSpec("edge_index", "edge_index", False)
    lmax = None
    if rest.startswith("sh"):
        suffix = rest[2:]
        if not suffix.startswith(":") or not suffix[1:].isdigit():
            raise bad(" ('sh' needs a degree, e.g. 'sh:2')")
        rest, lmax = "sh", int(suffix[1:])
    if rest not in _GEOMETRIC_BASES:
        raise bad()
    name = rest if lmax is None else f"sh:{lmax}"
    return KindSpec(("node:" if node else "") + name, rest, node, lmax)


def parse_kind(kind) -> KindSpec:
    """Parse a kind string (a :class:`KindSpec` is returned unchanged).

    Examples
    --------
    >>> parse_kind("node:sh:2")
    KindSpec(kind='node:sh:2', base='sh', node=True, lmax=2)
    >>> parse_kind("perm").kind
    'node:scalar'
    """
    if isinstance(kind, KindSpec):
        return kind
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected a kind string such as 'node:vectors', got {type(kind).__name__}")
    return _parse(kind)


def _sh_matrix(R: torch.Tensor, lmax: int) -> torch.Tensor:
    """Block-diagonal ``((lmax+1)², (lmax+1)²)`` action of an orthogonal 3x3 ``R`` (parity for det -1)."""
    sign = torch.sign(torch.linalg.det(R))  # no host sync: improper R handled arithmetically
    blocks = wigner_D_blocks(lmax, sign * R)
    return torch.block_diag(*[b * sign**l for l, b in enumerate(blocks)])


def _geometric(spec: KindSpec, g: GroupElement, x: torch.Tensor) -> torch.Tensor:
    base = spec.base
    if base == "scalar":
        return x
    check_tensor("x", x, floating=True)
    d = g.dim
    if base == "sh":
        n = (spec.lmax + 1) ** 2
        if x.dim() == 0 or x.shape[-1] != n:
            raise ValueError(f"x: kind {spec.kind!r} expects last dim (lmax+1)² = {n}, got shape {tuple(x.shape)}")
        if g.rotation is None:
            return x
        if d != 3:
            raise ValueError(f"g: kind {spec.kind!r} needs a 3D rotation, got a {d}D element")
        D = _sh_matrix(g.rotation.to(dtype=x.dtype, device=x.device), spec.lmax)
        return x @ D.transpose(-1, -2)
    if d is not None:
        need = (..., d, d) if base == "tensor2" else (..., d)
        check_tensor("x", x, shape=need)
    elif base == "tensor2":
        check_tensor("x", x, shape=(..., None, None))
    R = None if g.rotation is None else g.rotation.to(dtype=x.dtype, device=x.device)
    if base == "tensor2":
        return x if R is None else R @ x @ R.transpose(0, 1)
    y = x if R is None else x @ R.transpose(0, 1)
    if base == "pseudovectors" and R is not None:
        y = y * torch.sign(torch.linalg.det(R))
    if g.scale is not None:
        y = y * g.scale
    if base == "points" and g.translation is not None:
        y = y + g.translation.to(dtype=x.dtype, device=x.device)
    return y


def act(kind, g: GroupElement, x: torch.Tensor) -> torch.Tensor:
    """Apply the group element ``g`` to a tensor ``x`` of the given kind.

    Parameters
    ----------
    kind : str or KindSpec
        See the module table: ``"scalar"``, ``"points"``, ``"vectors"``, ``"pseudovectors"``,
        ``"tensor2"``, ``"sh:<lmax>"``, ``"perm"``, ``"edge_index"``, optionally prefixed ``"node:"``.
    g : GroupElement
    x : Tensor
        Geometric kinds act on the trailing dim(s) and broadcast over leading dims; node kinds are
        permuted along dim 0 (length ``N = len(g.perm)``).

    Returns
    -------
    Tensor of the same shape, dtype and device as ``x`` (``g`` is cast to ``x``'s dtype).
    NaN/inf in ``x`` propagate (no value checks, so that checkers can report them).

    Examples
    --------
    >>> from geodl.groups import get_group
    >>> g = get_group("E3+perm").sample(generator=torch.Generator().manual_seed(0), n_nodes=4)
    >>> pos = torch.randn(4, 3, dtype=torch.float64)
    >>> new = act("node:points", g, pos)
    >>> bool(torch.allclose(new, (pos @ g.rotation.T + g.translation)[g.perm]))
    True
    >>> edges = torch.tensor([[0, 1], [1, 2]])
    >>> moved = act("edge_index", g, edges)
    >>> bool(torch.equal(g.perm[moved], edges))  # each edge joins the same nodes as before
    True
    """
    spec = parse_kind(kind)
    if not isinstance(g, GroupElement):
        raise TypeError(f"g: expected a GroupElement, got {type(g).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if spec.base == "edge_index":
        check_tensor("x", x, shape=(2, None), dtypes=(torch.int64, torch.int32))
        if g.perm is None:
            return x
        inv = torch.argsort(g.perm.to(x.device))
        return inv[x].to(x.dtype)
    y = _geometric(spec, g, x)
    if spec.node and g.perm is not None:
        n = g.perm.shape[0]
        if x.dim() == 0 or x.shape[0] != n:
            raise ValueError(f"x: kind {spec.kind!r} expects {n} nodes along dim 0, got shape {tuple(x.shape)}")
        y = y[g.perm.to(y.device)]
    return y
