"""DDP worker for ``test_poincare_resnet.py::test_ddp_matches_single_process`` (a script, not a test).

Run as ``python -m torch.distributed.run --standalone --nproc_per_node=2 ddp_poincare_worker.py OUT``:
each of the 2 ranks builds the same small PoincareResNet (:func:`build`), takes its half of the fixed
batch of 16 digits (:func:`batch`) and runs :data:`STEPS` SGD steps under DistributedDataParallel (gloo, CPU);
rank 0 saves ``{"state_dict": ..., "losses": [...]}`` to ``OUT``. The test imports :func:`build`, :func:`batch`
and the constants from this file to compute the single-process reference.
"""

from __future__ import annotations

import sys

import torch

STEPS = 3
LR = 0.1
BATCH = 16


def build() -> torch.nn.Module:
    from geodl.nn.poincare import PoincareResNet

    torch.manual_seed(1234)
    return PoincareResNet(depth=8, widths=(4, 8, 8), in_channels=1)


def batch():
    """A fixed batch of 16 training digits: images (16, 1, 8, 8) float32, labels (16,)."""
    from geodl.data import Digits

    d = Digits("train")
    idx = torch.randperm(len(d.images), generator=torch.Generator().manual_seed(7))[:BATCH]
    return d.images[idx], d.labels[idx]


def main(out_path: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == 2, world
    torch.set_num_threads(1)
    model = build()
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR)
    x, y = batch()
    half = BATCH // world
    xs, ys = x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half]
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(xs), ys)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    if rank == 0:
        torch.save({"state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
                    "losses": losses}, out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
