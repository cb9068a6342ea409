"""Plain backbones that the symmetry methods wrap (PyG-style flat inputs).

Each backbone lives in its own clearly separated section below.
"""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_choice, check_tensor
from geodl.ops import scatter

__all__ = ["PointNet", "EGNN"]


# ============================================================================================
# PointNet (Qi et al., CVPR 2017), without the input/feature transform nets: those are learned
# alignments, which frame averaging replaces by exact PCA frames.
# ============================================================================================

_ACTS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _mlp(channels, act: str, last_act: bool) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(channels) - 2:
            layers.append(_ACTS[act]())
    return nn.Sequential(*layers)


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

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import PointNet
    >>> _ = torch.manual_seed(0)
    >>> net = PointNet(in_channels=1, out_channels=4, hidden_channels=(16, 32))
    >>> pos, x, batch = torch.randn(10, 3), torch.randn(10, 1), torch.tensor([0] * 4 + [1] * 6)
    >>> net(x, pos, batch).shape
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
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("pos_channels", pos_channels)):
            if not isinstance(v, int) or v < (0 if name == "in_channels" else 1):
                raise ValueError(f"{name}: expected a {'non-negative' if name == 'in_channels' else 'positive'} int, got {v!r}")
        hidden, head = tuple(hidden_channels), tuple(head_channels)
        if not hidden or any(not isinstance(c, int) or c < 1 for c in hidden + head):
            raise ValueError(f"hidden_channels/head_channels: expected positive ints, got {hidden}, {head}")
        self.in_channels, self.pos_channels = in_channels, pos_channels
        self.level = check_choice("level", level, ("graph", "node"))
        self.pool = check_choice("pool", pool, ("max", "mean", "sum"))
        check_choice("act", act, tuple(_ACTS))
        self.local = _mlp((pos_channels + in_channels, *hidden), act, last_act=True)
        head_in = hidden[-1] + (hidden[0] if level == "node" else 0)
        self.head = _mlp((head_in, *head, out_channels), act, last_act=False)

    def forward(self, x=None, pos=None, batch=None, **extra):
        check_tensor("pos", pos, ndim=2, floating=True)
        if pos.shape[1] != self.pos_channels:
            raise ValueError(f"pos: expected shape (N, {self.pos_channels}), got {tuple(pos.shape)}")
        n = pos.shape[0]
        feats = [pos] + ([] if x is None else [x]) + list(extra.values())
        for name, t in zip(["pos", "x", *extra] if x is not None else ["pos", *extra], feats):
            check_tensor(name, t)
            if t.shape[0] != n:
                raise ValueError(f"{name}: expected {n} rows matching pos, got shape {tuple(t.shape)}")
        h = torch.cat([t.reshape(n, -1).to(pos.dtype) for t in feats], 1)
        if h.shape[1] != self.pos_channels + self.in_channels:
            raise ValueError(
                f"x: expected {self.in_channels} feature channels in x and extra inputs together, "
                f"got {h.shape[1] - self.pos_channels}"
            )
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=pos.device)
        num_graphs = int(batch.max()) + 1 if n else 0
        first = self.local[:2](h)  # per-point features of the first layer (node-level head)
        h = self.local[2:](first)
        g = scatter(h, batch, dim=0, dim_size=num_graphs, reduce=self.pool)
        if self.level == "graph":
            return self.head(g)
        return self.head(torch.cat([first, g[batch]], 1))


# ============================================================================================
# EGNN (Satorras, Hoogeboom & Welling, ICML 2021), the velocity variant used for n-body
# (section owned by the n-body benchmark). Fully connected message passing within each graph.
# ============================================================================================


def full_graph_edges(batch: torch.Tensor, num_graphs: int | None = None) -> torch.Tensor:
    """Directed edges (2, E) between every ordered pair of distinct nodes of the same graph.

    ``batch`` need not be sorted. Graphs of equal size take a vectorised path; otherwise a dense
    (N, N) mask is used (fine for the small systems these models are meant for).
    """
    n = batch.shape[0]
    counts = torch.bincount(batch, minlength=num_graphs or 0)
    counts = counts[counts > 0]
    size = int(counts[0]) if counts.numel() else 0
    if counts.numel() and bool((counts == size).all()):
        order = torch.argsort(batch, stable=True).view(-1, size)  # (B, size) node ids per graph
        i, j = torch.meshgrid(torch.arange(size, device=batch.device),
                              torch.arange(size, device=batch.device), indexing="ij")
        keep = i != j
        return torch.stack([order[:, i[keep]].flatten(), order[:, j[keep]].flatten()])
    same = (batch[:, None] == batch[None, :]) & ~torch.eye(n, dtype=torch.bool, device=batch.device)
    return same.nonzero().T


def check_dynamics_inputs(pos, vel, charges, batch):
    """Validate (pos, vel, charges, batch) of the n-body models; return (charges (N, 1), batch)."""
    check_tensor("pos", pos, ndim=2, floating=True, finite=True)
    if pos.shape[1] != 3:
        raise ValueError(f"pos: expected shape (N, 3), got {tuple(pos.shape)}")
    n = pos.shape[0]
    if n < 2:
        raise ValueError(f"pos: expected at least 2 nodes, got {n}")
    check_tensor("vel", vel, shape=(n, 3), floating=True, finite=True)
    check_tensor("charges", charges, ndim=(1, 2), floating=True, finite=True)
    charges = charges.reshape(n, -1) if charges.numel() == n else None
    if charges is None:
        raise ValueError(f"charges: expected shape ({n},) or ({n}, 1) matching pos")
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
    else:
        check_tensor("batch", batch, shape=(n,), dtypes=(torch.int64, torch.int32))
        batch = batch.long()
        if int(batch.min()) < 0:
            raise ValueError("batch: expected non-negative graph ids")
        if bool((torch.bincount(batch) == 1).any()):
            raise ValueError("batch: every graph needs at least 2 nodes")
    return charges, batch


class _EGCLVel(nn.Module):
    """One E(n)-equivariant layer with the velocity term (EGNN eqs. 3-6 and 7)."""

    def __init__(self, hidden: int, edge_dim: int, act: str, update_h: bool = True):
        super().__init__()
        self.edge_mlp = _mlp([2 * hidden + 1 + edge_dim, hidden, hidden], act, last_act=True)
        # the last layer's feature update would feed nothing, so it is left out
        self.node_mlp = _mlp([2 * hidden, hidden, hidden], act, last_act=False) if update_h else None
        self.coord_mlp = _mlp([hidden, hidden, 1], act, last_act=False)
        self.vel_mlp = _mlp([hidden, hidden, 1], act, last_act=False)
        # small initial coordinate steps keep the first updates stable (as in the EGNN paper's code)
        nn.init.xavier_uniform_(self.coord_mlp[-1].weight, gain=1e-3)
        self.coord_mlp[-1].bias = None

    def forward(self, h, x, vel, edge_index, edge_attr, deg):
        row, col = edge_index
        diff = x[row] - x[col]
        m = self.edge_mlp(torch.cat([h[row], h[col], (diff * diff).sum(-1, keepdim=True), edge_attr], -1))
        n = h.shape[0]
        x = x + scatter(diff * self.coord_mlp(m), row, 0, dim_size=n) / deg  # mean over neighbours
        x = x + self.vel_mlp(h) * vel
        if self.node_mlp is not None:
            h = h + self.node_mlp(torch.cat([h, scatter(m, row, 0, dim_size=n)], -1))
        return h, x


class EGNN(nn.Module):
    """EGNN with velocity inputs for n-body dynamics: predicts positions, E(3)- and perm-equivariant.

    Nodes start from the invariant feature ``|v|``; edges carry ``q_i q_j`` and the squared
    distance. Each layer updates invariant node features ``h`` and positions ``x`` (relative
    position differences weighted by invariant messages, plus ``φ_v(h_i) v_i``). The returned
    positions are those after the last layer.

    Parameters
    ----------
    hidden_channels : int
        Width of ``h`` and of the messages (64 in the EGNN paper).
    num_layers : int
        Message-passing layers (4 in the paper).
    act : str
        "silu" (paper), "relu", "tanh" or "gelu".

    Forward
    -------
    ``forward(pos, vel, charges, batch=None)``: ``pos``, ``vel`` (N, 3); ``charges`` (N,) or (N, 1);
    ``batch`` (N,) graph ids (fully connected within each graph). Returns positions (N, 3).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import EGNN
    >>> _ = torch.manual_seed(0)
    >>> net = EGNN(hidden_channels=16, num_layers=2)
    >>> pos, vel, q = torch.randn(10, 3), torch.randn(10, 3), torch.ones(10, 1)
    >>> net(pos, vel, q, torch.arange(2).repeat_interleave(5)).shape
    torch.Size([10, 3])
    """

    def __init__(self, hidden_channels: int = 64, num_layers: int = 4, *, act: str = "silu"):
        super().__init__()
        for name, v in (("hidden_channels", hidden_channels), ("num_layers", num_layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        check_choice("act", act, tuple(_ACTS))
        self.embedding = nn.Linear(1, hidden_channels)
        self.layers = nn.ModuleList(_EGCLVel(hidden_channels, 1, act, update_h=i < num_layers - 1)
                                    for i in range(num_layers))

    def forward(self, pos, vel, charges, batch=None):
        charges, batch = check_dynamics_inputs(pos, vel, charges, batch)
        edge_index = full_graph_edges(batch)
        row, col = edge_index
        edge_attr = charges[row] * charges[col]
        deg = torch.bincount(row, minlength=pos.shape[0]).clamp_min(1).to(pos.dtype)[:, None]
        h = self.embedding(vel.norm(dim=-1, keepdim=True))
        x = pos
        for layer in self.layers:
            h, x = layer(h, x, vel, edge_index, edge_attr, deg)
        return x
