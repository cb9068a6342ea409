"""A distribution on SO(3) from SO(3) Fourier coefficients, normalised on the HEALPix SO(3) grid.

Convention: the logit (unnormalised log-density) of batch element ``b`` at a rotation ``R`` is

    f_b(R) = Σ_{l<=lmax} Σ_{m,n} c_b^l[m, n] D^l[m, n](R) = Σ_l tr(C_b^lᵀ D^l(R)),

with ``D^l`` the real Wigner-D of :func:`geodl.groups.wigner_D` (e3nn's real basis), **not**
transposed, and ``coeffs[b]`` the blocks ``C_b^0 .. C_b^lmax`` flattened row-major and concatenated
(the layout of :func:`geodl.groups.wigner_D_chunks`): ``f = coeffs @ D_flat(R)``, as Image2Sphere's
``x @ flat_wigner(grid).T``. An SO(3) convolution output in the ``so3:<lmax>`` layout is such a vector.

Normalisation (IPDF / Image2Sphere): the ``N = 72 · 8^rec`` rotations of
:func:`geodl.groups.so3_healpix_grid` split SO(3) into cells of equal volume ``π² / N`` (the Haar
volume of SO(3) is ``π²`` in the measure of unit quaternions up to sign), so the density is

    p_b(R) = exp(f_b(R)) / Σ_i exp(f_b(G_i)) · N / π²,

``log p = f(R) - logsumexp_i f(G_i) + log N - log π²``: the uniform distribution (all coefficients 0)
has ``log p = -log π² = -2.2895`` at every grid level. ``log_prob`` evaluates ``f`` at the query
rotations themselves (not at their nearest grid rotation); the log-sum-exp over the grid runs over
chunks of the grid with an online (running maximum) update, so no ``(B, N)`` or ``(N, W)`` tensor
is ever held: the recursion-5 grid (2,359,296 rotations) fits in well under 2 GB (see
``benchmarks/so3_distribution_bench.py``). Its gradient with respect to the coefficients is a second
chunked pass (``Σ_i softmax_i D(G_i)``), so training through ``log_prob`` or ``cross_entropy`` does
not keep the grid's Wigner-D for the backward pass either.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import torch

from geodl._checks import check_alloc, check_choice, check_int, check_positive_int, check_tensor
from geodl.groups._wigner_grid import _flat_blocks, so3_fourier_width, wigner_D_chunks
from geodl.nn.pose._common import _checking, check_rotations

__all__ = ["SO3Distribution"]

LOG_PI2 = math.log(math.pi**2)
_DEFAULT_CHUNK = 8192  # grid rotations per chunk (see the benchmark for the memory of other sizes)
_CACHE_BYTES = 64 << 20  # the flattened Wigner-D of a grid at most this large is kept between calls
_CACHE_ENTRIES = 4
_grid_D_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_grid_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_cache_lock = threading.Lock()


def _cached(cache: OrderedDict, key, build):
    with _cache_lock:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
            return hit
    value = build()
    with _cache_lock:
        cache[key] = value
        while len(cache) > _CACHE_ENTRIES:
            cache.popitem(last=False)
    return value


def cell_radius(n: int) -> float:
    """Radius ``r`` of the geodesic ball of Haar measure ``1 / n`` (``(r - sin r) / π = 1 / n``)."""
    target = math.pi / n
    r = min(math.pi, (6 * target) ** (1 / 3))
    for _ in range(50):  # Newton on r - sin r - target (convex, increasing)
        g = r - math.sin(r) - target
        d = 1 - math.cos(r)
        if d <= 0:
            break
        r_new = min(math.pi, max(1e-12, r - g / d))
        if abs(r_new - r) < 1e-15:
            break
        r = r_new
    return r


class _GridLogSumExp(torch.autograd.Function):
    """``logsumexp_i (coeffs @ D_i)`` over the grid chunks of ``chunks()``; backward recomputes them."""

    @staticmethod
    def forward(ctx, coeffs, chunks):
        m = torch.full(coeffs.shape[:1], -math.inf, dtype=torch.float64, device=coeffs.device)
        s = torch.zeros_like(m)
        for _, D in chunks():
            z = (coeffs @ D.T).double()  # (B, c)
            new = torch.maximum(m, z.amax(dim=1))
            s = s * torch.exp(m - new) + torch.exp(z - new[:, None]).sum(dim=1)
            m = new
        out = (m + torch.log(s)).to(coeffs.dtype)
        ctx.chunks = chunks
        ctx.save_for_backward(coeffs, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        coeffs, out = ctx.saved_tensors
        acc = torch.zeros_like(coeffs)
        for _, D in ctx.chunks():
            acc += torch.exp(coeffs @ D.T - out[:, None]) @ D
        return acc * grad[:, None], None


def _skew_generators(dtype, device) -> torch.Tensor:
    K = torch.zeros(3, 3, 3, dtype=dtype, device=device)
    K[0, 2, 1], K[0, 1, 2] = 1, -1
    K[1, 0, 2], K[1, 2, 0] = 1, -1
    K[2, 1, 0], K[2, 0, 1] = 1, -1
    return K


class SO3Distribution:
    """A batch of distributions on SO(3): logits from SO(3) Fourier coefficients, normalised on a HEALPix grid.

    Parameters
    ----------
    coeffs : Tensor ``(B, W)``
        SO(3) Fourier coefficients, ``W = Σ_{l<=lmax} (2l+1)²`` (455 at ``lmax = 6``), blocks
        ``C^l`` flattened row-major and concatenated; the logit is ``f(R) = Σ_l tr(C^lᵀ D^l(R))``
        (module docstring). Floating point, finite; differentiable (gradients flow from
        :meth:`log_prob`, :meth:`logits`, :meth:`cross_entropy`, :meth:`probs`).
    lmax : int
        The largest degree the coefficients were built for; must match ``W``.
    rec : int, default 3
        Level of the HEALPix SO(3) grid (``72 · 8^rec`` rotations: 36,864 at 3; IPDF and
        Image2Sphere evaluate at 5, 2,359,296 rotations).
    chunk_size : int, optional
        Grid rotations per chunk (default 8,192): memory is ``O(chunk_size · (W + 16 (2 lmax + 1)²) + B · chunk_size)``.

    Raises
    ------
    ValueError
        ``coeffs`` not ``(B, W)`` with ``W`` matching ``lmax`` (names ``coeffs`` and ``lmax``), NaN
        or inf coefficients (checked on the CPU), ``lmax < 0``, ``rec`` outside ``[0, 8]``, ``chunk_size < 1``.

    Examples
    --------
    >>> import torch
    >>> from geodl.groups import random_rotation
    >>> dist = SO3Distribution(torch.zeros(2, 35, dtype=torch.float64), lmax=2, rec=1)
    >>> R = random_rotation(2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> dist.log_prob(R)  # uniform: -log(pi^2)
    tensor([-2.2895, -2.2895], dtype=torch.float64)
    >>> round(float(dist.probs().sum(-1)[0]), 12)
    1.0
    """

    def __init__(self, coeffs: torch.Tensor, lmax: int, *, rec: int = 3, chunk_size: int | None = None):
        lmax = check_int("lmax", lmax, min=0)
        coeffs = check_tensor("coeffs", coeffs, ndim=2, floating=True)
        width = so3_fourier_width(lmax)
        if coeffs.shape[1] != width:
            got = coeffs.shape[1]
            guess = next((f" (the width of lmax={k})" for k in range(0, 200) if so3_fourier_width(k) == got), "")
            raise ValueError(f"coeffs: width {got}{guess} does not match lmax={lmax}, which has "
                             f"Σ(2l+1)² = {width} coefficients; expected shape (B, {width})")
        if _checking(coeffs):
            check_tensor("coeffs", coeffs, finite=True)
        self.coeffs = coeffs
        self.lmax = lmax
        self.rec = check_int("rec", rec, min=0, max=8)
        self.chunk_size = _DEFAULT_CHUNK if chunk_size is None else check_positive_int("chunk_size", chunk_size)
        self.num_grid = 72 * 8**self.rec

    # ------------------------------------------------------------------ grid
    @property
    def batch_size(self) -> int:
        return self.coeffs.shape[0]

    @property
    def grid(self) -> torch.Tensor:
        """The ``(N, 3, 3)`` grid rotations in the coefficients' dtype and device (cached)."""
        from geodl.groups import so3_healpix_grid

        key = (self.rec, self.coeffs.dtype, str(self.coeffs.device))
        return _cached(_grid_cache, key, lambda: so3_healpix_grid(self.rec, dtype=self.coeffs.dtype,
                                                                  device=self.coeffs.device))

    def _grid_chunks(self):
        """``(start, D (rows, W))`` over the grid: slices of the cached matrix when it is small."""
        c = self.coeffs
        width = self.coeffs.shape[1]
        if self.num_grid * width * c.dtype.itemsize <= _CACHE_BYTES:
            key = (self.lmax, self.rec, c.dtype, str(c.device))
            D = _cached(_grid_D_cache, key, lambda: _flat_blocks(self.lmax, self.grid))
            return ((s, D[s:s + self.chunk_size]) for s in range(0, self.num_grid, self.chunk_size))
        return wigner_D_chunks(self.lmax, self.grid, self.chunk_size)

    def log_normalizer(self) -> torch.Tensor:
        """``(B,)``: ``logsumexp_i f(G_i)`` over the grid (chunked, online; differentiable)."""
        return _GridLogSumExp.apply(self.coeffs, self._grid_chunks)

    def grid_logits(self) -> torch.Tensor:
        """``(B, N)``: the logits at every grid rotation (``ValueError`` naming ``rec`` when too large)."""
        check_alloc("rec", self.rec, self.batch_size, self.num_grid, self.coeffs.dtype, self.coeffs.device)
        return torch.cat([self.coeffs @ D.T for _, D in self._grid_chunks()], dim=1)

    def probs(self) -> torch.Tensor:
        """``(B, N)``: the grid probabilities ``softmax_i f(G_i)`` (each row sums to 1), in grid order."""
        return torch.softmax(self.grid_logits(), dim=-1)

    # ------------------------------------------------------------------ densities
    def _logits(self, R: torch.Tensor, coeffs: torch.Tensor | None = None) -> torch.Tensor:
        """``f`` at ``R (B, ..., 3, 3)`` (no checks), with ``coeffs`` (default: the distribution's)."""
        coeffs = self.coeffs if coeffs is None else coeffs
        shape = R.shape[:-2]
        flat = R.reshape(self.batch_size, -1, 3, 3).to(coeffs.dtype)
        D = _flat_blocks(self.lmax, flat)  # (B, S, W)
        return torch.einsum("bw,bsw->bs", coeffs, D).reshape(shape)

    def _check_query(self, name: str, R) -> torch.Tensor:
        R = check_rotations(name, R)
        if R.dim() not in (3, 4) or R.shape[0] != self.batch_size:
            raise ValueError(f"{name}: expected shape (B, 3, 3) or (B, S, 3, 3) with B = {self.batch_size} "
                             f"(the batch of coeffs), got {tuple(R.shape)}")
        check_alloc(name, tuple(R.shape), R.numel() // 9, self.coeffs.shape[1], self.coeffs.dtype,
                    self.coeffs.device, elem_bytes=self.coeffs.dtype.itemsize)  # the Wigner-D of R, twice
        return R.to(device=self.coeffs.device)

    def logits(self, R: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-density ``f`` at rotations ``R`` ``(B, 3, 3)`` -> ``(B,)`` or ``(B, S, 3, 3)`` -> ``(B, S)``."""
        return self._logits(self._check_query("R", R))

    def log_prob(self, R: torch.Tensor) -> torch.Tensor:
        """Log-density ``f(R) - logsumexp_grid f + log N - log π²`` at rotations ``R``.

        Parameters
        ----------
        R : Tensor ``(B, 3, 3)`` or ``(B, S, 3, 3)``
            Rotation matrices (orthonormal with det +1 within ``max(1e-6, 1000 eps)``, checked on the CPU).

        Returns
        -------
        Tensor ``(B,)`` or ``(B, S)`` in the coefficients' dtype.
        """
        R = self._check_query("R", R)
        f = self._logits(R)
        logz = self.log_normalizer()
        logz = logz.reshape(-1, *([1] * (f.dim() - 1)))
        return f - logz + (math.log(self.num_grid) - LOG_PI2)

    def cross_entropy(self, R_true: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy to the grid rotation nearest each ground truth: ``-log softmax_i f(G_i)`` at ``i = nearest(R_true)``.

        Parameters
        ----------
        R_true : Tensor ``(B, 3, 3)``
            Ground-truth rotations (checked as in :meth:`log_prob`).
        reduction : {"mean", "sum", "none"}
        """
        from geodl.groups import nearest_rotation

        R_true = check_rotations("R_true", R_true, shape=(None, 3, 3))
        if R_true.shape[0] != self.batch_size:
            raise ValueError(f"R_true: expected {self.batch_size} rotations (the batch of coeffs), got {R_true.shape[0]}")
        check_choice("reduction", reduction, ("mean", "sum", "none"))
        grid = self.grid
        idx = nearest_rotation(R_true.to(device=grid.device, dtype=grid.dtype), grid)
        loss = self.log_normalizer() - self._logits(grid[idx])
        return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()

    # ------------------------------------------------------------------ point estimates and samples
    def _grid_argmax(self) -> torch.Tensor:
        best = torch.full((self.batch_size,), -math.inf, dtype=self.coeffs.dtype, device=self.coeffs.device)
        arg = torch.zeros(self.batch_size, dtype=torch.long, device=self.coeffs.device)
        with torch.no_grad():
            for start, D in self._grid_chunks():
                z = self.coeffs.detach() @ D.T
                v, i = z.max(dim=1)
                better = v > best
                best = torch.where(better, v, best)
                arg = torch.where(better, i + start, arg)
        return arg

    def mode(self, steps: int = 30) -> torch.Tensor:
        """``(B, 3, 3)``: the most likely rotation: the grid argmax refined by ``steps`` of gradient ascent of ``f``.

        Each step moves ``R <- exp([t ω/|ω|]×) R`` along the Riemannian gradient ``ω_k = <∂f/∂R, [e_k]× R>``
        (an axis-angle update on the left), accepted when ``f`` increases; the step ``t`` starts at
        half the grid's cell radius and grows by 1.5 on success, halves on failure (per sample).
        ``steps = 0`` returns the grid argmax. Not differentiable (detached).
        """
        from geodl.groups import axis_angle_to_matrix

        steps = check_int("steps", steps, min=0, max=10_000)
        R = self.grid[self._grid_argmax()].clone()
        if steps == 0 or self.lmax == 0:  # degree 0 alone: f is constant, any rotation is a mode
            return R
        coeffs = self.coeffs.detach()
        cell = cell_radius(self.num_grid)
        t = torch.full((self.batch_size,), 0.5 * cell, dtype=coeffs.dtype, device=coeffs.device)
        K = _skew_generators(coeffs.dtype, coeffs.device)
        tiny = torch.finfo(coeffs.dtype).tiny ** 0.5
        with torch.enable_grad():
            for _ in range(steps):
                Rg = R.detach().requires_grad_(True)
                f = self._logits(Rg, coeffs)
                (G,) = torch.autograd.grad(f.sum(), Rg)
                omega = torch.einsum("bij,kjl,bli->bk", G.transpose(-1, -2), K, R)  # <G, K_k R>_F
                norm = omega.norm(dim=-1, keepdim=True)
                move = axis_angle_to_matrix(t[:, None] * omega / norm.clamp_min(tiny)) @ R
                with torch.no_grad():
                    better = (self._logits(move, coeffs) > f.detach()) & (norm[:, 0] > tiny)
                R = torch.where(better[:, None, None], move, R).detach()
                t = torch.where(better, (t * 1.5).clamp_max(cell), t * 0.5)
        return R

    def sample(self, n: int, generator: torch.Generator | None = None, *, jitter: bool = False) -> torch.Tensor:
        """``(B, n, 3, 3)``: ``n`` rotations per batch element drawn from the grid probabilities.

        With ``jitter=True`` each draw is moved by a rotation vector uniform in the ball of radius
        ``r`` with ``(r - sin r) / π = 1 / N`` (the geodesic ball of one cell's volume), so that draws
        cover SO(3) instead of the grid points. ``generator`` (on the coefficients' device) makes it
        reproducible. Not differentiable.
        """
        from geodl.groups import axis_angle_to_matrix

        n = check_int("n", n, min=1, max=2**31 - 1)
        check_alloc("n", n, self.batch_size * n, 9, self.coeffs.dtype, self.coeffs.device, elem_bytes=8)
        with torch.no_grad():
            probs = torch.softmax(self.grid_logits().detach(), dim=-1)
            idx = torch.multinomial(probs, n, replacement=True, generator=generator)
            R = self.grid[idx]  # (B, n, 3, 3)
            if jitter:
                c = self.coeffs
                r = cell_radius(self.num_grid)
                d = torch.randn(self.batch_size, n, 3, generator=generator, dtype=c.dtype, device=c.device)
                d = d / d.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(c.dtype).tiny)
                u = torch.rand(self.batch_size, n, 1, generator=generator, dtype=c.dtype, device=c.device)
                R = axis_angle_to_matrix(d * r * u ** (1 / 3)) @ R
        return R

    def __repr__(self) -> str:
        return (f"SO3Distribution(batch={self.batch_size}, lmax={self.lmax}, rec={self.rec} "
                f"({self.num_grid} rotations), chunk_size={self.chunk_size}, dtype={self.coeffs.dtype})")
