"""Helpers for running the Triton kernels through Triton's interpreter (``TRITON_INTERPRET=1``).

The variable must be set before triton is imported, so the kernels run on CPU tensors only in a
fresh interpreter started with it: :func:`run_interpreted` runs a snippet, :func:`run_on_saved`
a script on saved tensors, :func:`run_pytest`
reruns test modules there. ``BACKENDS`` are the op back ends the ``backend`` fixture
(``conftest.py``) runs in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
BACKENDS = ["torch"] + (["triton"] if INTERPRETING else [])


def interpreter_env(**extra) -> dict:
    return dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", **extra)


def run_interpreted(code: str, timeout: int = 300, **env) -> str:
    """Run ``code`` (which must print ``ok`` at the end) under the interpreter; return its stdout."""
    r = subprocess.run([sys.executable, "-c", code], env=interpreter_env(**env), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
    return r.stdout


def run_on_saved(code: str, inputs, tmp_path, timeout: int = 300):
    """Run ``code`` under the interpreter with ``sys.argv[1]`` a ``torch.save`` of ``inputs``; it
    must ``torch.save`` its result to ``sys.argv[2]``, which is loaded and returned."""
    import torch

    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save(inputs, src)
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], env=interpreter_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(dst)


def run_pytest(args: list, timeout: int = 900) -> str:
    """``pytest -q args`` under the interpreter; fail with its report unless some test ran and all passed."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    proc = subprocess.run(cmd, env=interpreter_env(), capture_output=True, text=True, timeout=timeout)
    report = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report  # 5 would mean nothing was collected
    assert " passed" in proc.stdout.splitlines()[-1], report
    return proc.stdout
