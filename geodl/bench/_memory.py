"""Saved-activation memory of a forward pass (what autograd keeps for backward)."""

from __future__ import annotations

import torch

__all__ = ["saved_activation_bytes"]


def saved_activation_bytes(fn, *args, **kwargs) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn(*args, **kwargs)`` runs.

    Counted: every tensor passed to a ``saved_tensors_hooks`` pack hook during the call, each
    underlying storage once (deduplicated by ``(device, storage data_ptr)``, counting the whole
    storage's ``nbytes``). Not counted: storages of the parameters and buffers of any module among
    ``args`` or reachable as ``fn`` (a module), and the output itself unless autograd saves it.

    Examples
    --------
    >>> lin = torch.nn.Linear(4, 3)
    >>> x = torch.randn(5, 4)
    >>> saved_activation_bytes(lambda x: torch.relu(lin(x)).sum(), x)  # x (80 bytes) + relu output (60)
    140
    """
    skip = set()
    for obj in (fn, *args):
        if isinstance(obj, torch.nn.Module):
            for t in list(obj.parameters()) + list(obj.buffers()):
                skip.add((t.device, t.untyped_storage().data_ptr()))
    seen: dict = {}

    def pack(t):
        key = (t.device, t.untyped_storage().data_ptr())
        if key not in skip and not isinstance(t, torch.nn.Parameter):
            seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args, **kwargs)
    return int(sum(seen.values()))
