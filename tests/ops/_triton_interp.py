"""Run a snippet in a fresh interpreter with ``TRITON_INTERPRET=1`` (it must be set before triton is
imported, so the Triton kernels run on CPU tensors there) and fail with its stderr if it fails."""

from __future__ import annotations

import os
import subprocess
import sys


def run_interpreted(code: str, timeout: int = 300) -> str:
    """Run ``code`` (which must print ``ok`` at the end) under the interpreter; return its stdout."""
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
    return r.stdout
