"""Small building blocks shared by the methods of :mod:`geodl.nn` (not public API)."""

from __future__ import annotations

from torch import nn

__all__ = ["ACTIVATIONS", "mlp"]

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def mlp(channels, act: str, last_act: bool) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear [-> act]`` through the widths ``channels``.

    Parameters
    ----------
    channels : sequence of int
        Input width, hidden widths and output width (at least two entries).
    act : str
        A key of :data:`ACTIVATIONS` ("relu", "silu", "tanh", "gelu").
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
    layers = []
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(channels) - 2:
            layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)
