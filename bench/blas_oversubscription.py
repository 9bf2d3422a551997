"""Why sweep workers pin numpy/scipy's BLAS pools as well as torch (``--threads``).

Runs the same small LAPACK workload (eigh of a 1,500 x 1,500 matrix and a GEMM, 4 times) in
``--procs`` processes at once, first with each process's BLAS at its default thread count,
then limited to one thread each (threadpoolctl), and prints the wall times. On the 2-core
machine: 10.7-11.8 s vs 2.3-2.6 s per process with 2 processes. A measurement, not a benchmark.
    python bench/blas_oversubscription.py [--procs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def work(limit):
    import numpy as np
    import scipy.linalg as sla
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((3000, 1500))
    c = a.T @ a
    with threadpool_limits(limit):
        t = time.perf_counter()
        for _ in range(4):
            sla.eigh(c, driver="evd")
            a.T @ a
        return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=2)
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    for limit, label in ((None, "default BLAS threads"), (1, "one BLAS thread each")):
        with ctx.Pool(args.procs) as pool:
            times = pool.map(work, [limit] * args.procs)
        print(f"{args.procs} processes, {label}: " + ", ".join(f"{t:.2f} s" for t in times))


if __name__ == "__main__":
    main()
