"""Helpers shared by the backbones: full graphs, input checks, call forms (n-body models: EGNN and
FA-GNN; point clouds: PointNet and DGCNN)."""

from __future__ import annotations

import math

import torch

from geodl._checks import check_alloc, check_int, check_tensor
from geodl.groups import Symmetry
from geodl.ops import scatter

__all__ = ["full_graph_edges", "check_dynamics_inputs", "dynamics_arguments", "DYNAMICS_SYMMETRY",
           "point_cloud_inputs", "pool_graphs", "point_cloud_symmetry"]

# n-body models (EGNN, FA-GNN): charges, positions, velocities, batch -> positions
DYNAMICS_SYMMETRY = Symmetry(
    "E3+perm",
    {"x": "node:scalar", "pos": "node:points", "batch": "batch", "vel": "node:vectors",
     "edge_index": "edge_index"},
    "node:points",
    batch_arg="batch",
)


def full_graph_edges(batch: torch.Tensor, num_graphs: int | None = None) -> torch.Tensor:
    """Directed edges (2, E) between every ordered pair of distinct nodes of the same graph.

    ``batch`` need not be sorted. Graphs of equal size take a vectorised path; otherwise a dense
    (N, N) mask is used (fine for the small systems these models are meant for). Reads the graph
    sizes (a host sync on CUDA). ``batch`` is a 1-D integer tensor of non-negative ids and
    ``num_graphs`` (optional) an int larger than every id; no nodes give ``(2, 0)``. The edges (and
    the mask) are checked against the memory available first (``ValueError`` naming ``batch``).

    Examples
    --------
    >>> full_graph_edges(torch.tensor([0, 0, 1, 1]))
    tensor([[0, 1, 2, 3],
            [1, 0, 3, 2]])
    """
    check_tensor("batch", batch, ndim=1, dtypes=(torch.int64, torch.int32))
    if num_graphs is not None:
        num_graphs = check_int("num_graphs", num_graphs, min=0)
    n = batch.shape[0]
    if n:
        lo, hi = (int(v) for v in torch.aminmax(batch))
        if lo < 0:
            raise ValueError(f"batch: expected non-negative graph ids, got {lo}")
        if num_graphs is not None and hi >= num_graphs:
            raise ValueError(f"num_graphs: {num_graphs} is not larger than the largest graph id in batch ({hi})")
        check_alloc("batch", f"(largest graph id {hi})", hi + 1, 1, torch.int64, batch.device)  # the graph sizes
    batch = batch.long()
    counts = torch.bincount(batch, minlength=num_graphs or 0)
    counts = counts[counts > 0]
    edges = int((counts * (counts - 1)).sum())
    check_alloc("batch", f"({n} nodes)", edges, 2, torch.int64, batch.device,
                elem_bytes=8)  # the edges and their index pairs
    size = int(counts[0]) if counts.numel() else 0
    if counts.numel() and bool((counts == size).all()):
        order = torch.argsort(batch, stable=True).view(-1, size)  # (B, size) node ids per graph
        i, j = torch.meshgrid(torch.arange(size, device=batch.device),
                              torch.arange(size, device=batch.device), indexing="ij")
        keep = i != j
        return torch.stack([order[:, i[keep]].flatten(), order[:, j[keep]].flatten()])
    check_alloc("batch", f"({n} nodes of graphs of unequal sizes)", n, n, torch.bool, batch.device,
                elem_bytes=2)  # the dense mask and its temporaries
    same = (batch[:, None] == batch[None, :]) & ~torch.eye(n, dtype=torch.bool, device=batch.device)
    return same.nonzero().T


def check_dynamics_inputs(pos, vel, charges, batch, *, validate: bool = True, allow_empty: bool = False):
    """Validate (pos, vel, charges, batch) of the n-body models; return (charges (N, 1), batch).

    ``charges`` must have shape ``(N,)`` or ``(N, 1)``; any other shape (``(1, N)``, ``(N/2, 2)``,
    ...) is refused rather than reshaped. A single node is refused (``ValueError`` naming ``pos``);
    with ``allow_empty=True`` zero nodes (no systems at all) are accepted, otherwise refused too.

    ``validate=False`` keeps the shape and dtype checks and skips those that read values (finite
    numbers, non-negative ids, at least 2 nodes per graph): no host sync.
    """
    validate = validate and not torch.compiler.is_compiling()  # value checks would break the graph
    check_tensor("pos", pos, ndim=2, floating=True, finite=validate)
    if pos.shape[1] != 3:
        raise ValueError(f"pos: expected shape (N, 3), got {tuple(pos.shape)}")
    n = pos.shape[0]
    if n < 2 and not (allow_empty and n == 0):
        raise ValueError(f"pos: expected at least 2 nodes{' (or none)' if allow_empty else ''}, got {n}")
    check_tensor("vel", vel, shape=(n, 3), floating=True, finite=validate)
    if isinstance(charges, torch.Tensor) and tuple(charges.shape) not in ((n,), (n, 1)):
        raise ValueError(f"charges: expected shape ({n},) or ({n}, 1) matching pos, got {tuple(charges.shape)}")
    check_tensor("charges", charges, floating=True, finite=validate)
    charges = charges.reshape(n, 1)
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
    else:
        check_tensor("batch", batch, shape=(n,), dtypes=(torch.int64, torch.int32))
        batch = batch.long()
        if validate and n:
            lo, hi = (int(v) for v in torch.aminmax(batch))
            if lo < 0:
                raise ValueError("batch: expected non-negative graph ids")
            check_alloc("batch", f"(largest graph id {hi})", hi + 1, 1, torch.int64, batch.device)  # graph sizes
        if validate and bool((torch.bincount(batch) == 1).any()):
            raise ValueError("batch: every graph needs at least 2 nodes")
    return charges, batch


def dynamics_arguments(x, pos, batch, legacy_batch, vel):
    """``(pos, vel, charges, batch)`` from either call form of the n-body models.

    Protocol form ``forward(x, pos, batch=None, *, vel=...)`` with ``x`` the charges; the earlier
    positional form ``forward(pos, vel, charges, batch=None)`` is recognised by ``vel`` not being
    given and the third argument being a floating-point tensor (a ``batch`` is integer).
    """
    if vel is None:
        if isinstance(batch, torch.Tensor) and batch.is_floating_point():
            return x, pos, batch, legacy_batch
        raise TypeError("vel: required keyword argument (forward(x=charges, pos, batch, vel=velocities))")
    if legacy_batch is not None:
        raise TypeError("forward: takes (x, pos, batch) positionally, with vel= as a keyword; got a fourth argument")
    if x is None:
        raise TypeError("x: required, the charges (N,) or (N, 1)")
    return pos, vel, x, batch


def point_cloud_symmetry(in_channels: int, level: str, note: str) -> Symmetry:
    """The declaration of the point-cloud backbones (PointNet, DGCNN): ``perm``, ``pos`` points,
    ``x`` scalars (when ``in_channels``), per-point (``level="node"``) or per-graph scalars out."""
    in_kinds = {"pos": "node:points", "batch": "batch"}
    if in_channels:
        in_kinds["x"] = "node:scalar"
    return Symmetry("perm", in_kinds, "node:scalar" if level == "node" else "scalar", batch_arg="batch", note=note)


def point_cloud_inputs(x, pos, batch, num_graphs, extra, *, pos_channels: int, in_channels: int,
                       pool_width: int, finite: bool = False):
    """Validate the point-cloud backbone inputs (PointNet, DGCNN); return ``(h, batch, num_graphs)``.

    ``h`` (N, pos_channels + in_channels) is ``[pos, x, *extra]`` concatenated (each extra tensor
    flattened to (N, -1), in ``pos``'s dtype); ``batch`` defaults to one graph. Without
    ``num_graphs`` it is read from ``batch`` (a host sync) and the pooled ``(num_graphs,
    pool_width)`` rows are checked against memory; given, nothing is read back. ``finite`` also
    checks that the values are finite (a host sync; ``ValueError`` naming the tensor).
    """
    check_tensor("pos", pos, ndim=2, floating=True, finite=finite)
    if pos.shape[1] != pos_channels:
        raise ValueError(f"pos: expected shape (N, {pos_channels}), got {tuple(pos.shape)}")
    n = pos.shape[0]
    feats = [pos] + ([] if x is None else [x]) + list(extra.values())
    for name, t in zip(["pos", "x", *extra] if x is not None else ["pos", *extra], feats):
        check_tensor(name, t, finite=finite and name != "pos" and isinstance(t, torch.Tensor) and t.is_floating_point())
        if t.shape[0] != n:
            raise ValueError(f"{name}: expected {n} rows matching pos, got shape {tuple(t.shape)}")
    h = torch.cat([t.reshape(n, math.prod(t.shape[1:])).to(pos.dtype) for t in feats], 1)  # also for N = 0
    if h.shape[1] != pos_channels + in_channels:
        raise ValueError(
            f"x: expected {in_channels} feature channels in x and extra inputs together, "
            f"got {h.shape[1] - pos_channels}"
        )
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
        num_graphs = 1 if n else 0
    else:
        check_tensor("batch", batch, shape=(n,), dtypes=(torch.int64, torch.int32))
        if num_graphs is None:
            lo, hi = (int(v) for v in torch.aminmax(batch)) if n else (0, -1)
            if lo < 0:
                raise ValueError(f"batch: expected non-negative graph ids, got {lo}")
            num_graphs = hi + 1
            check_alloc("batch", f"(largest graph id {hi})", num_graphs, pool_width, pos.dtype, pos.device)
        else:
            num_graphs = check_int("num_graphs", num_graphs, min=0)
    return h, batch, num_graphs


def pool_graphs(h, batch, num_graphs, reduce):
    """``geodl.ops.scatter`` of the point features into ``num_graphs`` rows; its errors about
    ``index`` / ``dim_size`` are renamed ``batch`` / ``num_graphs`` (the caller's arguments)."""
    try:
        return scatter(h, batch, dim=0, dim_size=num_graphs, reduce=reduce)
    except ValueError as exc:  # scatter names its own arguments: here they are batch and num_graphs
        msg = str(exc)
        for theirs, ours in (("index: ", "batch: "), ("dim_size: ", "num_graphs: ")):
            if msg.startswith(theirs):
                raise ValueError(ours + msg[len(theirs):]) from exc
        raise
