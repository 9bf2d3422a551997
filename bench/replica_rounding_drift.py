"""How far the replica path and the per-cell loop drift apart for one seed (docs/scaling.md).

The same MLP, seed, data order and alpha trained by the single-run loop (train_epoch with
torch.optim SGD) and by :class:`~sgdyn.validation.training.replicas.Replicas` (R = 1, the
fused step); prints the relative difference of the probed weights after some epochs, in
float32 and float64. Not a speed benchmark: a measurement of rounding growth. One thread.
    python bench/replica_rounding_drift.py [--epochs 40]
"""

from __future__ import annotations

import argparse

import torch

from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import build_model
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch
from sgdyn.validation.training.replicas import Replicas

PROBE, B, LR = "layers.1.weight", 50, 0.1


def drift(epochs: int, dtype) -> dict[int, float]:
    data = load_dataset("mnist5k")
    x, y = data.x.to(dtype), data.y

    def model():
        torch.manual_seed(0)
        return build_model("mlp", 784).to(dtype)

    m = model()
    opt = make_optimizer(m, OptimConfig("sgd", LR, B))
    g = torch.Generator().manual_seed(0)
    rep = Replicas([model()], [LR], B, [0])
    out = {}
    for ep in range(1, epochs + 1):
        train_epoch(m, opt, x, y, B, g)
        rep.train_epoch(x, y)
        if ep & (ep - 1) == 0 or ep == epochs:  # powers of two and the last
            a = m.get_parameter(PROBE).detach().reshape(-1)
            b = rep.snapshot(PROBE)[0]
            out[ep] = float((a - b).norm() / a.norm())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(1)
    for dtype in (torch.float32, torch.float64):
        d = drift(args.epochs, dtype)
        print(f"{str(dtype):14s} " + "  ".join(f"epoch {e}: {v:.1e}" for e, v in d.items()))


if __name__ == "__main__":
    main()
