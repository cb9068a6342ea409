"""The shared training loop: results, resume after a kill, DDP on gloo, result writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch.utils.data import TensorDataset

from geodl.bench import evaluate, plot_curves, print_table, train, write_results

# A small regression problem run in a subprocess (used by the kill/resume and the DDP tests).
# With SLEEP > 0 every step sleeps, so that the parent can kill it after the first checkpoint.
WORKER = textwrap.dedent(
    """
    import json, os, sys, time, torch
    from torch.utils.data import TensorDataset
    from geodl.bench import train

    run_dir, out, epochs, sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g)
    y = torch.sin(x @ torch.tensor([[1.0], [-2.0], [0.5]]))
    ds = TensorDataset(x, y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def step(m, b):
        if sleep:
            time.sleep(sleep)
        loss = ((m(b[0]) - b[1]) ** 2).mean()
        return loss, {"mae": float((m(b[0]) - b[1]).detach().abs().mean())}

    res = train(model, step, ds, ds, epochs=epochs, batch_size=16, lr=0.02, run_dir=run_dir,
                seed=3, deterministic=True, progress=False, lr_schedule="cosine", test_set=ds)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a second run in the same process group
        train(torch.nn.Linear(3, 1), step, ds, ds, epochs=1, batch_size=16, lr=0.02, run_dir=run_dir + "_2",
              progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        w = torch.cat([p.detach().flatten() for p in res.model.parameters()]).tolist()
        json.dump({"best": {k: v for k, v in res.best.items() if k != "time"}, "weights": w, "resumed_from": res.resumed_from,
                   "history": [{k: v for k, v in h.items() if k != "time"} for h in res.history]},
                  open(out, "w"))
    """
)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def _toy(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.5], [-0.5]]) + 0.3)


def _step(m, b):
    err = m(b[0]) - b[1]
    return (err ** 2).mean(), {"mae": float(err.detach().abs().mean())}


def _weights(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_train_history_best_and_test(tmp_path):
    torch.manual_seed(0)
    ds = _toy()
    res = train(torch.nn.Linear(2, 1), _step, ds, _toy(16, 1), epochs=12, batch_size=8, lr=0.05,
                run_dir=tmp_path / "r", test_set=_toy(16, 2), eval_every=4, progress=False)
    assert [h["epoch"] for h in res.history] == [4, 8, 12]
    assert {"train_loss", "val_loss", "val_mae", "lr", "time"} <= set(res.history[0])
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]
    assert res.best["val_loss"] == min(h["val_loss"] for h in res.history)
    # the returned model carries the best weights: re-evaluating gives the recorded numbers
    again = evaluate(res.model, _step, _toy(16, 2), batch_size=5)
    assert again["loss"] == pytest.approx(res.best["test_loss"], rel=1e-6)
    assert again["mae"] == pytest.approx(res.best["test_mae"], rel=1e-6)
    assert (tmp_path / "r" / "checkpoint.pt").exists()
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 12 and isinstance(ck["rng"]["cpu"], torch.Tensor)


def test_evaluate_weights_batches_by_size():
    ds = TensorDataset(torch.arange(5.0)[:, None])
    # loss per batch = mean of the batch; the weighted mean over uneven batches is the full mean
    out = evaluate(torch.nn.Identity(), lambda m, b: (b[0].mean(), {}), ds, batch_size=2)
    assert out["loss"] == pytest.approx(2.0)


def test_injected_stop_then_resume_matches_uninterrupted(tmp_path):
    def run(run_dir, callback=None):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Dropout(0.2), torch.nn.Linear(6, 1))
        return train(model, _step, _toy(), _toy(16, 1), epochs=6, batch_size=8, lr=0.03,
                     run_dir=run_dir, seed=5, lr_schedule="cosine", deterministic=True,
                     progress=False, callback=callback)

    full = run(tmp_path / "full")

    def stop(epoch, entry):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", callback=stop)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 3
    resumed = run(tmp_path / "cut")
    assert resumed.resumed_from == 3
    strip = lambda hs: [{k: v for k, v in h.items() if k != "time"} for h in hs]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert torch.equal(_weights(resumed.model), _weights(full.model))


EPOCHS = 4


def _run_worker(tmp, name, epochs=EPOCHS, sleep=0.0, ddp=False):
    script = tmp / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    pre = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if ddp else [])
    return pre + [str(script), str(tmp / name), str(tmp / f"{name}.json"), str(epochs), str(sleep)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted single-process run of the worker."""
    tmp = tmp_path_factory.mktemp("ref")
    r = subprocess.run(_run_worker(tmp, "ref"), env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads((tmp / "ref.json").read_text())


def test_killed_subprocess_resumes_to_same_metrics(tmp_path, reference):
    cmd = _run_worker(tmp_path, "cut", sleep=0.05)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the worker finished before it could be killed"
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= done < EPOCHS
    again = subprocess.run(cmd[:-1] + ["0"], env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    b = json.loads((tmp_path / "cut.json").read_text())
    assert b["resumed_from"] == done
    assert b["history"] == reference["history"]
    assert b["best"] == reference["best"] and b["weights"] == reference["weights"]


def test_ddp_two_gloo_processes_match_single_process(tmp_path, reference):
    r = subprocess.run(_run_worker(tmp_path, "two", ddp=True), env=_env(), capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    b = json.loads((tmp_path / "two.json").read_text())
    # same global batches (DistributedSampler order), gradients averaged over the two halves:
    # equal to the single-process run up to float summation order
    assert len(b["history"]) == EPOCHS
    assert b["weights"] == pytest.approx(reference["weights"], abs=1e-5)
    assert b["best"]["test_loss"] == pytest.approx(reference["best"]["test_loss"], rel=1e-4)
    assert (tmp_path / "two" / "checkpoint.pt").exists()
    assert (tmp_path / "two_2" / "checkpoint.pt").exists()  # a second train() in the same processes
    assert not list((tmp_path / "two").glob("*.tmp*"))


def test_resume_refuses_other_config(tmp_path):
    torch.manual_seed(0)
    train(torch.nn.Linear(2, 1), _step, _toy(), _toy(), epochs=1, batch_size=8, lr=0.1,
          run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="run_dir"):
        train(torch.nn.Linear(2, 1), _step, _toy(), _toy(), epochs=1, batch_size=8, lr=0.2,
              run_dir=tmp_path, progress=False)
    # resume=False starts over
    res = train(torch.nn.Linear(2, 1), _step, _toy(), _toy(), epochs=1, batch_size=8, lr=0.2,
                run_dir=tmp_path, progress=False, resume=False)
    assert res.resumed_from == 0


@pytest.mark.parametrize("kw, name", [({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"),
                                      ({"lr": 0.0}, "lr"), ({"lr_schedule": "step"}, "lr_schedule"),
                                      ({"eval_every": 0}, "eval_every"), ({"select": "nope"}, "select")])
def test_bad_arguments(tmp_path, kw, name):
    args = dict(epochs=1, batch_size=8, lr=0.1, run_dir=tmp_path, progress=False)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        train(torch.nn.Linear(2, 1), _step, _toy(), _toy(), **args)


def test_write_results_table_and_plot(tmp_path, capsys):
    rows = [{"model": "FA-GNN", "test_mse": 0.0061, "params": 1000},
            {"model": "EGNN", "test_mse": 0.0072, "note": "x"}]
    j, c = write_results(tmp_path / "out" / "r.json", {"task": "t", "seeds": [0]}, rows)
    doc = json.loads(j.read_text())
    assert doc["rows"] == rows and doc["task"] == "t"
    assert doc["environment"]["seeds"] == [0] and "torch" in doc["environment"]
    lines = c.read_text().splitlines()
    assert lines[0] == "model,test_mse,params,note" and lines[2] == "EGNN,0.0072,,x"
    text = print_table(rows, ["model", ("test_mse", "test MSE"), "params"])
    assert "test MSE" in capsys.readouterr().out
    assert text.splitlines()[3].split() == ["EGNN", "0.0072"]
    hist = {"a": [{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0}, {"epoch": 2, "train_loss": 0.5, "val_loss": 1.0}]}
    png = plot_curves(hist, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="histories"):
        plot_curves({}, tmp_path / "d.png")
