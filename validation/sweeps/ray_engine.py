"""The ``ray`` engine of the sweep runner: the same cells as Ray tasks on an existing cluster.

``run_cells(..., engine="ray", address=ADDR)`` connects to the cluster at ``ADDR`` (``ray start
--head`` prints it; ``"auto"`` finds one started on this machine) or, with no address, starts
a local Ray instance for the run. Every task (one cell, or one group of cells) is a Ray task
with the cell's resources (``Cell.resources``: ``{"cpu": n, "gpu": fraction}``; a fractional
GPU packs several cells onto one card) and runs :func:`~sgdyn.validation.sweeps.runner.run_task`,
the local engine's code: it writes ``out/cells/<key>/result.json`` itself, so ``out`` must be a
folder every node sees (a shared file system; on one machine any folder). Finished cells were
filtered out by the runner before submission, so a rerun resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ray

from .runner import SweepError, Task, run_task


def _remote_run(task: Task, out: str, threads: int) -> list[dict]:
    return run_task(task, out, threads)


def run_ray(
    tasks: Sequence[Task],
    out: Path,
    *,
    jobs: int = 1,
    threads: int = 1,
    progress: bool = False,
    address: str | None = None,
    gpus_per_cell: float | None = None,
    **_,
):
    """Submit ``tasks`` to Ray and yield each cell's record as its task finishes."""
    if not tasks:
        return
    started_here = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
                started_here = True
        except (ConnectionError, RuntimeError) as e:
            raise SweepError(
                f"cannot reach a Ray cluster at {address!r} ({str(e).splitlines()[0]}); start "
                "one with `ray start --head` and pass the address it prints"
            ) from None
    remote = ray.remote(_remote_run)
    out_abs = str(Path(out).resolve())
    try:
        asks = []
        for t in tasks:
            res = t.resources
            gpu = float(gpus_per_cell if gpus_per_cell is not None else res.get("gpu", 0) or 0)
            asks.append((float(res.get("cpu", threads) or threads), gpu))
        have = ray.cluster_resources()
        cpu_max, gpu_max = max(a[0] for a in asks), max(a[1] for a in asks)
        if cpu_max > have.get("CPU", 0) or gpu_max > have.get("GPU", 0):
            raise SweepError(
                f"a task asks for {cpu_max:g} CPU and {gpu_max:g} GPU but the Ray cluster has "
                f"{have.get('CPU', 0):g} CPU and {have.get('GPU', 0):g} GPU in all; lower "
                "--gpus-per-cell / --threads or add nodes"
            )
        pending = {}
        for t, (cpu, gpu) in zip(tasks, asks, strict=True):
            ref = remote.options(num_cpus=cpu, num_gpus=gpu).remote(t, out_abs, threads)
            pending[ref] = t
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                pending.pop(ref)
                yield from ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()
