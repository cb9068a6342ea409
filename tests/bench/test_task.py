"""Task declarations: one set of common flags for every task, help, results without matplotlib."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geodl.bench import COMMON_FLAGS, TASKS, task_summaries
from geodl.bench._task import Task, common_options
from geodl.bench.tasks import articulated, inertia, location, modelnet, nbody, poincare, symsol, vinet
from geodl.cli import bench_help, main as cli_main

REPO = Path(__file__).resolve().parents[2]


def _task(name):
    return {"nbody": nbody.TASK, "landocean": location.LANDOCEAN, "checkerboard": location.CHECKERBOARD,
            "shapes": modelnet.SHAPES, "modelnet": modelnet.MODELNET,
            "vinet": vinet.TASK, "articulated": articulated.TASK, "poincare": poincare.TASK,
            "inertia": inertia.TASK, "symsol": symsol.SYMSOL, "pascal3d": symsol.PASCAL3D}[name]


def test_every_task_has_the_same_common_flags():
    parsed = {name: common_options(_task(name).parser()) for name in TASKS}
    assert parsed["nbody"] == list(COMMON_FLAGS)
    for name, opts in parsed.items():
        assert opts == parsed["nbody"], name
    # and the parsed values behave alike: --out / --run-dir are folders, resume and progress flags
    for name in ("nbody", "landocean"):
        a = _task(name).parse(["--quick", "--epochs", "3", "--seed", "2", "--device", "cpu", "--out", "o",
                               "--run-dir", "r", "--no-resume", "--no-progress"])
        assert (a.quick, a.epochs, a.seed, a.device, a.out, a.run_dir, a.resume, a.progress) == \
            (True, 3, 2, "cpu", Path("o"), Path("r"), False, False)
        d = _task(name).parse([])
        assert d.out == Path("geodl-bench") / name and d.run_dir == Path("geodl-bench") / name / "runs"
        assert d.resume and d.progress and d.epochs is None and d.seed == 0


@pytest.mark.parametrize("name", ["nbody", "landocean"])
def test_help_lists_the_common_flags(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", name, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in COMMON_FLAGS:
        assert flag in text


def test_bench_help_one_line_per_task(capsys):
    assert cli_main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == bench_help().strip()
    for name, summary in task_summaries().items():
        assert summary and sum(line.split()[:1] == [name] for line in out.splitlines()) == 1
        assert f"{name}  " in out and summary in out


def test_bad_epochs_rejected_by_every_task(capsys):
    for name in TASKS:
        with pytest.raises(SystemExit):
            _task(name).parse(["--epochs", "0"])


def test_task_declaration_runs_with_resolved_paths(tmp_path):
    seen = {}

    def run(args):
        seen.update(vars(args))
        return 0

    t = Task("demo", "a demo", run=run, add_arguments=lambda p: p.add_argument("--size", type=int, default=4))
    assert t.main(["--out", str(tmp_path), "--size", "7"]) == 0
    assert seen["out"] == tmp_path and seen["size"] == 7 and seen["run_dir"] == Path("geodl-bench/demo/runs")


_NO_MPL = """
import sys, warnings
sys.modules["matplotlib"] = None  # importing matplotlib (and pyplot) now raises ImportError
from geodl.bench import run_task
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    code = run_task(sys.argv[1], sys.argv[2:])
assert any("figures skipped" in str(x.message) for x in w), [str(x.message) for x in w]
print("EXIT", code)
"""


def _run_without_matplotlib(tmp_path, argv):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", _NO_MPL, *argv], env=env, capture_output=True,
                       text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "EXIT 0" in r.stdout


def test_nbody_writes_results_without_matplotlib(tmp_path):
    out = tmp_path / "res"
    _run_without_matplotlib(tmp_path, [
        "nbody", "--quick", "--epochs", "1", "--out", str(out), "--run-dir", str(tmp_path / "runs"),
        "--data-root", str(tmp_path / "data"), "--models", "EGNN", "--no-progress"])
    doc = json.loads((out / "nbody_quick.json").read_text())
    assert doc["rows"][0]["model"] == "EGNN" and doc["rows"][0]["test_mse"] > 0
    assert (out / "nbody_quick.csv").exists() and not (out / "nbody_quick.png").exists()


def test_landocean_writes_results_without_matplotlib(tmp_path):
    out = tmp_path / "res"
    _run_without_matplotlib(tmp_path, [
        "landocean", "--quick", "--epochs", "1", "--out", str(out), "--run-dir", str(tmp_path / "runs"),
        "--encoders", "direct,wrap", "--networks", "linear", "--no-progress"])
    doc = json.loads((out / "landocean.json").read_text())
    assert {(r["encoder"], r["network"]) for r in doc["rows"]} == {("direct", "linear"), ("wrap", "linear")}
    assert (out / "landocean.csv").exists() and not (out / "landocean_map.png").exists()
