"""``geodl check MODULE:FACTORY --group G --inputs KINDS --outputs KINDS``: the equivariance suite
on any model from the command line. Exit status 0 when every check passes, 1 when one fails, 2 on a
usage error (bad arguments, a model that cannot be built or called)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

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
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance (default 0)")
    return p


def _load(target: str):
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"MODULE:FACTORY: expected e.g. 'my_models:build', got {target!r}")
    if module_name.endswith(".py") or os.sep in module_name:
        if not os.path.isfile(module_name):
            raise ValueError(f"MODULE:FACTORY: no file {module_name!r}")
        name = os.path.splitext(os.path.basename(module_name))[0]
        spec = importlib.util.spec_from_file_location(name, module_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:  # like `python -m`: modules in the current folder are found
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_name)
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


def main(argv: list[str] | None = None) -> int:
    """Run ``geodl check``; returns the exit status (0 pass, 1 fail, 2 usage error)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # -h or an argparse error
        return int(exc.code or 0)
    import torch

    from ._equivariance import _resolve_group, equivariance_error
    from ._inputs import random_inputs

    try:
        in_kinds = _kinds("--inputs", args.inputs)
        out_kinds = _kinds("--outputs", args.outputs)
        group = _resolve_group(args.group, in_kinds)
        dtype = getattr(torch, args.dtype)
        factory = _load(args.target)
        model = factory()
        if not callable(model):
            raise TypeError(f"MODULE:FACTORY: {args.target} returned a {type(model).__name__}, not a model")
        if isinstance(model, torch.nn.Module):
            model = model.to(device=args.device, dtype=dtype).eval()
        gen = torch.Generator().manual_seed(args.seed)
        inputs = random_inputs(in_kinds, args.n_points, dim=group.dim or 3, dtype=dtype, generator=gen,
                               device=args.device)
        report = equivariance_error(model, inputs, in_kinds, out_kinds[0] if len(out_kinds) == 1 else out_kinds,
                                    group, n_samples=args.samples, structured=not args.no_structured,
                                    generator=gen, dtype=dtype, atol=args.atol, rtol=args.rtol)
    except (ValueError, TypeError, ImportError, RuntimeError) as exc:
        print(f"geodl check: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"geodl check {args.target}  (inputs {','.join(in_kinds)}; outputs {','.join(out_kinds)}; "
          f"{args.n_points} points, seed {args.seed})")
    print(report)
    return 0 if report.passed else 1
