"""geodl bench poincare: a tiny run writes consistent results; bad flags name the flag."""

from __future__ import annotations

import csv
import json
import math

import pytest

from geodl.bench import TASKS, run_task

TINY = ["--quick", "--no-progress", "--depth", "8", "--widths", "2,4,4", "--epochs", "1", "--seeds", "0",
        "--repeats", "1", "--warmup", "1", "--timing-batch", "4", "--cifar-batch", "2", "--peer-batch", "2",
        "--peer-size", "4", "--batch-size", "128"]


def test_registered():
    assert TASKS["poincare"] == "geodl.bench.tasks.poincare:main"


def test_tiny_run_writes_results(tmp_path, capsys):
    assert run_task("poincare", [*TINY, "--out", str(tmp_path / "res"), "--run-dir", str(tmp_path / "runs")]) == 0
    doc = json.loads((tmp_path / "res" / "poincare_quick.json").read_text())
    assert doc["task"] == "poincare" and doc["quick"] is True and doc["seeds"] == [0]
    assert doc["settings"]["depth"] == 8 and doc["settings"]["widths"] == [2, 4, 4] and doc["settings"]["epochs"] == 1
    assert {"torch", "cpu_threads", "platform", "seeds"} <= set(doc["environment"]) and doc["threads"] >= 1
    for m in ("ResNet", "PoincareResNet"):
        per = doc["accuracy"][m]["per_seed"]
        assert len(per) == 1 and all(0.0 <= a <= 1.0 for a in per)
        assert doc["accuracy"][m]["mean"] == pytest.approx(sum(per) / len(per))
    for key, shape in (("digits", [4, 1, 8, 8]), ("cifar32", [2, 3, 32, 32])):
        c = doc["comparison"][key]
        assert c["batch_shape"] == shape
        for r in ("step_ratio", "memory_ratio"):
            assert math.isfinite(c[r]) and c[r] > 0
        assert c["step_ratio"] == pytest.approx(c["step_s"]["PoincareResNet"] / c["step_s"]["ResNet"])
        assert c["memory_ratio"] == pytest.approx(c["saved_bytes"]["PoincareResNet"] / c["saved_bytes"]["ResNet"])
        assert all(v > 0 for v in c["saved_bytes"].values())
    goals = doc["goals"]
    for g in ("step_ratio_digits", "step_ratio_cifar32", "memory_ratio_digits", "memory_ratio_cifar32",
              "accuracy_gap_points"):
        assert isinstance(goals[g]["met"], bool) and math.isfinite(goals[g]["measured"])
        assert goals[g]["met"] == (goals[g]["measured"] <= goals[g]["limit"])
    gap = 100 * abs(doc["accuracy"]["PoincareResNet"]["mean"] - doc["accuracy"]["ResNet"]["mean"])
    assert goals["accuracy_gap_points"]["measured"] == pytest.approx(gap)
    peer = doc["hypll"]
    try:
        import hypll  # noqa: F401
    except ImportError:
        assert peer["status"] == "hypll: not installed"
    else:
        assert peer["status"] == "ok" and peer["input_shape"] == [2, 16, 4, 4]
        for r in ("time_ratio_hypll_over_geodl", "memory_ratio_hypll_over_geodl"):
            assert math.isfinite(peer[r]) and peer[r] > 0
    with open(tmp_path / "res" / "poincare_quick.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    kinds = [(r["kind"], r["model"]) for r in rows]
    assert ("accuracy", "ResNet") in kinds and ("accuracy", "PoincareResNet") in kinds
    assert ("step_cifar32", "PoincareResNet") in kinds and ("step_digits", "ResNet") in kinds
    for r in rows:
        if r["kind"] == "accuracy":
            assert 0.0 <= float(r["test_accuracy"]) <= 1.0
        else:
            assert float(r["step_s"]) > 0 and int(r["saved_bytes"]) > 0
    assert "accuracy_gap_points" in capsys.readouterr().out


@pytest.mark.parametrize("flag,value", [("--depth", "9"), ("--depth", "x"), ("--widths", "2,4"),
                                        ("--widths", "2,0,4"), ("--seeds", "0,0"), ("--seeds", "-1"),
                                        ("--lr", "0"), ("--lr", "nan"), ("--repeats", "0"), ("--batch-size", "-2")])
def test_bad_flags_name_the_flag(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_task("poincare", ["--quick", "--out", str(tmp_path), flag, value])
    assert exc.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
