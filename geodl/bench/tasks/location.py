"""``geodl bench landocean`` and ``geodl bench checkerboard``: every encoder × network, side by side.

Each run trains every combination of the positional encoders of :mod:`geodl.nn.location`
(spherical harmonics and the nine baselines) with every network (linear, FcNet, SIREN) with the
shared loop :func:`geodl.bench.train`, on the same seeded data, with the same hyper-parameters
per network (no per-combination tuning, unlike the paper: compare side by side, not with its
numbers), and selects each run's epoch by validation loss. Outputs: a printed table,
``<out>/<task>.json`` + ``.csv``, and maps of the predictions (HEALPix Mollweide views) in
``<img-dir>`` and ``<out>``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["main_landocean", "main_checkerboard", "run"]

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


def _parser(task: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"geodl bench {task}", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a seconds-long run on tiny data (for tests)")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoders", default=",".join(ENCODER_ORDER), help="comma-separated encoder names")
    p.add_argument("--networks", default=",".join(NETWORK_ORDER), help="comma-separated network names")
    p.add_argument("--out", default="benchmarks/results", help="results folder")
    p.add_argument("--img-dir", default="docs/img", help="where the map images go")
    p.add_argument("--run-root", default=None,
                   help="checkpoint folder (resumable); default a temporary folder removed at the end")
    p.add_argument("--progress", action="store_true", help="print per-epoch progress")
    return p


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
    import healpy as hp
    import numpy as np

    lon, lat = hp.pix2ang(nside, np.arange(hp.nside2npix(nside)), lonlat=True)
    lonlat = torch.from_numpy(np.stack([((lon + 180.0) % 360.0) - 180.0, lat], 1)).float()
    model.eval()
    logits = torch.cat([model(chunk) for chunk in lonlat.split(8192)])
    if num_classes == 1:
        return torch.sigmoid(logits[:, 0]).numpy()
    return logits.argmax(1).float().numpy()


def _save_maps(task: str, maps: dict, truth, paths: list[Path], num_classes: int) -> list[Path]:
    """One Mollweide panel per model (plus the ground truth), healpy's projection, Agg backend."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import healpy as hp
    import matplotlib.pyplot as plt

    panels = [("ground truth", truth)] + list(maps.items())
    cols = 3 if len(panels) > 4 else len(panels)
    rows = -(-len(panels) // cols)
    fig = plt.figure(figsize=(4.2 * cols, 3.0 * rows))
    cmap = "RdYlBu_r" if num_classes == 1 else "tab20"
    vmax = 1.0 if num_classes == 1 else num_classes - 1
    for i, (name, m) in enumerate(panels):
        with warnings.catch_warnings():  # healpy's colormap handling warns on newer matplotlib
            warnings.simplefilter("ignore")
            hp.mollview(m, fig=fig.number, sub=(rows, cols, i + 1), title=name, cmap=cmap, min=0.0, max=vmax,
                        cbar=num_classes == 1, notext=True, xsize=400,
                        unit="land probability" if num_classes == 1 else "")
    written = []
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=80)
        written.append(p)
    plt.close(fig)
    return written


def _truth_map(task: str, nside: int):
    import healpy as hp
    import numpy as np

    lon, lat = hp.pix2ang(nside, np.arange(hp.nside2npix(nside)), lonlat=True)
    lonlat = torch.from_numpy(np.stack([((lon + 180.0) % 360.0) - 180.0, lat], 1))
    if task == "landocean":
        from geodl.data._sphere import land_mask

        return land_mask(lonlat).float().numpy()
    from geodl.data._sphere import _lonlat_to_xyz, fibonacci_sphere

    support = fibonacci_sphere(200, output="xyz")
    return ((_lonlat_to_xyz(lonlat) @ support.T).argmax(1) % 16).float().numpy()


def run(task: str, argv: list[str] | None = None) -> int:
    """Run one task (``"landocean"`` or ``"checkerboard"``) with command-line style ``argv``."""
    from geodl.bench._runner import print_table, train, write_results
    from geodl.nn.location import ENCODERS, NETWORKS

    args = _parser(task).parse_args(argv)
    cfg = dict(SETTINGS[task]["quick" if args.quick else "full"])
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f"--epochs: expected a positive int, got {args.epochs}")
        cfg["epochs"] = args.epochs
    encoders = [e for e in args.encoders.split(",") if e]
    networks = [n for n in args.networks.split(",") if n]
    for e in encoders:
        if e not in ENCODERS:
            raise ValueError(f"--encoders: unknown encoder {e!r}; expected some of {sorted(ENCODERS)}")
    for n in networks:
        if n not in NETWORKS:
            raise ValueError(f"--networks: unknown network {n!r}; expected some of {sorted(NETWORKS)}")
    num_classes = 1 if task == "landocean" else 16
    train_set, val_set, test_set = _datasets(task, cfg, args.seed)
    step = _step_fn(num_classes)
    tmp_root = None
    if args.run_root is None:
        tmp_root = Path(tempfile.mkdtemp(prefix=f"geodl_{task}_"))
    root = Path(args.run_root) if args.run_root else tmp_root
    rows, maps = [], {}
    map_net = "siren" if "siren" in networks else networks[-1]
    t_all = time.perf_counter()
    try:
        for enc in encoders:
            for net in networks:
                torch.manual_seed(args.seed)
                model = _build(enc, net, num_classes, cfg)
                t0 = time.perf_counter()
                res = train(model, step, train_set, val_set, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                            lr=LR[net], run_dir=root / f"{enc}-{net}".replace("+", "plus"), seed=args.seed,
                            progress=args.progress, test_set=test_set)
                rows.append({"encoder": enc, "network": net, "embedding_dim": model.encoder.embedding_dim,
                             "params": sum(p.numel() for p in model.parameters()),
                             "test_acc": res.best.get("test_acc"), "test_loss": res.best.get("test_loss"),
                             "val_acc": res.best.get("val_acc"), "best_epoch": res.best.get("epoch"),
                             "train_s": round(time.perf_counter() - t0, 2)})
                if net == map_net:
                    maps[f"{enc} + {net}"] = _predict_map(res.model, cfg["map_nside"], num_classes)
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)
    print_table(rows, ["encoder", "network", ("embedding_dim", "dim"), "params", ("test_acc", "test acc"),
                       ("test_loss", "test loss"), ("val_acc", "val acc"), ("best_epoch", "epoch"),
                       ("train_s", "time s")])
    out = Path(args.out)
    img = Path(args.img_dir)
    name = f"{task}_map.png"
    images = _save_maps(task, maps, _truth_map(task, cfg["map_nside"]), [img / name, out / name], num_classes)
    best = max(rows, key=lambda r: r["test_acc"] if r["test_acc"] is not None else -1.0)
    payload = {"task": task, "quick": args.quick, "seed": args.seed, "settings": cfg, "lr": LR,
               "selection": "epoch with the lowest validation loss; test = "
                            + ("HEALPix nside %d pixel centres" % cfg["nside"] if task == "landocean"
                               else "%d uniform points" % cfg["num_test"]),
               "data": ("GLOBE 1 km land mask (global-land-mask), points uniform on the sphere"
                        if task == "landocean" else "200 Fibonacci support points, 16 classes, nearest-support labels"),
               "best": {k: best[k] for k in ("encoder", "network", "test_acc")},
               "images": [str(p) for p in images], "total_s": round(time.perf_counter() - t_all, 1)}
    json_path, csv_path = write_results(out / f"{task}.json", payload, rows)
    print(f"best: {best['encoder']} + {best['network']} (test acc {best['test_acc']:.4f}); wrote {json_path}, "
          f"{csv_path}, {', '.join(map(str, images))}")
    return 0


def main_landocean(argv: list[str]) -> int:
    """Entry point of ``geodl bench landocean``."""
    return run("landocean", argv)


def main_checkerboard(argv: list[str]) -> int:
    """Entry point of ``geodl bench checkerboard``."""
    return run("checkerboard", argv)
