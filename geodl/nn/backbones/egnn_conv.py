"""EGNNConv: the E(n)-equivariant graph convolution layer (Satorras, Hoogeboom & Welling, ICML 2021)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from geodl._checks import check_choice, check_int, check_tensor
from geodl.groups import Symmetry
from geodl.nn._layers import ACTIVATIONS, check_linear_sizes, mlp
from geodl.ops import scatter

__all__ = ["EGNNConv"]


def _layer_shapes(channels: int, edge_dim: int) -> list[tuple[int, int]]:
    """``(in, out)`` widths of the linear layers of one EGNNConv (all four MLPs)."""
    c = channels
    return [(2 * c + 1 + edge_dim, c), (c, c), (2 * c, c), (c, c), (c, c), (c, 1), (c, c), (c, 1)]


class EGNNConv(MessagePassing):
    """E(n)-equivariant message passing: invariant features ``x`` and positions ``pos`` updated together.

    For an edge ``j -> i`` (PyG convention: ``edge_index[0]`` sources, ``edge_index[1]``
    targets) the message is ``m_ij = φ_e(x_i, x_j, |pos_i - pos_j|², e_ij)`` (EGNN eq. 3), and

    - ``pos_i' = pos_i + AGG_j (pos_i - pos_j) φ_x(m_ij)`` (eq. 4; AGG the mean, or the sum with
      ``coord_aggr="sum"``), plus ``φ_v(x_i) vel_i`` with ``velocity=True`` (eq. 7);
    - ``x_i' = x_i + φ_h(x_i, Σ_j m_ij)`` (eqs. 5-6; residual, so the width stays ``channels``).

    Aggregation uses :func:`geodl.ops.scatter`. The layer is E(n)-equivariant in any dimension n
    (positions ``(N, n)``) and permutation equivariant; ``x`` stays invariant.

    Parameters
    ----------
    channels : int
        Width of ``x`` and of the messages.
    edge_dim : int
        Width of ``edge_attr`` (0: none).
    act : str
        "silu" (paper), "relu", "tanh" or "gelu".
    update_features : bool
        Update ``x``; ``False`` returns ``x`` unchanged (e.g. a network's last layer, whose
        feature update would feed nothing).
    velocity : bool
        Add the velocity term; ``forward`` then needs ``vel``.
    coord_aggr : str
        "mean" (the paper's code) or "sum" over the neighbours in the position update.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> conv = EGNNConv(8)
    >>> x, pos = torch.randn(4, 8), torch.randn(4, 3)
    >>> edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    >>> x_new, pos_new = conv(x, pos, edge_index)
    >>> x_new.shape, pos_new.shape
    (torch.Size([4, 8]), torch.Size([4, 3]))
    """

    symmetry = Symmetry(
        "E3+perm",
        {"x": "node:scalar", "pos": "node:points", "edge_index": "edge_index", "edge_attr": "scalar",
         "vel": "node:vectors"},
        ("node:scalar", "node:points"),
        note="E(n) for positions of any dimension n; edge_attr must be invariant",
    )

    def __init__(self, channels: int, edge_dim: int = 0, *, act: str = "silu", update_features: bool = True,
                 velocity: bool = False, coord_aggr: str = "mean"):
        super().__init__(aggr="sum")
        channels = check_int("channels", channels, min=1)
        edge_dim = check_int("edge_dim", edge_dim, min=0)
        check_choice("act", act, tuple(ACTIVATIONS))
        self.channels, self.edge_dim = channels, edge_dim
        self.coord_aggr = check_choice("coord_aggr", coord_aggr, ("mean", "sum"))
        check_linear_sizes("channels, edge_dim", f"{channels}, {edge_dim}", _layer_shapes(channels, edge_dim))
        # creation order fixes the initialisation for a given seed (the EGNN baseline relies on it)
        self.edge_mlp = mlp([2 * channels + 1 + edge_dim, channels, channels], act, last_act=True)
        self.node_mlp = mlp([2 * channels, channels, channels], act, last_act=False) if update_features else None
        self.coord_mlp = mlp([channels, channels, 1], act, last_act=False)
        self.vel_mlp = mlp([channels, channels, 1], act, last_act=False) if velocity else None
        # small initial coordinate steps keep the first updates stable (as in the EGNN paper's code)
        nn.init.xavier_uniform_(self.coord_mlp[-1].weight, gain=1e-3)
        self.coord_mlp[-1].bias = None

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, edge_dim={self.edge_dim}, update_features={self.node_mlp is not None}, "
                f"velocity={self.vel_mlp is not None}, coord_aggr={self.coord_aggr!r}")

    def forward(self, x: torch.Tensor, pos: torch.Tensor, edge_index: torch.Tensor,
                edge_attr: torch.Tensor | None = None, *, vel: torch.Tensor | None = None):
        """``(x (N, channels), pos (N, n), edge_index (2, E)[, edge_attr (E, edge_dim)])`` -> ``(x', pos')``."""
        check_tensor("x", x, shape=(None, self.channels), floating=True)
        n = x.shape[0]
        check_tensor("pos", pos, shape=(n, None), floating=True)
        check_tensor("edge_index", edge_index, shape=(2, None), dtypes=(torch.int64, torch.int32))
        if self.edge_dim:
            if edge_attr is None:
                raise ValueError(f"edge_attr: required, (E, {self.edge_dim})")
            check_tensor("edge_attr", edge_attr, shape=(edge_index.shape[1], self.edge_dim), floating=True)
        elif edge_attr is not None:
            raise ValueError("edge_attr: this layer was built with edge_dim=0")
        if (self.vel_mlp is None) != (vel is None):
            raise ValueError("vel: required with velocity=True and not accepted otherwise"
                             if vel is None else "vel: this layer was built with velocity=False")
        if vel is not None:
            check_tensor("vel", vel, shape=tuple(pos.shape), floating=True)
        agg = self.propagate(edge_index, x=x, pos=pos, edge_attr=edge_attr, size=(n, n))
        agg_m, agg_pos = agg[:, : self.channels], agg[:, self.channels :]
        if self.coord_aggr == "mean":
            ones = pos.new_ones(edge_index.shape[1], 1)
            agg_pos = agg_pos / scatter(ones, edge_index[1], 0, dim_size=n).clamp_min(1)
        pos = pos + agg_pos
        if self.vel_mlp is not None:
            pos = pos + self.vel_mlp(x) * vel
        if self.node_mlp is not None:
            x = x + self.node_mlp(torch.cat([x, agg_m], -1))
        return x, pos

    def message(self, x_i, x_j, pos_i, pos_j, edge_attr):
        diff = pos_i - pos_j
        feats = [x_i, x_j, (diff * diff).sum(-1, keepdim=True)] + ([] if edge_attr is None else [edge_attr])
        m = self.edge_mlp(torch.cat(feats, -1))
        return torch.cat([m, diff * self.coord_mlp(m)], -1)

    def aggregate(self, inputs, index, ptr=None, dim_size=None):
        return scatter(inputs, index, 0, dim_size=dim_size, reduce="sum")
