"""The one training loop shared by every benchmark task, and exact evaluation.

:func:`train` runs a single process, or data-parallel under ``torchrun`` (``WORLD_SIZE > 1``:
process group on gloo for CPU / nccl for CUDA, ``DistributedDataParallel``,
``DistributedSampler``). The shuffling order is the one ``DistributedSampler`` draws from
``seed + epoch`` in both cases, so a 2-process run sees the same global batches as a single process
(``batch_size`` is the *global* batch size, split evenly over the processes).

The optimiser and the learning-rate schedule are factories (``optimizer=lambda params: ...``,
``scheduler=lambda opt: ...``; default Adam and, with ``lr_schedule="cosine"``, cosine annealing),
epoch hooks run after every epoch (e.g. to tune a regulariser's strength), and ``metrics`` are
functions of the predictions and targets of the *whole* evaluation set (a median, a
log-likelihood over a grid), not averages of per-batch numbers.

Under DDP, :func:`evaluate` gives every process a disjoint strided shard of the evaluation set
(no padding: each sample is evaluated exactly once, unlike ``DistributedSampler``, which repeats
samples to equalise the shards), then gathers the sums and the outputs in dataset order, so the
metrics equal the single-process ones.

Every epoch rank 0 writes ``run_dir/checkpoint.pt`` atomically (see
:mod:`geodl.bench._checkpoint`); with ``resume=True`` a rerun of the same call continues from it;
in ``deterministic=True`` mode an interrupted and resumed run ends with the same metrics and
weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from geodl._checks import check_choice, check_positive_int
from geodl.bench._checkpoint import (CHECKPOINT_NAME, load_checkpoint, rng_state, save_checkpoint,
                                     set_rng_state, state_cpu)

__all__ = ["TrainResult", "train", "evaluate"]

StepFn = Callable[[torch.nn.Module, Any], tuple]
MetricFn = Callable[..., float]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    history : list of dict
        One entry per evaluated epoch: ``epoch`` (1-based), ``train_loss``, ``val_loss``,
        ``val_<log>`` for every log of ``step_fn`` and every metric, ``lr`` and ``time`` (seconds
        of that epoch).
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
    """This rank's training index batches for one epoch (``DistributedSampler``, ``seed + epoch``)."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    per = max(1, batch_size // world)
    return [idx[i:i + per] for i in range(0, len(idx), per)]


def eval_shard(n: int, rank: int, world: int) -> list[int]:
    """The evaluation indices of process ``rank``: ``rank, rank + world, ...`` (no padding).

    Over all ranks every index in ``range(n)`` appears exactly once (a ``DistributedSampler``
    would repeat up to ``world - 1`` samples to make the shards equal).

    Examples
    --------
    >>> eval_shard(5, 0, 2), eval_shard(5, 1, 2)
    ([0, 2, 4], [1, 3])
    """
    return list(range(rank, n, world))


def _split_step(out) -> tuple[torch.Tensor, dict, Any]:
    """``(loss, logs)`` or ``(loss, logs, outputs)`` from a step function."""
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise TypeError("step_fn: expected it to return (loss, logs) or (loss, logs, outputs)")
    return out[0], out[1], (out[2] if len(out) == 3 else None)


def _as_tuple(outputs) -> tuple[torch.Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def _run_epochs_bar(total: int, start: int, desc: str, progress: bool, rank: int):
    """A tqdm bar over epochs on an interactive terminal (rank 0), else None."""
    if not progress or rank != 0 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit="epoch", leave=True)


def _describe(fn) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


# ----------------------------------------------------------------------------- evaluation


def _check_model_step(model, step_fn) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not callable(step_fn):
        raise TypeError("step_fn: expected a callable step_fn(model, batch) -> (loss, logs)")


@torch.no_grad()
def evaluate(model: torch.nn.Module, step_fn: StepFn, dataset: Dataset, batch_size: int,
             collate_fn=None, device="cpu", *, metrics: Mapping[str, MetricFn] | None = None,
             distributed: bool | None = None) -> dict[str, float]:
    """Mean of ``step_fn``'s logs over ``dataset`` (weighted by batch size), plus whole-set metrics.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode for the pass (its previous mode is restored).
    step_fn : callable
        ``step_fn(model, batch) -> (loss, logs)``, or ``(loss, logs, outputs)`` where ``outputs``
        is a tensor or a tuple of tensors with the batch along dim 0 (e.g. ``(pred, target)``);
        ``outputs`` is required when ``metrics`` is given.
    dataset : torch.utils.data.Dataset
        Every sample evaluated exactly once.
    batch_size : int
        Batch size (per process under DDP: ``batch_size // world_size``).
    collate_fn : callable, optional
        Passed to the ``DataLoader``.
    device : str or torch.device
    metrics : dict, optional
        ``{name: fn(*outputs) -> float}``, each called once on the outputs of all batches
        concatenated along dim 0 in dataset order.
    distributed : bool, optional
        Shard the set over the processes of the running process group and gather the results
        (each sample once, no padding). Default: when a process group of more than one process
        is initialised.

    Returns
    -------
    dict
        ``{"loss": mean loss, <log>: mean log, ..., <metric>: value, ...}``.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> ds = TensorDataset(torch.ones(5, 1), torch.zeros(5, 1))
    >>> step = lambda m, b: (((m(b[0]) - b[1]) ** 2).mean(), {})
    >>> m = torch.nn.Linear(1, 1, bias=False); _ = m.weight.data.fill_(2.0)
    >>> evaluate(m, step, ds, batch_size=2)
    {'loss': 4.0}
    >>> ds = TensorDataset(torch.arange(5.0)[:, None], torch.zeros(5, 1))
    >>> step = lambda m, b: (((m(b[0]) - b[1]) ** 2).mean(), {}, (m(b[0]) - b[1]).abs())
    >>> evaluate(m, step, ds, batch_size=2, metrics={"median_err": lambda e: float(e.median())})
    {'loss': 24.0, 'median_err': 4.0}
    """
    _check_model_step(model, step_fn)
    check_positive_int("batch_size", batch_size)
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset: expected a non-empty dataset")
    metrics = dict(metrics or {})
    for name, fn in metrics.items():
        if not callable(fn):
            raise TypeError(f"metrics: expected {{name: callable}}, got {type(fn).__name__} for {name!r}")
    import torch.distributed as dist

    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    if world == 1:
        batches = _index_batches(n, batch_size, 0, 0, 0, 1, shuffle=False)
    else:
        shard = eval_shard(n, rank, world)
        per = max(1, batch_size // world)
        batches = [shard[i:i + per] for i in range(0, len(shard), per)]
    sums: dict[str, float] = {}
    count = 0
    outs: list[tuple[torch.Tensor, ...]] = []
    if batches:
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn)
        for idx, batch in zip(batches, loader):
            loss, logs, outputs = _split_step(step_fn(model, _to_device(batch, device)))
            w = len(idx)
            for k, v in {"loss": float(loss), **{k: float(v) for k, v in logs.items()}}.items():
                sums[k] = sums.get(k, 0.0) + w * v
            count += w
            if metrics:
                if outputs is None:
                    raise TypeError("step_fn: metrics need it to return (loss, logs, outputs)")
                outs.append(tuple(o.detach().cpu() for o in _as_tuple(outputs)))
    model.train(was_training)
    local = [torch.cat(parts) for parts in zip(*outs)] if outs else []
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, (sums, count, local))
        sums, count = {}, 0
        for s, c, _ in gathered:
            for k, v in s.items():
                sums[k] = sums.get(k, 0.0) + v
            count += c
        if metrics:
            order = torch.tensor([i for r in range(world) for i in eval_shard(n, r, world)])
            inv = torch.empty_like(order)
            inv[order] = torch.arange(n)
            parts = [g[2] for g in gathered if g[2]]
            local = [torch.cat([p[j] for p in parts])[inv] for j in range(len(parts[0]))]
    result = {k: v / count for k, v in sums.items()}
    for name, fn in metrics.items():
        result[name] = float(fn(*local))
    return result


# ----------------------------------------------------------------------------- training


def train(model: torch.nn.Module, step_fn: StepFn, train_set: Dataset, val_set: Dataset, *,
          epochs: int, batch_size: int, lr: float | None = None, run_dir, seed: int = 0,
          collate_fn=None, weight_decay: float = 0.0, lr_schedule: str | None = None,
          optimizer: Callable | None = None, scheduler: Callable | None = None,
          hooks: Sequence[Callable] = (), metrics: Mapping[str, MetricFn] | None = None,
          eval_every: int = 1, progress: bool = True, resume: bool = True,
          deterministic: bool = False, device="cpu", test_set: Dataset | None = None,
          select: str = "val_loss",
          callback: Callable[[int, dict | None], None] | None = None,
          time_limit: float | None = None) -> TrainResult:
    """Train ``model``, checkpointing every epoch; resumable; DDP under ``torchrun``.

    Parameters
    ----------
    model : torch.nn.Module
        Built (and seeded) by the caller; moved to ``device``.
    step_fn : callable
        ``step_fn(model, batch) -> (loss, logs)`` or ``(loss, logs, outputs)`` (see
        :func:`evaluate`), ``loss`` a scalar tensor, ``logs`` a dict of floats. Used for training
        and, under ``no_grad`` in eval mode, for evaluation.
    train_set, val_set : torch.utils.data.Dataset
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int
        Global batch size (divided by the number of processes under DDP).
    lr : float, optional
        Adam's learning rate; required unless ``optimizer`` is given.
    run_dir : str or pathlib.Path
        Folder for ``checkpoint.pt`` (created).
    seed : int
        Seeds torch's RNG at the start and the shuffling order (``seed + epoch``).
    collate_fn : callable, optional
    weight_decay : float
        Adam's (L2) weight decay (default optimiser only).
    lr_schedule : {None, "cosine"}
        ``"cosine"`` anneals the learning rate to 0 over ``epochs`` (per epoch).
    optimizer : callable, optional
        ``optimizer(params) -> torch.optim.Optimizer`` (e.g. a Riemannian optimiser); default
        ``Adam(params, lr=lr, weight_decay=weight_decay)``.
    scheduler : callable, optional
        ``scheduler(optimizer) -> LRScheduler``, stepped once per epoch; not with ``lr_schedule``.
    hooks : sequence of callables
        Each called as ``hook(epoch, model, history, entry=entry, optimizer=opt)`` after every
        epoch (``entry`` is that epoch's history entry, or None without evaluation), before the
        checkpoint is written; state a hook changes should live in the model (a buffer) so that it
        is checkpointed.
    metrics : dict, optional
        ``{name: fn(*outputs) -> float}`` over the whole validation and test sets (see
        :func:`evaluate`); logged as ``val_<name>`` / ``test_<name>``.
    eval_every : int
        Evaluate on ``val_set`` every this many epochs (and always after the last one).
    progress : bool
        A tqdm bar on an interactive terminal; otherwise one line per evaluated epoch on stdout.
    resume : bool
        Continue from ``run_dir/checkpoint.pt`` when it exists. The checkpoint must come from the
        same ``epochs``, ``batch_size``, ``lr``, ``seed``, ``weight_decay``, schedule and
        optimiser/scheduler factories (by name). It is validated, not trusted: a truncated or
        garbage file, an ``epoch`` outside ``[0, epochs]``, NaN/inf weights or a state that does
        not fit the model raise a ``ValueError`` naming the file and ``run_dir``.
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
    time_limit : float, optional
        Wall seconds for this call: after the first epoch (checkpointed, with at least one
        evaluation so far) that ends past the limit, training stops and the result is returned as
        at the end (best weights, test evaluated); ``history[-1]["epoch"]`` tells how far it got,
        and calling again with the same arguments resumes. Not under DDP (the ranks would have to
        agree on when to stop).

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
    >>> res = train(torch.nn.Linear(2, 1), step, ds, ds, epochs=3, batch_size=16,
    ...             optimizer=lambda p: torch.optim.SGD(p, lr=0.05),
    ...             scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.5),
    ...             run_dir=tempfile.mkdtemp(), progress=False)
    >>> [h["lr"] for h in res.history]
    [0.05, 0.025, 0.0125]
    """
    _check_model_step(model, step_fn)
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        check_positive_int(name, v)
    if optimizer is None:
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0
                and math.isfinite(lr)):
            raise ValueError(f"lr: expected a positive finite number, got {lr!r}")
    elif not callable(optimizer):
        raise TypeError("optimizer: expected a callable optimizer(params) -> torch.optim.Optimizer")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"weight_decay: expected a non-negative number, got {weight_decay!r}")
    check_choice("lr_schedule", lr_schedule, (None, "cosine"))
    if scheduler is not None:
        if not callable(scheduler):
            raise TypeError("scheduler: expected a callable scheduler(optimizer) -> LRScheduler")
        if lr_schedule is not None:
            raise ValueError("scheduler: pass either scheduler= or lr_schedule=, not both")
    hooks = list(hooks)
    for h in hooks:
        if not callable(h):
            raise TypeError(f"hooks: expected callables, got {type(h).__name__}")
    for name, ds in (("train_set", train_set), ("val_set", val_set)):
        if len(ds) == 0:
            raise ValueError(f"{name}: expected a non-empty dataset")
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool)
                                       and time_limit > 0 and math.isfinite(time_limit)):
        raise ValueError(f"time_limit: expected a positive number of seconds or None, got {time_limit!r}")

    device = torch.device(device)
    rank, world = _dist_info()
    if time_limit is not None and world > 1:
        raise ValueError("time_limit: not supported under DDP (the ranks would have to agree on when to stop)")
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per process
        torch.cuda.set_device(device)
    _init_dist(device, world)
    run_dir = Path(run_dir)
    # the resume key; with the default Adam / cosine it is the same dict as before factories existed
    config = {"epochs": epochs, "batch_size": batch_size,
              "lr": float(lr) if lr is not None else None, "seed": seed,
              "weight_decay": float(weight_decay), "lr_schedule": lr_schedule or "none",
              "world_size": world}
    if optimizer is not None:
        config["optimizer"] = _describe(optimizer)
    if scheduler is not None:
        config["scheduler"] = _describe(scheduler)
    prev_det = torch.are_deterministic_algorithms_enabled()
    if deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        return _train(model, step_fn, train_set, val_set, epochs, batch_size, lr, run_dir, config,
                      seed, collate_fn, weight_decay, lr_schedule, optimizer, scheduler, hooks,
                      metrics, eval_every, progress, resume, device, test_set, select, callback,
                      rank, world, time_limit)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _train(model, step_fn, train_set, val_set, epochs, batch_size, lr, run_dir, config, seed,
           collate_fn, weight_decay, lr_schedule, make_optimizer, make_scheduler, hooks, metrics,
           eval_every, progress, resume, device, test_set, select, callback, rank,
           world, time_limit=None) -> TrainResult:
    import torch.distributed as dist

    ckpt_path = run_dir / CHECKPOINT_NAME
    model = model.to(device)
    torch.manual_seed(seed)
    if make_optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimizer = make_optimizer(model.parameters())
    if make_scheduler is not None:
        scheduler = make_scheduler(optimizer)
    elif lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    else:
        scheduler = None
    history: list[dict] = []
    best: dict = {}
    best_state = state_cpu(model)
    start = 0
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = None
    if resume:
        required = ("model", "optimizer", "history", "best", "best_state", "rng",
                    *(("scheduler",) if scheduler is not None else ()))
        ckpt = load_checkpoint(ckpt_path, config, epochs=epochs, required=required,
                               params=[n for n, _ in model.named_parameters()])
    if ckpt is not None:
        try:  # a checkpoint of another model (or a damaged one) must not crash half-restored
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"], device)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise ValueError(
                f"run_dir: checkpoint {ckpt_path} does not fit this model or optimizer "
                f"({type(exc).__name__}: {msg}); delete it to start afresh, pass resume=False "
                f"(--no-resume) or use another run_dir (--run-dir)") from None
        history, best, best_state = ckpt["history"], ckpt["best"], ckpt["best_state"]
        start = ckpt["epoch"]
    resumed_from = start

    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    bar = _run_epochs_bar(epochs, start, run_dir.name, progress, rank)
    t_call = time.perf_counter()
    n_train = len(train_set)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        net.train()
        batches = _index_batches(n_train, batch_size, epoch, seed, rank, world, shuffle=True)
        loader = DataLoader(train_set, batch_sampler=batches, collate_fn=collate_fn)
        tot = torch.zeros(2, dtype=torch.float64)
        for idx, batch in zip(batches, loader):
            loss = _split_step(step_fn(net, _to_device(batch, device)))[0]
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
            val = evaluate(model, step_fn, val_set, batch_size, collate_fn, device, metrics=metrics,
                           distributed=world > 1)
            entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val["loss"],
                     **{f"val_{k}": v for k, v in val.items() if k != "loss"},
                     "lr": cur_lr, "time": time.perf_counter() - t0}
            history.append(entry)
            if select not in entry:
                raise ValueError(f"select: {select!r} is not a history key; got {sorted(entry)}")
            if not best or entry[select] < best[select]:
                best = dict(entry)
                best_state = state_cpu(model)
        for hook in hooks:
            hook(epoch + 1, model, history, entry=entry, optimizer=optimizer)
        if rank == 0:
            save_checkpoint(ckpt_path, {
                "config": config, "epoch": epoch + 1, "model": state_cpu(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "history": history, "best": best, "best_state": best_state,
                "rng": rng_state(device)})
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
        if time_limit is not None and best and time.perf_counter() - t_call >= time_limit:
            break  # checkpointed: the same call again resumes from here
    if bar is not None:
        bar.close()

    model.load_state_dict(best_state)
    best = dict(best)
    if test_set is not None:
        test = evaluate(model, step_fn, test_set, batch_size, collate_fn, device, metrics=metrics,
                        distributed=world > 1)
        best.update({"test_loss": test["loss"],
                     **{f"test_{k}": v for k, v in test.items() if k != "loss"}})
    return TrainResult(history=history, best=best, model=model, run_dir=run_dir,
                       resumed_from=resumed_from)
