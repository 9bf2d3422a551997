"""Simulator weak scaling over torchrun ranks: replica-steps/s with 1 and 2 gloo ranks (CPU).

Each rank integrates ``--replicas-per-rank`` replicas (SGD on Eq 9, fresh draws, the blocked
CPU step) with ``--threads`` torch threads; the total grows with the ranks (weak scaling).
Efficiency = rate(2 ranks) / (2 x rate(1 rank)); the single-rank run is the baseline,
measured in the same invocation.

    python bench/bench_distributed.py --N 200 --replicas-per-rank 32 --steps 200 --threads 1

pytest-benchmark: ``pytest bench/bench_distributed.py --benchmark-only`` (one process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from sgdyn.simulator.distributed import close, current, init_from_env, simulate_sharded
from sgdyn.simulator.presets import paper_like


def _run(N, R, steps):
    spec = paper_like(N=N)
    return simulate_sharded(spec, alpha=0.25, n_steps=steps, n_replicas=R, record_every=steps)


def worker(a) -> None:
    import torch.distributed as dist

    init_from_env("cpu")
    torch.set_num_threads(a.threads)
    ctx = current()
    world, rank = (ctx.world, ctx.rank) if ctx else (1, 0)
    R = a.replicas_per_rank * world
    _run(a.N, R, 3)  # warm-up
    if ctx:
        dist.barrier()
    t = time.perf_counter()
    _run(a.N, R, a.steps)
    if ctx:
        dist.barrier()
    dt = time.perf_counter() - t
    if rank == 0:
        print("RESULT " + json.dumps({"ranks": world, "threads_per_rank": a.threads, "N": a.N,
                                      "replicas": R, "seconds": dt,
                                      "replica_steps_per_s": R * a.steps / dt}))  # fmt: skip
    if ctx:
        close()


def launch(nproc: int, a) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(nproc), str(Path(__file__).resolve()), "--worker", "--N", str(a.N),
           "--replicas-per-rank", str(a.replicas_per_rank), "--steps", str(a.steps),
           "--threads", str(a.threads)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"torchrun with {nproc} ranks failed: {proc.stderr[-1500:]}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--N", type=int, default=200)
    ap.add_argument("--replicas-per-rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--ranks", type=int, action="append", help="default: 1 and 2")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a)
    rows = [launch(n, a) for n in a.ranks or [1, 2]]
    base = rows[0]["replica_steps_per_s"] / rows[0]["ranks"]
    print(f"gloo weak scaling, N={a.N}, {a.replicas_per_rank} replicas and {a.threads} torch "
          "thread(s) per rank")  # fmt: skip
    print("| ranks | replicas | replica-steps/s | efficiency vs 1 rank |")
    print("|---|---|---|---|")
    for r in rows:
        eff = r["replica_steps_per_s"] / (r["ranks"] * base)
        print(f"| {r['ranks']} | {r['replicas']} | {r['replica_steps_per_s']:.4g} | {eff:.2f} |")


def test_bench_simulate_sharded_single_process(benchmark):
    torch.set_num_threads(1)
    benchmark.pedantic(_run, args=(100, 32, 20), rounds=3, warmup_rounds=1)


if __name__ == "__main__":
    main()
