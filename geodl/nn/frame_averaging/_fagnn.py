"""FA-GNN: a frame-averaged message-passing network for n-body dynamics (Puny et al., ICLR 2022).

The backbone is a plain (Gilmer-style) message-passing GNN with no symmetry of its own. Frame
averaging makes it E(3)-equivariant, and, as in the paper's n-body model, the frames are recomputed
between layers from the network's own latent vectors:

1. PCA frames of the positions (:func:`geodl.nn.frames`, group E(3): 8 frames per system).
   Positions (centred) and velocities are expressed in every frame; node features are these 6
   numbers per frame, edges carry ``q_i q_j`` and ``|x_i − x_j|²``.
2. Each layer runs the GNN in every frame at once (the frame axis is a batch axis).
3. Between layers the width-``H`` latent of every node is read as ``H/3`` vectors in frame
   coordinates, mapped back to world coordinates and averaged over the frames (an equivariant set
   of vectors), then re-expressed in the PCA frames of those latent vectors: about the origin
   (``latent_frames="origin"``, group O(3): they are translation invariant already, so nothing is
   discarded) or, as the reference code of the paper does, about their per-system mean, which is
   subtracted (``latent_frames="centered"``, group E(3)).
4. The decoder's 3-vector per frame is mapped back, averaged, and the positions' centroid added.

Every step is equivariant, so the output positions are E(3)- and permutation-equivariant for every
input whose frames are well defined (see the degeneracy policy of :func:`geodl.nn.frames`).
"""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_choice, check_int, check_memory, check_number
from geodl.nn._layers import ACTIVATIONS, mlp
from geodl.nn.backbones._common import (
    DYNAMICS_SYMMETRY,
    check_dynamics_inputs,
    dynamics_arguments,
    full_graph_edges,
)
from geodl.nn.frame_averaging._frames import _frames, _parse_group
from geodl.ops import scatter

__all__ = ["FAGNN"]


def frames(pts, batch, group, *, num_graphs, degeneracy, gap_tol, validate=True):
    """:func:`geodl.nn.frames` (global, validated) as FA-GNN uses them: detached by design, so
    without the ``differentiable`` warning (the latent vectors require grad in every training
    step), and with empty graphs allowed (``check_dynamics_inputs`` has checked the rest)."""
    return _frames(pts, batch, _parse_group(group), num_graphs=num_graphs, kind="global", segment=None, k=2,
                   degeneracy=degeneracy, gap_tol=gap_tol, differentiable=False, generator=None,
                   augment_samples=8, validate=validate, allow_empty=True)


class _GCL(nn.Module):
    """Message passing with a residual node update; tensors carry a frame axis: (N, F, H)."""

    def __init__(self, hidden: int, edge_dim: int, act: str):
        super().__init__()
        self.edge_mlp = mlp([2 * hidden + edge_dim, hidden, hidden], act, last_act=True)
        self.node_mlp = mlp([2 * hidden, hidden, hidden], act, last_act=False)

    def forward(self, h, edge_index, edge_attr):
        row, col = edge_index
        e = edge_attr[:, None, :].expand(-1, h.shape[1], -1)
        m = self.edge_mlp(torch.cat([h[row], h[col], e], -1))
        agg = scatter(m, row, 0, dim_size=h.shape[0])
        return h + self.node_mlp(torch.cat([h, agg], -1))


def _to_frames(v: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """World vectors v (N, K, 3) -> frame coordinates (N, F, K, 3); rot (N, F, 3, 3), axes as columns."""
    return torch.einsum("nkj,nfji->nfki", v, rot)


def _from_frames(y: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Frame coordinates y (N, F, K, 3) -> world vectors averaged over the frames (N, K, 3)."""
    return torch.einsum("nfkj,nfij->nki", y, rot) / rot.shape[1]


class FAGNN(nn.Module):
    """Frame-averaged GNN with latent re-framing between layers; predicts positions (N, 3).

    Parameters
    ----------
    hidden_channels : int
        Latent width, a multiple of 3 (read as ``hidden_channels / 3`` vectors between layers;
        60 in the paper).
    num_layers : int
        Message-passing layers (4 in the paper).
    act : str
        "silu" (paper), "relu", "tanh" or "gelu".
    degeneracy : str
        Policy of :func:`geodl.nn.frames` for near-tied eigenvalues, for the input and the latent
        frames: "warn" (default), "raise", "flag" or "augment".
    gap_tol : float
        Relative eigengap below which a frame counts as degenerate.
    residual : bool
        Predict the displacement and add the input positions (as EGNN's coordinate updates do)
        instead of the positions themselves (the paper's decoder). Both are E(3)-equivariant.
    latent_frames : str
        "origin" (default): PCA frames of the latent vectors about the origin, vectors kept as
        they are. "centered": the per-system mean of the latent vectors is subtracted and the
        frames are those of the centred vectors (the paper's reference code). Both equivariant.

    Forward
    -------
    Same call as :class:`~geodl.nn.EGNN`: ``forward(x, pos, batch=None, *, num_graphs=None, vel,
    edge_index=None)`` with ``x`` the charges, or positionally ``forward(pos, vel, charges,
    batch=None)``; returns positions (N, 3). Graphs without nodes are allowed in a batch.
    ``torch.compile(fagnn, fullgraph=True)`` works given ``num_graphs=`` and ``edge_index=`` (the
    default fully connected graph is built from a host read).

    **Sync-free step.** Given ``num_graphs=`` and ``edge_index=``, input values are not validated;
    with ``degeneracy="flag"`` (or ``"augment"``) nothing else reads the degeneracy mask either, so
    the forward and backward read nothing on the host and a training step can be captured by CUDA
    graphs (``benchmarks/nbody_step_time.py --mode graphs``). ``"warn"`` and ``"raise"`` read the
    mask once per frame computation. ``tests/nn/frame_averaging/test_sync_free.py`` checks this by
    running forward and backward on the ``meta`` device, where any host read raises. The frames are detached from the
    positions and latent vectors by design (no ``differentiable`` option and no warning).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import FAGNN
    >>> _ = torch.manual_seed(0)
    >>> net = FAGNN(hidden_channels=12, num_layers=2)
    >>> pos, vel = torch.randn(10, 3), torch.randn(10, 3)
    >>> q = torch.tensor([1.0, -1.0] * 5)
    >>> net(q, pos, torch.arange(2).repeat_interleave(5), vel=vel).shape
    torch.Size([10, 3])
    """

    symmetry = DYNAMICS_SYMMETRY.replace(
        note="exact for inputs whose input and latent frames are well defined (see degeneracy=)")

    def __init__(self, hidden_channels: int = 60, num_layers: int = 4, *, act: str = "silu",
                 degeneracy: str = "warn", gap_tol: float = 1e-4, residual: bool = False,
                 latent_frames: str = "origin"):
        super().__init__()
        if check_int("hidden_channels", hidden_channels, min=1) % 3:
            raise ValueError(f"hidden_channels: expected a positive multiple of 3, got {hidden_channels!r}")
        check_int("num_layers", num_layers, min=1)
        # parameters (default dtype) checked before building: one layer, then all of them
        H = hidden_channels
        per_layer = ((2 * H + 2) * H + H + H * H + H + 2 * H * H + H + H * H + H) * torch.get_default_dtype().itemsize
        check_memory("hidden_channels", H, per_layer, "cpu", what="layers of that width")
        check_memory("num_layers", num_layers, num_layers * per_layer, "cpu", what=f"{num_layers} layers of width {H}")
        check_choice("act", act, tuple(ACTIVATIONS))
        check_choice("degeneracy", degeneracy, ("warn", "raise", "flag", "augment"))
        check_choice("latent_frames", latent_frames, ("origin", "centered"))
        check_number("gap_tol", gap_tol, nonnegative=True)
        self.hidden_channels, self.degeneracy, self.gap_tol = hidden_channels, degeneracy, gap_tol
        self.residual = bool(residual)
        self.latent_frames = latent_frames
        self.embedding = nn.Linear(6, hidden_channels)
        self.layers = nn.ModuleList(_GCL(hidden_channels, 2, act) for _ in range(num_layers))
        self.decoder = mlp([hidden_channels, hidden_channels, 3], act, last_act=False)

    def extra_repr(self) -> str:
        return (f"degeneracy={self.degeneracy!r}, gap_tol={self.gap_tol:g}, residual={self.residual}, "
                f"latent_frames={self.latent_frames!r}")

    def _frames(self, pts, batch, group, num_graphs, validate=True):
        return frames(pts, batch, group, num_graphs=num_graphs, degeneracy=self.degeneracy, gap_tol=self.gap_tol,
                      validate=validate)

    def forward(self, x, pos=None, batch=None, _legacy_batch=None, *, num_graphs=None, vel=None, edge_index=None):
        pos, vel, charges, batch = dynamics_arguments(x, pos, batch, _legacy_batch, vel)
        charges, batch = check_dynamics_inputs(pos, vel, charges, batch, validate=num_graphs is None)
        # sizes given (num_graphs and edge_index): the frames skip their value checks too, so nothing
        # is read on the host (the default graph would be built from a host read anyway)
        validate = num_graphs is None or edge_index is None
        num_graphs = int(batch.max()) + 1 if num_graphs is None else check_int("num_graphs", num_graphs, min=1)
        # the layers aggregate at edge_index[0]; a given PyG edge_index (sources, targets) is flipped
        edge_index = full_graph_edges(batch, num_graphs) if edge_index is None else edge_index.flip(0)
        row, col = edge_index
        edge_attr = torch.cat([charges[row] * charges[col],
                               (pos[row] - pos[col]).pow(2).sum(-1, keepdim=True)], -1)

        fr = self._frames(pos, batch, "E3", num_graphs, validate)
        centroid = fr.centroid[batch]  # (N, 3)
        rot = fr.rotations[batch]  # (N, F, 3, 3)
        inputs = _to_frames(torch.stack([pos - centroid, vel], 1), rot)  # (N, F, 2, 3)
        h = self.embedding(inputs.flatten(2))  # (N, F, H)
        k = self.hidden_channels // 3
        n = pos.shape[0]
        for i, layer in enumerate(self.layers):
            h = layer(h, edge_index, edge_attr)
            if i < len(self.layers) - 1:
                # latent vectors back to world coordinates, then into their own PCA frames
                latent = _from_frames(h.unflatten(-1, (k, 3)), rot)  # (N, K, 3), equivariant
                centered = self.latent_frames == "centered"
                fr_l = self._frames(latent.reshape(n * k, 3), batch.repeat_interleave(k),
                                    "E3" if centered else "O3", num_graphs, validate)
                rot = fr_l.rotations[batch]
                if centered:
                    latent = latent - fr_l.centroid[batch][:, None, :]
                h = _to_frames(latent, rot).flatten(2)
        out = _from_frames(self.decoder(h)[:, :, None, :], rot)[:, 0]
        return out + (pos if self.residual else centroid)
