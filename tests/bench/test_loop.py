"""The loop's extension points: optimiser/scheduler factories, epoch hooks, whole-set metrics,
and exact evaluation under DDP (each sample once, no DistributedSampler padding)."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
from torch.utils.data import TensorDataset

from geodl.bench import evaluate, train
from geodl.bench._loop import eval_shard


def _toy(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-1.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g))


def _step(model, batch):
    x, y = batch
    err = model(x) - y
    return (err ** 2).mean(), {"mae": float(err.detach().abs().mean())}, (err.detach().abs(),)


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def test_default_factories_equal_adam_and_cosine(tmp_path):
    kw = dict(epochs=4, batch_size=8, run_dir=None, seed=3, progress=False, weight_decay=1e-3)
    a = train(_model(), _step, _toy(), _toy(16, 1), lr=0.05, lr_schedule="cosine", **{**kw, "run_dir": tmp_path / "a"})
    b = train(_model(), _step, _toy(), _toy(16, 1),
              optimizer=lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=1e-3),
              scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4),
              **{**kw, "run_dir": tmp_path / "b"})
    strip = lambda hs: [{k: v for k, v in h.items() if k != "time"} for h in hs]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert torch.equal(a.model.weight, b.model.weight)


def test_factory_is_part_of_the_resume_key(tmp_path):
    train(_model(), _step, _toy(), _toy(), epochs=1, batch_size=8, run_dir=tmp_path, progress=False,
          optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    with pytest.raises(ValueError, match="run_dir"):
        train(_model(), _step, _toy(), _toy(), epochs=1, batch_size=8, lr=0.1, run_dir=tmp_path, progress=False)


def test_factory_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="lr"):
        train(_model(), _step, _toy(), _toy(), epochs=1, batch_size=8, run_dir=tmp_path)
    with pytest.raises(TypeError, match="optimizer"):
        train(_model(), _step, _toy(), _toy(), epochs=1, batch_size=8, run_dir=tmp_path, optimizer="adam")
    with pytest.raises(ValueError, match="scheduler"):
        train(_model(), _step, _toy(), _toy(), epochs=1, batch_size=8, lr=0.1, run_dir=tmp_path,
              lr_schedule="cosine", scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1))
    with pytest.raises(TypeError, match="hooks"):
        train(_model(), _step, _toy(), _toy(), epochs=1, batch_size=8, lr=0.1, run_dir=tmp_path, hooks=[1])


class _Regularised(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.register_buffer("strength", torch.tensor(1.0))

    def forward(self, x):
        return self.lin(x)


def test_hooks_see_every_epoch_and_their_state_is_checkpointed(tmp_path):
    calls = []

    def halve(epoch, model, history, *, entry, optimizer):
        calls.append((epoch, len(history), entry is not None, isinstance(optimizer, torch.optim.Adam)))
        model.strength.mul_(0.5)

    torch.manual_seed(0)
    res = train(_Regularised(), _step, _toy(), _toy(), epochs=4, batch_size=8, lr=0.01, run_dir=tmp_path,
                eval_every=2, progress=False, hooks=[halve])
    assert calls == [(1, 0, False, True), (2, 1, True, True), (3, 1, False, True), (4, 2, True, True)]
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert float(ckpt["model"]["strength"]) == 1 / 16


def test_metrics_over_the_whole_set_not_batch_means(tmp_path):
    ds = TensorDataset(torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]]), torch.zeros(5, 1))
    ident = torch.nn.Identity()

    def step(m, b):
        e = (m(b[0]) - b[1]).abs()
        return e.mean(), {}, e

    out = evaluate(ident, step, ds, batch_size=2, metrics={"median": lambda e: float(e.median()),
                                                            "n": lambda e: float(e.shape[0])})
    assert out["median"] == 2.0 and out["n"] == 5.0  # the mean of per-batch medians would be 3.83
    res = train(_model(), _step, _toy(), _toy(16, 1), epochs=2, batch_size=8, lr=0.01, run_dir=tmp_path,
                progress=False, test_set=_toy(12, 2), metrics={"median_err": lambda e: float(e.median())})
    assert all("val_median_err" in h for h in res.history) and "test_median_err" in res.best
    with pytest.raises(TypeError, match="outputs"):
        evaluate(ident, lambda m, b: (b[0].mean(), {}), ds, batch_size=2, metrics={"m": lambda e: 0.0})


@pytest.mark.parametrize("n, world", [(7, 2), (5, 3), (2, 4), (12, 4)])
def test_eval_shards_cover_every_sample_once(n, world):
    shards = [eval_shard(n, r, world) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def _ddp_worker(rank, world, init_file, result_file):
    import torch.distributed as dist

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ds = _toy(7, 5)  # 7 samples on 2 processes: a DistributedSampler would evaluate one twice
        out = evaluate(_model(), _step, ds, batch_size=4,
                       metrics={"median": lambda e: float(e.median()), "n": lambda e: float(e.numel()),
                                "first": lambda e: float(e[0, 0])})
        if rank == 0:
            torch.save(out, result_file)
    finally:
        dist.destroy_process_group()


def test_ddp_evaluation_is_exact_with_two_gloo_processes(tmp_path):
    import torch.multiprocessing as mp

    init = tempfile.mktemp(dir=tmp_path)
    result = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, init, str(result)), nprocs=2, join=True)
    ddp = torch.load(result, weights_only=True)
    single = evaluate(_model(), _step, _toy(7, 5), batch_size=4,
                      metrics={"median": lambda e: float(e.median()), "n": lambda e: float(e.numel()),
                               "first": lambda e: float(e[0, 0])})
    assert ddp["n"] == 7.0  # no padded duplicate
    assert ddp["median"] == single["median"] and ddp["first"] == single["first"]  # dataset order
    assert ddp["loss"] == pytest.approx(single["loss"], rel=1e-6)
    assert ddp["mae"] == pytest.approx(single["mae"], rel=1e-6)


def test_evaluation_runs_without_grad(tmp_path):
    """evaluate (and the per-epoch validation in train) call step_fn under no_grad, in eval mode."""
    from torch.utils.data import TensorDataset

    from geodl.bench import evaluate, train

    seen = []

    def step(m, b):
        seen.append((m.training, torch.is_grad_enabled()))
        return ((m(b[0]) - b[1]) ** 2).mean(), {}

    ds = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    evaluate(torch.nn.Linear(2, 1), step, ds, 4)
    assert seen and all(s == (False, False) for s in seen)
    seen.clear()
    train(torch.nn.Linear(2, 1), step, ds, ds, epochs=1, batch_size=4, lr=0.1, run_dir=tmp_path, progress=False)
    assert (True, True) in seen and (False, False) in seen and set(seen) == {(True, True), (False, False)}
