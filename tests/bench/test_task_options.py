"""Bad ``geodl bench`` options are rejected by the parser before any data is generated or model
trained: exit status 2, no traceback, a message naming the option."""

import pytest

import geodl.bench._loop
import geodl.data
from geodl.bench import TASKS
from geodl.bench._task import name_list, torch_device
from geodl.cli import main


@pytest.fixture
def no_work(monkeypatch):
    """Data generation and training fail the test if they start."""

    def boom(*args, **kwargs):
        raise AssertionError("data generation or training started before the options were checked")

    for name in ("NBodyDataset", "landocean_dataset", "checkerboard_dataset"):
        monkeypatch.setattr(geodl.data, name, boom, raising=False)
    monkeypatch.setattr(geodl.bench._loop, "train", boom)


def _bench(tmp_path, capsys, task, *argv):
    with pytest.raises(SystemExit) as exc:
        main(["bench", task, "--quick", "--out", str(tmp_path / "out"), "--run-dir", str(tmp_path / "runs"),
              *(["--data-root", str(tmp_path / "data")] if task == "nbody" else []), *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exc.value.code, err.strip().splitlines()[-1]


@pytest.mark.parametrize("task, argv, option", [
    ("nbody", ["--epochs", "0"], "--epochs"),       # rejected before this issue too (kept)
    ("landocean", ["--epochs", "-3"], "--epochs"),  # rejected before this issue too (kept)
    ("nbody", ["--models", "SchNet"], "--models"),
    ("nbody", ["--models", ""], "--models"),
    ("nbody", ["--models", " , "], "--models"),
    ("nbody", ["--models", "EGNN,EGNN"], "--models"),
    ("landocean", ["--encoders", "nope"], "--encoders"),
    ("landocean", ["--encoders", ""], "--encoders"),
    ("checkerboard", ["--networks", "mlp"], "--networks"),
    ("checkerboard", ["--networks", ""], "--networks"),
    ("checkerboard", ["--encoders", "direct,spherec,direct"], "--encoders"),
    ("nbody", ["--device", "gpu"], "--device"),
    ("nbody", ["--results-name", "../elsewhere"], "--results-name"),
    ("nbody", ["--results-name", ""], "--results-name"),
])
def test_bad_options_exit_2_before_any_data(tmp_path, capsys, no_work, task, argv, option):
    code, last = _bench(tmp_path, capsys, task, *argv)
    assert code == 2
    assert f"argument {option}:" in last
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_unknown_encoder_message_lists_the_choices(tmp_path, capsys, no_work):
    from geodl.nn.location import ENCODERS

    _, last = _bench(tmp_path, capsys, "landocean", "--encoders", "direct,nope")
    assert "'nope'" in last and all(name in last for name in ENCODERS)


def test_unknown_task_exits_2(capsys):
    assert main(["bench", "no_such_task"]) == 2
    err = capsys.readouterr().err
    assert "no_such_task" in err and "Traceback" not in err and all(name in err for name in TASKS)


def test_cuda_device_without_cuda_is_refused_by_the_parser():
    import argparse

    import torch

    if torch.cuda.is_available():
        assert torch_device("cuda") == "cuda"
        with pytest.raises(argparse.ArgumentTypeError, match="CUDA device"):
            torch_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="CUDA is not available"):
            torch_device("cuda")


def test_good_lists_are_parsed_into_names():
    from geodl.bench.tasks import location, nbody

    args = nbody.TASK.parse(["--models", " EGNN , FA-GNN"])
    assert args.models == ["EGNN", "FA-GNN"]
    assert nbody.TASK.parse([]).models == list(nbody.MODELS)  # the default is the whole table
    args = location.LANDOCEAN.parse(["--encoders", "spherec+,direct", "--networks", "siren"])
    assert args.encoders == ["spherec+", "direct"] and args.networks == ["siren"]
    assert location.CHECKERBOARD.parse([]).encoders == location.ENCODER_ORDER


def test_name_list_accepts_a_lazy_registry():
    calls = []

    def registry():
        calls.append(1)
        return ["x", "y"]

    parse = name_list(registry, "thing")
    assert calls == [] and parse("y,x") == ["y", "x"] and calls == [1]
