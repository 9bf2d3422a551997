"""R = 16 replicas of the 784-50-50-10 MLP for one epoch with trajectory capture: trained
at once (:class:`sgdyn.validation.training.replicas.Replicas`, vmap over functional_call,
one (R, steps, N) capture buffer) vs 16 sequential runs (train_epoch + TrajectoryRecorder).

Target (issue 11): >= 4x on CPU, >= 10x on a GPU. One torch thread (pinned below). Run:
    python bench/bench_replicas.py          (prints the ratio)
    pytest bench/bench_replicas.py -q -s    (pytest-benchmark)
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import build_model
from sgdyn.validation.probes.recorder import TrajectoryRecorder
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch
from sgdyn.validation.training.replicas import ReplicaRecorder, Replicas

THREADS = 1
R, B, PROBE = 16, 50, "layers.1.weight"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _models(device):
    out = []
    for s in range(R):
        torch.manual_seed(s)
        out.append(build_model("mlp", 784).to(device))
    return out


def setup_data(device=DEVICE):
    torch.set_num_threads(THREADS)
    return load_dataset("mnist5k").to(device)


def sequential(data, with_pca=False):
    """16 separate runs, one after the other, each recording its epoch."""
    steps = len(data) // B
    for s, m in enumerate(_models(data.x.device)):
        opt = make_optimizer(m, OptimConfig("sgd", 0.05 + 0.01 * s, B))
        rec = TrajectoryRecorder(m, PROBE, steps).attach(opt)
        train_epoch(m, opt, data.x, data.y, B, torch.Generator().manual_seed(s))
        if with_pca:
            rec.pca()
    _sync(data)


def batched(data, with_pca=False, compile=False):
    """The same 16 runs at once (``compile``: the batched step as one torch.compile graph)."""
    steps = len(data) // B
    rep = Replicas(
        _models(data.x.device), [0.05 + 0.01 * s for s in range(R)], B, range(R), compile=compile
    )
    rec = ReplicaRecorder(R, steps, 2500, device=data.x.device)
    rep.train_epoch(data.x, data.y, on_step=lambda _s: rec.record(rep.snapshot(PROBE)))
    if with_pca:
        rec.pca()
    _sync(data)


def _sync(data):
    if data.x.device.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def data():
    return setup_data()


def test_sequential_16_runs(benchmark, data):
    from _ratios import record

    benchmark.pedantic(sequential, args=(data,), rounds=3, warmup_rounds=1)
    record("sequential", benchmark)


def test_batched_16_replicas(benchmark, data):
    from _ratios import record

    benchmark.pedantic(batched, args=(data,), rounds=3, warmup_rounds=1)
    record("batched", benchmark)


def test_batched_16_replicas_compiled(benchmark, data):
    from _ratios import record

    benchmark.pedantic(batched, args=(data, False, True), rounds=3, warmup_rounds=1)
    record("batched+compile", benchmark)


def test_report(capsys):
    from _ratios import report

    report(
        capsys,
        "replicas",
        [
            (
                "16 replicas batched vs 16 sequential runs (1 epoch, capture)",
                "batched",
                "sequential",
            ),
            ("batched + torch.compile vs 16 sequential runs", "batched+compile", "sequential"),
        ],
        {"device": DEVICE, "threads": THREADS, "R": R},
    )


def _best(fns, repeats=5):
    """Best-of-``repeats`` seconds of each callable, measured interleaved (a shared machine's
    load then hits every candidate alike)."""
    for f in fns:
        f()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def gpu_cases(ctx):
    """GPU target (contract in bench/README.md): 16 replicas >= 10x 16 sequential runs."""

    def run():
        data = setup_data(ctx.device)
        n = ctx.size(len(data), 200)
        sub = dataclasses.replace(data, x=data.x[:n], y=data.y[:n])
        t_seq = ctx.timeit(lambda: sequential(sub), reps=3)
        t_bat = ctx.timeit(lambda: batched(sub), reps=3)
        steps = R * (n // B)
        return {
            "ratio": t_seq / t_bat,
            "seconds": t_bat,
            "sequential_s": t_seq,
            "flops": 6.0 * 42200 * B * steps,
            "dtype": "float32",
        }

    return [{"name": "replicas_16_vs_sequential", "run": run, "target": ("ratio", ">=", 10),
             "timeout_s": 120}]  # fmt: skip


def main():
    data = setup_data()
    print(
        f"R={R} replicas of 784-50-50-10, B={B}, one epoch of mnist5k with capture; "
        f"{DEVICE}, torch threads = {torch.get_num_threads()}; best of 5, interleaved"
    )
    for pca in (False, True):
        seq, bat, comp = _best(
            [
                lambda pca=pca: sequential(data, pca),
                lambda pca=pca: batched(data, pca),
                lambda pca=pca: batched(data, pca, True),
            ]
        )
        tag = " + PCA" if pca else ""
        print(
            f"epoch{tag}: sequential {seq:.3f} s, batched {bat:.3f} s -> {seq / bat:.2f}x, "
            f"batched + torch.compile {comp:.3f} s -> {seq / comp:.2f}x"
        )


if __name__ == "__main__":
    main()
