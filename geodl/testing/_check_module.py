"""``check_module``: the standard battery of checks for an equivariant or invariant ``nn.Module``.

One call tests, under the module's declared symmetry (:func:`geodl.groups.get_symmetry`) or kinds
given explicitly, six items and reports each as passed, failed or skipped: equivariance, batched =
per-sample output, ``state_dict`` round trip, finite gradients, ``torch.compile(fullgraph=True)`` =
eager, and no side effects. Every check runs on copies of the module; the user's module, its
training flags, buffers and parameters and torch's global RNG state are snapshotted first and
restored afterwards.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import io
import sys
from collections.abc import Mapping

import torch

from geodl.testing._report import ModuleReport
from geodl.testing._state import RNGState, module_state, restore_state, state_diff

__all__ = ["check_module", "CHECKS"]

CHECKS = ("equivariance", "batching", "state_dict", "gradients", "compile", "side_effects")
# Kinds of PyG's standard fields, for a Data/Batch given with group= and out_kinds= to a module that
# declares no symmetry; other fields (edge_attr, y, ...) are passed unchanged.
_PYG_KINDS = {"pos": "node:points", "x": "node:scalar", "z": "node:scalar", "edge_index": "edge_index",
              "batch": "batch"}
_FROM_DECLARATION = object()


# ----------------------------------------------------------------------------- inputs and kinds
class _Call:
    """The module's arguments: ``args`` (name or position -> tensor) with ``kinds``, plus ``extras``.

    With a ``template`` (a PyG ``Data``/``Batch`` the module takes whole), ``args`` and ``extras`` are
    its fields, and each call passes a copy of the template holding them.
    """

    def __init__(self, args: dict, kinds: dict, extras: dict, positional: bool, template=None):
        self.args, self.kinds, self.extras, self.positional = args, kinds, extras, positional
        self.template = template

    def __call__(self, module, args=None, extras=None):
        args = self.args if args is None else args
        extras = self.extras if extras is None else extras
        if self.positional:
            return module(*[args[i] for i in range(len(args))])
        if self.template is not None:
            return module(_rebuild(self.template, args, extras))
        return module(**args, **extras)

    def cast(self, dtype, args=None):
        args = self.args if args is None else args
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in args.items()}


def _rebuild(template, args: dict, extras: dict):
    """A shallow copy of a PyG ``Data``/``Batch`` holding ``args`` and ``extras`` as its fields; floating
    extras follow the floating args' dtype, and a ``Batch``'s ``ptr`` and graph count follow ``batch``."""
    obj = copy.copy(template)
    dtype = next((v.dtype for v in args.values() if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
    for k, v in extras.items():
        if dtype is not None and isinstance(v, torch.Tensor) and v.is_floating_point():
            v = v.to(dtype)
        obj[k] = v
    for k, v in args.items():
        obj[k] = v
    batch = args.get("batch")
    if isinstance(batch, torch.Tensor) and batch.dim() == 1 and not batch.is_floating_point():
        n_graphs = int(batch.max()) + 1 if batch.numel() else 0
        if "ptr" in template.keys():
            counts = torch.bincount(batch, minlength=n_graphs)
            obj.ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        if hasattr(template, "_num_graphs"):
            obj._num_graphs = n_graphs
    return obj


def _takes_data(module, fields) -> bool:
    """Whether ``module.forward`` takes a PyG object whole rather than the fields ``fields`` by name."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return False
    names = {p.name for p in params}
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return bool(positional) and not all(k in names for k in fields)


def _is_pyg_data(x) -> bool:
    pyg = sys.modules.get("torch_geometric.data")  # loaded whenever x can be a PyG object
    return pyg is not None and isinstance(x, pyg.Data)


def _optional_args(module) -> set:
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return set()
    return {n for n, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def _build_call(module, inputs, in_kinds) -> _Call:
    from geodl.groups import parse_kind

    template = None
    if _is_pyg_data(inputs):
        if not isinstance(in_kinds, Mapping):
            raise TypeError("in_kinds: PyG Data/Batch inputs need a dict of field name -> kind, "
                            f"got {type(in_kinds).__name__}")
        present = [k for k in inputs.keys() if k in in_kinds]
        if _takes_data(module, present):  # forward(data): fields without a kind travel as extras
            template = inputs
            missing = [k for k in in_kinds if k not in present]
            if missing:
                raise ValueError(f"inputs: the {type(inputs).__name__} has no field {missing}, named in in_kinds "
                                 f"{sorted(in_kinds)} (it has {sorted(inputs.keys())})")
            inputs = {k: inputs[k] for k in inputs.keys() if k in in_kinds or isinstance(inputs[k], torch.Tensor)}
        else:
            inputs = {k: inputs[k] for k in present}
    if isinstance(inputs, Mapping):
        if not isinstance(in_kinds, Mapping):
            raise TypeError(f"in_kinds: inputs is a dict, so expected a dict of argument name -> kind, "
                            f"got {type(in_kinds).__name__}")
        optional = _optional_args(module)
        missing = [k for k in in_kinds if k not in inputs and k not in optional]
        if missing:
            raise ValueError(f"inputs: missing {missing}, named in in_kinds {sorted(in_kinds)} "
                             f"(inputs has {sorted(map(str, inputs))})")
        args = {k: inputs[k] for k in in_kinds if k in inputs}
        kinds = {k: in_kinds[k] for k in args}
        extras = {k: v for k, v in inputs.items() if k not in in_kinds}
        positional = False
    elif isinstance(inputs, (tuple, list)):
        if not isinstance(in_kinds, (tuple, list)):
            raise TypeError(f"in_kinds: inputs is a tuple of {len(inputs)}, so expected a tuple of kinds, "
                            f"got {type(in_kinds).__name__}")
        if len(in_kinds) != len(inputs):
            raise ValueError(f"in_kinds: {len(in_kinds)} kinds given for {len(inputs)} inputs")
        args, kinds, extras, positional = dict(enumerate(inputs)), dict(enumerate(in_kinds)), {}, True
    else:
        raise TypeError("inputs: expected a dict of keyword arguments, a tuple of positional arguments or "
                        f"a torch_geometric Data/Batch, got {type(inputs).__name__}")
    if not args:
        raise ValueError("inputs: no input matches in_kinds")
    n_nodes, first = None, None
    for k, x in args.items():
        name = f"inputs[{k!r}]"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor (kind {kinds[k]!r}), got {type(x).__name__}")
        if not isinstance(kinds[k], str):
            raise TypeError(f"in_kinds[{k!r}]: expected a kind string, got {type(kinds[k]).__name__}")
        try:
            spec = parse_kind(kinds[k])
        except ValueError as exc:
            raise ValueError(f"in_kinds[{k!r}]: {exc}") from None
        if spec.node:
            if x.dim() == 0:
                raise ValueError(f"{name}: kind {kinds[k]!r} needs nodes along dim 0, got a 0-d tensor")
            if n_nodes is not None and x.shape[0] != n_nodes:
                raise ValueError(f"{name}: {x.shape[0]} rows along dim 0 (kind {kinds[k]!r}), but {first} "
                                 f"has {n_nodes}")
            n_nodes, first = x.shape[0], name
    return _Call(args, kinds, extras, positional, template)


def _flat_outputs(y, out_kinds, what="output"):
    """``[(name, tensor, kind)]`` of a module output with the structure of ``out_kinds``."""
    if isinstance(out_kinds, str):
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"out_kinds: one kind given, but the module returned a {type(y).__name__}")
        return [("out", y, out_kinds)]
    if isinstance(out_kinds, Mapping):
        if not isinstance(y, Mapping) or set(y) != set(out_kinds):
            raise TypeError(f"out_kinds: keys {sorted(out_kinds)} do not match the module's {what}")
        return [(str(k), y[k], out_kinds[k]) for k in out_kinds]
    if isinstance(out_kinds, (tuple, list)):
        if not isinstance(y, (tuple, list)) or len(y) != len(out_kinds):
            raise TypeError(f"out_kinds: {len(out_kinds)} kinds given, but the module's {what} is a "
                            f"{type(y).__name__}" + (f" of {len(y)}" if isinstance(y, (tuple, list)) else ""))
        return [(f"out[{i}]", t, k) for i, (t, k) in enumerate(zip(y, out_kinds))]
    raise TypeError(f"out_kinds: expected a kind string, a tuple or a dict of kinds, got {type(out_kinds).__name__}")


def _input_scale(call) -> float:
    """The largest absolute value of the floating inputs (it sets the default absolute tolerance)."""
    vals = [float(v.detach().abs().max()) for v in call.args.values()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel()]
    return max(vals, default=0.0)


def _tensors(flat):
    return [(n, t) for n, t, _ in flat if isinstance(t, torch.Tensor)]


def _compare(got, ref, rtol, atol, floor=None):
    """``None`` when every output matches, else a sentence naming the first that does not.

    With ``atol=None``, the absolute tolerance is :func:`~geodl.testing.atol_floor` of
    ``floor = (dtype, input scale)`` and of each output's size and scale.
    """
    from geodl.testing._equivariance import atol_floor

    for (name, a), (_, b) in zip(_tensors(got), _tensors(ref)):
        if a.shape != b.shape:
            return f"{name}: shape {tuple(a.shape)} instead of {tuple(b.shape)}"
        if a.is_floating_point() or a.is_complex():
            a64, b64 = a.detach().double(), b.detach().double()
            both_nan = torch.isnan(a64) & torch.isnan(b64)
            diff = torch.where(both_nan, 0.0, (a64 - b64).abs())
            err = float(diff.max()) if diff.numel() else 0.0
            scale = float(b64.abs().nan_to_num(0.0).max()) if b64.numel() else 0.0
            tol = atol if atol is not None else atol_floor(floor[0], b.numel(), max(scale, floor[1]), rtol)
            one_nan = torch.isnan(a64) ^ torch.isnan(b64)
            if bool(one_nan.any()):
                return f"{name}: NaN in {int(one_nan.sum())} entries of one output where the other is not NaN"
            if not err <= tol + rtol * scale:
                return f"{name}: max abs. difference {err:.3e} > {tol:.1e} + {rtol:.1e} * {scale:.3e}"
        elif not torch.equal(a, b):
            return f"{name}: values differ"
    return None


# ----------------------------------------------------------------------------- state snapshots
_state, _state_diff, _restore, _RNG = module_state, state_diff, restore_state, RNGState


def _perturb(module, gen: torch.Generator) -> None:
    """Re-randomise what a ``state_dict`` carries and every plain tensor attribute, in place."""
    with torch.no_grad():
        for m in module.modules():
            for name, t in list(m._parameters.items()) + [
                    (n, b) for n, b in m._buffers.items() if n not in m._non_persistent_buffers_set]:
                if t is not None and t.is_floating_point() and t.numel():
                    t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t))
                elif t is not None and t.dtype == torch.long and t.dim() == 0:
                    t.add_(7)  # counters such as num_batches_tracked
            for name, t in list(vars(m).items()):
                if isinstance(t, torch.Tensor) and not name.startswith("_") and t.is_floating_point():
                    setattr(m, name, torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t))


# ----------------------------------------------------------------------------- the items
def _equivariance(work, call, sym, out_kinds, opts):
    from geodl.testing._equivariance import equivariance_error

    extras = call.extras

    def fn(*a, **kw):
        if call.template is not None:
            return call(work, kw)
        return work(*a, **kw, **extras)

    args = call.cast(opts["dtype"])
    if call.positional:
        inputs, kinds = tuple(args[i] for i in range(len(args))), tuple(call.kinds[i] for i in range(len(args)))
    else:
        inputs, kinds = args, dict(call.kinds)
    report = equivariance_error(fn, inputs, kinds, out_kinds, sym["group"], n_samples=opts["n_samples"],
                                generator=opts["generator"], dtype=opts["dtype"], atol=opts["atol_arg"],
                                rtol=opts["rtol_arg"], per_graph=opts["per_graph"])
    other = _other_dtypes(work, opts["dtype"])
    if other:
        report = dataclasses.replace(report, notes=(
            f"note: the {str(opts['dtype']).replace('torch.', '')} copy of the module still holds tensors of "
            f"another floating dtype (plain tensor attributes, which .to() does not convert): {', '.join(other)}",))
    return ("passed" if report.passed else "failed"), str(report)


def _other_dtypes(module, dtype) -> list:
    """``"name (dtype)"`` of every floating tensor the module holds in a dtype other than ``dtype``."""
    out = []
    for prefix, m in module.named_modules():
        pre = f"{prefix}." if prefix else ""
        tensors = list(m._parameters.items()) + list(m._buffers.items()) + \
            [(n, t) for n, t in vars(m).items() if isinstance(t, torch.Tensor) and not n.startswith("_")]
        for name, t in tensors:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype:
                out.append(f"{pre}{name} ({str(t.dtype).replace('torch.', '')})")
    return out


def _batching(work, call, sym, out_kinds, opts):
    from geodl.groups import parse_kind

    rtol, atol = opts["rtol"], opts["atol"]
    batch_arg = sym["batch_arg"]
    args = call.cast(opts["dtype"])
    with torch.no_grad():
        full = _flat_outputs(call(work, args), out_kinds)
    if batch_arg is not None:
        if batch_arg not in args:
            return "skipped", f"the batch argument {batch_arg!r} is not among the inputs"
        batch = args[batch_arg]
        if batch.dtype.is_floating_point or batch.dim() != 1:
            raise ValueError(f"inputs[{batch_arg!r}]: expected a 1-d integer batch vector, got "
                             f"{batch.dtype} of shape {tuple(batch.shape)}")
        n_graphs = int(batch.max()) + 1 if batch.numel() else 0
        extras = dict(call.extras)
        edge_keys = [k for k in args if parse_kind(call.kinds[k]).base == "edge_index"]
        parts = []
        for gi in range(n_graphs):
            mask = batch == gi
            new_id = torch.cumsum(mask.long(), 0) - 1
            g_args = {}
            keep = None
            for k, x in args.items():
                spec = parse_kind(call.kinds[k])
                if k == batch_arg:
                    g_args[k] = torch.zeros(int(mask.sum()), dtype=x.dtype, device=x.device)
                elif spec.base == "edge_index":
                    keep = mask[x[0]] & mask[x[1]]
                    g_args[k] = new_id[x[:, keep]]
                elif spec.node:
                    g_args[k] = x[mask]
                else:
                    g_args[k] = x
            g_extras = dict(extras)
            if "num_graphs" in g_extras:
                g_extras["num_graphs"] = 1
            for k, v in extras.items():  # per-edge extras (edge_attr) follow the kept edges
                if keep is not None and isinstance(v, torch.Tensor) and v.dim() and edge_keys and \
                        v.shape[0] == args[edge_keys[0]].shape[1]:
                    g_extras[k] = v[keep]
            with torch.no_grad():
                parts.append(_flat_outputs(call(work, g_args, g_extras), out_kinds))
        merged, skipped = [], []
        for j, (name, t, kind) in enumerate(full):
            pieces = [p[j][1] for p in parts]
            if parse_kind(kind).node:
                merged.append((name, torch.cat(pieces), kind))
            elif sym["graph_outputs"]:
                if all(p.shape == t.shape[1:] for p in pieces):
                    merged.append((name, torch.stack(pieces), kind))
                else:
                    merged.append((name, torch.cat([p.reshape(-1, *t.shape[1:]) for p in pieces]), kind))
            else:
                skipped.append(name)
        keep_full = [f for f in full if f[0] not in skipped]
        bad = _compare(merged, keep_full, rtol, atol, opts["floor"])
        what = f"{n_graphs} graphs one at a time vs. batched"
    else:
        if any(parse_kind(k).base == "edge_index" for k in call.kinds.values()):
            return "skipped", "edge_index couples the rows and no batch_arg is declared"
        node_keys = [k for k in args if parse_kind(call.kinds[k]).node]
        if not node_keys:
            return "skipped", "no input has rows (a node kind) to split"
        n = args[node_keys[0]].shape[0]
        rows = [f for f in full if f[1].dim() and f[1].shape[0] == n]
        if n < 2 or not rows:
            return "skipped", ("fewer than 2 rows" if n < 2 else
                               "no output has one row per input row; declare batch_arg to test batching")
        h = n // 2
        halves = [{k: (x[:h] if k in node_keys else x) for k, x in args.items()},
                  {k: (x[h:] if k in node_keys else x) for k, x in args.items()}]
        with torch.no_grad():
            outs = [_flat_outputs(call(work, a), out_kinds) for a in halves]
        names = {f[0] for f in rows}
        merged = [(nm, torch.cat([outs[0][j][1], outs[1][j][1]]), kd) for j, (nm, _, kd) in enumerate(full)
                  if nm in names]
        bad = _compare(merged, rows, rtol, atol, opts["floor"])
        skipped = [f[0] for f in full if f[0] not in names]
        what = f"rows [:{h}] and [{h}:] separately vs. all {n} rows"
    note = f" (not compared: {', '.join(skipped)})" if skipped else ""
    if bad:
        return "failed", f"{what}: {bad}{note}"
    return "passed", what + note


def _state_dict(work, call, sym, out_kinds, opts):
    args = call.cast(opts["dtype"])
    gen = torch.Generator().manual_seed(opts["seed"] + 1)
    with torch.no_grad():
        ref = _flat_outputs(call(work, args), out_kinds)
        sd = work.state_dict()
        fresh = copy.deepcopy(work)
        _perturb(fresh, gen)
        fresh.load_state_dict(sd)
        bad = _compare(_flat_outputs(call(fresh, args), out_kinds), ref, 0.0, 0.0)
        if bad:
            return "failed", ("after load_state_dict into a re-randomised copy: " + bad +
                              " (the output depends on state the state_dict does not carry: a plain tensor "
                              "attribute or a non-persistent buffer?)")
        buf = io.BytesIO()
        torch.save(sd, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=True)
        fresh = copy.deepcopy(work)
        _perturb(fresh, gen)
        fresh.load_state_dict(loaded)
        bad = _compare(_flat_outputs(call(fresh, args), out_kinds), ref, 0.0, 0.0)
    if bad:
        return "failed", "after torch.save / torch.load(weights_only=True): " + bad
    return "passed", f"{len(sd)} entries, load_state_dict and torch.save/load round trips exact"


def _gradients(work, call, sym, out_kinds, opts):
    args = call.cast(opts["dtype"])
    args = {k: (v.detach().clone().requires_grad_(True) if v.is_floating_point() else v) for k, v in args.items()}
    params = [(n, p) for n, p in work.named_parameters() if p.requires_grad]
    for _, p in params:
        p.grad = None
    outs = [t for _, t, _ in _flat_outputs(call(work, args), out_kinds)
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
    if not outs:
        if params or any(v.is_floating_point() for v in args.values()):
            return "failed", "no floating output depends on a parameter or an input (autograd graph cut?)"
        return "skipped", "no floating input, parameter or output"
    loss = sum(t.sum() for t in outs)
    loss.backward()
    bad = [f"parameter {n}" for n, p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
    bad += [f"input {k!r}" for k, v in args.items()
            if isinstance(v, torch.Tensor) and v.grad is not None and not torch.isfinite(v.grad).all()]
    if bad:
        return "failed", "non-finite gradient of sum(outputs) for " + ", ".join(bad)
    n_grad = sum(p.grad is not None for _, p in params)
    if params and not n_grad:
        return "failed", f"none of the {len(params)} parameters gets a gradient"
    n_in = sum(isinstance(v, torch.Tensor) and v.grad is not None for v in args.values())
    return "passed", f"finite gradients for {n_grad} of {len(params)} parameters and {n_in} inputs"


def _compile(work, call, sym, out_kinds, opts):
    args = call.cast(opts["dtype"])
    with torch.no_grad():
        ref = _flat_outputs(call(work, args), out_kinds)
    try:
        compiled = torch.compile(work, fullgraph=True, backend=opts["compile_backend"], dynamic=False)
        with torch.no_grad():
            got = _flat_outputs(call(compiled, args), out_kinds)
    except Exception as exc:  # graph breaks, unsupported ops: the item fails with the reason
        msg = str(exc).strip().splitlines()
        return "failed", f"torch.compile(fullgraph=True, backend={opts['compile_backend']!r}) raised " \
                         f"{type(exc).__name__}: {msg[0] if msg else ''}"
    finally:
        importlib.import_module("torch._dynamo").reset()
    bad = _compare(got, ref, opts["rtol"], opts["atol"], opts["floor"])
    if bad:
        return "failed", "compiled vs. eager: " + bad
    return "passed", f"backend {opts['compile_backend']!r}, fullgraph: equal to eager"


def _side_effects(work, call, sym, out_kinds, opts, module, snapshot, rng):
    problems = []
    args = call.cast(opts["dtype"])
    probe = copy.deepcopy(work).eval()
    before, rng_before = _state(probe), _RNG()
    with torch.no_grad():
        call(probe, args)
    changed = _state_diff(before, _state(probe))
    if changed:
        problems.append("an eval-mode forward changed " + ", ".join(changed))
    rng_changed = rng_before.changed(_RNG())
    if rng_changed:
        problems.append(f"an eval-mode forward drew from torch's global RNG ({', '.join(rng_changed)})")
    rng.restore()
    if snapshot.get("<training>"):
        # a training-mode forward on the module itself (BatchNorm statistics, dropout's RNG draws):
        # the battery must put everything back
        with torch.no_grad():
            call(module, {k: v.to(_param_dtype(module)) if v.is_floating_point() and _param_dtype(module) else v
                          for k, v in call.args.items()})
        _restore(module, snapshot)
        rng.restore()
    left = _state_diff(snapshot, _state(module))
    if left:
        problems.append("the check could not restore " + ", ".join(left))
    if rng.changed(_RNG()):
        problems.append("the check could not restore the RNG state")
    if problems:
        return "failed", "; ".join(problems)
    return "passed", ("eval forward leaves buffers, parameters and the RNG unchanged; module state and RNG "
                      "restored" + (" after a training-mode forward" if snapshot.get("<training>") else ""))


def _param_dtype(module):
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


_ITEMS = {"equivariance": _equivariance, "batching": _batching, "state_dict": _state_dict,
          "gradients": _gradients, "compile": _compile}


def check_module(module, inputs, *, group=None, in_kinds=None, out_kinds=None, batch_arg=_FROM_DECLARATION,
                 checks=CHECKS, generator=0, n_samples: int = 4, dtype: torch.dtype | None = None,
                 atol: float | None = None, rtol: float | None = None, compile_backend: str = "aot_eager",
                 per_graph: bool = False, raise_on_fail: bool = True) -> ModuleReport:
    """Run the standard battery of checks on an equivariant or invariant module.

    The items, in order (each passed, failed or skipped with a reason):

    ``equivariance``  :func:`~geodl.testing.equivariance_error` under the declared group and kinds.
    ``batching``      batched output = per-sample output: with a ``batch_arg`` (a PyG batch vector),
                      each graph alone (nodes, relabelled ``edge_index``, ``batch = 0``) against the
                      batched call (``node:`` outputs concatenated, graph outputs stacked); without,
                      the two halves of the rows along dim 0 against all rows. Eval mode.
    ``state_dict``    a copy with re-randomised parameters, buffers and plain tensor attributes,
                      loaded with ``module.state_dict()`` (directly and through ``torch.save`` /
                      ``torch.load(weights_only=True)``), gives exactly the same output.
    ``gradients``     ``sum(outputs).backward()`` gives finite gradients for every parameter and
                      floating input, and at least one parameter gets a gradient.
    ``compile``       ``torch.compile(fullgraph=True, backend=compile_backend)`` equals eager; a graph
                      break fails the item.
    ``side_effects``  an eval-mode forward changes no parameter, buffer or attribute tensor and does
                      not draw from torch's global RNG; the check itself leaves the module's training
                      flags, parameters, buffers and the RNG state as they were.

    Every item runs on a deep copy of ``module`` converted to ``dtype`` (float64 by default).

    Parameters
    ----------
    module : torch.nn.Module
        The module; its declaration is ``geodl.groups.get_symmetry(module)`` (a ``symmetry``
        attribute), unless ``group``, ``in_kinds`` and ``out_kinds`` are all given.
    inputs : dict, tuple or torch_geometric.data.Data
        Keyword arguments (``module(**inputs)``; arguments without a kind are passed unchanged), a
        tuple of positional arguments (``in_kinds`` a tuple), or a PyG ``Data``/``Batch`` whose fields
        named in ``in_kinds`` are passed by name (a ``Batch``'s ``batch`` field is the batch vector).
        When ``module.forward`` does not take those fields by name (``forward(self, data)``), it gets
        a copy of the ``Data``/``Batch`` holding the transformed fields instead (its other tensor
        fields follow the dtype and, per graph, the kept edges; ``ptr`` and ``num_graphs`` follow
        ``batch``).
    group : str, optional
        Overrides the declared group (e.g. ``"E3+perm"``).
    in_kinds : dict or tuple of str, optional
        Overrides the declared input kinds (``{"pos": "node:points", "batch": "batch"}``). For a PyG
        input to a module without a declaration, given ``group`` and ``out_kinds``, the default maps
        PyG's standard fields: ``pos`` ``node:points``, ``x`` and ``z`` ``node:scalar``,
        ``edge_index`` and ``batch``.
    out_kinds : str, tuple or dict of str, optional
        Overrides the declared output kinds, with the output's structure.
    batch_arg : str or None, optional
        The argument holding the batch vector; default: the declaration's (``None`` without one).
    checks : tuple of str
        The items to run, a subset of ``geodl.testing.CHECKS`` (kept in the order above).
    generator : int
        Seed of the random group elements and the re-randomised copies.
    n_samples : int
        Random group elements in the equivariance item.
    dtype : torch.dtype, optional
        The dtype the copies run in (default ``torch.float64``); sets the default tolerances.
    atol, rtol : float, optional
        Tolerances of the equivariance, batching and compile comparisons (defaults: the
        rounding-noise floor :func:`~geodl.testing.atol_floor` and
        :func:`~geodl.testing.default_rtol` of ``dtype``).
    compile_backend : str
        ``torch.compile`` backend; ``"aot_eager"`` needs no C++ compiler.
    per_graph : bool
        Also move each graph by its own group element in the equivariance item (``"per_graph"``
        rows, see :func:`~geodl.testing.equivariance_error`); needs an input of kind ``batch``.
    raise_on_fail : bool
        Raise ``AssertionError`` naming the failed items (with the report) when one fails.

    Returns
    -------
    ModuleReport
        ``.passed``, ``.items`` (name -> (status, detail)), ``.failed``; ``str(report)`` is a table.

    Raises
    ------
    TypeError, ValueError
        On bad arguments (unknown check, inputs that do not match the kinds, no declaration).
    AssertionError
        With ``raise_on_fail=True``, when an item fails.

    Examples
    --------
    >>> import torch
    >>> from geodl.testing import check_module
    >>> from geodl.testing.examples import invariant_model
    >>> pos = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    >>> batch = torch.tensor([0] * 4 + [1] * 5)
    >>> report = check_module(invariant_model(), {"pos": pos, "batch": batch}, checks=("equivariance", "batching"))
    >>> report.passed, report.failed
    (True, [])
    """
    from geodl._checks import check_positive_int
    from geodl.groups import get_symmetry

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(checks, str) or not isinstance(checks, (tuple, list, set, frozenset)):
        raise TypeError(f"checks: expected a tuple of check names from {CHECKS}, got {type(checks).__name__}")
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"checks: unknown check(s) {unknown}; expected names from {CHECKS}")
    if isinstance(generator, torch.Generator):
        seed = int(generator.initial_seed())
    elif isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(f"generator: expected an int seed or a torch.Generator, got {type(generator).__name__}")
    else:
        seed = generator
    check_positive_int("n_samples", n_samples)
    if dtype is None:
        dtype = torch.float64
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    if not isinstance(compile_backend, str):
        raise TypeError(f"compile_backend: expected a backend name (str), got {type(compile_backend).__name__}")
    if not isinstance(per_graph, bool):
        raise TypeError(f"per_graph: expected a bool, got {type(per_graph).__name__}")

    declared = None
    if in_kinds is None and group is not None and out_kinds is not None and _is_pyg_data(inputs) and \
            getattr(module, "symmetry", None) is None:
        in_kinds = {k: v for k, v in _PYG_KINDS.items() if k in inputs.keys()}  # PyG's standard fields
    if group is None or in_kinds is None or out_kinds is None:
        declared = get_symmetry(module)
    sym = {
        "group": group if group is not None else declared.group,
        "batch_arg": (declared.batch_arg if declared is not None else None) if batch_arg is _FROM_DECLARATION
        else batch_arg,
        "graph_outputs": declared.graph_outputs if declared is not None else True,
    }
    in_kinds = in_kinds if in_kinds is not None else dict(declared.in_kinds)
    out_kinds = out_kinds if out_kinds is not None else declared.out_kinds
    if isinstance(out_kinds, list):
        out_kinds = tuple(out_kinds)
    if _is_pyg_data(inputs) and sym["batch_arg"] is None and "batch" in in_kinds and \
            getattr(inputs, "batch", None) is not None and batch_arg is _FROM_DECLARATION:
        sym["batch_arg"] = "batch"
    call = _build_call(module, inputs, in_kinds)
    if sym["batch_arg"] is not None and sym["batch_arg"] not in call.args and sym["batch_arg"] not in in_kinds:
        raise ValueError(f"batch_arg: {sym['batch_arg']!r} is not one of in_kinds {sorted(map(str, in_kinds))}")

    from geodl.testing._equivariance import default_rtol

    opts = {"dtype": dtype, "n_samples": n_samples, "generator": seed, "seed": seed, "atol_arg": atol,
            "rtol_arg": rtol, "rtol": default_rtol(dtype) if rtol is None else float(rtol),
            "atol": None if atol is None else float(atol), "compile_backend": compile_backend,
            "per_graph": per_graph, "floor": (dtype, _input_scale(call))}

    snapshot, rng = _state(module), _RNG()
    items = {}
    try:
        work = copy.deepcopy(module).to(dtype).eval()
        for name in CHECKS:
            if name not in checks:
                continue
            if name == "side_effects":
                items[name] = _side_effects(work, call, sym, out_kinds, opts, module, snapshot, rng)
                continue
            try:
                items[name] = _ITEMS[name](copy.deepcopy(work), call, sym, out_kinds, opts)
            except (ValueError, TypeError) as exc:
                if name == "equivariance":
                    raise  # inputs that do not fit their kinds are the caller's error
                items[name] = ("failed", f"raised {type(exc).__name__}: {exc}")
            except Exception as exc:  # the module itself failed in this item
                items[name] = ("failed", f"raised {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            finally:
                rng.restore()
    finally:
        _restore(module, snapshot)
        rng.restore()
    report = ModuleReport(items, module=type(module).__name__, group=str(sym["group"]), dtype=str(dtype).replace("torch.", ""))
    if raise_on_fail and not report.passed:
        raise AssertionError(f"check_module({type(module).__name__}): failed {', '.join(map(repr, report.failed))}\n"
                             f"{report}")
    return report
