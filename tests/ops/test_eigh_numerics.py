"""eigh3x3 at the ends of the floating-point range and its gradient at degenerate spectra."""

import pytest
import torch
from _triton_interp import run_on_saved  # tests/ops helper

import geodl.ops._eigh as eigh_mod
from geodl.ops import eigh3x3

DTYPES = [torch.float32, torch.float64]


def _rot(gen):
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=gen))
    return q * torch.sign(torch.diagonal(r))


def _huge(dtype):
    """Matrices whose entries are close to the largest finite value (A + A^T overflows)."""
    big = torch.finfo(dtype).max
    Q = _rot(torch.Generator().manual_seed(1))
    spread = (Q @ torch.diag(torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64)) @ Q.T).to(dtype)
    spread = 0.5 * spread + 0.5 * spread.T
    return torch.stack([0.9 * big * torch.eye(3, dtype=dtype), big * spread,
                        0.8 * big * torch.diag(torch.tensor([-1.0, 0.5, 1.0], dtype=dtype))])


@pytest.mark.parametrize("dtype", DTYPES)
def test_entries_near_max_are_finite_and_exact(dtype, backend):
    A = _huge(dtype)
    w, V, gap = eigh3x3(A)
    assert torch.isfinite(w).all() and torch.isfinite(V).all() and torch.isfinite(gap).all()
    scale = A.abs().amax(dim=(-1, -2))
    resid = ((A / scale[:, None, None]) @ V - V * (w / scale[:, None])[:, None, :]).abs().amax()
    assert resid < 50 * torch.finfo(dtype).eps
    eye = torch.eye(3, dtype=dtype)
    assert torch.allclose(V.mT @ V, eye.expand(3, 3, 3), atol=50 * torch.finfo(dtype).eps)
    # 3e38 * I in float32: the case of the issue
    w, V, gap = eigh3x3(torch.full((3,), 3e38).diag())
    assert torch.equal(w, torch.full((3,), 3e38)) and torch.equal(V, torch.eye(3)) and float(gap) == 0.0


def test_entries_near_max_triton_interpreter(tmp_path):
    pytest.importorskip("triton")
    inputs = [_huge(torch.float32).contiguous(), _huge(torch.float64).contiguous()]
    script = ("import sys, torch\nfrom geodl.ops._triton_eigh import eigh3x3_triton\n"
              "torch.save([eigh3x3_triton(A) for A in torch.load(sys.argv[1])], sys.argv[2])\n")
    for A, (w, V) in zip(inputs, run_on_saved(script, inputs, tmp_path)):
        w_ref, V_ref = eigh_mod._eigh_reference(A)
        assert torch.isfinite(w).all() and torch.isfinite(V).all()
        assert torch.allclose(w / w_ref.abs().amax(), w_ref / w_ref.abs().amax(), atol=20 * torch.finfo(A.dtype).eps)


def test_eigenvalues_beyond_the_range_are_inf_with_nan_gap():
    """Eigenvalues that do not fit the dtype: inf (not NaN eigenvectors) and a NaN gap."""
    w, V, gap = eigh3x3(torch.full((3, 3), 3e38))  # eigenvalue 9e38 > float32 max
    assert torch.isinf(w[-1]) and torch.isfinite(V).all() and torch.isnan(gap)


def test_ordinary_matrices_bit_for_bit_unchanged():
    """Halving before symmetrising changes no bit of the result for ordinary matrices."""
    gen = torch.Generator().manual_seed(2)
    for dtype in DTYPES:
        X = torch.randn(300, 3, 3, dtype=torch.float64, generator=gen).to(dtype)
        A = X + 1e-3 * X.mT  # slightly asymmetric: the symmetrisation matters
        w, V = eigh_mod._eigh_chunk(A, eigh_mod.SWEEPS[dtype])
        S = 0.5 * (A + A.mT)
        w0, V0 = eigh_mod._eigh_chunk(S, eigh_mod.SWEEPS[dtype])  # S is symmetric: same path
        assert torch.equal(w, w0) and torch.equal(V, V0)


def _old_backward_F(w):
    """The eigenvector factor of the gradient before the scaled fallback (for ordinary spectra)."""
    D = w[:, None, :] - w[:, :, None]
    eps = torch.finfo(w.dtype).eps ** 0.5 * w.abs().amax(-1).clamp_min(torch.finfo(w.dtype).tiny)
    return D / (D * D + eps[:, None, None] ** 2)


def _grads(A, W):
    A = A.clone().requires_grad_()
    w, V, _ = eigh3x3(A, validate=False)
    (g,) = torch.autograd.grad((V * W).sum() + (w * W[..., 0]).sum(), A)
    return g


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_finite_at_degenerate_spectra(dtype, backend):
    tiny_scale = 1e-200 if dtype == torch.float64 else 1e-30
    A = torch.stack([
        torch.zeros(3, 3, dtype=dtype),                                  # the zero matrix (was 0/0)
        tiny_scale * torch.eye(3, dtype=dtype),                          # tie, squares underflow
        tiny_scale * torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=dtype)),
        torch.eye(3, dtype=dtype),
        torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=dtype)),
    ])
    W = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    g = _grads(A, W)
    assert torch.isfinite(g).all()
    # zero matrix: V = I, the eigenvector terms are dropped, the eigenvalue part is diag(W[:, 0])
    assert torch.allclose(g[0], torch.diag(W[0, :, 0]), atol=0)


def test_backward_scale_covariant_where_squares_underflow_or_overflow():
    """grad at s*A is grad at A / s for an eigenvector loss: the scaled fallback is the same formula."""
    gen = torch.Generator().manual_seed(4)
    Q = _rot(gen)
    A = Q @ torch.diag(torch.tensor([1.0, 1.0 + 1e-3, 2.0], dtype=torch.float64)) @ Q.T
    A = 0.5 * (A + A.T)
    W = torch.randn(3, 3, dtype=torch.float64, generator=gen)

    def gv(M):
        M = M.clone().requires_grad_()
        V = eigh3x3(M, validate=False)[1]
        return torch.autograd.grad(((V.T @ W @ V).diagonal() ** 2).sum(), M)[0]  # sign-invariant

    g1 = gv(A)
    for s in (1e-200, 1e-300, 1e150, 1e200):
        gs = gv(s * A)
        assert torch.isfinite(gs).all()
        assert torch.allclose(gs * s, g1, rtol=1e-8, atol=1e-8 * g1.abs().max().item()), s


def test_backward_ordinary_spectra_bit_for_bit_unchanged():
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(50, 3, 3, dtype=torch.float64, generator=gen)
    A = X + X.mT
    W = torch.randn(50, 3, 3, dtype=torch.float64, generator=gen)
    g = _grads(A, W)
    w, V, _ = eigh3x3(A)
    G = (V.mT @ W) * _old_backward_F(w) + torch.diag_embed(W[..., 0])
    gA = V @ G @ V.mT
    assert torch.equal(g, 0.5 * (gA + gA.mT))


def test_sym_tol_must_be_a_non_negative_number():
    """Fuzz finding F04: a string was accepted for sym_tol."""
    with pytest.raises(TypeError, match="sym_tol: expected a real number"):
        eigh3x3(torch.eye(3), sym_tol="1")
    with pytest.raises(ValueError, match="sym_tol: expected a non-negative number"):
        eigh3x3(torch.eye(3), sym_tol=-1.0)
    eigh3x3(torch.eye(3), sym_tol=0)


def test_segment_covariance_zero_segments_without_batch_names_num_segments():
    """Fuzz finding F03: the error named batch, which was not given."""
    from geodl.ops import segment_covariance

    with pytest.raises(ValueError, match=r"^num_segments: 0 segments cannot hold the 7 points"):
        segment_covariance(torch.ones(7, 2), None, num_segments=0)
    c, cov, n = segment_covariance(torch.ones(0, 2), None, num_segments=0)
    assert c.shape == (0, 2) and cov.shape == (0, 2, 2) and n.shape == (0,)
