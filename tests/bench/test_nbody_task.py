"""``geodl bench nbody``: both models in one run, table, results files, resume, registry."""

from __future__ import annotations

import json

import pytest
import torch

from geodl.bench import TASKS, run_task
from geodl.bench.tasks import nbody


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(nbody, "QUICK", {"sizes": (20, 10, 10), "epochs": 2, "eval_every": 1})
    monkeypatch.setattr(nbody, "MODELS", {"FA-GNN": ({"hidden_channels": 6, "num_layers": 2}, 1e-3),
                                          "EGNN": ({"hidden_channels": 8, "num_layers": 2}, 5e-4)})


def _argv(tmp_path, *extra):
    return ["--quick", "--data-root", str(tmp_path / "data"), "--run-dir", str(tmp_path / "runs"),
            "--out", str(tmp_path / "res"), "--batch-size", "10", "--no-progress", *extra]


def test_quick_run_trains_both_models_and_writes_results(tmp_path, tiny, capsys):
    assert run_task("nbody", _argv(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "FA-GNN" in out and "EGNN" in out and "0.0057 †" in out and "0.0071 †" in out
    doc = json.loads((tmp_path / "res" / "nbody_quick.json").read_text())
    rows = {r["model"]: r for r in doc["rows"]}
    assert set(rows) == {"FA-GNN", "EGNN"}
    for r in rows.values():
        assert r["epochs"] == 2 and r["test_mse"] > 0 and r["params"] > 0
        assert r["best_epoch"] in (1, 2)
    assert rows["FA-GNN"]["published_test_mse"] == 0.0057
    assert doc["seed"] == 0 and doc["environment"]["seeds"] == 0 and doc["data"]["sizes"] == [20, 10, 10]
    assert len(doc["histories"]["EGNN"]) == 2
    assert (tmp_path / "res" / "nbody_quick.csv").read_text().startswith("model,test_mse")
    assert (tmp_path / "res" / "nbody_quick.png").read_bytes()[:4] == b"\x89PNG"

    # the same command again resumes from the finished checkpoints and reports the same numbers
    assert run_task("nbody", _argv(tmp_path)) == 0
    again = {r["model"]: r for r in json.loads((tmp_path / "res" / "nbody_quick.json").read_text())["rows"]}
    for name in rows:
        assert again[name]["resumed_from"] == 2
        assert again[name]["test_mse"] == pytest.approx(rows[name]["test_mse"], rel=1e-6)


def test_step_is_the_position_mse():
    torch.manual_seed(0)
    loc, vel = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    charges, target = torch.ones(2, 5, 1), torch.randn(2, 5, 3)

    def predict_input(pos, v, q, batch):
        assert batch.tolist() == [0] * 5 + [1] * 5
        return pos

    loss, logs = nbody.step(predict_input, (loc, vel, charges, target))
    assert float(loss) == pytest.approx(float(((loc - target) ** 2).mean()))
    assert logs["mse"] == pytest.approx(float(loss))


def test_registry_and_arguments(tmp_path, tiny):
    assert TASKS["nbody"] == "geodl.bench.tasks.nbody:main"
    with pytest.raises(SystemExit) as exc:
        run_task("nbody", ["--help"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:  # rejected by the parser (exit status 2, --models named)
        run_task("nbody", _argv(tmp_path, "--models", "SchNet"))
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="name"):
        nbody.build_model("SchNet")


def test_constant_lr_and_egnn_input_distance_flags(tmp_path, tiny):
    """--lr-schedule none keeps each model's rate constant (the papers' protocol); --egnn-input-distance
    builds EGNN with the fixed squared-distance edge feature; both are part of the run folder's name, so
    a resume never mixes them with the default runs."""
    argv = _argv(tmp_path, "--lr-schedule", "none", "--egnn-input-distance", "--epochs", "3")
    assert run_task("nbody", argv) == 0
    doc = json.loads((tmp_path / "res" / "nbody_quick.json").read_text())
    assert doc["lr_schedule"] == "none" and doc["models"]["EGNN"]["input_distance"] is True
    for name, lr in (("FA-GNN", 1e-3), ("EGNN", 5e-4)):
        assert [h["lr"] for h in doc["histories"][name]] == [lr] * 3
    runs = {r["model"]: r["run_dir"] for r in doc["rows"]}
    assert runs["EGNN"].endswith("egnn_dist_constlr_seed0_e3") and "_constlr" in runs["FA-GNN"]
    # the default is still the cosine decay
    assert run_task("nbody", _argv(tmp_path, "--epochs", "3")) == 0
    lrs = [h["lr"] for h in json.loads((tmp_path / "res" / "nbody_quick.json").read_text())["histories"]["EGNN"]]
    assert lrs[0] == 5e-4 and lrs[-1] < lrs[0]


def test_time_limit_stops_at_an_epoch_and_resumes(tmp_path, tiny):
    """--time-limit: training stops after the first evaluated epoch past the limit (here: the first), the
    results say how far it got, and the same command continues from the checkpoint."""
    argv = _argv(tmp_path, "--epochs", "3", "--time-limit", "1e-9", "--models", "EGNN")
    assert run_task("nbody", argv) == 0
    row = json.loads((tmp_path / "res" / "nbody_quick.json").read_text())["rows"][0]
    assert row["epochs_reached"] == 1 and row["epochs"] == 3 and row["test_mse"] > 0
    assert run_task("nbody", argv) == 0  # resumes: one more epoch
    row = json.loads((tmp_path / "res" / "nbody_quick.json").read_text())["rows"][0]
    assert row["epochs_reached"] == 2 and row["resumed_from"] == 1
    assert run_task("nbody", _argv(tmp_path, "--epochs", "3", "--models", "EGNN")) == 0  # no limit: to the end
    row = json.loads((tmp_path / "res" / "nbody_quick.json").read_text())["rows"][0]
    assert row["epochs_reached"] == 3 and row["resumed_from"] == 2


def test_time_limit_must_be_positive(tmp_path, tiny, capsys):
    with pytest.raises(SystemExit) as exc:
        run_task("nbody", _argv(tmp_path, "--time-limit", "0"))
    assert exc.value.code == 2 and "--time-limit" in capsys.readouterr().err


def test_reference_data_flag(tmp_path, tiny):
    """--reference-data: the splits are the EGNN reference's numpy-seed-43 trajectories (the first ones of
    each part of its stream), recorded in the results and in the run folder's name."""
    from geodl.data import reference_initial_states

    argv = _argv(tmp_path, "--reference-data", "--models", "EGNN", "--epochs", "1")
    assert run_task("nbody", argv) == 0
    doc = json.loads((tmp_path / "res" / "nbody_quick.json").read_text())
    assert doc["data"]["reference_streams"] is True and doc["data"]["seed"] == 43
    assert doc["rows"][0]["run_dir"].endswith("egnn_refdata_seed0_e1")
    from geodl.data import NBodyDataset

    train = NBodyDataset("train", tmp_path / "data", sizes=(20, 10, 10), reference_streams=True)
    test = NBodyDataset("test", tmp_path / "data", sizes=(20, 10, 10), reference_streams=True)
    assert len(train) == 20 and len(test) == 10
    # the charges are the reference stream's: train trajectories 0.., test ones from 12,000 on
    assert torch.equal(train.charges[:3].double(), reference_initial_states(3)["charges"])
    assert torch.equal(test.charges[:2].double(), reference_initial_states(2, start=12000)["charges"])
