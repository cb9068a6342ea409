"""Layers between declared representations: free, hard-equivariant and residual-pathway linear maps,
tensor products, gated nonlinearities, and the EMLP-style network built from them.

Every layer carries ``rep_in`` / ``rep_out`` (:class:`~geodl.nn.soft_equivariance.Rep`) and, for its
linear maps, a method ``equivariance_penalty(group)`` (``½‖W − P_G W‖² + ½‖b − P_G b‖²`` through
:func:`~geodl.nn.soft_equivariance.projection_penalty`), which the regularisers collect from a model.

- :class:`RepLinear` with ``group=None`` has free weights (the *soft* model: regularise it); with a
  group its weight is expanded from the equivariant basis, ``W = Σ θ_j Q_j`` (the *hard* model);
- :class:`RPPLinear` (residual pathway prior, Finzi et al. 2021): ``W = W_eq + W_free``; the free
  path is kept small by :meth:`RPPLinear.prior_penalty` (a Gaussian prior, i.e. weight decay);
- :class:`RepTensorProduct`: ``x ↦ L₂(L₁x ⊗ L₁x)``, the bilinear layer that lets an equivariant
  network build ``tensor2`` outputs from vectors (no linear O(3) map does);
- :class:`GatedNonlinearity`: SiLU on scalars, every other chunk times ``sigmoid`` of its own gate
  scalar (:func:`gated_rep` appends the gates);
- :class:`RepMLP`: blocks ``gate(linear(x) + tensor_product(x))`` and a final linear map, with
  ``path="free" | "equivariant" | "rpp"``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geodl._checks import check_choice, check_int, check_memory, check_number, check_tensor
from geodl.groups import Symmetry
from geodl.nn.soft_equivariance._groups import candidate_group
from geodl.nn.soft_equivariance._projector import _as_rep, equivariant_basis, projection_penalty
from geodl.nn.soft_equivariance._reps import Rep, _base_dim

__all__ = ["RepLinear", "RPPLinear", "RepTensorProduct", "GatedNonlinearity", "gated_rep", "RepMLP"]

MAX_WEIGHTS = 1 << 28  # weights of one layer (a float32 map of 1 GiB): larger layers are refused
_SCALAR_BASES = ("scalars", "sh0")
_TP_GAIN = 0.5  # initial scale of a tensor product's output map: keeps products of products O(1) at init


def _symmetry(rep_in: Rep, rep_out: Rep, group) -> Symmetry:
    """The declaration of a layer: the group's equivariance on the reps when geodl has that group,
    otherwise (free layers, SO2 about an axis) only independence of the rows."""
    G = None if group is None else candidate_group(group).geodl_group()
    if G is None:
        return Symmetry("perm", {"x": "node:scalar"}, "node:scalar",
                        note="rows are independent samples; no exact geometric symmetry declared")
    return Symmetry(G.name, {"x": rep_in.kind}, rep_out.kind)


def _check_x(x, rep: Rep):
    check_tensor("x", x, floating=True)
    if x.dim() == 0 or x.shape[-1] != rep.dim:
        raise ValueError(f"x: expected features (..., {rep.dim}) of representation {str(rep)!r}, "
                         f"got shape {tuple(x.shape)}")


def _check_size(rep_in: Rep, rep_out: Rep):
    n = rep_in.dim * rep_out.dim
    if n > MAX_WEIGHTS:
        big = "rep_in" if rep_in.dim >= rep_out.dim else "rep_out"
        raise ValueError(f"{big}: a layer {rep_in.dim} -> {rep_out.dim} has {n} weights, above the supported "
                         f"{MAX_WEIGHTS}")
    check_memory("rep_in", str(rep_in), 8 * n, "cpu", what=f"a ({rep_out.dim}, {rep_in.dim}) weight")


def _check_dtype(dtype):
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a real floating torch.dtype or None, got {dtype!r}")


def _tp_hidden(name: str, hidden) -> Rep:
    """The factor representation of a tensor product (no points, a tensor square of ≤ 2¹⁶ features)."""
    hidden = _as_rep(name, hidden)
    if any("points" in b for _, b in hidden.blocks):
        raise ValueError(f"{name}: {str(hidden)!r} holds points, which are affine and do not enter "
                         "tensor products; use vectors")
    if hidden.dim ** 2 > 1 << 16:
        raise ValueError(f"{name}: {str(hidden)!r} has dimension {hidden.dim}; its tensor square "
                         f"({hidden.dim ** 2} features) is above the supported {1 << 16}")
    return hidden


def _group_or_none(group):
    if group is None:
        return None
    G = candidate_group(group)
    if not G.linear:
        raise ValueError(f"group: {G.name!r} contains translations, which act affinely: a linear layer "
                         "cannot be equivariant to them by its weights (use a linear candidate group)")
    return G


class RepLinear(nn.Module):
    """A linear map ``y = x Wᵀ + b`` from ``rep_in`` to ``rep_out``: free, or equivariant by construction.

    Parameters
    ----------
    rep_in, rep_out : Rep or str
        The representations of the input and output features (``ValueError`` naming the argument for
        a malformed spec).
    group : str or CandidateGroup, optional
        None (default): free weights ``weight (d_out, d_in)`` and ``bias (d_out,)``, initialised like
        :class:`torch.nn.Linear`. A linear candidate group: ``W = Σ θ_j Q_j`` over the basis of the
        equivariant maps (``theta (rank,)``) and ``b`` in the invariant vectors of ``rep_out``
        (``bias_theta``), so the layer is exactly equivariant.
    bias : bool
        Whether there is a bias term.
    dtype : torch.dtype, optional
        Of the parameters (default: torch's default dtype).
    gain : float
        Scale of the initial weights (positive; 1 is nn.Linear's scale: ``E‖W‖²_F = gain²·d_out/3``).

    Shapes
    ------
    ``x (..., rep_in.dim) -> (..., rep_out.dim)``.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import RepLinear, candidate_group
    >>> layer = RepLinear("2xvectors", "vectors+scalars", group="O3").double()
    >>> layer.theta.shape, layer.effective_weight()[0].shape
    (torch.Size([2]), torch.Size([4, 6]))
    >>> float(layer.equivariance_penalty("O3")) < 1e-20
    True
    >>> free = RepLinear("2xvectors", "vectors+scalars")
    >>> float(free.equivariance_penalty("O3")) > 0
    True
    """

    def __init__(self, rep_in, rep_out, group=None, *, bias: bool = True, dtype: torch.dtype | None = None,
                 gain: float = 1.0):
        super().__init__()
        self.rep_in, self.rep_out = _as_rep("rep_in", rep_in), _as_rep("rep_out", rep_out)
        gain = check_number("gain", gain, positive=True)
        if not isinstance(bias, bool):
            raise TypeError(f"bias: expected a bool, got {type(bias).__name__}")
        _check_dtype(dtype)
        _check_size(self.rep_in, self.rep_out)
        self.group = _group_or_none(group)
        self.has_bias = bias
        dtype = dtype or torch.get_default_dtype()
        d_in, d_out = self.rep_in.dim, self.rep_out.dim
        bound = gain / math.sqrt(max(d_in, 1))
        if self.group is None:
            self.weight = nn.Parameter(torch.empty(d_out, d_in, dtype=dtype).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.empty(d_out, dtype=dtype).uniform_(-bound, bound)) if bias else None
        else:
            self.basis = equivariant_basis(self.rep_in, self.rep_out, self.group)
            # ‖W‖² = ‖θ‖² (orthonormal basis): this std gives E‖W‖² = gain²·d_out/3, the Frobenius norm
            # of nn.Linear's uniform initialisation (entries of variance bound²/3)
            std = gain * math.sqrt(d_out / (3.0 * max(self.basis.rank, 1)))
            self.theta = nn.Parameter(torch.randn(self.basis.rank, dtype=dtype) * std)
            self.bias_theta = nn.Parameter(torch.zeros(self.basis.bias_rank, dtype=dtype)) if bias else None
        self.symmetry = _symmetry(self.rep_in, self.rep_out, self.group)

    def extra_repr(self) -> str:
        g = "free" if self.group is None else f"group={self.group.name}"
        return f"{str(self.rep_in)!r} -> {str(self.rep_out)!r}, {g}, bias={self.has_bias}"

    def _weights(self):
        """``(W (d_out, d_in), b (d_out,) or None)`` as used in ``forward``."""
        if self.group is None:
            return self.weight, self.bias
        W = self.basis.expand(self.theta)
        b = None if self.bias_theta is None else self.basis.bias_basis.expand(self.bias_theta)[:, 0]
        return W, b

    def effective_weight(self):
        """The weight and bias of the map, ``(W, b)`` (``b`` is None without a bias)."""
        return self._weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(x, self.rep_in)
        W, b = self._weights()
        return nn.functional.linear(x, W.to(x.dtype), None if b is None else b.to(x.dtype))

    def equivariance_penalty(self, group) -> torch.Tensor:
        """``½‖W − P_G W‖² + ½‖b − P_G b‖²`` for a linear candidate group (a scalar; differentiable)."""
        W, b = self._weights()
        return projection_penalty(W, b, self.rep_in, self.rep_out, group)


class RPPLinear(nn.Module):
    """A residual-pathway-prior linear map: ``W = W_eq + W_free`` (Finzi, Benton, Wilson, NeurIPS'21).

    ``W_eq`` is expanded from the ``group``-equivariant basis, ``W_free`` is a free weight started at
    zero; training adds :meth:`prior_penalty` (``½‖W_free‖² + ½‖b_free‖²``) times a weight, the
    Gaussian prior that prefers the equivariant path unless the data need the free one.

    Parameters
    ----------
    rep_in, rep_out : Rep or str
    group : str or CandidateGroup
        A linear candidate group (required).
    bias : bool
    dtype : torch.dtype, optional

    Shapes
    ------
    ``x (..., rep_in.dim) -> (..., rep_out.dim)``.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import RPPLinear
    >>> layer = RPPLinear("vectors", "vectors", group="O3").double()
    >>> float(layer.prior_penalty().detach()), float(layer.equivariance_penalty("O3").detach()) < 1e-20
    (0.0, True)
    >>> layer(torch.zeros(5, 3, dtype=torch.float64)).shape
    torch.Size([5, 3])
    """

    def __init__(self, rep_in, rep_out, group, *, bias: bool = True, dtype: torch.dtype | None = None,
                 gain: float = 1.0):
        super().__init__()
        if group is None:
            raise ValueError("group: RPPLinear needs the group of its equivariant path (e.g. 'O3')")
        self.eq = RepLinear(rep_in, rep_out, group, bias=bias, dtype=dtype, gain=gain)
        self.eq._rpp_inner = True  # the regularisers count the whole map W_eq + W_free, not this path alone
        self.rep_in, self.rep_out, self.group = self.eq.rep_in, self.eq.rep_out, self.eq.group
        dtype = dtype or torch.get_default_dtype()
        self.free_weight = nn.Parameter(torch.zeros(self.rep_out.dim, self.rep_in.dim, dtype=dtype))
        self.free_bias = nn.Parameter(torch.zeros(self.rep_out.dim, dtype=dtype)) if bias else None
        self.symmetry = _symmetry(self.rep_in, self.rep_out, None)

    def extra_repr(self) -> str:
        return f"{str(self.rep_in)!r} -> {str(self.rep_out)!r}, group={self.group.name}"

    def effective_weight(self):
        """``(W_eq + W_free, b_eq + b_free)``."""
        W, b = self.eq._weights()
        W = W + self.free_weight
        if b is not None:
            b = b + self.free_bias
        return W, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(x, self.rep_in)
        W, b = self.effective_weight()
        return nn.functional.linear(x, W.to(x.dtype), None if b is None else b.to(x.dtype))

    def prior_penalty(self) -> torch.Tensor:
        """``½‖W_free‖² + ½‖b_free‖²``: the residual pathway's Gaussian prior (up to its weight)."""
        p = 0.5 * (self.free_weight * self.free_weight).sum()
        if self.free_bias is not None:
            p = p + 0.5 * (self.free_bias * self.free_bias).sum()
        return p

    def equivariance_penalty(self, group) -> torch.Tensor:
        """The projection penalty of the whole map ``W_eq + W_free`` for ``group``."""
        W, b = self.effective_weight()
        return projection_penalty(W, b, self.rep_in, self.rep_out, group)


def gated_rep(rep) -> Rep:
    """``rep`` followed by one gate scalar per non-scalar chunk: the input of :class:`GatedNonlinearity`.

    >>> str(gated_rep("4xscalars+2xvectors+tensor2"))
    '4xscalars+2xvectors+tensor2+3xscalars'
    """
    rep = _as_rep("rep", rep)
    n = sum(m for m, b in rep.blocks if b not in _SCALAR_BASES)
    return rep if n == 0 else rep + Rep(f"{n}xscalars")


class GatedNonlinearity(nn.Module):
    """The gated nonlinearity of equivariant MLPs: ``(..., gated_rep(rep).dim) -> (..., rep.dim)``.

    Scalar chunks (``scalars``, ``sh0``) go through SiLU; every other chunk is multiplied by
    ``sigmoid`` of its own gate (the trailing scalars, in chunk order). Gates are invariant, so the
    map is equivariant for every rotation group (not for scaling: SiLU is not homogeneous).

    Parameters
    ----------
    rep : Rep or str
        The output representation.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import GatedNonlinearity, gated_rep
    >>> act = GatedNonlinearity("2xscalars+vectors")
    >>> act(torch.zeros(4, gated_rep("2xscalars+vectors").dim)).shape
    torch.Size([4, 5])
    """

    def __init__(self, rep):
        super().__init__()
        self.rep = _as_rep("rep", rep)
        self.rep_in, self.rep_out = gated_rep(self.rep), self.rep
        scal, gated, chunk_of = [], [], []
        k = 0
        for (m, b), sl in zip(self.rep.blocks, self.rep.slices()):
            if b in _SCALAR_BASES:
                scal.extend(range(sl.start, sl.stop))
            else:
                d = _base_dim(b)
                for i in range(m):
                    gated.extend(range(sl.start + i * d, sl.start + (i + 1) * d))
                    chunk_of.extend([k] * d)
                    k += 1
        self.n_gates = k
        self.register_buffer("_scal", torch.tensor(scal, dtype=torch.long), persistent=False)
        self.register_buffer("_gated", torch.tensor(gated, dtype=torch.long), persistent=False)
        self.register_buffer("_chunk", torch.tensor(chunk_of, dtype=torch.long), persistent=False)
        self.symmetry = Symmetry("O3", {"x": self.rep_in.kind}, self.rep_out.kind)

    def extra_repr(self) -> str:
        return f"{str(self.rep)!r}, gates={self.n_gates}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(x, self.rep_in)
        d = self.rep.dim
        out = torch.empty_like(x[..., :d])
        out[..., self._scal] = nn.functional.silu(x[..., self._scal])
        if self.n_gates:
            gates = torch.sigmoid(x[..., d:])
            out[..., self._gated] = x[..., self._gated] * gates[..., self._chunk]
        return out


def _tensor_features(rep: Rep, x: torch.Tensor) -> torch.Tensor:
    """``x ⊗ x`` in the layout of ``rep.tensor(rep)`` (block pairs in order, chunk ``i·m₂ + j``)."""
    parts = []
    sls = rep.slices()
    for (m1, a), s1 in zip(rep.blocks, sls):
        u = x[..., s1].unflatten(-1, (m1, _base_dim(a)))
        for (m2, c), s2 in zip(rep.blocks, sls):
            v = x[..., s2].unflatten(-1, (m2, _base_dim(c)))
            p = u[..., :, None, :, None] * v[..., None, :, None, :]
            parts.append(p.flatten(-4))
    return torch.cat(parts, dim=-1)


class RepTensorProduct(nn.Module):
    """The bilinear layer ``x ↦ L₂(L₁x ⊗ L₁x)`` from ``rep_in`` to ``rep_out``.

    ``L₁ : rep_in -> hidden`` (no bias) and ``L₂ : hidden ⊗ hidden -> rep_out`` are
    :class:`RepLinear` maps, free or ``group``-equivariant; the tensor product of equivariant
    features is equivariant, so with a group the whole layer is. ``hidden`` stays small: the product
    has ``hidden.dim²`` features.

    Parameters
    ----------
    rep_in, rep_out : Rep or str
    group : str or CandidateGroup, optional
    hidden : Rep or str
        The factor representation (default ``"4xscalars+4xvectors"``; no ``points``).
    dtype : torch.dtype, optional

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import RepTensorProduct
    >>> tp = RepTensorProduct("2xvectors", "tensor2", group="O3", hidden="2xvectors")
    >>> tp(torch.randn(7, 6)).shape
    torch.Size([7, 9])
    """

    def __init__(self, rep_in, rep_out, group=None, *, hidden="4xscalars+4xvectors",
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.hidden = _tp_hidden("hidden", hidden)
        self.pre = RepLinear(rep_in, self.hidden, group, bias=False, dtype=dtype)
        self.post = RepLinear(self.hidden.tensor(self.hidden), rep_out, group, dtype=dtype, gain=_TP_GAIN)
        self.rep_in, self.rep_out, self.group = self.pre.rep_in, self.post.rep_out, self.pre.group
        self.symmetry = _symmetry(self.rep_in, self.rep_out, self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(x, self.rep_in)
        h = self.pre(x)
        return self.post(_tensor_features(self.hidden, h))


class RepMLP(nn.Module):
    """An equivariant-MLP-style network between representations (Finzi et al., EMLP, ICML'21 layout).

    ``num_layers`` blocks ``x ↦ gate(L(x) + TP(x))`` into ``gated_rep(hidden)`` (with
    :class:`GatedNonlinearity`), then a linear map to ``rep_out``.

    Parameters
    ----------
    rep_in, rep_out : Rep or str
    hidden : Rep or str
        The representation between blocks (default ``"16xscalars+8xvectors+4xtensor2"``).
    num_layers : int
        Number of gated blocks (≥ 1, ≤ 64).
    group : str or CandidateGroup, optional
        The group of the equivariant path (``"equivariant"`` and ``"rpp"``).
    path : {"free", "equivariant", "rpp"}
        ``"free"``: every map free (the soft model: add a regulariser); ``"equivariant"``: every map
        expanded from the ``group`` basis (exactly equivariant); ``"rpp"``: :class:`RPPLinear` maps.
    tp_hidden : Rep or str
        The factor representation of the tensor-product layers.
    dtype : torch.dtype, optional

    Shapes
    ------
    ``x (N, rep_in.dim) -> (N, rep_out.dim)``.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn.soft_equivariance import RepMLP
    >>> net = RepMLP("5xscalars+5xpoints", "tensor2", hidden="4xscalars+2xvectors+tensor2", num_layers=2,
    ...              group="O3", path="equivariant")
    >>> net(torch.randn(3, 20)).shape
    torch.Size([3, 9])
    """

    def __init__(self, rep_in, rep_out, hidden="16xscalars+8xvectors+4xtensor2", num_layers: int = 3, group=None,
                 *, path: str = "free", tp_hidden="4xscalars+4xvectors", dtype: torch.dtype | None = None):
        super().__init__()
        self.path = check_choice("path", path, ("free", "equivariant", "rpp"))
        check_int("num_layers", num_layers, min=1, max=64)
        if path != "free" and group is None:
            raise ValueError(f"group: path={path!r} needs the group of the equivariant maps (e.g. 'O3')")
        self.rep_in, self.rep_out = _as_rep("rep_in", rep_in), _as_rep("rep_out", rep_out)
        self.hidden = _as_rep("hidden", hidden)
        tp_hidden = _tp_hidden("tp_hidden", tp_hidden)
        _check_dtype(dtype)
        G = _group_or_none(group)  # validated on every path (a typo is an error even where it is unused)
        G = None if path == "free" else G
        self.group = G

        def lin(a, b):
            if path == "rpp":
                return RPPLinear(a, b, G, dtype=dtype)
            return RepLinear(a, b, G, dtype=dtype)

        blocks = []
        r = self.rep_in
        for _ in range(num_layers):
            g_out = gated_rep(self.hidden)
            blocks.append(nn.ModuleDict({
                "linear": lin(r, g_out),
                "tp": RepTensorProduct(r, g_out, None if path == "rpp" else G, hidden=tp_hidden, dtype=dtype)
                if path != "rpp" else _RPPTensorProduct(r, g_out, G, tp_hidden, dtype),
                "gate": GatedNonlinearity(self.hidden),
            }))
            r = self.hidden
        self.blocks = nn.ModuleList(blocks)
        self.head = lin(self.hidden, self.rep_out)
        if path == "equivariant" and G.geodl_group() is not None and not G.scaling:
            self.symmetry = Symmetry(G.geodl_group().name, {"x": self.rep_in.kind}, self.rep_out.kind)
        else:
            self.symmetry = _symmetry(self.rep_in, self.rep_out, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(x, self.rep_in)
        for blk in self.blocks:
            x = blk["gate"](blk["linear"](x) + blk["tp"](x))
        return self.head(x)

    def prior_penalty(self) -> torch.Tensor:
        """Σ of the free paths' priors (``path="rpp"``; 0 otherwise)."""
        total = None
        for m in self.modules():
            if isinstance(m, RPPLinear):
                p = m.prior_penalty()
                total = p if total is None else total + p
        if total is None:
            return torch.zeros((), dtype=next(self.parameters()).dtype)
        return total


class _RPPTensorProduct(RepTensorProduct):
    """A tensor-product layer whose two maps are :class:`RPPLinear`."""

    def __init__(self, rep_in, rep_out, group, hidden, dtype):
        nn.Module.__init__(self)
        self.hidden = _tp_hidden("hidden", hidden)
        self.pre = RPPLinear(rep_in, self.hidden, group, bias=False, dtype=dtype)
        self.post = RPPLinear(self.hidden.tensor(self.hidden), rep_out, group, dtype=dtype, gain=_TP_GAIN)
        self.rep_in, self.rep_out, self.group = self.pre.rep_in, self.post.rep_out, self.pre.group
        self.symmetry = _symmetry(self.rep_in, self.rep_out, None)
