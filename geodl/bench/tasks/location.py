"""``geodl bench landocean`` and ``geodl bench checkerboard``: every encoder × network, side by side.

Each run trains every combination of the positional encoders of :mod:`geodl.nn.location`
(spherical harmonics and the nine baselines) with every network (linear, FcNet, SIREN) with the
shared loop :func:`geodl.bench.train`, on the same seeded data, with the same hyper-parameters
per network (no per-combination tuning, unlike the paper: compare side by side, not with its
numbers), and selects each run's epoch by validation loss. Outputs: a printed table,
``<out>/<task>.json`` + ``.csv`` (written first), then maps of the predictions (HEALPix Mollweide
views) as ``<out>/<task>_map.png`` and, with ``--img-dir``, there too (without matplotlib the run
warns and keeps its results). ``--out`` defaults to ``./geodl-bench/<task>``; the repository's
results come from ``--out benchmarks/results --img-dir docs/img``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from geodl.bench._task import Task, name_list

__all__ = ["main_landocean", "main_checkerboard", "run", "LANDOCEAN", "CHECKERBOARD"]

ENCODER_ORDER = ["sphericalharmonics", "direct", "cartesian3d", "wrap", "grid", "theory", "spherec", "spherec+",
                 "spherem", "spherem+"]
NETWORK_ORDER = ["linear", "fcnet", "siren"]
LR = {"linear": 1e-2, "fcnet": 1e-3, "siren": 1e-3}

# full / quick settings per task
SETTINGS = {
    "landocean": {
        "full": {"num_train": 5000, "num_val": 1000, "nside": 32, "map_nside": 64, "epochs": 30, "batch_size": 500,
                 "lmax": 10, "freqs": 16, "hidden": 64, "layers": 2},
        "quick": {"num_train": 400, "num_val": 200, "nside": 4, "map_nside": 8, "epochs": 2, "batch_size": 200,
                  "lmax": 4, "freqs": 4, "hidden": 16, "layers": 1},
    },
    "checkerboard": {
        "full": {"num_train": 10000, "num_val": 2000, "num_test": 10000, "map_nside": 64, "epochs": 20,
                 "batch_size": 500, "lmax": 10, "freqs": 16, "hidden": 64, "layers": 2},
        "quick": {"num_train": 400, "num_val": 200, "num_test": 200, "map_nside": 8, "epochs": 2, "batch_size": 200,
                  "lmax": 4, "freqs": 4, "hidden": 16, "layers": 1},
    },
}


def _registry(name: str):
    def names():
        from geodl.nn import location

        return sorted(getattr(location, name))

    return names


def _add_arguments(p) -> None:
    p.add_argument("--encoders", type=name_list(_registry("ENCODERS"), "encoder"), default=",".join(ENCODER_ORDER),
                   help="comma-separated encoder names")
    p.add_argument("--networks", type=name_list(_registry("NETWORKS"), "network"), default=",".join(NETWORK_ORDER),
                   help="comma-separated network names")
    p.add_argument("--img-dir", default=None, metavar="DIR",
                   help="a second folder for the map image (the repository uses docs/img)")


def _datasets(task: str, cfg: dict, seed: int):
    from geodl.data import checkerboard_dataset, landocean_dataset

    if task == "landocean":
        return (landocean_dataset("train", cfg["num_train"], seed=seed),
                landocean_dataset("val", cfg["num_val"], seed=seed),
                landocean_dataset("test", seed=seed, nside=cfg["nside"]))
    return (checkerboard_dataset("train", cfg["num_train"], seed=seed),
            checkerboard_dataset("val", cfg["num_val"], seed=seed),
            checkerboard_dataset("test", cfg["num_test"], seed=seed))


def _step_fn(num_classes: int):
    def step(model, batch):
        x, y = batch
        logits = model(x)
        if num_classes == 1:
            logits = logits[:, 0]
            loss = F.binary_cross_entropy_with_logits(logits, y.float())
            acc = ((logits > 0).long() == y).float().mean()
        else:
            loss = F.cross_entropy(logits, y)
            acc = (logits.argmax(1) == y).float().mean()
        return loss, {"acc": float(acc)}

    return step


def _build(encoder: str, network: str, num_classes: int, cfg: dict):
    from geodl.nn.location import LocationEncoder

    if encoder == "sphericalharmonics":
        ekw = {"lmax": cfg["lmax"]}
    elif encoder in ("direct", "cartesian3d", "wrap"):
        ekw = {}
    else:
        ekw = {"frequency_num": cfg["freqs"], "min_radius": 10.0, "max_radius": 360.0}
    nkw = {"linear": {}, "fcnet": {"dim_hidden": cfg["hidden"]},
           "siren": {"dim_hidden": cfg["hidden"], "num_layers": cfg["layers"]}}[network]
    return LocationEncoder(encoder, network, num_classes, encoder_kwargs=ekw, network_kwargs=nkw)


@torch.no_grad()
def _predict_map(model, nside: int, num_classes: int):
    """Prediction at every HEALPix pixel centre (RING): land probability, or the argmax class."""
    from geodl.data._sphere import healpix_lonlat

    model.eval()
    logits = torch.cat([model(chunk) for chunk in healpix_lonlat(nside).float().split(8192)])
    if num_classes == 1:
        return torch.sigmoid(logits[:, 0]).numpy()
    return logits.argmax(1).float().numpy()


def _save_maps(maps: dict, truth, paths: list[Path], num_classes: int) -> list[Path]:
    """One Mollweide panel per model, plus the ground truth."""
    from geodl.bench._plots import plot_sphere_maps

    return plot_sphere_maps({"ground truth": truth, **maps}, paths,
                            cmap="RdYlBu_r" if num_classes == 1 else "tab20",
                            vmax=1.0 if num_classes == 1 else num_classes - 1,
                            colorbar=num_classes == 1,
                            unit="land probability" if num_classes == 1 else "")


def _truth_map(task: str, nside: int):
    from geodl.data._sphere import healpix_lonlat, land_mask

    lonlat = healpix_lonlat(nside)
    if task == "landocean":
        return land_mask(lonlat).float().numpy()
    from geodl.data._sphere import fibonacci_sphere
    from geodl.groups import lonlat_to_xyz

    support = fibonacci_sphere(200, output="xyz")
    return ((lonlat_to_xyz(lonlat) @ support.T).argmax(1) % 16).float().numpy()


def run(task: str, argv: list[str] | None = None) -> int:
    """Run one task (``"landocean"`` or ``"checkerboard"``) with command-line style ``argv``."""
    return TASKS[task].main(argv)


def _run(args) -> int:
    from geodl.bench._loop import train
    from geodl.bench._plots import try_plot
    from geodl.bench._results import print_table, write_results

    task = args.task
    cfg = dict(SETTINGS[task]["quick" if args.quick else "full"])
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    encoders, networks = list(args.encoders), list(args.networks)  # validated by the parser
    num_classes = 1 if task == "landocean" else 16
    train_set, val_set, test_set = _datasets(task, cfg, args.seed)
    step = _step_fn(num_classes)
    root = args.run_dir / ("quick" if args.quick else "full")
    rows, maps = [], {}
    map_net = "siren" if "siren" in networks else networks[-1]
    t_all = time.perf_counter()
    for enc in encoders:
        for net in networks:
            torch.manual_seed(args.seed)
            model = _build(enc, net, num_classes, cfg)
            t0 = time.perf_counter()
            run_dir = root / f"{enc}-{net}_seed{args.seed}_e{cfg['epochs']}".replace("+", "plus")
            res = train(model, step, train_set, val_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                        lr=LR[net], run_dir=run_dir, seed=args.seed, progress=args.progress,
                        resume=args.resume, device=args.device, test_set=test_set)
            res.model.cpu()
            rows.append({"encoder": enc, "network": net, "embedding_dim": model.encoder.embedding_dim,
                         "params": sum(p.numel() for p in model.parameters()),
                         "test_acc": res.best.get("test_acc"), "test_loss": res.best.get("test_loss"),
                         "val_acc": res.best.get("val_acc"), "best_epoch": res.best.get("epoch"),
                         "train_s": round(time.perf_counter() - t0, 2)})
            if net == map_net:
                maps[f"{enc} + {net}"] = _predict_map(res.model, cfg["map_nside"], num_classes)
    print_table(rows, ["encoder", "network", ("embedding_dim", "dim"), "params", ("test_acc", "test acc"),
                       ("test_loss", "test loss"), ("val_acc", "val acc"), ("best_epoch", "epoch"),
                       ("train_s", "time s")])
    out = args.out
    name = f"{task}_map.png"
    image_paths = [out / name] + ([Path(args.img_dir) / name] if args.img_dir else [])
    best = max(rows, key=lambda r: r["test_acc"] if r["test_acc"] is not None else -1.0)
    payload = {"task": task, "quick": args.quick, "seed": args.seed, "settings": cfg, "lr": LR,
               "selection": "epoch with the lowest validation loss; test = "
                            + ("HEALPix nside %d pixel centres" % cfg["nside"] if task == "landocean"
                               else "%d uniform points" % cfg["num_test"]),
               "data": ("GLOBE 1 km land mask (global-land-mask), points uniform on the sphere"
                        if task == "landocean" else "200 Fibonacci support points, 16 classes, nearest-support labels"),
               "best": {k: best[k] for k in ("encoder", "network", "test_acc")},
               "images": [str(p) for p in image_paths], "total_s": round(time.perf_counter() - t_all, 1)}
    # results first: a missing matplotlib costs the figures, never the numbers
    json_path, csv_path = write_results(out / f"{task}.json", payload, rows)
    images = try_plot(_save_maps, maps, _truth_map(task, cfg["map_nside"]), image_paths, num_classes) or []
    print(f"best: {best['encoder']} + {best['network']} (test acc {best['test_acc']:.4f}); wrote {json_path}, "
          f"{csv_path}" + "".join(f", {p}" for p in images))
    return 0


def _declare(task: str, summary: str) -> Task:
    def run_this(args):
        args.task = task
        return _run(args)

    return Task(task, summary, run=run_this, add_arguments=_add_arguments, description=__doc__)


LANDOCEAN = _declare("landocean", "every location encoder x network on land/ocean classification (accuracy, world map)")
CHECKERBOARD = _declare("checkerboard", "every location encoder x network on the spherical checkerboard (accuracy)")
TASKS = {"landocean": LANDOCEAN, "checkerboard": CHECKERBOARD}
main_landocean = LANDOCEAN.main
main_checkerboard = CHECKERBOARD.main
