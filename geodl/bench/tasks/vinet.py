"""``geodl bench vinet``: category-level rotation estimation on partial point clouds.

Three models in one run (``--models`` picks a subset), all trained on the same
:class:`geodl.data.CategoryPoses` splits (train / val / test from different seeds; every category
has the same number of clouds):

- ``VINet``: :class:`geodl.nn.VINet` with SPA-SConv (spherical padding, pole-flip symmetric
  kernels), trained with :meth:`~geodl.nn.VINet.loss` (focal losses on the viewpoint bins, the
  I-branch regressing the in-plane rotation given the ground-truth viewpoint bins);
- ``VINet-zeros``: the ablation ``VINet(padding="zeros", symmetric=False)`` (plain zero-padded
  convolutions), same loss;
- ``PointNet-6D``: :class:`geodl.nn.PointNet` with ``out_channels=6``, mapped to a rotation by
  :func:`geodl.groups.sixd_to_matrix`; loss the squared Frobenius distance to the target matrix.

**Symmetric categories.** The error is :func:`geodl.data.symmetric_rotation_error` with the
category's symmetry (for "z", the angle between the predicted and the true canonical z axes).
For training, the target of a "z"-symmetric cloud is the canonical representative of its
rotation modulo the symmetry, ``R_vp = Rz(α) Ry(β)`` of its z axis ``R e_z`` (polar angle β,
azimuth α): ``R`` and ``R Rz(γ)`` give the same cloud, and ``R_vp`` is the one of them with no
in-plane part, so VI-Net's I-branch learns the identity for these categories and every model is
trained on a function of the cloud. The viewpoint labels of VI-Net are unchanged by this (they
depend on ``R e_z`` only). Categories without symmetry (and finite-group ones) keep ``R``.

**Training** (Adam, cosine learning-rate decay, the epoch with the lowest validation loss kept):
each batch is augmented by a fresh random rotation about the camera axis z (from torch's seeded,
checkpointed generator), applied to the cloud and to its rotation, which keeps the camera
direction of the visible-surface clouds. Validation and test clouds are used as generated.

Outputs: a table (per model: median error per category, overall median, 5° / 10° accuracy),
``<out>/<name>.json`` + ``.csv`` (one row per model and category, plus ``all``; written first)
and grouped bars of the median error per category ``<out>/<name>.png`` (matplotlib optional).
``<name>`` is ``vinet`` or ``vinet_quick``. Goal: VI-Net's overall median error below both
baselines' (reported, with what was measured, under ``goals``).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from geodl.bench._task import Task, name_list, positive_int

__all__ = ["TASK", "main", "MODELS", "SETTINGS", "build_model", "canonical_target"]

MODELS = ("VINet", "VINet-zeros", "PointNet-6D")
THRESHOLDS = (5.0, 10.0)

# data sizes, network sizes and epochs per mode; per_category = (train, val, test) clouds (6 categories:
# every split a whole number of batches)
SETTINGS = {
    "full": {"resolution": 32, "num_points": 1024, "per_category": (384, 32, 48), "epochs": 24, "batch_size": 32,
             "lr": 2e-3, "vinet": {"channels": (16, 32, 64), "hidden": 32},
             "pointnet": {"hidden_channels": (64, 128, 256), "head_channels": (128,)}},
    "quick": {"resolution": 16, "num_points": 512, "per_category": (64, 8, 16), "epochs": 12, "batch_size": 16,
              "lr": 3e-3, "vinet": {"channels": (8, 16, 32), "hidden": 16},
              "pointnet": {"hidden_channels": (32, 64, 128), "head_channels": (64,)}},
}


def canonical_target(R: torch.Tensor, z_symmetric: torch.Tensor) -> torch.Tensor:
    """Training targets: ``R`` (B, 3, 3), or for the clouds flagged ``z_symmetric`` (B,) bool the
    representative ``Rz(α) Ry(β)`` of ``R`` modulo rotations about the canonical z axis (α, β the
    azimuth and polar angle of ``R e_z``; the same ``R e_z``, no in-plane part).

    Examples
    --------
    >>> from geodl.groups import random_rotation
    >>> R = random_rotation(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> T = canonical_target(R, torch.tensor([True, False, True]))
    >>> bool(torch.allclose(T[:, :, 2], R[:, :, 2])), bool(torch.equal(T[1], R[1]))
    (True, True)
    >>> bool(torch.allclose(T[0].T @ T[0], torch.eye(3, dtype=torch.float64)))
    True
    """
    v = R[..., 2]
    alpha = torch.atan2(v[..., 1], v[..., 0])
    beta = torch.atan2(torch.linalg.vector_norm(v[..., :2], dim=-1), v[..., 2])
    ca, sa, cb, sb = alpha.cos(), alpha.sin(), beta.cos(), beta.sin()
    z = torch.zeros_like(ca)
    # Rz(α) @ Ry(β)
    rows = [ca * cb, -sa, ca * sb, sa * cb, ca, sa * sb, -sb, z, cb]
    vp = torch.stack(rows, -1).reshape(*R.shape[:-2], 3, 3)
    return torch.where(z_symmetric[..., None, None], vp, R)


class _PoseModel(torch.nn.Module):
    """A rotation regressor on batched clouds ``(B, P, 3)`` (+ colours) -> dict with ``rotation``."""

    def __init__(self, net: torch.nn.Module, kind: str):
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, pos, color=None, target=None):
        b, p, _ = pos.shape
        batch = torch.arange(b, device=pos.device).repeat_interleave(p)
        flat = pos.reshape(-1, 3)
        feats = color.reshape(-1, color.shape[-1]) if color is not None else None
        if self.kind == "vinet":
            return self.net(flat, batch, num_graphs=b, features=feats, rotation=target)
        from geodl.groups import sixd_to_matrix

        d6 = self.net(feats, flat, batch, num_graphs=b)
        return {"rotation": sixd_to_matrix(d6)}

    def loss(self, out: dict, target: torch.Tensor):
        if self.kind == "vinet":
            return self.net.loss(out, target)
        loss = ((out["rotation"] - target) ** 2).flatten(1).sum(1).mean()
        return loss, {"loss": float(loss.detach())}


def build_model(name: str, cfg: dict, colored: bool = False) -> torch.nn.Module:
    """The model ``name`` (one of :data:`MODELS`) with ``cfg``'s sizes (see :data:`SETTINGS`).

    Examples
    --------
    >>> m = build_model("PointNet-6D", SETTINGS["quick"]).eval()
    >>> m(torch.randn(2, 32, 3))["rotation"].shape
    torch.Size([2, 3, 3])
    """
    if name not in MODELS:
        raise ValueError(f"name: expected one of {list(MODELS)}, got {name!r}")
    if name.startswith("VINet"):
        from geodl.nn import VINet

        ablation = {"padding": "zeros", "symmetric": False} if name == "VINet-zeros" else {}
        net = VINet(cfg["resolution"], (1, 3), colour=colored, **cfg["vinet"], **ablation)
        return _PoseModel(net, "vinet")
    from geodl.nn import PointNet

    return _PoseModel(PointNet(in_channels=3 if colored else 0, out_channels=6, **cfg["pointnet"]), "pointnet")


def _make_step(z_symmetric: torch.Tensor, colored: bool):
    from geodl.bench.tasks.modelnet import rotations

    def step(model, batch):
        pos, R, y = batch[:3]
        color = batch[3] if colored else None
        if model.training:  # a fresh rotation about the camera axis (seeded, checkpointed generator)
            Q = rotations("z", len(pos)).to(pos)
            pos, R = pos @ Q.transpose(1, 2), Q @ R
        target = canonical_target(R, z_symmetric.to(y.device)[y])
        core = getattr(model, "module", model)  # DDP
        with torch.set_grad_enabled(model.training and torch.is_grad_enabled()):
            out = model(pos, color, target if model.training else None)
            loss, logs = core.loss(out, target)
        return loss, {k: float(v) for k, v in logs.items() if k != "loss"}, (out["rotation"].detach(), R, y)

    return step


def _errors(symmetries):
    from geodl.data import symmetric_rotation_error

    def errors(R_pred, R_gt, y):
        R_pred, R_gt, y = R_pred.detach().cpu(), R_gt.detach().cpu(), y.cpu()
        err = torch.empty(len(y), dtype=torch.float64)
        for k, sym in enumerate(symmetries):
            m = y == k
            if m.any():
                err[m] = symmetric_rotation_error(R_pred[m].double(), R_gt[m].double(), sym).double()
        return err

    return errors


def _metrics(categories, symmetries) -> dict:
    """Whole-set metrics: median error (degrees) and 5°/10° accuracy, per category and ``all``."""
    errors = _errors(symmetries)
    out = {}

    def make(k, stat):
        def fn(R_pred, R_gt, y):
            e = errors(R_pred, R_gt, y)
            if k is not None:
                e = e[y.cpu() == k]
            if not len(e):
                return float("nan")
            return float(e.median()) if stat == "median" else float((e <= stat).double().mean())

        return fn

    for k, c in [*enumerate(categories), (None, "all")]:
        out[f"median_{c}"] = make(k, "median")
        for t in THRESHOLDS:
            out[f"acc{t:g}_{c}"] = make(k, t)
    return out


def _dataset(ds):
    from torch.utils.data import TensorDataset

    tensors = [ds.pos, ds.rotation, ds.y] + ([ds.color] if ds.color is not None else [])
    return TensorDataset(*tensors)


def _plot(summary: list[dict], categories, path):
    """Grouped bars: median error per category (groups) and model (bars)."""
    from geodl.bench._plots import _pyplot, grouped_bars, save_figure

    plt = _pyplot()
    groups = [*categories, "all"]
    fig, ax = plt.subplots(figsize=(1.0 * len(groups) + 3.5, 4.0))
    grouped_bars(ax, {e["model"]: [e[f"median_{c}"] for c in groups] for e in summary}, groups)
    ax.set_ylabel("median rotation error (degrees)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save_figure(fig, path)


def _run(args) -> int:
    from geodl.bench._loop import evaluate, train
    from geodl.bench._plots import try_plot
    from geodl.bench._results import print_table, write_results
    from geodl.data import CategoryPoses

    tag = "quick" if args.quick else "full"
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SETTINGS[tag].items()}
    for key in ("epochs", "num_points", "batch_size", "resolution"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.per_category is not None:
        cfg["per_category"] = tuple(args.per_category)
    models, colored = list(args.models), bool(args.colored)
    name = args.results_name or ("vinet_quick" if args.quick else "vinet")
    rank = int(os.environ.get("RANK", "0"))
    say = print if (rank == 0 and args.progress) else (lambda *a, **k: None)

    t_all = time.perf_counter()
    sets = [CategoryPoses(split, num_points=cfg["num_points"], per_category=k, colored=colored, seed=args.seed)
            for split, k in zip(("train", "val", "test"), cfg["per_category"])]
    categories, symmetries = sets[0].categories, sets[0].symmetries
    data_s = time.perf_counter() - t_all
    say(f"vinet: {' / '.join(str(len(s)) for s in sets)} clouds (train / val / test), {len(categories)} categories "
        f"{dict(zip(categories, symmetries))}, {cfg['num_points']} points, ready in {data_s:.1f} s")
    train_set, val_set, test_set = (_dataset(s) for s in sets)
    z_sym = torch.tensor([s == "z" for s in symmetries])
    step = _make_step(z_sym, colored)
    metrics = _metrics(categories, symmetries)

    rows, summary = [], []
    key = (f"r{cfg['resolution']}-n{cfg['num_points']}-pc{'-'.join(map(str, cfg['per_category']))}"
           f"-b{cfg['batch_size']}-c{int(colored)}-seed{args.seed}-e{cfg['epochs']}")
    for model_name in models:
        torch.manual_seed(args.seed)
        model = build_model(model_name, cfg, colored)
        params = sum(p.numel() for p in model.parameters())
        run_dir = args.run_dir / tag / f"vinet-{model_name.lower()}-{key}"
        t0 = time.perf_counter()
        res = train(model, step, train_set, val_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                    lr=cfg["lr"], lr_schedule="cosine", run_dir=run_dir, seed=args.seed, progress=args.progress,
                    resume=args.resume, device=args.device)
        train_s = time.perf_counter() - t0
        times = [h["time"] for h in res.history]
        ev = evaluate(res.model, step, test_set, cfg["batch_size"], device=args.device, metrics=metrics)
        res.model.cpu()
        common = {"params": params, "epochs": cfg["epochs"], "best_epoch": res.best.get("epoch"),
                  "s_per_epoch": sum(times) / max(1, len(times)), "train_s": round(train_s, 2),
                  "resumed_from": res.resumed_from, "run_dir": str(run_dir)}
        for k, c in [*enumerate(categories), (None, "all")]:
            rows.append({"model": model_name, "category": c,
                         "symmetry": symmetries[k] if k is not None else "",
                         "n_test": len(test_set) if k is None else int((sets[2].y == k).sum()),
                         "median_deg": ev[f"median_{c}"],
                         **{f"acc{t:g}": ev[f"acc{t:g}_{c}"] for t in THRESHOLDS}, "test_loss": ev["loss"], **common})
        entry = {"model": model_name, **{f"median_{c}": ev[f"median_{c}"] for c in [*categories, "all"]},
                 **{f"acc{t:g}": ev[f"acc{t:g}_all"] for t in THRESHOLDS}, "params": params,
                 "train_s": round(train_s, 1)}
        summary.append(entry)
        say(f"{model_name}: median {ev['median_all']:.1f} deg, acc5 {ev['acc5_all']:.3f}, "
            f"acc10 {ev['acc10_all']:.3f} ({train_s:.0f} s)")
    if rank != 0:
        return 0

    print()
    print_table(summary, ["model", *[(f"median_{c}", c) for c in categories], ("median_all", "median"),
                          ("acc5", "acc 5°"), ("acc10", "acc 10°"), "params", ("train_s", "train s")])
    print(f"rotation error (degrees, modulo each category's symmetry) of {len(test_set)} test clouds: median per "
          "category and overall, and the fraction within 5° / 10°")
    goals = {}
    med = {e["model"]: e["median_all"] for e in summary}
    if "VINet" in med and len(med) > 1:
        others = {m: v for m, v in med.items() if m != "VINet"}
        met = all(med["VINet"] < v for v in others.values())
        goals["VINet median below both baselines"] = {"vinet": med["VINet"], "baselines": others, "met": met}
        print(f"goal (VINet median below the baselines'): {'met' if met else 'NOT met'} "
              f"({med['VINet']:.1f} vs " + ", ".join(f"{m} {v:.1f}" for m, v in others.items()) + ")")
    payload = {"task": "vinet", "quick": args.quick, "seed": args.seed, "settings": cfg, "models": models,
               "colored": colored, "thresholds_deg": list(THRESHOLDS),
               "training": "Adam, cosine decay, epoch with the lowest validation loss kept; each training batch "
                           "rotated by a fresh random rotation about the camera axis z",
               "symmetric_targets": "z-symmetric categories are trained on Rz(alpha) Ry(beta) of R e_z (the "
                                    "representative modulo the symmetry without in-plane part); errors modulo "
                                    "each category's symmetry (symmetric_rotation_error)",
               "data": {"dataset": "CategoryPoses", "per_category": list(cfg["per_category"]),
                        "num_points": cfg["num_points"], "categories": list(categories),
                        "symmetries": list(symmetries), "data_s": round(data_s, 1)},
               "summary": summary, "goals": goals, "total_s": round(time.perf_counter() - t_all, 1)}
    out = args.out / f"{name}.json"
    json_path, csv_path = write_results(out, payload, rows)  # results first, the figure after
    png = try_plot(_plot, summary, categories, out.with_suffix(".png"))
    print(f"wrote {json_path}, {csv_path}" + (f", {png}" if png is not None else ""))
    return 0


def _resolution(text: str) -> int:
    v = positive_int(text)
    if v % 8:
        raise argparse.ArgumentTypeError(f"expected a positive multiple of 8 (the FPN halves the map twice and the "
                                          f"1/4 map needs an even width), got {text!r}")
    return v


def _add_arguments(p) -> None:
    from geodl.bench.tasks.modelnet import _triple
    from geodl.bench.tasks.nbody import _stem

    p.add_argument("--models", type=name_list(list(MODELS), "model"), default=",".join(MODELS),
                   help=f"comma-separated subset of {list(MODELS)}")
    p.add_argument("--per-category", type=_triple, default=None, metavar="TRAIN,VAL,TEST",
                   help="clouds per category in each split")
    p.add_argument("--num-points", type=positive_int, default=None, metavar="N", help="points per cloud")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N")
    p.add_argument("--resolution", type=_resolution, default=None, metavar="N",
                   help="N x N spherical maps of VI-Net (a multiple of 8)")
    p.add_argument("--colored", action="store_true",
                   help="coloured clouds: VI-Net's colour stream and PointNet's per-point input")
    p.add_argument("--results-name", type=_stem, default=None, metavar="STEM",
                   help="results file name without suffix (default vinet or vinet_quick)")


TASK = Task("vinet", "VI-Net, its zero-padded ablation and a 6D PointNet: category-level rotations (CategoryPoses)",
            run=_run, add_arguments=_add_arguments, description=__doc__)
main = TASK.main
