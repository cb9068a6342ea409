"""Fuzz of the poincare entries (registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, st, tensor_muts, values, with_cases  # noqa: F401

S = st()

# arguments of each functional-core entry: "p" a point of the ball, "t" a tangent vector, "r" a scalar
_SIGS = {
    "mobius_add": ("x:p", "y:p"), "mobius_scalar_mul": ("r:r", "x:p"), "expmap0": ("u:t",), "logmap0": ("y:p",),
    "expmap": ("x:p", "u:t"), "logmap": ("x:p", "y:p"), "project": ("x:t",), "dist": ("x:p", "y:p"),
    "lambda_x": ("x:p",), "gyromidpoint": ("x:p",), "gyration": ("u:p", "v:p", "w:t"),
    "parallel_transport": ("x:p", "y:p", "v:t"),
}
_POINT_OUT = {"mobius_add", "mobius_scalar_mul", "expmap0", "expmap", "project", "gyromidpoint"}


def _ball_args(fn, shape, seed, dtype, radius, c):
    import torch

    g = torch.Generator().manual_seed(seed)
    if fn == "gyromidpoint" and (len(shape) < 2 or shape[0] == 0):  # a non-empty set along reduce_dim=0
        shape = (4,) + tuple(shape[-1:])
    kw = {}
    for k, spec in enumerate(_SIGS[fn]):
        name, kind = spec.split(":")
        if kind == "r":
            kw[name] = [0.0, 0.5, 2.0, -1.5][seed % 4]
            continue
        v = torch.randn(shape, generator=g, dtype=getattr(torch, dtype))
        if kind == "p":
            n = v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            v = v / n * radius / c ** 0.5
        kw[name] = v * (3.0 if kind == "t" and k % 2 else 1.0)
    return kw


def _outside(kw, name, c):
    x = kw[name]
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12) * 1.5 / c ** 0.5 if x.numel() else x


def _make_ball_entry(fn):
    def strategy():
        valid = S.builds(lambda shape, seed, dtype, radius, c: {"_fn": fn, "_shape": shape, "_c": c,
                                                                **_ball_args(fn, shape, seed, dtype, radius, c), "c": c},
                         S.sampled_from([(3,), (4, 2), (2, 3, 5), (0, 3), (6, 8)]), S.integers(0, 2**20),
                         S.sampled_from(["float64", "float32"]),
                         S.sampled_from([0.0, 0.3, 0.9, 0.999, 1 - 1e-5]), S.sampled_from([1.0, 0.25, 3.0]))
        muts = {"c": values(0.0, -1.0, float("nan"), float("inf"), "1", None, True)}
        for spec in _SIGS[fn]:
            name, kind = spec.split(":")
            if kind == "r":
                muts[name] = values(float("nan"), "2", None)
                continue
            muts[name] = tensor_muts(name)
            if kind == "p":
                muts[name] = muts[name] + [Mut("outside the ball", lambda kw, n=name: _outside(kw, n, kw["_c"])
                                               if kw[n].numel() else "abc")]
        return cases(valid, muts)

    def build(_fn, _shape, _c, **kw):
        import torch

        import geodl.nn.poincare as P

        def call():
            return getattr(P, _fn)(**kw)

        def verify(out):
            finite(out)
            tensors = [v for v in kw.values() if isinstance(v, torch.Tensor)]
            shape = torch.broadcast_shapes(*[t.shape for t in tensors])
            want = {"dist": shape[:-1], "lambda_x": shape[:-1], "gyromidpoint": shape[1:]}.get(_fn, shape)
            expect(tuple(out.shape) == tuple(want), f"shape {tuple(out.shape)} != {tuple(want)}")
            if _fn in _POINT_OUT and out.numel():
                expect(float((_c * out.double().pow(2).sum(-1)).max()) < 1, "a result outside the ball")
            if _fn == "logmap0" and out.numel():  # the round trip
                back = P.expmap0(out, c=_c)
                close(back.double(), kw["y"].double(), atol=1e-3 if kw["y"].dtype == torch.float32 else 1e-6,
                      msg="expmap0(logmap0(y)) != y")
            if _fn == "dist" and out.numel():
                expect(bool((out >= 0).all()), "negative distance")

        return call, verify

    build._strategy = strategy
    return build


for _fn in _SIGS:  # module-level names, so that the worker finds each builder by name
    _b = _make_ball_entry(_fn)
    _b.__name__ = _b.__qualname__ = f"build_{_fn}"
    globals()[_b.__name__] = fuzz(f"geodl.nn.poincare.{_fn}", examples=25)(with_cases(_b._strategy)(_b))


@fuzz("geodl.nn.poincare.ball_margin", examples=10)
@with_cases(lambda: cases(S.fixed_dictionaries({"dtype": S.sampled_from(["float64", "float32", "bfloat16", "float16"])}),
                          {"dtype": values("int64", 3, None, "float32x")}))
def build_ball_margin(dtype):
    import torch

    from geodl.nn.poincare import ball_margin

    dt = getattr(torch, dtype, dtype) if isinstance(dtype, str) else dtype

    def call():
        return ball_margin(dt)

    def verify(m):
        expect(isinstance(m, float) and 0 < m < 1e-3, f"margin {m}")

    return call, verify



@fuzz("geodl.nn.poincare.PoincareLinear", "geodl.nn.poincare.PoincareMLR", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "cls": S.sampled_from(["PoincareLinear", "PoincareMLR"]), "in_features": S.integers(1, 6),
    "out_features": S.integers(1, 6), "c": S.sampled_from([1.0, 0.5, 2.0]), "rows": S.sampled_from([(0,), (3,), (2, 2)]),
    "radius": S.sampled_from([0.0, 0.5, 0.99, 1 - 1e-5]), "seed": S.integers(0, 99)}), {
    "in_features": values(0, -1, True, 2.5, "3", None)
    + values(HUGE, names=("in_features", "out_features", "num_classes")),
    # PoincareMLR calls its width num_classes
    "out_features": values(0, -1, 2.5, None, names=("out_features", "num_classes"))
    + values(HUGE, names=("in_features", "out_features", "num_classes")),
    "c": values(0.0, -1.0, float("nan"), "1", None),
    "rows": [Mut("x with one feature too many", "extra", names=("x",)),
             Mut("x a string", "str", names=("x",)), Mut("x int64", "int", names=("x",)),
             Mut("x with NaN", "nan", names=("x",), mode="nonfinite")]}))
def build_poincare_layer(cls, in_features, out_features, c, rows, radius, seed):
    import torch

    import geodl.nn.poincare as P

    def make_x():
        n = in_features if isinstance(in_features, int) and 0 < in_features < 100 else 3
        cc = c if isinstance(c, float) and c > 0 else 1.0
        shape = rows if isinstance(rows, tuple) else (3,)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, n + (rows == "extra"), generator=g)
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12) * radius / cc ** 0.5
        if rows == "str":
            return "abc"
        if rows == "int":
            return x.to(torch.int64)
        if rows == "nan" and x.numel():
            x.view(-1)[0] = float("nan")
        return x

    x = make_x()

    def call():
        kw = {"out_features": out_features} if cls == "PoincareLinear" else {"num_classes": out_features}
        m = getattr(P, cls)(in_features, c=c, **kw)
        return m, m(x)

    def verify(res):
        m, y = res
        finite(y)
        expect(tuple(y.shape) == tuple(x.shape[:-1]) + (out_features,), f"shape {tuple(y.shape)}")
        if cls == "PoincareLinear" and y.numel():
            expect(float((c * y.double().pow(2).sum(-1)).max()) < 1, "an output outside the ball")
        if cls == "PoincareLinear" and in_features <= out_features and radius < 0.999 and y.numel():
            close(y[..., :in_features], x, atol=1e-4, rtol=1e-3, msg="identity initialisation")

    return call, verify


@fuzz("geodl.nn.poincare.PoincareConv2d", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "in_channels": S.integers(1, 4), "out_channels": S.integers(1, 4), "kernel_size": S.sampled_from([1, 2, 3, (3, 1)]),
    "stride": S.integers(1, 2), "padding": S.integers(0, 1), "dilation": S.integers(1, 2),
    "c": S.sampled_from([1.0, 0.5]), "size": S.sampled_from([(0, 5, 5), (2, 5, 4), (1, 6, 6)]),
    "radius": S.sampled_from([0.0, 0.5, 0.99]), "seed": S.integers(0, 99)}), {
    "in_channels": values(0, -1, True, 2.5, None) + values(HUGE, names=("in_channels", "out_channels")),
    "out_channels": values(0, 1.5, None) + values(HUGE, names=("in_channels", "out_channels")),
    "kernel_size": values(0, (1, 2, 3), "3", -1, 1000, names=("kernel_size", "x")),
    "stride": values(0, -1, 1.5, None), "padding": values(-1, 0.5, None), "dilation": values(0, "1", None),
    "c": values(0.0, float("inf"), None),
    "size": [Mut("a 3-d input", (5, 5), names=("x",)), Mut("too small for the kernel", (1, 1, 1),
                                                           names=("x",), mode="maybe")]}))
def build_poincare_conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, c, size, radius, seed):
    import torch

    from geodl.nn.poincare import PoincareConv2d

    n = in_channels if isinstance(in_channels, int) and 0 < in_channels < 100 else 2
    cc = c if isinstance(c, float) and 0 < c < float("inf") else 1.0
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size[0], n, *size[1:], generator=g) if len(size) == 3 else torch.randn(n, *size, generator=g)
    x = x / x.norm(dim=-3, keepdim=True).clamp_min(1e-12) * radius / cc ** 0.5

    def call():
        m = PoincareConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                           c=c)
        return m, m(x)

    def verify(res):
        m, y = res
        finite(y)
        ref = torch.nn.functional.conv2d(torch.zeros(x.shape), torch.zeros(out_channels, n, *m.kernel_size),
                                         stride=stride, padding=padding, dilation=dilation)
        expect(tuple(y.shape) == tuple(ref.shape), f"shape {tuple(y.shape)} != conv2d's {tuple(ref.shape)}")
        if y.numel():
            expect(float((c * y.double().pow(2).sum(1)).max()) < 1, "an output outside the ball")
            close(y, m._unfold_reference(x), atol=1e-4, rtol=1e-3, msg="fast path != unfold definition")

    return call, verify


@fuzz("geodl.nn.poincare.PoincareBatchNorm2d", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "channels": S.integers(1, 4), "c": S.sampled_from([1.0, 0.5]), "batch": S.sampled_from([1, 3]),
    "train": S.booleans(), "radius": S.sampled_from([0.0, 0.5, 0.99, 1 - 1e-5]), "seed": S.integers(0, 99)}), {
    "channels": values(0, -1, True, None, names=("channels", "num_features")),
    "c": values(0.0, -2.0, float("nan"), "1"),
    "batch": [Mut("x with NaN", "nan", names=("x",), mode="nonfinite"),
              Mut("an empty batch", 0, names=("x",), mode="maybe")]}))
def build_poincare_batchnorm(channels, c, batch, train, radius, seed):
    import torch

    import geodl.nn.poincare as P

    x = _ball_map(channels, c, batch, radius, seed)

    def call():
        m = P.PoincareBatchNorm2d(channels, c=c).train(train)
        return m, m(x)

    def verify(res):
        m, y = res
        finite(y)
        expect(y.shape == x.shape, f"shape {tuple(y.shape)}")
        if y.numel():
            expect(float((c * y.double().pow(2).sum(1)).max()) < 1, "an output outside the ball")
        if not train and x.shape[0] > 1:
            close(m(x[:1]), y[:1], atol=1e-5, msg="eval output depends on the batch")

    return call, verify


def _ball_map(channels, c, batch, radius, seed):
    import torch

    n = channels if isinstance(channels, int) and not isinstance(channels, bool) and channels > 0 else 2
    cc = c if isinstance(c, float) and c > 0 else 1.0
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch if isinstance(batch, int) else 2, n, 3, 2, generator=g)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) * radius / cc ** 0.5
    if batch == "nan":
        x.view(-1)[0] = float("nan")
    return x


@fuzz("geodl.nn.poincare.PoincareReLU", examples=25)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "dim": S.sampled_from([1, -3]), "c": S.sampled_from([1.0, 0.5]), "batch": S.sampled_from([0, 1, 3]),
    "radius": S.sampled_from([0.0, 0.5, 0.99, 1 - 1e-5]), "seed": S.integers(0, 99)}), {
    "dim": values(4, -5, 1.5, None, names=("dim", "x")), "c": values(0.0, -2.0, float("nan"), "1"),
    "batch": [Mut("x with NaN", "nan", names=("x",), mode="nonfinite")]}))
def build_poincare_relu(dim, c, batch, radius, seed):
    import geodl.nn.poincare as P
    from geodl.nn.poincare import logmap0

    x = _ball_map(3, c, batch, radius, seed)

    def call():
        return P.PoincareReLU(c=c, dim=dim)(x)

    def verify(y):
        finite(y)
        expect(y.shape == x.shape, f"shape {tuple(y.shape)}")
        if y.numel():
            expect(float((c * y.double().pow(2).sum(1)).max()) < 1, "an output outside the ball")
            expect(bool((logmap0(y, c=c, dim=1) >= -1e-6).all()), "a negative tangent coordinate after ReLU")

    return call, verify


@S.composite
def _pool_valid(draw):
    k = draw(S.sampled_from([None, 1, 2, 3, (2, 1)]))
    kk = (k, k) if isinstance(k, int) else k
    pad = 0 if k is None else draw(S.integers(0, min(kk) // 2))
    return {"kernel_size": k, "stride": None if k is None else draw(S.sampled_from([None, 1, 2])), "padding": pad,
            "c": draw(S.sampled_from([1.0, 0.5])), "size": draw(S.sampled_from([(0, 4, 4), (2, 5, 4), (1, 6, 6)])),
            "radius": draw(S.sampled_from([0.0, 0.5, 0.99, 1 - 1e-5])), "seed": draw(S.integers(0, 99))}


def _ball_images(channels, c, size, radius, seed, dtype=None):
    """A map (B, C, H, W) (``size`` (B, H, W), or (H, W): a 3-d input) of points of the ball at ``radius``."""
    import torch

    n = channels if isinstance(channels, int) and not isinstance(channels, bool) and 0 < channels < 100 else 2
    cc = c if isinstance(c, float) and 0 < c < float("inf") else 1.0
    g = torch.Generator().manual_seed(seed)
    dt = dtype or torch.float64
    if len(size) == 3:
        x = torch.randn(size[0], n, *size[1:], generator=g, dtype=dt)
    else:
        x = torch.randn(n, *size, generator=g, dtype=dt)
    return x / x.norm(dim=-3, keepdim=True).clamp_min(1e-12) * radius / cc ** 0.5


@fuzz("geodl.nn.poincare.PoincareAvgPool2d", examples=30)
@with_cases(lambda: cases(_pool_valid(), {
    "kernel_size": values(0, -1, 2.5, (1, 2, 3), "2", 1000, names=("kernel_size", "x")),
    "stride": values(0, -1, 1.5, "1"), "padding": values(-1, 0.5, 5, "0"),
    "c": values(0.0, -1.0, float("nan"), float("inf"), "1"),
    "size": [Mut("a 3-d input", (5, 5), names=("x",)),
             Mut("too small for the kernel", (1, 1, 1), names=("x",), mode="maybe"),
             Mut("no pixels", (2, 0, 4), names=("x",), mode="maybe")]}))
def build_poincare_avgpool(kernel_size, stride, padding, c, size, radius, seed):
    import torch

    from geodl.nn.poincare import PoincareAvgPool2d, logmap0

    x = _ball_images(3, c, size, radius, seed)

    def call():
        m = PoincareAvgPool2d(kernel_size, stride, padding, c=c)
        return m, m(x)

    def verify(res):
        m, y = res
        finite(y)
        if kernel_size is None:
            want, ref = (x.shape[0], x.shape[1], 1, 1), None
        else:
            u = logmap0(x, c=c, dim=1) if x.numel() else x
            ref = torch.nn.functional.avg_pool2d(u, kernel_size, stride, padding)
            want = tuple(ref.shape)
        expect(tuple(y.shape) == tuple(want), f"shape {tuple(y.shape)} != {tuple(want)}")
        if y.numel():
            expect(float((c * y.double().pow(2).sum(1)).max()) < 1, "an output outside the ball")
            if radius < 0.999:
                if ref is None:
                    ref = logmap0(x, c=c, dim=1).mean(dim=(2, 3), keepdim=True)
                close(logmap0(y, c=c, dim=1), ref, atol=1e-8, rtol=1e-6, msg="!= the tangent average")

    return call, verify


@fuzz("geodl.nn.poincare.PoincareResidualBlock", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "in_channels": S.integers(1, 4), "out_channels": S.integers(1, 4), "stride": S.integers(1, 2),
    "c": S.sampled_from([1.0, 0.5]), "zero_init_residual": S.booleans(), "train": S.booleans(),
    "size": S.sampled_from([(2, 5, 5), (1, 6, 4), (3, 3, 3)]), "radius": S.sampled_from([0.0, 0.5, 0.99]),
    "seed": S.integers(0, 99)}), {
    "in_channels": values(0, -1, True, 2.5, None) + values(HUGE, names=("in_channels", "out_channels")),
    "out_channels": values(0, 1.5, None) + values(HUGE, names=("in_channels", "out_channels")),
    "stride": values(0, -1, 1.5, None), "c": values(0.0, -1.0, float("nan"), float("inf"), "1"),
    "size": [Mut("a 3-d input", (5, 5), names=("x",)),
             Mut("an empty batch", (0, 4, 4), names=("x",), mode="maybe")],
    "seed": [Mut("x with NaN", -1, names=("x",), mode="nonfinite")]}))
def build_poincare_block(in_channels, out_channels, stride, c, zero_init_residual, train, size, radius, seed):
    import copy

    import torch

    from geodl.nn.poincare import PoincareResidualBlock

    x = _ball_images(in_channels, c, size, radius, max(seed, 0))
    if seed < 0:
        x.view(-1)[0] = float("nan")

    def call():
        torch.manual_seed(0)
        m = PoincareResidualBlock(in_channels, out_channels, stride, c=c,
                                  zero_init_residual=zero_init_residual).double().train(train)
        ref = copy.deepcopy(m)
        return m, ref, m(x)

    def verify(res):
        m, ref, y = res
        finite(y)
        want = (x.shape[0], out_channels, -(-x.shape[2] // stride), -(-x.shape[3] // stride))
        expect(tuple(y.shape) == want, f"shape {tuple(y.shape)} != {want}")
        if y.numel():
            expect(float((c * y.double().pow(2).sum(1)).max()) < 1, "an output outside the ball")
            ref.fused = False
            close(y, ref(x), atol=1e-8, rtol=1e-6, msg="fused != the layer-by-layer definition")
            if not train and x.shape[0] > 1:
                close(m(x[:1]), y[:1], atol=1e-10, msg="eval output depends on the batch")

    return call, verify


@S.composite
def _presnet_valid(draw):
    import torch

    ch = draw(S.integers(1, 2))
    b, h, w = draw(S.integers(0, 3)), draw(S.integers(1, 6)), draw(S.integers(1, 6))
    g = torch.Generator().manual_seed(draw(S.integers(0, 2**31 - 1)))
    return dict(widths=tuple(draw(S.lists(S.integers(1, 4), min_size=3, max_size=3))), in_channels=ch,
                num_classes=draw(S.integers(1, 4)), c=draw(S.sampled_from([1.0, 0.5])),
                x=torch.rand(b, ch, h, w, generator=g, dtype=torch.float64))


def _presnet_muts(with_depth):
    muts = {
        "widths": values((4, 4), (4, 4, 4, 4), (4, 0, 4), (4, -1, 4), (4, 2.5, 4), 4, "abc", None, (HUGE, 4, 4),
                         (4, 4, HUGE)),
        "in_channels": values(0, -1, True, 1.5, "3", None, HUGE),
        "num_classes": values(0, -1, True, 1.5, "10", None, HUGE),
        "c": values(0.0, -1.0, float("nan"), float("inf"), "1", None),
        "x": tensor_muts("x", shapes={"3-d": lambda x: x[0], "5-d": lambda x: x[None],
                                      "one channel more": lambda x: x.new_zeros(x.shape[0], x.shape[1] + 1,
                                                                                *x.shape[2:]),
                                      "no rows of pixels": lambda x: x[:, :, :0],
                                      "float32 (the module is float64)": lambda x: x.float()})}
    if with_depth:
        muts["depth"] = values(9, 2, 0, -4, 20.0, True, "8", None, 6 * HUGE + 2)
    return muts


def _check_presnet(m, x, y, depth, num_classes):
    import torch

    from geodl.nn.poincare import PoincareConv2d

    expect(y.shape == (x.shape[0], num_classes) and y.dtype == torch.float64, f"shape {tuple(y.shape)}")
    finite(y)
    n_conv = sum(isinstance(k, PoincareConv2d) and tuple(k.kernel_size) == (3, 3) for k in m.modules())
    expect(n_conv + 1 == depth, f"{n_conv} 3x3 convolutions for depth {depth}")
    if len(x):
        f = m.features(x)
        expect(float((m.c * f.pow(2).sum(1)).max()) < 1, "a pooled point outside the ball")
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
        close(m(x[perm]), y[perm], atol=1e-10, msg="rows permuted")
        close(m(x[:1]), y[:1], atol=1e-10, msg="one row alone (eval mode)")


@fuzz("geodl.nn.poincare.PoincareResNet", examples=25)
@with_cases(lambda: cases(_presnet_valid().map(lambda kw: {"depth": 8, **kw}), _presnet_muts(True)))
def build_poincare_resnet(depth, widths, in_channels, num_classes, c, x):
    import torch

    from geodl.nn.poincare import PoincareResNet

    def call():
        torch.manual_seed(0)
        m = PoincareResNet(depth, widths, in_channels, num_classes, c=c).double().eval()
        return m, m(x)

    def verify(res):
        m, y = res
        _check_presnet(m, x, y, depth, num_classes)

    return call, verify


@fuzz("geodl.nn.poincare.poincare_resnet20", "geodl.nn.poincare.poincare_resnet32", examples=12)
@with_cases(lambda: cases(S.builds(lambda kw, f: {"factory": f, **kw}, _presnet_valid(),
                                   S.sampled_from(["poincare_resnet20", "poincare_resnet32"])),
                          {**_presnet_muts(False), "factory": [Mut("depth given twice", "depth", names=("depth",))]}))
def build_poincare_resnet_factory(factory, widths, in_channels, num_classes, c, x):
    import torch

    import geodl.nn.poincare as P

    name = "poincare_resnet20" if factory == "depth" else factory
    extra = {"depth": 8} if factory == "depth" else {}

    def call():
        torch.manual_seed(0)
        m = getattr(P, name)(widths=widths, in_channels=in_channels, num_classes=num_classes, c=c, **extra)
        m = m.double().eval()
        return m, m(x)

    def verify(res):
        m, y = res
        _check_presnet(m, x, y, 20 if name == "poincare_resnet20" else 32, num_classes)

    return call, verify



NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_poincare"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
