"""``geodl bench symsol`` and ``geodl bench pascal3d``: SO(3) pose distributions from single images.

Three models in one run (``--models`` picks a subset), the two lifts on the same plain CNN backbone
(:class:`Backbone`: three 3x3 convolutions of stride 2 with ReLU, 64x64 -> 8x8, seeded alike):

- ``uniform``: the uniform distribution on SO(3) (zero Fourier coefficients; nothing is trained): its
  log-likelihood is ``-log π² = -2.2895`` everywhere;
- ``orthographic``: Image2Sphere's head (Klee et al., ICLR'23):
  :class:`~geodl.nn.pose.OrthographicLift` (the hemisphere facing the camera) ->
  :class:`~geodl.nn.pose.S2Conv` -> :class:`~geodl.nn.pose.SO3Activation` ->
  :class:`~geodl.nn.pose.SO3Conv` to one channel -> SO(3) coefficients ->
  :class:`~geodl.nn.pose.SO3Distribution`;
- ``induced``: the induced lift (Howell et al., NeurIPS'23): :class:`~geodl.nn.pose.InducedLift`
  (``output="so3"``, the direct image -> SO(3) lift) -> ``SO3Activation`` -> ``SO3Conv`` -> coefficients.

**Training**: the negative log-likelihood ``-log p(R)`` of the training rotation
(:meth:`~geodl.nn.pose.SO3Distribution.log_prob`, normalised on the HEALPix SO(3) grid of level
``train_rec``), Adam with a cosine decay, the epoch with the lowest validation loss kept. The image of a
symmetric shape is the same for every rotation of its set, so the likelihood of the one drawn rotation
spreads the mass over the whole set by itself.

**Metrics** (``geodl bench symsol``, test split, the grid of level ``eval_rec``): the average
log-likelihood **averaged over every ground-truth rotation of the symmetry set**
(:func:`~geodl.nn.pose.average_log_likelihood` with the sets of :meth:`geodl.data.SymsolLike.symmetries`:
12, 24, 60 rotations for tet, cube, icosa, 360 and 720 for cone and cyl), per shape and overall, its
spread over the test images (std), and the median geodesic error of :meth:`~geodl.nn.pose.SO3Distribution.mode`
to the nearest member of the set (:func:`~geodl.nn.pose.rotation_errors`). Data: the embedded
:class:`geodl.data.SymsolLike` renders (SYMSOL I shapes by default; ``--shapes``).

``geodl bench pascal3d --data PATH`` runs the same three models on :class:`geodl.data.Pascal3D` from a
local ``PASCAL3D+_release1.1`` folder (never downloaded; crops of ``size`` pixels; the last ``--val``
training objects held out for the model selection; metrics: log-likelihood, median error, Acc@15 and Acc@30).

Outputs: a table, ``<out>/<name>.json`` + ``.csv`` (written first; one row per model and shape, plus
``all``) and ``<out>/<name>.png`` (the usual Mollweide scatter of the predicted distributions for a few
test images: every grid rotation with probability above a threshold as a dot at the longitude/latitude
of its z-axis ``R e_z``, coloured by the in-plane angle, sized by the probability; the ground-truth set as
open circles), with ``<name>`` ``symsol`` / ``symsol_quick`` (``pascal3d`` / ``pascal3d_quick``). Goal:
the induced lift ahead of the orthographic lift in average log-likelihood (reported under ``goals``).
"""

from __future__ import annotations

import math
import os
import time

import torch

from geodl.bench._task import Task, name_list, positive_int

__all__ = ["SYMSOL", "PASCAL3D", "main_symsol", "main_pascal3d", "MODELS", "SETTINGS", "Backbone", "build_model",
           "inplane_angle"]

MODELS = ("uniform", "orthographic", "induced")
SYMSOL_I = ("tet", "cube", "icosa", "cone", "cyl")
LOG_PI2 = math.log(math.pi**2)

SETTINGS = {
    "full": {"per_shape": (600, 20, 32), "size": 64, "lmax": 4, "channels": (16, 32, 32), "lift_channels": 8,
             "hidden": 8, "train_rec": 2, "eval_rec": 3, "epochs": 30, "batch_size": 32, "lr": 2e-3,
             "plot_images": 4},
    "quick": {"per_shape": (100, 8, 8), "size": 64, "lmax": 3, "channels": (8, 16, 16), "lift_channels": 4,
              "hidden": 4, "train_rec": 1, "eval_rec": 2, "epochs": 8, "batch_size": 16, "lr": 3e-3,
              "plot_images": 3},
}


class Backbone(torch.nn.Module):
    """Plain CNN: ``len(channels)`` 3x3 convolutions of stride 2 (padding 1) with ReLU, ``(B, 3, S, S)`` ->
    ``(B, channels[-1], S / 2^k, S / 2^k)`` (64 -> 8 with three layers).

    Examples
    --------
    >>> Backbone((8, 16, 16))(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 16, 8, 8])
    """

    def __init__(self, channels=(16, 32, 32), in_channels: int = 3):
        super().__init__()
        layers, c = [], in_channels
        for o in channels:
            layers += [torch.nn.Conv2d(c, o, 3, stride=2, padding=1), torch.nn.ReLU()]
            c = o
        self.net = torch.nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x):
        return self.net(x)


class _PoseModel(torch.nn.Module):
    """Image ``(B, 3, S, S)`` -> SO(3) Fourier coefficients ``(B, Σ(2l+1)²)`` (zeros for ``uniform``)."""

    def __init__(self, kind: str, cfg: dict):
        super().__init__()
        from geodl.groups import so3_fourier_width
        from geodl.nn.pose import InducedLift, OrthographicLift, S2Conv, SO3Activation, SO3Conv

        self.kind, self.lmax = kind, cfg["lmax"]
        self.width = so3_fourier_width(self.lmax)
        if kind == "uniform":
            self.register_buffer("zero", torch.zeros(1, self.width))
            return
        L, c, h = self.lmax, cfg["lift_channels"], cfg["hidden"]
        self.backbone = Backbone(cfg["channels"])
        feat = self.backbone.out_channels
        side = cfg["size"] // 2 ** len(cfg["channels"])
        if kind == "orthographic":
            self.head = torch.nn.Sequential(OrthographicLift(feat, c, L, rec=2), S2Conv(c, h, L))
        else:
            self.head = torch.nn.Sequential(InducedLift(feat, h, L, side, output="so3"))
        self.act = SO3Activation(L, L)
        self.out = SO3Conv(h, 1, L)

    def forward(self, x):
        if self.kind == "uniform":
            return self.zero.expand(x.shape[0], -1).to(x.dtype)
        return self.out(self.act(self.head(self.backbone(x))))[:, 0]


def build_model(name: str, cfg: dict) -> torch.nn.Module:
    """The model ``name`` (one of :data:`MODELS`) with ``cfg``'s sizes (:data:`SETTINGS`).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> m = build_model("induced", SETTINGS["quick"]).eval()
    >>> m(torch.rand(2, 3, 64, 64)).shape       # lmax 3: Σ(2l+1)² = 84 coefficients
    torch.Size([2, 84])
    >>> float(build_model("uniform", SETTINGS["quick"])(torch.rand(1, 3, 64, 64)).abs().sum())
    0.0
    """
    if name not in MODELS:
        raise ValueError(f"name: expected one of {list(MODELS)}, got {name!r}")
    return _PoseModel(name, cfg)


def inplane_angle(R: torch.Tensor) -> torch.Tensor:
    """The in-plane angle ``γ`` of ``R = Rz(α) Ry(β) Rz(γ)`` (ZYZ Euler angles), in ``(-π, π]``: ``(..., 3, 3) -> (...)``.

    Examples
    --------
    >>> from geodl.groups import axis_angle_to_matrix
    >>> R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64))
    >>> round(float(inplane_angle(R @ axis_angle_to_matrix(torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)))), 6)
    0.0
    """
    return torch.atan2(R[..., 2, 1], -R[..., 2, 0])


def _make_step(cfg):
    from geodl.nn.pose import SO3Distribution

    def step(model, batch):
        image, R = batch[0], batch[1]
        coeffs = model(image)
        dist = SO3Distribution(coeffs, cfg["lmax"], rec=cfg["train_rec"])
        loss = -dist.log_prob(R.to(coeffs.dtype)).mean()
        return loss, {"nll": float(loss.detach())}

    return step


@torch.no_grad()
def _coefficients(model, images, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[s:s + batch_size]) for s in range(0, len(images), batch_size)]).double()


def _train_models(models, cfg, args, train_set, val_set, key: str, task: str, say):
    """``{name: (trained model or None, stats)}`` (uniform is not trained)."""
    from geodl.bench._loop import train

    out = {}
    tag = "quick" if args.quick else "full"
    for name in models:
        torch.manual_seed(args.seed)  # the same backbone initialisation for both lifts
        model = build_model(name, cfg)
        params = sum(p.numel() for p in model.parameters())
        if name == "uniform":
            out[name] = (model, {"params": 0, "epochs": 0, "train_s": 0.0, "resumed_from": None, "run_dir": None,
                                 "best_epoch": None, "s_per_epoch": None})
            continue
        run_dir = args.run_dir / tag / f"{task}-{name}-{key}"
        t0 = time.perf_counter()
        res = train(model, _make_step(cfg), train_set, val_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                    lr=cfg["lr"], lr_schedule="cosine", run_dir=run_dir, seed=args.seed, progress=args.progress,
                    resume=args.resume, device=args.device)
        train_s = time.perf_counter() - t0
        res.model.cpu()
        times = [h["time"] for h in res.history]
        out[name] = (res.model, {"params": params, "epochs": cfg["epochs"], "best_epoch": res.best.get("epoch"),
                                 "s_per_epoch": round(sum(times) / max(1, len(times)), 2),
                                 "train_s": round(train_s, 1), "resumed_from": res.resumed_from,
                                 "run_dir": str(run_dir)})
        say(f"{name}: trained in {train_s:.0f} s ({params} parameters)")
    return out


def _mollweide_panel(ax, dist, b: int, truth, threshold: float, title: str):
    from geodl.bench._plots import _pyplot

    plt = _pyplot()
    p = dist.probs()[b].detach()
    grid = dist.grid
    keep = p > threshold
    if not bool(keep.any()):
        keep = p >= p.max()
    R, pk = grid[keep], p[keep]
    z = R[:, :, 2]
    lon = torch.atan2(z[:, 1], z[:, 0])
    lat = torch.asin(z[:, 2].clamp(-1, 1))
    norm = plt.Normalize(-math.pi, math.pi)
    ax.scatter(lon.numpy(), lat.numpy(), s=(2000 * pk / pk.sum()).clamp(0.5, 200).numpy(),
               c=inplane_angle(R).numpy(), cmap="hsv", norm=norm, linewidths=0)
    zt = truth[:, :, 2]
    ax.scatter(torch.atan2(zt[:, 1], zt[:, 0]).numpy(), torch.asin(zt[:, 2].clamp(-1, 1)).numpy(), s=60,
               facecolors="none", edgecolors=plt.get_cmap("hsv")(norm(inplane_angle(truth).numpy())), linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.grid(True, alpha=0.3)


def _plot(panels: list, path):
    """``panels``: rows of ``(title, dist, index, truth set (K, 3, 3))`` -> a grid of Mollweide scatters."""
    from geodl.bench._plots import _pyplot, save_figure

    plt = _pyplot()
    rows, cols = len(panels), max(len(r) for r in panels)
    fig = plt.figure(figsize=(3.2 * cols, 1.9 * rows + 0.4))
    for i, row in enumerate(panels):
        for j, (title, dist, b, truth) in enumerate(row):
            ax = fig.add_subplot(rows, cols, i * cols + j + 1, projection="mollweide")
            _mollweide_panel(ax, dist, b, truth.double(), 1.0 / dist.num_grid, title)
    fig.suptitle("predicted distributions: z-axis R e_z (Mollweide), colour = in-plane angle, size ∝ probability; "
                 "open circles: ground-truth set", fontsize=8)
    return save_figure(fig, path)


def _stats(values: torch.Tensor) -> tuple[float, float]:
    v = values.double()
    return float(v.mean()), float(v.std(unbiased=False)) if v.numel() > 1 else 0.0


def _goal(summary_ll: dict) -> dict:
    goals = {}
    if "induced" in summary_ll and "orthographic" in summary_ll:
        margin = summary_ll["induced"] - summary_ll["orthographic"]
        goals["induced lift ahead of the orthographic lift in average log-likelihood"] = {
            "induced": summary_ll["induced"], "orthographic": summary_ll["orthographic"], "margin": margin,
            "met": bool(margin > 0)}
        print(f"goal (induced ahead of orthographic in average log-likelihood): {'met' if margin > 0 else 'NOT met'} "
              f"(induced {summary_ll['induced']:.3f}, orthographic {summary_ll['orthographic']:.3f}, margin "
              f"{margin:+.3f})")
    return goals


def _config(args):
    tag = "quick" if args.quick else "full"
    cfg = dict(SETTINGS[tag])
    for key in ("epochs", "batch_size", "lmax"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    if getattr(args, "per_shape", None) is not None:
        cfg["per_shape"] = tuple(args.per_shape)
    return tag, cfg


def _run_symsol(args) -> int:
    from torch.utils.data import TensorDataset

    from geodl.bench._plots import try_plot
    from geodl.bench._results import print_table, write_results
    from geodl.data import SymsolLike
    from geodl.data._symsol_like import symmetry_set
    from geodl.nn.pose import SO3Distribution, average_log_likelihood, median_error, rotation_errors, spread

    tag, cfg = _config(args)
    shapes, models = list(args.shapes), list(args.models)
    name = args.results_name or ("symsol_quick" if args.quick else "symsol")
    rank = int(os.environ.get("RANK", "0"))
    say = print if (rank == 0 and args.progress) else (lambda *a, **k: None)

    t_all = time.perf_counter()
    sets = [SymsolLike(split, shapes=shapes, per_shape=k, size=cfg["size"], seed=args.seed)
            for split, k in zip(("train", "val", "test"), cfg["per_shape"])]
    data_s = time.perf_counter() - t_all
    say(f"symsol: {' / '.join(str(len(s)) for s in sets)} images (train / val / test) of {shapes}, "
        f"{cfg['size']}x{cfg['size']}; rendered in {data_s:.1f} s")
    tensors = [TensorDataset(s.images, s.rotation, s.y) for s in sets]
    key = (f"s{'-'.join(shapes)}-ps{'-'.join(map(str, cfg['per_shape']))}-L{cfg['lmax']}-r{cfg['train_rec']}"
           f"-b{cfg['batch_size']}-seed{args.seed}-e{cfg['epochs']}")
    trained = _train_models(models, cfg, args, tensors[0], tensors[1], key, "symsol", say)

    test = sets[2]
    G = {s: symmetry_set(s, dtype=torch.float64) for s in shapes}
    rows, summary, dists = [], [], {}
    for model_name in models:
        model, common = trained[model_name]
        t0 = time.perf_counter()
        coeffs = _coefficients(model, test.images, cfg["batch_size"])
        dist_all = SO3Distribution(coeffs, cfg["lmax"], rec=cfg["eval_rec"])
        dists[model_name] = dist_all
        per_ll, per_err, per_sp = [], [], []
        for k, s in enumerate(shapes):
            idx = (test.y == k).nonzero()[:, 0]
            dist = SO3Distribution(coeffs[idx], cfg["lmax"], rec=cfg["eval_rec"])
            R_sets = torch.stack([test.symmetries(int(i)) for i in idx]).double()
            with torch.no_grad():
                ll = average_log_likelihood(dist, R_sets, reduction="none")
                sp = spread(dist, R_sets, reduction="none")
                mode = dist.mode()
            err = rotation_errors(mode, test._rotation64[idx], symmetries=G[s])
            per_ll.append(ll)
            per_err.append(err)
            per_sp.append(sp)
            mean, std = _stats(ll)
            rows.append({"model": model_name, "shape": s, "log_likelihood": mean, "ll_std": std,
                         "spread_deg": float(sp.mean()), "median_error_deg": float(median_error(err)), "n_test": len(idx),
                         "set_size": G[s].shape[0], **common})
        ll_all, err_all, sp_all = torch.cat(per_ll), torch.cat(per_err), torch.cat(per_sp)
        mean, std = _stats(ll_all)
        eval_s = time.perf_counter() - t0
        rows.append({"model": model_name, "shape": "all", "log_likelihood": mean, "ll_std": std,
                     "spread_deg": float(sp_all.mean()), "median_error_deg": float(median_error(err_all)), "n_test": len(test), "set_size": "", **common})
        entry = {"model": model_name, "log_likelihood": mean, "ll_std": std, "spread_deg": float(sp_all.mean()),
                 "median_error_deg": float(median_error(err_all)),
                 **{f"spread_{s}": r["spread_deg"] for s, r in zip(shapes, rows[-len(shapes) - 1:-1])},
                 **{f"ll_{s}": r["log_likelihood"] for s, r in zip(shapes, rows[-len(shapes) - 1:-1])},
                 **{f"ll_std_{s}": r["ll_std"] for s, r in zip(shapes, rows[-len(shapes) - 1:-1])},
                 **{f"median_error_{s}": r["median_error_deg"] for s, r in zip(shapes, rows[-len(shapes) - 1:-1])},
                 "params": common["params"], "train_s": common["train_s"], "eval_s": round(eval_s, 1)}
        summary.append(entry)
        say(f"{model_name}: average log-likelihood {mean:.3f} (std {std:.3f}), median error "
            f"{entry['median_error_deg']:.1f}° ({eval_s:.0f} s to evaluate)")
    if rank != 0:
        return 0

    print()
    print_table(summary, ["model", *[(f"ll_{s}", s) for s in shapes], ("log_likelihood", "LL all"),
                          ("ll_std", "LL std"), ("spread_deg", "spread °"), ("median_error_deg", "median err °"),
                          "params",
                          ("train_s", "train s")])
    print(f"average log-likelihood over every rotation of each symmetry set ({len(test)} test images, grid level "
          f"{cfg['eval_rec']}: {72 * 8 ** cfg['eval_rec']} rotations); uniform = -log π² = {-LOG_PI2:.4f}; "
          "median error of the mode to the nearest equivalent rotation")
    goals = _goal({e["model"]: e["log_likelihood"] for e in summary})
    payload = {"task": "symsol", "quick": args.quick, "seed": args.seed, "settings": cfg, "models": models,
               "shapes": shapes,
               "architecture": {"backbone": f"{len(cfg['channels'])} x (3x3 conv stride 2 + ReLU), channels "
                                            f"{list(cfg['channels'])}: {cfg['size']}^2 -> "
                                            f"{cfg['size'] // 2 ** len(cfg['channels'])}^2",
                                "orthographic": "OrthographicLift(rec 2) -> S2Conv -> SO3Activation(relu) -> SO3Conv(1)",
                                "induced": "InducedLift(output='so3') -> SO3Activation(relu) -> SO3Conv(1)",
                                "uniform": "zero coefficients, not trained"},
               "training": "negative log-likelihood -log p(R) of the training rotation (SO3Distribution.log_prob, "
                           f"grid level {cfg['train_rec']}); Adam, cosine decay, the epoch with the lowest "
                           "validation loss kept",
               "metrics": "average log-likelihood over every rotation of the symmetry set (IPDF), mean and std "
                          f"over the test images (grid level {cfg['eval_rec']}); spread (IPDF): the expected angle "
                          "from the distribution's grid mass to the nearest member of the set (degrees); median geodesic error of mode() "
                          "to the nearest member of the set (degrees)",
               "data": {"dataset": "SymsolLike", "per_shape": list(cfg["per_shape"]), "size": cfg["size"],
                        "data_s": round(data_s, 1)},
               "summary": summary, "goals": goals, "total_s": round(time.perf_counter() - t_all, 1)}
    out = args.out / f"{name}.json"
    json_path, csv_path = write_results(out, payload, rows)
    picks = _plot_picks(test, shapes, cfg["plot_images"])
    panels = [[(f"{m} · {shapes[int(test.y[i])]}", _plot_dist(dists[m], i, cfg), 0, test.symmetries(i))
               for i in picks] for m in models if m != "uniform"]
    png = try_plot(_plot, panels, out.with_suffix(".png")) if panels else None
    print(f"wrote {json_path}, {csv_path}" + (f", {png}" if png is not None else ""))
    return 0


def _plot_picks(test, shapes, n: int) -> list[int]:
    """The first test image of ``n`` shapes spread over the list."""
    ks = torch.linspace(0, len(shapes) - 1, min(n, len(shapes))).round().long().unique()
    return [int((test.y == k).nonzero()[0, 0]) for k in ks]


def _plot_dist(dist, i: int, cfg):
    from geodl.nn.pose import SO3Distribution

    return SO3Distribution(dist.coeffs[i:i + 1], cfg["lmax"], rec=min(cfg["eval_rec"], 2))


def _run_pascal3d(args) -> int:
    from torch.utils.data import Subset

    from geodl.bench._plots import try_plot
    from geodl.bench._results import print_table, write_results
    from geodl.data import Pascal3D
    from geodl.nn.pose import SO3Distribution, accuracy_at, average_log_likelihood, median_error, rotation_errors

    tag, cfg = _config(args)
    models = list(args.models)
    name = args.results_name or ("pascal3d_quick" if args.quick else "pascal3d")
    rank = int(os.environ.get("RANK", "0"))
    say = print if (rank == 0 and args.progress) else (lambda *a, **k: None)
    t_all = time.perf_counter()
    cats = list(args.categories) if args.categories is not None else None
    try:
        train_all = Pascal3D(args.data, "train", categories=cats, image_size=cfg["size"])
        test = Pascal3D(args.data, "test", categories=cats, image_size=cfg["size"])
    except ValueError as exc:
        raise SystemExit(f"geodl bench pascal3d: --data {args.data}: {exc}") from None
    n_val = min(args.val, len(train_all) - 1)
    if len(train_all) < 2 or len(test) < 1:
        raise SystemExit(f"geodl bench pascal3d: --data {args.data}: {len(train_all)} training and {len(test)} "
                         "test objects after the filters; expected at least 2 and 1")
    limit = len(train_all) - n_val if args.max_train is None else min(args.max_train, len(train_all) - n_val)
    train_set = Subset(train_all, range(limit))
    val_set = Subset(train_all, range(len(train_all) - n_val, len(train_all)))
    if args.max_test is not None and args.max_test < len(test):
        test_set = Subset(test, range(args.max_test))
    else:
        test_set = test
    data_s = time.perf_counter() - t_all
    say(f"pascal3d: {len(train_set)} / {len(val_set)} / {len(test_set)} objects (train / val / test) of "
        f"{train_all.categories}, crops {cfg['size']}x{cfg['size']}")
    key = (f"c{len(train_all.categories)}-n{len(train_set)}-{n_val}-L{cfg['lmax']}-r{cfg['train_rec']}"
           f"-b{cfg['batch_size']}-seed{args.seed}-e{cfg['epochs']}")
    trained = _train_models(models, cfg, args, train_set, val_set, key, "pascal3d", say)
    items = [test_set[i] for i in range(len(test_set))]
    images = torch.stack([it[0] for it in items])
    R_true = torch.stack([it[1] for it in items]).double()
    labels = torch.stack([it[2] for it in items])
    from geodl.data import PASCAL3D_CATEGORIES

    rows, summary, dists = [], [], {}
    for model_name in models:
        model, common = trained[model_name]
        coeffs = _coefficients(model, images, cfg["batch_size"])
        dist = SO3Distribution(coeffs, cfg["lmax"], rec=cfg["eval_rec"])
        dists[model_name] = dist
        with torch.no_grad():
            ll = average_log_likelihood(dist, R_true, reduction="none")
            mode = dist.mode()
        err = rotation_errors(mode, R_true)
        groups = [(c, labels == PASCAL3D_CATEGORIES.index(c)) for c in train_all.categories]
        for c, m in [*groups, ("all", torch.ones_like(labels, dtype=torch.bool))]:
            if not bool(m.any()):
                continue
            mean, std = _stats(ll[m])
            acc15, acc30 = accuracy_at(err[m], (15.0, 30.0)).tolist()
            rows.append({"model": model_name, "category": c, "log_likelihood": mean, "ll_std": std,
                         "median_error_deg": float(median_error(err[m])), "acc15": acc15, "acc30": acc30,
                         "n_test": int(m.sum()), **common})
        last = rows[-1]
        summary.append({"model": model_name, "log_likelihood": last["log_likelihood"], "ll_std": last["ll_std"],
                        "median_error_deg": last["median_error_deg"], "acc15": last["acc15"], "acc30": last["acc30"],
                        "params": common["params"], "train_s": common["train_s"]})
    if rank != 0:
        return 0
    print()
    print_table(summary, ["model", ("log_likelihood", "LL"), ("median_error_deg", "median err °"),
                          ("acc15", "Acc@15"), ("acc30", "Acc@30"), "params", ("train_s", "train s")])
    goals = _goal({e["model"]: e["log_likelihood"] for e in summary})
    payload = {"task": "pascal3d", "quick": args.quick, "seed": args.seed, "settings": cfg, "models": models,
               "data": {"dataset": "Pascal3D", "root": str(train_all.root), "categories": train_all.categories,
                        "train": len(train_set), "val": len(val_set), "test": len(test_set),
                        "data_s": round(data_s, 1)},
               "training": "negative log-likelihood of the training rotation; Adam, cosine decay, the epoch with "
                           "the lowest validation loss kept (validation: the last --val training objects)",
               "summary": summary, "goals": goals, "total_s": round(time.perf_counter() - t_all, 1)}
    out = args.out / f"{name}.json"
    json_path, csv_path = write_results(out, payload, rows)
    picks = list(range(min(cfg["plot_images"], len(images))))
    panels = [[(f"{m} · {PASCAL3D_CATEGORIES[int(labels[i])]}", _plot_dist(dists[m], i, cfg), 0, R_true[i:i + 1])
               for i in picks] for m in models if m != "uniform"]
    png = try_plot(_plot, panels, out.with_suffix(".png")) if panels else None
    print(f"wrote {json_path}, {csv_path}" + (f", {png}" if png is not None else ""))
    return 0


def _lmax(text: str) -> int:
    import argparse

    v = positive_int(text)
    if v > 8:
        raise argparse.ArgumentTypeError(f"expected an lmax from 1 to 8, got {text!r}")
    return v


def _model_arguments(p, default_name: str) -> None:
    from geodl.bench.tasks.nbody import _stem

    p.add_argument("--models", type=name_list(list(MODELS), "model"), default=",".join(MODELS),
                   help=f"comma-separated subset of {list(MODELS)}")
    p.add_argument("--lmax", type=_lmax, default=None, metavar="L", help="largest degree of the SO(3) signals")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N")
    p.add_argument("--results-name", type=_stem, default=None, metavar="STEM",
                   help=f"results file name without suffix (default {default_name} or {default_name}_quick)")


def _symsol_arguments(p) -> None:
    from geodl.bench.tasks.modelnet import _triple
    from geodl.data import SYMSOL_SHAPES

    _model_arguments(p, "symsol")
    p.add_argument("--shapes", type=name_list(list(SYMSOL_SHAPES), "shape"), default=",".join(SYMSOL_I),
                   help=f"comma-separated subset of {list(SYMSOL_SHAPES)} (default SYMSOL I: {','.join(SYMSOL_I)})")
    p.add_argument("--per-shape", type=_triple, default=None, metavar="TRAIN,VAL,TEST",
                   help="images per shape in each split")


def _folder(text: str):
    import argparse
    from pathlib import Path

    p = Path(text).expanduser()
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder (PASCAL3D+ is never downloaded: unpack "
                                          "PASCAL3D+_release1.1.zip and pass its folder)")
    return p


def _pascal3d_arguments(p) -> None:
    from geodl.data import PASCAL3D_CATEGORIES

    _model_arguments(p, "pascal3d")
    p.add_argument("--data", type=_folder, required=True, metavar="PATH",
                   help="the PASCAL3D+_release1.1 folder (or its parent)")
    p.add_argument("--categories", type=name_list(list(PASCAL3D_CATEGORIES), "category"), default=None,
                   help="comma-separated subset of the 12 categories (default all)")
    p.add_argument("--val", type=positive_int, default=200, metavar="N",
                   help="the last N training objects held out for model selection (default 200)")
    p.add_argument("--max-train", type=positive_int, default=None, metavar="N", help="use the first N training objects")
    p.add_argument("--max-test", type=positive_int, default=None, metavar="N", help="use the first N test objects")


SYMSOL = Task("symsol", "uniform, orthographic (Image2Sphere) and induced lifts: SO(3) pose distributions on "
              "SYMSOL-like renders", run=_run_symsol, add_arguments=_symsol_arguments, description=__doc__)
PASCAL3D = Task("pascal3d", "uniform, orthographic and induced lifts: SO(3) pose on PASCAL3D+ (--data PATH)",
                run=_run_pascal3d, add_arguments=_pascal3d_arguments, description=__doc__)
main_symsol = SYMSOL.main
main_pascal3d = PASCAL3D.main
