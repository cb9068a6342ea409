"""``geodl bench shapes`` and ``geodl bench modelnet --data PATH``: rotated point-cloud classification.

Protocols ``train/test`` rotations: ``z/z``, ``z/SO3`` and ``SO3/SO3``, where "z" is a uniform
random rotation about the vertical axis and "SO3" a Haar random rotation. Training rotations are
drawn afresh for every batch from torch's seeded generator (checkpointed with the run, so a
resumed run continues the same stream); validation and test rotations are fixed per sample
(seeded by ``--seed`` and the rotation kind). Each model is trained **once per distinct training
rotation** and evaluated on the test rotations of every protocol that shares it: ``z/z`` and
``z/SO3`` use the same z-trained model (so their difference is the effect of the test rotations
alone), ``SO3/SO3`` its own SO3-trained model.

Models in one run (``--models`` picks a subset, ``--protocols`` a subset of the protocols):
PointNet, FA-PointNet (``FrameAveraging(PointNet(...), group="SE3")``), TinvNN-PointNet
(``TinvNN(PointNet(...), handed=True)``), DGCNN, FA-DGCNN and TinvNN-DGCNN. The frame group is
SE(3): its 4 frames (the sign patterns of the PCA axes with determinant +1) already make the
output invariant to every rotation and translation, half the cost of the 8 E(3) frames, and
``handed=True`` gives TinvNN the same symmetry (rotations, not reflections). Both wrappers use
``degeneracy="flag"``; the number of test clouds flagged degenerate (tied PCA eigenvalues or, for
TinvNN, an ambiguous sign) is reported per model and protocol.

Data: ``shapes`` uses :class:`geodl.data.SyntheticShapes` (12 classes, train / val / test from
different seeds); ``modelnet`` reads :class:`geodl.data.ModelNet` from ``--data`` (``--version``
10 or 40, auto-detected by default) and holds out a seeded 10 % of the training files for
validation. Every cloud is centred and scaled to unit radius. Training: Adam, cross-entropy,
cosine learning-rate decay; the epoch with the lowest validation loss is kept.

Outputs: a table (model x protocol test accuracy, and the drop z/z -> z/SO3), ``<out>/<name>.json``
+ ``.csv`` (one row per model and protocol; written first) and a grouped bar chart
``<out>/<name>.png`` (matplotlib optional). ``<name>`` is ``shapes`` / ``shapes_quick`` or
``modelnet`` / ``modelnet_quick``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from geodl.bench._task import Task, name_list, positive_int

__all__ = ["main_shapes", "main_modelnet", "SHAPES", "MODELNET", "MODELS", "PROTOCOLS", "SETTINGS",
           "build_model", "parse_protocols"]

MODELS = ("PointNet", "FA-PointNet", "TinvNN-PointNet", "DGCNN", "FA-DGCNN", "TinvNN-DGCNN")
PROTOCOLS = ("z/z", "z/SO3", "SO3/SO3")
FRAME_GROUP = "SE3"

# the network sizes, data sizes and epochs per task and mode
SETTINGS = {
    "shapes": {
        "full": {"num_points": 128, "per_class": (60, 15, 40), "epochs": 20, "batch_size": 32, "lr": 1e-3,
                 "pointnet": {"hidden_channels": (64, 128, 256), "head_channels": (128,)},
                 "dgcnn": {"k": 10, "conv_channels": (32, 32), "emb_channels": 128, "head_channels": (64,),
                           "dropout": 0.3}},
        "quick": {"num_points": 64, "per_class": (20, 5, 10), "epochs": 5, "batch_size": 16, "lr": 1e-2,
                  "pointnet": {"hidden_channels": (32, 64), "head_channels": (32,)},
                  "dgcnn": {"k": 8, "conv_channels": (16, 32), "emb_channels": 64, "head_channels": (32,),
                            "dropout": 0.0}},
    },
    "modelnet": {
        "full": {"num_points": 1024, "epochs": 30, "batch_size": 32, "lr": 1e-3,
                 "pointnet": {"hidden_channels": (64, 128, 1024), "head_channels": (512, 256)},
                 "dgcnn": {"k": 20, "conv_channels": (64, 64, 128, 256), "emb_channels": 1024,
                           "head_channels": (512, 256), "dropout": 0.5}},
        "quick": {"num_points": 128, "epochs": 2, "batch_size": 16, "lr": 2e-3,
                  "pointnet": {"hidden_channels": (32, 64), "head_channels": (32,)},
                  "dgcnn": {"k": 8, "conv_channels": (16, 32), "emb_channels": 64, "head_channels": (32,),
                            "dropout": 0.0}},
    },
}
_ROTATION_SEED = {"z": 1, "SO3": 2}


def parse_protocols(protocols) -> list[str]:
    """The protocols named in ``protocols`` (a comma-separated str or a sequence), validated.

    Raises
    ------
    ValueError
        Naming ``protocols`` for an empty list, an unknown or a repeated name.

    Examples
    --------
    >>> parse_protocols("z/SO3, z/z")
    ['z/SO3', 'z/z']
    >>> parse_protocols("z/O3")
    Traceback (most recent call last):
    ...
    ValueError: protocols: unknown protocol 'z/O3'; expected some of ['z/z', 'z/SO3', 'SO3/SO3']
    """
    if isinstance(protocols, str):
        names = [p.strip() for p in protocols.split(",") if p.strip()]
    elif isinstance(protocols, (list, tuple)) and all(isinstance(p, str) for p in protocols):
        names = list(protocols)
    else:
        raise TypeError(f"protocols: expected a comma-separated str or a list of str, got {protocols!r:.60}")
    if not names:
        raise ValueError(f"protocols: expected some of {list(PROTOCOLS)}, got an empty list")
    for p in names:
        if p not in PROTOCOLS:
            raise ValueError(f"protocols: unknown protocol {p!r}; expected some of {list(PROTOCOLS)}")
    repeated = sorted({p for p in names if names.count(p) > 1})
    if repeated:
        raise ValueError(f"protocols: {repeated[0]!r} given more than once")
    return names


def rotations(kind: str, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random rotation matrices (n, 3, 3) float32: "z" (uniform about the z axis) or "SO3" (Haar).

    Examples
    --------
    >>> R = rotations("z", 4, generator=torch.Generator().manual_seed(0))
    >>> R.shape, bool(torch.allclose(R[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(4, 3)))
    (torch.Size([4, 3, 3]), True)
    """
    if kind == "z":
        a = torch.rand(n, generator=generator) * (2 * math.pi)
        c, s, o, z = torch.cos(a), torch.sin(a), torch.ones(n), torch.zeros(n)
        return torch.stack([c, -s, z, s, c, z, z, z, o], 1).reshape(n, 3, 3)
    if kind == "SO3":
        from geodl.groups import random_rotation

        return random_rotation(n, generator=generator, dtype=torch.float32)
    raise ValueError(f"kind: expected 'z' or 'SO3', got {kind!r}")


def _normalised(pos: torch.Tensor) -> torch.Tensor:
    """Each cloud (M, P, 3) centred at its centroid and scaled to unit maximum radius."""
    pos = pos - pos.mean(1, keepdim=True)
    return pos / pos.norm(dim=-1).amax(1).clamp_min(1e-12)[:, None, None]


def _rotated(pos: torch.Tensor, y: torch.Tensor, kind: str | None, seed: int):
    from torch.utils.data import TensorDataset

    if kind is not None:
        R = rotations(kind, len(pos), generator=torch.Generator().manual_seed(1000 * seed + _ROTATION_SEED[kind]))
        pos = pos @ R.transpose(1, 2)
    return TensorDataset(pos.contiguous(), y)


class _Classifier(torch.nn.Module):
    """A backbone (or an FA / TinvNN wrapper) on batched clouds: ``(B, P, 3) -> (logits, degenerate)``."""

    def __init__(self, net: torch.nn.Module, wrapped: bool):
        super().__init__()
        self.net, self.wrapped = net, wrapped

    def forward(self, pos: torch.Tensor):
        b, p, _ = pos.shape
        batch = torch.arange(b, device=pos.device).repeat_interleave(p)
        flat = pos.reshape(-1, 3)
        if self.wrapped:
            return self.net(pos=flat, batch=batch, num_graphs=b, return_mask=True)
        return self.net(pos=flat, batch=batch, num_graphs=b), torch.zeros(b, dtype=torch.bool, device=pos.device)


def build_model(name: str, num_classes: int, cfg: dict) -> torch.nn.Module:
    """The classifier ``name`` (one of :data:`MODELS`) for ``num_classes`` classes with ``cfg``'s sizes.

    Examples
    --------
    >>> m = build_model("FA-PointNet", 5, SETTINGS["shapes"]["quick"])
    >>> logits, degenerate = m(torch.randn(2, 16, 3))
    >>> logits.shape, degenerate.shape
    (torch.Size([2, 5]), torch.Size([2]))
    """
    if name not in MODELS:
        raise ValueError(f"name: expected one of {list(MODELS)}, got {name!r}")
    base = name.split("-")[-1]
    if base == "PointNet":
        from geodl.nn import PointNet

        net = PointNet(out_channels=num_classes, **cfg["pointnet"])
    else:
        from geodl.nn import DGCNN

        net = DGCNN(out_channels=num_classes, **cfg["dgcnn"])
    if name.startswith("FA-"):
        from geodl.nn import FrameAveraging

        net = FrameAveraging(net, group=FRAME_GROUP, degeneracy="flag")
    elif name.startswith("TinvNN-"):
        from geodl.nn import TinvNN

        net = TinvNN(net, handed=True, degeneracy="flag")
    return _Classifier(net, wrapped=name != base)


def _make_step(train_kind: str):
    def step(model, batch):
        pos, y = batch
        if model.training:  # fresh training rotations from torch's (seeded, checkpointed) generator
            R = rotations(train_kind, len(pos)).to(pos.device)
            pos = pos @ R.transpose(1, 2)
        with torch.set_grad_enabled(model.training and torch.is_grad_enabled()):
            logits, degenerate = model(pos)
            loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        return loss, {"acc": float(acc), "degenerate": float(degenerate.float().mean())}

    return step


def _split_kinds(protocols: list[str]) -> dict[str, list[str]]:
    """``{train rotation: [test rotations]}`` in the order of :data:`PROTOCOLS`."""
    out: dict[str, list[str]] = {}
    for p in PROTOCOLS:
        if p in protocols:
            tr, te = p.split("/")
            out.setdefault(tr, []).append(te)
    return out


def _stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(dataset, "pos") and isinstance(getattr(dataset, "pos"), torch.Tensor):
        pos, y = dataset.pos, dataset.y
    else:
        items = [dataset[i] for i in range(len(dataset))]
        pos = torch.stack([d.pos for d in items]).float()
        y = torch.cat([d.y.reshape(-1) for d in items]).long()
    return _normalised(pos), y


def _load(task: str, args, cfg: dict):
    """``(train, val, test)`` as (pos (M, P, 3), y (M,)) pairs, the class names and a data record."""
    if task == "shapes":
        from geodl.data import SyntheticShapes

        n_tr, n_va, n_te = cfg["per_class"]
        kw = {"num_points": cfg["num_points"], "seed": args.seed}
        sets = [SyntheticShapes(s, per_class=k, **kw) for s, k in (("train", n_tr), ("val", n_va), ("test", n_te))]
        record = {"dataset": "SyntheticShapes", "per_class": list(cfg["per_class"]), "num_points": cfg["num_points"],
                  "classes": list(sets[0].classes)}
        return [_stack(s) for s in sets], list(sets[0].classes), record
    from geodl.data import ModelNet

    kw = {"version": args.version, "num_points": cfg["num_points"], "seed": args.seed,
          "progress": args.progress}
    train_ds = ModelNet(args.data, "train", **kw)
    test_ds = ModelNet(args.data, "test", **kw)
    pos, y = _stack(train_ds)
    if len(pos) < 2:
        raise ValueError(f"data: {args.data} holds {len(pos)} training file(s); at least 2 are needed "
                         "(one is held out for validation)")
    perm = torch.randperm(len(pos), generator=torch.Generator().manual_seed(args.seed))
    n_val = max(1, len(pos) // 10)
    val, tr = perm[:n_val].sort().values, perm[n_val:].sort().values
    record = {"dataset": f"ModelNet{train_ds.version}", "root": str(args.data), "num_points": cfg["num_points"],
              "train_files": len(tr), "val_files": n_val, "test_files": len(test_ds),
              "classes": list(train_ds.classes)}
    return [(pos[tr], y[tr]), (pos[val], y[val]), _stack(test_ds)], list(train_ds.classes), record


def _plot(summary: list[dict], protocols: list[str], num_classes: int, path: Path) -> Path:
    """Grouped bars: test accuracy of each model (groups) under each protocol (bars), chance dashed."""
    from geodl.bench._plots import _pyplot, grouped_bars, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.3 * len(summary) + 3.5, 4.0))
    grouped_bars(ax, {p: [100 * (r.get(p) if r.get(p) is not None else float("nan")) for r in summary]
                      for p in protocols}, [r["model"] for r in summary])
    ax.axhline(100 / num_classes, color="0.4", ls="--", lw=1, label="chance")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(title="train/test", fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save_figure(fig, path)


def _run(args) -> int:
    from geodl.bench._loop import evaluate, train
    from geodl.bench._plots import try_plot
    from geodl.bench._results import print_table, write_results

    task = args.task
    protocols = parse_protocols(args.protocols)
    models = list(args.models)  # validated by the parser
    tag = "quick" if args.quick else "full"
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SETTINGS[task][tag].items()}
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    if args.num_points is not None:
        cfg["num_points"] = args.num_points
    if args.batch_size is not None:
        cfg["batch_size"] = args.batch_size
    if task == "shapes" and args.per_class is not None:
        cfg["per_class"] = tuple(args.per_class)
    name = args.results_name or (task + ("_quick" if args.quick else ""))
    rank = int(os.environ.get("RANK", "0"))
    say = print if (rank == 0 and args.progress) else (lambda *a, **k: None)

    t_all = time.perf_counter()
    (train_xy, val_xy, test_xy), classes, record = _load(task, args, cfg)
    kinds = _split_kinds(protocols)
    say(f"{task}: {len(train_xy[1])} / {len(val_xy[1])} / {len(test_xy[1])} clouds (train / val / test), "
        f"{len(classes)} classes, {cfg['num_points']} points, ready in {time.perf_counter() - t_all:.1f} s")
    say("each model is trained once per training rotation (" + ", ".join(
        f"{tr}: tested on {', '.join(f'{tr}/{te}' for te in tes)}" for tr, tes in kinds.items()) + ")")
    test_sets = {k: _rotated(*test_xy, k, args.seed) for k in {te for tes in kinds.values() for te in tes}}
    train_set = _rotated(*train_xy, None, args.seed)

    rows = []
    key = (f"n{cfg['num_points']}" + (f"-pc{'-'.join(map(str, cfg['per_class']))}" if task == "shapes" else "")
           + f"-b{cfg['batch_size']}-seed{args.seed}-e{cfg['epochs']}")
    for model_name in models:
        for tr, tes in kinds.items():
            torch.manual_seed(args.seed)
            model = build_model(model_name, len(classes), cfg)
            params = sum(p.numel() for p in model.parameters())
            step = _make_step(tr)
            run_dir = args.run_dir / tag / f"{task}-{model_name.lower()}-{tr.lower()}-{key}"
            t0 = time.perf_counter()
            res = train(model, step, train_set, _rotated(*val_xy, tr, args.seed + 1), epochs=cfg["epochs"],
                        batch_size=cfg["batch_size"], lr=cfg["lr"], lr_schedule="cosine", run_dir=run_dir,
                        seed=args.seed, progress=args.progress, resume=args.resume, device=args.device)
            train_s = time.perf_counter() - t0
            times = [h["time"] for h in res.history]
            for te in tes:
                ev = evaluate(res.model, step, test_sets[te], cfg["batch_size"], device=args.device)
                rows.append({"model": model_name, "protocol": f"{tr}/{te}", "train_rotation": tr,
                             "test_rotation": te, "test_acc": ev["acc"], "test_loss": ev["loss"],
                             "degenerate_test": int(round(ev["degenerate"] * len(test_sets[te]))),
                             "val_acc": res.best.get("val_acc"), "best_epoch": res.best.get("epoch"),
                             "epochs": cfg["epochs"], "params": params,
                             "s_per_epoch": sum(times) / max(1, len(times)), "train_s": round(train_s, 2),
                             "resumed_from": res.resumed_from, "run_dir": str(run_dir)})
            res.model.cpu()
    if rank != 0:
        return 0

    summary = []
    for m in models:
        acc = {r["protocol"]: r["test_acc"] for r in rows if r["model"] == m}
        deg = {r["protocol"]: r["degenerate_test"] for r in rows if r["model"] == m}
        entry = {"model": m, **acc}
        if "z/z" in acc and "z/SO3" in acc:
            entry["drop"] = acc["z/z"] - acc["z/SO3"]
        entry["degenerate"] = "/".join(str(deg[p]) for p in protocols if p in deg)
        summary.append(entry)
    print()
    print_table(summary, ["model", *protocols, *([("drop", "drop z/z->z/SO3")] if "drop" in summary[0] else []),
                          ("degenerate", "degenerate test clouds")])
    print(f"test accuracy (fraction) of {len(test_xy[1])} test clouds per protocol; each model was trained once "
          "per training rotation: z/z and z/SO3 share the z-trained model; degenerate = test clouds flagged by the "
          "FA / TinvNN wrappers (per protocol)")
    goals = {}
    if "drop" in summary[0]:
        for e in summary:
            invariant = e["model"].startswith(("FA-", "TinvNN-"))
            goals[e["model"]] = {"goal": "drop <= 0.02" if invariant else "drop > 0.20", "drop": e["drop"],
                                 "met": (abs(e["drop"]) <= 0.02) if invariant else (e["drop"] > 0.20)}
    payload = {"task": task, "quick": args.quick, "seed": args.seed, "settings": cfg, "protocols": protocols,
               "models": models, "frame_group": FRAME_GROUP, "tinvnn": {"handed": True, "degeneracy": "flag"},
               "training": "each model trained once per training rotation; z/z and z/SO3 share the z-trained model",
               "selection": "epoch with the lowest validation loss (validation rotated like training, fixed per sample)",
               "data": record, "summary": summary, "goals": goals,
               "total_s": round(time.perf_counter() - t_all, 1)}
    out = args.out / f"{name}.json"
    json_path, csv_path = write_results(out, payload, rows)  # results first, the figure after
    png = try_plot(_plot, summary, protocols, len(classes), out.with_suffix(".png"))
    print(f"wrote {json_path}, {csv_path}" + (f", {png}" if png is not None else ""))
    return 0


def _triple(text: str) -> tuple[int, int, int]:
    import argparse

    parts = text.split(",")
    try:
        vals = tuple(positive_int(p.strip()) for p in parts)
    except argparse.ArgumentTypeError:
        vals = ()
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"expected three positive ints TRAIN,VAL,TEST, got {text!r}")
    return vals


def _common_arguments(p) -> None:
    from geodl.bench.tasks.nbody import _stem  # the --results-name type of every task

    p.add_argument("--models", type=name_list(list(MODELS), "model"), default=",".join(MODELS),
                   help=f"comma-separated subset of {list(MODELS)}")
    p.add_argument("--protocols", default=",".join(PROTOCOLS),
                   help=f"comma-separated subset of {list(PROTOCOLS)} (train/test rotations)")
    p.add_argument("--num-points", type=positive_int, default=None, metavar="N", help="points per cloud")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N")
    p.add_argument("--results-name", type=_stem, default=None, metavar="STEM",
                   help="results file name without suffix (default <task> or <task>_quick)")


def _shapes_arguments(p) -> None:
    _common_arguments(p)
    p.add_argument("--per-class", type=_triple, default=None, metavar="TRAIN,VAL,TEST",
                   help="clouds per class in each split")


def _modelnet_arguments(p) -> None:
    _common_arguments(p)
    p.add_argument("--data", required=True, metavar="PATH",
                   help="a local ModelNet10/40 folder in the official layout (<root>/<class>/{train,test}/*.off)")
    p.add_argument("--version", choices=["10", "40"], default=None,
                   help="ModelNet10 or ModelNet40 (default: detected from the class folders)")


def _declare(task: str, summary: str, add) -> Task:
    def run_this(args):
        args.task = task
        return _run(args)

    return Task(task, summary, run=run_this, add_arguments=add, description=__doc__)


SHAPES = _declare("shapes", "PointNet / DGCNN, plain, FA and TinvNN, on rotated synthetic shapes (z/z, z/SO3, SO3/SO3)",
                  _shapes_arguments)
MODELNET = _declare("modelnet", "the shapes protocol on a local ModelNet10/40 folder (--data PATH)",
                    _modelnet_arguments)
main_shapes = SHAPES.main
main_modelnet = MODELNET.main
