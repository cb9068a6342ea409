"""geodl bench inertia: a tiny run writes consistent results (all four models, tuned strengths, reload check)."""

from __future__ import annotations

import csv
import json
import math

import pytest

from geodl.bench import TASKS, run_task
from geodl.bench.tasks import inertia

TINY = ["--quick", "--no-progress", "--epochs", "2", "--n-train", "60", "--noise", "0.3,0.9", "--layers", "1",
        "--batch-size", "30"]


def test_registered():
    assert TASKS["inertia"] == "geodl.bench.tasks.inertia:main"


def test_tiny_run_writes_results(tmp_path):
    out = tmp_path / "res"
    assert run_task("inertia", [*TINY, "--out", str(out), "--run-dir", str(tmp_path / "runs")]) == 0
    doc = json.loads((out / "inertia_quick.json").read_text())
    assert doc["task"] == "inertia" and doc["quick"] and doc["noise_levels"] == [0.3, 0.9]
    assert doc["sizes"] == [60, 20, 20] and doc["models"] == list(inertia.MODELS)
    for noise in ("0.3", "0.9"):
        res = doc["results"][noise]
        for m in inertia.MODELS:
            r = res[m]
            assert math.isfinite(r["test_mse"]) and r["test_mse"] > 0
            assert set(r["equivariance_error"]) == set(inertia.GROUPS)
        # the hard model is O(3)-equivariant (float32 rounding), the MLP is not
        assert max(res["EMLP-O3"]["equivariance_error"].values()) < 1e-4
        assert min(res["MLP"]["equivariance_error"].values()) > 1e-3
        soft = res["Soft"]
        assert 1 <= soft["adjustments"] <= 2 and set(soft["strengths"]) == set(inertia.GROUPS)
        assert max(soft["strengths"].values()) == pytest.approx(1.0)
        # H ⊂ G => R_H ≤ R_G => λ_H ≥ λ_G
        assert soft["regulariser"]["O2z"] <= soft["regulariser"]["O3"] + 1e-12
        assert soft["strengths"]["O2z"] >= soft["strengths"]["O3"]
        assert soft["reload"] == {"identical_predictions": True, "identical_strengths": True}
        g = doc["goals"][f"soft_mse_noise{float(noise):g}"]
        assert g["met"] == (g["measured"] <= inertia.GOAL_MSE) and g["measured"] == soft["test_mse"]
    with open(out / "inertia_quick.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["model"] for r in rows} == set(inertia.MODELS)
    # rerunning resumes from the finished checkpoints and reports the same numbers
    assert run_task("inertia", [*TINY, "--out", str(out), "--run-dir", str(tmp_path / "runs")]) == 0
    again = json.loads((out / "inertia_quick.json").read_text())
    assert again["results"]["0.3"]["Soft"]["test_mse"] == doc["results"]["0.3"]["Soft"]["test_mse"]


@pytest.mark.parametrize("flags", [["--noise", "-1"], ["--noise", "0.3,0.3"], ["--noise", "nan"], ["--lr", "0"],
                                   ["--models", "MLP,Foo"], ["--free-lr-scale", "-2"], ["--power", "inf"],
                                   ["--strength", "-1"], ["--adjust-every", "0"]])
def test_bad_flags_name_the_flag(flags, capsys):
    with pytest.raises(SystemExit):
        inertia.TASK.parse(flags)
    err = capsys.readouterr().err
    assert flags[0] in err
