"""``geodl bench articulated``: the three models in one tiny run, files, the mIoU protocol, flag errors."""

from __future__ import annotations

import json

import pytest
import torch

from geodl.bench import TASKS, run_task
from geodl.bench.tasks import articulated as task

TINY = {"num_points": 96, "per_class": (2, 1, 2), "epochs": 1, "batch_size": 4, "lr": 1e-3, "vote_weight": 1.0,
        "noise": 0.01,
        "apen": {"widths": (4, 4), "components": (6, 4), "bandwidths": (0.2, 0.3), "hidden_channels": (4, 8),
                 "head_channels": (4,)},
        "pointnet": {"hidden_channels": (8, 16), "head_channels": (8,), "width": 8}}


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(task.SETTINGS, "quick", dict(TINY))


def _argv(tmp_path, *extra):
    return ["--quick", "--run-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "res"), "--no-progress",
            "--motion-clouds", "4", "--motion-samples", "2", *extra]


def test_three_models_one_run(tmp_path, tiny, capsys):
    assert TASKS["articulated"] == "geodl.bench.tasks.articulated:main"
    assert run_task("articulated", _argv(tmp_path)) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "res" / "articulated_quick.json").read_text())
    classes = doc["data"]["classes"]
    assert doc["models"] == list(task.MODELS) and len(classes) >= 4
    assert {(r["model"], r["class"]) for r in doc["rows"]} == {(m, c) for m in task.MODELS for c in [*classes, "all"]}
    for e in doc["summary"]:
        assert 0.0 <= e["miou"] <= 1.0 and 0.0 <= e["shape_acc"] <= 1.0 and e["params"] > 0
        assert e["piecewise_error"] >= 0.0 and e["model"] in out
    apen = doc["piecewise"]["APEN"]
    assert len(apen["layers"]) == 2 and all(0.0 <= layer["probability"] <= 1.0 for layer in apen["layers"])
    assert {"error_seg", "fraction_sub", "error_seg_sub", "error_seg_not_sub"} <= set(apen)
    assert "APEN test mIoU above both baselines by more than 5 points" in doc["goals"]
    assert doc["data"]["joint_range_deg"] == [30.0, 75.0]
    assert (tmp_path / "res" / "articulated_quick.csv").read_text().startswith("model,class")
    assert (tmp_path / "res" / "articulated_quick.png").read_bytes()[:4] == b"\x89PNG"
    assert "P(not a sub-partition)" in out


def test_subset_and_resume(tmp_path, tiny):
    argv = _argv(tmp_path, "--models", "PointNet,APEN", "--results-name", "sub", "--joint-range", "20,60")
    assert run_task("articulated", argv) == 0
    doc = json.loads((tmp_path / "res" / "sub.json").read_text())
    assert [e["model"] for e in doc["summary"]] == ["PointNet", "APEN"] and doc["data"]["joint_range_deg"] == [20, 60]
    assert run_task("articulated", argv) == 0  # from the finished checkpoints: the same numbers
    again = json.loads((tmp_path / "res" / "sub.json").read_text())
    assert all(r["resumed_from"] == 1 for r in again["rows"])
    assert [r["test_miou"] for r in again["rows"]] == [r["test_miou"] for r in doc["rows"]]


def test_shape_miou_protocol():
    # class 0 has labels (0, 1, 2); label 2 absent from prediction and truth counts 1
    pred = torch.tensor([[0, 0, 1, 1], [3, 3, 4, 4]])
    part = torch.tensor([[0, 0, 0, 1], [3, 3, 4, 4]])
    m = task.shape_miou(pred, part, torch.tensor([0, 1]), [(0, 1, 2), (3, 4)])
    assert m.tolist() == pytest.approx([(2 / 3 + 1 / 2 + 1) / 3, 1.0])


def test_restricted_argmax_uses_the_class_labels():
    masks = task._class_masks([(0, 1), (2, 3)], 4)
    seg = torch.tensor([[[0.0, 1.0, 5.0, 0.0]], [[9.0, 0.0, 0.0, 1.0]]])
    assert task._restricted_argmax(seg, torch.tensor([0, 1]), masks).tolist() == [[1], [3]]


def test_metrics_match_a_direct_computation():
    labels = [(0, 1), (2, 3)]
    m = task._metrics(("a", "b"), labels)
    pred = torch.tensor([[0, 1, 1], [2, 2, 3], [0, 0, 0]])
    part = torch.tensor([[0, 1, 1], [2, 3, 3], [0, 1, 1]])
    y, cls = torch.tensor([0, 1, 0]), torch.tensor([0, 0, 0])
    per = task.shape_miou(pred, part, y, labels)
    assert m["miou"](pred, part, y, cls) == pytest.approx(float(per.mean()))
    assert m["miou_a"](pred, part, y, cls) == pytest.approx(float(per[[0, 2]].mean()))
    assert m["class_miou"](pred, part, y, cls) == pytest.approx(float((per[[0, 2]].mean() + per[1]) / 2))
    assert m["shape_acc"](pred, part, y, cls) == pytest.approx(2 / 3)


@pytest.mark.parametrize("flag", [["--joint-range", "80,30"], ["--joint-range", "x"], ["--models", "EPN"],
                                  ["--motion-std", "-1"], ["--per-class", "1,1"],
                                  ["--num-points", "48"]])
def test_bad_flags_exit_2(tmp_path, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        run_task("articulated", _argv(tmp_path, *flag))
    assert exc.value.code == 2
