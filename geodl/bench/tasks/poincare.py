"""``geodl bench poincare``: a Poincaré ResNet against the Euclidean ResNet of the same depth and widths.

One run measures, for :class:`geodl.nn.ResNet` (``E``) and
:class:`geodl.nn.poincare.PoincareResNet` (``P``, curvature ``c = 1``) of the same ``--depth`` and
``--widths``:

1. **accuracy** on :class:`geodl.data.Digits` (scikit-learn's 8x8 digits): both trained with the
   same optimiser (Adam), cosine learning-rate decay, epochs and batch size, inputs standardised
   by the train set's mean and standard deviation; the epoch of lowest training-set loss is tested
   (the test split is never used for selection). Per seed (``--seeds``) and the mean;
2. **training-step time** (forward + cross-entropy + backward + Adam step), interleaved
   ``E, P, E, P, ...`` after warm-up on one fixed batch; the median per model and the ratio
   ``P / E``, on a Digits batch (1 channel, 8x8) and on random CIFAR-sized images (3 channels,
   32x32; ``step_ratio_cifar32``);
3. **saved-activation memory** (:func:`geodl.bench._memory.saved_activation_bytes` of the
   forward + loss) on the same batches, ratio ``P / E``;
4. **peer comparison** with ``hypll`` (when installed): conv3x3 -> batch norm -> ReLU -> conv3x3
   on the ball, width 16, hypll's ``HConvolution2d / HBatchNorm2d / HReLU`` against geodl's
   :class:`~geodl.nn.poincare.PoincareConv2d` / :class:`~geodl.nn.poincare.PoincareBatchNorm2d` /
   :class:`~geodl.nn.poincare.PoincareReLU`; forward + backward time interleaved (ratio
   hypll / geodl) and saved-activation bytes.

Outputs: a table, ``<out>/<name>.json`` + ``.csv`` (written first) and ``<out>/<name>.png``
(matplotlib optional); ``<name>`` is ``poincare`` or ``poincare_quick``. Goals (under ``goals``,
with the measured values): step-time ratio <= 4 and memory ratio <= 4 (digits and 32x32), and
``|acc_P - acc_E| <= 1`` point (mean over the seeds).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from geodl.bench._task import Task, positive_float, positive_int

__all__ = ["TASK", "main", "SETTINGS", "build_model", "time_steps"]

MODELS = ("ResNet", "PoincareResNet")
GOAL_RATIO = 4.0
GOAL_ACC_POINTS = 1.0

SETTINGS = {
    "full": {"depth": 20, "widths": (16, 32, 64), "epochs": 8, "batch_size": 64, "lr": 3e-3, "lr_poincare": None,
             "seeds": (0, 1), "warmup": 2, "repeats": 7, "timing_batch": 64, "cifar_batch": 32,
             "peer_batch": 16, "peer_size": 32},
    "quick": {"depth": 8, "widths": (8, 16, 16), "epochs": 3, "batch_size": 64, "lr": 3e-3, "lr_poincare": None,
              "seeds": (0,), "warmup": 1, "repeats": 3, "timing_batch": 32, "cifar_batch": 8,
              "peer_batch": 4, "peer_size": 16},
}


def build_model(name: str, depth: int, widths, in_channels: int = 1, num_classes: int = 10) -> torch.nn.Module:
    """``"ResNet"`` (:class:`geodl.nn.ResNet`) or ``"PoincareResNet"`` (curvature 1), logits ``(B, num_classes)``.

    Examples
    --------
    >>> m = build_model("ResNet", 8, (2, 4, 4))
    >>> m(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    if name not in MODELS:
        raise ValueError(f"name: expected one of {list(MODELS)}, got {name!r}")
    if name == "ResNet":
        from geodl.nn import ResNet

        return ResNet(depth, tuple(widths), in_channels=in_channels, num_classes=num_classes)
    from geodl.nn.poincare import PoincareResNet

    return PoincareResNet(depth, tuple(widths), in_channels=in_channels, num_classes=num_classes, c=1.0)


def time_steps(fns: dict, warmup: int, repeats: int) -> dict:
    """Median seconds of each zero-argument callable in ``fns``, timed interleaved (a, b, a, b, ...).

    Examples
    --------
    >>> t = time_steps({"a": lambda: None, "b": lambda: sum(range(100))}, warmup=1, repeats=3)
    >>> sorted(t), all(v >= 0 for v in t.values())
    (['a', 'b'], True)
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _step_fn(model, x, y, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def _saved(model, x, y):
    from geodl.bench._memory import saved_activation_bytes

    return saved_activation_bytes(lambda m, a: torch.nn.functional.cross_entropy(m(a), y), model, x)


def _compare(depth, widths, x, y, cfg, device) -> dict:
    """Step times (interleaved, median) and saved bytes of E and P on the batch ``(x, y)``."""
    torch.manual_seed(0)
    models = {n: build_model(n, depth, widths, in_channels=x.shape[1]).to(device).train() for n in MODELS}
    steps = {n: _step_fn(m, x, y, cfg["lr"]) for n, m in models.items()}
    t = time_steps(steps, cfg["warmup"], cfg["repeats"])
    mem = {n: _saved(m, x, y) for n, m in models.items()}
    return {"step_s": t, "saved_bytes": mem, "step_ratio": t["PoincareResNet"] / t["ResNet"],
            "memory_ratio": mem["PoincareResNet"] / mem["ResNet"], "batch_shape": list(x.shape)}


def _peer(cfg, device) -> dict:
    """hypll against geodl on conv3x3 -> BN -> ReLU -> conv3x3 (width 16) on the ball."""
    try:
        import hypll  # noqa: F401
        from hypll.manifolds.poincare_ball import Curvature, PoincareBall
        from hypll.nn import HBatchNorm2d, HConvolution2d, HReLU
        from hypll.tensors import ManifoldTensor
    except ImportError:
        return {"status": "hypll: not installed"}
    from geodl.bench._memory import saved_activation_bytes
    from geodl.nn.poincare import PoincareBatchNorm2d, PoincareConv2d, PoincareReLU, expmap0

    w, b, s = 16, cfg["peer_batch"], cfg["peer_size"]
    g = torch.Generator().manual_seed(0)
    x = expmap0(0.5 * torch.randn(b, w, s, s, generator=g), dim=1).to(device)
    torch.manual_seed(0)
    ball = PoincareBall(c=Curvature(1.0))
    hyp = torch.nn.ModuleList([HConvolution2d(w, w, 3, manifold=ball, padding=1), HBatchNorm2d(w, manifold=ball),
                               HReLU(manifold=ball), HConvolution2d(w, w, 3, manifold=ball, padding=1)]).to(device)
    ours = torch.nn.Sequential(PoincareConv2d(w, w, 3, padding=1), PoincareBatchNorm2d(w), PoincareReLU(),
                               PoincareConv2d(w, w, 3, padding=1)).to(device)

    def hyp_forward(inp):
        h = ManifoldTensor(inp, manifold=ball, man_dim=1)
        for layer in hyp:
            h = layer(h)
        return h.tensor.sum()

    def hyp_step():
        hyp.zero_grad(set_to_none=True)
        hyp_forward(x).backward()

    def ours_step():
        ours.zero_grad(set_to_none=True)
        ours(x).sum().backward()

    t = time_steps({"hypll": hyp_step, "geodl": ours_step}, cfg["warmup"], cfg["repeats"])
    # the modules are passed as arguments so that their parameters are not counted; hypll's
    # ManifoldParameters go in as plain views of their storages (a holder module)
    holder = torch.nn.Module()
    holder.params = torch.nn.ParameterList([torch.nn.Parameter(getattr(q, "tensor", q).detach(), requires_grad=False)
                                            for q in hyp.parameters()])
    mem = {"hypll": saved_activation_bytes(lambda h, a: _hyp_sum(hyp, a, ball, ManifoldTensor), holder, x),
           "geodl": saved_activation_bytes(lambda m, a: m(a).sum(), ours, x)}
    return {"status": "ok", "version": getattr(hypll, "__version__", "unknown"), "input_shape": [b, w, s, s],
            "fwd_bwd_s": t, "time_ratio_hypll_over_geodl": t["hypll"] / t["geodl"], "saved_bytes": mem,
            "memory_ratio_hypll_over_geodl": mem["hypll"] / max(1, mem["geodl"])}


def _hyp_sum(layers, inp, ball, manifold_tensor):
    h = manifold_tensor(inp, manifold=ball, man_dim=1)
    for layer in layers:
        h = layer(h)
    return h.tensor.sum()


def _train_step(model, batch):
    x, y = batch
    with torch.set_grad_enabled(model.training and torch.is_grad_enabled()):
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
    return loss, {}, (logits.detach(), y)


def _accuracy(logits, y):
    return float((logits.argmax(1) == y).double().mean())


def _plot(doc, path):
    from geodl.bench._plots import _pyplot, grouped_bars, save_figure

    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    labels, vals = [], []
    for key, what in (("digits", "digits"), ("cifar32", "32x32")):
        c = doc["comparison"][key]
        labels += [f"step {what}", f"memory {what}"]
        vals += [c["step_ratio"], c["memory_ratio"]]
    ax1.bar(labels, vals, color=["C0", "C1", "C0", "C1"])
    ax1.axhline(GOAL_RATIO, color="red", ls="--", label=f"goal {GOAL_RATIO:g}x")
    ax1.set_ylabel("Poincaré / Euclidean")
    ax1.tick_params(axis="x", rotation=20)
    ax1.legend(fontsize=8)
    ax1.grid(True, axis="y", alpha=0.3)
    acc = doc["accuracy"]
    grouped_bars(ax2, {m: [*acc[m]["per_seed"], acc[m]["mean"]] for m in MODELS},
                 [f"seed {s}" for s in doc["seeds"]] + ["mean"], rotation=0)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("test accuracy (Digits)")
    ax2.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def _run(args) -> int:
    from torch.utils.data import TensorDataset

    from geodl.bench._loop import evaluate, train
    from geodl.bench._plots import try_plot
    from geodl.bench._results import print_table, write_results
    from geodl.data import Digits

    tag = "quick" if args.quick else "full"
    cfg = dict(SETTINGS[tag])
    for key in ("depth", "epochs", "batch_size", "lr", "lr_poincare", "repeats", "warmup", "timing_batch",
                "cifar_batch", "peer_batch", "peer_size"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    if args.widths is not None:
        cfg["widths"] = tuple(args.widths)
    if args.seeds is not None:
        cfg["seeds"] = tuple(args.seeds)
    cfg["widths"], cfg["seeds"] = list(cfg["widths"]), list(cfg["seeds"])
    lrs = {"ResNet": cfg["lr"], "PoincareResNet": cfg["lr_poincare"] or cfg["lr"]}
    name = "poincare_quick" if args.quick else "poincare"
    say = print if args.progress else (lambda *a, **k: None)
    dev = args.device
    t_all = time.perf_counter()

    rows, acc = [], {m: {"per_seed": []} for m in MODELS}
    for seed in cfg["seeds"]:
        tr, te = Digits("train", seed=seed), Digits("test", seed=seed)
        xtr, ytr = tr.tensors()
        xte, yte = te.tensors()
        mean, std = xtr.mean(), xtr.std().clamp_min(1e-6)
        train_set = TensorDataset((xtr - mean) / std, ytr)
        test_set = TensorDataset((xte - mean) / std, yte)
        for m in MODELS:
            torch.manual_seed(seed)
            model = build_model(m, cfg["depth"], cfg["widths"])
            params = sum(p.numel() for p in model.parameters())
            run_dir = (args.run_dir / tag / f"poincare-{m.lower()}-d{cfg['depth']}-w{'-'.join(map(str, cfg['widths']))}"
                       f"-b{cfg['batch_size']}-lr{lrs[m]:g}-seed{seed}-e{cfg['epochs']}")
            t0 = time.perf_counter()
            # the epoch is selected on the training loss (the test split is never used for selection)
            res = train(model, _train_step, train_set, train_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                        lr=lrs[m], lr_schedule="cosine", run_dir=run_dir, seed=seed, progress=args.progress,
                        resume=args.resume, device=dev)
            train_s = time.perf_counter() - t0
            ev = evaluate(res.model, _train_step, test_set, cfg["batch_size"], device=dev,
                          metrics={"accuracy": _accuracy})
            res.model.cpu()
            acc[m]["per_seed"].append(ev["accuracy"])
            rows.append({"kind": "accuracy", "model": m, "seed": seed, "test_accuracy": ev["accuracy"],
                         "test_loss": ev["loss"], "params": params, "epochs": cfg["epochs"], "lr": lrs[m],
                         "train_s": round(train_s, 2), "n_train": len(train_set), "n_test": len(test_set)})
            say(f"{m} seed {seed}: test accuracy {ev['accuracy']:.4f} ({train_s:.0f} s)")
    for m in MODELS:
        acc[m]["mean"] = sum(acc[m]["per_seed"]) / len(acc[m]["per_seed"])

    g = torch.Generator().manual_seed(0)
    tr = Digits("train", seed=cfg["seeds"][0])
    xtr, ytr = tr.tensors()
    xd = ((xtr[:cfg["timing_batch"]] - xtr.mean()) / xtr.std().clamp_min(1e-6)).to(dev)
    yd = ytr[:cfg["timing_batch"]].to(dev)
    xc = torch.randn(cfg["cifar_batch"], 3, 32, 32, generator=g).to(dev)
    yc = torch.randint(0, 10, (cfg["cifar_batch"],), generator=g).to(dev)
    comparison = {}
    for key, (x, y) in (("digits", (xd, yd)), ("cifar32", (xc, yc))):
        c = _compare(cfg["depth"], cfg["widths"], x, y, cfg, dev)
        comparison[key] = c
        for m in MODELS:
            rows.append({"kind": f"step_{key}", "model": m, "batch_shape": "x".join(map(str, c["batch_shape"])),
                         "step_s": c["step_s"][m], "saved_bytes": c["saved_bytes"][m],
                         "step_ratio": c["step_ratio"], "memory_ratio": c["memory_ratio"]})
        say(f"{key} {tuple(x.shape)}: step P/E {c['step_ratio']:.2f}x, memory P/E {c['memory_ratio']:.2f}x")
    peer = _peer(cfg, dev)
    if peer["status"] == "ok":
        for lib in ("hypll", "geodl"):
            rows.append({"kind": "peer", "model": lib, "batch_shape": "x".join(map(str, peer["input_shape"])),
                         "step_s": peer["fwd_bwd_s"][lib], "saved_bytes": peer["saved_bytes"][lib],
                         "step_ratio": peer["time_ratio_hypll_over_geodl"],
                         "memory_ratio": peer["memory_ratio_hypll_over_geodl"]})
    else:
        print(peer["status"])

    diff = 100.0 * abs(acc["PoincareResNet"]["mean"] - acc["ResNet"]["mean"])
    goals = {}
    for key in ("digits", "cifar32"):
        for what in ("step", "memory"):
            v = comparison[key][f"{what}_ratio"]
            goals[f"{what}_ratio_{key}"] = {"measured": v, "limit": GOAL_RATIO, "met": bool(v <= GOAL_RATIO)}
    goals["accuracy_gap_points"] = {"measured": diff, "limit": GOAL_ACC_POINTS, "met": bool(diff <= GOAL_ACC_POINTS)}

    print()
    print_table([{"model": m, "acc": acc[m]["mean"], **{f"{k}_{q}": comparison[k][q][m] for k in comparison
                                                        for q in ("step_s", "saved_bytes")}} for m in MODELS],
                ["model", ("acc", "test acc (mean)"), ("digits_step_s", "step s digits"),
                 ("digits_saved_bytes", "saved B digits"), ("cifar32_step_s", "step s 32x32"),
                 ("cifar32_saved_bytes", "saved B 32x32")])
    print_table([{"goal": k, "measured": v["measured"], "limit": v["limit"], "met": "yes" if v["met"] else "NO"}
                 for k, v in goals.items()], ["goal", "measured", "limit", "met"])
    if peer["status"] == "ok":
        print(f"hypll / geodl on conv-BN-ReLU-conv {tuple(peer['input_shape'])}: time "
              f"{peer['time_ratio_hypll_over_geodl']:.2f}x, saved memory {peer['memory_ratio_hypll_over_geodl']:.2f}x")
    seeds = cfg["seeds"]
    payload = {"task": "poincare", "quick": args.quick, "seeds": seeds, "settings": cfg, "learning_rates": lrs,
               "models": list(MODELS), "curvature": 1.0,
               "training": "Adam, cosine decay, the same epochs / batch size for both models, inputs standardised "
                           "by the train set's mean and std, the epoch of lowest training-set loss tested (no selection on test)",
               "timing": "forward + cross-entropy + backward + Adam step, interleaved E, P, E, P after warm-up on "
                         "one fixed batch, median of the repeats",
               "memory": "geodl.bench._memory.saved_activation_bytes of forward + loss",
               "threads": torch.get_num_threads(), "accuracy": acc, "comparison": comparison, "hypll": peer,
               "goals": goals, "total_s": round(time.perf_counter() - t_all, 1)}
    out = args.out / f"{name}.json"
    json_path, csv_path = write_results(out, payload, rows)
    png = try_plot(_plot, payload, out.with_suffix(".png"))
    print(f"wrote {json_path}, {csv_path}" + (f", {png}" if png is not None else ""))
    return 0


def _widths(text: str) -> list[int]:
    try:
        ws = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated positive ints, got {text!r}") from None
    if len(ws) != 3 or min(ws) < 1:
        raise argparse.ArgumentTypeError(f"expected three comma-separated positive ints, got {text!r}")
    return ws


def _seeds(text: str) -> list[int]:
    try:
        ss = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative ints, got {text!r}") from None
    if not ss or min(ss) < 0 or len(set(ss)) != len(ss):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated non-negative ints, got {text!r}")
    return ss


def _depth(text: str) -> int:
    v = positive_int(text)
    if v < 8 or (v - 2) % 6:
        raise argparse.ArgumentTypeError(f"expected a ResNet depth 6n + 2 >= 8 (8, 14, 20, 32, ...), got {text!r}")
    return v


def _lr(text: str) -> float:
    return positive_float(text)


def _add_arguments(p) -> None:
    p.add_argument("--depth", type=_depth, default=None, metavar="N", help="ResNet depth 6n+2 (default 20; quick 8)")
    p.add_argument("--widths", type=_widths, default=None, metavar="W1,W2,W3",
                   help="stage widths (default 16,32,64; quick 8,16,16)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N")
    p.add_argument("--seeds", type=_seeds, default=None, metavar="S1,S2", help="seeds of the accuracy runs")
    p.add_argument("--lr", type=_lr, default=None, help="Adam's learning rate of both models")
    p.add_argument("--lr-poincare", type=_lr, default=None, help="the Poincaré model's own learning rate (reported)")
    p.add_argument("--repeats", type=positive_int, default=None, metavar="K", help="timed repeats per model")
    p.add_argument("--warmup", type=positive_int, default=None, metavar="K", help="untimed warm-up steps per model")
    p.add_argument("--timing-batch", type=positive_int, default=None, metavar="N", help="digits timing batch")
    p.add_argument("--cifar-batch", type=positive_int, default=None, metavar="N", help="32x32 timing batch")
    p.add_argument("--peer-batch", type=positive_int, default=None, metavar="N", help="hypll comparison batch")
    p.add_argument("--peer-size", type=positive_int, default=None, metavar="N", help="hypll comparison map size")


TASK = Task("poincare", "Poincaré ResNet vs Euclidean ResNet: Digits accuracy, step time, memory; hypll peer",
            run=_run, add_arguments=_add_arguments, description=__doc__)
main = TASK.main
