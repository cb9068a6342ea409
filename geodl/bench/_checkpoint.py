"""Run checkpoints: atomic save, ``weights_only`` load checked against the run's config, RNG state.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (so
``torch.load(weights_only=True)`` reads it): ``config`` (the resume key), ``epoch``, ``model``,
``optimizer``, ``scheduler``, ``history``, ``best``, ``best_state``, ``rng`` and ``extra`` (state
of epoch hooks, if any).
"""

from __future__ import annotations

from pathlib import Path

import torch

from geodl._io import atomic_torch_save

__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state",
           "state_cpu"]

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """torch's CPU (and, on CUDA, the device's) RNG state as tensors."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def state_cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module.state_dict()``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_checkpoint(path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (a reader never sees a half-written file).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> _ = save_checkpoint(p, {"config": {"lr": 0.1}, "epoch": 3})
    >>> load_checkpoint(p, {"lr": 0.1})["epoch"]
    3
    """
    return atomic_torch_save(state, path)


def load_checkpoint(path, config: dict, *, epochs: int | None = None,
                    required: tuple[str, ...] = (), params=None) -> dict | None:
    """The checkpoint at ``path`` (``weights_only=True``), validated, or None when there is none.

    A checkpoint is checked, not trusted: it must be a readable ``torch.save`` file holding a dict
    with the ``required`` keys, written with this ``config``, with an integer ``epoch`` in
    ``[0, epochs]`` and finite floating weights.

    Parameters
    ----------
    path : str or pathlib.Path
    config : dict
        The resume key; it must equal the checkpoint's ``config``.
    epochs : int, optional
        The run's total epochs (default ``config["epochs"]`` when that is an int); the
        checkpoint's ``epoch`` must lie in ``[0, epochs]``.
    required : tuple of str
        Keys the checkpoint must hold (besides ``config`` and ``epoch``).
    params : iterable of str, optional
        Names in ``checkpoint["model"]`` (and ``checkpoint["best_state"]``) that must be finite
        (e.g. the model's parameter names); default every floating tensor there.

    Raises
    ------
    ValueError
        Naming the file and ``run_dir`` (``--run-dir`` on the command line) when the file is
        truncated or not a checkpoint, was written with another ``config`` (another run's settings
        must not be continued silently), has an out-of-range ``epoch``, lacks a required key, or
        holds NaN/inf weights (the parameter is named).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> _ = save_checkpoint(p, {"config": {"epochs": 5}, "epoch": 9})
    >>> load_checkpoint(p, {"epochs": 5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: run_dir: checkpoint ... has epoch 9, expected an integer in [0, 5]; ...
    """
    path = Path(path)
    if not path.exists():
        return None
    fix = ("delete it to start afresh, pass resume=False (--no-resume) or use another run_dir "
           "(--run-dir)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, garbage, or holding objects weights_only refuses
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ValueError(
            f"run_dir: checkpoint {path} is not a readable checkpoint (truncated or damaged: "
            f"{type(exc).__name__}: {msg}); {fix}") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"run_dir: checkpoint {path} holds a {type(ckpt).__name__}, expected a "
                         f"dict; {fix}")
    if ckpt.get("config") != config:
        raise ValueError(
            f"run_dir: {path} was written with {ckpt.get('config')}, this call uses "
            f"{config}; pass resume=False or use another run_dir")
    missing = [k for k in ("epoch", *required) if k not in ckpt]
    if missing:
        raise ValueError(f"run_dir: checkpoint {path} lacks {missing}; {fix}")
    if epochs is None and isinstance(config, dict):
        e = config.get("epochs")
        epochs = e if isinstance(e, int) and not isinstance(e, bool) else None
    epoch = ckpt["epoch"]
    hi = epochs if epochs is not None else float("inf")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= hi:
        raise ValueError(
            f"run_dir: checkpoint {path} has epoch {epoch!r}, expected an integer in "
            f"[0, {epochs if epochs is not None else 'inf'}]; {fix}")
    names = None if params is None else set(params)
    for key in ("model", "best_state"):
        state = ckpt.get(key)
        if state is None:
            continue
        if not isinstance(state, dict):
            raise ValueError(f"run_dir: checkpoint {path} has a {type(state).__name__} as "
                             f"{key!r}, expected a state dict; {fix}")
        for name, t in state.items():
            if names is not None and name not in names:
                continue
            if (isinstance(t, torch.Tensor) and t.is_floating_point()
                    and not bool(torch.isfinite(t).all())):
                raise ValueError(
                    f"run_dir: checkpoint {path} has non-finite values (NaN or inf) in "
                    f"{key}[{name!r}]; {fix}")
    return ckpt
