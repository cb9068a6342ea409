"""The equivariance harness: compare ``fn(g·x)`` with ``g·fn(x)`` over random and structured elements.

Group actions come from the kind registry of :mod:`geodl.groups` (``act``, ``parse_kind``), and
are applied in float64: inputs are cast to float64, transformed, and cast back to the dtype ``fn``
runs in; outputs are compared in float64. Integer kinds (``edge_index``, ``batch``, ``parts``) are
never cast.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from geodl._checks import check_finite, check_index, check_int, check_tensor

from ._report import EquivarianceReport, EquivarianceRow

__all__ = ["equivariance_error", "assert_invariant", "assert_equivariant", "default_rtol"]

# Relative tolerances by the dtype fn runs in: a few hundred to a thousand ulps of accumulated
# rounding for float64/float32; half precisions already lose ~eps on the transformed input itself.
_RTOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
_TINY = torch.finfo(torch.float64).tiny
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


def _check_kinds(kinds_arg: str, kinds) -> None:
    """Check that every kind string in a str / tuple / dict of kinds parses."""
    from geodl.groups import parse_kind

    if isinstance(kinds, str):
        items = [(None, kinds)]
    elif isinstance(kinds, Mapping):
        items = list(kinds.items())
    elif isinstance(kinds, (tuple, list)):
        items = list(enumerate(kinds))
    else:
        raise TypeError(f"{kinds_arg}: expected a kind string, a tuple or a dict of kind strings, "
                        f"got {type(kinds).__name__}")
    for key, kind in items:
        name = kinds_arg if key is None else f"{kinds_arg}[{key!r}]"
        if not isinstance(kind, str):
            raise TypeError(f"{name}: expected a kind string such as 'node:points', got {type(kind).__name__}")
        try:
            parse_kind(kind)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


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
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, an int seed or None, got {type(generator).__name__}")
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
    """Return (absolute error, scale) between an output for g·x and g applied to the output for x."""
    if got.shape != expected.shape:
        return float("inf"), 0.0
    got, ref = got.detach().to(torch.float64), ref.to(torch.float64)
    if got.numel() == 0:
        return 0.0, 0.0
    if not bool(torch.isfinite(got).all() & torch.isfinite(expected).all()):
        return float("inf"), 0.0
    abs_err = float((got - expected).abs().max())
    scale = max(float(ref.abs().max()), float(expected.abs().max()))
    return abs_err, scale


def equivariance_error(fn, inputs, in_kinds, out_kinds, group, *, n_samples: int = 4, structured: bool = True,
                       generator=None, dtype: torch.dtype | None = None, atol: float | None = None,
                       rtol: float | None = None) -> EquivarianceReport:
    """Measure how far ``fn`` is from equivariance under ``group``.

    For every tested group element ``g`` (``n_samples`` random Haar elements plus, with
    ``structured=True``, the group's structured elements: identity, reflections, translations,
    permutations, finite-group elements, scalings), compare ``fn(g·inputs)`` with ``g·fn(inputs)``.
    Transforms are applied in float64; each transformed input is cast back to the dtype ``fn`` runs in.

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
        absolute value of the output for ``x`` and of ``g·fn(x)``. Defaults: ``atol = 0`` and
        ``rtol = default_rtol(dtype)``.

    Returns
    -------
    EquivarianceReport
        Rows per output and element type; ``.passed``, ``.max_error``, ``str(report)`` (a table).

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
    atol = 0.0 if atol is None else float(atol)
    if not rtol >= 0 or not atol >= 0:
        raise ValueError(f"rtol, atol: expected non-negative numbers, got rtol={rtol}, atol={atol}")
    n_nodes = _n_nodes(entries)
    if group.has_permutations and n_nodes is None:
        raise ValueError(f"in_kinds: group {group.name!r} permutes nodes, but no input has a node kind "
                         "('node:...' or 'perm') to say how many nodes there are")
    device = entries[0][2].device
    xs = [x.to(run_dtype) if x.is_floating_point() else x for _, _, x, _ in entries]
    x64 = [x.to(torch.float64) if x.is_floating_point() else x for x in xs]
    elems = _elements(group, n_samples, structured, generator, n_nodes, device, _labels(entries, group))
    for (_, name, _, kind), x in zip(entries, x64):  # shapes that do not fit their kind fail before fn runs
        _act(kind, elems[-1], x, name)

    y = _call(fn, entries, mode, xs)
    out_entries, _ = _structure("out", y, "out_kinds", out_kinds, "outputs")
    for _, name, t, _ in out_entries:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"fn: output {name} is a {type(t).__name__}, expected a tensor")
    ref = [t.detach().to(torch.float64) for _, _, t, _ in out_entries]

    stats: dict = {}
    for g in elems:
        gx = [_act(kind, g, x, name).to(x0.dtype) for (_, name, _, kind), x, x0 in zip(entries, x64, xs)]
        yg = _call(fn, entries, mode, gx)
        try:
            got_entries = _restructure(yg, out_entries)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"fn: the output for a transformed input has another structure: {exc}") from None
        label = getattr(g, "label", None) or "element"
        for (_, name, _, kind), r, got in zip(out_entries, ref, got_entries):
            expected = _act(kind, g, r, f"out_kinds for output {name}")
            abs_err, scale = _compare(got, r, expected)
            rel = abs_err / (scale + _TINY) if abs_err else 0.0
            ok = abs_err <= atol + rtol * scale
            key = (name, label)
            n, worst, worst_abs, all_ok = stats.get(key, (0, 0.0, 0.0, True))
            stats[key] = (n + 1, max(worst, rel), max(worst_abs, abs_err), all_ok and ok)
    kinds = {name: kind for _, name, _, kind in out_entries}
    rows = [EquivarianceRow(name, kinds[name], label, n, worst, worst_abs, rtol, atol, ok)
            for (name, label), (n, worst, worst_abs, ok) in stats.items()]
    return EquivarianceReport(rows, group=group.name, dtype=str(run_dtype).replace("torch.", ""))


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
