"""Fuzz of the soft-equivariance layers, regularisers, strength tuner and symmetry report (registered with ``@fuzz``)."""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, st, tensor_muts, values, with_cases  # noqa: F401

S = st()
_BASES = ("scalars", "sh0", "vectors", "pseudovectors", "points", "tensor2", "sh2")
_ROT_GROUPS = ["O3", "SO3", "O2x", "O2z", "SO2y", "SO2z"]
_LIN_GROUPS = _ROT_GROUPS + ["scale", "O2z+scale", "SO3+scale"]
_ALL_GROUPS = _LIN_GROUPS + ["T3", "SO3+T3", "O3+scale+T3"]
_BIG = "O3+scale"  # contains every linear candidate group
_BAD_SPECS = values("", "3xfoo", "0xvectors", "vectors+", "sh101", "x", 3, None, 2.5)
_BAD_GROUPS = values("O4", "", "O3+SO3", "O2w", 5)
_AFFINE = values("SO3+T3", "T3")
_BAD_DTYPES = ("int64", "str", "complex64")
_LEADS = [(), (0,), (3,), (2, 4)]
_X_SHAPES = {"last dim + 1": lambda x: x.new_zeros(*x.shape[:-1], x.shape[-1] + 1),
             "last dim - 1": lambda x: x[..., :-1] if x.shape[-1] > 1 else x.new_zeros(*x.shape[:-1], 2),
             "0-d": lambda x: x.new_zeros(())}
_TP_HIDDEN = ["scalars+vectors", "vectors", "2xscalars", "scalars+pseudovectors"]
_MLP_HIDDEN = ["2xscalars+vectors+tensor2", "2xscalars+vectors", "scalars+2xvectors", "3xscalars"]


def _dtype(name):
    import torch

    return {"int64": torch.int64, "str": "float64", "complex64": torch.complex64}.get(name, name)


_DTYPE_MUTS = [Mut(f"dtype {n}", (lambda kw, n=n: _dtype(n)), names=("dtype",)) for n in _BAD_DTYPES]


@S.composite
def _spec(draw, bases=_BASES, max_dim=30, max_terms=3):
    from geodl.nn.soft_equivariance import Rep

    terms, dim = [], 0
    for _ in range(draw(S.integers(1, max_terms))):
        b = draw(S.sampled_from(bases))
        m = draw(S.integers(1, 2))
        d = m * Rep(b).dim
        if terms and dim + d > max_dim:
            break
        terms.append(b if m == 1 else f"{m}x{b}")
        dim += d
    return "+".join(terms)


def _f64():
    import torch

    return torch.float64


def _rdim(spec) -> int:
    from geodl.nn.soft_equivariance import Rep

    return Rep(spec).dim


def _x(draw, spec, lead=None, seed=None):
    import torch

    lead = draw(S.sampled_from(_LEADS)) if lead is None else lead
    g = torch.Generator().manual_seed(draw(S.integers(0, 2**31 - 1)) if seed is None else seed)
    return torch.randn(*lead, _rdim(spec), generator=g, dtype=torch.float64)


def _sample(group, seed):
    import torch

    from geodl.nn.soft_equivariance import candidate_group

    return candidate_group(group).sample(generator=torch.Generator().manual_seed(seed))


def _check_equivariant(f, rep_in, rep_out, group, x, seed, msg="equivariance"):
    """``f(g·x) == g·f(x)`` for one Haar-random ``g`` of ``group``, relative to the output's size."""
    from geodl.nn.soft_equivariance import Rep

    g = _sample(group, seed)
    y = f(x)
    lhs, rhs = f(Rep(rep_in).act(g, x)), Rep(rep_out).act(g, y)
    c = max(1.0, float(rhs.abs().max()) if rhs.numel() else 1.0)
    close(lhs / c, rhs / c, atol=1e-9, rtol=0, msg=f"{msg} ({group})")


def _need(kw, key, pred, value):
    """``value`` when ``pred(kw[key])``; otherwise the mutation does not apply (``cases`` skips it)."""
    if not pred(kw[key]):
        raise ValueError("mutation does not apply")
    return value


# --------------------------------------------------------------------------- RepLinear
@S.composite
def _linear_valid(draw):
    rep_in, rep_out = draw(_spec()), draw(_spec())
    return dict(rep_in=rep_in, rep_out=rep_out, group=draw(S.sampled_from([None] + _LIN_GROUPS)),
                bias=draw(S.booleans()), gain=draw(S.sampled_from([1.0, 0.5, 3.0])), dtype=_f64(),
                x=_x(draw, rep_in), seed=draw(S.integers(0, 2**31 - 1)))


_HUGE_REP = Mut("100000000xvectors (above MAX_WEIGHTS)", "100000000xvectors", names=("rep_in", "rep_out"))


@fuzz("geodl.nn.soft_equivariance.RepLinear", examples=25)
@with_cases(lambda: cases(_linear_valid(), {
    "rep_in": _BAD_SPECS, "rep_out": _BAD_SPECS + [_HUGE_REP], "group": _BAD_GROUPS + _AFFINE,
    "bias": values(1, "yes", None), "gain": values(-1.0, 0.0, float("nan"), float("inf"), "1"),
    "dtype": _DTYPE_MUTS, "x": tensor_muts("x", shapes=_X_SHAPES)}))
def build_rep_linear(rep_in, rep_out, group, bias, gain, dtype, x, seed):
    import torch

    from geodl.nn.soft_equivariance import Rep, RepLinear


    def call():
        layer = RepLinear(rep_in, rep_out, group, bias=bias, dtype=dtype, gain=gain)
        return layer, layer(x)

    def verify(res):
        layer, y = res
        d_in, d_out = Rep(rep_in).dim, Rep(rep_out).dim
        expect(tuple(y.shape) == tuple(x.shape[:-1]) + (d_out,), f"output shape {tuple(y.shape)}")
        expect(y.dtype == torch.float64, f"output dtype {y.dtype}")
        finite(y)
        W, b = layer.effective_weight()
        expect(tuple(W.shape) == (d_out, d_in) and (b is None) == (not bias), "effective_weight shapes")
        close(y, x @ W.T + (0 if b is None else b), atol=1e-10, msg="y = x Wᵀ + b")
        pen = layer.equivariance_penalty(_BIG if group is None else group)
        expect(pen.dim() == 0 and float(pen) >= 0, f"penalty {pen}")
        if group is not None:
            expect(float(pen) <= 1e-20, f"penalty {float(pen)} of a hard layer")
            _check_equivariant(layer, rep_in, rep_out, group, x, seed)

    return call, verify


# --------------------------------------------------------------------------- RPPLinear
@S.composite
def _rpp_valid(draw):
    kw = draw(_linear_valid())
    kw["group"] = draw(S.sampled_from(_LIN_GROUPS))
    kw["free_scale"] = draw(S.sampled_from([0.0, 0.1, 1.0]))
    del kw["gain"]
    return kw


@fuzz("geodl.nn.soft_equivariance.RPPLinear", examples=20)
@with_cases(lambda: cases(_rpp_valid(), {
    "rep_in": _BAD_SPECS, "rep_out": _BAD_SPECS, "group": _BAD_GROUPS + _AFFINE + values(None),
    "bias": values(1, None), "dtype": _DTYPE_MUTS, "x": tensor_muts("x", shapes=_X_SHAPES)}))
def build_rpp_linear(rep_in, rep_out, group, bias, dtype, x, seed, free_scale):
    import torch

    from geodl.nn.soft_equivariance import Rep, RPPLinear


    def call():
        layer = RPPLinear(rep_in, rep_out, group, bias=bias, dtype=dtype)
        prior0 = layer.prior_penalty().detach()
        hard_W, hard_b = (t if t is None else t.detach().clone() for t in layer.effective_weight())
        pen0 = layer.equivariance_penalty(group).detach()
        y0 = layer(x).detach()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            layer.free_weight.copy_(torch.randn(layer.free_weight.shape, generator=g, dtype=torch.float64) * free_scale)
            if layer.free_bias is not None:
                layer.free_bias.copy_(torch.randn(layer.free_bias.shape, generator=g, dtype=torch.float64) * free_scale)
        return layer, prior0, pen0, y0, hard_W, hard_b, layer(x)

    def verify(res):
        layer, prior0, pen0, y0, hard_W, hard_b, y = res
        d_out = Rep(rep_out).dim
        expect(tuple(y.shape) == tuple(x.shape[:-1]) + (d_out,), f"output shape {tuple(y.shape)}")
        finite(y0, y)
        expect(float(prior0) == 0.0 and float(pen0) <= 1e-20, f"at init: prior {float(prior0)}, penalty {float(pen0)}")
        close(y0, x @ hard_W.T + (0 if hard_b is None else hard_b), atol=1e-10, msg="init output")
        W, b = layer.effective_weight()
        close(W, hard_W + layer.free_weight, atol=1e-12, msg="W = W_eq + W_free")
        close(y, x @ W.T + (0 if b is None else b), atol=1e-10, msg="y = x Wᵀ + b")
        fb = 0.0 if layer.free_bias is None else float((layer.free_bias ** 2).sum())
        close(layer.prior_penalty(), torch.tensor(0.5 * (float((layer.free_weight ** 2).sum()) + fb), dtype=torch.float64),
              atol=1e-12, msg="prior penalty")
        expect(float(layer.equivariance_penalty(group)) >= 0, "negative penalty")
        if free_scale == 0.0:
            _check_equivariant(layer, rep_in, rep_out, group, x, seed)

    return call, verify


# --------------------------------------------------------------------------- RepTensorProduct
@S.composite
def _tp_valid(draw):
    rep_in, rep_out = draw(_spec(max_dim=20)), draw(_spec(max_dim=20))
    return dict(rep_in=rep_in, rep_out=rep_out, group=draw(S.sampled_from([None] + _LIN_GROUPS)),
                hidden=draw(S.sampled_from(_TP_HIDDEN)), dtype=_f64(), x=_x(draw, rep_in),
                seed=draw(S.integers(0, 2**31 - 1)))


@fuzz("geodl.nn.soft_equivariance.RepTensorProduct", examples=20)
@with_cases(lambda: cases(_tp_valid(), {
    "rep_in": _BAD_SPECS, "rep_out": _BAD_SPECS, "group": _BAD_GROUPS + _AFFINE,
    "hidden": _BAD_SPECS + values("points", "scalars+2xpoints", "100xvectors"), "dtype": _DTYPE_MUTS,
    "x": tensor_muts("x", shapes=_X_SHAPES)}))
def build_rep_tensor_product(rep_in, rep_out, group, hidden, dtype, x, seed):
    import torch

    from geodl.nn.soft_equivariance import Rep, RepTensorProduct


    def call():
        tp = RepTensorProduct(rep_in, rep_out, group, hidden=hidden, dtype=dtype)
        return tp, tp(x)

    def verify(res):
        tp, y = res
        expect(tuple(y.shape) == tuple(x.shape[:-1]) + (Rep(rep_out).dim,), f"output shape {tuple(y.shape)}")
        finite(y)
        # a quadratic form plus a bias: even, and f(2x) - f(0) = 4 (f(x) - f(0))
        with torch.no_grad():
            y0 = tp(torch.zeros_like(x))
            c = max(1.0, float(y.abs().max()) if y.numel() else 1.0)
            close(tp(-x) / c, y / c, atol=1e-10, msg="f(-x) = f(x)")
            close((tp(2 * x) - y0) / c, 4 * (y - y0) / c, atol=1e-9, msg="homogeneous of degree 2")
        if group is not None:
            _check_equivariant(tp, rep_in, rep_out, group, x, seed)

    return call, verify


# --------------------------------------------------------------------------- gated_rep / GatedNonlinearity
def _n_gates(spec) -> int:
    from geodl.nn.soft_equivariance import Rep

    return sum(m for m, b in Rep(spec).blocks if b not in ("scalars", "sh0"))


@S.composite
def _gated_rep_valid(draw):
    from geodl.nn.soft_equivariance import Rep

    spec = draw(_spec())
    return dict(rep=Rep(spec) if draw(S.booleans()) else spec)


@fuzz("geodl.nn.soft_equivariance.gated_rep", examples=20)
@with_cases(lambda: cases(_gated_rep_valid(), {"rep": _BAD_SPECS}))
def build_gated_rep(rep):
    import torch

    from geodl.nn.soft_equivariance import Rep, gated_rep

    def call():
        return gated_rep(rep)

    def verify(out):
        r = Rep(str(rep))
        expect(isinstance(out, Rep), f"returned {type(out).__name__}")
        n = _n_gates(str(rep))
        expect(out.dim == r.dim + n, f"dim {out.dim} != {r.dim} + {n} gates")
        expect(n > 0 or out == r, "an all-scalar rep gains gates")
        # rep's features come first, then n invariant gates
        g = _sample(_BIG, out.dim)
        M = out.matrix(g)
        close(M[:r.dim, :r.dim], r.matrix(g), atol=1e-12, msg="rep's block")
        close(M[r.dim:, :], torch.eye(out.dim, dtype=torch.float64)[r.dim:, :], atol=1e-12, msg="gates are invariant")

    return call, verify


@S.composite
def _gate_valid(draw):
    from geodl.nn.soft_equivariance import gated_rep

    spec = draw(_spec())
    return dict(rep=spec, x=_x(draw, str(gated_rep(spec))), seed=draw(S.integers(0, 2**31 - 1)))


@fuzz("geodl.nn.soft_equivariance.GatedNonlinearity", examples=20)
@with_cases(lambda: cases(_gate_valid(), {"rep": _BAD_SPECS, "x": tensor_muts("x", shapes={
    **_X_SHAPES, "rep.dim (no gates)": lambda x: x[..., :-1] if x.shape[-1] > 1 else x[..., :0]})}))
def build_gated_nonlinearity(rep, x, seed):
    import torch

    from geodl.nn.soft_equivariance import GatedNonlinearity, Rep, gated_rep

    def call():
        act = GatedNonlinearity(rep)
        return act, act(x)

    def verify(res):
        act, y = res
        r = Rep(rep)
        expect(tuple(y.shape) == tuple(x.shape[:-1]) + (r.dim,), f"output shape {tuple(y.shape)}")
        expect(act.n_gates == _n_gates(rep), f"n_gates {act.n_gates}")
        finite(y)
        k = 0
        for (m, b), sl in zip(r.blocks, r.slices()):
            if b in ("scalars", "sh0"):
                close(y[..., sl], torch.nn.functional.silu(x[..., sl]), atol=1e-12, msg="SiLU on scalars")
            else:
                d = (sl.stop - sl.start) // m
                for i in range(m):
                    s = slice(sl.start + i * d, sl.start + (i + 1) * d)
                    gate = torch.sigmoid(x[..., r.dim + k: r.dim + k + 1])
                    close(y[..., s], x[..., s] * gate, atol=1e-12, msg=f"gated chunk {k}")
                    k += 1
        _check_equivariant(act, str(gated_rep(rep)), rep, "O3", x, seed)

    return call, verify


# --------------------------------------------------------------------------- RepMLP
@S.composite
def _mlp_valid(draw):
    rep_in, rep_out = draw(_spec(max_dim=20)), draw(_spec(max_dim=20))
    path = draw(S.sampled_from(["free", "equivariant", "rpp"]))
    group = draw(S.sampled_from(_ROT_GROUPS)) if path != "free" else draw(S.sampled_from([None, "O3"]))
    return dict(rep_in=rep_in, rep_out=rep_out, hidden=draw(S.sampled_from(_MLP_HIDDEN)),
                num_layers=draw(S.integers(1, 2)), group=group, path=path,
                tp_hidden=draw(S.sampled_from(["scalars+vectors", "vectors"])), dtype=_f64(),
                x=_x(draw, rep_in, lead=(draw(S.integers(0, 8)),)), seed=draw(S.integers(0, 2**31 - 1)))


def _hard_path(v):
    return v != "free"


@fuzz("geodl.nn.soft_equivariance.RepMLP", examples=20)
@with_cases(lambda: cases(_mlp_valid(), {
    "rep_in": _BAD_SPECS, "rep_out": _BAD_SPECS, "hidden": _BAD_SPECS,
    "tp_hidden": values("", "3xfoo", "points", 3),
    "num_layers": values(0, -1, 2.5, 65, True, None),
    "path": values("hard", "", None, "Free"),
    "group": [Mut(m.note, (lambda kw, v=m.fn: _need(kw, "path", _hard_path, v)))
              for m in _BAD_GROUPS + _AFFINE + values(None)],
    "dtype": _DTYPE_MUTS, "x": tensor_muts("x", shapes=_X_SHAPES)}))
def build_rep_mlp(rep_in, rep_out, hidden, num_layers, group, path, tp_hidden, dtype, x, seed):
    import torch

    from geodl.nn.soft_equivariance import Rep, RepMLP, projection_regulariser


    def call():
        net = RepMLP(rep_in, rep_out, hidden, num_layers, group, path=path, tp_hidden=tp_hidden, dtype=dtype)
        return net, net(x)

    def verify(res):
        net, y = res
        expect(tuple(y.shape) == (x.shape[0], Rep(rep_out).dim), f"output shape {tuple(y.shape)}")
        finite(y)
        expect(len(net.blocks) == num_layers, f"{len(net.blocks)} blocks")
        expect(float(net.prior_penalty()) == 0.0, "prior penalty at init")  # RPP free paths start at zero
        if path != "free":
            expect(float(projection_regulariser(net, group)) <= 1e-20, "hard net has a projection penalty")
            with torch.no_grad():
                _check_equivariant(net, rep_in, rep_out, group, x, seed)

    return call, verify


# --------------------------------------------------------------------------- models for the regularisers
@S.composite
def _model_spec(draw, groups=_LIN_GROUPS, soft=True):
    """A small model from ``_layers``: ``kind``, reps, and ``group`` (None: free)."""
    kind = draw(S.sampled_from(["linear", "rpp", "tp", "mlp"]))
    rep_in, rep_out = draw(_spec(max_dim=15, max_terms=2)), draw(_spec(max_dim=15, max_terms=2))
    hard = kind == "rpp" or not soft or draw(S.booleans())
    pool = _ROT_GROUPS if kind == "mlp" else list(groups)
    group = draw(S.sampled_from(pool)) if hard else None
    perturb = kind == "rpp" and soft and draw(S.booleans())
    return dict(kind=kind, rep_in=rep_in, rep_out=rep_out, group=group, perturb=perturb,
                seed=draw(S.integers(0, 2**31 - 1)))


def _is_hard(spec) -> bool:
    return spec["group"] is not None and not spec["perturb"]


def _build_model(spec):
    """The model of a ``_model_spec`` dict (float64); anything else is returned unchanged."""
    if not isinstance(spec, dict):
        return spec
    import torch

    from geodl.nn.soft_equivariance import RepLinear, RepMLP, RepTensorProduct, RPPLinear

    torch.manual_seed(spec["seed"])
    k, a, b, G = spec["kind"], spec["rep_in"], spec["rep_out"], spec["group"]
    d = torch.float64
    if k == "linear":
        m = RepLinear(a, b, G, dtype=d)
    elif k == "rpp":
        m = RPPLinear(a, b, G, dtype=d)
        if spec["perturb"]:
            with torch.no_grad():
                m.free_weight.normal_()
    elif k == "tp":
        m = RepTensorProduct(a, b, G, hidden="scalars+vectors", dtype=d)
    else:
        m = RepMLP(a, b, hidden="2xscalars+vectors+tensor2", num_layers=1, group=G,
                   path="free" if G is None else "equivariant", tp_hidden="scalars+vectors", dtype=d)
    return m


def _subgroup(h, g) -> bool:
    from geodl.nn.soft_equivariance import candidate_group

    return g is not None and candidate_group(h).issubgroup(g)


def _module(name):
    from torch import nn

    return getattr(nn, name)(*((3, 3) if name == "Linear" else ()))


_MODEL_MUTS = values(None, "model", 3) + [Mut("nn.Linear (no rep layers)", lambda kw: _module("Linear"))]


# --------------------------------------------------------------------------- projection_regulariser
@S.composite
def _proj_valid(draw):
    return dict(model=draw(_model_spec()), group=draw(S.sampled_from(_LIN_GROUPS)))


@fuzz("geodl.nn.soft_equivariance.projection_regulariser", examples=25)
@with_cases(lambda: cases(_proj_valid(), {"model": _MODEL_MUTS, "group": _BAD_GROUPS + _AFFINE + values(None)}))
def build_projection_regulariser(model, group):
    import torch

    from geodl.nn.soft_equivariance import projection_regulariser

    m = _build_model(model)

    def call():
        return projection_regulariser(m, group)

    def verify(p):
        expect(isinstance(p, torch.Tensor) and p.dim() == 0 and p.dtype == torch.float64, f"result {p!r}")
        expect(not bool(torch.isnan(p)) and float(p) >= 0, f"penalty {float(p)}")
        expect(p.requires_grad, "not differentiable")
        if _is_hard(model) and _subgroup(group, model["group"]):
            expect(float(p) <= 1e-20, f"penalty {float(p)} of a model hard for {model['group']}")
        big = float(projection_regulariser(m, _BIG))
        expect(float(p) <= big * (1 + 1e-9) + 1e-18, f"R_{group} = {float(p)} > R_{_BIG} = {big}")

    return call, verify


# --------------------------------------------------------------------------- mc_regulariser
@S.composite
def _mc_valid(draw):
    spec = draw(_model_spec())
    return dict(model=spec, x=_x(draw, spec["rep_in"], lead=(draw(S.integers(1, 8)),)),
                group=draw(S.sampled_from(_ALL_GROUPS)), rep_in=draw(S.sampled_from([None, spec["rep_in"]])),
                n_samples=draw(S.integers(1, 3)), generator=draw(S.sampled_from([None, 0, 7, 12345])))


_NO_REPS = Mut("nn.Identity (no rep_in)", lambda kw: _module("Identity"), names=("rep_in", "rep_out"))


@fuzz("geodl.nn.soft_equivariance.mc_regulariser", examples=25)
@with_cases(lambda: cases(_mc_valid(), {
    "model": values(None, 3, "model") + [_NO_REPS], "group": _BAD_GROUPS + values(None),
    "x": tensor_muts("x", shapes=_X_SHAPES), "rep_in": values("3xfoo", "", 3),
    "n_samples": values(0, -1, 2.5, True, 10_001), "generator": values("abc", -1, 2.5)}))
def build_mc_regulariser(model, x, group, rep_in, n_samples, generator):
    import torch

    from geodl.nn.soft_equivariance import Rep, candidate_group, mc_regulariser

    m = _build_model(model)

    def call():
        return mc_regulariser(m, x, group, rep_in=rep_in, n_samples=n_samples, generator=generator)

    def verify(r):
        expect(isinstance(r, torch.Tensor) and r.dim() == 0, f"result {r!r}")
        expect(not bool(torch.isnan(r)) and float(r) >= 0, f"regulariser {float(r)}")
        if candidate_group(group).linear and _is_hard(model) and _subgroup(group, model["group"]):
            expect(float(r) <= 1e-10, f"regulariser {float(r)} of a model hard for {model['group']}")
        if isinstance(generator, int):  # the same group elements: recompute mean_g mean‖f(g·x) − g·f(x)‖²
            gen = torch.Generator().manual_seed(generator)
            G, ri, ro = candidate_group(group), Rep(model["rep_in"]), Rep(model["rep_out"])
            with torch.no_grad():
                fx = m(x)
                tot = 0.0
                for _ in range(n_samples):
                    g = G.sample(generator=gen, dtype=torch.float64)
                    tot += float(((m(ri.act(g, x)) - ro.act(g, fx)) ** 2).mean())
            ref = tot / n_samples
            close(r, torch.tensor(ref, dtype=torch.float64), atol=1e-12, rtol=1e-9, msg="mc regulariser vs direct")

    return call, verify


# --------------------------------------------------------------------------- StrengthTuner
@S.composite
def _tuner_valid(draw):
    method = draw(S.sampled_from(["projection", "mc"]))
    pool = _LIN_GROUPS if method == "projection" else _ALL_GROUPS
    groups = draw(S.lists(S.sampled_from(pool), min_size=1, max_size=3, unique=True))
    spec = draw(_model_spec())
    return dict(groups=groups, initial=draw(S.sampled_from([1.0, 0.0, 0.3, 10.0])),
                power=draw(S.sampled_from([1.0, 0.0, 0.5, 2.0])), every=draw(S.integers(1, 3)),
                start=draw(S.sampled_from(["largest", "all"])), method=method, model=spec,
                x=_x(draw, spec["rep_in"], lead=(draw(S.integers(1, 6)),)))


def _bad_number():
    return values(-1.0, float("nan"), float("inf"), "1", None)


@fuzz("geodl.nn.soft_equivariance.StrengthTuner", examples=25)
@with_cases(lambda: cases(_tuner_valid(), {
    "groups": values("O3", [], None, 5, ["O3", "O3"], ["O4"], [5], ["O3", "O2w"]),
    "initial": _bad_number(), "power": _bad_number(), "every": values(0, -1, 2.5, True, None),
    "start": values("smallest", None), "method": values("hard", None)}))
def build_strength_tuner(groups, initial, power, every, start, method, model, x):
    import math

    from geodl.nn.soft_equivariance import StrengthTuner, candidate_group

    m = _build_model(model)

    def call():
        tuner = StrengthTuner(groups, initial=initial, power=power, every=every, start=start, method=method)
        s0 = tuner.strengths
        pen = tuner.penalty(m, x, n_samples=1, generator=0) if method == "mc" else tuner.penalty(m)
        s1 = tuner.adjust()
        return tuner, s0, pen, s1

    def verify(res):
        tuner, s0, pen, s1 = res
        Gs = [candidate_group(g) for g in groups]
        names = [G.name for G in Gs]
        expect(list(s0) == names and list(s1) == names, f"strength keys {list(s0)} {list(s1)}")
        for G in Gs:
            top = start == "all" or not any(G != H and G.issubgroup(H) for H in Gs)
            expect(s0[G.name] == (initial if top else 0.0), f"initial strength of {G.name}: {s0[G.name]}")
        expect(pen.dim() == 0 and not math.isnan(float(pen)) and float(pen) >= 0, f"penalty {float(pen)}")
        expect(int(tuner.adjustments) == 1, "adjust() did not count")
        expect(all(0.0 <= v <= initial * (1 + 1e-12) for v in s1.values()), f"strengths {s1} outside [0, {initial}]")
        means = tuner.last_mean.tolist()
        if any(math.isfinite(v) for v in means):
            expect(abs(max(s1.values()) - initial) <= 1e-12 * max(1.0, initial), f"max strength {s1} != {initial}")
        if power == 0.0 and all(math.isfinite(v) for v in means):
            expect(all(v == initial for v in s1.values()), f"power 0 changed strengths {s1}")
        expect(tuner.strengths == s1 and float(tuner.count) == 0, "adjust() did not reset the average")

    return call, verify


# --------------------------------------------------------------------------- symmetry_report
@S.composite
def _report_valid(draw):
    spec = draw(_model_spec())
    groups = draw(S.lists(S.sampled_from(_ALL_GROUPS), min_size=1, max_size=3, unique=True))
    tuner = draw(S.sampled_from([None, [groups[0]], list(dict.fromkeys(["O3"] + groups[:1]))]))
    return dict(model=spec, x=_x(draw, spec["rep_in"], lead=(draw(S.integers(1, 8)),)), groups=groups,
                tuner=tuner, n_samples=draw(S.integers(1, 3)), generator=draw(S.sampled_from([0, 3, None])))


@fuzz("geodl.nn.soft_equivariance.symmetry_report", examples=20)
@with_cases(lambda: cases(_report_valid(), {
    "groups": values("O3", [], None, ["O4"], [5]), "tuner": values("tuner", 3),
    "n_samples": values(0, -1, 2.5, True), "generator": values("abc", -1, 2.5),
    "x": tensor_muts("x", shapes=_X_SHAPES)}))
def build_symmetry_report(model, x, groups, tuner, n_samples, generator):
    import math

    from geodl.nn.soft_equivariance import StrengthTuner, candidate_group, projection_regulariser, symmetry_report

    m = _build_model(model)
    t = StrengthTuner(tuner, method="mc") if isinstance(tuner, list) else tuner

    def call():
        return symmetry_report(m, x, groups, tuner=t, n_samples=n_samples, generator=generator)

    def verify(rows):
        expect(isinstance(rows, list) and len(rows) == len(groups), f"{len(rows)} rows for {len(groups)} groups")
        expect(m.training, "the model's training mode was not restored")
        strengths = t.strengths if t is not None else {}
        for g, row in zip(groups, rows):
            G = candidate_group(g)
            expect(set(row) == {"group", "regulariser", "strength", "equivariance_error"}, f"keys {sorted(row)}")
            expect(row["group"] == G.name, f"group {row['group']} != {G.name}")
            expect(row["strength"] == strengths.get(G.name), f"strength {row['strength']}")
            if G.linear:
                expect(isinstance(row["regulariser"], float), f"regulariser {row['regulariser']!r}")
                close(row["regulariser"], float(projection_regulariser(m, G)), atol=1e-15, rtol=1e-12, msg="regulariser")
            else:
                expect(row["regulariser"] is None, f"regulariser {row['regulariser']!r} for a group with translations")
            e = row["equivariance_error"]
            expect(isinstance(e, float) and (e >= 0 or math.isinf(e)), f"equivariance error {e!r}")
            if G.linear and _is_hard(model) and _subgroup(g, model["group"]):
                expect(e <= 1e-9, f"equivariance error {e} of a model hard for {model['group']}")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_soft_layers"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
