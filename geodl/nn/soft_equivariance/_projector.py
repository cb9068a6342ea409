"""Orthogonal projectors onto the equivariant linear maps between two representations.

For ``W : rep_in -> rep_out`` and a linear candidate group ``G`` the equivariant maps are the null
space of the constraints ``ρ_out(A) W - W ρ_in(A) = 0`` for the Lie generators ``A`` of ``G`` (with
scaling: ``(deg_out - deg_in) W = 0``) and ``ρ_out(h) W ρ_in(h)ᵀ = W`` for the discrete generators
``h`` of its component group. The constraint only couples a chunk of ``W`` (one output chunk of
base ``b_o`` times one input chunk of base ``b_i``) with itself, so the projector is stored as one
small orthonormal basis ``Q_b (d_o·d_i, k_b)`` per pair of *bases* (the null eigenvectors of
``Σ CᵀC`` over the constraints ``C``), shared by every multiplicity pair: never a dense ``d²×d²`` matrix. ``P = Q Qᵀ`` acts
on all chunks of a base pair at once (one gather, two small matmuls, one scatter).

Layout of the coefficients ``theta`` (``expand`` / ``coefficients`` / the columns of
``basis_dense``): base pairs in order of first appearance (output bases outer, input bases inner),
then per pair ``(output chunk, input chunk, k)`` row-major over all chunks of those bases.
"""

from __future__ import annotations

import functools

import torch

from geodl._checks import check_memory, check_tensor
from geodl.nn.soft_equivariance._groups import CandidateGroup, candidate_group
from geodl.nn.soft_equivariance._reps import Rep, _base_degree, _base_dim, _base_lie, _base_matrix

__all__ = ["EquivariantBasis", "equivariant_basis", "projection_penalty"]

_NULL_TOL = 1e-8  # singular values below this (relative to the largest, at least 1) span the null space
MAX_PAIR_DIM = 2500  # d_o·d_i of one pair of bases (its constraint operator is a dense (D, D) eigh: ~50 MB, seconds)
MAX_MAP_ENTRIES = 1 << 34  # d_out·d_in of a whole map (a float64 W of 128 GiB)


@functools.lru_cache(maxsize=512)
def _pair_basis(base_o: str, base_i: str, group_name: str) -> torch.Tensor:
    """``Q (d_o·d_i, k)`` float64: an orthonormal basis of the equivariant maps base_i -> base_o
    (row-major ``vec`` of the ``(d_o, d_i)`` map)."""
    G = candidate_group(group_name)
    do, di = _base_dim(base_o), _base_dim(base_i)
    D = do * di
    if G.scaling and _base_degree(base_o) != _base_degree(base_i):
        return torch.zeros(D, 0, dtype=torch.float64)
    if D > MAX_PAIR_DIM:
        raise ValueError(f"rep_in: the pair of bases {base_i!r} -> {base_o!r} has {D} = {do}·{di} weights per chunk "
                         f"pair, above the supported {MAX_PAIR_DIM} (its constraint would be a dense ({D}, {D}) "
                         "system per generator); split the tensor products into smaller bases")
    Io, Ii = torch.eye(do, dtype=torch.float64), torch.eye(di, dtype=torch.float64)
    # K = Σ CᵀC over the constraints C (PSD, D×D): its null space is the intersection of theirs; the
    # nonzero eigenvalues are >= ~1 (generators with integer spectra, involutions), far above round-off
    K = None
    for A in G.lie_algebra():
        C = torch.kron(_base_lie(base_o, A), Ii) - torch.kron(Io, _base_lie(base_i, A).T.contiguous())
        K = C.T @ C if K is None else K + C.T @ C
    for h in G.discrete():
        R = h.rotation.to(torch.float64)
        C = torch.kron(_base_matrix(base_o, R, 1.0), _base_matrix(base_i, R, 1.0)) - torch.eye(D, dtype=torch.float64)
        K = C.T @ C if K is None else K + C.T @ C
    if K is None:
        return torch.eye(D, dtype=torch.float64)
    K = 0.5 * (K + K.T)
    evals, V = torch.linalg.eigh(K)
    tol = _NULL_TOL * max(1.0, float(evals[-1]))
    Q = V[:, evals <= tol].contiguous()
    return Q


def _chunk_index(rep: Rep, base: str) -> torch.Tensor:
    """``(M, d_base)`` long: the columns of every chunk of ``base`` in ``rep``'s flat layout."""
    d = _base_dim(base)
    idx = []
    for (m, b), sl in zip(rep.blocks, rep.slices()):
        if b == base:
            idx.append(torch.arange(sl.start, sl.stop).reshape(m, d))
    return torch.cat(idx)


def _grouped(rep: Rep, bases) -> tuple[torch.Tensor, list]:
    """A permutation of ``rep``'s columns grouping the chunks by base, and ``(base, start, M, d)`` per base."""
    perm, ranges, start = [], [], 0
    for b in bases:
        idx = _chunk_index(rep, b)
        perm.append(idx.reshape(-1))
        ranges.append((b, start, idx.shape[0], idx.shape[1]))
        start += idx.numel()
    return torch.cat(perm), ranges


class EquivariantBasis:
    """An orthonormal basis of the ``group``-equivariant linear maps ``rep_in -> rep_out``.

    Build with :func:`equivariant_basis` (cached). Shapes: ``W (..., d_out, d_in)``, bias
    ``b (..., d_out)``, coefficients ``theta (..., rank)``.

    Attributes
    ----------
    rep_in, rep_out : Rep
    group : CandidateGroup
    rank : int
        The number of equivariant weights ``Σ M_o M_i k_b`` (chunks of each base pair times the
        dimension of its block basis).
    pairs : list of (str, str, int, int, int)
        ``(base_out, base_in, M_out, M_in, k)`` per base pair with ``k > 0``.

    Examples
    --------
    >>> B = equivariant_basis("2xscalars+vectors", "vectors+scalars", "O3")
    >>> B.rank  # vectors->vectors: 1 weight; 2 scalars -> scalar: 2 weights
    3
    >>> W = torch.randn(4, 5, dtype=torch.float64)
    >>> P = B.project(W)
    >>> bool(torch.allclose(B.project(P), P)), P.shape
    (True, torch.Size([4, 5]))
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, group: CandidateGroup):
        if rep_in.dim * rep_out.dim > MAX_MAP_ENTRIES:
            big = "rep_in" if rep_in.dim >= rep_out.dim else "rep_out"
            raise ValueError(f"{big}: a map {rep_in.dim} -> {rep_out.dim} has {rep_in.dim * rep_out.dim} weights, "
                             f"above the supported {MAX_MAP_ENTRIES} (a float64 weight of 128 GiB)")
        self.rep_in, self.rep_out, self.group = rep_in, rep_out, group
        bases_o = list(dict.fromkeys(b for _, b in rep_out.blocks))
        bases_i = list(dict.fromkeys(b for _, b in rep_in.blocks))
        self._items = []  # (base_o, base_i, idx_o (M_o, d_o), idx_i (M_i, d_i), Q (d_o d_i, k), offset)
        off = 0
        for bo in bases_o:
            io = _chunk_index(rep_out, bo)
            for bi in bases_i:
                Q = _pair_basis(bo, bi, group.name)
                if Q.shape[1] == 0:
                    continue
                ii = _chunk_index(rep_in, bi)
                self._items.append((bo, bi, io, ii, Q, off))
                off += io.shape[0] * ii.shape[0] * Q.shape[1]
        self.rank = off
        self._bias = None
        self._cast = {}
        # residual layout: rows/columns grouped by base (chunks of one base contiguous), so that every
        # (base_out, base_in) region of the permuted W is a plain view; zero-rank pairs included
        self._perm_o, self._ranges_o = _grouped(rep_out, bases_o)
        self._perm_i, self._ranges_i = _grouped(rep_in, bases_i)
        qs = {(bo, bi): Q for bo, bi, _, _, Q, _ in self._items}
        self._regions = [(so, Mo, do, si, Mi, di, qs.get((bo, bi)))
                         for bo, so, Mo, do in self._ranges_o for bi, si, Mi, di in self._ranges_i]

    def __repr__(self) -> str:
        return (f"EquivariantBasis(rep_in={str(self.rep_in)!r}, rep_out={str(self.rep_out)!r}, "
                f"group={self.group.name!r}, rank={self.rank})")

    @property
    def pairs(self) -> list[tuple[str, str, int, int, int]]:
        """``(base_out, base_in, M_out, M_in, k)`` for each base pair with equivariant maps."""
        return [(bo, bi, io.shape[0], ii.shape[0], Q.shape[1]) for bo, bi, io, ii, Q, _ in self._items]

    @property
    def nbytes(self) -> int:
        """Bytes held: the block bases (shared per base pair) and the chunk index tables."""
        seen, n = set(), 0
        for bo, bi, io, ii, Q, _ in self._items:
            if (bo, bi) not in seen:
                seen.add((bo, bi))
                n += Q.numel() * Q.element_size()
            n += io.numel() * io.element_size() + ii.numel() * ii.element_size()
        return n

    @property
    def bias_basis(self) -> "EquivariantBasis":
        """The basis of the invariant vectors of ``rep_out`` (maps ``scalars -> rep_out``)."""
        if self._bias is None:
            self._bias = equivariant_basis(Rep("scalars"), self.rep_out, self.group)
        return self._bias

    @property
    def bias_rank(self) -> int:
        """The dimension of the invariant vectors of ``rep_out`` (equivariant bias terms)."""
        return self.bias_basis.rank

    def _q(self, Q: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        key = (id(Q), ref.dtype, ref.device)
        q = self._cast.get(key)
        if q is None:
            q = Q.to(dtype=ref.dtype, device=ref.device)
            if len(self._cast) < 64:
                self._cast[key] = q
        return q

    def _check_W(self, W, name="W"):
        shape = (self.rep_out.dim, self.rep_in.dim)
        check_tensor(name, W, floating=True)
        if W.is_complex() or W.dim() < 2 or tuple(W.shape[-2:]) != shape:
            raise ValueError(f"{name}: expected a weight of shape (..., d_out, d_in) = (..., {shape[0]}, {shape[1]}) "
                             f"for {str(self.rep_in)!r} -> {str(self.rep_out)!r}, got {tuple(W.shape)}")
        if not torch.compiler.is_compiling() and W.numel() and not bool(torch.isfinite(W).all()):
            raise ValueError(f"{name}: expected finite values, got NaN or inf")

    # ------------------------------------------------------------------------------ maps
    def project(self, W: torch.Tensor) -> torch.Tensor:
        """The orthogonal (Frobenius) projection ``P W`` onto the equivariant maps.

        Parameters
        ----------
        W : Tensor ``(..., d_out, d_in)``, floating point, finite

        Returns
        -------
        Tensor ``(..., d_out, d_in)`` (same dtype and device; differentiable).

        Examples
        --------
        >>> B = equivariant_basis("vectors", "vectors", "O3")
        >>> B.project(torch.arange(9.0, dtype=torch.float64).reshape(3, 3)).diagonal().round(decimals=9).tolist()
        [4.0, 4.0, 4.0]
        """
        self._check_W(W)
        out = torch.zeros_like(W)
        for bo, bi, io, ii, Q, _ in self._items:
            q = self._q(Q, W)
            ro, ri = io.to(W.device).reshape(-1), ii.to(W.device).reshape(-1)
            Mo, do = io.shape
            Mi, di = ii.shape
            blk = W[..., ro[:, None], ri[None, :]].unflatten(-2, (Mo, do)).unflatten(-1, (Mi, di))
            blk = blk.transpose(-3, -2).flatten(-2)  # (..., Mo, Mi, do·di)
            blk = (blk @ q) @ q.T
            out[..., ro[:, None], ri[None, :]] = blk.unflatten(-1, (do, di)).transpose(-3, -2).flatten(-4, -3) \
                .flatten(-2)
        return out

    def project_bias(self, b: torch.Tensor) -> torch.Tensor:
        """The projection of a bias ``b (..., d_out)`` onto the invariant vectors of ``rep_out``.

        Examples
        --------
        >>> B = equivariant_basis("vectors", "scalars+vectors", "O3")
        >>> B.project_bias(torch.ones(4, dtype=torch.float64)).tolist()
        [1.0, 0.0, 0.0, 0.0]
        """
        check_tensor("b", b, floating=True)
        if b.dim() < 1 or b.shape[-1] != self.rep_out.dim:
            raise ValueError(f"b: expected a bias of shape (..., d_out) = (..., {self.rep_out.dim}), "
                             f"got {tuple(b.shape)}")
        if not torch.compiler.is_compiling() and b.numel() and not bool(torch.isfinite(b).all()):
            raise ValueError("b: expected finite values, got NaN or inf")
        return self.bias_basis.project(b[..., None])[..., 0]

    def residual_sq(self, W: torch.Tensor) -> torch.Tensor:
        """``‖W − P W‖²`` summed over all leading dims (a scalar; differentiable), without forming ``P W``.

        Every (output base, input base) region of ``W`` is projected on its own block basis and its
        residual norm summed directly (no cancellation as in ``‖W‖² − ‖QᵀW‖²``, no scatter).

        >>> B = equivariant_basis("vectors", "vectors", "O3")
        >>> W = torch.arange(9.0, dtype=torch.float64).reshape(3, 3)
        >>> bool(torch.isclose(B.residual_sq(W), ((W - B.project(W)) ** 2).sum()))
        True
        """
        self._check_W(W)
        dev = W.device
        Wp = W.index_select(-2, self._perm_o.to(dev)).index_select(-1, self._perm_i.to(dev))
        total = W.new_zeros(())
        for so, Mo, do, si, Mi, di, Q in self._regions:
            sub = Wp[..., so:so + Mo * do, si:si + Mi * di]
            if Q is not None:
                q = self._q(Q, W)
                blk = sub.unflatten(-2, (Mo, do)).unflatten(-1, (Mi, di)).transpose(-3, -2).flatten(-2)
                sub = blk - (blk @ q) @ q.T
            total = total + (sub * sub).sum()
        return total

    def expand(self, theta: torch.Tensor) -> torch.Tensor:
        """``W = Σ theta_j Q_j``: the equivariant map with coefficients ``theta (..., rank)``.

        Returns
        -------
        Tensor ``(..., d_out, d_in)``.

        Examples
        --------
        >>> B = equivariant_basis("2xvectors", "vectors", "SO3")
        >>> W = B.expand(torch.tensor([1.0, 2.0], dtype=torch.float64))
        >>> W.shape, bool(torch.allclose(B.coefficients(W), torch.tensor([1.0, 2.0], dtype=torch.float64)))
        (torch.Size([3, 6]), True)
        """
        check_tensor("theta", theta, floating=True)
        if theta.dim() < 1 or theta.shape[-1] != self.rank:
            raise ValueError(f"theta: expected coefficients of shape (..., rank) = (..., {self.rank}), "
                             f"got {tuple(theta.shape)}")
        lead = theta.shape[:-1]
        out = theta.new_zeros(*lead, self.rep_out.dim, self.rep_in.dim)
        for bo, bi, io, ii, Q, off in self._items:
            q = self._q(Q, theta)
            Mo, do = io.shape
            Mi, di = ii.shape
            k = Q.shape[1]
            t = theta[..., off:off + Mo * Mi * k].unflatten(-1, (Mo, Mi, k))
            blk = (t @ q.T).unflatten(-1, (do, di)).transpose(-3, -2).flatten(-4, -3).flatten(-2)
            ro, ri = io.to(theta.device).reshape(-1), ii.to(theta.device).reshape(-1)
            out[..., ro[:, None], ri[None, :]] = blk
        return out

    def coefficients(self, W: torch.Tensor) -> torch.Tensor:
        """``theta = Qᵀ vec(W)`` ``(..., rank)``: the inverse of :meth:`expand` on the equivariant span.

        >>> B = equivariant_basis("vectors", "vectors", "O3")
        >>> round(float(B.coefficients(torch.eye(3, dtype=torch.float64))[0]) ** 2, 6)
        3.0
        """
        self._check_W(W)
        parts = []
        for bo, bi, io, ii, Q, off in self._items:
            q = self._q(Q, W)
            ro, ri = io.to(W.device).reshape(-1), ii.to(W.device).reshape(-1)
            Mo, do = io.shape
            Mi, di = ii.shape
            blk = W[..., ro[:, None], ri[None, :]].unflatten(-2, (Mo, do)).unflatten(-1, (Mi, di))
            parts.append(((blk.transpose(-3, -2).flatten(-2)) @ q).flatten(-3))
        if not parts:
            return W.new_zeros(*W.shape[:-2], 0)
        return torch.cat(parts, dim=-1)

    def basis_dense(self) -> torch.Tensor:
        """The dense ``(d_out·d_in, rank)`` float64 basis ``Q`` (row-major ``vec W``), for tests on small reps.

        >>> equivariant_basis("vectors", "vectors", "O2z").basis_dense().shape  # a·(xy part) + b·(z part)
        torch.Size([9, 2])
        """
        D = self.rep_out.dim * self.rep_in.dim
        check_memory("rep_in", str(self.rep_in), 8 * D * max(self.rank, 1) * 2, "cpu",
                     what=f"a dense ({D}, {self.rank}) basis")
        eye = torch.eye(self.rank, dtype=torch.float64)
        return self.expand(eye).flatten(-2).T.contiguous()


def _as_rep(name, r) -> Rep:
    if isinstance(r, Rep):
        return r
    if isinstance(r, str):
        try:
            return Rep(r)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    raise TypeError(f"{name}: expected a Rep or a representation string such as '4xvectors', got {type(r).__name__}")


@functools.lru_cache(maxsize=256)
def _cached_basis(rep_in: Rep, rep_out: Rep, group_name: str) -> EquivariantBasis:
    return EquivariantBasis(rep_in, rep_out, candidate_group(group_name))


def equivariant_basis(rep_in, rep_out, group) -> EquivariantBasis:
    """The (cached) basis of the ``group``-equivariant linear maps ``rep_in -> rep_out``.

    Parameters
    ----------
    rep_in, rep_out : Rep or str
        Representations (``ValueError`` naming the argument for a malformed spec).
    group : str or CandidateGroup
        A linear candidate group (no ``T3``: ``ValueError`` naming ``group``).

    Returns
    -------
    EquivariantBasis (the same object for equal arguments: cached on ``(Rep, Rep, group name)``).

    Examples
    --------
    >>> B = equivariant_basis("4xvectors", "4xvectors", "O2z+scale")
    >>> B.rank, B is equivariant_basis("4xvectors", "4xvectors", "scale+O2z")
    (32, True)
    """
    rep_in, rep_out = _as_rep("rep_in", rep_in), _as_rep("rep_out", rep_out)
    G = candidate_group(group)
    if not G.linear:
        raise ValueError(f"group: {G.name!r} contains translations, which act affinely: no linear projector "
                         "exists (use the Monte-Carlo regulariser for it)")
    return _cached_basis(rep_in, rep_out, G.name)


def projection_penalty(W: torch.Tensor, b, rep_in, rep_out, group) -> torch.Tensor:
    """``½‖W - P W‖² + ½‖b - P_b b‖²``: the squared distance of a linear layer from the equivariant ones.

    Computed in float64 with the weights scaled by their largest magnitude when that is huge, so the
    result is finite or ``+inf`` (never NaN) for finite input; returned in ``W``'s dtype.

    Parameters
    ----------
    W : Tensor ``(d_out, d_in)`` (or ``(..., d_out, d_in)``: summed), finite
    b : Tensor ``(d_out,)`` (or ``(..., d_out)``) or None
    rep_in, rep_out : Rep or str
    group : str or CandidateGroup (linear)

    Returns
    -------
    Tensor, a scalar (differentiable in ``W`` and ``b``).

    Examples
    --------
    >>> W = torch.eye(3, dtype=torch.float64)
    >>> float(projection_penalty(W, None, "vectors", "vectors", "O3")) < 1e-20
    True
    >>> W[0, 1] = 2.0
    >>> round(float(projection_penalty(W, torch.ones(3, dtype=torch.float64), "vectors", "vectors", "O3")), 6)
    3.5
    """
    B = equivariant_basis(rep_in, rep_out, group)
    B._check_W(W)
    total = _residual(B, W.to(torch.float64))
    if b is not None:
        check_tensor("b", b, floating=True)
        if b.dim() < 1 or b.shape[-1] != B.rep_out.dim:
            raise ValueError(f"b: expected a bias of shape (d_out,) = ({B.rep_out.dim},), got {tuple(b.shape)}")
        if not torch.compiler.is_compiling() and b.numel() and not bool(torch.isfinite(b).all()):
            raise ValueError("b: expected finite values, got NaN or inf")
        total = total + _residual(B.bias_basis, b.to(torch.float64)[..., None])
    return total.to(W.dtype)


_HUGE = 1e100  # above this magnitude the residual is computed on W / max|W| (squares would overflow)


class _ScaledResidual(torch.autograd.Function):
    """``½‖W - PW‖²`` for huge finite ``W``: computed on ``W / c`` and rescaled; the gradient
    ``(I - P) W = c (I - P)(W / c)`` is formed without ``inf · 0`` (so ``inf`` at worst, never NaN)."""

    @staticmethod
    def forward(ctx, W, B, c):
        r = W / c
        r = r - B.project(r)
        t = (r * r).sum()
        ctx.save_for_backward(r, c)
        pen = 0.5 * (c * t.sqrt()) ** 2 if bool(t > 0) else t.new_zeros(())
        return pen

    @staticmethod
    def backward(ctx, grad):
        r, c = ctx.saved_tensors
        return grad * (r * c), None, None


def _residual(B: EquivariantBasis, W: torch.Tensor) -> torch.Tensor:
    """``½‖W - P W‖²`` in float64, safe for huge finite values (inf, never NaN)."""
    if W.numel() == 0:
        return W.new_zeros(())
    c = W.detach().abs().amax()
    if torch.compiler.is_compiling() or not bool(c > _HUGE):
        return 0.5 * B.residual_sq(W)
    return _ScaledResidual.apply(W, B, c)
