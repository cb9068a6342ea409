"""eigh3x3 and segment_covariance against numpy / torch / naive loops (``backend``: once per back end)."""

import numpy as np
import pytest
import torch

import geodl.ops._eigh as eigh_mod
from geodl.ops import eigh3x3, segment_covariance

DTYPES = [torch.float32, torch.float64]
# ||AV - V diag(w)|| <= TOL * ||A|| (the targets), also used for orthonormality and det.
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _rot(n, gen):
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, dtype=torch.float64, generator=gen))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


def adversarial_matrices(dtype):
    """Named hard cases (float64 built, cast to dtype): ties, zero, rank 1, extreme scales, near-diagonal.

    Returns (A (n, 3, 3), tied (n,) bool: whether two eigenvalues are exactly equal).
    """
    gen = torch.Generator().manual_seed(7)
    Q = _rot(4, gen)
    u = torch.randn(3, dtype=torch.float64, generator=gen)
    X = torch.randn(3, 3, dtype=torch.float64, generator=gen)
    S = X + X.T
    cases = [
        (torch.eye(3), True),
        (torch.diag(torch.tensor([1.0, 1.0, 2.0])), True),
        (torch.diag(torch.tensor([2.0, 1.0, 2.0])), True),
        (torch.zeros(3, 3), True),
        (torch.outer(u, u), True),  # rank 1: double eigenvalue 0
        (-torch.outer(u, u), True),
        (Q[0] @ torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)) @ Q[0].T, True),
        (Q[1] @ torch.diag(torch.tensor([-3.0, 5.0, 5.0], dtype=torch.float64)) @ Q[1].T, True),
        (torch.diag(torch.tensor([1.0, 2.0, 3.0])) + 1e-9 * S, False),  # nearly diagonal
        (torch.diag(torch.tensor([3.0, 2.0, 1.0])) + 1e-20 * S, False),
        (Q[2] @ torch.diag(torch.tensor([1.0, 1.0 + 1e-9, 2.0], dtype=torch.float64)) @ Q[2].T, False),
        (torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), False),  # zero diagonal
        (S, False),
    ]
    if dtype == torch.float64:
        cases += [(1e30 * S, False), (1e-30 * S, False), (1e-300 * S, False), (1e300 * S, False),
                  (torch.diag(torch.tensor([1e-30, 1.0, 1e30], dtype=torch.float64)), False)]
    else:
        cases += [(1e30 * S, False), (1e-30 * S, False)]
    A = torch.stack([c.to(torch.float64) for c, _ in cases]).to(dtype)
    A = 0.5 * (A + A.mT)
    return A, torch.tensor([t for _, t in cases])


def check_decomposition(A, w, V, gap, tied=None):
    """Finite, ascending, orthonormal right-handed V, small residual, eigenvalues as numpy's."""
    tol = TOL[A.dtype]
    A64, w64, V64 = A.double(), w.double(), V.double()
    assert torch.isfinite(w).all() and torch.isfinite(V).all() and torch.isfinite(gap).all()
    assert (w[..., 1:] >= w[..., :-1]).all()
    ref = torch.from_numpy(np.linalg.eigvalsh(A64.numpy()))
    norm = ref.abs().amax(-1).clamp_min(torch.finfo(torch.float64).tiny)
    eye = torch.eye(3, dtype=torch.float64)
    assert ((V64.mT @ V64 - eye).abs().amax((-1, -2)) <= 10 * tol).all()
    assert ((torch.linalg.det(V64) - 1).abs() <= 10 * tol).all()
    An, wn = A64 / norm[..., None, None], w64 / norm[..., None]  # relative; no overflow at 1e300
    res = torch.linalg.vector_norm(An @ V64 - V64 * wn[..., None, :], dim=-2).amax(-1)
    assert (res <= tol).all(), res.max()
    assert ((wn - ref / norm[..., None]).abs().amax(-1) <= tol).all()
    if tied is not None:
        assert (gap[tied] <= 10 * tol).all()
        assert (gap[~tied] > 0).all() or A.dtype == torch.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_against_numpy_and_torch(dtype, backend):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 3, 3, dtype=torch.float64, generator=gen)
    A = (X + X.mT).to(dtype)
    w, V, gap = eigh3x3(A)
    check_decomposition(A, w, V, gap)
    w_t, V_t = torch.linalg.eigh(A.double())
    sep = gap >= 1e-3
    # eigenvectors equal torch's up to sign where the spectrum is separated
    cos = (V.double() * V_t).sum(-2).abs()
    assert ((1 - cos[sep]).abs() <= 10 * TOL[dtype]).all()
    gap_ref = (w_t[:, 1:] - w_t[:, :-1]).amin(-1) / w_t.abs().amax(-1)
    assert torch.allclose(gap.double(), gap_ref, atol=10 * TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial(dtype, backend):
    A, tied = adversarial_matrices(dtype)
    w, V, gap = eigh3x3(A)
    check_decomposition(A, w, V, gap, tied)
    assert (w[3] == 0).all() and (V[3] == torch.eye(3, dtype=dtype)).all()  # zero matrix: exact


def test_sign_rule_and_handedness():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(500, 3, 3, dtype=torch.float64, generator=gen)
    w, V, _ = eigh3x3(X + X.mT)
    for col in (0, 1):  # largest-magnitude component of the first two vectors is positive
        v = V[..., col]
        assert (v.gather(-1, v.abs().argmax(-1, keepdim=True)) > 0).all()
    assert torch.allclose(V[..., 2], torch.linalg.cross(V[..., 0], V[..., 1]), atol=1e-15, rtol=0)
    # the sign rule makes the output a function of the matrix: same answer for a rotated copy's pullback
    R = _rot(500, gen)
    w2, V2, _ = eigh3x3(R @ (X + X.mT) @ R.mT)
    assert torch.allclose(w, w2, atol=1e-12 * w.abs().max())


def test_batch_shapes_and_chunking(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(2, 25, 3, 3, dtype=torch.float64, generator=gen)
    A = (X + X.mT).transpose(0, 1)  # (25, 2, 3, 3), non-contiguous
    w, V, gap = eigh3x3(A)
    assert w.shape == (25, 2, 3) and V.shape == (25, 2, 3, 3) and gap.shape == (25, 2)
    for i in (0, 13, 24):
        wi, Vi, gi = eigh3x3(A[i, 1])
        # equal up to rounding (vectorised and scalar tails of torch's kernels may round differently)
        assert torch.allclose(wi, w[i, 1], rtol=0, atol=1e-13) and torch.allclose(Vi, V[i, 1], rtol=0, atol=1e-13)
        assert torch.allclose(gi, gap[i, 1], rtol=0, atol=1e-13)
    monkeypatch.setattr(eigh_mod, "_CHUNK", 7)  # chunk boundaries inside the batch
    w7, V7, _ = eigh3x3(A)
    assert torch.allclose(w7, w, rtol=0, atol=1e-13) and torch.allclose(V7, V, rtol=0, atol=1e-13)
    w0, V0, g0 = eigh3x3(torch.zeros(0, 4, 3, 3))
    assert w0.shape == (0, 4, 3) and V0.shape == (0, 4, 3, 3) and g0.shape == (0, 4)


def _sym(X):
    return X + X.mT + torch.diag(torch.tensor([0.0, 4.0, 8.0], dtype=X.dtype))  # well separated


def test_gradcheck(backend):
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(4, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda X: eigh3x3(_sym(X))[:2], (X,))
    assert torch.autograd.gradcheck(lambda X: eigh3x3(_sym(X))[2], (X,))


def test_gradient_matches_torch_and_guard_is_finite():
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(8, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    W = torch.randn(8, 3, 3, dtype=torch.float64, generator=gen)

    def loss(fn):  # sign-invariant in each eigenvector
        w, V = fn(_sym(X))[:2]
        return (w.sin().sum() + ((V.mT @ W @ V) ** 2).sum(),)

    (g,) = torch.autograd.grad(loss(eigh3x3)[0], X)
    (g_ref,) = torch.autograd.grad(loss(torch.linalg.eigh)[0], X)
    assert torch.allclose(g, g_ref, atol=1e-9)
    A = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1).requires_grad_()
    w, V, _ = eigh3x3(A)
    (gA,) = torch.autograd.grad((V * W[:2]).sum() + w.sum(), A)
    assert torch.isfinite(gA).all()  # exact tie: guarded, not inf/NaN
    assert torch.allclose(gA, gA.mT)


def test_opcheck():
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(6, 3, 3, dtype=torch.float64, generator=gen)
    torch.library.opcheck(eigh_mod._eigh3x3_op, (_sym(X).requires_grad_(),))


def test_bad_input():
    A = torch.eye(3)
    with pytest.raises(TypeError, match="A"):
        eigh3x3(torch.eye(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="A"):
        eigh3x3(np.eye(3))
    with pytest.raises(ValueError, match="A"):
        eigh3x3(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="A.*NaN"):
        eigh3x3(torch.stack([A, A * float("nan")]))
    with pytest.raises(ValueError, match="A.*inf"):
        eigh3x3(torch.diag(torch.tensor([1.0, float("inf"), 1.0])))
    B = A.clone()
    B[0, 1] = 1e-3
    with pytest.raises(ValueError, match="A.*symmetric"):
        eigh3x3(B)
    eigh3x3(B, sym_tol=1e-2)  # within a looser tolerance
    w, _, _ = eigh3x3(B, validate=False)  # unchecked: read as (A + A^T) / 2
    assert torch.allclose(w, torch.tensor([1 - 5e-4, 1, 1 + 5e-4]))


def _naive_cov(pos, batch, S, centered):
    cs, covs = [], []
    for s in range(S):
        x = pos[batch == s]
        c = x.mean(0) if len(x) else torch.zeros(pos.shape[1], dtype=pos.dtype)
        y = x - c if centered else x
        cs.append(c)
        covs.append(sum((torch.outer(p, p) for p in y), torch.zeros(pos.shape[1], pos.shape[1], dtype=pos.dtype)))
    return torch.stack(cs), torch.stack(covs)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("centered", [True, False])
def test_segment_covariance_against_loop(d, centered, backend):
    gen = torch.Generator().manual_seed(6)
    pos = 100 + torch.randn(40, d, dtype=torch.float64, generator=gen)
    batch = torch.randint(0, 5, (40,), generator=gen)
    batch[batch == 3] = 4  # segment 3 empty; segment 5 (beyond max) empty too
    c, cov, n = segment_covariance(pos, batch, 6, centered=centered)
    c_ref, cov_ref = _naive_cov(pos, batch, 6, centered)
    assert torch.allclose(c, c_ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(cov, cov_ref, rtol=1e-10, atol=1e-9)
    assert torch.equal(n, torch.bincount(batch, minlength=6))
    c1, cov1, n1 = segment_covariance(pos)
    assert torch.allclose(cov1[0], _naive_cov(pos, torch.zeros(40, dtype=torch.long), 1, True)[1][0], atol=1e-9)
    assert n1.tolist() == [40]


def test_segment_covariance_grad_and_bad_input():
    gen = torch.Generator().manual_seed(8)
    pos = torch.randn(9, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    batch = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2])
    assert torch.autograd.gradcheck(lambda p: segment_covariance(p, batch, 4)[:2], (pos,))
    with pytest.raises(ValueError, match="pos"):
        segment_covariance(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="batch"):
        segment_covariance(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch"):
        segment_covariance(torch.zeros(3, 3), torch.tensor([0, 1, 2]), num_segments=2)
    with pytest.raises(TypeError, match="pos"):
        segment_covariance(torch.zeros(5, 3, dtype=torch.long))
