"""Fuzz of :mod:`geodl.bench`: the result writers and tables (read back), the plots (files
written), ``evaluate`` / ``train`` on a tiny regression (losses against a direct computation),
the task registry and ``Task``."""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, Mut, cases, check_entry, expect, fuzz, st, values, with_cases

S = st()

ROWS = S.lists(S.fixed_dictionaries({"model": S.sampled_from(["a", "b", "é"]),
                                     "mse": S.one_of(S.floats(-1e6, 1e6, allow_nan=False), S.integers(-5, 5), S.none())}),
               min_size=0, max_size=4)


@fuzz("geodl.bench.print_table", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({"rows": ROWS, "columns": S.sampled_from([["model", "mse"], ["model", ("mse", "MSE")], ["missing"]])}),
                          {"rows": values("abc", 3, None, [1, 2], names=("rows",)),
                           "columns": values(3, None, [("mse",)], [("a", "b", "c")], [3], names=("columns",))}))
def build_print_table(rows, columns):
    import io
    from geodl.bench import print_table

    def call():
        buf = io.StringIO()
        return print_table(rows, columns, file=buf), buf.getvalue()

    def verify(res):
        text, printed = res
        expect(isinstance(text, str) and text.strip() in printed, "returned text != printed text")
        lines = text.split("\n")
        expect(len(lines) >= len(rows) + 2, f"{len(lines)} lines for {len(rows)} rows")
        header = [c if isinstance(c, str) else c[1] for c in columns]
        expect(all(h in lines[0] for h in header), f"header {lines[0]!r}")

    return call, verify


@fuzz("geodl.bench.write_results", "geodl.bench.environment", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({"payload": S.fixed_dictionaries({"task": S.just("t"), "seed": S.integers(0, 3)}),
                                                "rows": ROWS, "path": S.sampled_from(["r.json", "sub/r.json"])}),
                          {"payload": values("abc", 3, None, [1], names=("payload",)),
                           "rows": values("abc", 3, [1], names=("rows",)),
                           "path": values(3, None, names=("path",))}))
def build_write_results(payload, rows, path):
    import json
    import pathlib
    import tempfile
    from geodl.bench import environment, write_results

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-"))
    target = tmp / path if isinstance(path, str) else path

    def call():
        return write_results(target, payload, rows)

    def verify(res):
        jp, cp = res
        data = json.loads(pathlib.Path(jp).read_text())
        expect(data["rows"] == json.loads(json.dumps(rows)), "rows not read back")
        expect(data["task"] == payload["task"] and "environment" in data, "payload / environment missing")
        expect(pathlib.Path(cp).exists(), "no CSV")
        env = environment(seeds=payload.get("seed"))
        expect(isinstance(env, dict) and "date" in env, "environment()")

    return call, verify


@fuzz("geodl.bench.plot_curves", examples=10)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "histories": S.sampled_from([{"a": [{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0}, {"epoch": 2, "train_loss": 0.5, "val_loss": 1.0}]},
                                 {"a": [], "b": [{"epoch": 1, "train_loss": 0.1, "val_loss": 0.2}]}]),
    "keys": S.sampled_from([("train_loss", "val_loss"), ("val_loss",)])}), {
    "histories": values("abc", 3, None, {"a": "x"}, names=("histories",)),
    "keys": values(3, None, names=("keys",))}))
def build_plot_curves(histories, keys):
    import pathlib
    import tempfile
    from geodl.bench import plot_curves

    path = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-")) / "c.png"

    def call():
        return plot_curves(histories, path, keys)

    def verify(p):
        expect(pathlib.Path(p).exists() and pathlib.Path(p).stat().st_size > 100, "no PNG written")

    return call, verify


@fuzz("geodl.bench.plot_sphere_maps", examples=6)
@with_cases(lambda: cases(S.fixed_dictionaries({"nside": S.sampled_from([1, 2]), "vmax": S.sampled_from([1.0, 0.5])}), {
    "nside": values("wrong length", names=("panels",)), "vmax": values(float("nan"), "1", 0.0, -1.0)}))
def build_plot_sphere_maps(nside, vmax):
    import pathlib
    import tempfile
    import numpy as np
    from geodl.bench import plot_sphere_maps

    path = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-")) / "m.png"
    npix = 12 * nside * nside if isinstance(nside, int) else 13
    panels = {"p": np.linspace(0, 1, npix)}

    def call():
        return plot_sphere_maps(panels, [path], vmax=vmax)

    def verify(paths):
        expect(len(paths) == 1 and pathlib.Path(paths[0]).exists(), "no PNG written")

    return call, verify


def _tiny_problem(n, seed):
    import torch
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0]]) + 0.5
    return TensorDataset(x, y)


def step_fn(model, batch):
    import torch

    x, y = batch
    loss = torch.nn.functional.mse_loss(model(x), y)
    return loss, {"mse": float(loss)}


@fuzz("geodl.bench.evaluate", examples=25)
@with_cases(lambda: cases(S.fixed_dictionaries({"n": S.integers(1, 9), "batch_size": S.integers(1, 5), "seed": S.integers(0, 9)}), {
    "batch_size": values(0, -1, True, 2.5, "2", None), "n": values(0, mode="maybe", names=("dataset",)),
    "seed": [Mut("step_fn not callable", "notfn", names=("step_fn",)), Mut("model not a module", "nomodel", names=("model",))]}))
def build_evaluate(n, batch_size, seed):
    import torch
    from geodl.bench import evaluate

    ds = _tiny_problem(n, seed if isinstance(seed, int) else 0)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)

    def call():
        return evaluate(model if seed != "nomodel" else "model", step_fn if seed != "notfn" else 3, ds, batch_size)

    def verify(logs):
        x, y = ds.tensors
        if not len(x):
            return
        with torch.no_grad():
            ref = float(torch.nn.functional.mse_loss(model(x), y))
        got = logs.get("loss", logs.get("mse"))
        expect(got is not None and abs(got - ref) <= 1e-5 * (1 + ref), f"loss {got} vs {ref} ({logs})")

    return call, verify


@fuzz("geodl.bench.train", examples=16)
@with_cases(lambda: cases(S.fixed_dictionaries({"epochs": S.integers(1, 2), "batch_size": S.integers(1, 4), "lr": S.sampled_from([0.01, 0.1])}), {
    "epochs": values(0, -1, True, 2.5, "2"), "batch_size": values(0, -1, True, "2"),
    "lr": values(-0.1, float("nan"), float("inf"), "0.1", 0.0)}))
def build_train(epochs, batch_size, lr):
    import math
    import pathlib
    import tempfile
    import torch
    from geodl.bench import TrainResult, train

    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="geodl-fuzz-")) / "run"
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)

    def call():
        return train(model, step_fn, _tiny_problem(8, 0), _tiny_problem(4, 1), epochs=epochs, batch_size=batch_size,
                     lr=lr, run_dir=run_dir, seed=0)

    def verify(res):
        expect(isinstance(res, TrainResult), type(res).__name__)
        expect(len(res.history) == epochs, f"{len(res.history)} history entries for {epochs} epochs")
        for h in res.history:
            expect(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]), f"non-finite loss {h}")

    return call, verify


@fuzz("geodl.bench.run_task", examples=12)
@with_cases(lambda: cases(S.fixed_dictionaries({"name": S.sampled_from(["nbody", "checkerboard", "landocean"]), "argv": S.just(["--help"])}), {
    "name": values("bogus", "", 3, None, names=("name", "task")), "argv": values("--quick", 3, None, names=("argv",))}))
def build_run_task(name, argv):
    from geodl.bench import run_task

    def call():
        try:
            return run_task(name, argv)
        except SystemExit as e:  # argparse's --help
            return ("exit", e.code)

    def verify(res):
        expect(res in (0, ("exit", 0)), f"--help gave {res!r}")

    return call, verify


@fuzz("geodl.bench.Task", examples=12)
@with_cases(lambda: cases(S.fixed_dictionaries({"name": S.just("fuzz-task"), "summary": S.just("a task"), "run": S.just("fn")}), {
    "name": values("", 3, None), "summary": values(3, None), "run": values(3, None, "not callable")}))
def build_task(name, summary, run):
    from geodl.bench import Task

    fn = (lambda args: 0) if run == "fn" else run

    def call():
        return Task(name, summary, fn)

    def verify(t):
        expect(t.name == name and t.run is fn, "fields")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_bench"))  # this file's builders only


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
