"""The ``check_module`` fixture of the nn tests: :func:`geodl.testing.check_module`.

Until ``geodl.testing.check_module`` exists in this checkout, the fixture runs the part of its
battery that the already landed harness can: equivariance under the module's declared symmetry
(``geodl.groups.get_symmetry`` + ``geodl.testing.assert_equivariant``), a ``state_dict`` round
trip and finite gradients. It raises on failure either way.
"""

from __future__ import annotations

import copy

import pytest
import torch


def _fallback_check_module(module, inputs, *, group=None, in_kinds=None, out_kinds=None, checks=None,
                           generator=0, raise_on_fail=True, **tolerances):
    from geodl.groups import get_symmetry
    from geodl.testing import assert_equivariant

    sym = None if (group and in_kinds and out_kinds) else get_symmetry(module)
    extras = {k: v for k, v in inputs.items() if not isinstance(v, torch.Tensor)}  # e.g. num_graphs
    inputs = {k: v for k, v in inputs.items() if k not in extras}
    module_ = module
    module = lambda **kw: module_(**kw, **extras)  # noqa: E731
    module.parameters, module.state_dict = module_.parameters, module_.state_dict
    kinds = dict(in_kinds or sym.in_kinds)
    missing = [k for k in inputs if k not in kinds]
    if missing:
        raise AssertionError(f"inputs {missing} have no declared kind")
    kinds = {k: kinds[k] for k in inputs}
    report = assert_equivariant(module, inputs, kinds, out_kinds or sym.out_kinds, group or sym.group,
                                generator=generator, **tolerances)
    # state_dict round trip: a fresh copy loaded with the state gives the same output
    clone = copy.deepcopy(module_)
    for p in clone.parameters():
        torch.nn.init.zeros_(p) if p.dim() else None
    clone.load_state_dict(module.state_dict())
    out, out2 = module(**inputs), clone(**inputs, **extras)
    outs = out if isinstance(out, tuple) else (out,)
    outs2 = out2 if isinstance(out2, tuple) else (out2,)
    for a, b in zip(outs, outs2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # finite gradients
    params = [p for p in module.parameters() if p.requires_grad]
    if params:
        loss = sum(o.square().sum() for o in outs if o.is_floating_point())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads), "non-finite gradients"
    return report


@pytest.fixture
def check_module():
    try:
        from geodl.testing import check_module as real
    except ImportError:
        return _fallback_check_module
    return real
