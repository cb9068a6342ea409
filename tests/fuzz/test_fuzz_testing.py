"""Fuzz of :mod:`geodl.testing`: the checkers must pass known-equivariant functions, fail known
non-equivariant ones (by their report, or ``AssertionError`` for the ``assert_*`` helpers), and
refuse malformed kinds, groups, sizes and dtypes with errors naming the argument."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, expect, finite, fuzz, seeded_tensor, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)

# (function name, in_kinds, out_kinds, group, equivariant?)
FUNCS = [
    ("centre", ("node:points",), "node:vectors", "E3+perm", True),
    ("centroid", ("node:points",), "points", "E3", True),
    ("norms", ("node:vectors",), "node:scalar", "O3+perm", True),
    ("shift", ("node:vectors",), "node:vectors", "SO3", False),
    ("first_coord", ("node:points",), "node:scalar", "SO3", False),
    ("pair", ("node:points", "node:vectors"), ("node:vectors", "node:scalar"), "E3+perm", True),
    ("energy", ("node:points",), "scalar", "E3+perm", True),
    ("radial", ("node:points",), "node:scalar", "SO3", True),
]


def function(name):
    """The test functions (module level, so that the worker finds them)."""
    import torch

    return {
        "centre": lambda p: p - p.mean(0),
        "centroid": lambda p: p.mean(0),
        "norms": lambda v: v.norm(dim=-1),
        "shift": lambda v: v + 1.0,
        "first_coord": lambda p: p[:, 0],
        "pair": lambda p, v: (v * 2.0, (p - p.mean(0)).norm(dim=-1) + v.norm(dim=-1)),
        "energy": lambda p: (p - p.mean(0)).norm(dim=-1).sum(),
        "radial": lambda p: p.norm(dim=-1),
    }[name] if isinstance(name, str) and name in [f[0] for f in FUNCS] else name


@S.composite
def _check_valid(draw):
    import torch

    name, ik, ok, group, equi = draw(S.sampled_from(FUNCS))
    n = draw(S.integers(2, 6))
    inputs = tuple(seeded_tensor((n, 3), draw(SEEDS)) for _ in ik)
    return dict(fn=name, inputs=inputs, in_kinds=ik, out_kinds=ok, group=group,
                n_samples=draw(S.integers(1, 2)), dtype=draw(S.sampled_from([None, torch.float64])))


_CHECK_MUTS = {
    "fn": values(3, None, "not a function", names=("fn",)),
    "inputs": [Mut("a tensor, not a tuple", lambda kw: kw["inputs"][0], mode="maybe", names=("inputs", "in_kinds")),
               Mut("one input too many", lambda kw: kw["inputs"] + kw["inputs"][:1], names=("inputs", "in_kinds")),
               Mut("wrong trailing size", lambda kw: tuple(x[:, :2] for x in kw["inputs"]), names=("inputs", "x", "in_kinds")),
               Mut("a NaN", lambda kw: tuple(x * float("nan") for x in kw["inputs"]), mode="nonfinite")],
    "in_kinds": values(("bogus",), ("sh:-1",), 3, None, ("node:points", "node:points", "node:points")),
    "out_kinds": values("bogus", 3, None, ("node:vectors", "node:vectors", "node:vectors"),
                        names=("out_kinds", "outputs", "output")),
    "group": values("E4", 3, None, "", "E3+perm+perm"),
    "n_samples": values(-1, True, 2.5, "2"),
    "dtype": values("float64", "int64", 3),
}


def _int64(v):
    import torch

    return torch.int64 if v == "int64" else v


def _checker(which, fn, inputs, in_kinds, out_kinds, group, n_samples, dtype):
    import geodl.testing as T

    f = function(fn)
    equi = next((e for name, *_, e in FUNCS if name == fn), None)

    def call():
        kw = dict(n_samples=n_samples, generator=0, dtype=_int64(dtype))
        if which == "equivariance_error":
            return T.equivariance_error(f, inputs, in_kinds, out_kinds, group, **kw)
        try:
            if which == "assert_invariant":
                return T.assert_invariant(f, inputs, in_kinds, group, **kw)
            return T.assert_equivariant(f, inputs, in_kinds, out_kinds, group, **kw)
        except AssertionError as e:
            return ("AssertionError", str(e))

    def verify(res):
        if which == "equivariance_error":
            expect(bool(res.passed) == equi, f"passed={res.passed} for a function that is {'' if equi else 'not '}equivariant")
            for row in res.rows:
                expect(row.max_error == row.max_error, "NaN error in a row")
            return
        if which == "assert_invariant":
            # invariant: scalar outputs, and node-level ones only where the group permutes no nodes
            kinds = (out_kinds,) if isinstance(out_kinds, str) else tuple(out_kinds)
            inv = equi and all(k == "scalar" or (k == "node:scalar" and "perm" not in group) for k in kinds)
            expect(isinstance(res, tuple) != bool(inv), f"invariance verdict wrong: {str(res)[:200]}")
            return
        expect(isinstance(res, tuple) != bool(equi), f"equivariance verdict wrong: {str(res)[:200]}")

    return call, verify


@fuzz("geodl.testing.equivariance_error", examples=45)
@with_cases(lambda: cases(_check_valid(), _CHECK_MUTS))
def build_equivariance_error(**kw):
    return _checker("equivariance_error", **kw)


@fuzz("geodl.testing.assert_equivariant", examples=35)
@with_cases(lambda: cases(_check_valid(), _CHECK_MUTS))
def build_assert_equivariant(**kw):
    return _checker("assert_equivariant", **kw)


@fuzz("geodl.testing.assert_invariant", examples=35)
@with_cases(lambda: cases(_check_valid(), {k: v for k, v in _CHECK_MUTS.items() if k != "out_kinds"}))
def build_assert_invariant(**kw):
    return _checker("assert_invariant", **kw)


@S.composite
def _module_valid(draw):
    sizes = draw(S.lists(S.integers(3, 5), min_size=1, max_size=2))
    n = sum(sizes)
    seed = draw(SEEDS)
    import torch

    batch = torch.tensor([g for g, k in enumerate(sizes) for _ in range(k)])
    return dict(module=draw(S.sampled_from(["egnn", "pointnet"])), pos=seeded_tensor((n, 3), seed),
                batch=batch, checks=draw(S.sampled_from([("equivariance",), ("equivariance", "batching"),
                                                         ("state_dict",), ("side_effects",)])))


@fuzz("geodl.testing.check_module", examples=25)
@with_cases(lambda: cases(_module_valid(), {
    "module": values(3, None, "linear", names=("module",)),
    "checks": values(("bogus",), "equivariance", 3, names=("checks",)),
    "pos": tensor_muts("pos", shapes={"(N, 2)": lambda x: x[:, :2]}, names=("pos", "inputs"))[2:5]}))
def build_check_module(module, pos, batch, checks):
    import torch
    from geodl.testing import check_module

    def make():
        torch.manual_seed(0)
        if module == "egnn":
            from geodl.nn import EGNN

            return EGNN(3, 1).double(), dict(x=torch.ones(len(pos), 1, dtype=torch.float64), pos=pos, batch=batch,
                                              vel=torch.zeros_like(pos) + 0.5)
        if module == "pointnet":
            from geodl.nn import PointNet

            return PointNet(0, 2, (4,), (4,)).double(), dict(pos=pos, batch=batch)
        if module == "linear":
            return torch.nn.Linear(3, 3).double(), dict(input=pos)
        return module, dict(pos=pos)

    def call():
        m, inputs = make()
        try:
            return check_module(m, inputs, checks=checks)
        except AssertionError as e:  # its report of failed items: counted as an error naming what failed
            raise ValueError(f"check_module report: {e}") from None

    def verify(rep):
        expect(bool(rep.passed), f"check_module failed on a library module:\n{str(rep)[:600]}")
        expect(set(rep.items) == set(checks), f"items {list(rep.items)}")

    return call, verify


KINDS = ["node:points", "node:vectors", "node:scalar", "edge_index", "batch", "node:sh:2", "node:so3:1", "rotation",
         "node:tensor2", "perm", "equirect:4x8"]


@fuzz("geodl.testing.random_inputs", examples=100)
@with_cases(lambda: cases(S.fixed_dictionaries({"kinds": S.lists(S.sampled_from(KINDS), min_size=1, max_size=3),
                                                "n_points": S.integers(1, 8), "dim": S.sampled_from([2, 3]),
                                                "seed": SEEDS}), {
    "kinds": values("node:points", ["bogus"], [3], None, names=("kinds", "kind")),
    "n_points": values(0, -1, True, 2.5, "4", HUGE),
    "dim": values(0, 1, 4, True, "3"),
    "seed": [Mut("generator is a string", "gen", names=("generator",))]}))
def build_random_inputs(kinds, n_points, dim, seed):
    import torch
    from geodl.testing import random_inputs

    gen = seed if isinstance(seed, str) else torch.Generator().manual_seed(seed)

    def call():
        return random_inputs(kinds, n_points, dim=dim, generator=gen)

    def verify(out):
        expect(isinstance(out, tuple) and len(out) == len(kinds), f"{type(out).__name__} of {len(out)}")
        for k, x in zip(kinds, out):
            finite(x)
            if k.startswith("node:") or k in ("batch", "perm"):
                expect(x.shape[0] == n_points, f"{k}: {tuple(x.shape)}")
            if k in ("node:points", "node:vectors"):
                expect(x.shape == (n_points, dim), f"{k}: {tuple(x.shape)}")
            if k == "edge_index":
                expect(x.shape[0] == 2 and (x.numel() == 0 or int(x.max()) < n_points), f"edge_index {tuple(x.shape)}")

    return call, verify


@fuzz("geodl.testing.devices", "geodl.testing.dtypes", "geodl.testing.default_rtol", examples=24)
@with_cases(lambda: cases(S.fixed_dictionaries({"which": S.sampled_from(["devices", "dtypes", "default_rtol"]),
                                                "arg": S.sampled_from([True, False, "float32", "float64", "bfloat16"])}), {
    "arg": values(3, "float", None, names=("dtype",))}))
def build_small(which, arg):
    import torch
    import geodl.testing as T

    if arg in (3, "float", None):  # the invalid values are for default_rtol's dtype
        which = "default_rtol"

    def call():
        if which == "default_rtol":
            a = getattr(torch, arg) if arg in ("float32", "float64", "bfloat16") else arg
            a = torch.float32 if isinstance(a, bool) else a
            return T.default_rtol(a)
        return getattr(T, which)(arg if isinstance(arg, bool) else True)

    def verify(out):
        if which == "devices":
            expect(out[0] == "cpu" and ("cuda" in out) == (arg is not False and torch.cuda.is_available()), f"{out}")
        elif which == "dtypes":
            expect(out[:2] == [torch.float32, torch.float64], f"{out}")
        else:
            expect(isinstance(out, float) and 0 < out < 1, f"{out}")

    return call, verify


@fuzz("geodl.testing.atol_floor", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({"dtype": S.sampled_from(["float32", "float64", "bfloat16"]),
                                                "numel": S.integers(0, 10**6), "scale": S.floats(0, 1e6),
                                                "rtol": S.sampled_from([None, 1e-3])}), {
    "dtype": values("float", 3, None, names=("dtype",)), "numel": values(-1, True, 2.5, "3"),
    "scale": values(-1.0, float("nan"), "1"), "rtol": values(-1.0, float("nan"), "0.1")}))
def build_atol_floor(dtype, numel, scale, rtol):
    import math
    import torch
    from geodl.testing import atol_floor, default_rtol

    dt = getattr(torch, dtype) if dtype in ("float32", "float64", "bfloat16") else dtype

    def call():
        return atol_floor(dt, numel, scale, rtol)

    def verify(a):
        r = rtol if rtol is not None else default_rtol(dt)
        ref = min(16 * torch.finfo(dt).eps * max(scale, 1.0) * math.sqrt(max(numel, 1)), r * max(scale, 1.0))
        expect(isinstance(a, float) and abs(a - ref) <= 1e-9 * max(ref, 1e-300), f"{a} vs {ref}")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_testing"))  # this file's builders only


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
