"""FrameAveraging: any point backbone made invariant or equivariant by averaging it over PCA frames."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from geodl._checks import check_alloc, check_choice, check_int, check_number, check_tensor
from geodl.groups import Symmetry
from geodl.nn.frame_averaging._frames import (
    _IN_KINDS,
    _OUT_KINDS,
    _POLICIES,
    Frames,
    _expand_like,
    _frame_kind,
    _from_frame,
    _parse_group,
    _frames,
    _to_frame,
    _warn_detached,
)

__all__ = ["FrameAveraging"]

# per-edge inputs: "edge_index" (relabelled per frame copy) and invariant per-edge features
_EDGE_KINDS = ("edge_index", "edge:scalar")
_DEFAULT_INPUTS = {"pos": "points", "x": "scalar", "vel": "vectors", "edge_index": "edge_index",
                   "edge_attr": "edge:scalar"}


def _parse_inputs(inputs) -> tuple[tuple, dict]:
    """``(declared names, kinds)`` of an ``inputs=`` argument (None: the defaults, none declared);
    node kinds reduced to their base name, ``pos`` of kind ``points``."""
    declared = () if inputs is None else tuple(inputs)
    inputs = dict(_DEFAULT_INPUTS) if inputs is None else dict(inputs)
    for key, kind in inputs.items():
        if kind not in _EDGE_KINDS:
            inputs[key] = _frame_kind(f"inputs[{key!r}]", kind, _IN_KINDS)
    if inputs.get("pos", "points") != "points":
        raise ValueError(f"inputs: 'pos' must be of kind 'points', got {inputs['pos']!r}")
    inputs.setdefault("pos", "points")
    return declared, inputs


def _split_inputs(kinds: dict, x, extra: dict, check_rows=None) -> tuple[dict, dict]:
    """``(node inputs, edge inputs)`` of a forward call: every input must have a kind in ``kinds``
    and be a tensor; ``check_rows(key, value)`` (optional) is called on each node input in turn."""
    named = {"x": x, **extra} if x is not None else dict(extra)
    edges = {}
    for key, value in list(named.items()):
        if key not in kinds:
            raise ValueError(f"{key}: no kind declared for this input; add it to inputs= "
                             f"(one of {list(_IN_KINDS) + list(_EDGE_KINDS)})")
        check_tensor(key, value)
        if kinds[key] in _EDGE_KINDS:
            edges[key] = named.pop(key)
        elif check_rows is not None:
            check_rows(key, value)
    return named, edges


def _accepts_num_graphs(module) -> bool:
    """Whether ``module``'s forward takes a ``num_graphs`` keyword (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(module.forward if isinstance(module, nn.Module) else module).parameters
    except (TypeError, ValueError):
        return False
    return "num_graphs" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class FrameAveraging(nn.Module):
    """Make any point backbone invariant or equivariant by averaging it over PCA frames.

    The F frames are folded into the batch (graph ``b`` in frame ``f`` becomes graph
    ``b * F + f``; points are reordered so that a sorted ``batch`` stays sorted) and the backbone
    is called once (or once per chunk of ``chunk_size`` frames) with the backbone call protocol
    ``module(x, pos, batch, num_graphs=B * F, **extra)``: node-indexed inputs are expressed in
    every frame and repeated per frame copy, an ``edge_index`` is relabelled to each copy's nodes
    (so a PyG ``MessagePassing`` backbone sees F disjoint copies of the graph), per-edge features
    are repeated per copy. ``num_graphs`` is passed only when the backbone's ``forward`` takes it
    (by name or ``**kwargs``). Outputs are mapped back to world coordinates and averaged.

    Parameters
    ----------
    module : nn.Module
        Backbone following ``forward(x, pos, batch=None, *, num_graphs=None, **extra)`` with
        flat ``(N, ...)`` tensors, returning ``(num_graphs, ...)`` (``level="graph"``) or
        ``(N, ...)`` (``level="node"``).
    group : str or geodl.groups.Group
        "E3", "SE3", "O3", "SO3" or the 2-D groups "E2", "SE2", "O2", "SO2" (as in
        :func:`geodl.groups.get_group`; a ``"+perm"`` part is accepted).
    mode : str
        "full" (all F frames: exactly invariant for non-degenerate inputs), "stochastic"
        (``num_samples`` frames per sample drawn without replacement with ``generator``:
        invariant in expectation; with ``num_samples = F`` it equals "full") or "canonical"
        (frame 0 only: one backbone pass, but **not** invariant to the sign flips of the
        eigenvectors, so not invariant in general).
    inputs : dict
        Kind of each input, by argument name. Node kinds of :mod:`geodl.groups` (a ``"node:"``
        prefix is accepted): "points" (centred and rotated), "vectors", "pseudovectors",
        "tensor2" (rotated), "scalar" (passed through); and the edge kinds "edge_index"
        (``(2, E)`` node ids, relabelled per frame copy) and "edge:scalar" (``(E, ...)``
        invariant per-edge features, repeated per copy). ``pos`` must be "points". Default
        ``{"pos": "points", "x": "scalar", "vel": "vectors", "edge_index": "edge_index",
        "edge_attr": "edge:scalar"}``.
    output : str
        "invariant" (alias "scalar"), "vectors", "points" (centroid added back), "tensor2",
        "pseudovectors". Vector-like outputs have trailing dimension d (tensor2: (d, d)).
    level : str
        "graph" or "node".
    chunk_size : int, optional
        Frames per backbone call (caps memory at ``chunk_size / F`` of the full fold).
    differentiable, degeneracy, gap_tol, augment_samples
        Passed to :func:`~geodl.nn.frames`. The frames are global (one set per graph);
        per-segment or kNN frames are available from :func:`~geodl.nn.frames` and
        :meth:`Frames.to_canonical`. Under ``degeneracy="flag"`` the per-graph mask of degenerate
        frames is returned by ``forward(..., return_mask=True)`` as ``(output, degenerate)``
        (the module keeps no state from a call: a forward has no side effects).
    num_samples : int
        Frames per sample in stochastic mode.
    generator : torch.Generator, optional
        Seeds stochastic frame choice and ``degeneracy="augment"``.

    Attributes
    ----------
    symmetry : geodl.groups.Symmetry
        ``<group>+perm`` with the kinds of ``pos``, ``batch`` and the inputs named in ``inputs=``
        (none besides ``pos`` with the default ``inputs=None``: pass ``inputs=`` to declare the
        others) and the output kind (``"perm"`` only in the "stochastic" and "canonical" modes,
        which are not equivariant call by call). Equivariance also needs a
        permutation-equivariant backbone.

    Notes
    -----
    Host synchronisation: with flat input, ``num_graphs=`` given to ``forward`` and
    ``degeneracy`` "flag" or "augment", nothing reads a value back to the host (input values are
    then not validated; the backbone must be sync-free too, e.g. EGNN given ``edge_index``).

    ``torch.compile(fa, fullgraph=True)`` works (backends "aot_eager" and "inductor", outputs
    equal to eager) with flat input and ``num_graphs=`` given; under compile the value checks,
    the ``"warn"``/``"raise"`` read of the degeneracy mask and the ``differentiable`` warning are
    skipped (``return_mask=True`` still returns the mask).

    With ``differentiable=False`` and a ``pos`` that requires grad (under grad mode), a
    ``UserWarning`` naming ``differentiable=True`` is given: gradients with respect to ``pos``
    (forces) then miss the motion of the frames.

    Empty graphs: with ``num_graphs=`` given (and for dense input, a sample whose ``mask`` is all
    False), graphs without points are allowed; their frames are the identity (see
    :func:`~geodl.nn.frames`), so their output is the backbone's output on an empty graph
    (averaged over the sign patterns: zero for vector outputs). The folded inputs
    (points x frames per backbone call) are checked against the available memory before
    allocating (``ValueError`` naming ``pos``; ``chunk_size`` folds fewer frames at a time).

    Examples
    --------
    >>> import torch
    >>> from geodl.nn import FrameAveraging, PointNet
    >>> _ = torch.manual_seed(0)
    >>> net = FrameAveraging(PointNet(out_channels=2, hidden_channels=(8, 16)), group="E3").double()
    >>> pos = torch.randn(20, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> Q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    >>> torch.allclose(net(pos=pos), net(pos=pos @ Q.T + 1.0))
    True
    >>> out, degenerate = net(pos=pos, num_graphs=1, return_mask=True)
    >>> degenerate
    tensor([False])
    """

    def __init__(
        self,
        module: nn.Module,
        group="E3",
        mode: str = "full",
        inputs: dict | None = None,
        output: str = "invariant",
        level: str = "graph",
        chunk_size: int | None = None,
        differentiable: bool = False,
        degeneracy: str = "warn",
        *,
        gap_tol: float = 1e-4,
        augment_samples: int = 8,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if not callable(module):
            raise TypeError(f"module: expected a callable nn.Module, got {type(module).__name__}")
        self.module = module
        self.group, self.dim, _, _ = _parse_group(group)
        self.mode = check_choice("mode", mode, ("full", "stochastic", "canonical"))
        self._declared, self.inputs = _parse_inputs(inputs)  # _declared: what `symmetry` lists
        self.output = _frame_kind("output", output, _OUT_KINDS)
        self.level = check_choice("level", level, ("graph", "node"))
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, min=1)
        self.num_samples = check_int("num_samples", num_samples, min=1)
        self.differentiable = bool(differentiable)
        self.degeneracy = check_choice("degeneracy", degeneracy, _POLICIES)
        self.gap_tol = check_number("gap_tol", gap_tol, nonnegative=True)
        self.augment_samples = check_int("augment_samples", augment_samples, min=1)
        self.generator = generator
        self._pass_num_graphs = _accepts_num_graphs(module)

    @property
    def symmetry(self) -> Symmetry:
        exact = self.mode == "full"
        in_kinds = {"pos": "node:points", "batch": "batch"}
        for key, kind in self.inputs.items():
            if key != "pos" and key in self._declared:
                in_kinds[key] = {"edge_index": "edge_index", "edge:scalar": "scalar"}.get(kind, f"node:{kind}")
        out = "scalar" if self.output == "invariant" else self.output
        note = "exact for inputs with well-defined frames (see degeneracy=)" if exact else \
            f"mode={self.mode!r} is not equivariant call by call: only permutations are declared"
        return Symmetry(f"{self.group}+perm" if exact else "perm", in_kinds,
                        f"node:{out}" if self.level == "node" else out, batch_arg="batch", note=note)

    def extra_repr(self) -> str:
        return f"group={self.group}, mode={self.mode}, output={self.output}, level={self.level}"

    def _select(self, rot: torch.Tensor) -> torch.Tensor:
        if self.mode == "canonical":
            return rot[:, :1]
        if self.mode == "stochastic":
            B, F = rot.shape[:2]
            k = min(self.num_samples, F)
            order = torch.rand(B, F, generator=self.generator, device=rot.device).argsort(1)[:, :k]
            return rot.gather(1, order[:, :, None, None].expand(B, k, *rot.shape[2:]))
        return rot

    def forward(self, x=None, pos=None, batch=None, *, num_graphs=None, mask=None, return_mask=False, **extra):
        """Frame-averaged backbone output.

        Flat (PyG) input: ``pos`` (N, d), per-point ``x`` and the other node inputs (N, ...),
        ``batch`` (N,) or None, ``num_graphs`` (the number of graphs B, optional: avoids the host
        syncs), ``edge_index`` (2, E) and per-edge inputs (E, ...) if declared; returns (B, ...)
        for ``level="graph"``, (N, ...) for ``level="node"``. Dense input: ``pos`` (B, N, d),
        inputs (B, N, ...), optional boolean ``mask`` (B, N) of real points; the backbone is
        then called as ``module(x, pos, mask, **extra)`` on (B*F, N, ...) tensors (``mask``
        None when not given; padded entries are zero) and node outputs come back as (B, N, ...)
        with zeros at padding. With ``return_mask=True`` returns ``(output, degenerate)``, the
        (B,) mask of degenerate frames.
        """
        if pos is None:
            raise ValueError("pos: required (N, d) or (B, N, d) positions")
        check_tensor("pos", pos, ndim=(2, 3), floating=True)

        def check_rows(key, value):
            if value.shape[: pos.dim() - 1] != pos.shape[:-1]:
                raise ValueError(f"{key}: expected leading shape {tuple(pos.shape[:-1])} matching pos, got {tuple(value.shape)}")

        named, edges = _split_inputs(self.inputs, x, extra, check_rows)
        dense = None
        if pos.dim() == 3:
            if batch is not None:
                raise ValueError("batch: must be None for dense (B, N, d) input (use mask=)")
            if edges:
                raise ValueError(f"{next(iter(edges))}: edge inputs need flat (N, d) input with batch=")
            B, N = pos.shape[:2]
            if mask is not None:
                check_tensor("mask", mask, shape=(B, N), dtypes=(torch.bool,))
            valid = (torch.ones(B * N, dtype=torch.bool, device=pos.device) if mask is None else mask.reshape(-1)).nonzero().flatten()
            batch = torch.div(valid, N, rounding_mode="floor")
            pos = pos.reshape(B * N, -1)[valid]
            named = {key: v.reshape(B * N, *v.shape[2:])[valid] for key, v in named.items()}
            dense = (B, N, valid, mask)
            num_graphs, validate = B, True
        else:
            if mask is not None:
                raise ValueError("mask: only for dense (B, N, d) input; flat input uses batch=")
            validate = num_graphs is None
            self._check_edges(edges, pos.shape[0])
        if not self.differentiable and not torch.compiler.is_compiling():
            _warn_detached(pos, stacklevel=4)  # -> the caller of the module
        # graphs with no points are allowed when the caller gives their number (dense input included)
        allow_empty = num_graphs is not None
        fr = _frames(
            pos,
            batch,
            _parse_group(self.group),
            num_graphs=num_graphs,
            kind="global",
            segment=None,
            k=2,
            degeneracy=self.degeneracy,
            gap_tol=self.gap_tol,
            differentiable=self.differentiable,
            generator=self.generator,
            augment_samples=self.augment_samples,
            validate=validate,
            allow_empty=allow_empty,
        )
        rot = self._select(fr.rotations)
        F = rot.shape[1]
        step = F if self.chunk_size is None else self.chunk_size
        total = None
        for f0 in range(0, F, step):
            part = self._run(fr, rot[:, f0 : f0 + step], pos, named, edges, dense).sum(1)
            total = part if total is None else total + part
        out = total / F
        if dense is not None and self.level == "node":
            B, N, valid, _ = dense
            out = out.new_zeros(B * N, *out.shape[1:]).index_copy(0, valid, out).reshape(B, N, *out.shape[1:])
        return (out, fr.degenerate) if return_mask else out

    def _check_edges(self, edges: dict, n: int) -> None:
        for key, value in edges.items():
            if self.inputs[key] == "edge_index":
                check_tensor(key, value, shape=(2, None), dtypes=(torch.int64, torch.int32))
        counts = {v.shape[1] if self.inputs[k] == "edge_index" else v.shape[0] for k, v in edges.items() if v.dim()}
        if len(counts) > 1:
            raise ValueError(f"{', '.join(edges)}: edge inputs disagree on the number of edges ({sorted(counts)})")

    def _run(self, fr: Frames, rot: torch.Tensor, pos, named, edges, dense) -> torch.Tensor:
        """Backbone on the frames ``rot`` (B, Fc, d, d) folded into the batch -> (rows, Fc, ...)."""
        B, Fc = rot.shape[:2]
        index, n = fr.index, pos.shape[0]
        # the inputs in every frame (n * Fc rows) and their folded copy, checked before allocating
        width = sum(max(v[:1].numel(), 1) for v in named.values()) + pos.shape[-1] + rot.shape[-1] ** 2
        check_alloc("pos", f"{n} points in {Fc} frames per backbone call (chunk_size= folds fewer at a time)",
                    n * Fc, 2 * width, pos.dtype, pos.device)
        R = rot[index]  # (N, Fc, d, d)
        c = fr.centroid[index]
        canon = {"pos": _to_frame(pos - c, R, "points")}
        for key, value in named.items():
            kind = self.inputs[key]
            canon[key] = _to_frame(value - _expand_like(c, value) if kind == "points" else value, R, kind)
        if dense is None:
            # graph b in frame f -> b * Fc + f; points sorted by that id (stable: a sorted batch stays sorted)
            ids = (index[None, :] * Fc + torch.arange(Fc, device=pos.device)[:, None]).reshape(-1)
            perm = torch.argsort(ids, stable=True)
            folded = {key: t.transpose(0, 1).reshape(Fc * n, *t.shape[2:])[perm] for key, t in canon.items()}
            third = ids[perm]
            if edges:
                # node i of frame copy f sits at position inv[f * n + i] of the folded batch
                inv = torch.empty_like(perm).scatter_(0, perm, torch.arange(perm.shape[0], device=perm.device))
                offset = (torch.arange(Fc, device=pos.device) * n)[:, None, None]
                for key, value in edges.items():
                    if self.inputs[key] == "edge_index":
                        folded[key] = inv[offset + value.long()[None]].transpose(0, 1).reshape(2, -1)
                    else:
                        folded[key] = value.unsqueeze(0).expand(Fc, *value.shape).reshape(-1, *value.shape[1:])
        else:
            N, valid, mask = dense[1:]
            folded = {}
            for key, t in canon.items():
                full = t.new_zeros(B * N, *t.shape[1:]).index_copy(0, valid, t)
                folded[key] = full.reshape(B, N, *t.shape[1:]).transpose(1, 2).reshape(B * Fc, N, *t.shape[2:])
            third = None if mask is None else mask[:, None].expand(B, Fc, N).reshape(B * Fc, N)
        xf = folded.pop("x", None)
        if self._pass_num_graphs and dense is None:
            folded["num_graphs"] = B * Fc
        out = self.module(xf, folded.pop("pos"), third, **folded)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"module: expected a Tensor output, got {type(out).__name__}")
        if self.level == "graph":
            if out.shape[0] != B * Fc:
                raise ValueError(f"module: expected {B * Fc} per-graph output rows (level='graph'), got {tuple(out.shape)}")
            y = out.reshape(B, Fc, *out.shape[1:])
            Rg, cg = rot, fr.centroid
        else:
            if dense is None:
                if out.shape[0] != Fc * n:
                    raise ValueError(f"module: expected {Fc * n} per-node output rows (level='node'), got {tuple(out.shape)}")
                y = torch.empty_like(out).index_copy(0, perm, out)
                y = y.reshape(Fc, n, *out.shape[1:]).transpose(0, 1)
            else:
                if out.shape[:2] != (B * Fc, N):
                    raise ValueError(f"module: expected per-node output of shape ({B * Fc}, {N}, ...), got {tuple(out.shape)}")
                y = out.reshape(B, Fc, N, *out.shape[2:]).transpose(1, 2).reshape(B * N, Fc, *out.shape[2:])[valid]
            Rg, cg = R, c
        self._check_output(y)
        return _from_frame(y, Rg, cg, self.output)

    def _check_output(self, y: torch.Tensor) -> None:
        d = self.dim
        if self.output == "tensor2":
            if y.dim() < 4 or y.shape[-2:] != (d, d):
                raise ValueError(f"output: 'tensor2' needs module outputs ending in ({d}, {d}), got {tuple(y.shape[2:])}")
        elif self.output not in ("invariant", "scalar") and (y.dim() < 3 or y.shape[-1] != d):
            raise ValueError(f"output: {self.output!r} needs module outputs ending in {d}, got {tuple(y.shape[2:])}")
