"""The equivariance harness: compare ``fn(g·x)`` with ``g·fn(x)`` over random and structured elements.

Group actions come from the kind registry of :mod:`geodl.groups` (``act``, ``parse_kind``), and
are applied in float64: inputs are cast to float64, transformed, and cast back to the dtype ``fn``
runs in; outputs are compared in float64. Integer kinds (``edge_index``, ``batch``, ``parts``) are
never cast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch

from geodl._checks import check_finite, check_index, check_int, check_number, check_tensor
from geodl.groups._kinds import _check_kinds

from ._report import EquivarianceReport, EquivarianceRow
from ._state import preserved

__all__ = ["equivariance_error", "assert_invariant", "assert_equivariant", "default_rtol", "atol_floor"]

# Relative tolerances by the dtype fn runs in: a few hundred to a thousand ulps of accumulated
# rounding for float64/float32; half precisions already lose ~eps on the transformed input itself.
_RTOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
_TINY = torch.finfo(torch.float64).tiny
# The default absolute tolerance is a floor of rounding noise, so that an output that is zero by
# symmetry (a net force, a pseudoscalar of a symmetric cloud) does not fail on 1e-16:
# c · eps(dtype) · max(|output|, |input|, 1) · sqrt(numel), never more than rtol · max(|output|, |input|, 1).
_FLOOR_C = 16.0
_ALL_SCALAR = object()  # out_kinds sentinel used by assert_invariant: every output is a scalar


def default_rtol(dtype: torch.dtype) -> float:
    """Relative tolerance of the harness for a function running in ``dtype``.

    Examples
    --------
    >>> import torch
    >>> from geodl.testing import default_rtol
    >>> default_rtol(torch.float64), default_rtol(torch.float32)
    (1e-10, 0.0001)
    """
    if dtype not in _RTOL:
        raise ValueError(f"dtype: expected one of {[str(d) for d in _RTOL]}, got {dtype}")
    return _RTOL[dtype]


def atol_floor(dtype: torch.dtype, numel: int, scale: float, rtol: float | None = None) -> float:
    """The default absolute tolerance: the rounding noise of ``numel`` values of magnitude ``scale``.

    ``16 · eps(dtype) · max(scale, 1) · sqrt(numel)``, at most ``rtol · max(scale, 1)`` (``rtol``
    defaults to :func:`default_rtol`), where ``scale`` is the larger of the output's and the
    (transformed) input's largest absolute value. An output that is zero by symmetry then passes on
    rounding noise, while any genuine symmetry error (far above eps) still fails.

    Examples
    --------
    >>> import torch
    >>> from geodl.testing import atol_floor
    >>> f64 = atol_floor(torch.float64, 30, 2.0)
    >>> 1e-14 < f64 < 1e-12
    True
    >>> atol_floor(torch.bfloat16, 30, 2.0) == 2.0 * 5e-2  # capped at rtol · scale
    True
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    numel = check_int("numel", numel, min=0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale: expected a non-negative number, got {type(scale).__name__}")
    if not scale >= 0:
        raise ValueError(f"scale: expected a non-negative number, got {scale!r}")
    rtol = default_rtol(dtype) if rtol is None else check_number("rtol", rtol, nonnegative=True)
    s = max(float(scale), 1.0) if math.isfinite(scale) else 1.0
    return min(_FLOOR_C * torch.finfo(dtype).eps * s * math.sqrt(max(numel, 1)), rtol * s)


def _scale_of(xs) -> float:
    """The largest absolute value of the floating tensors ``xs`` (finite entries only)."""
    out = 0.0
    for x in xs:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel():
            out = max(out, float(x.detach().abs().nan_to_num(0.0, 0.0, 0.0).max()))
    return out


def _structure(arg: str, value, kinds_arg: str, kinds, what: str):
    """Flatten a tensor / tuple / dict and its kinds into ``[(key, name, tensor, kind)]`` and a mode."""
    if kinds is _ALL_SCALAR:
        kinds = ({k: "scalar" for k in value} if isinstance(value, Mapping) else
                 ["scalar"] * len(value) if isinstance(value, (tuple, list)) else "scalar")
    if isinstance(value, torch.Tensor):
        if not isinstance(kinds, str):
            raise TypeError(f"{kinds_arg}: {what} is a single tensor, so expected one kind string, "
                            f"got {type(kinds).__name__}")
        return [(None, f"{arg}", value, kinds)], "single"
    if isinstance(value, Mapping):
        if not isinstance(kinds, Mapping):
            raise TypeError(f"{kinds_arg}: {what} is a dict, so expected a dict of kind strings with the "
                            f"same keys, got {type(kinds).__name__}")
        if set(kinds) != set(value):
            raise ValueError(f"{kinds_arg}: keys {sorted(map(str, kinds))} do not match the keys of "
                             f"{what} {sorted(map(str, value))}")
        return [(k, f"{arg}[{k!r}]", value[k], kinds[k]) for k in value], "dict"
    if isinstance(value, (tuple, list)):
        if isinstance(kinds, (str, Mapping)) or not isinstance(kinds, (tuple, list)):
            raise TypeError(f"{kinds_arg}: {what} is a sequence of {len(value)}, so expected a tuple or "
                            f"list of {len(value)} kind strings, got {type(kinds).__name__}")
        if len(kinds) != len(value):
            raise ValueError(f"{kinds_arg}: {len(kinds)} kinds given for {len(value)} {what}")
        return [(i, f"{arg}[{i}]", v, k) for i, (v, k) in enumerate(zip(value, kinds))], "tuple"
    raise TypeError(f"{arg}: expected a tensor, a tuple/list or a dict of tensors, got {type(value).__name__}")


def _call(fn, entries, mode, values):
    if mode == "dict":
        return fn(**{key: v for (key, *_), v in zip(entries, values)})
    return fn(*values)


def _act(kind, g, x, name):
    from geodl.groups import act

    try:
        return act(kind, g, x)
    except (ValueError, TypeError, IndexError, RuntimeError) as exc:
        err = type(exc) if isinstance(exc, (ValueError, TypeError)) else ValueError
        raise err(f"{name}: a tensor of shape {tuple(x.shape)} and dtype {x.dtype} does not fit kind "
                  f"{kind!r}: {exc}") from None


def _run_dtype(entries, dtype):
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        default_rtol(dtype)
        return dtype
    floats = [x.dtype for _, _, x, _ in entries if x.is_floating_point()]
    if not floats:
        return torch.get_default_dtype()
    return max(floats, key=lambda d: torch.finfo(d).eps)  # the least precise input sets the tolerance


def _n_nodes(entries):
    from geodl.groups import parse_kind

    n_nodes, first = None, None
    for _, name, x, kind in entries:
        if parse_kind(kind).node:
            if x.dim() == 0:
                raise ValueError(f"{name}: kind {kind!r} needs nodes along dim 0, got a 0-d tensor")
            if n_nodes is not None and x.shape[0] != n_nodes:
                raise ValueError(f"{name}: {x.shape[0]} nodes along dim 0, but {first} has {n_nodes}")
            n_nodes, first = x.shape[0], name
    for _, name, x, kind in entries:
        if parse_kind(kind).base == "edge_index":
            check_tensor(name, x, shape=(2, None))
            check_index(name, x, n_nodes)
    return n_nodes


def _labels(entries, group):
    """The part labels of a piecewise group (from the input of kind ``parts``), else None."""
    from geodl.groups import parse_kind

    found = [(name, x) for _, name, x, kind in entries if parse_kind(kind).base == "parts"]
    if not getattr(group, "has_parts", False):
        return None
    if not found:
        raise ValueError(f"in_kinds: group {group.name!r} acts per part, but no input has kind 'parts' "
                         "(an integer part id per node)")
    name, labels = found[0]
    check_index(name, labels)
    if labels.dim() != 1:
        raise ValueError(f"{name}: kind 'parts' expects a 1-d tensor of part ids, got shape {tuple(labels.shape)}")
    return labels.cpu().to(torch.int64)


def _resolve_group(group, kinds):
    """``get_group``; a bare ``"equirect"``/``"azimuth"`` part takes its bin count W from the first
    of ``kinds`` (input kinds) that is ``equirect:<H>x<W>``."""
    from geodl.groups import get_group, parse_kind

    if isinstance(group, str):
        parts = [p.strip() for p in group.split("+")]
        if any(p.lower() in ("equirect", "azimuth") for p in parts):
            sizes = [parse_kind(kind).param for kind in kinds if parse_kind(kind).base == "equirect"]
            if not sizes:
                raise ValueError(f"group: {group!r} takes the number of azimuth bins from an input of kind "
                                 "'equirect:<H>x<W>'; none was given (or name it, e.g. 'equirect:64')")
            W = sizes[0][1]
            group = "+".join(f"{p.lower()}:{W}" if p.lower() in ("equirect", "azimuth") else p for p in parts)
    return get_group(group)


def _elements(group, n_samples, structured, generator, n_nodes, device, labels=None):
    generator = _generator(generator)
    check_int("n_samples", n_samples, min=0)
    kw = {"n_nodes": n_nodes} if group.has_permutations else {}
    if labels is not None:
        kw["labels"] = labels
    # Elements are drawn on the CPU (a CPU generator cannot draw on CUDA), then moved.
    elems = list(group.structured(dtype=torch.float64, generator=generator, **kw)) if structured else []
    elems += [group.sample(generator=generator, dtype=torch.float64, **kw) for _ in range(n_samples)]
    if not elems:
        raise ValueError("n_samples: no group elements to test (n_samples=0 and structured=False)")
    return [g.to(torch.float64, device) for g in elems]


def _compare(got, ref, expected):
    """``(absolute error, scale, issue, message)`` between an output for g·x and g applied to the
    output for x; issue is ``"shape"`` or ``"nan"`` when the error is infinite."""
    if got.shape != expected.shape:
        return float("inf"), 0.0, "shape", (f"the output for g·x has shape {tuple(got.shape)}, g·fn(x) has "
                                            f"{tuple(expected.shape)}")
    got, ref = got.detach().to(torch.float64), ref.to(torch.float64)
    if got.numel() == 0:
        return 0.0, 0.0, "", ""
    if not bool(torch.isfinite(ref).all()):
        return float("inf"), 0.0, "nan", f"fn(x) itself holds {int((~torch.isfinite(ref)).sum())} NaN/inf values"
    if not bool(torch.isfinite(got).all() & torch.isfinite(expected).all()):
        where = "fn(g·x)" if not bool(torch.isfinite(got).all()) else "g·fn(x)"
        bad = int((~torch.isfinite(got if where == "fn(g·x)" else expected)).sum())
        return float("inf"), 0.0, "nan", f"{where} holds {bad} NaN/inf values (fn(x) is finite)"
    abs_err = float((got - expected).abs().max())
    scale = max(float(ref.abs().max()), float(expected.abs().max()))
    return abs_err, scale, "", ""


def equivariance_error(fn, inputs, in_kinds, out_kinds, group, *, n_samples: int = 4, structured: bool = True,
                       generator=None, dtype: torch.dtype | None = None, atol: float | None = None,
                       rtol: float | None = None, per_graph: bool = False) -> EquivarianceReport:
    """Measure how far ``fn`` is from equivariance under ``group``.

    For every tested group element ``g`` (``n_samples`` random Haar elements plus, with
    ``structured=True``, the group's structured elements: identity, reflections, translations,
    permutations, finite-group elements, scalings, and the rotation part of each random element
    alone), compare ``fn(g·inputs)`` with ``g·fn(inputs)``. Transforms are applied in float64; each
    transformed input is cast back to the dtype ``fn`` runs in.

    With an input of kind ``batch`` (a graph id per node), permutations stay within each graph (a
    sorted batch vector stays sorted, and equal). With ``per_graph=True``, elements that move each
    graph by its own element (``"per_graph"`` rows) catch information leaking between graphs.

    An ``nn.Module`` ``fn`` runs in eval mode; its training flags, parameters and their ``.grad``,
    buffers and tensor attributes and torch's CPU/CUDA RNG states are restored afterwards.

    Parameters
    ----------
    fn : callable or torch.nn.Module
        Called as ``fn(*inputs)`` (tuple) or ``fn(**inputs)`` (dict); returns a tensor, a tuple of
        tensors or a dict of tensors.
    inputs : Tensor, tuple of Tensor or dict of str to Tensor
        Example inputs; floating ones must be finite. Nodes (for ``node:`` kinds) lie along dim 0.
    in_kinds : str, tuple of str or dict of str to str
        How the group acts on each input (see :func:`geodl.groups.parse_kind`), same structure as
        ``inputs``: e.g. ``("node:points", "edge_index")``.
    out_kinds : str, tuple of str or dict of str to str
        How the group acts on each output: one string for a single output tensor, otherwise the
        output's structure.
    group : str or geodl.groups.Group
        E.g. ``"SO3"``, ``"O3"``, ``"E3+perm"``, ``"icosahedral"``, ``"D4"``, ``"equirect:64"`` (or
        ``"equirect"``: the bin count is taken from the first ``equirect:<H>x<W>`` input), ``"E3^parts"``
        (the part labels are the input of kind ``parts``).
    n_samples : int
        Number of random (Haar) elements.
    structured : bool
        Also test the group's structured elements.
    generator : torch.Generator or int, optional
        Source (or seed) of the random elements; ``None`` uses torch's global generator.
    dtype : torch.dtype, optional
        Run ``fn`` in this dtype (floating inputs are cast to it); default: the least precise
        floating input dtype. It sets the default tolerance (:func:`default_rtol`).
    atol, rtol : float, optional
        An element passes an output when ``max|diff| <= atol + rtol * scale``, ``scale`` the largest
        absolute value of the output for ``x`` and of ``g·fn(x)``. Defaults: ``rtol =
        default_rtol(dtype)`` and ``atol`` the rounding-noise floor :func:`atol_floor` of the
        output's size and of the larger of its scale and the (transformed) inputs' scale, so that an
        output that is zero by symmetry passes; an explicit ``atol`` (``0`` included) replaces it.
    per_graph : bool
        Add ``n_samples`` (at least one) elements that move each graph of the ``batch`` input by its
        own element of the group's geometric part and permute nodes within graphs; ``node:`` outputs
        are compared node by node, other geometric outputs need one row per graph.

    Returns
    -------
    EquivarianceReport
        Rows per output and element type; ``.passed``, ``.max_error``, ``str(report)`` (a table
        whose status is ``NaN`` or ``SHAPE`` where an output held NaN/inf or changed shape, with a
        sentence under it, and a hint when a float64 run fails by float32-sized errors).

    Raises
    ------
    TypeError, ValueError
        On malformed inputs or kinds (naming the argument), NaN/inf inputs, an unknown group name or a
        shape that does not fit its kind.

    Examples
    --------
    >>> import torch
    >>> from geodl.testing import equivariance_error
    >>> def energy(pos):
    ...     return torch.pdist(pos).sum()
    >>> pos = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> report = equivariance_error(energy, (pos,), ("node:points",), "scalar", "E3+perm", generator=0)
    >>> report.passed
    True
    >>> equivariance_error(lambda p: p.sum(), (pos,), ("node:points",), "scalar", "SO3", generator=0).passed
    False
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable or an nn.Module, got {type(fn).__name__}")
    if not isinstance(group, str):
        from geodl.groups import get_group

        group = get_group(group)
    if isinstance(inputs, torch.Tensor) and isinstance(in_kinds, str):
        inputs = (inputs,)
        in_kinds = (in_kinds,)
    entries, mode = _structure("inputs", inputs, "in_kinds", in_kinds, "inputs")
    if not entries:
        raise ValueError("inputs: expected at least one input tensor")
    _check_kinds("in_kinds", in_kinds)
    if out_kinds is not _ALL_SCALAR:
        _check_kinds("out_kinds", out_kinds)
    group = _resolve_group(group, [kind for *_, kind in entries])
    for _, name, x, _ in entries:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        check_finite(name, x)
    run_dtype = _run_dtype(entries, dtype)
    rtol = default_rtol(run_dtype) if rtol is None else float(rtol)
    floor = atol is None  # the default: a rounding-noise floor per output and element
    atol = 0.0 if atol is None else float(atol)
    if not rtol >= 0 or not atol >= 0:
        raise ValueError(f"rtol, atol: expected non-negative numbers, got rtol={rtol}, atol={atol}")
    if not isinstance(per_graph, bool):
        raise TypeError(f"per_graph: expected a bool, got {type(per_graph).__name__}")
    n_nodes = _n_nodes(entries)
    if group.has_permutations and n_nodes is None:
        raise ValueError(f"in_kinds: group {group.name!r} permutes nodes, but no input has a node kind "
                         "('node:...' or 'perm') to say how many nodes there are")
    device = entries[0][2].device
    xs = [x.to(run_dtype) if x.is_floating_point() else x for _, _, x, _ in entries]
    x64 = [x.to(torch.float64) if x.is_floating_point() else x for x in xs]
    gen = _generator(generator)
    elems = _elements(group, n_samples, structured, gen, n_nodes, device, _labels(entries, group))
    batch = _batch_input(entries)
    if batch is not None:  # permutations stay within each graph: a sorted batch vector stays sorted
        elems = [_within_graphs(g, batch) for g in elems]
    if structured:
        elems += _rotation_parts(group, elems, n_nodes, device)
    graph_elems = {}  # id(element on nodes) -> the same element acting on graph rows
    if per_graph:
        pairs = _per_graph_elements(group, entries, batch, max(1, n_samples), gen, n_nodes, device)
        graph_elems = {id(a): b for a, b in pairs}
        elems += [a for a, _ in pairs]
    for (_, name, _, kind), x in zip(entries, x64):  # shapes that do not fit their kind fail before fn runs
        _act(kind, elems[-1], x, name)

    from geodl.groups import parse_kind

    with preserved(fn):  # a module runs in eval mode and is left as it was (buffers, RNG, grads)
        y = _call(fn, entries, mode, xs)
        out_entries, _ = _structure("out", y, "out_kinds", out_kinds, "outputs")
        for _, name, t, _ in out_entries:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"fn: output {name} is a {type(t).__name__}, expected a tensor")
        ref = [t.detach().to(torch.float64) for _, _, t, _ in out_entries]

        stats: dict = {}
        for g in elems:
            gx = [_act(kind, g, x, name).to(x0.dtype) for (_, name, _, kind), x, x0 in zip(entries, x64, xs)]
            in_scale = max(_scale_of(x64), _scale_of(gx))
            yg = _call(fn, entries, mode, gx)
            try:
                got_entries = _restructure(yg, out_entries)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"fn: the output for a transformed input has another structure: {exc}") from None
            label = getattr(g, "label", None) or "element"
            for (_, name, _, kind), r, got in zip(out_entries, ref, got_entries):
                if id(g) in graph_elems and not parse_kind(kind).node:
                    g_out = graph_elems[id(g)]
                    try:
                        expected = _act(kind, g_out, r, f"out_kinds for output {name}")
                    except ValueError:
                        raise ValueError(f"per_graph: output {name} (kind {kind!r}, shape {tuple(r.shape)}) needs "
                                         f"one row per graph ({g_out.part_labels.shape[0]}) along dim 0, or a "
                                         "node: kind") from None
                else:
                    expected = _act(kind, g, r, f"out_kinds for output {name}")
                abs_err, scale, issue, msg = _compare(got, r, expected)
                rel = abs_err / (scale + _TINY) if abs_err else 0.0
                tol_abs = atol_floor(run_dtype, r.numel(), max(scale, in_scale), rtol) if floor else atol
                ok = abs_err <= tol_abs + rtol * scale
                key = (name, label)
                n, worst, worst_abs, all_ok, tol_max, first = stats.get(key, (0, 0.0, 0.0, True, 0.0, ("", "")))
                if issue and not first[0]:
                    first = (issue, msg)
                stats[key] = (n + 1, max(worst, rel), max(worst_abs, abs_err), all_ok and ok, max(tol_max, tol_abs),
                              first)
    kinds = {name: kind for _, name, _, kind in out_entries}
    rows = [EquivarianceRow(name, kinds[name], label, n, worst, worst_abs, rtol, tol, ok, *first)
            for (name, label), (n, worst, worst_abs, ok, tol, first) in stats.items()]
    return EquivarianceReport(rows, group=group.name, dtype=str(run_dtype).replace("torch.", ""))


def _generator(generator):
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, an int seed or None, got {type(generator).__name__}")
    return generator


def _batch_input(entries):
    """The graph id per node (the input of kind ``batch``, on the CPU), or None."""
    from geodl.groups import parse_kind

    for _, name, x, kind in entries:
        if parse_kind(kind).base == "batch":
            check_index(name, x)
            if x.dim() != 1:
                raise ValueError(f"{name}: kind 'batch' expects a 1-d tensor of graph ids, got shape {tuple(x.shape)}")
            return x.cpu().to(torch.int64)
    return None


def _within_graphs(g, batch):
    """``g`` with its permutation restricted to each graph: nodes are reordered as ``g.perm`` orders them,
    then stably grouped by graph id, so that ``batch[perm] == batch`` (a sorted batch stays sorted)."""
    if g.perm is None or g.perm.shape[0] != batch.shape[0]:
        return g
    p = g.perm.cpu()
    # slot k of the graph-sorted order (position order[k]) gets the k-th node of the same graph in
    # p's order; for a sorted batch order is arange(N)
    q = torch.empty_like(p)
    q[torch.argsort(batch, stable=True)] = p[torch.argsort(batch[p], stable=True)]
    return dataclasses.replace(g, perm=q.to(g.perm.device))


def _rotation_parts(group, elems, n_nodes, device):
    """The rotation part of every random element of a group that also translates, permutes or scales,
    labelled ``"rotation"`` (``"reflection"`` when improper), so that a failure names its cause."""
    from geodl.groups import GroupElement

    if group.has_parts or group.dim is None or not (group.has_translations or group.has_permutations or
                                                     group.has_scaling):
        return []
    base = group.identity(dtype=torch.float64, device=device, n_nodes=n_nodes)
    out = []
    for g in elems:
        if g.label == "haar" and g.rotation is not None:
            label = "rotation" if float(torch.linalg.det(g.rotation)) > 0 else "reflection"
            out.append(GroupElement(g.rotation, base.translation, base.scale, base.perm, label))
    return out


def _per_graph_elements(group, entries, batch, n, gen, n_nodes, device) -> list:
    """``n`` elements moving each graph by its own element of the group's geometric part (and permuting
    within graphs): ``[(element on nodes, the same element on graph rows)]``, labelled ``"per_graph"``."""
    import copy as _copy

    from geodl.groups import GroupElement, parse_kind

    if batch is None:
        raise ValueError("per_graph: needs an input of kind 'batch' (the graph id of each node)")
    if group.has_parts or group.dim is None:
        raise ValueError(f"per_graph: group {group.name!r} has no geometric part to apply per graph "
                         "(expected e.g. 'E3+perm')")
    for _, name, x, kind in entries:
        spec = parse_kind(kind)
        if spec.is_geometric and not spec.node:
            raise ValueError(f"per_graph: input {name} has kind {kind!r}, not a node: kind, so one element per "
                             "graph cannot act on it")
    base = _copy.copy(group)  # the geometric part alone
    base.has_permutations, base.has_scaling = False, False
    n_graphs = int(batch.max()) + 1 if batch.numel() else 0
    out = []
    for _ in range(n):
        parts = [base.sample(generator=gen, dtype=torch.float64) for _ in range(max(n_graphs, 1))]
        R = None if parts[0].rotation is None else torch.stack([e.rotation for e in parts])
        t = None if parts[0].translation is None else torch.stack([e.translation for e in parts])
        perm = None
        if group.has_permutations:
            perm = _within_graphs(GroupElement(perm=torch.randperm(n_nodes, generator=gen)), batch).perm
        on_nodes = GroupElement(perm=perm, label="per_graph", part_rotation=R, part_translation=t, part_labels=batch)
        on_graphs = GroupElement(label="per_graph", part_rotation=R, part_translation=t,
                                 part_labels=torch.arange(max(n_graphs, 1)))
        out.append((on_nodes.to(torch.float64, device), on_graphs.to(torch.float64, device)))
    return out



def _restructure(value, out_entries):
    """The tensors of ``value`` in the order of ``out_entries`` (same structure as the first output)."""
    if isinstance(value, torch.Tensor):
        if len(out_entries) != 1 or out_entries[0][0] is not None:
            raise TypeError("got a single tensor")
        return [value]
    if isinstance(value, Mapping):
        keys = [k for k, *_ in out_entries]
        if set(value) != set(keys):
            raise ValueError(f"keys {sorted(map(str, value))} instead of {sorted(map(str, keys))}")
        return [value[k] for k in keys]
    if isinstance(value, (tuple, list)) and len(value) == len(out_entries):
        return list(value)
    raise TypeError(f"got a {type(value).__name__}")


def assert_equivariant(fn, inputs, in_kinds, out_kinds, group, **kwargs) -> EquivarianceReport:
    """Raise ``AssertionError`` with the error table unless ``fn`` is equivariant under ``group``.

    Arguments as for :func:`equivariance_error`; returns the report when the check passes.

    Examples
    --------
    >>> import torch
    >>> from geodl.testing import assert_equivariant
    >>> pos = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> centred = lambda p: p - p.mean(0)
    >>> assert_equivariant(centred, (pos,), ("node:points",), "node:vectors", "E3+perm", generator=0).passed
    True
    """
    return _passed_or_raise(equivariance_error(fn, inputs, in_kinds, out_kinds, group, **kwargs), "equivariant")


def assert_invariant(fn, inputs, in_kinds, group, **kwargs) -> EquivarianceReport:
    """Raise ``AssertionError`` with the error table unless every output of ``fn`` is invariant.

    Arguments as for :func:`equivariance_error`, with every output of kind ``scalar``.

    Examples
    --------
    >>> import torch
    >>> from geodl.testing import assert_invariant
    >>> pos = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> assert_invariant(lambda p: torch.pdist(p).max(), (pos,), ("node:points",), "E3+perm", generator=0).passed
    True
    """
    return _passed_or_raise(equivariance_error(fn, inputs, in_kinds, _ALL_SCALAR, group, **kwargs), "invariant")


def _passed_or_raise(report: EquivarianceReport, what: str) -> EquivarianceReport:
    if not report.passed:
        raise AssertionError(f"not {what}:\n{report}")
    return report
