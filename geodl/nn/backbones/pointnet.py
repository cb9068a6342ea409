"""PointNet (Qi et al., CVPR 2017) without the input/feature transform nets.

Those are learned alignments, which frame averaging replaces by exact PCA frames.
"""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_choice, check_int
from geodl.groups import Symmetry
from geodl.nn._layers import ACTIVATIONS, check_linear_sizes, check_widths, mlp
from geodl.nn.backbones._common import point_cloud_inputs, point_cloud_symmetry, pool_graphs

__all__ = ["PointNet"]


class PointNet(nn.Module):
    """PointNet on flat point clouds: shared per-point MLP, symmetric pooling, head MLP.

    Per-point input is ``[pos, x, *extra]`` concatenated (each extra tensor flattened to
    (N, -1)), so the backbone is permutation equivariant (``level="node"``) or invariant
    (``level="graph"``) but has no rotation symmetry of its own; wrap it in
    :class:`~geodl.nn.FrameAveraging` for that.

    Parameters
    ----------
    in_channels : int
        Width of ``x`` plus the flattened extra inputs (0 for positions only).
    out_channels : int
        Output width.
    hidden_channels : sequence of int
        Widths of the shared per-point MLP; the last one is the global feature width.
    head_channels : sequence of int
        Hidden widths of the head MLP.
    pos_channels : int
        Dimension of ``pos`` (3 or 2).
    level : str
        "graph" -> (num_graphs, out_channels); "node" -> (N, out_channels) from the per-point
        features concatenated with their graph's global feature (the segmentation variant).
    pool : str
        "max" (the original), "mean" or "sum" (smooth, e.g. for energies).
    act : str
        "relu", "silu", "tanh" or "gelu".

    Forward
    -------
    Backbone protocol ``forward(x=None, pos, batch=None, *, num_graphs=None, **extra)``; with
    ``num_graphs`` given nothing reads a value back to the host. Empty inputs are normal: a graph
    without points (``num_graphs`` larger than the ids used) pools to zeros, so its output is the
    head applied to zeros; no points at all give ``(0, out_channels)`` (``num_graphs`` 0 unless
    given).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import PointNet
    >>> _ = torch.manual_seed(0)
    >>> net = PointNet(in_channels=1, out_channels=4, hidden_channels=(16, 32))
    >>> pos, x, batch = torch.randn(10, 3), torch.randn(10, 1), torch.tensor([0] * 4 + [1] * 6)
    >>> net(x, pos, batch).shape
    torch.Size([2, 4])
    >>> net(x, pos, batch, num_graphs=2).shape
    torch.Size([2, 4])
    """

    def __init__(
        self,
        in_channels: int = 0,
        out_channels: int = 1,
        hidden_channels=(64, 128, 1024),
        head_channels=(256, 128),
        *,
        pos_channels: int = 3,
        level: str = "graph",
        pool: str = "max",
        act: str = "relu",
    ):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, min=0)
        out_channels = check_int("out_channels", out_channels, min=1)
        pos_channels = check_int("pos_channels", pos_channels, min=1)
        hidden = check_widths("hidden_channels", hidden_channels, nonempty=True)
        head = check_widths("head_channels", head_channels)
        self.in_channels, self.pos_channels = in_channels, pos_channels
        self.level = check_choice("level", level, ("graph", "node"))
        self.pool = check_choice("pool", pool, ("max", "mean", "sum"))
        check_choice("act", act, tuple(ACTIVATIONS))
        head_in = hidden[-1] + (hidden[0] if level == "node" else 0)
        local_widths, head_widths = (pos_channels + in_channels, *hidden), (head_in, *head, out_channels)
        check_linear_sizes("in_channels, pos_channels, hidden_channels", f"{in_channels}, {pos_channels}, {hidden}",
                           list(zip(local_widths[:-1], local_widths[1:])))
        check_linear_sizes("hidden_channels, head_channels, out_channels", f"{hidden}, {head}, {out_channels}",
                           list(zip(head_widths[:-1], head_widths[1:])))
        self.local = mlp(local_widths, act, last_act=True)
        self.head = mlp(head_widths, act, last_act=False)

    @property
    def symmetry(self) -> Symmetry:
        return point_cloud_symmetry(self.in_channels, self.level,
                                    "no rotation symmetry of its own: wrap it in FrameAveraging")

    def forward(self, x=None, pos=None, batch=None, *, num_graphs=None, **extra):
        h, batch, num_graphs = point_cloud_inputs(x, pos, batch, num_graphs, extra, pos_channels=self.pos_channels,
                                                  in_channels=self.in_channels,
                                                  pool_width=self.local[-2].out_features)
        first = self.local[:2](h)  # per-point features of the first layer (node-level head)
        h = self.local[2:](first)
        g = pool_graphs(h, batch, num_graphs, self.pool)
        if self.level == "graph":
            return self.head(g)
        return self.head(torch.cat([first, g[batch]], 1))
