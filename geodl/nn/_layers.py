"""Small building blocks shared by the methods of :mod:`geodl.nn` (not public API)."""

from __future__ import annotations

import functools

import torch
from torch import nn

from geodl._checks import check_int, check_memory

__all__ = ["ACTIVATIONS", "mlp", "check_linear_sizes", "check_widths"]

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU,
               "leaky_relu": functools.partial(nn.LeakyReLU, 0.2)}  # slope 0.2, as in DGCNN


def check_widths(name: str, value, *, nonempty: bool = False) -> tuple:
    """``value`` as a tuple of layer widths (ints >= 1); ``TypeError`` / ``ValueError`` naming
    ``name`` (or ``name[i]``) otherwise, and for an empty sequence when ``nonempty``.

    Examples
    --------
    >>> check_widths("hidden_channels", [8, 16])
    (8, 16)
    >>> check_widths("hidden_channels", (), nonempty=True)
    Traceback (most recent call last):
    ...
    ValueError: hidden_channels: expected at least one width
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of int, got {type(value).__name__}")
    widths = tuple(value)
    if nonempty and not widths:
        raise ValueError(f"{name}: expected at least one width")
    for i, c in enumerate(widths):
        check_int(f"{name}[{i}]", c, min=1)
    return widths


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
