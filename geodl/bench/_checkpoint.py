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


def load_checkpoint(path, config: dict) -> dict | None:
    """The checkpoint at ``path`` (``weights_only=True``), or None when there is none.

    Raises
    ------
    ValueError
        When the checkpoint was written with another ``config`` (the resume key): another run's
        settings must not be continued silently.
    """
    path = Path(path)
    if not path.exists():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("config") != config:
        raise ValueError(
            f"run_dir: {path} was written with {ckpt.get('config')}, this call uses "
            f"{config}; pass resume=False or use another run_dir")
    return ckpt
