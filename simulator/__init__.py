"""Random-landscape (MLF ensemble) simulator: ensembles, samplers and integrators (Section IV)."""

from .ensemble import MinibatchSchedule, MLFEnsembleSpec, sample_dense
from .integrators import SimResult, SimulationDiverged, simulate
from .landscape import MLFLandscape
from .presets import from_profiles, get_preset, paper_like

__all__ = [
    "MLFEnsembleSpec",
    "MLFLandscape",
    "MinibatchSchedule",
    "SimResult",
    "SimulationDiverged",
    "from_profiles",
    "get_preset",
    "paper_like",
    "sample_dense",
    "simulate",
]
