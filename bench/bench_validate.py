"""Wall time of ``sgdyn validate``: the ``quick`` suite (target: under 10 minutes on 2 CPU
cores) and, on a GPU, the quick suite and the paper suite's LeNet-on-MNIST cell.

One torch thread per worker process (pinned), ``JOBS`` processes. Run:
    python bench/bench_validate.py                     (quick suite, prints per-cell times)
    python bench/bench_validate.py --suite paper --cells KEY,...
    pytest bench/bench_validate.py -q -s               (pytest-benchmark: the reduced protocol)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from sgdyn.validation.studies.suite.study import ValidateConfig, run_validate

THREADS, JOBS = 1, 2
TARGET_QUICK_S = 600.0  # issue 9: the quick suite under 10 minutes on 2 CPU cores
LENET_CELL = "mnist-lenet-sgd-B50-a0.05-s0"


def run_suite(suite="quick", *, device="cpu", jobs=JOBS, cells=None, quick=False) -> dict:
    """One suite run in a temporary folder; the total and per-cell wall times (s)."""
    torch.set_num_threads(THREADS)
    out = Path(tempfile.mkdtemp(prefix="sgdyn-bench-validate-"))
    try:
        cfg = ValidateConfig(suite=suite, device=device, cells=cells, quick=quick)
        t0 = time.perf_counter()
        s = run_validate(cfg, out / "run", jobs=jobs, threads=THREADS)
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "total_s": total,
        "n_failed": s["n_failed"],
        "cells_s": {c["key"]: c["wall_s"] for c in s["cells"]},
    }


def test_quick_suite_reduced_protocol(benchmark):
    """The quick suite's digits SGD cell with the reduced protocol (``--quick``): seconds."""
    from _ratios import record

    res = benchmark.pedantic(
        run_suite,
        kwargs=dict(cells=("digits-mlp2-sgd-B50-a0.1-s0",), quick=True, jobs=1),
        rounds=1,
        warmup_rounds=0,
    )
    assert res["n_failed"] == 0
    record("quick-cell-reduced", benchmark)


def gpu_cases(ctx):
    """GPU targets (contract in bench/README.md): the quick suite on the device (target under
    10 minutes) and the paper suite's LeNet-on-MNIST cell (a conv probe: the cell a CPU
    core needs ~40 minutes for with reduced settings)."""

    def quick_suite():
        if ctx.dry_run:  # one digits cell, reduced protocol
            r = run_suite(cells=("digits-mlp2-sgd-B50-a0.1-s0",), quick=True, jobs=1)
        else:
            r = run_suite(device=str(ctx.device), jobs=1)
        return {"seconds": r["total_s"], "total_s": r["total_s"], "n_failed": r["n_failed"],
                **{f"cell_s:{k}": v for k, v in r["cells_s"].items()}}  # fmt: skip

    def lenet_cell():
        r = run_suite("paper", device=str(ctx.device), jobs=1, cells=(LENET_CELL,))
        return {"seconds": r["total_s"], "total_s": r["total_s"], "n_failed": r["n_failed"]}

    cases = [{"name": "validate_quick_suite", "run": quick_suite,
              "target": ("total_s", "<=", TARGET_QUICK_S), "timeout_s": 600}]  # fmt: skip
    if not ctx.dry_run:
        cases.append({"name": "validate_paper_lenet_mnist_cell", "run": lenet_cell,
                      "timeout_s": 600})  # fmt: skip
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--cells", default=None, help="comma-separated cell keys (all when omitted)")
    ap.add_argument("--jobs", type=int, default=JOBS)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    cells = tuple(a.cells.split(",")) if a.cells else None
    r = run_suite(a.suite, device=a.device, jobs=a.jobs, cells=cells)
    print(f"suite {a.suite}: {r['total_s']:.0f} s wall ({a.jobs} processes x {THREADS} torch "
          f"thread), {r['n_failed']} failed")  # fmt: skip
    for k, v in r["cells_s"].items():
        print(f"  {k}: {v:.0f} s")
    if a.suite == "quick":
        print(f"target {TARGET_QUICK_S:.0f} s: {TARGET_QUICK_S / r['total_s']:.2f}x under it")


if __name__ == "__main__":
    main()
