"""Checkpoints are validated, not trusted: damaged files, out-of-range epochs, NaN weights and
states of another model raise a ValueError naming the file and ``run_dir`` (``--run-dir``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from geodl.bench import train
from geodl.bench._checkpoint import load_checkpoint, save_checkpoint


def _toy(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-1.0], [0.5]]))


def _step(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean(), {}, ()


def _model(n_out=1):
    torch.manual_seed(0)
    return torch.nn.Linear(3, n_out)


KW = dict(epochs=3, batch_size=8, lr=0.05, progress=False)


def _run(run_dir, model=None, **kw):
    return train(model if model is not None else _model(), _step, _toy(), _toy(8, 1),
                 run_dir=run_dir, **{**KW, **kw})


def _ckpt(run_dir):
    return run_dir / "checkpoint.pt"


def _edit(run_dir, fn):
    """Rewrite the checkpoint of ``run_dir`` through ``fn(ckpt) -> None``."""
    ck = torch.load(_ckpt(run_dir), weights_only=True)
    fn(ck)
    save_checkpoint(_ckpt(run_dir), ck)


def _raises_naming_file(run_dir, match, **kw):
    with pytest.raises(ValueError, match=match) as info:
        _run(run_dir, **kw)
    msg = str(info.value)
    assert str(_ckpt(run_dir)) in msg and "run_dir" in msg and "--run-dir" in msg, msg
    return msg


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_checkpoint_names_the_file_and_run_dir(tmp_path, damage):
    _run(tmp_path)
    raw = _ckpt(tmp_path).read_bytes()
    data = {"truncated": raw[: len(raw) // 2], "garbage": b"not a checkpoint\n" * 50,
            "empty": b""}[damage]
    _ckpt(tmp_path).write_bytes(data)
    _raises_naming_file(tmp_path, "not a readable checkpoint")


def test_a_pickled_object_is_refused_by_weights_only(tmp_path):
    import pathlib

    tmp_path.mkdir(exist_ok=True)
    torch.save({"config": None, "x": pathlib.PurePosixPath("a")}, _ckpt(tmp_path))
    _raises_naming_file(tmp_path, "not a readable checkpoint")


@pytest.mark.parametrize("epoch", [10 ** 9, -1, 4, 2.0, True, "2"])
def test_out_of_range_epoch_is_rejected(tmp_path, epoch):
    _run(tmp_path)
    _edit(tmp_path, lambda ck: ck.__setitem__("epoch", epoch))
    _raises_naming_file(tmp_path, r"epoch .* expected an integer in \[0, 3\]")


def test_in_range_epoch_resumes(tmp_path):
    a = _run(tmp_path / "a", epochs=3)
    _edit(tmp_path / "a", lambda ck: None)  # a rewritten but valid checkpoint is accepted
    b = _run(tmp_path / "a", epochs=3)
    assert b.resumed_from == 3 and b.best == a.best


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", ["model", "best_state"])
def test_non_finite_weights_are_rejected_naming_the_parameter(tmp_path, bad, key):
    _run(tmp_path)

    def poison(ck):
        ck[key]["weight"][0, 1] = bad

    _edit(tmp_path, poison)
    msg = _raises_naming_file(tmp_path, "non-finite")
    assert f"{key}['weight']" in msg


def test_non_finite_buffer_that_is_not_a_parameter_is_allowed(tmp_path):
    class WithBuffer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lin = torch.nn.Linear(3, 1)
            self.register_buffer("floor", torch.tensor(-math.inf))  # e.g. a running minimum

        def forward(self, x):
            return self.lin(x)

    _run(tmp_path, model=WithBuffer())
    assert _run(tmp_path, model=WithBuffer()).resumed_from == 3


def test_missing_keys_are_rejected(tmp_path):
    _run(tmp_path)
    _edit(tmp_path, lambda ck: ck.pop("optimizer"))
    msg = _raises_naming_file(tmp_path, "lacks")
    assert "optimizer" in msg


def test_checkpoint_of_another_model_is_rejected(tmp_path):
    _run(tmp_path)
    _raises_naming_file(tmp_path, "does not fit this model", model=_model(n_out=2))


def test_damaged_rng_state_is_rejected(tmp_path):
    _run(tmp_path)
    _edit(tmp_path, lambda ck: ck["rng"].__setitem__("cpu", torch.zeros(3)))
    _raises_naming_file(tmp_path, "does not fit")


def test_not_a_dict_is_rejected(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    save_checkpoint(_ckpt(tmp_path), [1, 2, 3])
    _raises_naming_file(tmp_path, "expected a dict")


def test_load_checkpoint_api(tmp_path):
    p = tmp_path / "checkpoint.pt"
    assert load_checkpoint(p, {}) is None
    save_checkpoint(p, {"config": {"lr": 0.1}, "epoch": 3})
    assert load_checkpoint(p, {"lr": 0.1})["epoch"] == 3  # no epochs in the config: no bound
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        load_checkpoint(p, {"lr": 0.1}, epochs=2)
    with pytest.raises(ValueError, match="lacks"):
        load_checkpoint(p, {"lr": 0.1}, required=("model",))
    with pytest.raises(ValueError, match="was written with"):
        load_checkpoint(p, {"lr": 0.2})
