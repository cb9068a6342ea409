"""Fuzz of the articulated bench task (entries registered with ``@fuzz`` in this file): ``geodl bench
articulated`` through :func:`geodl.bench.run_task` with tiny settings (one model, one cloud per class and
split, one epoch, the piecewise error on two clouds) and drawn flags; the results file is read back
(every class row plus ``all``, mIoU and shape accuracy in [0, 1], a finite piecewise error, APEN's bound
terms per layer, the joint range and settings echoed); bad flags must be refused by the parser (exit
status 2, reported here as a ``ValueError`` carrying argparse's message, which names the flag)."""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, Mut, cases, check_entry, expect, fuzz, st, with_cases

S = st()
MODELS = ("APEN", "FA-PointNet", "PointNet")
TINY = {"num_points": 96, "per_class": (1, 1, 1), "epochs": 1, "batch_size": 4, "lr": 1e-3, "vote_weight": 1.0,
        "noise": 0.01,
        "apen": {"widths": (4,), "components": (3,), "bandwidths": (0.3,), "hidden_channels": (4,),
                 "head_channels": ()},
        "pointnet": {"hidden_channels": (4,), "head_channels": (), "width": 4}}


def _flag(flag, value):
    return Mut(f"{flag} {value}", lambda kw: [*kw["argv"], flag, value], names=(flag,))


def _valid():
    return S.fixed_dictionaries({
        "argv": S.tuples(S.sampled_from(MODELS), S.sampled_from(["30,75", "20,60", "10,170"]), S.integers(0, 3),
                         S.sampled_from(["0.5", "0.1"])).map(
            lambda t: ["--models", t[0], "--joint-range", t[1], "--seed", str(t[2]), "--motion-std", t[3]])})


@fuzz("geodl.bench.run_task.articulated", examples=8)
@with_cases(lambda: cases(_valid(), {"argv": [
    _flag("--joint-range", "80,30"), _flag("--joint-range", "x"), _flag("--joint-range", "30"),
    _flag("--models", "APEN,EPN"), _flag("--models", ","), _flag("--per-class", "1,1"),
    _flag("--per-class", "1,0,1"), _flag("--num-points", "0"), _flag("--batch-size", "-1"),
    _flag("--motion-std", "-1"), _flag("--motion-samples", "0"), _flag("--motion-clouds", "0"),
    _flag("--results-name", "a/b"), _flag("--epochs", "0")]}, valid_share=0.5))
def build_run_task_articulated(argv):
    import contextlib
    import io
    import json
    import math
    import tempfile
    from pathlib import Path

    from geodl.bench import run_task
    from geodl.bench.tasks import articulated

    articulated.SETTINGS["quick"] = dict(TINY)  # this worker's copy of the module
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-articulated-"))
    full = ["--quick", "--no-progress", "--out", str(tmp / "res"), "--run-dir", str(tmp / "runs"),
            "--motion-clouds", "2", "--motion-samples", "1", *argv]

    def call():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = run_task("articulated", full)
        except SystemExit as e:
            if e.code == 2:  # argparse refused a flag: its message names the flag
                raise ValueError(err.getvalue().strip().splitlines()[-1]) from None
            raise
        return code, json.loads((tmp / "res" / "articulated_quick.json").read_text())

    def verify(res):
        code, doc = res
        expect(code == 0, f"exit code {code}")
        model = argv[argv.index("--models") + 1]
        classes = doc["data"]["classes"]
        expect(doc["models"] == [model] and len(classes) >= 4, f"models {doc['models']}, classes {classes}")
        expect([(r["model"], r["class"]) for r in doc["rows"]] == [(model, c) for c in [*classes, "all"]], "rows")
        for r in doc["rows"]:
            expect(0.0 <= r["test_miou"] <= 1.0 and 0.0 <= r["val_miou"] <= 1.0, f"mIoU {r}")
        (s,) = doc["summary"]
        expect(s["model"] == model and 0.0 <= s["miou"] <= 1.0 and 0.0 <= s["shape_acc"] <= 1.0 and s["params"] > 0,
               f"summary {s}")
        expect(s["miou"] == doc["rows"][-1]["test_miou"], "summary = the all row")
        expect(math.isfinite(s["piecewise_error"]) and s["piecewise_error"] >= 0.0, f"piecewise error {s}")
        lo, hi = (float(v) for v in argv[argv.index("--joint-range") + 1].split(","))
        expect(doc["data"]["joint_range_deg"] == [lo, hi] and doc["data"]["per_class"] == [1, 1, 1]
               and doc["seed"] == int(argv[argv.index("--seed") + 1]), "settings echoed")
        if model == "APEN":
            pw = doc["piecewise"]["APEN"]
            expect(len(pw["layers"]) == 1 and all(0.0 <= t["probability"] <= 1.0 and 0.0 <= t["impurity"] <= 1.0
                                                  for t in pw["layers"]), f"bound terms {pw['layers']}")
            expect(0.0 <= pw["fraction_sub"] <= 1.0, "fraction_sub")
        expect((tmp / "res" / "articulated_quick.csv").read_text().startswith("model,class"), "csv")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_articulated_bench"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
