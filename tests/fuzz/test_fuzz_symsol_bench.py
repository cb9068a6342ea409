"""Fuzz of the symsol bench task (entries registered with ``@fuzz`` in this file): ``geodl bench symsol``
through :func:`geodl.bench.run_task` with tiny settings (one or two models, one or two shapes, one image per
shape and split, one epoch) and drawn flags; the results file is read back (a row per model and shape plus
``all``, finite log-likelihoods, the uniform model at -log π², errors in [0, 180], the settings echoed);
bad flags must be refused by the parser (exit status 2, reported here as a ``ValueError`` carrying
argparse's message, which names the flag)."""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, Mut, cases, check_entry, expect, fuzz, st, with_cases

S = st()
TINY = {"per_shape": (1, 1, 1), "size": 64, "lmax": 1, "channels": (2, 2, 2), "lift_channels": 2, "hidden": 2,
        "train_rec": 0, "eval_rec": 0, "epochs": 1, "batch_size": 2, "lr": 1e-3, "plot_images": 1}


def _flag(flag, value):
    return Mut(f"{flag} {value}", lambda kw: [*kw["argv"], flag, value], names=(flag,))


def _valid():
    return S.fixed_dictionaries({
        "argv": S.tuples(S.sampled_from(["uniform", "induced", "orthographic,uniform", "induced,orthographic"]),
                         S.sampled_from(["tet", "cube,cylO", "tetX", "icosa"]), S.integers(0, 3),
                         S.sampled_from(["1", "2"])).map(
            lambda t: ["--models", t[0], "--shapes", t[1], "--seed", str(t[2]), "--lmax", t[3]])})


@fuzz("geodl.bench.run_task.symsol", examples=6)
@with_cases(lambda: cases(_valid(), {"argv": [
    _flag("--models", "ipdf"), _flag("--models", ","), _flag("--shapes", "sphere"), _flag("--shapes", "tet,tet"),
    _flag("--per-shape", "1,1"), _flag("--per-shape", "1,0,1"), _flag("--lmax", "0"), _flag("--lmax", "x"),
    _flag("--batch-size", "-1"), _flag("--results-name", "a/b"), _flag("--epochs", "0")]}, valid_share=0.5))
def build_run_task_symsol(argv):
    import contextlib
    import io
    import json
    import math
    import tempfile
    from pathlib import Path

    from geodl.bench import run_task
    from geodl.bench.tasks import symsol

    symsol.SETTINGS["quick"] = dict(TINY)  # this worker's copy of the module
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-symsol-"))
    full = ["--quick", "--no-progress", "--out", str(tmp / "res"), "--run-dir", str(tmp / "runs"), *argv]

    def call():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = run_task("symsol", full)
        except SystemExit as e:
            if e.code == 2:  # argparse refused a flag: its message names the flag
                raise ValueError(err.getvalue().strip().splitlines()[-1]) from None
            raise
        return code, json.loads((tmp / "res" / "symsol_quick.json").read_text())

    def verify(res):
        code, doc = res
        expect(code == 0, f"exit code {code}")
        models = argv[argv.index("--models") + 1].split(",")
        shapes = argv[argv.index("--shapes") + 1].split(",")
        expect(doc["models"] == models and doc["shapes"] == shapes, f"models {doc['models']}, shapes {doc['shapes']}")
        expect([(r["model"], r["shape"]) for r in doc["rows"]] == [(m, s) for m in models for s in [*shapes, "all"]],
               "rows")
        for r in doc["rows"]:
            expect(math.isfinite(r["log_likelihood"]) and r["ll_std"] >= 0 and 0 <= r["median_error_deg"] <= 180,
                   f"row {r}")
            if r["model"] == "uniform":
                expect(abs(r["log_likelihood"] + math.log(math.pi**2)) < 1e-4, f"uniform {r}")
        expect(doc["settings"]["lmax"] == int(argv[argv.index("--lmax") + 1])
               and doc["seed"] == int(argv[argv.index("--seed") + 1]), "settings echoed")
        expect(("induced lift ahead of the orthographic lift in average log-likelihood" in doc["goals"])
               == ({"induced", "orthographic"} <= set(models)), f"goals {doc['goals']}")
        expect((tmp / "res" / "symsol_quick.csv").read_text().startswith("model,shape"), "csv")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_symsol_bench"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
