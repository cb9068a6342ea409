"""``geodl check MODULE:FACTORY --group G --inputs KINDS --outputs KINDS``: the equivariance suite
on any model from the command line. Exit status 0 when every check passes, 1 when one fails (the
model is not equivariant), 2 on any other error: bad arguments, a module that cannot be imported, a
model that cannot be built or called (one line on standard error; ``--traceback`` adds the
traceback)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback

__all__ = ["main"]

_EXAMPLES = """examples:
  geodl check geodl.testing.examples:invariant_model --group E3+perm --inputs node:points --outputs scalar
  geodl check geodl.testing.examples:chiral_model --group O3 --inputs node:points --outputs scalar   # exits 1
  geodl check my_models.py:build --group SE3 --inputs node:points,edge_index --outputs scalar,node:vectors
"""


def _epilog() -> str:
    """The examples and the kind table, read from the kind registry of geodl.groups."""
    from geodl.groups import kind_table

    rows = kind_table()
    width = max(len(name) for name, _, _ in rows)
    lines = [f"  {name:<{width}}  {shape}: {doc}" for name, shape, doc in rows]
    return (_EXAMPLES + "\nkinds (optionally prefixed 'node:', permuted along dim 0):\n" + "\n".join(lines)
            + "\n\nInputs are random: n_points rows each (edge_index: a random graph on n_points nodes); one "
              "output kind\nmeans a single output tensor, several a tuple.")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geodl check", description=__doc__, epilog=_epilog(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="MODULE:FACTORY",
                   help="a module (dotted name or .py path) and a zero-argument callable in it that "
                        "returns the model (an nn.Module or a function)")
    p.add_argument("--group", required=True,
                   help="e.g. SO3, O3, E3+perm, icosahedral, D4, equirect (bins from the input), E3^parts")
    p.add_argument("--inputs", required=True, metavar="KINDS", help="comma-separated input kinds")
    p.add_argument("--outputs", required=True, metavar="KINDS", help="comma-separated output kinds")
    p.add_argument("--n-points", type=int, default=16, help="rows per random input (default 16)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and group elements")
    p.add_argument("--samples", type=int, default=4, help="random (Haar) elements (default 4)")
    p.add_argument("--no-structured", action="store_true", help="skip the structured elements")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance (default from dtype)")
    p.add_argument("--atol", type=float, default=None,
                   help="absolute tolerance (default: a floor of rounding noise from eps and the scales)")
    p.add_argument("--per-graph", action="store_true",
                   help="also move each graph (input of kind batch) by its own element")
    p.add_argument("--traceback", action="store_true",
                   help="on an error (exit status 2), print the traceback before the one-line message")
    return p


class _CheckError(Exception):
    """An error that ends ``geodl check`` with exit status 2: ``stage`` says what went wrong."""

    def __init__(self, stage: str, exc: BaseException):
        super().__init__(f"{stage}: {type(exc).__name__}: {exc}")
        self.exc = exc


def _module_from_file(path: str):
    """Import the file ``path`` as a module registered in ``sys.modules``, as ``python path`` would.

    Registering it matters: ``dataclasses`` and PyG's ``MessagePassing`` look their class's module up
    in ``sys.modules``. The module is named after the file unless that name is taken by another
    module (then ``_geodl_check_<stem>``); the file's folder is put on ``sys.path`` so that it can
    import its neighbours (:func:`main` restores ``sys.path`` when the check ends).
    """
    path = os.path.abspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    base = stem if stem.isidentifier() else "_geodl_check_module"
    name, i = base, 0
    while name in sys.modules and os.path.abspath(getattr(sys.modules[name], "__file__", None) or "") != path:
        i += 1  # the name belongs to another module (a file called torch.py): never replace it
        name = f"_geodl_check_{base}" + (f"_{i}" if i > 1 else "")
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load(target: str):
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"MODULE:FACTORY: expected e.g. 'my_models:build', got {target!r}")
    is_file = module_name.endswith(".py") or os.sep in module_name or "/" in module_name
    if is_file and not os.path.isfile(module_name):
        raise ValueError(f"MODULE:FACTORY: no file {module_name!r}")
    try:
        if is_file:
            module = _module_from_file(module_name)
        else:
            if os.getcwd() not in sys.path:  # like `python -m`: modules in the current folder are found
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # a syntax error, a missing dependency, an exit at import
        raise _CheckError(f"importing {module_name!r} failed", exc) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"MODULE:FACTORY: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"MODULE:FACTORY: {target!r} is not callable")
    return obj


def _kinds(arg: str, text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise ValueError(f"{arg}: expected a comma-separated list of kinds, got {text!r}")
    return kinds


def _check_options(args) -> None:
    import torch

    from geodl._checks import check_int, check_number, check_positive_int

    check_positive_int("--n-points", args.n_points)
    check_int("--samples", args.samples, min=0)
    for flag, v in (("--rtol", args.rtol), ("--atol", args.atol)):
        if v is not None:
            check_number(flag, v, nonnegative=True)
    try:
        torch.device(args.device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"--device: expected a torch device such as 'cpu' or 'cuda:0', got {args.device!r}") from None


def _run(args):
    """Build, call and check the model; every error that is not a verdict raises."""
    import torch

    from ._equivariance import _resolve_group, equivariance_error
    from ._inputs import random_inputs

    _check_options(args)
    in_kinds = _kinds("--inputs", args.inputs)
    out_kinds = _kinds("--outputs", args.outputs)
    group = _resolve_group(args.group, in_kinds)
    dtype = getattr(torch, args.dtype)
    factory = _load(args.target)
    try:
        model = factory()
        if not callable(model):
            raise TypeError(f"{args.target} returned a {type(model).__name__}, not a model (an nn.Module "
                            "or a function)")
        if isinstance(model, torch.nn.Module):
            model = model.to(device=args.device, dtype=dtype).eval()
    except Exception as exc:
        raise _CheckError(f"building the model with {args.target}() failed", exc) from exc
    gen = torch.Generator().manual_seed(args.seed)
    inputs = random_inputs(in_kinds, args.n_points, dim=group.dim or 3, dtype=dtype, generator=gen,
                           device=args.device)
    try:  # one plain call first: an error of the model is reported as such, not as a checker error
        model(*inputs)
    except Exception as exc:
        shapes = ", ".join(f"{k} {tuple(x.shape)}" for k, x in zip(in_kinds, inputs))
        raise _CheckError(f"calling the model on random inputs ({shapes}; {args.dtype}) failed", exc) from exc
    try:
        report = equivariance_error(model, inputs, in_kinds, out_kinds[0] if len(out_kinds) == 1 else out_kinds,
                                    group, n_samples=args.samples, structured=not args.no_structured,
                                    generator=gen, dtype=dtype, atol=args.atol, rtol=args.rtol,
                                    per_graph=args.per_graph)
    except (ValueError, TypeError):
        raise  # malformed kinds or outputs that do not fit them: the checker names the argument
    except Exception as exc:
        raise _CheckError("the check failed with an error (on a transformed input or its output)", exc) from exc
    return in_kinds, out_kinds, report


def main(argv: list[str] | None = None) -> int:
    """Run ``geodl check``; returns the exit status.

    0: every check passed; 1: a check failed (the model is not equivariant); 2: anything else (bad
    arguments, a module that cannot be imported, a model that cannot be built or called), reported on
    one line of standard error, with the traceback under ``--traceback``.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # -h or an argparse error
        return int(exc.code or 0)
    saved_path = list(sys.path)  # _load may add the model's folder; a caller's process keeps its own
    try:
        in_kinds, out_kinds, report = _run(args)
    except Exception as exc:
        if args.traceback:  # the trace of the user's error, not of its wrapper
            traceback.print_exception(exc.exc if isinstance(exc, _CheckError) else exc)
        msg = str(exc) if isinstance(exc, _CheckError) else f"{type(exc).__name__}: {exc}"
        msg = " ".join(msg.split())  # one line, whatever the exception's text
        hint = " (--traceback shows where)" if isinstance(exc, _CheckError) and not args.traceback else ""
        print(f"geodl check: error: {msg}{hint}", file=sys.stderr)
        return 2
    finally:
        sys.path[:] = saved_path
    print(f"geodl check {args.target}  (inputs {','.join(in_kinds)}; outputs {','.join(out_kinds)}; "
          f"{args.n_points} points, seed {args.seed})")
    print(report)
    return 0 if report.passed else 1
