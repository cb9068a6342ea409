"""DGCNN (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", ACM TOG 2019).

Edge convolution over a k-nearest-neighbour graph rebuilt in every layer from the current
features (``geodl.ops.knn_graph``, exact), global max + mean pooling, head MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_alloc, check_choice, check_int, check_number, check_tensor
from geodl.groups import Symmetry
from geodl.nn._layers import ACTIVATIONS, check_linear_sizes, check_widths
from geodl.nn.backbones._common import point_cloud_inputs, point_cloud_symmetry, pool_graphs
from geodl.ops import knn_graph, scatter

__all__ = ["EdgeConv", "DGCNN"]

# Non-decreasing activations: the max over neighbours commutes with them, which the fused path uses.
_MONOTONE = ("relu", "leaky_relu", "tanh")
_NORMS = ("batch", "none")
_NOTE = "no rotation symmetry of its own: wrap it in FrameAveraging or TinvNN"


def _check_flag(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return value


def _check_dtype(name, t, weight):
    if t.dtype != weight.dtype:
        raise TypeError(f"{name}: expected dtype {weight.dtype} (that of the parameters), got {t.dtype}")


def _renamed(exc, theirs, ours):
    """``exc`` (a ValueError of a helper) with its leading argument name ``theirs`` replaced."""
    msg = str(exc)
    if msg.startswith(theirs + ": "):
        return ValueError(ours + msg[len(theirs):])
    return exc


class EdgeConv(nn.Module):
    r"""Edge convolution: ``x'_i = max_{j in kNN(i)} h([x_i, x_j - x_i])``.

    ``h`` is ``Linear(2 in_channels, out_channels)`` (+ ``BatchNorm1d`` over the edges when
    ``norm="batch"``) + activation; the neighbours of point ``i`` are its ``k`` nearest points of
    the same graph (``geodl.ops.knn_graph`` on the detached search tensor, exact, ties by index). A
    graph with fewer than ``k + 1`` points uses all of its other points; a point without any other
    point in its graph (a graph of one point) uses itself, i.e. its output is ``h([x_i, 0])``.

    Two exact evaluations of the same function: with a non-decreasing activation ("relu",
    "leaky_relu", "tanh") and ``fused=True`` (the default), the linear map is split as
    ``(W_1 - W_2) x_i + W_2 x_j`` over the points, the (per-channel affine) batch norm is applied
    after selecting, for each channel, the neighbour with the largest (or, for a negative batch-norm
    weight, smallest) ``W_2 x_j``, and its training statistics over the edges are computed in closed
    form from per-point sums: only one ``(N, k, out_channels)`` temporary is built, and nothing of
    that size is kept for the backward pass. Otherwise (``fused=False``, "silu", "gelu") the
    ``(N k, 2 in_channels)`` edge features are built and reduced with a dense ``(N, k, C)`` max when
    every point has exactly ``k`` neighbours, else with ``geodl.ops.scatter(reduce="max")``.

    Parameters
    ----------
    in_channels, out_channels : int
        Feature widths.
    k : int
        Neighbours per point.
    act : str
        "leaky_relu" (slope 0.2, the original), "relu", "silu", "tanh" or "gelu".
    norm : str
        "batch" (``BatchNorm1d`` over all edges of the batch, the original) or "none" (a bias).
    dynamic : bool
        True: the neighbours are searched in ``knn_on`` if given, else in ``x`` (the dynamic graph
        of DGCNN). False: a fixed graph, searched in ``knn_on``, which is then required.

    Attributes
    ----------
    fused : bool
        Whether the fused evaluation is used (settable; it needs a non-decreasing activation).

    Forward
    -------
    ``forward(x, batch=None, *, num_graphs=None, knn_on=None) -> (N, out_channels)``: ``x`` (N,
    in_channels) features, ``batch`` (N,) graph ids (need not be sorted), ``num_graphs`` accepted
    for the backbone protocol (not needed: the output is per point), ``knn_on`` (N, d) the points
    the neighbours are searched in. Host syncs: those of ``knn_graph`` (graph sizes) and the check
    that the search tensor is finite. No points give ``(0, out_channels)``. In training mode with
    ``norm="batch"`` the batch needs at least two edges.

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import EdgeConv
    >>> _ = torch.manual_seed(0)
    >>> conv = EdgeConv(3, 8, k=4).eval()
    >>> x, batch = torch.randn(10, 3), torch.tensor([0] * 6 + [1] * 4)
    >>> out = conv(x, batch)
    >>> out.shape
    torch.Size([10, 8])
    >>> conv.fused = False  # the edge-feature evaluation gives the same numbers
    >>> torch.allclose(conv(x, batch), out, atol=1e-6)
    True
    """

    def __init__(self, in_channels: int, out_channels: int, k: int = 20, *, act: str = "leaky_relu",
                 norm: str = "batch", dynamic: bool = True):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, min=1)
        self.out_channels = check_int("out_channels", out_channels, min=1)
        self.k = check_int("k", k, min=1)
        self.act_name = check_choice("act", act, tuple(ACTIVATIONS))
        self.norm_name = check_choice("norm", norm, _NORMS)
        self.dynamic = _check_flag("dynamic", dynamic)
        check_linear_sizes("in_channels, out_channels", f"{in_channels}, {out_channels}",
                           [(2 * in_channels, out_channels)])
        self.lin = nn.Linear(2 * in_channels, out_channels, bias=norm != "batch")
        self.norm = nn.BatchNorm1d(out_channels) if norm == "batch" else None
        self.act = ACTIVATIONS[act]()
        self.fused = act in _MONOTONE

    symmetry = Symmetry("perm", {"x": "node:scalar", "batch": "batch"}, "node:scalar", batch_arg="batch",
                        note=_NOTE)

    def extra_repr(self) -> str:
        return f"k={self.k}, dynamic={self.dynamic}, fused={self.fused}"

    def forward(self, x, batch=None, *, num_graphs=None, knn_on=None):
        check_tensor("x", x, ndim=2, floating=True)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected shape (N, {self.in_channels}), got {tuple(x.shape)}")
        _check_dtype("x", x, self.lin.weight)
        n = x.shape[0]
        if batch is not None:
            check_tensor("batch", batch, shape=(n,), dtypes=(torch.int64, torch.int32))
        if num_graphs is not None:
            check_int("num_graphs", num_graphs, min=0)
        if knn_on is None:
            if not self.dynamic:
                raise ValueError("knn_on: required with dynamic=False (the points of the fixed graph)")
            name, search = "x", x
        else:
            check_tensor("knn_on", knn_on, ndim=2, floating=True)
            if knn_on.shape[0] != n:
                raise ValueError(f"knn_on: expected {n} rows matching x, got shape {tuple(knn_on.shape)}")
            name, search = "knn_on", knn_on
        if self.fused and self.act_name not in _MONOTONE:
            raise ValueError(f"fused: needs a non-decreasing activation {_MONOTONE}, got act={self.act_name!r}")
        if n == 0:
            return x.new_zeros((0, self.out_channels)) + self.lin.weight.sum() * 0  # keeps the graph
        return self._convolve(x, *self._neighbours(search, batch, name))

    def _neighbours(self, search, batch, name):
        """kNN edges ``(src, dst)`` of ``search`` (ordered by target) and whether every point has
        exactly k (``dense``; never under torch.compile, where the edge count is a dynamic size)."""
        eager = not torch.compiler.is_compiling()
        if eager:
            check_tensor(name, search, finite=True)
        try:
            src, dst = knn_graph(search.detach(), self.k, batch)
        except ValueError as exc:
            raise _renamed(exc, "pos", name) from exc
        return src, dst, eager and src.shape[0] == search.shape[0] * self.k

    def _convolve(self, x, src, dst, dense):
        n = x.shape[0]
        # the edge-sized tensors: fused, one (N k, C_out) gather; otherwise the (N k, 2 C_in) edge
        # features and three (N k, C_out) activations (linear, norm, act) kept for the backward pass
        width = self.out_channels if self.fused else 2 * self.in_channels + 3 * self.out_channels
        check_alloc("k", self.k, n * min(self.k, max(n - 1, 1)), width, x.dtype, x.device)  # <= k per point
        if self.fused:
            return self._fused(x, src, dst, dense)
        return self._edges(x, src, dst, dense)

    # -- the edge-feature evaluation (any activation) -------------------------------------------
    def _edges(self, x, src, dst, dense):
        n = x.shape[0]
        if not dense:  # points without neighbours (graphs of one point) get their self loop
            lonely = torch.ones(n, dtype=torch.bool, device=x.device).index_fill_(0, dst, False).nonzero()[:, 0]
            src, dst = torch.cat([src, lonely]), torch.cat([dst, lonely])
        xi = x.index_select(0, dst)
        h = self.lin(torch.cat([xi, x.index_select(0, src) - xi], 1))
        if self.norm is not None:
            h = self._batch_norm(h)
        h = self.act(h)
        if dense:  # edges are ordered by target: (N, k, C)
            return h.view(n, self.k, -1).max(1).values
        return scatter(h, dst, dim=0, dim_size=n, reduce="max")

    def _batch_norm(self, h):
        if self.training and h.shape[0] < 2:
            raise ValueError(f"x: training with norm='batch' needs at least 2 edges in the batch, got {h.shape[0]}")
        return self.norm(h)

    # -- the fused evaluation (non-decreasing activation) ---------------------------------------
    def _fused(self, x, src, dst, dense):
        n, c = x.shape
        w = self.lin.weight
        a = x @ (w[:, :c] - w[:, c:]).T  # the x_i part,  (N, C_out)
        b = x @ w[:, c:].T  # the x_j part, (N, C_out)
        if self.lin.bias is not None:
            a = a + self.lin.bias
        bn = self.norm
        sign = None if bn is None else torch.where(bn.weight.detach() >= 0, 1.0, -1.0).to(x.dtype)
        stats = bn is not None and self.training
        key = b if sign is None else b * sign  # max of key = max (or min, sign -1) of b
        if dense:
            idx = src.view(n, self.k)  # neighbours of each point (edges are ordered by target)
            g = (key if stats else key.detach()).index_select(0, src).view(n, self.k, -1)  # the one
            with torch.no_grad():  # (N, k, C_out) temporary; (N, C_out) selected neighbour per channel
                nb = idx.gather(1, g.detach().max(1).indices)
            if stats:
                nq, ns = None, torch.bincount(src, minlength=n).to(x.dtype)
                bsum = g.sum(1) if sign is None else g.sum(1) * sign
            del g
        else:
            ones = torch.ones_like(dst, dtype=x.dtype)
            nq = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, dst, ones)  # neighbours of i
            lonely = nq == 0  # a graph of one point: the self loop
            self_id = torch.arange(n, device=x.device)
            with torch.no_grad():
                _, arg = scatter(key.detach().index_select(0, src), dst, dim=0, dim_size=n, reduce="max",
                                 return_arg=True)  # position of the largest edge (E: none)
                nb = torch.where(lonely[:, None], self_id[:, None], torch.cat([src, src.new_zeros(1)])[arg])
            if stats:
                ns = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, src, ones) + lonely
                bsum = scatter(b.index_select(0, src), dst, dim=0, dim_size=n, reduce="sum") + lonely[:, None] * b
                nq = nq + lonely
        z = a + b.gather(0, nb)  # = max over the neighbours before the norm (sign-corrected)
        if bn is None:
            return self.act(z)
        if stats:
            mean, var = self._edge_stats(a, b, bsum, nq, ns, n)
        else:
            mean, var = bn.running_mean, bn.running_var
        scale = bn.weight / torch.sqrt(var + bn.eps)
        return self.act((z - mean) * scale + bn.bias)

    def _edge_stats(self, a, b, bsum, nq, ns, n):
        """Mean and (biased) variance over the edges of ``a_i + b_j`` from per-point sums; updates the
        running statistics as ``BatchNorm1d`` does. ``nq`` (None: k each) neighbours of each point,
        ``ns`` uses of each point as a neighbour, ``bsum`` the sum of ``b`` over each neighbourhood."""
        bn = self.norm
        edges = n * self.k if nq is None else nq.sum()
        if nq is None:
            nq_col, a_mean = self.k, a.mean(0)
        else:
            if not torch.compiler.is_compiling() and int(edges) < 2:
                raise ValueError(f"x: training with norm='batch' needs at least 2 edges in the batch, got {int(edges)}")
            nq_col, a_mean = nq[:, None], (nq @ a) / edges
        b_mean = (ns @ b) / edges
        a0, b0 = a - a_mean, b - b_mean
        s0 = bsum - nq_col * b_mean  # sum of b0 over each neighbourhood
        var = ((nq_col * a0 * a0).sum(0) + 2 * (a0 * s0).sum(0) + ns @ (b0 * b0)) / edges
        var = var.clamp_min(0)
        mean = a_mean + b_mean
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            f = (1.0 / float(bn.num_batches_tracked)) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
            bn.running_var.mul_(1 - f).add_(var.detach() * (edges / (edges - 1)), alpha=f)
        return mean, var


class DGCNN(nn.Module):
    r"""DGCNN on flat point clouds: dynamic EdgeConv stack, global max + mean pooling, head MLP.

    Per-point input is ``[pos, x, *extra]`` concatenated (each extra tensor flattened to (N, -1)),
    as in :class:`~geodl.nn.PointNet`. The first :class:`EdgeConv` searches its neighbours in
    ``pos``; with ``dynamic=True`` each later one searches in its input features (the dynamic graph),
    with ``dynamic=False`` all of them use the kNN graph of ``pos`` (searched once). The outputs of all EdgeConvs
    are concatenated, mapped to ``emb_channels`` (Linear + norm + act) and pooled per graph by max
    and mean, concatenated (``2 emb_channels``). The model is permutation equivariant
    (``level="node"``) or invariant (``level="graph"``) but has no rotation symmetry of its own;
    wrap it in :class:`~geodl.nn.FrameAveraging` or :class:`~geodl.nn.TinvNN` for that.

    Parameters
    ----------
    in_channels : int
        Channels of ``x`` and of the flattened extra inputs together (0: positions only).
    out_channels : int
        Width of the output.
    k : int
        Neighbours per point in every EdgeConv (20 in the original; a graph of fewer than
        ``k + 1`` points uses all of its other points, a graph of one point its self loop).
    conv_channels : sequence of int
        Output widths of the EdgeConv layers.
    emb_channels : int
        Width of the per-point embedding that is pooled.
    head_channels : sequence of int
        Hidden widths of the head MLP (each Linear + norm + act + dropout).
    dropout : float
        Dropout probability in the head, in [0, 1).
    pos_channels : int
        Dimension of ``pos``.
    level : str
        "graph" -> (num_graphs, out_channels); "node" -> (N, out_channels) from the concatenated
        EdgeConv features of each point and its graph's pooled feature (the segmentation variant).
    act : str
        "leaky_relu" (slope 0.2, the original), "relu", "silu", "tanh" or "gelu".
    norm : str
        "batch" (BatchNorm after every linear layer but the last, the original) or "none".
    dynamic : bool
        Rebuild the kNN graph from the features in every layer (True) or use that of ``pos``.

    Forward
    -------
    Backbone protocol ``forward(x=None, pos, batch=None, *, num_graphs=None, **extra)``. ``pos`` and
    ``x`` must be finite (``ValueError`` naming them). With ``num_graphs`` given the pooling reads
    nothing back to the host (the kNN search still reads the graph sizes). A graph without points
    (``num_graphs`` larger than the ids used) pools to zeros, so its output is the head applied to
    zeros; no points at all give ``(num_graphs or 0, out_channels)`` (graph level) or
    ``(0, out_channels)``. Training with ``norm="batch"`` at graph level needs at least two graphs
    per batch (the head's BatchNorm).

    ``torch.compile(fullgraph=True)`` traces it with a non-decreasing activation (the default):
    under compile the kNN edges take the scatter path (their count is a dynamic size). With "silu"
    or "gelu" it does not (the edge-feature evaluation finds the points without neighbours with
    ``nonzero``, a data-dependent size).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import DGCNN
    >>> _ = torch.manual_seed(0)
    >>> net = DGCNN(in_channels=1, out_channels=4, k=4, conv_channels=(8, 16), emb_channels=32,
    ...             head_channels=(16,)).eval()
    >>> pos, x, batch = torch.randn(10, 3), torch.randn(10, 1), torch.tensor([0] * 4 + [1] * 6)
    >>> net(x, pos, batch).shape
    torch.Size([2, 4])
    >>> net(x, pos, batch, num_graphs=3).shape  # a third graph without points
    torch.Size([3, 4])
    >>> DGCNN(out_channels=2, k=4, conv_channels=(8,), emb_channels=8, level="node")(None, pos).shape
    torch.Size([10, 2])
    """

    def __init__(self, in_channels: int = 0, out_channels: int = 1, k: int = 20, conv_channels=(64, 64, 128, 256),
                 emb_channels: int = 1024, head_channels=(512, 256), *, dropout: float = 0.5, pos_channels: int = 3,
                 level: str = "graph", act: str = "leaky_relu", norm: str = "batch", dynamic: bool = True):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, min=0)
        out_channels = check_int("out_channels", out_channels, min=1)
        k = check_int("k", k, min=1)
        emb_channels = check_int("emb_channels", emb_channels, min=1)
        pos_channels = check_int("pos_channels", pos_channels, min=1)
        dropout = check_number("dropout", dropout, lo=0.0)
        if dropout >= 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        convs = check_widths("conv_channels", conv_channels, nonempty=True)
        head = check_widths("head_channels", head_channels)
        self.in_channels, self.pos_channels, self.k = in_channels, pos_channels, k
        self.level = check_choice("level", level, ("graph", "node"))
        check_choice("act", act, tuple(ACTIVATIONS))
        check_choice("norm", norm, _NORMS)
        self.dynamic = _check_flag("dynamic", dynamic)
        widths = (pos_channels + in_channels, *convs)
        local = sum(convs)
        head_in = 2 * emb_channels + (local if level == "node" else 0)
        head_widths = (head_in, *head, out_channels)
        check_linear_sizes("in_channels, pos_channels, conv_channels", f"{in_channels}, {pos_channels}, {convs}",
                           [(2 * a, b) for a, b in zip(widths[:-1], widths[1:])])
        check_linear_sizes("conv_channels, emb_channels, head_channels, out_channels",
                           f"{convs}, {emb_channels}, {head}, {out_channels}",
                           [(local, emb_channels), *zip(head_widths[:-1], head_widths[1:])])
        batch_norm = norm == "batch"
        self.convs = nn.ModuleList(EdgeConv(a, b, k, act=act, norm=norm, dynamic=dynamic)
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.emb = nn.Sequential(*_block(local, emb_channels, act, batch_norm, 0.0))
        layers = []
        for a, b in zip(head_widths[:-2], head_widths[1:-1]):
            layers += _block(a, b, act, batch_norm, dropout)
        layers.append(nn.Linear(head_widths[-2], out_channels))
        self.head = nn.Sequential(*layers)
        self._head_norm = batch_norm and len(head) > 0

    @property
    def symmetry(self) -> Symmetry:
        return point_cloud_symmetry(self.in_channels, self.level, _NOTE)

    def forward(self, x=None, pos=None, batch=None, *, num_graphs=None, **extra):
        eager = not torch.compiler.is_compiling()
        if isinstance(pos, torch.Tensor) and pos.is_floating_point():
            _check_dtype("pos", pos, self.emb[0].weight)
        h, batch, num_graphs = point_cloud_inputs(x, pos, batch, num_graphs, extra, pos_channels=self.pos_channels,
                                                  in_channels=self.in_channels,
                                                  pool_width=2 * self.emb[0].out_features, finite=eager)
        if self.training and self._head_norm and self.level == "graph" and num_graphs < 2:
            raise ValueError(f"batch: training with norm='batch' needs at least 2 graphs per batch (the head's "
                             f"BatchNorm), got {num_graphs}")
        if h.shape[0] == 0:  # no points: nothing to convolve; every graph pools to zeros
            g = h.new_zeros((num_graphs, 2 * self.emb[0].out_features))
            if self.level == "node":
                return h.new_zeros((0, self.head[-1].out_features))
            return self.head(g)
        feats = []
        for i, conv in enumerate(self.convs):
            if i == 0 or self.dynamic:  # the first layer searches pos, the later ones their input
                edges = conv._neighbours(pos if i == 0 else h, batch, "pos" if i == 0 else "x")
            h = conv._convolve(h, *edges)  # with dynamic=False every layer reuses the graph of pos
            feats.append(h)
        local = torch.cat(feats, 1)
        e = self.emb(local)
        g = torch.cat([pool_graphs(e, batch, num_graphs, "max"), pool_graphs(e, batch, num_graphs, "mean")], 1)
        if self.level == "graph":
            return self.head(g)
        return self.head(torch.cat([local, g[batch]], 1))


def _block(a, b, act, batch_norm, dropout):
    """Linear (no bias before a BatchNorm) [+ BatchNorm1d] + act [+ Dropout]."""
    layers = [nn.Linear(a, b, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(b))
    layers.append(ACTIVATIONS[act]())
    if dropout:
        layers.append(nn.Dropout(dropout))
    return layers
