"""One training step of the default run (784-50-50-10 MLP, B = 50, mnist5k) against its FLOP
bound: the loop of sgdyn 0.1 (``train_epoch`` with ``torch.optim.SGD``), the eager
:class:`~sgdyn.validation.training.fast_step.FastSGD` step (fused foreach update, losses kept on
the device), the ``torch.compile`` step, and on CUDA the CUDA-graph step. The bound is
2 * 3 * params * B flops divided by the matmul FLOP rate measured in the same run
(a 512^3 matmul). One torch thread (pinned below). Run:
    python bench/bench_step.py          (prints ms/step and the ratios)
    pytest bench/bench_step.py -q -s    (pytest-benchmark)
"""

from __future__ import annotations

import copy
import dataclasses
import time

import pytest
import torch

from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import build_model
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch
from sgdyn.validation.training.fast_step import FastSGD, matmul_flop_rate, step_flops

THREADS, B = 1, 50
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def setup(device=DEVICE):
    torch.set_num_threads(THREADS)
    data = load_dataset("mnist5k").to(device)
    torch.manual_seed(0)
    return data, build_model("mlp", 784).to(device)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def epoch_fn(data, model, mode):
    """A function running one epoch (len(data) // B steps) with the step ``mode``."""
    m = copy.deepcopy(model)
    if mode == "optim":
        opt = make_optimizer(m, OptimConfig("sgd", 0.1, B))

        def run():
            float(train_epoch(m, opt, data.x, data.y, B, torch.Generator().manual_seed(0)).sum())

        return run
    f = FastSGD(m, 0.1, mode)

    def run():  # the host reads the losses once per epoch
        float(f.train_epoch(data.x, data.y, B, torch.Generator().manual_seed(0)).sum())

    return run


def ms_per_step(data, fn, repeats=5) -> float:
    """Best-of-``repeats`` epoch time per step, in ms."""
    fn()  # warm-up (compilation, graph capture)
    best = float("inf")
    for _ in range(repeats):
        _sync(data.x.device)
        t = time.perf_counter()
        fn()
        _sync(data.x.device)
        best = min(best, time.perf_counter() - t)
    return 1e3 * best / (len(data) // B)


def bound_ms(model, device=DEVICE) -> tuple[float, float]:
    rate = matmul_flop_rate(device=str(device))
    return 1e3 * step_flops(model, B) / rate, rate


@pytest.fixture(scope="module")
def dm():
    return setup()


@pytest.mark.parametrize("mode", ["optim", "eager", "compile"])
def test_step(benchmark, dm, mode):
    from _ratios import record

    fn = epoch_fn(*dm, mode)
    fn()
    benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    record(mode, benchmark)


def test_report(capsys, dm):
    from _ratios import MEDIANS, report

    b, rate = bound_ms(dm[1])
    extra = {"flop_bound_ms": b, "matmul_gflops": rate / 1e9, "threads": THREADS}
    if "optim" in MEDIANS:
        extra["optim_ms_per_step"] = 1e3 * MEDIANS["optim"] / (len(dm[0]) // B)
        extra["optim_over_bound"] = extra["optim_ms_per_step"] / b
    report(
        capsys,
        "training step",
        [("eager step vs optim loop", "eager", "optim"), ("compiled vs optim", "compile", "optim")],
        extra,
    )


def gpu_cases(ctx):
    """GPU target (contract in bench/README.md): the default step eager / compiled / graphed
    vs the torch.optim loop, with its FLOP count (kernel-launch bound on a GPU)."""

    def case(mode):
        def run():
            data, model = setup(ctx.device)
            n = ctx.size(len(data), 200)
            data = dataclasses.replace(data, x=data.x[:n], y=data.y[:n])
            steps = len(data) // B
            base, fn = epoch_fn(data, model, "optim"), epoch_fn(data, model, mode)
            fn()  # compile / capture outside the timing
            t_base = ctx.timeit(base, reps=3) / steps
            t = ctx.timeit(fn, reps=3) / steps
            return {"ratio": t_base / t, "seconds": t, "optim_s_per_step": t_base,
                    "flops": step_flops(model, B), "dtype": "float32"}  # fmt: skip

        return run

    modes = ["eager", "compile"] + ([] if ctx.dry_run else ["graph"])
    return [{"name": f"step_{m}_vs_optim", "run": case(m), "timeout_s": 120} for m in modes]


def main():
    data, model = setup()
    b, rate = bound_ms(model)
    print(
        f"784-50-50-10 MLP, B={B}, {DEVICE}, torch threads = {torch.get_num_threads()}; "
        f"{step_flops(model, B) / 1e6:.2f} MFLOP/step, matmul {rate / 1e9:.1f} GFLOP/s "
        f"-> FLOP bound {b:.3f} ms/step"
    )
    modes = ["optim", "eager", "compile"] + (["graph"] if DEVICE == "cuda" else [])
    fns = {m: epoch_fn(data, model, m) for m in modes}
    for f in fns.values():
        f()  # warm-up (compilation, graph capture)
    best = {m: float("inf") for m in modes}
    for _ in range(7):  # interleaved: a shared machine's load hits every mode alike
        for m, f in fns.items():
            _sync(data.x.device)
            t = time.perf_counter()
            f()
            _sync(data.x.device)
            best[m] = min(best[m], time.perf_counter() - t)
    print("best of 7, interleaved")
    for m in modes:
        ms = 1e3 * best[m] / (len(data) // B)
        base = 1e3 * best["optim"] / (len(data) // B)
        print(f"{m:8s} {ms:.3f} ms/step  {base / ms:.2f}x vs optim loop, {ms / b:.1f}x the bound")


if __name__ == "__main__":
    main()
