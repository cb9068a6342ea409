"""``geodl bench vinet``: the three models in one tiny run, files, metrics against a direct
computation, symmetric targets, flag errors."""

from __future__ import annotations

import json

import pytest
import torch

from geodl.bench import TASKS, run_task
from geodl.bench.tasks import vinet as task

TINY = {"resolution": 8, "num_points": 48, "per_category": (2, 1, 2), "epochs": 1, "batch_size": 8, "lr": 1e-3,
        "vinet": {"channels": (4, 4, 8), "hidden": 4},
        "pointnet": {"hidden_channels": (8, 16), "head_channels": (8,)}}


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(task.SETTINGS, "quick", dict(TINY))


def _argv(tmp_path, *extra):
    return ["--quick", "--run-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "res"), "--no-progress", *extra]


def test_three_models_one_run(tmp_path, tiny, capsys):
    assert TASKS["vinet"] == "geodl.bench.tasks.vinet:main"
    assert run_task("vinet", _argv(tmp_path)) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "res" / "vinet_quick.json").read_text())
    cats = doc["data"]["categories"]
    assert len(cats) >= 5 and doc["models"] == list(task.MODELS)
    rows = doc["rows"]
    assert {(r["model"], r["category"]) for r in rows} == {(m, c) for m in task.MODELS for c in [*cats, "all"]}
    for r in rows:
        assert 0.0 <= r["median_deg"] <= 180.0 and 0.0 <= r["acc5"] <= r["acc10"] <= 1.0
        assert r["n_test"] == (2 * len(cats) if r["category"] == "all" else 2) and r["params"] > 0
    summary = {e["model"]: e for e in doc["summary"]}
    for m in task.MODELS:
        assert m in out
        assert summary[m]["median_all"] == next(r["median_deg"] for r in rows if r["model"] == m
                                                and r["category"] == "all")
    assert "VINet median below both baselines" in doc["goals"]
    assert (tmp_path / "res" / "vinet_quick.csv").read_text().startswith("model,category")
    assert (tmp_path / "res" / "vinet_quick.png").read_bytes()[:4] == b"\x89PNG"
    # the two VI-Nets differ (the ablation has zero padding), the same parameter count
    assert summary["VINet"]["params"] == summary["VINet-zeros"]["params"]


def test_subset_colored_and_resume(tmp_path, tiny):
    argv = _argv(tmp_path, "--models", "PointNet-6D,VINet", "--colored", "--results-name", "sub")
    assert run_task("vinet", argv) == 0
    doc = json.loads((tmp_path / "res" / "sub.json").read_text())
    assert doc["colored"] and [e["model"] for e in doc["summary"]] == ["PointNet-6D", "VINet"]
    assert run_task("vinet", argv) == 0  # continues from the finished checkpoints: same numbers
    again = json.loads((tmp_path / "res" / "sub.json").read_text())
    assert all(r["resumed_from"] == 1 for r in again["rows"])
    assert [r["median_deg"] for r in again["rows"]] == [r["median_deg"] for r in doc["rows"]]


def test_metrics_match_symmetric_rotation_error():
    from geodl.data import symmetric_rotation_error
    from geodl.groups import random_rotation

    g = torch.Generator().manual_seed(0)
    R_gt, R_pred = random_rotation(12, generator=g), random_rotation(12, generator=g)
    y = torch.arange(3).repeat(4)
    cats, syms = ("a", "b", "c"), ("z", "none", "none")
    m = task._metrics(cats, syms)
    err_a = symmetric_rotation_error(R_pred[y == 0], R_gt[y == 0], "z")
    assert m["median_a"](R_pred, R_gt, y) == pytest.approx(float(err_a.double().median()))
    all_err = torch.cat([err_a, symmetric_rotation_error(R_pred[y > 0], R_gt[y > 0], "none")]).double()
    assert m["median_all"](R_pred, R_gt, y) == pytest.approx(float(all_err.median()))
    assert m["acc10_all"](R_gt, R_gt, y) == 1.0 and m["acc5_b"](R_pred, R_gt, y) == float((err_b := symmetric_rotation_error(
        R_pred[y == 1], R_gt[y == 1], "none")).le(5).double().mean()) and len(err_b) == 4


def test_canonical_target_is_the_same_rotation_modulo_z():
    from geodl.data import symmetric_rotation_error
    from geodl.groups import random_rotation

    R = random_rotation(20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    T = task.canonical_target(R, torch.ones(20, dtype=torch.bool))
    assert torch.allclose(T.transpose(1, 2) @ T, torch.eye(3, dtype=torch.float64).expand(20, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(T), torch.ones(20, dtype=torch.float64))
    assert float(symmetric_rotation_error(T, R, "z").max()) < 1e-5  # the same rotation modulo the symmetry
    # R^T T is a rotation about z; a rotated-about-z R has the same representative
    D = R.transpose(1, 2) @ T
    assert torch.allclose(D[:, 2], torch.tensor([0.0, 0, 1], dtype=torch.float64).expand(20, 3), atol=1e-12)
    c, s = torch.cos(torch.tensor(0.7, dtype=torch.float64)), torch.sin(torch.tensor(0.7, dtype=torch.float64))
    Rz = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(task.canonical_target(R @ Rz, torch.ones(20, dtype=torch.bool)), T, atol=1e-12)
    assert torch.equal(task.canonical_target(R, torch.zeros(20, dtype=torch.bool)), R)


@pytest.mark.parametrize("flags, needle", [
    (["--resolution", "12"], "multiple of 8"),
    (["--resolution", "0"], "positive int"),
    (["--models", "VINet,ResNet"], "unknown model"),
    (["--models", "VINet,VINet"], "more than once"),
    (["--per-category", "2,1"], "three positive ints"),
    (["--num-points", "-3"], "positive int"),
    (["--results-name", "a/b"], "file name"),
])
def test_bad_flags_are_clean_errors(tmp_path, flags, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        run_task("vinet", _argv(tmp_path, *flags))
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_build_model_rejects_unknown_name():
    with pytest.raises(ValueError, match="name: expected one of"):
        task.build_model("ResNet", task.SETTINGS["quick"])
