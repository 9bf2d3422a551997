"""Per-step cost of the constraints against forgetting: LDC (Eq 15, Nc = 200) and EWC vs an
unconstrained SGD step of the 784-50-50-10 MLP, probed layer trained, B = 50, all timed in
one run (torch pinned to 1 thread by default). The LDC penalty is one (200 x 2500) matmul
forward and one backward per step. Run:
    pytest bench/bench_penalties.py -q -s
    python bench/bench_penalties.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import pytest
import torch
from _ratios import record, report

from sgdyn.validation.models import build_model
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch
from sgdyn.validation.training.penalties import EWCPenalty, LDCPenalty

PROBE = "layers.1.weight"
N_STEPS = 40  # one "epoch" of 40 steps of B = 50


def make_setup(nc: int = 200, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("mlp", 784)
    for n, p in model.named_parameters():
        p.requires_grad_(n == PROBE)
    x = torch.rand(N_STEPS * 50, 784)
    y = torch.randint(0, 10, (N_STEPS * 50,))
    opt = make_optimizer(model, OptimConfig("sgd", 0.1, 50), params=[model.layers[1].weight])
    w1 = model.layers[1].weight.detach().reshape(-1).clone()
    q, _ = torch.linalg.qr(torch.randn(w1.numel(), nc))
    pens = {
        "plain": None,
        "ldc": LDCPenalty(w1, q.T, torch.rand(nc) + 0.5, 10.0, lr=0.1),
        "ewc": EWCPenalty(w1, torch.rand(w1.numel()) * 1e-3, 1e3, lr=0.1),
    }
    return model, opt, x, y, pens


def epoch(setup, which: str) -> None:
    model, opt, x, y, pens = setup
    gen = torch.Generator().manual_seed(0)
    train_epoch(model, opt, x, y, 50, gen, penalty=pens[which])


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)  # pinned: ratios at 1 thread
    return make_setup()


@pytest.mark.parametrize("which", ["plain", "ldc", "ewc"])
def test_step_cost(benchmark, setup, which):
    benchmark.pedantic(epoch, args=(setup, which), rounds=15, warmup_rounds=2)
    record(which, benchmark)


def test_report(capsys):
    report(
        capsys,
        "penalty overhead per SGD step (MLP 784-50-50-10, B 50, LDC Nc 200)",
        [("plain/LDC", "ldc", "plain"), ("plain/EWC", "ewc", "plain"), ("EWC/LDC", "ldc", "ewc")],
        {"threads": torch.get_num_threads()},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--nc", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    s = make_setup(a.nc)
    for which in ("plain", "ldc", "ewc"):
        epoch(s, which)  # warm-up
    runs = {"plain": [], "ldc": [], "ewc": []}
    for _ in range(a.repeats):  # interleaved, so load changes hit all three alike
        for which in runs:
            t0 = time.perf_counter()
            epoch(s, which)
            runs[which].append((time.perf_counter() - t0) / N_STEPS)
    t = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
    print(f"== per-step cost, torch threads {a.threads}, Nc {a.nc}, median of {a.repeats} ==")
    for k, v in t.items():
        print(f"  {k}: {v * 1e6:.1f} us/step")
    r_ldc, r_ewc = t["ldc"] / t["plain"], t["ewc"] / t["plain"]
    print(
        f"  LDC / plain = {r_ldc:.3f}, EWC / plain = {r_ewc:.3f}, LDC / EWC = {r_ldc / r_ewc:.3f}"
    )


if __name__ == "__main__":
    main()
