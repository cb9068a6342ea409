"""Snapshots of what a check may touch: a module's tensors, training flags and gradients, and the RNGs.

``check_module`` and ``equivariance_error`` (when given an ``nn.Module``) take a snapshot first and
restore it afterwards, so that checking a model never changes it (BatchNorm running statistics,
dropout's draws from the global RNG, ``.grad`` of the parameters).
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["module_state", "state_diff", "restore_state", "RNGState", "preserved"]


def module_state(module) -> dict:
    """Every tensor a module holds (parameters, their ``.grad``, buffers, plain tensor attributes) and
    training flags, cloned. Uninitialised (lazy) parameters and buffers have no value to keep and are
    left out (the first forward initialises them)."""
    from torch.nn.parameter import is_lazy

    out = {}
    for prefix, m in module.named_modules(remove_duplicate=False):
        pre = f"{prefix}." if prefix else ""
        out[f"{pre}<training>"] = m.training
        for name, t in m._parameters.items():
            if t is not None and not is_lazy(t):
                out[pre + name] = t.detach().clone()
                out[f"{pre}{name} (grad)"] = None if t.grad is None else t.grad.detach().clone()
        for name, t in m._buffers.items():
            if t is not None and not is_lazy(t):
                out[pre + name] = t.detach().clone()
        for name, t in vars(m).items():
            if isinstance(t, torch.Tensor) and not name.startswith("_"):
                out[f"{pre}{name} (attribute)"] = t.detach().clone()
    return out


def state_diff(before: dict, after: dict) -> list:
    """The keys whose value differs between two :func:`module_state` snapshots, sorted."""
    changed = []
    for k in before.keys() | after.keys():
        a, b = before.get(k), after.get(k)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            same = a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        elif isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            same = False
        else:
            same = a is b or a == b
        if not same:
            changed.append(k)
    return sorted(changed)


def restore_state(module, state: dict) -> None:
    """Put a :func:`module_state` snapshot back in place (values, dtypes, ``.grad``, training flags)."""
    from torch.nn.parameter import is_lazy

    with torch.no_grad():
        for prefix, m in module.named_modules(remove_duplicate=False):
            pre = f"{prefix}." if prefix else ""
            m.training = state.get(f"{pre}<training>", m.training)
            for name, t in list(m._parameters.items()) + list(m._buffers.items()):
                saved = state.get(pre + name)
                if t is not None and saved is not None and not is_lazy(t):
                    if t.shape == saved.shape and t.dtype == saved.dtype:
                        t.copy_(saved)
                    else:
                        t.data = saved.clone()
            for name, t in list(m._parameters.items()):
                key = f"{pre}{name} (grad)"
                if t is not None and key in state and not is_lazy(t):
                    t.grad = None if state[key] is None else state[key].clone()
            for name, t in list(vars(m).items()):
                saved = state.get(f"{pre}{name} (attribute)")
                if isinstance(t, torch.Tensor) and saved is not None and \
                        (t.shape != saved.shape or t.dtype != saved.dtype or not torch.equal(t, saved)):
                    setattr(m, name, saved.clone())


class RNGState:
    """torch's global RNG states (CPU, and CUDA when initialised)."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def restore(self):
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)

    def changed(self, other: "RNGState") -> list:
        out = [] if torch.equal(self.cpu, other.cpu) else ["CPU"]
        if self.cuda is not None and other.cuda is not None:
            out += [f"cuda:{i}" for i, (a, b) in enumerate(zip(self.cuda, other.cuda)) if not torch.equal(a, b)]
        elif (self.cuda is None) != (other.cuda is None):
            out.append("CUDA (initialised by the forward)")
        return out


@contextlib.contextmanager
def preserved(module):
    """Run the block with ``module`` (an ``nn.Module``, else nothing is done) in eval mode, then restore
    its training flags, parameters, ``.grad``, buffers and tensor attributes and the global RNG states."""
    if not isinstance(module, torch.nn.Module):
        yield
        return
    snapshot, rng = module_state(module), RNGState()
    try:
        module.eval()
        yield
    finally:
        restore_state(module, snapshot)
        rng.restore()
