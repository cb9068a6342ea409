"""``geodl bench inertia``: soft equivariance under mixed symmetries on the modified-inertia task.

Data: :class:`geodl.data.ModifiedInertia` (5 point masses, ``X ∈ R²⁰``; target the inertia tensor plus
``noise · (I e_z) e_zᵀ``, which breaks O(3) to O(2) about z), 3,000 / 1,000 / 1,000 samples, each split
from its own seed, at noise 0.3 and 0.9. Four models train with the shared loop (Adam, MSE, cosine
learning-rate decay, best epoch on validation MSE, test MSE with those weights):

- ``MLP``: an unconstrained MLP (3 hidden layers of 384, SiLU);
- ``EMLP-O3``: :class:`~geodl.nn.soft_equivariance.RepMLP` with every map expanded from the O(3)
  projector (exactly O(3)-equivariant, so it cannot fit the O(2)-only part);
- ``RPP``: the same network with residual pathways (:class:`~geodl.nn.soft_equivariance.RPPLinear`:
  an O(3) path plus a free path under a Gaussian prior, ``--rpp-prior``);
- ``Soft``: the same residual-pathway network, its maps regularised towards O3, O2x, O2y and O2z by
  projection regularisers (of the whole map ``W_eq + W_free``) instead of the prior, with strengths the
  :class:`~geodl.nn.soft_equivariance.StrengthTuner` adjusts every few epochs (``λ_j = λ₀ (R_min / R_j)^p``,
  only the largest group, O3, on at first). The free paths start at zero, so the model starts exactly
  O(3)-equivariant and ``R_j`` measures how far training moved it from each group.

The free paths of ``RPP`` and ``Soft`` learn at ``--free-lr-scale`` times the learning rate: Adam moves every
weight by about the learning rate per step, and the free paths have ~15× more weights than the equivariant
ones, so at the full rate their noise swamps the equivariant fit (measured: RPP test MSE 9.7 at scale 1,
0.52 at 0.05, 100 epochs). Training runs on one CPU thread by default (``--threads``): these are small
matrices, and two threads were slower.

For each model the :func:`~geodl.nn.soft_equivariance.symmetry_report` on the test inputs gives the relative
equivariance error per candidate group (and, for ``Soft``, the final regulariser and strength). The
soft model is reloaded from its checkpoint and its predictions and strengths compared (``reload``).

``--quick`` uses 300 / 100 / 100 samples and 3 epochs and writes ``<out>/inertia_quick.json``; without it the
full run writes ``<out>/inertia.json`` (+ ``.csv``, ``.png``). Published (RPP README, noise 0.3, test MSE /
O(3) error): MLP 4.78 / 0.17, EMLP 2.39 / 2e-7, RPP 0.15 / 0.08.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from geodl.bench._task import Task, name_list, nonneg_float, positive_float, positive_int

__all__ = ["main", "TASK", "MODELS", "PUBLISHED", "build_model"]

MODELS = ("MLP", "EMLP-O3", "RPP", "Soft")
GROUPS = ("O3", "O2x", "O2y", "O2z")
TRUE_GROUP = "O2z"
REP_IN, REP_OUT = "5xscalars+5xpoints", "tensor2"
HIDDEN = "16xscalars+8xvectors+4xtensor2"
# the residual-pathway-priors README's table on modified inertia (noise 0.3): test MSE, O(3) equivariance error
PUBLISHED = {"MLP": (4.78, 0.17), "EMLP-O3": (2.39, 2e-7), "RPP": (0.15, 0.08)}
GOAL_MSE = 0.15  # the soft model's test MSE at most the RPP reference

FULL = {"sizes": (3000, 1000, 1000), "epochs": 600, "eval_every": 10, "adjust_every": 5}
QUICK = {"sizes": (300, 100, 100), "epochs": 3, "eval_every": 1, "adjust_every": 1}


class PlainMLP(nn.Module):
    """The unconstrained baseline: ``Linear-SiLU`` × 3 (width 384) and a linear head, ``(N, 20) -> (N, 9)``."""

    rep_in, rep_out = REP_IN, REP_OUT

    def __init__(self, width: int = 384, depth: int = 3):
        super().__init__()
        layers, d = [], 20
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.SiLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, 9))

    def forward(self, x):
        return self.net(x)


class SoftModel(nn.Module):
    """A residual-pathway :class:`RepMLP` and its :class:`StrengthTuner` (a submodule: checkpointed together)."""

    def __init__(self, num_layers: int, initial: float, power: float, every: int):
        from geodl.nn.soft_equivariance import RepMLP, StrengthTuner

        super().__init__()
        # residual pathways: O(3) path + free path started at 0, so the model starts O(3)-equivariant
        self.net = RepMLP(REP_IN, REP_OUT, HIDDEN, num_layers, group="O3", path="rpp")
        self.tuner = StrengthTuner(list(GROUPS), initial=initial, power=power, every=every)
        self.rep_in, self.rep_out = self.net.rep_in, self.net.rep_out

    def forward(self, x):
        return self.net(x)


def build_model(name: str, args=None) -> nn.Module:
    """The model called ``name`` in :data:`MODELS` (``args``: the parsed flags, for the soft model's tuner)."""
    from geodl.nn.soft_equivariance import RepMLP

    layers = getattr(args, "layers", 3)
    if name == "MLP":
        return PlainMLP()
    if name == "EMLP-O3":
        return RepMLP(REP_IN, REP_OUT, HIDDEN, layers, group="O3", path="equivariant")
    if name == "RPP":
        return RepMLP(REP_IN, REP_OUT, HIDDEN, layers, group="O3", path="rpp")
    if name == "Soft":
        return SoftModel(layers, getattr(args, "strength", 1.0), getattr(args, "power", 3.0),
                         getattr(args, "adjust_every", 5))
    raise ValueError(f"name: expected one of {list(MODELS)}, got {name!r}")


def _step_for(name: str, args):
    rpp_prior = getattr(args, "rpp_prior", 1e-2)

    def step(model, batch):
        x, y = batch
        pred = model(x)
        mse = nn.functional.mse_loss(pred, y)
        loss = mse
        if model.training and torch.is_grad_enabled():
            if name == "RPP":
                loss = loss + rpp_prior * model.prior_penalty()
            elif name == "Soft":
                loss = loss + model.tuner.penalty(model.net).to(loss.dtype)
        return loss, {"mse": float(mse.detach())}

    return step


def _plot(doc, path):
    from geodl.bench._plots import _pyplot, grouped_bars, save_figure

    plt = _pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4))
    noises = [str(n) for n in doc["noise_levels"]]
    res = doc["results"]
    grouped_bars(ax1, {m: [res[n][m]["test_mse"] for n in noises] for m in doc["models"]},
                 [f"noise {n}" for n in noises], rotation=0)
    ax1.axhline(GOAL_MSE, color="red", ls="--", lw=1, label=f"goal {GOAL_MSE:g}")
    ax1.set_yscale("log")
    ax1.set_ylabel("test MSE")
    ax1.legend(fontsize=7)
    grouped_bars(ax2, {m: [max(res[noises[0]][m]["equivariance_error"][g], 1e-16) for g in GROUPS]
                       for m in doc["models"]}, list(GROUPS), rotation=0)
    ax2.set_yscale("log")
    ax2.set_ylabel(f"relative equivariance error (noise {noises[0]})")
    ax2.legend(fontsize=7)
    if "Soft" in doc["models"]:
        grouped_bars(ax3, {f"noise {n}": [res[n]["Soft"]["strengths"][g] for g in GROUPS] for n in noises},
                     list(GROUPS), rotation=0)
        ax3.set_ylabel("tuned strength λ (Soft)")
        ax3.legend(fontsize=7)
    else:
        ax3.axis("off")
    return save_figure(fig, path)


def _run(args) -> int:
    cfg = QUICK if args.quick else FULL
    if args.adjust_every is None:
        args.adjust_every = cfg["adjust_every"]
    epochs = args.epochs if args.epochs is not None else cfg["epochs"]
    eval_every = args.eval_every if args.eval_every is not None else min(cfg["eval_every"], epochs)
    sizes = cfg["sizes"] if args.n_train is None else (args.n_train, max(1, args.n_train // 3), max(1, args.n_train // 3))
    tag = "quick" if args.quick else "full"
    out = args.out / ("inertia_quick.json" if args.quick else "inertia.json")
    say = print if args.progress else (lambda *a, **k: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run_inner(args, cfg, epochs, eval_every, sizes, tag, out, say)
    finally:
        torch.set_num_threads(threads)


class _Adam:
    """``optimizer(params)`` factory: Adam at ``lr``, the free paths (``free_*`` weights of ``model``) at ``lr · scale``."""

    def __init__(self, lr: float, scale: float, model: nn.Module):
        self.lr, self.scale = lr, scale
        self.free = {id(p) for n, p in model.named_parameters() if n.rpartition(".")[2].startswith("free_")}
        self.__qualname__ = f"Adam(lr={lr:g}, free_lr_scale={scale:g})"  # the checkpoint's resume key

    def __call__(self, params):
        params = list(params)
        free = [p for p in params if id(p) in self.free]
        rest = [p for p in params if id(p) not in self.free]
        groups = [{"params": rest, "lr": self.lr}] + ([{"params": free, "lr": self.lr * self.scale}] if free else [])
        return torch.optim.Adam(groups, lr=self.lr)


def _run_inner(args, cfg, epochs, eval_every, sizes, tag, out, say) -> int:
    from torch.utils.data import TensorDataset

    from geodl.bench._checkpoint import CHECKPOINT_NAME
    from geodl.bench._loop import train
    from geodl.bench._plots import try_plot
    from geodl.bench._results import print_table, write_results
    from geodl.data import ModifiedInertia
    from geodl.nn.soft_equivariance import symmetry_report

    t_all = time.perf_counter()
    noises = list(args.noise)
    names = list(args.models)
    rows, results, histories = [], {}, {}
    for noise in noises:
        splits = {s: ModifiedInertia(n, noise=noise, split=s, seed=args.seed)
                  for s, n in zip(("train", "val", "test"), sizes)}
        ds = {s: TensorDataset(*d.tensors()) for s, d in splits.items()}
        x_test = splits["test"].x
        results[str(noise)] = {}
        for name in names:
            torch.manual_seed(args.seed)
            model = build_model(name, args)
            params = sum(p.numel() for p in model.parameters())
            run_dir = (args.run_dir / tag / f"inertia-{name.lower()}-noise{noise:g}-n{sizes[0]}-l{args.layers}"
                       f"-lr{args.lr:g}-f{args.free_lr_scale:g}-b{args.batch_size}-seed{args.seed}-e{epochs}")
            hooks = []
            if name == "Soft":
                run_dir = run_dir.with_name(run_dir.name + f"-s{args.strength:g}-p{args.power:g}-k{args.adjust_every}")
                hooks = [lambda epoch, m, h, _t=model.tuner, **kw: _t.epoch_hook(epoch)]
            step = _step_for(name, args)
            t0 = time.perf_counter()
            res = train(model, step, ds["train"], ds["val"], epochs=epochs, batch_size=args.batch_size,
                        optimizer=_Adam(args.lr, args.free_lr_scale, model), lr_schedule="cosine", eval_every=eval_every,
                        run_dir=run_dir, seed=args.seed, progress=args.progress, resume=args.resume,
                        device=args.device, test_set=ds["test"], select="val_mse", hooks=hooks)
            train_s = time.perf_counter() - t0
            m = res.model.cpu().eval()
            rep = symmetry_report(m.net if name == "Soft" else m, x_test, list(GROUPS), rep_in=REP_IN,
                                  rep_out=REP_OUT, tuner=getattr(m, "tuner", None), n_samples=8, generator=args.seed)
            entry = {"test_mse": res.best["test_mse"], "val_mse": res.best["val_mse"], "best_epoch": res.best["epoch"],
                     "params": params, "train_s": round(train_s, 2), "resumed_from": res.resumed_from,
                     "equivariance_error": {r["group"]: r["equivariance_error"] for r in rep},
                     "run_dir": str(run_dir)}
            if name == "Soft":
                entry["strengths"] = {r["group"]: r["strength"] for r in rep}
                entry["regulariser"] = {r["group"]: r["regulariser"] for r in rep}
                entry["adjustments"] = int(m.tuner.adjustments)
                entry["reload"] = _reload_check(run_dir / CHECKPOINT_NAME, name, args, m, x_test)
            results[str(noise)][name] = entry
            histories[f"{name} noise {noise:g}"] = res.history
            row = {"noise": noise, "model": name, "test_mse": entry["test_mse"], "val_mse": entry["val_mse"],
                   "best_epoch": entry["best_epoch"], "params": params, "train_s": entry["train_s"]}
            row.update({f"err_{g}": entry["equivariance_error"][g] for g in GROUPS})
            if name == "Soft":
                row.update({f"strength_{g}": entry["strengths"][g] for g in GROUPS})
            rows.append(row)
            say(f"noise {noise:g} {name}: test MSE {entry['test_mse']:.4f} ({train_s:.0f} s)")
    goals = _goals(results, noises, names)
    shown = [dict(r, **{f"err_{g}": f"{r[f'err_{g}']:.2e}" for g in GROUPS}) for r in rows]
    print()
    print_table(shown, ["noise", "model", ("test_mse", "test MSE"), ("val_mse", "val MSE"), ("best_epoch", "best ep."),
                        "params", *[(f"err_{g}", f"err {g}") for g in GROUPS],
                        *[(f"strength_{g}", f"λ {g}") for g in GROUPS]])
    for k, g in goals.items():
        print(f"goal {k}: measured {g['measured']} -> {'met' if g['met'] else 'NOT met'}")
    payload = {"task": "inertia", "quick": args.quick, "seed": args.seed, "epochs": epochs, "eval_every": eval_every,
               "sizes": list(sizes), "noise_levels": noises, "models": names, "groups": list(GROUPS),
               "true_group": TRUE_GROUP,
               "settings": {"lr": args.lr, "free_lr_scale": args.free_lr_scale, "threads": args.threads, "batch_size": args.batch_size, "layers": args.layers, "hidden": HIDDEN,
                            "lr_schedule": "cosine", "rpp_prior": args.rpp_prior, "strength": args.strength,
                            "power": args.power, "adjust_every": args.adjust_every, "tuner_start": "largest",
                            "regulariser": "projection"},
               "results": results, "goals": goals,
               "published": {m: {"test_mse": v[0], "o3_error": v[1], "noise": 0.3} for m, v in PUBLISHED.items()},
               "published_note": "residual-pathway-priors README (modified inertia, noise 0.3)",
               "wall_s": round(time.perf_counter() - t_all, 1), "histories": histories}
    json_path, csv_path = write_results(out, payload, rows)
    png = try_plot(_plot, payload, out.with_suffix(".png"))
    print(f"wrote {json_path}, {csv_path}" + (f", {png}" if png is not None else ""))
    return 0


def _reload_check(ckpt, name, args, model, x) -> dict:
    """Rebuild the model, load its checkpoint's best weights, compare predictions and strengths."""
    fresh = build_model(name, args)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    fresh.load_state_dict(state["best_state"])  # the weights train() returned (the selected epoch)
    fresh.eval()
    with torch.no_grad():
        same_pred = bool(torch.equal(fresh(x), model(x)))
    same_strength = bool(torch.equal(fresh.tuner.strength, model.tuner.strength))
    return {"identical_predictions": same_pred, "identical_strengths": same_strength}


def _goals(results, noises, names) -> dict:
    goals = {}
    if "Soft" not in names:
        return goals
    for n in noises:
        r = results[str(n)]["Soft"]
        goals[f"soft_mse_noise{n:g}"] = {"measured": r["test_mse"], "limit": GOAL_MSE, "met": r["test_mse"] <= GOAL_MSE}
        s = r["strengths"]
        goals[f"strength_{TRUE_GROUP}_above_O3_noise{n:g}"] = {
            "measured": {"O2z": s[TRUE_GROUP], "O3": s["O3"]}, "met": s[TRUE_GROUP] > s["O3"]}
        goals[f"strength_{TRUE_GROUP}_largest_noise{n:g}"] = {
            "measured": max(s, key=s.get), "met": all(s[TRUE_GROUP] > v for g, v in s.items() if g != TRUE_GROUP)}
    return goals


def _noise_list(text: str) -> list[float]:
    import argparse

    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or any(not math.isfinite(v) or v < 0 for v in vals) or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"expected distinct finite non-negative numbers, got {text!r}")
    return vals


def _add_arguments(p) -> None:
    p.add_argument("--models", type=name_list(list(MODELS), "model"), default=",".join(MODELS),
                   help=f"comma-separated subset of {list(MODELS)}")
    p.add_argument("--noise", type=_noise_list, default=[0.3, 0.9], help="noise levels (default 0.3,0.9)")
    p.add_argument("--n-train", type=positive_int, default=None,
                   help="training samples (validation and test: a third each; default 3000, quick 300)")
    p.add_argument("--layers", type=positive_int, default=3, help="gated blocks of the representation models")
    p.add_argument("--lr", type=positive_float, default=1e-2, help="Adam learning rate (default 1e-2)")
    p.add_argument("--free-lr-scale", type=positive_float, default=0.05,
                   help="learning-rate factor of the RPP/Soft free paths (default 0.05)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads while training (default 1)")
    p.add_argument("--batch-size", type=positive_int, default=500)
    p.add_argument("--eval-every", type=positive_int, default=None)
    p.add_argument("--rpp-prior", type=nonneg_float, default=1e-2,
                   help="weight of the RPP free paths' Gaussian prior (default 1e-2)")
    p.add_argument("--strength", type=nonneg_float, default=1.0, help="the tuner's largest strength λ₀")
    p.add_argument("--power", type=nonneg_float, default=3.0, help="the tuner's exponent p (default 3)")
    p.add_argument("--adjust-every", type=positive_int, default=None,
                   help="epochs between strength adjustments (default 5; quick 1)")


TASK = Task("inertia", "soft equivariance (auto-tuned strengths) vs MLP, EMLP and RPP on modified inertia",
            run=_run, add_arguments=_add_arguments, description=__doc__)
main = TASK.main
