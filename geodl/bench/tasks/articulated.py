"""``geodl bench articulated``: part segmentation and shape classification of articulated shapes in unseen poses.

Three models in one run (``--models`` picks a subset), trained on the same
:class:`geodl.data.ArticulatedShapes` splits: every part turns about its joint by ``|θ| < a`` in "train" and
"val" and by ``a < |θ| < b`` in "test" (the test poses are not seen in training), and every shape has a
Haar-random global rotation and a random translation.

- ``APEN``: :class:`geodl.nn.apen.APEN` on its own predicted partitions (EM on the positions, then on the
  votes of each layer), trained with the segmentation and classification cross-entropies plus
  :func:`~geodl.nn.apen.vote_loss` towards the centres of the true part instances;
- ``FA-PointNet``: :class:`geodl.nn.FrameAveraging` of a per-point PointNet over the global PCA frames of the
  whole cloud (E(3)-invariant, not piecewise);
- ``PointNet``: the per-point PointNet itself (no symmetry; every training batch gets a fresh random rotation,
  which the invariant models do not need).

All three share the heads: per-point part logits over all part labels and per-cloud class logits from the
max-pooled point features.

**Metrics** (test split, unseen poses; the validation split, seen pose range, for reference): part-
segmentation mIoU as in the ShapeNet-part protocol (for each shape the IoU of every part label of its class,
a label absent from both prediction and truth counting 1, averaged; the argmax is taken over the labels of
the shape's true class), averaged over shapes (``miou``) and over classes (``class_miou``), per class, and
the shape accuracy. The **piecewise errors**: every true part instance of the test clouds moved by its own
random rigid motion (rotation, reflection, translation of std ``--motion-std``), the relative change of the
part logits and the fraction of changed point predictions, for every model; for APEN also the two terms of
the bound (:func:`geodl.nn.apen.piecewise_bound`: per layer, the probability that a predicted partition is
not a sub-partition of the true one, its impurity and the assignment uncertainty) and the error split by
sub-partition clouds / the others.

Outputs: a table, ``<out>/<name>.json`` + ``.csv`` (written first; one row per model and class, plus ``all``)
and ``<out>/<name>.png`` (mIoU per class and model; the piecewise error against the bound terms), with
``<name>`` ``articulated`` or ``articulated_quick``. Goal: APEN's test mIoU above both baselines' by more than
5 points (reported under ``goals``).
"""

from __future__ import annotations

import math
import os
import time

import torch

from geodl.bench._task import Task, name_list, positive_float, positive_int

__all__ = ["TASK", "main", "MODELS", "SETTINGS", "build_model", "shape_miou"]

MODELS = ("APEN", "FA-PointNet", "PointNet")

SETTINGS = {
    "full": {"num_points": 256, "per_class": (200, 25, 50), "epochs": 24, "batch_size": 16, "lr": 2e-3,
             "vote_weight": 1.0, "noise": 0.01,
             "apen": {"widths": (32, 32, 32), "components": (16, 8, 8), "bandwidths": (0.1, 0.1, 0.1),
                      "hidden_channels": (32, 64), "head_channels": (32,)},
             "pointnet": {"hidden_channels": (32, 64, 128), "head_channels": (64,), "width": 32}},
    "quick": {"num_points": 192, "per_class": (48, 6, 12), "epochs": 8, "batch_size": 16, "lr": 4e-3,
              "vote_weight": 1.0, "noise": 0.01,
              "apen": {"widths": (16, 16), "components": (16, 8), "bandwidths": (0.1, 0.12),
                       "hidden_channels": (16, 32), "head_channels": (16,)},
              "pointnet": {"hidden_channels": (32, 64), "head_channels": (32,), "width": 32}},
}


class _SegClsModel(torch.nn.Module):
    """Batched clouds ``(B, P, 3)`` -> dict with ``seg`` (B P, labels), ``cls`` (B, classes), ``votes``."""

    def __init__(self, kind: str, num_labels: int, num_classes: int, cfg: dict):
        super().__init__()
        from geodl.nn._layers import mlp

        self.kind = kind
        if kind == "APEN":
            from geodl.nn.apen import APEN

            self.net = APEN(num_part_labels=num_labels, num_classes=num_classes, degeneracy="flag", **cfg["apen"])
            return
        from geodl.nn import FrameAveraging, PointNet

        pc = cfg["pointnet"]
        width = pc["width"]
        backbone = PointNet(out_channels=width, hidden_channels=pc["hidden_channels"],
                            head_channels=pc["head_channels"], level="node")
        self.net = FrameAveraging(backbone, "E3", level="node", degeneracy="flag") if kind == "FA-PointNet" \
            else backbone
        self.seg_head = mlp([width, width, num_labels], "relu", False)
        self.cls_head = mlp([width, width, num_classes], "relu", False)

    def forward(self, pos):
        b, p, _ = pos.shape
        batch = torch.arange(b, device=pos.device).repeat_interleave(p)
        flat = pos.reshape(-1, 3)
        if self.kind == "APEN":
            out = self.net.forward_details(flat, batch=batch, num_graphs=b)
            return {"seg": out.seg, "cls": out.cls, "votes": out.votes, "details": out}
        h = self.net(pos=flat, batch=batch, num_graphs=b) if self.kind == "FA-PointNet" else \
            self.net(None, flat, batch, num_graphs=b)
        return {"seg": self.seg_head(h), "cls": self.cls_head(h.reshape(b, p, -1).amax(1)), "votes": None}


def build_model(name: str, cfg: dict, num_labels: int, num_classes: int) -> torch.nn.Module:
    """The model ``name`` (one of :data:`MODELS`) with ``cfg``'s sizes (:data:`SETTINGS`).

    Examples
    --------
    >>> m = build_model("PointNet", SETTINGS["quick"], 13, 4).eval()
    >>> out = m(torch.randn(2, 32, 3))
    >>> out["seg"].shape, out["cls"].shape
    (torch.Size([64, 13]), torch.Size([2, 4]))
    """
    if name not in MODELS:
        raise ValueError(f"name: expected one of {list(MODELS)}, got {name!r}")
    return _SegClsModel(name, num_labels, num_classes, cfg)


def _class_masks(class_labels, num_labels: int) -> torch.Tensor:
    """(classes, labels) bool: the part labels of each class."""
    m = torch.zeros(len(class_labels), num_labels, dtype=torch.bool)
    for c, labels in enumerate(class_labels):
        m[c, list(labels)] = True
    return m


def _restricted_argmax(seg: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-point argmax over the labels of each cloud's true class: seg (B, P, L), y (B,) -> (B, P)."""
    allowed = masks.to(seg.device)[y][:, None, :]
    return torch.where(allowed, seg, torch.full_like(seg, float("-inf"))).argmax(-1)


def shape_miou(pred: torch.Tensor, part: torch.Tensor, y: torch.Tensor, class_labels) -> torch.Tensor:
    """Per-shape mIoU (ShapeNet-part protocol): pred, part (B, P) labels, y (B,) classes -> (B,) float64.

    For every label of the shape's class, the IoU of predicted and true points; a label absent from both
    counts 1.

    Examples
    --------
    >>> shape_miou(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[0, 0, 0, 1]]), torch.tensor([0]), [(0, 1, 2)])
    tensor([0.7222], dtype=torch.float64)
    """
    out = torch.empty(len(y), dtype=torch.float64)
    for i in range(len(y)):
        ious = []
        for lab in class_labels[int(y[i])]:
            p, t = pred[i] == lab, part[i] == lab
            union = int((p | t).sum())
            ious.append(1.0 if union == 0 else int((p & t).sum()) / union)
        out[i] = sum(ious) / len(ious)
    return out


def _make_step(masks, vote_weight: float, num_labels: int):
    from geodl.bench.tasks.modelnet import rotations
    from geodl.nn.apen import vote_loss

    def step(model, batch):
        pos, part, instance, centre, y = batch
        core = getattr(model, "module", model)
        if model.training and core.kind == "PointNet":  # a fresh rotation (seeded, checkpointed generator)
            Q = rotations("SO3", len(pos)).to(pos)
            pos, centre = pos @ Q.transpose(1, 2), centre @ Q.transpose(1, 2)
        out = model(pos)
        seg_loss = torch.nn.functional.cross_entropy(out["seg"], part.reshape(-1))
        cls_loss = torch.nn.functional.cross_entropy(out["cls"], y)
        loss = seg_loss + cls_loss
        logs = {"seg_loss": float(seg_loss.detach()), "cls_loss": float(cls_loss.detach())}
        if out["votes"] is not None:
            vl = vote_loss(out["votes"], centre.reshape(-1, 3))
            loss = loss + vote_weight * vl
            logs["vote_loss"] = float(vl.detach())
        seg = out["seg"].detach().reshape(len(pos), -1, num_labels)
        pred = _restricted_argmax(seg, y, masks)
        return loss, logs, (pred, part, y, out["cls"].detach().argmax(-1))

    return step


def _metrics(classes, class_labels) -> dict:
    def miou(pred, part, y, cls_pred):
        return float(shape_miou(pred.cpu(), part.cpu(), y.cpu(), class_labels).mean())

    def class_miou(pred, part, y, cls_pred):
        s = shape_miou(pred.cpu(), part.cpu(), y.cpu(), class_labels)
        return float(torch.stack([s[y.cpu() == c].mean() for c in range(len(classes)) if (y == c).any()]).mean())

    def acc(pred, part, y, cls_pred):
        return float((cls_pred == y).double().mean())

    out = {"miou": miou, "class_miou": class_miou, "shape_acc": acc}
    for c, name in enumerate(classes):
        def per(pred, part, y, cls_pred, c=c):
            m = y.cpu() == c
            return float(shape_miou(pred.cpu()[m], part.cpu()[m], y.cpu()[m], class_labels).mean()) if m.any() \
                else float("nan")

        out[f"miou_{name}"] = per
    return out


def _piecewise(model, ds, cfg, args, n_clouds: int) -> dict:
    """The measured piecewise errors of ``model`` on the first test clouds (and APEN's bound terms)."""
    from geodl.nn.apen import piecewise_bound, piecewise_motion

    model.eval()
    take = torch.linspace(0, len(ds.y) - 1, min(n_clouds, len(ds.y))).round().long()
    pos, inst = ds.pos[take], ds.instance[take]
    b, p, _ = pos.shape
    batch = torch.arange(b).repeat_interleave(p)
    flat, labels = pos.reshape(-1, 3), inst.reshape(-1)
    gen = torch.Generator().manual_seed(args.seed + 1)
    if model.kind == "APEN":
        out = piecewise_bound(model.net, flat, labels, batch, n_samples=args.motion_samples,
                              translation_std=args.motion_std, generator=gen)
        out["n_clouds"] = b
        return out
    errs, flips = [], []
    with torch.no_grad():
        ref = model(pos)["seg"]
        for _ in range(args.motion_samples):
            moved = piecewise_motion(flat, labels, batch, translation_std=args.motion_std, generator=gen)
            seg = model(moved.reshape(b, p, 3))["seg"]
            errs.append(float((seg - ref).norm() / ref.norm()))
            flips.append(float((seg.argmax(-1) != ref.argmax(-1)).double().mean()))
    return {"error_seg": sum(errs) / len(errs), "flip_seg": sum(flips) / len(flips), "n_clouds": b,
            "n_samples": args.motion_samples, "translation_std": args.motion_std}


def _plot(summary: list[dict], classes, piecewise: dict, path):
    """Left: test mIoU per class and model. Right: APEN's per-layer bound terms beside the measured errors."""
    from geodl.bench._plots import _pyplot, grouped_bars, save_figure

    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12.0, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    groups = [*classes, "all"]
    grouped_bars(ax, {e["model"]: [100 * e[f"miou_{c}"] if c != "all" else 100 * e["miou"] for c in groups]
                      for e in summary}, groups)
    ax.set_ylabel("test mIoU (unseen poses, %)")
    ax.legend(fontsize=8, ncol=len(summary), loc="upper center", bbox_to_anchor=(0.5, 1.12))
    labels, values = [], []
    for m, pw in piecewise.items():
        labels.append(f"error {m}")
        values.append(pw["error_seg"])
    apen = piecewise.get("APEN")
    if apen is not None:
        for i, layer in enumerate(apen["layers"]):
            labels += [f"P(not sub) {i}", f"uncertainty {i}"]
            values += [layer["probability"], layer["uncertainty"]]
    bx.bar(range(len(values)), values, color=["C0"] * len(piecewise) + ["C3", "C2"] * (len(labels) - len(piecewise)))
    bx.set_xticks(range(len(values)), labels, fontsize=7, rotation=45, ha="right")
    bx.set_title("piecewise error (relative) and APEN's bound terms", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _run(args) -> int:
    from torch.utils.data import TensorDataset

    from geodl.bench._loop import evaluate, train
    from geodl.bench._plots import try_plot
    from geodl.bench._results import print_table, write_results
    from geodl.data import ArticulatedShapes

    tag = "quick" if args.quick else "full"
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SETTINGS[tag].items()}
    for key in ("epochs", "num_points", "batch_size"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.per_class is not None:
        cfg["per_class"] = tuple(args.per_class)
    models = list(args.models)
    name = args.results_name or ("articulated_quick" if args.quick else "articulated")
    rank = int(os.environ.get("RANK", "0"))
    say = print if (rank == 0 and args.progress) else (lambda *a, **k: None)
    a, b = math.radians(args.joint_range[0]), math.radians(args.joint_range[1])

    t_all = time.perf_counter()
    sets = [ArticulatedShapes(split, num_points=cfg["num_points"], per_class=k, seed=args.seed, noise=cfg["noise"],
                              joint_range=(a, b), rotate="so3")
            for split, k in zip(("train", "val", "test"), cfg["per_class"])]
    classes, class_labels = sets[0].classes, sets[0].class_part_labels
    num_labels = len(sets[0].part_labels)
    data_s = time.perf_counter() - t_all
    say(f"articulated: {' / '.join(str(len(s)) for s in sets)} clouds (train / val / test), classes {list(classes)}, "
        f"{num_labels} part labels, {cfg['num_points']} points, joints |θ| < {args.joint_range[0]:g}° in training and "
        f"{args.joint_range[0]:g}°..{args.joint_range[1]:g}° in test; ready in {data_s:.1f} s")
    tensors = [TensorDataset(s.pos, s.part, s.instance, s.centre, s.y) for s in sets]
    masks = _class_masks(class_labels, num_labels)
    step = _make_step(masks, cfg["vote_weight"], num_labels)
    metrics = _metrics(classes, class_labels)

    rows, summary, piecewise = [], [], {}
    key = (f"n{cfg['num_points']}-pc{'-'.join(map(str, cfg['per_class']))}-b{cfg['batch_size']}"
           f"-j{args.joint_range[0]:g}-{args.joint_range[1]:g}-seed{args.seed}-e{cfg['epochs']}")
    for model_name in models:
        torch.manual_seed(args.seed)
        model = build_model(model_name, cfg, num_labels, len(classes))
        params = sum(p.numel() for p in model.parameters())
        run_dir = args.run_dir / tag / f"articulated-{model_name.lower()}-{key}"
        t0 = time.perf_counter()
        res = train(model, step, tensors[0], tensors[1], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                    lr=cfg["lr"], lr_schedule="cosine", run_dir=run_dir, seed=args.seed, progress=args.progress,
                    resume=args.resume, device=args.device)
        train_s = time.perf_counter() - t0
        res.model.cpu()
        ev = evaluate(res.model, step, tensors[2], cfg["batch_size"], metrics=metrics)
        ev_val = evaluate(res.model, step, tensors[1], cfg["batch_size"], metrics=metrics)
        t1 = time.perf_counter()
        piecewise[model_name] = _piecewise(res.model, sets[2], cfg, args, args.motion_clouds)
        pw_s = time.perf_counter() - t1
        times = [h["time"] for h in res.history]
        common = {"params": params, "epochs": cfg["epochs"], "best_epoch": res.best.get("epoch"),
                  "s_per_epoch": round(sum(times) / max(1, len(times)), 2), "train_s": round(train_s, 1),
                  "resumed_from": res.resumed_from, "run_dir": str(run_dir)}
        for c in [*classes, "all"]:
            rows.append({"model": model_name, "class": c,
                         "test_miou": ev["miou"] if c == "all" else ev[f"miou_{c}"],
                         "val_miou": ev_val["miou"] if c == "all" else ev_val[f"miou_{c}"],
                         "test_shape_acc": ev["shape_acc"] if c == "all" else "", **common})
        entry = {"model": model_name, "miou": ev["miou"], "class_miou": ev["class_miou"],
                 **{f"miou_{c}": ev[f"miou_{c}"] for c in classes}, "shape_acc": ev["shape_acc"],
                 "val_miou": ev_val["miou"], "val_shape_acc": ev_val["shape_acc"],
                 "piecewise_error": piecewise[model_name]["error_seg"],
                 "piecewise_flip": piecewise[model_name]["flip_seg"], "params": params,
                 "train_s": round(train_s, 1), "piecewise_s": round(pw_s, 1)}
        summary.append(entry)
        say(f"{model_name}: test mIoU {100 * ev['miou']:.1f} (val {100 * ev_val['miou']:.1f}), shape acc "
            f"{ev['shape_acc']:.3f}, piecewise error {entry['piecewise_error']:.3g} ({train_s:.0f} s)")
    if rank != 0:
        return 0

    print()
    print_table([{**e, **{k: 100 * e[k] for k in e if k.startswith("miou") or k in ("class_miou", "val_miou")}}
                 for e in summary],
                ["model", *[(f"miou_{c}", c) for c in classes], ("miou", "mIoU"), ("class_miou", "class mIoU"),
                 ("val_miou", "val mIoU"), ("shape_acc", "shape acc"), ("piecewise_error", "pw error"),
                 ("piecewise_flip", "pw flips"), "params", ("train_s", "train s")])
    print(f"part-segmentation mIoU (%) of {len(sets[2])} test clouds in unseen poses (val: seen pose range); pw error: "
          "relative change of the part logits when every part instance is moved by its own rigid motion")
    if "APEN" in piecewise:
        apen = piecewise["APEN"]
        for i, layer in enumerate(apen["layers"]):
            print(f"APEN partition {i}: P(not a sub-partition) {layer['probability']:.3f}, impurity "
                  f"{layer['impurity']:.4f}, assignment uncertainty {layer['uncertainty']:.4f}, "
                  f"{layer['num_parts']:.1f} parts per cloud")
        print(f"APEN piecewise error {apen['error_seg']:.3g} (sub-partition clouds: {apen['error_seg_sub']}, others: "
              f"{apen['error_seg_not_sub']}; {100 * apen['fraction_sub']:.0f} % of the clouds had sub-partitions only)")
    goals = {}
    miou = {e["model"]: e["miou"] for e in summary}
    if "APEN" in miou and len(miou) > 1:
        others = {m: v for m, v in miou.items() if m != "APEN"}
        margin = min(100 * (miou["APEN"] - v) for v in others.values())
        met = margin > 5.0
        goals["APEN test mIoU above both baselines by more than 5 points"] = {
            "apen": miou["APEN"], "baselines": others, "margin_points": margin, "met": met}
        print(f"goal (APEN ahead of both by > 5 mIoU points): {'met' if met else 'NOT met'} (margin {margin:.1f})")
    payload = {"task": "articulated", "quick": args.quick, "seed": args.seed, "settings": cfg, "models": models,
               "training": "Adam, cosine decay, the epoch with the lowest validation loss kept (validation: seen "
                           "pose range); PointNet gets a fresh random rotation per training batch",
               "metrics": "ShapeNet-part mIoU: per shape, the IoU of each part label of its true class (absent "
                          "from both: 1), argmax over that class's labels; averaged over shapes (miou) and classes",
               "data": {"dataset": "ArticulatedShapes", "per_class": list(cfg["per_class"]),
                        "num_points": cfg["num_points"], "classes": list(classes),
                        "part_labels": list(sets[0].part_labels), "joint_range_deg": list(args.joint_range),
                        "rotate": "so3", "data_s": round(data_s, 1)},
               "summary": summary, "piecewise": piecewise, "goals": goals,
               "total_s": round(time.perf_counter() - t_all, 1)}
    out = args.out / f"{name}.json"
    json_path, csv_path = write_results(out, payload, rows)
    png = try_plot(_plot, summary, classes, piecewise, out.with_suffix(".png"))
    print(f"wrote {json_path}, {csv_path}" + (f", {png}" if png is not None else ""))
    return 0


def _angles(text: str) -> tuple[float, float]:
    import argparse

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two angles in degrees 'A,B', got {text!r}") from None
    if not (0 <= lo < hi <= 180):
        raise argparse.ArgumentTypeError(f"expected 0 <= A < B <= 180 (degrees), got {text!r}")
    return lo, hi


def _num_points(text: str) -> int:
    import argparse

    from geodl.data._articulated import MAX_PARTS

    v = positive_int(text)
    least = 16 * MAX_PARTS  # ArticulatedShapes' min_part_points (16) on every part of the largest class
    if v < least:
        raise argparse.ArgumentTypeError(f"expected at least {least} points (16 per part instance, {MAX_PARTS} "
                                          f"instances in the largest class), got {text!r}")
    return v


def _add_arguments(p) -> None:
    from geodl.bench.tasks.modelnet import _triple
    from geodl.bench.tasks.nbody import _stem

    p.add_argument("--models", type=name_list(list(MODELS), "model"), default=",".join(MODELS),
                   help=f"comma-separated subset of {list(MODELS)}")
    p.add_argument("--per-class", type=_triple, default=None, metavar="TRAIN,VAL,TEST",
                   help="clouds per class in each split")
    p.add_argument("--num-points", type=_num_points, default=None, metavar="N",
                   help="points per cloud (at least 96: 16 per part instance)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N")
    p.add_argument("--joint-range", type=_angles, default=(30.0, 75.0), metavar="A,B",
                   help="joint angles |θ| < A in training, A..B in test (degrees; default 30,75)")
    p.add_argument("--motion-std", type=positive_float, default=0.5, metavar="S",
                   help="translation std of the random per-part motions of the piecewise-error measurement")
    p.add_argument("--motion-samples", type=positive_int, default=4, metavar="N",
                   help="random per-part motions per measurement")
    p.add_argument("--motion-clouds", type=positive_int, default=64, metavar="N",
                   help="test clouds the piecewise errors are measured on")
    p.add_argument("--results-name", type=_stem, default=None, metavar="STEM",
                   help="results file name without suffix (default articulated or articulated_quick)")


TASK = Task("articulated", "APEN, FA-PointNet and PointNet: part segmentation of articulated shapes in unseen poses",
            run=_run, add_arguments=_add_arguments, description=__doc__)
main = TASK.main
