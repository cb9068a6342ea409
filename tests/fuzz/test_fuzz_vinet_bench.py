"""Fuzz of the vinet bench task (entries registered with ``@fuzz`` in this file): ``geodl bench
vinet`` through :func:`geodl.bench.run_task` with tiny settings (one model, a few clouds) and
drawn flags; the results file is read back (every category row plus ``all``, errors in [0, 180]
degrees, 5° accuracy <= 10° accuracy, the summary equal to the ``all`` row); bad flags must be
refused by the parser (exit status 2, reported here as a ``ValueError`` carrying argparse's
message, which names the flag)."""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, Mut, cases, check_entry, expect, fuzz, st, with_cases

S = st()
MODELS = ("VINet", "VINet-zeros", "PointNet-6D")
TINY = {"resolution": 8, "num_points": 24, "per_category": (1, 1, 1), "epochs": 1, "batch_size": 6, "lr": 1e-3,
        "vinet": {"channels": (4, 4, 4), "hidden": 4},
        "pointnet": {"hidden_channels": (8,), "head_channels": (8,)}}


def _flag(flag, value):
    return Mut(f"{flag} {value}", lambda kw: [*kw["argv"], flag, value], names=(flag,))


def _valid():
    return S.fixed_dictionaries({
        "argv": S.tuples(S.sampled_from(MODELS), S.sampled_from(["8", "16"]), S.integers(0, 3), S.booleans()).map(
            lambda t: ["--models", t[0], "--resolution", t[1], "--seed", str(t[2]), *(["--colored"] if t[3] else [])])})


@fuzz("geodl.bench.run_task.vinet", examples=8)
@with_cases(lambda: cases(_valid(), {"argv": [
    _flag("--resolution", "12"), _flag("--resolution", "0"), _flag("--resolution", "x"),
    _flag("--models", "VINet,Bogus"), _flag("--models", ","), _flag("--per-category", "1,1"),
    _flag("--per-category", "1,0,1"), _flag("--num-points", "0"), _flag("--batch-size", "-1"),
    _flag("--results-name", "a/b"), _flag("--epochs", "0")]}, valid_share=0.5))
def build_run_task_vinet(argv):
    import contextlib
    import io
    import json
    import tempfile
    from pathlib import Path

    from geodl.bench import run_task
    from geodl.bench.tasks import vinet

    vinet.SETTINGS["quick"] = dict(TINY)  # this worker's copy of the module
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-vinet-"))
    full = ["--quick", "--no-progress", "--out", str(tmp / "res"), "--run-dir", str(tmp / "runs"), *argv]

    def call():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = run_task("vinet", full)
        except SystemExit as e:
            if e.code == 2:  # argparse refused a flag: its message names the flag
                raise ValueError(err.getvalue().strip().splitlines()[-1]) from None
            raise
        return code, json.loads((tmp / "res" / "vinet_quick.json").read_text())

    def verify(res):
        code, doc = res
        expect(code == 0, f"exit code {code}")
        model = argv[argv.index("--models") + 1]
        cats = doc["data"]["categories"]
        rows = doc["rows"]
        expect([(r["model"], r["category"]) for r in rows] == [(model, c) for c in [*cats, "all"]], "rows")
        for r in rows:
            expect(0.0 <= r["median_deg"] <= 180.0 and 0.0 <= r["acc5"] <= r["acc10"] <= 1.0, f"metrics {r}")
        (s,) = doc["summary"]
        expect(s["median_all"] == rows[-1]["median_deg"], "summary = the all row")
        expect(doc["colored"] == ("--colored" in argv) and doc["settings"]["resolution"] == int(
            argv[argv.index("--resolution") + 1]), "settings")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_vinet_bench"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
