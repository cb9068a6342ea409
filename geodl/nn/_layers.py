"""Small building blocks shared by the methods of :mod:`geodl.nn` (not public API)."""

from __future__ import annotations

import functools

import torch
from torch import nn

from geodl._checks import check_memory

__all__ = ["ACTIVATIONS", "mlp", "check_linear_sizes"]

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU,
               "leaky_relu": functools.partial(nn.LeakyReLU, 0.2)}  # slope 0.2, as in DGCNN


def check_linear_sizes(name: str, value, shapes, repeat: int = 1) -> None:
    """Raise ``ValueError`` naming ``name`` when ``repeat`` copies of linear layers of ``(in, out)``
    widths ``shapes`` would not fit in memory (weights and biases in torch's default dtype), before
    allocating them.

    Examples
    --------
    >>> check_linear_sizes("channels", [4, 8], [(4, 8)])
    >>> check_linear_sizes("channels", [10**6, 10**6], [(10**6, 10**6)])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: channels: [1000000, 1000000] asks for the parameters of 1 linear layers, which would need ... GiB ...
    """
    n = repeat * sum(a * b + b for a, b in shapes)
    check_memory(name, value, n * torch.get_default_dtype().itemsize, "cpu",
                 what=f"the parameters of {repeat * len(shapes)} linear layers")


def mlp(channels, act: str, last_act: bool) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear [-> act]`` through the widths ``channels``.

    Parameters
    ----------
    channels : sequence of int
        Input width, hidden widths and output width (at least two entries).
    act : str
        A key of :data:`ACTIVATIONS` ("relu", "silu", "tanh", "gelu", "leaky_relu" (slope 0.2)).
    last_act : bool
        Whether the last linear layer is followed by the activation too.

    Examples
    --------
    >>> mlp([4, 8, 2], "silu", last_act=False)
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): SiLU()
      (2): Linear(in_features=8, out_features=2, bias=True)
    )
    """
    channels = list(channels)
    if len(channels) < 2:
        raise ValueError(f"channels: expected at least two widths (input and output), got {channels}")
    check_linear_sizes("channels", channels, list(zip(channels[:-1], channels[1:])))
    layers = []
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(channels) - 2:
            layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)
