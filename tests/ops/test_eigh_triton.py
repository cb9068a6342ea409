"""The Triton eigh3x3 kernel: on CPU through the Triton interpreter (tiny sizes), on CUDA when present."""

import importlib.util
from pathlib import Path

import pytest
import torch
from _triton_interp import run_on_saved  # tests/ops helper (pytest puts this folder on sys.path)

from geodl.ops import eigh3x3
from geodl.ops._eigh import _eigh_reference

pytest.importorskip("triton")

_spec = importlib.util.spec_from_file_location("_eigh_cases", Path(__file__).with_name("test_eigh.py"))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

# TRITON_INTERPRET must be set before triton is imported, hence a fresh interpreter.
_SCRIPT = """
import sys, torch
from geodl.ops._triton_eigh import eigh3x3_triton
inputs = torch.load(sys.argv[1])
torch.save([eigh3x3_triton(A) for A in inputs], sys.argv[2])
"""


def _run_interpreted(inputs, tmp_path):
    return run_on_saved(_SCRIPT, inputs, tmp_path)


def _gap(w):
    wn = w / w.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    return (wn[:, 1:] - wn[:, :-1]).amin(-1)


def test_interpreter_adversarial_and_random(tmp_path):
    gen = torch.Generator().manual_seed(11)
    inputs, tied = [], []
    for dtype in (torch.float32, torch.float64):
        A, t = cases.adversarial_matrices(dtype)
        X = torch.randn(40, 3, 3, dtype=torch.float64, generator=gen)
        inputs.append(torch.cat([A, (X + X.mT).to(dtype)]).contiguous())
        tied.append(torch.cat([t, torch.zeros(40, dtype=torch.bool)]))
    outputs = _run_interpreted(inputs, tmp_path)
    for A, t, (w, V) in zip(inputs, tied, outputs):
        assert w.dtype == A.dtype and V.shape == A.shape
        cases.check_decomposition(A, w, V, _gap(w), t)
        w_ref, V_ref = _eigh_reference(A)  # same algorithm: agrees to rounding
        tol = 20 * torch.finfo(A.dtype).eps
        assert torch.allclose(w, w_ref, rtol=0, atol=tol * w_ref.abs().amax().item())
        sep = _gap(w_ref) > 1e-3  # eigenvectors comparable where unique (same sign rule)
        assert torch.allclose(V[sep], V_ref[sep], rtol=0, atol=1e3 * tol)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_kernel(dtype):
    A, tied = cases.adversarial_matrices(dtype)
    w, V, gap = eigh3x3(A.cuda())
    cases.check_decomposition(A, w.cpu(), V.cpu(), gap.cpu(), tied)
    gen = torch.Generator(device="cuda").manual_seed(0)
    X = torch.randn(1_000_000, 3, 3, device="cuda", dtype=dtype, generator=gen)  # > 65,536: torch fails here
    A = X + X.mT
    w, V, gap = eigh3x3(A)
    idx = torch.arange(0, A.shape[0], 997, device="cuda")
    cases.check_decomposition(A[idx].cpu(), w[idx].cpu(), V[idx].cpu(), gap[idx].cpu())
    X.requires_grad_()
    w, V, _ = eigh3x3(X[:64] + X[:64].mT)
    (g,) = torch.autograd.grad(w.sum() + V.sum(), X)
    assert torch.isfinite(g).all()
