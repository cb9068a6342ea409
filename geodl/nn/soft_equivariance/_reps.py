"""Finite-dimensional real representations of O(3) (and positive scaling) built from geodl's kinds.

A :class:`Rep` is a direct sum of blocks ``(m, base)``: ``m`` consecutive chunks of a *base*
representation, which is one of the atoms

=================  ====  ==================================  ==============
atom               dim   rotation ``R`` (``det R = ±1``)      scaling ``s``
=================  ====  ==================================  ==============
``scalars``        1     1                                    1
``vectors``        3     ``R``                                ``s``
``points``         3     ``R`` (+ translation ``t``)          ``s``
``pseudovectors``  3     ``det(R) R``                         ``s``
``tensor2``        9     ``R T Rᵀ`` (row-major flatten)       1
``sh<l>``          2l+1  ``(±1)^l D^l(±R)`` (e3nn basis)      1
=================  ====  ==================================  ==============

or a tensor product of atoms joined by ``*`` (``vectors*pseudovectors``: the row-major flatten of
``u vᵀ``, acted on factor by factor; its scaling degree is the sum of the factors'). ``sh<l>`` is
in e3nn's real basis, the basis of :func:`geodl.groups.wigner_D` (degree ``l`` alone, parity
``(-1)^l``; the kind ``sh:<lmax>`` of :mod:`geodl.groups` holds every degree up to ``lmax``
instead, in another basis).

:meth:`Rep.act` applies a :class:`~geodl.groups.GroupElement` through :func:`geodl.groups.act`,
block by block (the kinds ``scalar``, ``vectors``, ``points``, ``pseudovectors``, ``tensor2`` and
the e3nn irrep ``1x<l>e``/``1x<l>o`` for ``sh<l>``), so that regularisers and the equivariance
checker share one action code. :meth:`Rep.matrix` is the same linear action written independently
as a block-diagonal matrix (translations dropped). Importing this module registers the kind
``"rep:<spec>"`` in geodl's kind registry.
"""

from __future__ import annotations

import functools
import re
import threading

import torch

from geodl._checks import check_memory, check_tensor
from geodl.groups import GroupElement, act, register_kind

__all__ = ["Rep"]

# atom -> (dim, scaling degree)
_ATOMS = {"scalars": (1, 0), "vectors": (3, 1), "points": (3, 1), "pseudovectors": (3, 1), "tensor2": (9, 0)}
_ALIASES = {"scalar": "scalars", "vector": "vectors", "point": "points", "pseudovector": "pseudovectors",
            "tensor": "tensor2", "tensors2": "tensor2"}
SH_LMAX = 100  # largest sh<l> degree (the kind registry's limit: wigner_D loses accuracy above it)
MAX_DIM = 1 << 40  # a description larger than this is refused (no machine holds one vector of it)
_SPEC_HELP = ("terms joined by '+', each '[<m>x]<base>' with <base> one of scalars, vectors, points, "
              "pseudovectors, tensor2, sh<l>, or a product of them joined by '*' (e.g. '5xscalars+5xpoints', "
              "'2xsh2', '3x(vectors*pseudovectors)')")


def _atom_dim(atom: str) -> int:
    return 2 * int(atom[2:]) + 1 if atom.startswith("sh") else _ATOMS[atom][0]


def _atom_degree(atom: str) -> int:
    return 0 if atom.startswith("sh") else _ATOMS[atom][1]


def _factors(base: str) -> tuple[str, ...]:
    return tuple(base.split("*"))


def _base_dim(base: str) -> int:
    d = 1
    for a in _factors(base):
        d *= _atom_dim(a)
    return d


def _base_degree(base: str) -> int:
    return sum(_atom_degree(a) for a in _factors(base))


def _bad(spec, why: str) -> ValueError:
    return ValueError(f"spec: {why} in representation {spec!r}; expected {_SPEC_HELP}")


def _parse_atom(text: str, spec) -> str:
    t = text.lower()
    t = _ALIASES.get(t, t)
    if t in _ATOMS:
        return t
    m = re.fullmatch(r"sh:?(\d+)", t)
    if m:
        l = int(m.group(1))
        if l > SH_LMAX:
            raise _bad(spec, f"degree {l} of {text!r} is above the largest supported degree {SH_LMAX}")
        return f"sh{l}"
    raise _bad(spec, f"unknown base {text!r}")


def _product(atoms, spec) -> str:
    if "points" in atoms and len(atoms) > 1:
        raise _bad(spec, "'points' are affine (translated) and do not enter tensor products; use 'vectors'")
    kept = [a for a in atoms if a != "scalars"]
    return "*".join(kept) if kept else "scalars"


@functools.lru_cache(maxsize=1024)
def _parse(spec: str) -> tuple:
    text = re.sub(r"\s+", "", spec)
    if not text:
        raise _bad(spec, "no terms")
    blocks = []
    for term in text.split("+"):
        if not term:
            raise _bad(spec, "an empty term")
        m = re.fullmatch(r"(\d+)x(.+)", term)
        mult, body = (int(m.group(1)), m.group(2)) if m else (1, term)
        if mult < 1:
            raise _bad(spec, f"multiplicity {mult} (must be >= 1)")
        if body.startswith("(") and body.endswith(")"):
            body = body[1:-1]
        if "(" in body or ")" in body or not body:
            raise _bad(spec, f"unbalanced or nested parentheses in {term!r}")
        blocks.append((mult, _product([_parse_atom(a, spec) for a in body.split("*")], spec)))
    return _merge(blocks)


def _merge(blocks) -> tuple:
    out = []
    for m, b in blocks:
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0] + m, b)
        else:
            out.append((m, b))
    return tuple(out)


def _term_str(m: int, b: str) -> str:
    if m == 1:
        return b
    return f"{m}x({b})" if "*" in b else f"{m}x{b}"


# ------------------------------------------------------------------------------------- matrices
def _det(R: torch.Tensor) -> torch.Tensor:
    return torch.sign(torch.linalg.det(R))


def _atom_matrix(atom: str, R: torch.Tensor, s: float) -> torch.Tensor:
    """The (d, d) matrix of ``atom`` for rotation ``R`` (3, 3) and scale ``s``."""
    if atom == "scalars":
        return R.new_ones(1, 1)
    if atom in ("vectors", "points"):
        return s * R
    if atom == "pseudovectors":
        return s * _det(R) * R
    if atom == "tensor2":
        return torch.kron(R, R)
    from geodl.groups import wigner_D

    l = int(atom[2:])
    d = _det(R)
    return wigner_D(l, d * R) * d**l


def _base_matrix(base: str, R: torch.Tensor, s: float) -> torch.Tensor:
    M = None
    for a in _factors(base):
        A = _atom_matrix(a, R, s)
        M = A if M is None else torch.kron(M, A)
    return M


_GEN_LOCK = threading.Lock()


@functools.lru_cache(maxsize=128)
def _sh_generators(l: int) -> torch.Tensor:
    """``(3, 2l+1, 2l+1)`` float64: e3nn's so(3) generators of degree ``l`` (x, y, z), which are the
    derivatives of :func:`geodl.groups.wigner_D` (checked in the tests); built in float64."""
    from e3nn.o3 import so3_generators

    with _GEN_LOCK:  # e3nn builds them in torch's default dtype
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            G = so3_generators(l).to(torch.float64)
        finally:
            torch.set_default_dtype(old)
    return G


def _so3_coords(A: torch.Tensor) -> tuple[float, float, float]:
    """``(a1, a2, a3)`` with ``A = a1 L_x + a2 L_y + a3 L_z`` (``L_x v = e_x × v``)."""
    return float(A[2, 1]), float(A[0, 2]), float(A[1, 0])


def _atom_lie(atom: str, A: torch.Tensor) -> torch.Tensor:
    """The derivative of the atom's representation along the so(3) element ``A`` (3, 3)."""
    if atom == "scalars":
        return A.new_zeros(1, 1)
    if atom in ("vectors", "points", "pseudovectors"):
        return A
    I3 = torch.eye(3, dtype=A.dtype)
    if atom == "tensor2":
        return torch.kron(A, I3) + torch.kron(I3, A)
    a = _so3_coords(A)
    G = _sh_generators(int(atom[2:]))
    return a[0] * G[0] + a[1] * G[1] + a[2] * G[2]


def _base_lie(base: str, A: torch.Tensor) -> torch.Tensor:
    fs = _factors(base)
    dims = [_atom_dim(a) for a in fs]
    out = None
    for k, a in enumerate(fs):
        term = None
        for j, d in enumerate(dims):
            M = _atom_lie(a, A) if j == k else torch.eye(d, dtype=A.dtype)
            term = M if term is None else torch.kron(term, M)
        out = term if out is None else out + term
    return out


# ------------------------------------------------------------------------------------- actions
def _atom_act(atom: str, g: GroupElement, x: torch.Tensor) -> torch.Tensor:
    """geodl.groups.act on the last dim of ``x`` for one atom."""
    if atom == "scalars":
        return act("scalar", g, x)
    if atom in ("vectors", "points", "pseudovectors"):
        return act(atom, g, x)
    if atom == "tensor2":
        return act("tensor2", g, x.unflatten(-1, (3, 3))).flatten(-2)
    l = int(atom[2:])
    return act(f"1x{l}{'e' if l % 2 == 0 else 'o'}", g, x)


def _base_act(base: str, g: GroupElement, x: torch.Tensor) -> torch.Tensor:
    """``x (..., d_base)``: the base acted on factor by factor."""
    fs = _factors(base)
    if len(fs) == 1:
        return _atom_act(fs[0], g, x)
    dims = [_atom_dim(a) for a in fs]
    y = x.unflatten(-1, dims)
    n = len(fs)
    for k, a in enumerate(fs):
        pos = y.dim() - n + k
        y = _atom_act(a, g, y.movedim(pos, -1)).movedim(-1, pos)
    return y.flatten(-n)


class Rep:
    """A real representation of O(3) (and scaling): a direct sum of blocks ``(m, base)``.

    Parameters
    ----------
    spec : str or Rep
        Terms joined by ``+``, each ``[<m>x]<base>``; a base is an atom (``scalars``, ``vectors``,
        ``points``, ``pseudovectors``, ``tensor2``, ``sh<l>``) or a product of atoms joined by ``*``,
        parenthesised after a multiplicity (``"3x(vectors*pseudovectors)"``). Spaces are ignored;
        adjacent terms of the same base are merged (``"2xvectors+vectors"`` is ``"3xvectors"``).
        Malformed specs raise ``ValueError`` naming ``spec``.

    Attributes
    ----------
    blocks : tuple of (int, str)
        ``(multiplicity, base)`` per block, in layout order.
    dim : int
        ``sum m · dim(base)``; a block is laid out as ``m`` consecutive chunks of ``dim(base)``.
    kind : str
        ``"rep:<canonical spec>"``, a kind of :func:`geodl.groups.act`.

    Examples
    --------
    >>> r = Rep("5xscalars + 5xpoints")
    >>> r.dim, str(r), r.kind
    (20, '5xscalars+5xpoints', 'rep:5xscalars+5xpoints')
    >>> (Rep("vectors") * Rep("vectors")).dim, str(2 * Rep("sh2") + Rep("scalars"))
    (9, '2xsh2+scalars')
    """

    __slots__ = ("blocks", "_hash")

    def __init__(self, spec):
        if isinstance(spec, Rep):
            blocks = spec.blocks
        elif isinstance(spec, str):
            blocks = _parse(spec)
        else:
            raise TypeError(f"spec: expected a representation string such as '5xscalars+5xvectors' or a Rep, "
                            f"got {type(spec).__name__}")
        dim = sum(m * _base_dim(b) for m, b in blocks)
        if dim > MAX_DIM:
            raise ValueError(f"spec: representation {spec!r} has dimension {dim}, above the supported {MAX_DIM}")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "_hash", hash(blocks))

    def __setattr__(self, name, value):
        raise AttributeError("Rep is immutable")

    @classmethod
    def from_blocks(cls, blocks) -> "Rep":
        """A Rep from ``(m, base)`` pairs (bases as in the spec syntax).

        >>> str(Rep.from_blocks([(2, "vectors"), (1, "sh1")]))
        '2xvectors+sh1'
        """
        try:
            items = [(int(m), str(b)) for m, b in blocks]
        except (TypeError, ValueError):
            raise TypeError(f"blocks: expected (multiplicity, base) pairs, got {blocks!r}") from None
        if not items:
            raise ValueError("blocks: expected at least one (multiplicity, base) pair")
        return cls("+".join(f"{m}x({b})" for m, b in items))

    # ---------------------------------------------------------------------------- structure
    @property
    def dim(self) -> int:
        """Total dimension ``sum m · dim(base)``."""
        return sum(m * _base_dim(b) for m, b in self.blocks)

    @property
    def kind(self) -> str:
        """``"rep:<canonical spec>"``: the kind of :func:`geodl.groups.act` for these features."""
        return f"rep:{self}"

    def slices(self) -> list[slice]:
        """The column range of each block in the flat layout.

        >>> Rep("2xscalars+vectors").slices()
        [slice(0, 2, None), slice(2, 5, None)]
        """
        out, i = [], 0
        for m, b in self.blocks:
            n = m * _base_dim(b)
            out.append(slice(i, i + n))
            i += n
        return out

    def __repr__(self) -> str:
        return f"Rep({str(self)!r})"

    def __str__(self) -> str:
        return "+".join(_term_str(m, b) for m, b in self.blocks)

    def __eq__(self, other) -> bool:
        return isinstance(other, Rep) and other.blocks == self.blocks

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self):
        return (Rep, (str(self),))

    # ---------------------------------------------------------------------------- algebra
    def __add__(self, other) -> "Rep":
        if isinstance(other, str):
            other = Rep(other)
        if not isinstance(other, Rep):
            return NotImplemented
        return Rep("+".join(_term_str(m, b) for m, b in self.blocks + other.blocks))

    def __radd__(self, other) -> "Rep":
        if isinstance(other, str):
            return Rep(other) + self
        return NotImplemented

    def __rmul__(self, m) -> "Rep":
        if isinstance(m, bool) or not isinstance(m, int):
            return NotImplemented
        if m < 1:
            raise ValueError(f"m: a multiplicity must be >= 1, got {m}")
        if len(self.blocks) == 1:
            (k, b), = self.blocks
            return Rep(_term_str(k * m, b))
        return Rep("+".join([str(self)] * m))

    def __mul__(self, other) -> "Rep":
        if isinstance(other, Rep):
            return self.tensor(other)
        if isinstance(other, int) and not isinstance(other, bool):
            return self.__rmul__(other)
        return NotImplemented

    def tensor(self, other) -> "Rep":
        """The tensor product, distributed over the blocks.

        Layout: for each block ``(m1, a)`` of ``self`` and then each block ``(m2, c)`` of ``other``, a
        block ``(m1·m2, a*c)`` whose chunk ``i·m2 + j`` is the row-major ``kron`` of chunk ``i`` and
        chunk ``j`` (for one-block reps this is ``kron(x, y)`` itself).

        >>> str(Rep("2xvectors").tensor(Rep("scalars+pseudovectors")))
        '2xvectors+2x(vectors*pseudovectors)'
        """
        other = Rep(other)
        terms = [_term_str(m1 * m2, _product(list(_factors(a)) + list(_factors(c)), str(self) + "*" + str(other)))
                 for m1, a in self.blocks for m2, c in other.blocks]
        return Rep("+".join(terms))

    @property
    def scale_degrees(self) -> tuple[int, ...]:
        """The scaling degree of each block's base (vectors 1, scalars/tensor2/sh 0, products summed)."""
        return tuple(_base_degree(b) for _, b in self.blocks)

    # ---------------------------------------------------------------------------- actions
    def _check_g(self, g):
        if not isinstance(g, GroupElement):
            raise TypeError(f"g: expected a geodl.groups.GroupElement, got {type(g).__name__}")
        if g.has_parts:
            raise ValueError("g: a representation has no piecewise action (got a part-wise element)")
        if g.dim not in (None, 3):
            raise ValueError(f"g: representations of O(3) need a 3D element, got a {g.dim}D one")

    def matrix(self, g: GroupElement, dtype=torch.float64) -> torch.Tensor:
        """The linear action of ``g`` as a block-diagonal ``(dim, dim)`` matrix (translations dropped).

        Parameters
        ----------
        g : GroupElement
            A 3D element (rotation/reflection, scale; a translation is ignored here).
        dtype : torch.dtype
            Of the result (float64 by default).

        Returns
        -------
        Tensor ``(dim, dim)`` with ``act(g, x) == x @ matrix(g).T`` when ``g`` has no translation.

        Examples
        --------
        >>> from geodl.groups import get_group
        >>> g = get_group("O3").sample(generator=torch.Generator().manual_seed(0))
        >>> M = Rep("scalars+sh2").matrix(g)
        >>> M.shape, bool(torch.allclose(M @ M.T, torch.eye(6, dtype=torch.float64)))
        (torch.Size([6, 6]), True)
        """
        self._check_g(g)
        n = self.dim
        check_memory("spec", str(self), n * n * 8, "cpu", what=f"a ({n}, {n}) float64 matrix")
        R = torch.eye(3, dtype=torch.float64) if g.rotation is None else \
            g.rotation.detach().to(device="cpu", dtype=torch.float64)
        s = 1.0 if g.scale is None else float(g.scale)
        mats = []
        for m, b in self.blocks:
            M = _base_matrix(b, R, s)
            mats.append(torch.kron(torch.eye(m, dtype=torch.float64), M) if m > 1 else M)
        return torch.block_diag(*mats).to(dtype)

    def act(self, g: GroupElement, x: torch.Tensor) -> torch.Tensor:
        """Apply ``g`` to features ``x (..., dim)`` block by block through :func:`geodl.groups.act`.

        ``points`` chunks are also translated by ``g.translation``; the others are linear.

        Parameters
        ----------
        g : GroupElement
        x : Tensor ``(..., dim)``, floating point

        Returns
        -------
        Tensor of the same shape, dtype and device.

        Examples
        --------
        >>> from geodl.groups import get_group
        >>> g = get_group("O3").sample(generator=torch.Generator().manual_seed(1))
        >>> r = Rep("2xscalars+vectors+tensor2")
        >>> x = torch.randn(4, r.dim, dtype=torch.float64)
        >>> bool(torch.allclose(r.act(g, x), x @ r.matrix(g).T))
        True
        """
        self._check_g(g)
        check_tensor("x", x, floating=True)
        n = self.dim
        if x.dim() == 0 or x.shape[-1] != n:
            raise ValueError(f"x: representation {str(self)!r} expects last dim {n}, got shape {tuple(x.shape)}")
        outs = []
        for (m, b), sl in zip(self.blocks, self.slices()):
            chunk = x[..., sl].unflatten(-1, (m, _base_dim(b)))
            outs.append(_base_act(b, g, chunk).flatten(-2))
        return torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]


# ------------------------------------------------------------------------------------- the kind
def _kind_parse(text: str):
    r = Rep(text)
    return str(r), None, str(r)


def _kind_act(spec, g, x):
    return Rep(spec.param).act(g, x)


def _kind_random(spec, n, *, dim, dtype, generator, device):
    d = Rep(spec.param).dim
    return torch.randn((n, d), generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)


register_kind("rep", act=_kind_act, random=_kind_random, param="<spec>", parse=_kind_parse, shape="(..., rep.dim)",
              doc="geodl.nn.soft_equivariance.Rep: direct sums/products of scalars, vectors, points, "
                  "pseudovectors, tensor2, sh<l>, acted on block by block", replace=True)
