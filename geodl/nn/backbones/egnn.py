"""EGNN (Satorras, Hoogeboom & Welling, ICML 2021), the velocity variant used for n-body dynamics."""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_choice, check_int
from geodl.nn._layers import ACTIVATIONS, check_linear_sizes
from geodl.nn.backbones._common import (
    DYNAMICS_SYMMETRY,
    check_dynamics_inputs,
    dynamics_arguments,
    full_graph_edges,
)
from geodl.nn.backbones.egnn_conv import EGNNConv, _layer_shapes

__all__ = ["EGNN"]


class EGNN(nn.Module):
    """EGNN with velocity inputs for n-body dynamics: predicts positions, E(3)- and perm-equivariant.

    Nodes start from the invariant feature ``|v|``; edges carry ``q_i q_j`` (and the squared
    distance, inside each layer). A stack of :class:`~geodl.nn.EGNNConv` layers (velocity
    variant, mean coordinate aggregation) updates invariant node features and positions; the
    returned positions are those after the last layer.

    Parameters
    ----------
    hidden_channels : int
        Width of the node features and of the messages (64 in the EGNN paper).
    num_layers : int
        Message-passing layers (4 in the paper).
    act : str
        "silu" (paper), "relu", "tanh" or "gelu".
    input_distance : bool
        Also feed each pair's squared distance of the *input* positions ``|x_i − x_j|²`` as a fixed
        edge feature (edges carry ``(q_i q_j, |x_i − x_j|²)``), as the reference n-body script of the
        EGNN repository does (``in_edge_nf=2``); invariant, so the symmetry is unchanged. Default
        ``False`` (charges only; every layer still sees its own current squared distance).

    Forward
    -------
    Backbone protocol ``forward(x, pos, batch=None, *, num_graphs=None, vel, edge_index=None)``:
    ``x`` the charges (N,) or (N, 1), ``pos`` and ``vel`` (N, 3), ``batch`` (N,) graph ids.
    ``edge_index`` (2, E) defaults to the fully connected graph within each graph (built from
    ``batch``, a host sync); with ``num_graphs`` and ``edge_index`` given, input values are not
    validated and nothing syncs. Returns positions (N, 3). The positional form
    ``forward(pos, vel, charges, batch=None)`` is accepted as well. Empty inputs are normal: no
    nodes (N = 0) give ``(0, 3)``, a graph without edges moves by its velocity term only, and
    graph ids may skip values (empty graphs); a single node is refused (``ValueError``).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import EGNN
    >>> _ = torch.manual_seed(0)
    >>> net = EGNN(hidden_channels=16, num_layers=2)
    >>> pos, vel, q = torch.randn(10, 3), torch.randn(10, 3), torch.ones(10, 1)
    >>> batch = torch.arange(2).repeat_interleave(5)
    >>> net(q, pos, batch, vel=vel).shape
    torch.Size([10, 3])
    >>> torch.equal(net(pos, vel, q, batch), net(q, pos, batch, vel=vel))
    True
    """

    symmetry = DYNAMICS_SYMMETRY

    def __init__(self, hidden_channels: int = 64, num_layers: int = 4, *, act: str = "silu",
                 input_distance: bool = False):
        super().__init__()
        hidden_channels = check_int("hidden_channels", hidden_channels, min=1)
        num_layers = check_int("num_layers", num_layers, min=1)
        check_choice("act", act, tuple(ACTIVATIONS))
        if not isinstance(input_distance, bool):
            raise TypeError(f"input_distance: expected a bool, got {type(input_distance).__name__}")
        self.input_distance = input_distance
        edge_dim = 2 if input_distance else 1
        check_linear_sizes("hidden_channels, num_layers", f"{hidden_channels}, {num_layers}",
                           _layer_shapes(hidden_channels, edge_dim), repeat=num_layers)
        self.embedding = nn.Linear(1, hidden_channels)
        # the last layer's feature update would feed nothing, so it is left out
        self.layers = nn.ModuleList(
            EGNNConv(hidden_channels, edge_dim, act=act, update_features=i < num_layers - 1, velocity=True)
            for i in range(num_layers))

    def forward(self, x, pos=None, batch=None, _legacy_batch=None, *, num_graphs=None, vel=None, edge_index=None):
        pos, vel, charges, batch = dynamics_arguments(x, pos, batch, _legacy_batch, vel)
        validate = num_graphs is None or edge_index is None
        charges, batch = check_dynamics_inputs(pos, vel, charges, batch, validate=validate, allow_empty=True)
        if edge_index is None:
            # aggregate at edge_index[0] as the original layer did (same summation order, same numbers)
            edge_index = full_graph_edges(batch).flip(0)
        src, dst = edge_index
        edge_attr = charges[dst] * charges[src]
        if self.input_distance:
            edge_attr = torch.cat([edge_attr, (pos[dst] - pos[src]).pow(2).sum(-1, keepdim=True)], -1)
        h = self.embedding(vel.norm(dim=-1, keepdim=True))
        for layer in self.layers:
            h, pos = layer(h, pos, edge_index, edge_attr, vel=vel)
        return pos
