"""The kind registry: one table of feature kinds that :func:`act`, ``geodl.testing.random_inputs``,
the equivariance checker and ``geodl check --help`` all read.

A *kind* says how a group element acts on a tensor. Its spelling is an optional ``node:`` prefix
(the tensor is indexed by node along dim 0, so the element's permutation acts on it) and a base
name, optionally with a parameter after a colon (``sh:<lmax>``, ``equirect:<H>x<W>``). An e3nn
``Irreps`` string (``"2x0e+1x1o"``) is a kind too. Adding a kind is one :func:`register_kind` call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from geodl._checks import check_int, check_memory
from geodl.groups._group import GroupElement
from geodl.groups._grids import _float_dtype

__all__ = ["KindSpec", "KindDef", "register_kind", "parse_kind", "act", "random_input", "kind_table", "KINDS"]


@dataclass(frozen=True)
class KindSpec:
    """A parsed feature kind.

    Attributes
    ----------
    kind : str
        Canonical spelling, e.g. ``"node:vectors"``, ``"sh:2"``, ``"node:scalar"`` for ``"perm"``.
    base : str
        The registered name, e.g. ``"vectors"``, ``"sh"``, ``"equirect"``, ``"irreps"``.
    node : bool
        Whether node permutations act along dim 0.
    lmax : int or None
        Maximum degree for ``"sh"`` and ``"so3"``.
    param : hashable or None
        The parsed parameter of other parametrised kinds (e.g. ``(H, W)`` for ``equirect``, the
        canonical irreps string for ``irreps``, ``"e3nn"`` for ``sh:<lmax>:e3nn``).
    """

    kind: str
    base: str
    node: bool
    lmax: int | None = None
    param: object = None

    @property
    def is_geometric(self) -> bool:
        """Whether rotations, translations or scalings change tensors of this kind."""
        return _REGISTRY[self.base].geometric

    @property
    def definition(self) -> "KindDef":
        """The registry entry of this kind."""
        return _REGISTRY[self.base]


@dataclass(frozen=True)
class KindDef:
    """One entry of the kind registry (see :func:`register_kind` for the fields)."""

    name: str
    act: Callable
    random: Callable | None
    shape: str
    doc: str
    param: str | None = None
    parse: Callable | None = None
    node: str = "optional"
    geometric: bool = True
    integer: bool = False
    canonical: str | None = None

    @property
    def syntax(self) -> str:
        """How the kind is written, e.g. ``"sh:<lmax>[:e3nn]"``."""
        return self.name if self.param is None else f"{self.name}:{self.param}"


_REGISTRY: dict[str, KindDef] = {}
_ALIASES: dict[str, str] = {}  # name -> canonical kind string (e.g. "perm" -> "node:scalar")
_IRREPS = "irreps"


def register_kind(name: str, *, act: Callable | None = None, random: Callable | None = None, shape: str = "",
                  doc: str = "", param: str | None = None, parse: Callable | None = None, node: str = "optional",
                  geometric: bool = True, integer: bool = False, same_as: str | None = None,
                  replace: bool = False) -> KindDef:
    """Add a feature kind to the registry.

    Parameters
    ----------
    name : str
        The base name (letters, digits, ``_``), e.g. ``"vectors"``.
    act : callable ``(spec, g, x) -> Tensor``
        The action of a :class:`GroupElement` on a tensor of this kind, *without* the node
        permutation (which :func:`act` applies along dim 0 afterwards for ``node`` kinds). It must
        check ``x``'s shape (``ValueError`` naming ``x``) and keep its shape, dtype and device.
    random : callable ``(spec, n, *, dim, dtype, generator, device) -> Tensor``, optional
        A random example with ``n`` rows (what ``geodl.testing.random_inputs`` returns).
    shape : str
        The expected shape, for tables and help (e.g. ``"(..., d)"``).
    doc : str
        One line: what the action is.
    param : str, optional
        For parametrised kinds, the parameter syntax shown in help (e.g. ``"<lmax>"``); then
        ``parse`` is required.
    parse : callable ``(text) -> (canonical_suffix, lmax, param)``, optional
        Parses the text after ``name:``; raises ``ValueError`` with a hint on bad input.
    node : {"optional", "always", "never"}
        Whether the ``node:`` prefix may be written, is implied (``batch``) or is not allowed
        (``edge_index``, which relabels node ids itself).
    geometric : bool
        Whether rotations, translations or scalings change tensors of this kind.
    integer : bool
        Integer tensors (indices, labels); the checker neither casts nor compares them as floats.
    same_as : str, optional
        Make ``name`` an alias of another kind string (e.g. ``"perm"`` of ``"node:scalar"``); the
        other arguments except ``doc`` are then ignored.
    replace : bool
        Allow replacing an existing entry.

    Returns
    -------
    KindDef

    Examples
    --------
    >>> import torch
    >>> from geodl.groups import register_kind, act, get_group
    >>> def _act_axial(spec, g, x):  # a 3-vector that does not change sign under inversion
    ...     R = torch.eye(3, dtype=x.dtype) if g.rotation is None else g.rotation.to(x.dtype)
    ...     return x @ (R * torch.sign(torch.linalg.det(R))).T
    >>> _ = register_kind("axial_doc_example", act=_act_axial, shape="(..., 3)", doc="det(R) R v", replace=True)
    >>> g = get_group("O3").structured()[1]  # the inversion -I
    >>> act("node:axial_doc_example", g, torch.ones(2, 3, dtype=torch.float64))[0].tolist()
    [1.0, 1.0, 1.0]
    """
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise ValueError(f"name: expected a kind name of letters, digits and '_', got {name!r}")
    if name == "node":
        raise ValueError("name: 'node' is reserved (it is the prefix of per-node kinds, 'node:<kind>')")
    if (name in _REGISTRY or name in _ALIASES) and not replace:
        raise ValueError(f"name: kind {name!r} is already registered (pass replace=True to replace it)")
    if same_as is not None:
        _ALIASES[name] = same_as
        entry = KindDef(name, act=None, random=None, shape="", doc=doc, canonical=same_as)
        _ALIAS_DOCS[name] = entry
        _parse.cache_clear()
        return entry
    if not callable(act):
        raise TypeError(f"act: expected a callable (spec, g, x) -> Tensor, got {type(act).__name__}")
    if random is not None and not callable(random):
        raise TypeError(f"random: expected a callable or None, got {type(random).__name__}")
    if param is not None and not callable(parse):
        raise TypeError(f"parse: a parametrised kind ({name}:{param}) needs a parse callable")
    if node not in ("optional", "always", "never"):
        raise ValueError(f"node: expected 'optional', 'always' or 'never', got {node!r}")
    entry = KindDef(name, act, random, shape, doc, param, parse, node, geometric, integer)
    _REGISTRY[name] = entry
    _ALIASES.pop(name, None)
    _parse.cache_clear()
    return entry


_ALIAS_DOCS: dict[str, KindDef] = {}


class _KindsView(Sequence):
    """Live, read-only view of the registered kinds' syntax (``"scalar"``, ``"sh:<lmax>[:e3nn]"``, ...)."""

    def _names(self):
        return [e.syntax for e in _REGISTRY.values()] + list(_ALIASES)

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self):
        return len(self._names())

    def __repr__(self):
        return f"KINDS({self._names()})"

    def __eq__(self, other):
        return tuple(self) == tuple(other) if isinstance(other, (tuple, list, _KindsView)) else NotImplemented

    __hash__ = None


KINDS = _KindsView()


def kind_table() -> list[tuple[str, str, str]]:
    """``(syntax, shape, doc)`` for every registered kind, in registration order (what help prints).

    Examples
    --------
    >>> rows = kind_table()
    >>> rows[0]
    ('scalar', 'any', 'unchanged')
    """
    rows = [(e.syntax, e.shape, e.doc) for e in _REGISTRY.values()]
    rows += [(name, _parse(target).definition.shape, e.doc) for name, e in _ALIAS_DOCS.items()
             for target in [_ALIASES[name]]]
    return rows


def _unknown(kind: str, why: str = "") -> ValueError:
    return ValueError(f"kind: unknown kind {kind!r}{why}; expected an optional 'node:' prefix and one of "
                      f"{list(KINDS)}")


@functools.lru_cache(maxsize=512)
def _parse(kind: str) -> KindSpec:
    rest, node = kind.strip(), False
    if rest.startswith("node:"):
        rest, node = rest[len("node:"):], True
    if rest in _ALIASES:
        spec = _parse(_ALIASES[rest])
        return spec
    name, sep, arg = rest.partition(":")
    entry = _REGISTRY.get(name)
    if entry is None:
        return _parse_irreps(kind, rest, node)
    if name == _IRREPS:  # "irreps:2x0e" is the same kind as the bare "2x0e"
        return _parse_irreps(kind, arg, node)
    if entry.param is None and sep:
        raise _unknown(kind, f" ({name!r} takes no parameter)")
    if entry.param is not None and not sep:
        raise _unknown(kind, f" ({name!r} needs a parameter, e.g. '{name}:{entry.param}')")
    if entry.node == "never" and node:
        raise _unknown(kind, f" ({name!r} takes no prefix)")
    node = node or entry.node == "always"
    lmax = param = None
    canonical = name
    if entry.param is not None:
        try:
            suffix, lmax, param = entry.parse(arg)
        except ValueError as exc:
            raise _unknown(kind, f" ({exc})") from None
        canonical = f"{name}:{suffix}"
    prefix = "node:" if node and entry.node != "always" else ""
    return KindSpec(prefix + canonical, name, node, lmax, param)


def _parse_irreps(kind: str, rest: str, node: bool) -> KindSpec:
    rest = rest.strip()
    if _IRREPS not in _REGISTRY or not rest or not rest[0].isdigit():
        raise _unknown(kind)
    from e3nn.o3 import Irreps

    try:
        irreps = Irreps(rest)
    except (ValueError, AssertionError, TypeError) as exc:
        raise _unknown(kind, f" (not e3nn irreps either: {exc})") from None
    text = str(irreps)
    return KindSpec(("node:" if node else "") + text, _IRREPS, node, irreps.lmax if len(irreps) else None, text)


def parse_kind(kind) -> KindSpec:
    """Parse a kind string (a :class:`KindSpec` is returned unchanged).

    Examples
    --------
    >>> parse_kind("node:sh:2")
    KindSpec(kind='node:sh:2', base='sh', node=True, lmax=2, param=None)
    >>> parse_kind("perm").kind
    'node:scalar'
    >>> parse_kind("equirect:8x16").param
    (8, 16)
    >>> parse_kind("node:2x0e + 1x1o").kind
    'node:2x0e+1x1o'
    """
    if isinstance(kind, KindSpec):
        return kind
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected a kind string such as 'node:vectors', got {type(kind).__name__}")
    return _parse(kind)


def act(kind, g: GroupElement, x: torch.Tensor) -> torch.Tensor:
    """Apply the group element ``g`` to a tensor ``x`` of the given kind.

    Parameters
    ----------
    kind : str or KindSpec
        A registered kind (see :func:`kind_table` and the table in ``docs/groups.md``), optionally
        prefixed ``"node:"``, or an e3nn irreps string.
    g : GroupElement
    x : Tensor
        Geometric kinds act on the trailing dim(s) and broadcast over leading dims; node kinds are
        permuted along dim 0 (length ``N = len(g.perm)``).

    Returns
    -------
    Tensor of the same shape, dtype and device as ``x`` (``g`` is cast to ``x``'s dtype).
    NaN/inf in ``x`` propagate (no value checks, so that checkers can report them). The node ids
    of an ``edge_index`` are the exception: on the CPU a negative id, or one ``>= N`` when ``g``
    permutes ``N`` nodes, raises ``ValueError`` (it would otherwise wrap around or fail inside the
    indexing); CUDA tensors are not read, to avoid a host sync.

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
    y = spec.definition.act(spec, g, x)
    if spec.node and g.perm is not None:
        n = g.perm.shape[0]
        if x.dim() == 0 or x.shape[0] != n:
            raise ValueError(f"x: kind {spec.kind!r} expects {n} nodes along dim 0, got shape {tuple(x.shape)}")
        y = y[g.perm.to(y.device)]
    return y


def random_input(kind, n: int, *, dim: int = 3, dtype=torch.float64, generator=None, device=None) -> torch.Tensor:
    """A random tensor of the given kind with ``n`` rows, from the kind's registered generator.

    ``dtype`` is a floating-point ``torch.dtype`` (None: float64); integer kinds ignore it.

    Examples
    --------
    >>> random_input("node:sh:1", 5, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 4])
    """
    spec = parse_kind(kind)
    n = check_int("n", n, min=0)
    dim = check_int("dim", dim, min=1)
    dtype = _float_dtype(torch.float64 if dtype is None else dtype)
    gen = spec.definition.random
    if gen is None:
        raise ValueError(f"kind: {spec.kind!r} has no registered random generator")
    if n > 4:  # rows cost the same: price them on a small probe (generators draw in float64, then cast)
        probe = gen(spec, 4, dim=dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0), device="cpu")
        check_memory("n", n, 2 * n * probe.numel() * probe.element_size() // 4, device or "cpu",
                     what=f"{n} random rows of kind {spec.kind!r}")
    return gen(spec, n, dim=dim, dtype=dtype, generator=generator, device=device)


def _check_kinds(kinds_arg: str, kinds) -> None:
    """Check that every kind string in a str / tuple / dict of kinds parses."""
    if isinstance(kinds, str):
        items = [(None, kinds)]
    elif isinstance(kinds, Mapping):
        items = list(kinds.items())
    elif isinstance(kinds, (tuple, list)):
        items = list(enumerate(kinds))
    else:
        raise TypeError(f"{kinds_arg}: expected a kind string, a tuple or a dict of kind strings, "
                        f"got {type(kinds).__name__}")
    for key, kind in items:
        name = kinds_arg if key is None else f"{kinds_arg}[{key!r}]"
        if not isinstance(kind, str):
            raise TypeError(f"{name}: expected a kind string such as 'node:points', got {type(kind).__name__}")
        try:
            parse_kind(kind)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
