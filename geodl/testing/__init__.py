"""Equivariance testing: the harness, random inputs, pytest helpers, strategies and example models.

The names below load lazily, so that importing this package (which pytest does at start-up through
the ``geodl`` plugin) needs neither torch nor hypothesis.

``equivariance_error``     compare ``fn(g·x)`` with ``g·fn(x)`` over random and structured group elements
``assert_invariant``       raise ``AssertionError`` with the error table unless every output is invariant
``assert_equivariant``     the same for outputs of any kind
``EquivarianceReport``     the result: ``.passed``, ``.max_error``, ``.rows``, ``str(report)`` is a table
``default_rtol``           the relative tolerance used for a dtype
``atol_floor``             the default absolute tolerance: rounding noise of an output of a given size and scale
``check_module``           the standard battery on a module: equivariance, batching, state_dict round trip,
                           finite gradients, torch.compile = eager, no side effects
``ModuleReport``           its result: ``.passed``, ``.items``, ``.failed``, ``str(report)`` is a table
``CHECKS``                 the names of the battery's items, in order
``random_inputs``          random tensors matching a list of kinds (used by ``geodl check``)
``devices``, ``dtypes``    parameter lists for ``pytest.mark.parametrize``

Submodules (imported explicitly): ``geodl.testing.strategies`` (hypothesis strategies),
``geodl.testing.examples`` (invariant, equivariant and deliberately broken example models),
``geodl.testing.pytest_plugin`` (fixtures ``geodl_seed``, ``geodl_generator``, ``geodl_dtype``,
``geodl_device``).
"""

from __future__ import annotations

from geodl._lazy import lazy_module

_EXPORTS = {
    "equivariance_error": "_equivariance",
    "assert_invariant": "_equivariance",
    "assert_equivariant": "_equivariance",
    "default_rtol": "_equivariance",
    "atol_floor": "_equivariance",
    "EquivarianceReport": "_report",
    "EquivarianceRow": "_report",
    "ModuleReport": "_report",
    "check_module": "_check_module",
    "CHECKS": "_check_module",
    "random_inputs": "_inputs",
    "devices": "_params",
    "dtypes": "_params",
}

__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)
