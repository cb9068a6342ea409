"""The one training loop shared by every benchmark task, plus result writers.

:func:`train` runs a single process, or data-parallel under ``torchrun`` (``WORLD_SIZE > 1``:
process group on gloo for CPU / nccl for CUDA, ``DistributedDataParallel``,
``DistributedSampler``). The shuffling order is the one ``DistributedSampler`` draws from
``seed + epoch`` in both cases, so a 2-process run sees the same global batches as a single process
(``batch_size`` is the *global* batch size, split evenly over the processes).

Every epoch rank 0 writes ``run_dir/checkpoint.pt`` atomically (temporary file + ``os.replace``):
model, optimiser, scheduler, RNG states (as tensors), history and the best weights so far. With
``resume=True`` a rerun of the same call continues from that checkpoint (loaded with
``torch.load(weights_only=True)``); in ``deterministic=True`` mode an interrupted and resumed run
ends with the same metrics and weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from geodl._checks import check_choice

__all__ = ["TrainResult", "train", "evaluate", "write_results", "print_table", "plot_curves"]

StepFn = Callable[[torch.nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    history : list of dict
        One entry per evaluated epoch: ``epoch`` (1-based), ``train_loss``, ``val_loss``,
        ``val_<log>`` for every log of ``step_fn``, ``lr`` and ``time`` (seconds of that epoch).
    best : dict
        The history entry selected by ``select`` (lowest value), plus ``test_loss`` and
        ``test_<log>`` when a test set was given (evaluated with the best weights).
    model : torch.nn.Module
        The model with the best weights loaded (not wrapped in DDP).
    run_dir : pathlib.Path
        Where the checkpoint lives.
    resumed_from : int
        The epoch the run continued from (0 for a fresh start).
    """

    history: list[dict]
    best: dict
    model: torch.nn.Module
    run_dir: Path
    resumed_from: int = 0


# ----------------------------------------------------------------------------- helpers


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if hasattr(batch, "to"):
        return batch.to(device)
    return batch


def _dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _init_dist(device: torch.device, world: int) -> None:
    """Start the process group if needed.

    It stays up for later :func:`train` calls of the same process (tearing it down and starting
    it again under one ``torchrun`` rendezvous hangs) and is destroyed at interpreter exit.
    """
    import atexit

    import torch.distributed as dist

    if world <= 1 or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


def _index_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int, world: int,
                   shuffle: bool) -> list[list[int]]:
    """This rank's index batches for one epoch (``DistributedSampler`` order, ``seed + epoch``)."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    per = max(1, batch_size // world)
    return [idx[i:i + per] for i in range(0, len(idx), per)]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _state_cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _run_epochs_bar(total: int, start: int, desc: str, progress: bool, rank: int):
    """A tqdm bar over epochs on an interactive terminal (rank 0), else None."""
    if not progress or rank != 0 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit="epoch", leave=True)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: torch.nn.Module, step_fn: StepFn, dataset: Dataset, batch_size: int,
             collate_fn=None, device="cpu") -> dict[str, float]:
    """Mean of ``step_fn``'s logs over ``dataset`` (weighted by batch size), with key ``loss``.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode for the pass (its previous mode is restored).
    step_fn : callable
        ``step_fn(model, batch) -> (loss, logs)``.
    dataset : torch.utils.data.Dataset
        Evaluated in order, every sample once.
    batch_size : int
    collate_fn : callable, optional
        Passed to the ``DataLoader``.
    device : str or torch.device

    Returns
    -------
    dict
        ``{"loss": mean loss, <log>: mean log, ...}``.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> ds = TensorDataset(torch.ones(5, 1), torch.zeros(5, 1))
    >>> step = lambda m, b: (((m(b[0]) - b[1]) ** 2).mean(), {})
    >>> m = torch.nn.Linear(1, 1, bias=False); _ = m.weight.data.fill_(2.0)
    >>> evaluate(m, step, ds, batch_size=2)
    {'loss': 4.0}
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset: expected a non-empty dataset")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    batches = _index_batches(n, batch_size, 0, 0, 0, 1, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn)
    sums: dict[str, float] = {}
    count = 0
    for idx, batch in zip(batches, loader):
        loss, logs = step_fn(model, _to_device(batch, device))
        w = len(idx)
        for k, v in {"loss": float(loss), **{k: float(v) for k, v in logs.items()}}.items():
            sums[k] = sums.get(k, 0.0) + w * v
        count += w
    model.train(was_training)
    return {k: v / count for k, v in sums.items()}


# ----------------------------------------------------------------------------- training


def train(model: torch.nn.Module, step_fn: StepFn, train_set: Dataset, val_set: Dataset, *,
          epochs: int, batch_size: int, lr: float, run_dir, seed: int = 0, collate_fn=None,
          weight_decay: float = 0.0, lr_schedule: str | None = None, eval_every: int = 1,
          progress: bool = True, resume: bool = True, deterministic: bool = False,
          device="cpu", test_set: Dataset | None = None, select: str = "val_loss",
          callback: Callable[[int, dict | None], None] | None = None) -> TrainResult:
    """Train ``model`` with Adam, checkpointing every epoch; resumable; DDP under ``torchrun``.

    Parameters
    ----------
    model : torch.nn.Module
        Built (and seeded) by the caller; moved to ``device``.
    step_fn : callable
        ``step_fn(model, batch) -> (loss, logs)``, ``loss`` a scalar tensor, ``logs`` a dict of
        floats. Used for training and, under ``no_grad`` in eval mode, for evaluation.
    train_set, val_set : torch.utils.data.Dataset
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int
        Global batch size (divided by the number of processes under DDP).
    lr : float
        Adam learning rate.
    run_dir : str or pathlib.Path
        Folder for ``checkpoint.pt`` (created).
    seed : int
        Seeds torch's RNG at the start and the shuffling order (``seed + epoch``).
    collate_fn : callable, optional
    weight_decay : float
        Adam's (L2) weight decay.
    lr_schedule : {None, "cosine"}
        ``"cosine"`` anneals the learning rate to 0 over ``epochs`` (per epoch).
    eval_every : int
        Evaluate on ``val_set`` every this many epochs (and always after the last one).
    progress : bool
        A tqdm bar on an interactive terminal; otherwise one line per evaluated epoch on stdout.
    resume : bool
        Continue from ``run_dir/checkpoint.pt`` when it exists. The checkpoint must come from the
        same ``epochs``, ``batch_size``, ``lr``, ``seed``, ``weight_decay`` and ``lr_schedule``.
    deterministic : bool
        ``torch.use_deterministic_algorithms(True)`` for the run (restored afterwards).
    device : str or torch.device
    test_set : torch.utils.data.Dataset, optional
        Evaluated once at the end with the best weights (``test_<log>`` keys in ``best``).
    select : str
        History key minimised to pick the best epoch (e.g. ``"val_loss"``, ``"val_mse"``).
    callback : callable, optional
        ``callback(epoch, entry)`` after each epoch's checkpoint is written (``entry`` is None on
        epochs without evaluation). Raising from it stops the run, leaving a valid checkpoint.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 2, generator=g); y = x @ torch.tensor([[1.0], [-2.0]])
    >>> ds = TensorDataset(x, y)
    >>> step = lambda m, b: (((m(b[0]) - b[1]) ** 2).mean(), {})
    >>> _ = torch.manual_seed(0)
    >>> res = train(torch.nn.Linear(2, 1), step, ds, ds, epochs=30, batch_size=16, lr=0.1,
    ...             run_dir=tempfile.mkdtemp(), progress=False)
    >>> res.best["val_loss"] < 1e-3
    True
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not callable(step_fn):
        raise TypeError("step_fn: expected a callable step_fn(model, batch) -> (loss, logs)")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr: expected a positive finite number, got {lr!r}")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"weight_decay: expected a non-negative number, got {weight_decay!r}")
    check_choice("lr_schedule", lr_schedule, (None, "cosine"))
    for name, ds in (("train_set", train_set), ("val_set", val_set)):
        if len(ds) == 0:
            raise ValueError(f"{name}: expected a non-empty dataset")

    device = torch.device(device)
    rank, world = _dist_info()
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per process
        torch.cuda.set_device(device)
    _init_dist(device, world)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoint.pt"
    config = {"epochs": epochs, "batch_size": batch_size, "lr": float(lr), "seed": seed,
              "weight_decay": float(weight_decay), "lr_schedule": lr_schedule or "none",
              "world_size": world}
    prev_det = torch.are_deterministic_algorithms_enabled()
    if deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        return _train(model, step_fn, train_set, val_set, epochs, batch_size, lr, run_dir,
                      ckpt_path, config, seed, collate_fn, weight_decay, lr_schedule,
                      eval_every, progress, resume, device, test_set, select, callback, rank,
                      world)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _train(model, step_fn, train_set, val_set, epochs, batch_size, lr, run_dir, ckpt_path,
           config, seed, collate_fn, weight_decay, lr_schedule, eval_every, progress, resume,
           device, test_set, select, callback, rank, world) -> TrainResult:
    import torch.distributed as dist

    model = model.to(device)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
                 if lr_schedule == "cosine" else None)
    history: list[dict] = []
    best: dict = {}
    best_state = _state_cpu(model)
    start = 0
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("config") != config:
            raise ValueError(
                f"run_dir: {ckpt_path} was written with {ckpt.get('config')}, this call uses "
                f"{config}; pass resume=False or use another run_dir")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        history, best, best_state = ckpt["history"], ckpt["best"], ckpt["best_state"]
        start = int(ckpt["epoch"])
        _set_rng_state(ckpt["rng"], device)
    resumed_from = start

    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    bar = _run_epochs_bar(epochs, start, run_dir.name, progress, rank)
    n_train = len(train_set)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        net.train()
        batches = _index_batches(n_train, batch_size, epoch, seed, rank, world, shuffle=True)
        loader = DataLoader(train_set, batch_sampler=batches, collate_fn=collate_fn)
        tot = torch.zeros(2, dtype=torch.float64)
        for idx, batch in zip(batches, loader):
            loss, _ = step_fn(net, _to_device(batch, device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            tot += torch.tensor([float(loss.detach()) * len(idx), len(idx)], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(tot)
        train_loss = float(tot[0] / tot[1])
        cur_lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        entry = None
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            # every rank evaluates the whole validation set with the same weights (exact, simple)
            val = evaluate(model, step_fn, val_set, batch_size, collate_fn, device)
            entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val["loss"],
                     **{f"val_{k}": v for k, v in val.items() if k != "loss"},
                     "lr": cur_lr, "time": time.perf_counter() - t0}
            history.append(entry)
            if select not in entry:
                raise ValueError(f"select: {select!r} is not a history key; got {sorted(entry)}")
            if not best or entry[select] < best[select]:
                best = dict(entry)
                best_state = _state_cpu(model)
        if rank == 0:
            _atomic_save({"config": config, "epoch": epoch + 1, "model": _state_cpu(model),
                          "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict() if scheduler is not None else {},
                          "history": history, "best": best, "best_state": best_state,
                          "rng": _rng_state(device)}, ckpt_path)
        if world > 1:
            dist.barrier()
        if bar is not None:
            bar.update(1)
            if entry is not None:
                bar.set_postfix(train=f"{train_loss:.4g}", val=f"{entry['val_loss']:.4g}")
        elif progress and rank == 0 and entry is not None:
            print(f"[{run_dir.name}] epoch {epoch + 1}/{epochs} train_loss {train_loss:.5g} "
                  f"val_loss {entry['val_loss']:.5g} ({entry['time']:.1f} s)", flush=True)
        if callback is not None:
            callback(epoch + 1, entry)
    if bar is not None:
        bar.close()

    model.load_state_dict(best_state)
    best = dict(best)
    if test_set is not None:
        test = evaluate(model, step_fn, test_set, batch_size, collate_fn, device)
        best.update({"test_loss": test["loss"],
                     **{f"test_{k}": v for k, v in test.items() if k != "loss"}})
    return TrainResult(history=history, best=best, model=model, run_dir=run_dir,
                       resumed_from=resumed_from)


# ----------------------------------------------------------------------------- results


def environment(seeds: Any = None) -> dict:
    """Versions, device and date recorded beside every result file."""
    import geodl

    env = {"geodl": geodl.__version__, "torch": torch.__version__,
           "python": platform.python_version(), "platform": platform.platform(),
           "cpu_threads": torch.get_num_threads(),
           "device": (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"),
           "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if seeds is not None:
        env["seeds"] = seeds
    return env


def write_results(path, payload: dict, rows: list[dict]) -> tuple[Path, Path]:
    """Write ``path`` (JSON) and the rows as CSV beside it (same name, ``.csv``); atomic.

    The JSON holds ``payload``, the rows under ``"rows"`` and environment info under
    ``"environment"`` (versions, device, date, and ``payload["seeds"]`` / ``payload["seed"]``).

    Returns
    -------
    (json_path, csv_path)

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> j, c = write_results(p, {"task": "demo", "seed": 0}, [{"model": "a", "mse": 0.5}])
    >>> json.loads(j.read_text())["rows"][0]["mse"], c.read_text().splitlines()[0]
    (0.5, 'model,mse')
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload: expected a dict, got {type(payload).__name__}")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError("rows: expected a list of dicts")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seeds = payload.get("seeds", payload.get("seed"))
    doc = {**payload, "rows": rows, "environment": environment(seeds)}
    _atomic_write_text(path, json.dumps(doc, indent=2, default=str) + "\n")
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    csv_path = path.with_suffix(".csv")
    tmp = csv_path.with_name(csv_path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, csv_path)
    return path, csv_path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if v == v else "nan"
    return "" if v is None else str(v)


def print_table(rows: list[dict], columns: Sequence[str | tuple[str, str]], file=None) -> str:
    """Print ``rows`` as an aligned text table and return the text.

    ``columns`` lists row keys, or ``(key, header)`` pairs; missing values print empty.

    Examples
    --------
    >>> _ = print_table([{"model": "a", "mse": 0.00571234}], ["model", ("mse", "test MSE")])
    model  test MSE
    -----  --------
    a      0.005712
    """
    cols = [(c, c) if isinstance(c, str) else tuple(c) for c in columns]
    cells = [[h for _, h in cols]] + [[_fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text, file=file if file is not None else sys.stdout, flush=True)
    return text


def plot_curves(histories: dict[str, list[dict]], path, keys: Iterable[str] = ("train_loss", "val_loss")) -> Path:
    """Save learning curves (one line per run and key, log-scale y) as a PNG.

    Parameters
    ----------
    histories : dict
        ``{run name: TrainResult.history}``.
    path : str or pathlib.Path
        Output file (``.png``).
    keys : iterable of str
        History keys to draw (solid for the first, dashed, dotted, ... for the next).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not isinstance(histories, dict) or not histories:
        raise ValueError("histories: expected a non-empty dict {name: history}")
    keys = list(keys)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = ["-", "--", ":", "-."]
    for i, (name, hist) in enumerate(histories.items()):
        color = f"C{i}"
        for j, k in enumerate(keys):
            pts = [(h["epoch"], h[k]) for h in hist if k in h and h[k] is not None and h[k] > 0]
            if pts:
                ax.plot(*zip(*pts), styles[j % len(styles)], color=color, label=f"{name} {k}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".tmp{os.getpid()}_" + path.name)
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
