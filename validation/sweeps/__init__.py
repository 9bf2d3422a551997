"""One sweep runner for every study that runs many independent cells (a (B, alpha) grid, the
validation suite, the forgetting sweeps): cells in, one folder per finished cell out,
resumable, a failed cell never stops the others. Engines: ``local`` (processes on this
machine, the default) and ``ray`` (:mod:`.ray_engine`: Ray tasks on a cluster). Cells that
can run together (replicas sharing B) run as one task with ``group_by`` / ``group_fn``.
"""

from .runner import (
    Cell,
    CellResult,
    SweepError,
    available_engines,
    cell_resources,
    raise_if_failed,
    run_cells,
)

__all__ = [
    "cell_resources",
    "Cell",
    "CellResult",
    "SweepError",
    "available_engines",
    "raise_if_failed",
    "run_cells",
]
