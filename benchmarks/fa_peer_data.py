"""Write geodl's reference n-body data in the file format of the FA paper's n-body script (the peer of issue 17).

The FA repository (omri1348/Frame-Averaging, ``nbody/``) reads ``n_body_system/dataset/{loc,vel,edges,charges}_
{train,valid,test}_charged5_initvel1small.npy`` relative to its working directory. It ships only the charges and
edges (the positions and velocities are not in the repository), and it uses frame 30 as input and frame 40 as
target. This script writes all four arrays per split from ``geodl.data.NBodyDataset(..., reference_streams=True)``,
the EGNN reference's numpy-seed-43 stream:

- ``loc``, ``vel``: (N, 41, 3, 5) float64, with frames 30 (input) and 40 (target positions) filled and the
  other frames zero (the script reads no other frame);
- ``charges``: (N, 5, 1); ``edges``: (N, 5, 5), ``q_i q_j``;
- N = 3,000 / 2,000 / 2,000 (the script keeps the first 3,000 training trajectories).

The charges equal the files the FA repository ships bit for bit
(``tests/data/test_nbody_reference.py::test_replay_matches_the_charges_the_fa_repository_ships``).

    python benchmarks/fa_peer_data.py --out peers/Frame-Averaging/nbody/n_body_system/dataset
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SUFFIX = "_charged5_initvel1small.npy"
SPLITS = {"train": "train", "val": "valid", "test": "test"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the peer's n_body_system/dataset folder")
    ap.add_argument("--sizes", default="3000,2000,2000", help="train,val,test trajectories")
    ap.add_argument("--data-root", default=None, help="geodl data home (default: geodl.data.default_root())")
    args = ap.parse_args(argv)
    from geodl.data import NBodyDataset

    sizes = tuple(int(s) for s in args.sizes.split(","))
    if len(sizes) != 3 or min(sizes) < 1:
        ap.error(f"--sizes: expected three positive counts, got {args.sizes!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, name in SPLITS.items():
        ds = NBodyDataset(split, args.data_root, sizes=sizes, reference_streams=True)
        loc, vel, q, target = (t.double().numpy() for t in ds.tensors())
        n, p = loc.shape[:2]
        big_loc = np.zeros((n, 41, 3, p))
        big_vel = np.zeros((n, 41, 3, p))
        big_loc[:, 30] = loc.transpose(0, 2, 1)
        big_vel[:, 30] = vel.transpose(0, 2, 1)
        big_loc[:, 40] = target.transpose(0, 2, 1)
        charges = q.reshape(n, p, 1)
        edges = charges * charges.transpose(0, 2, 1)
        for key, arr in (("loc", big_loc), ("vel", big_vel), ("charges", charges), ("edges", edges)):
            np.save(out / f"{key}_{name}{SUFFIX}", arr)
        print(f"{name}: {n} trajectories -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
