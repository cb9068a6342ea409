"""The ``backend`` fixture: op tests that take it run once per back end of :mod:`geodl.ops`.

In this process the back end is ``"torch"``. Under ``TRITON_INTERPRET=1`` (set before triton is
imported: ``test_backends.py`` reruns the op test modules that way in a subprocess, selecting the
``[triton]`` cases with ``-k``) the fixture adds ``"triton"``, which runs the Triton kernels on CPU
tensors through Triton's interpreter.
"""

from __future__ import annotations

import pytest
from _triton_interp import BACKENDS  # tests/ops helper (pytest puts this folder on sys.path)

from geodl.ops import use_backend


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The op back end of this test case (set with ``geodl.ops.use_backend`` for its duration)."""
    with use_backend(request.param):
        yield request.param
