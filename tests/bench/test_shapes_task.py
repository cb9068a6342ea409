"""``geodl bench shapes`` / ``geodl bench modelnet``: every model x protocol in one tiny run, files,
invariance through the task, resume, protocol and folder errors, rotations."""

from __future__ import annotations

import json

import pytest
import torch

from geodl.bench import TASKS, run_task
from geodl.bench.tasks import modelnet as task

TINY = {"num_points": 32, "per_class": (2, 1, 2), "epochs": 1, "batch_size": 12, "lr": 1e-3,
        "pointnet": {"hidden_channels": (8, 16), "head_channels": (8,)},
        "dgcnn": {"k": 4, "conv_channels": (8,), "emb_channels": 16, "head_channels": (8,), "dropout": 0.0}}


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setitem(task.SETTINGS["shapes"], "quick", dict(TINY))
    monkeypatch.setitem(task.SETTINGS["modelnet"], "quick", {k: v for k, v in TINY.items() if k != "per_class"})
    monkeypatch.setenv("GEODL_DATA", str(tmp_path / "home"))


def _argv(tmp_path, *extra):
    return ["--quick", "--run-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "res"), "--no-progress", *extra]


def _check_invariant_models(rows, n_test):
    acc = {(r["model"], r["protocol"]): r["test_acc"] for r in rows}
    for m in task.MODELS:
        if m.startswith(("FA-", "TinvNN-")):  # exactly invariant: the test rotation changes nothing
            assert abs(acc[m, "z/z"] - acc[m, "z/SO3"]) <= 1.0 / n_test + 1e-9, m


def test_shapes_every_model_and_protocol(tmp_path, tiny, capsys):
    assert TASKS["shapes"] == "geodl.bench.tasks.modelnet:main_shapes"
    assert run_task("shapes", _argv(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "trained once per training rotation" in out and "z/z and z/SO3 share the z-trained model" in out
    doc = json.loads((tmp_path / "res" / "shapes_quick.json").read_text())
    rows = doc["rows"]
    assert {(r["model"], r["protocol"]) for r in rows} == {(m, p) for m in task.MODELS for p in task.PROTOCOLS}
    n_test = 2 * 12
    for r in rows:
        assert 0.0 <= r["test_acc"] <= 1.0 and r["params"] > 0 and r["epochs"] == 1
        assert 0 <= r["degenerate_test"] <= n_test
        assert r["train_rotation"] == r["protocol"].split("/")[0]
        if not r["model"].startswith(("FA-", "TinvNN-")):
            assert r["degenerate_test"] == 0
    # z/z and z/SO3 come from one training: the same run folder and validation accuracy
    for m in task.MODELS:
        zz, zs = [next(r for r in rows if r["model"] == m and r["protocol"] == p) for p in ("z/z", "z/SO3")]
        assert zz["run_dir"] == zs["run_dir"] and zz["val_acc"] == zs["val_acc"]
        so3 = next(r for r in rows if r["model"] == m and r["protocol"] == "SO3/SO3")
        assert so3["run_dir"] != zz["run_dir"]
    _check_invariant_models(rows, n_test)
    summary = {e["model"]: e for e in doc["summary"]}
    for m in task.MODELS:
        assert summary[m]["drop"] == pytest.approx(summary[m]["z/z"] - summary[m]["z/SO3"])
        assert m in out
    assert set(doc["goals"]) == set(task.MODELS) and doc["frame_group"] == "SE3"
    assert (tmp_path / "res" / "shapes_quick.csv").read_text().startswith("model,protocol")
    assert (tmp_path / "res" / "shapes_quick.png").read_bytes()[:4] == b"\x89PNG"


def test_subset_flags_and_resume(tmp_path, tiny):
    argv = _argv(tmp_path, "--models", "PointNet", "--protocols", "SO3/SO3,z/SO3", "--results-name", "sub")
    assert run_task("shapes", argv) == 0
    rows = json.loads((tmp_path / "res" / "sub.json").read_text())["rows"]
    assert [(r["model"], r["protocol"]) for r in rows] == [("PointNet", "z/SO3"), ("PointNet", "SO3/SO3")]
    assert all(r["resumed_from"] == 0 for r in rows)
    assert run_task("shapes", argv) == 0  # the same command continues from the finished checkpoints
    again = json.loads((tmp_path / "res" / "sub.json").read_text())["rows"]
    assert all(r["resumed_from"] == 1 for r in again)
    assert [r["test_acc"] for r in again] == [r["test_acc"] for r in rows]


def test_modelnet_fixture_end_to_end(tmp_path, tiny):
    from modelnet_fixture import write_modelnet_fixture

    root = write_modelnet_fixture(tmp_path / "data", version="10", train=2, test=1)
    assert run_task("modelnet", _argv(tmp_path, "--data", str(root))) == 0
    doc = json.loads((tmp_path / "res" / "modelnet_quick.json").read_text())
    assert doc["data"]["dataset"] == "ModelNet10" and doc["data"]["test_files"] == 10
    assert doc["data"]["train_files"] + doc["data"]["val_files"] == 20
    assert {(r["model"], r["protocol"]) for r in doc["rows"]} == {(m, p) for m in task.MODELS for p in task.PROTOCOLS}
    _check_invariant_models(doc["rows"], 10)
    assert (tmp_path / "res" / "modelnet_quick.png").read_bytes()[:4] == b"\x89PNG"


def test_modelnet_not_a_modelnet_folder(tmp_path, tiny):
    (tmp_path / "empty" / "stuff").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty"):
        run_task("modelnet", _argv(tmp_path, "--data", str(tmp_path / "empty"), "--models", "PointNet"))


@pytest.mark.parametrize("protocols", ["z/O3", "", "z/z,z/z", "SO3/z"])
def test_unknown_protocol(tmp_path, tiny, protocols):
    with pytest.raises(ValueError, match="protocols"):
        run_task("shapes", _argv(tmp_path, "--protocols", protocols))


def test_cli_errors_exit_2(tmp_path, tiny, capsys):
    from geodl.cli import main

    assert main(["bench", "shapes", *_argv(tmp_path, "--protocols", "z/x")]) == 2
    err = capsys.readouterr().err
    assert "protocols" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        run_task("shapes", _argv(tmp_path, "--models", "PointNet++"))
    assert exc.value.code == 2 and "--models" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run_task("modelnet", _argv(tmp_path))  # --data is required
    assert exc.value.code == 2 and "--data" in capsys.readouterr().err


def test_rotations_are_seeded_and_of_the_right_kind():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    for kind in ("z", "SO3"):
        R = task.rotations(kind, 64, generator=g())
        assert torch.equal(R, task.rotations(kind, 64, generator=g()))
        assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(64, 3, 3), atol=1e-5)
        assert torch.allclose(torch.linalg.det(R), torch.ones(64), atol=1e-5)
    Rz = task.rotations("z", 64, generator=g())
    assert torch.equal(Rz[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(64, 3))
    Rs = task.rotations("SO3", 2000, generator=g())
    assert Rs[:, 2, 2].abs().mean().item() == pytest.approx(0.5, abs=0.03)  # Haar: z-axis uniform on the sphere
    with pytest.raises(ValueError, match="kind"):
        task.rotations("O3", 2)


def test_train_and_test_rotations_share_one_training():
    assert task._split_kinds(["SO3/SO3", "z/SO3", "z/z"]) == {"z": ["z", "SO3"], "SO3": ["SO3"]}
    with pytest.raises(TypeError, match="protocols"):
        task.parse_protocols(3)
