"""One sweep runner for every study that runs many independent cells (a (B, alpha) grid, the
validation suite, the forgetting sweeps): cells in, one folder per finished cell out,
resumable, a failed cell never stops the others. Engines: ``local`` (processes on this
machine, the default) and others registered in :mod:`.runner` (``ray`` for a cluster).
"""

from .runner import Cell, CellResult, SweepError, available_engines, run_cells

__all__ = ["Cell", "CellResult", "SweepError", "available_engines", "run_cells"]
