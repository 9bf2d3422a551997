"""Wall time of a 6-cell (B, alpha) flatness grid (``sgdyn flatness-grid``): the cells sharing
B trained together as replicas through the local engine vs one process per cell (the process
pool of sgdyn 0.1), both with 2 worker processes of 1 torch thread each.

Grid: digits, B in {50, 100} x alpha in {0.1, 0.2, 0.3}, window after epoch 4 for 2 epochs,
12 flatness modes (the --quick settings widened to 6 cells). Run:
    python bench/bench_grid.py          (prints the ratio)
    pytest bench/bench_grid.py -q -s    (pytest-benchmark)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from sgdyn.validation.studies.flatness_grid import QUICK, GridConfig, run_grid

THREADS, JOBS = 1, 2


def config() -> GridConfig:
    cfg = GridConfig.from_dict(dict(QUICK, quick=True), batch_sizes=(50, 100), lrs=(0.1, 0.2, 0.3))
    cfg.device = "cpu"
    return cfg


def run(batch: bool, jobs: int = JOBS) -> dict:
    torch.set_num_threads(THREADS)
    out = Path(tempfile.mkdtemp(prefix="sgdyn-bench-grid-"))
    try:
        return run_grid(config(), out / "run", jobs=jobs, threads=THREADS, batch=batch)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_grid_per_cell_processes(benchmark):
    from _ratios import record

    benchmark.pedantic(run, args=(False,), rounds=2, warmup_rounds=0)
    record("per-cell", benchmark)


def test_grid_batched_replicas(benchmark):
    from _ratios import record

    benchmark.pedantic(run, args=(True,), rounds=2, warmup_rounds=0)
    record("batched", benchmark)


def test_report(capsys):
    from _ratios import report

    report(
        capsys,
        "flatness grid",
        [("6-cell grid: batched replicas vs per-cell processes", "batched", "per-cell")],
        {"jobs": JOBS, "threads_per_job": THREADS},
    )


def _best(fns, repeats=3):
    from _ratios import best_interleaved

    return best_interleaved(fns, repeats, warmup=False)


def main():
    print(f"6-cell (B, alpha) grid on digits, {JOBS} processes x {THREADS} torch thread")
    per, bat = _best([lambda: run(False), lambda: run(True)])
    print(f"per-cell processes {per:.2f} s, batched replicas {bat:.2f} s -> {per / bat:.2f}x")
    s = run(True)
    cap = sum(r["time_capture_s"] for r in s["runs"])
    land = sum(r["time_landscape_s"] for r in s["runs"])
    print(f"batched run: capture {cap:.2f} s, landscape (per cell, not batched) {land:.2f} s")


if __name__ == "__main__":
    main()
