"""What attaches to a user's model: the trajectory recorder, the network landscape (loss
profiles, flatness, per-sample projections, Hessian-vector products), the curvature beside
the flatness (Lanczos eigenpairs, alignment), the Langevin equilibrium baseline and the PC1
margins. Probes import only ``sgdyn.kernels``, ``sgdyn.theory``, the ``Landscape`` protocol
and ``sgdyn.validation.data`` (never studies or the CLI).
"""

from .curvature import CurvatureResult, curvature_analysis, hessian_eigenpairs
from .langevin import LangevinCapture, langevin_capture, langevin_run, sgd_matched_temperature
from .network_landscape import NetworkLandscape, ProfileEvaluator, extract_tail
from .pc1 import PC1Result, margins_along, orient_along_drift, pc1_analysis
from .recorder import TrajectoryRecorder, make_estimator

__all__ = [
    "CurvatureResult",
    "LangevinCapture",
    "NetworkLandscape",
    "PC1Result",
    "ProfileEvaluator",
    "TrajectoryRecorder",
    "curvature_analysis",
    "extract_tail",
    "hessian_eigenpairs",
    "langevin_capture",
    "langevin_run",
    "make_estimator",
    "margins_along",
    "orient_along_drift",
    "pc1_analysis",
    "sgd_matched_temperature",
]
