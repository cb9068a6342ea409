"""Fuzz of the VI-Net FPN, branches and model (entries registered with ``@fuzz`` in this file):
labels against a per-row reference, the focal loss against its formula, the FPN against the pole
flip (float64, eval), the branches and the model against their shapes, orthonormality and the
argmax bins."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, seeded_tensor, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
TINY = dict(channels=(2, 2, 4), hidden=2)
_BAD_HW = values(0, -1, True, 2.5, "8", None, HUGE)


def _rotations(n, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[torch.linalg.det(q) < 0, :, 0] *= -1
    return q


def _orthonormal(R, tol=1e-4):
    import torch

    if R.shape[0]:
        eye = torch.eye(3, dtype=R.dtype).expand(R.shape[0], 3, 3)
        close(R @ R.transpose(1, 2), eye, atol=tol, msg="R R^T = I")
        close(torch.linalg.det(R), torch.ones(R.shape[0], dtype=R.dtype), atol=tol, msg="det R = 1")


# ------------------------------------------------------------------------------ labels, loss
@S.composite
def _label_case(draw):
    import torch

    n, seed = draw(S.integers(0, 6)), draw(SEEDS)
    R = _rotations(n, seed)
    if n and draw(S.booleans()):
        R[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))  # θ = π exactly
    return dict(R=R, seed=seed, H=draw(S.integers(1, 12)), W=draw(S.sampled_from([2, 4, 6, 8, 16])),
                jitter=draw(S.integers(0, 4)))


@fuzz("geodl.nn.spherical.viewpoint_labels", examples=40)
@with_cases(lambda: cases(_label_case(), {
    "H": _BAD_HW, "W": values(0, -1, 3, True, "8", None, HUGE + 1), "jitter": values(-1, True, 1.5, "2", None),
    "R": tensor_muts("R", shapes={"(N, 3)": lambda x: x[:, 0], "(N, 3, 4)": lambda x: x.new_zeros(x.shape[0], 3, 4)})}))
def build_viewpoint_labels(R, seed, H, W, jitter):
    import math

    import torch
    from geodl.nn.spherical import viewpoint_labels

    n = R.shape[0] if isinstance(R, torch.Tensor) and R.dim() else 0

    def call():
        return viewpoint_labels(R, H, W, jitter=jitter, generator=torch.Generator().manual_seed(seed))

    def verify(out):
        p, a = out
        expect(p.shape == (n,) and a.shape == (n,) and p.dtype == a.dtype == torch.int64, "shapes/dtypes")
        for k in range(n):
            d = R[k, :, 2].tolist()
            beta = math.acos(max(-1.0, min(1.0, d[2])))
            alpha = math.atan2(d[1], d[0]) % (2 * math.pi)
            p0 = min(H - 1, max(0, int(math.floor(beta * H / math.pi))))
            a0 = int(math.floor(alpha * W / (2 * math.pi))) % W
            dp, da = int(p[k]) - p0, (int(a[k]) - a0) % W
            expect(0 <= int(p[k]) < H and 0 <= int(a[k]) < W, "label out of range")
            expect(abs(dp) <= jitter and min(da, W - da) <= jitter, f"row {k}: {int(p[k]), int(a[k])} vs {p0, a0}")
            if not jitter:
                expect(dp == 0 and da == 0, f"row {k}: {int(p[k]), int(a[k])} vs {p0, a0}")

    return call, verify


@S.composite
def _logits(draw):
    import torch

    b, k = draw(S.integers(0, 6)), draw(S.integers(1, 9))
    seed = draw(SEEDS)
    g = torch.Generator().manual_seed(seed)
    return dict(logits=seeded_tensor((b, k), seed, scale=3.0).to(draw(S.sampled_from([torch.float32, torch.float64]))),
                target=torch.randint(0, k, (b,), generator=g), gamma=draw(S.sampled_from([0.0, 0.5, 2.0, 5])))


@fuzz("geodl.nn.spherical.focal_loss", examples=40)
@with_cases(lambda: cases(_logits(), {
    "logits": tensor_muts("logits", shapes={"1-D": lambda x: x.reshape(-1)}),
    "target": [Mut("out of range", lambda kw: kw["target"] + kw["logits"].shape[1] if kw["target"].numel()
                   else kw["target"].new_full((1,), kw["logits"].shape[1])),
               Mut("negative", lambda kw: kw["target"] - kw["logits"].shape[1] - 1 if kw["target"].numel()
                   else kw["target"].new_full((1,), -1)),
               Mut("wrong length", lambda kw: kw["target"].new_zeros(kw["target"].shape[0] + 1)),
               Mut("float", lambda kw: kw["target"].double())] + values("a", None),
    "gamma": values(-1.0, float("nan"), "2", None, True)}))
def build_focal_loss(logits, target, gamma):
    import torch
    from geodl.nn.spherical import focal_loss

    def call():
        return focal_loss(logits, target, gamma)

    def verify(loss):
        expect(loss.shape == (), f"shape {tuple(loss.shape)}")
        finite(loss)
        if logits.shape[0] == 0:
            expect(float(loss) == 0.0, "empty batch: 0")
            return
        p = torch.softmax(logits.double(), -1)[torch.arange(logits.shape[0]), target]
        ref = (-(1 - p) ** float(gamma) * p.log()).mean()
        close(loss, ref, atol=1e-5, rtol=1e-4, msg="focal loss formula")

    return call, verify


# ------------------------------------------------------------------------------------- FPN
@fuzz("geodl.nn.spherical.SphericalFPN", examples=24)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "in_channels": S.sampled_from([1, (1,), (1, 3), (2, 1)]), "H": S.sampled_from([4, 8]),
    "W": S.sampled_from([8, 16]), "b": S.integers(0, 2), "seed": SEEDS, "spa": S.booleans()}), {
    "in_channels": values(0, (1, 2, 3), (), "1", None, (1, True), HUGE),
    "channels": values((2, 2), (2, 0, 2), "abc", None, 4),
    "resolution": values((6, 8), (8, 12), 10, (0, 8), "8", (8,)),
    "x": [Mut("H not divisible by 4", lambda kw: "H6"), Mut("W not divisible by 8", lambda kw: "W12"),
          Mut("wrong channels", lambda kw: "C+1"), Mut("a string", "abc"), Mut("int64", lambda kw: "int")]}))
def build_fpn(in_channels, H, W, b, seed, spa, channels=(2, 3, 4), resolution=None, x=None):
    import torch
    from geodl.nn.spherical import SphericalFPN

    cin = (in_channels,) if isinstance(in_channels, int) else in_channels
    C = sum(c for c in cin if isinstance(c, int)) if isinstance(cin, tuple) else 1
    C = C if 0 < C < 16 else 1
    xs = seeded_tensor((b, C, H, W), seed)
    if isinstance(x, str):
        xs = {"H6": lambda: seeded_tensor((b, C, 6, W), seed), "W12": lambda: seeded_tensor((b, C, H, 12), seed),
              "C+1": lambda: seeded_tensor((b, C + 1, H, W), seed), "int": lambda: xs.long(),
              "abc": lambda: "abc"}[x]()
    kw = dict(padding="spherical", symmetric=True) if spa else dict(padding="zeros", symmetric=False)

    def call():
        torch.manual_seed(seed % 1000)
        fpn = SphericalFPN(in_channels, channels, resolution=resolution, **kw).double().eval()
        with torch.no_grad():
            return fpn, fpn(xs), (fpn(torch.flip(xs, (-2, -1))) if spa else None)

    def verify(out):
        fpn, y, yf = out
        expect(y.shape == (b, channels[0], H, W), f"shape {tuple(y.shape)}")
        finite(y)
        if spa:
            close(yf, torch.flip(y, (-2, -1)), atol=1e-9, msg="pole flip")

    return call, verify


# --------------------------------------------------------------------------------- branches
@fuzz("geodl.nn.spherical.VBranch", examples=24)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "channels": S.integers(1, 3), "H": S.integers(1, 6), "W": S.sampled_from([2, 4, 8]), "b": S.integers(0, 3),
    "seed": SEEDS}), {
    "channels": _BAD_HW, "H": _BAD_HW, "W": values(3, 0, True, "4", None),
    "x": [Mut("wrong width", lambda kw: "W+2"), Mut("wrong channels", lambda kw: "C+1"), Mut("3-D", lambda kw: "3d"),
          Mut("a string", "abc")]}))
def build_vbranch(channels, H, W, b, seed, x=None):
    import torch
    from geodl.nn.spherical import VBranch

    ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 100 for v in (channels, H, W))
    c, h, w = (channels, H, W) if ok else (1, 2, 2)
    xs = seeded_tensor((b, c, h, w), seed)
    if isinstance(x, str):
        xs = {"W+2": lambda: seeded_tensor((b, c, h, w + 2), seed), "C+1": lambda: seeded_tensor((b, c + 1, h, w), seed),
              "3d": lambda: xs[0], "abc": lambda: "abc"}[x]()

    def call():
        torch.manual_seed(seed % 1000)
        v = VBranch(channels, H, W, hidden=2).double().eval()
        with torch.no_grad():
            return v, v(xs), v.score_map(xs)[0]

    def verify(out):
        v, (p, a), m = out
        expect(p.shape == (b, H) and a.shape == (b, W) and m.shape == (b, 1, H, W), "shapes")
        finite(p, a)
        close(p, m[:, 0].amax(-1), atol=0, msg="polar = max over columns")
        close(a, m[:, 0].amax(-2), atol=0, msg="azimuth = max over rows")
        alpha, beta = v.predict(p, a)
        if b:
            import math

            close(beta, (p.argmax(-1).double() + 0.5) * math.pi / H, msg="polar bin centre")
            close(alpha, (a.argmax(-1).double() + 0.5) * 2 * math.pi / W, msg="azimuth bin centre")

    return call, verify


@fuzz("geodl.nn.spherical.IBranch", examples=20)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "channels": S.integers(1, 3), "H": S.sampled_from([4, 8]), "W": S.sampled_from([4, 8]),
    "b": S.integers(0, 3), "seed": SEEDS}), {
    "channels": _BAD_HW, "H": values(3, 0, 6, True, "4", None), "W": values(5, 6, 0, True, None),
    "r_vp": [Mut("wrong batch", lambda kw: "B+1"), Mut("(B, 3)", lambda kw: "2d"), Mut("a string", "abc")]}))
def build_ibranch(channels, H, W, b, seed, r_vp=None):
    import torch
    from geodl.nn.spherical import IBranch

    ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 100 for v in (channels, H, W))
    c, h, w = (channels, H, W) if ok else (1, 2, 2)
    xs = seeded_tensor((b, c, h, w), seed)
    R = _rotations(b, seed)
    if isinstance(r_vp, str):
        R = {"B+1": lambda: _rotations(b + 1, seed), "2d": lambda: R[:, 0], "abc": lambda: "abc"}[r_vp]()

    def call():
        torch.manual_seed(seed % 1000)
        ib = IBranch(channels, H, W, hidden=2).double().eval()
        with torch.no_grad():
            return ib(xs, R)

    def verify(out):
        expect(out.shape == (b, 3, 3), f"shape {tuple(out.shape)}")
        finite(out)
        _orthonormal(out, 1e-9)

    return call, verify


# ------------------------------------------------------------------------------------ model
@S.composite
def _clouds(draw):
    import torch

    sizes = draw(S.lists(S.integers(0, 12), min_size=1, max_size=3))
    seed = draw(SEEDS)
    pos = seeded_tensor((sum(sizes), 3), seed)
    batch = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes, dtype=torch.long))
    return dict(pos=pos, batch=batch, num_graphs=len(sizes), seed=seed,
                resolution=draw(S.sampled_from([8, (4, 8), (8, 16)])), colour=draw(S.booleans()),
                spa=draw(S.booleans()), train=draw(S.booleans()),
                min_points=0 if min(sizes) < 3 else draw(S.sampled_from([0, 3])))


@fuzz("geodl.nn.spherical.VINet", examples=24)
@with_cases(lambda: cases(_clouds(), {
    "resolution": values(6, (8, 12), (6, 8), 0, "8", None, True, HUGE),
    "min_points": values(-1, True, 2.5, "3", None),
    "pos": tensor_muts("pos", shapes={"(N, 2)": lambda x: x[:, :2], "1-D": lambda x: x[:, 0]}),
    "batch": [Mut("wrong length", lambda kw: kw["batch"].new_zeros(kw["batch"].shape[0] + 1)),
              Mut("float", lambda kw: kw["batch"].double())]}))
def build_vinet(pos, batch, num_graphs, seed, resolution, colour, spa, train, min_points):
    import torch
    from geodl.nn.spherical import VINet
    from geodl.nn.spherical._heads import viewpoint_labels

    n = pos.shape[0] if isinstance(pos, torch.Tensor) and pos.dim() else 0
    feats = torch.rand(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) if colour else None
    kw = dict(padding="spherical", symmetric=True) if spa else dict(padding="zeros", symmetric=False)
    R = _rotations(num_graphs, seed)

    def call():
        torch.manual_seed(seed % 1000)
        net = VINet(resolution=resolution, colour=colour, min_points=min_points, **kw, **TINY).double().train(train)
        out = net(pos, batch, num_graphs=num_graphs, features=feats, rotation=R if train else None)
        loss, logs = net.loss(out, R)
        loss.backward()
        return net, out, loss

    def verify(res):
        net, out, loss = res
        H, W = net.resolution
        B = num_graphs
        expect(out["rotation"].shape == (B, 3, 3) and out["polar_logits"].shape == (B, H)
               and out["azimuth_logits"].shape == (B, W), "shapes")
        finite(*out.values(), loss)
        _orthonormal(out["rotation"], 1e-9)
        close(out["rotation"], out["r_vp"] @ out["r_ip"], atol=1e-12, msg="R = R_vp R_ip")
        p, a = viewpoint_labels(out["r_vp"].detach(), H, W)
        if train:
            p0, a0 = viewpoint_labels(R, H, W)
        else:
            p0, a0 = out["polar_logits"].argmax(-1), out["azimuth_logits"].argmax(-1)
        expect(torch.equal(p, p0) and torch.equal(a, a0), "r_vp is not the centre of the expected bins")
        for q in net.parameters():
            if q.grad is not None:
                finite(q.grad, msg="gradient")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_vinet"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
