"""The Triton scatter/segment/gather kernels pass the kernel tests of ``test_scatter.py`` on CPU.

Triton's interpreter (``TRITON_INTERPRET=1``) must be on before the kernels are defined and while
they run, so ``test_scatter.py`` runs in a subprocess with the variable set; there
``test_scatter.KERNELS`` gains the ``triton`` back end and the public functions dispatch CPU
tensors to the Triton kernels. ``-k "triton or not kernel"`` skips the torch-only kernel cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")


def test_triton_kernels_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "triton or not kernel",
           str(Path(__file__).with_name("test_scatter.py"))]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    report = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    # the triton cases were collected and run (return code 5 would mean none were)
    assert " passed" in proc.stdout.splitlines()[-1], report
