"""What a module declares about its symmetry, so that one checker can test it with nothing more.

Every equivariant or invariant module of :mod:`geodl.nn` carries a class or instance attribute
``symmetry`` (a :class:`Symmetry`), as e3nn modules carry ``irreps_in``/``irreps_out``.
:func:`geodl.testing.assert_equivariant` and :func:`geodl.testing.check_module` read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["Symmetry", "get_symmetry"]


@dataclass(frozen=True)
class Symmetry:
    """A module's symmetry declaration.

    Parameters
    ----------
    group : str
        The group the module is equivariant to, e.g. ``"E3+perm"`` (see :func:`geodl.groups.get_group`).
    in_kinds : dict of str to str
        Kind of each forward argument, by argument name (``{"pos": "node:points", "batch": "batch"}``).
        Arguments not listed are passed through unchanged by the checker (and must not be needed).
    out_kinds : str, tuple of str or dict of str to str
        Kind(s) of the output, with the output's structure (one string for a single tensor).
    batch_arg : str or None
        The argument holding a PyG-style ``batch`` vector (graph id per node), if any. ``check_module``
        uses it to compare a batched call with one call per graph; with ``None``, rows along dim 0 of
        every node input are independent samples (e.g. location encoders).
    graph_outputs : bool
        With a ``batch_arg``: whether outputs without a ``node:`` kind have one row per graph.
    note : str
        Free text shown in reports (e.g. "invariant up to the degeneracy policy").

    Examples
    --------
    >>> s = Symmetry("E3+perm", {"pos": "node:points", "batch": "batch"}, "scalar", batch_arg="batch")
    >>> s.group, s.in_kinds["pos"]
    ('E3+perm', 'node:points')
    """

    group: str
    in_kinds: Mapping[str, str] = field(default_factory=dict)
    out_kinds: object = "scalar"
    batch_arg: str | None = None
    graph_outputs: bool = True
    note: str = ""

    def __post_init__(self):
        if not isinstance(self.group, str):
            raise TypeError(f"group: expected a group name (str), got {type(self.group).__name__}")
        if not isinstance(self.in_kinds, Mapping):
            raise TypeError(f"in_kinds: expected a dict of argument name -> kind, got {type(self.in_kinds).__name__}")
        if self.batch_arg is not None and self.batch_arg not in self.in_kinds:
            raise ValueError(f"batch_arg: {self.batch_arg!r} is not one of in_kinds {sorted(self.in_kinds)}")
        # validated here, not first in the checker: a typo in a declaration should fail where it is written
        import geodl.groups._actions  # noqa: F401  (registers the built-in kinds)
        from geodl.groups._group import get_group
        from geodl.groups._kinds import _check_kinds

        get_group(self.group)
        if not all(isinstance(arg, str) for arg in self.in_kinds):
            raise TypeError(f"in_kinds: argument names must be str, got {sorted(map(repr, self.in_kinds))}")
        _check_kinds("in_kinds", dict(self.in_kinds))
        _check_kinds("out_kinds", self.out_kinds)

    def replace(self, **changes) -> "Symmetry":
        """A copy with some fields changed (e.g. a wrapper's group)."""
        from dataclasses import replace

        return replace(self, **changes)


def get_symmetry(module) -> Symmetry:
    """The :class:`Symmetry` a module declares, or a ``TypeError`` saying how to declare one."""
    sym = getattr(module, "symmetry", None)
    if callable(sym) and not isinstance(sym, Symmetry):
        sym = sym()
    if not isinstance(sym, Symmetry):
        raise TypeError(
            f"module: {type(module).__name__} declares no symmetry; give it a 'symmetry' attribute "
            "(geodl.groups.Symmetry(group, in_kinds, out_kinds)) or pass group=, in_kinds= and out_kinds=")
    return sym
