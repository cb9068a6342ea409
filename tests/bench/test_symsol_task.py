"""``geodl bench symsol`` / ``geodl bench pascal3d``: the three models in one tiny run, files, the uniform
log-likelihood, resume, flag errors; pascal3d on a tiny release folder written in the real layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from geodl.bench import TASKS, run_task
from geodl.bench.tasks import symsol as task

TINY = {"per_shape": (2, 1, 2), "size": 64, "lmax": 2, "channels": (4, 4, 4), "lift_channels": 2, "hidden": 2,
        "train_rec": 0, "eval_rec": 1, "epochs": 1, "batch_size": 4, "lr": 1e-3, "plot_images": 2}
GOAL = "induced lift ahead of the orthographic lift in average log-likelihood"


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(task.SETTINGS, "quick", dict(TINY))


def _argv(tmp_path, *extra):
    return ["--quick", "--run-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "res"), "--no-progress", *extra]


def test_three_models_one_run(tmp_path, tiny, capsys):
    assert TASKS["symsol"] == "geodl.bench.tasks.symsol:main_symsol"
    assert run_task("symsol", _argv(tmp_path, "--shapes", "tet,cone")) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "res" / "symsol_quick.json").read_text())
    assert doc["models"] == list(task.MODELS) and doc["shapes"] == ["tet", "cone"]
    assert {(r["model"], r["shape"]) for r in doc["rows"]} == {(m, s) for m in task.MODELS
                                                              for s in ("tet", "cone", "all")}
    by = {e["model"]: e for e in doc["summary"]}
    for e in doc["summary"]:
        for s in ("tet", "cone"):
            assert math.isfinite(e[f"ll_{s}"]) and e[f"ll_std_{s}"] >= 0 and 0 <= e[f"median_error_{s}"] <= 180
            assert 0 <= e[f"spread_{s}"] <= 180
        assert e["model"] in out
    for key in ("ll_tet", "ll_cone", "log_likelihood"):
        assert by["uniform"][key] == pytest.approx(-math.log(math.pi**2), abs=1e-4)
    assert by["uniform"]["ll_std"] < 1e-6 and by["uniform"]["params"] == 0
    # uniform mass: the nearest of 12 (tet) equivalent rotations is closer than Haar's mean angle to one (126.5°)
    assert 0 < by["uniform"]["spread_tet"] < 120
    assert by["orthographic"]["params"] > 0 and by["induced"]["params"] > 0
    assert {r["set_size"] for r in doc["rows"] if r["shape"] == "cone"} == {360}
    goal = doc["goals"][GOAL]
    assert goal["met"] == (goal["induced"] > goal["orthographic"])
    assert (tmp_path / "res" / "symsol_quick.csv").read_text().startswith("model,shape")
    assert (tmp_path / "res" / "symsol_quick.png").read_bytes()[:4] == b"\x89PNG"
    assert "goal (induced ahead of orthographic" in out


def test_subset_and_resume(tmp_path, tiny):
    argv = _argv(tmp_path, "--models", "induced,uniform", "--shapes", "cube", "--results-name", "sub")
    assert run_task("symsol", argv) == 0
    doc = json.loads((tmp_path / "res" / "sub.json").read_text())
    assert [e["model"] for e in doc["summary"]] == ["induced", "uniform"] and doc["goals"] == {}
    assert run_task("symsol", argv) == 0  # from the finished checkpoint: the same numbers
    again = json.loads((tmp_path / "res" / "sub.json").read_text())
    assert [r["resumed_from"] for r in again["rows"] if r["model"] == "induced"] == [1, 1]
    assert [r["log_likelihood"] for r in again["rows"]] == [r["log_likelihood"] for r in doc["rows"]]


def test_both_lifts_share_the_backbone_initialisation():
    models = []
    for name in ("orthographic", "induced"):
        torch.manual_seed(3)
        models.append(task.build_model(name, TINY))
    a, b = (m.backbone.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_inplane_angle_is_the_third_zyz_angle():
    from geodl.groups import axis_angle_to_matrix

    def R(axis, t):
        return axis_angle_to_matrix(torch.tensor(axis, dtype=torch.float64) * t)

    M = R([0, 0, 1], 0.7) @ R([0, 1, 0], 1.1) @ R([0, 0, 1], -2.0)
    assert float(task.inplane_angle(M)) == pytest.approx(-2.0)


@pytest.mark.parametrize("flag", [["--models", "ipdf"], ["--shapes", "sphere"], ["--per-shape", "1,1"],
                                  ["--lmax", "0"], ["--lmax", "9"], ["--batch-size", "-1"],
                                  ["--results-name", "a/b"], ["--epochs", "0"]])
def test_bad_flags_exit_2(tmp_path, flag):
    with pytest.raises(SystemExit) as exc:
        run_task("symsol", _argv(tmp_path, *flag))
    assert exc.value.code == 2


# ---------------------------------------------------------------------------------------------- pascal3d

def _release(root):
    """One category, car: three VOC train images, two ImageNet (train, val), two VOC val images."""
    sio = pytest.importorskip("scipy.io")
    Image = pytest.importorskip("PIL.Image")
    d = root / "PASCAL3D+_release1.1"
    voc = d / "PASCAL/VOCdevkit/VOC2012/ImageSets/Main"
    voc.mkdir(parents=True)
    (d / "Image_sets").mkdir()
    (voc / "car_train.txt").write_text("2008_000001  1\n2008_000002  1\n2008_000003  1\n")
    (voc / "car_val.txt").write_text("2009_000001  1\n2009_000002  1\n")
    (d / "Image_sets" / "car_imagenet_train.txt").write_text("n01_1\n")
    (d / "Image_sets" / "car_imagenet_val.txt").write_text("n01_2\n")
    fields = ("class", "viewpoint", "bbox", "occluded", "truncated", "difficult")
    rng = np.random.default_rng(0)
    stems = [("pascal", s, ".jpg") for s in ("2008_000001", "2008_000002", "2008_000003", "2009_000001",
                                             "2009_000002")] + [("imagenet", s, ".JPEG") for s in ("n01_1", "n01_2")]
    for i, (source, stem, ext) in enumerate(stems):
        for sub in ("Images", "Annotations"):
            (d / sub / f"car_{source}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(d / "Images" / f"car_{source}" /
                                                                                 f"{stem}{ext}")
        obj = np.zeros((1, 1), dtype=[(f, "O") for f in fields])
        obj[0, 0] = ("car", {"azimuth": 20.0 * i, "elevation": 10.0, "theta": 3.0 * i, "distance": 5.0},
                     np.array([5.0, 4.0, 30.0, 25.0]), 0, 0, 0)
        sio.savemat(d / "Annotations" / f"car_{source}" / f"{stem}.mat", {"record": {"objects": obj}})
    return d


def test_pascal3d_tiny_release(tmp_path, tiny, capsys):
    assert TASKS["pascal3d"] == "geodl.bench.tasks.symsol:main_pascal3d"
    data = _release(tmp_path / "data")
    assert run_task("pascal3d", _argv(tmp_path, "--data", str(data.parent), "--categories", "car", "--val", "1")) == 0
    doc = json.loads((tmp_path / "res" / "pascal3d_quick.json").read_text())
    assert doc["data"]["train"] == 4 and doc["data"]["val"] == 1 and doc["data"]["test"] == 2
    assert {(r["model"], r["category"]) for r in doc["rows"]} == {(m, c) for m in task.MODELS for c in ("car", "all")}
    by = {e["model"]: e for e in doc["summary"]}
    assert by["uniform"]["log_likelihood"] == pytest.approx(-math.log(math.pi**2), abs=1e-4)
    for e in doc["summary"]:
        assert 0 <= e["median_error_deg"] <= 180 and 0 <= e["acc30"] <= 1 and e["acc15"] <= e["acc30"]
    assert GOAL in doc["goals"]
    assert (tmp_path / "res" / "pascal3d_quick.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("flag", [[], ["--data"], ["--data", "/no/such/folder"], ["--categories", "tank"],
                                  ["--val", "0"], ["--max-train", "-2"]])
def test_pascal3d_bad_flags_exit_2(tmp_path, flag, capsys):
    if flag and flag[0] != "--data":
        flag = ["--data", str(tmp_path), *flag]
    with pytest.raises(SystemExit) as exc:
        run_task("pascal3d", _argv(tmp_path, *flag))
    assert exc.value.code == 2
    if flag[-1:] == ["/no/such/folder"]:
        assert "/no/such/folder" in capsys.readouterr().err


def test_pascal3d_folder_without_annotations_is_named(tmp_path, tiny):
    with pytest.raises(SystemExit, match="Annotations"):
        run_task("pascal3d", _argv(tmp_path, "--data", str(tmp_path)))
