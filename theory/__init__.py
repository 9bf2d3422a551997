"""Formulas and estimators on arrays (no model code, no torch import).

Every public function takes arrays from any array-API library (numpy, torch on any device,
cupy; Python lists and numbers count as numpy) through one boundary helper
(:mod:`._arrays`: shape / finiteness / sign checks with a clear error, then conversion) and
returns results in the caller's array type. Closed forms (:mod:`.mlf`, the random-walk
limits) compute in the caller's namespace, so torch autograd flows through them; estimators
(fits, medians, root finding) compute in float64 numpy and hand their arrays back.
The same estimators therefore run on a real network's trajectory, on a simulated
random-landscape trajectory and on the random-walk null models (:mod:`.nulls`).
"""

from . import ensemble, mlf, nulls
from .dynamics import (
    DriftDiffusion,
    DriftTest,
    drift_diffusion,
    drift_test,
    drift_test_from_gram,
    velocity_autocorrelation,
)
from .flatness import (
    CurvatureResult,
    EWidthResult,
    QuadFitResult,
    VarianceFlatnessFit,
    flatness_curvature_at_zero,
    flatness_e_width,
    flatness_quadratic_fit,
    variance_flatness_exponent,
)
from .phases import PhaseTransition, detect_transition, loss_rate
from .powerlaw import PowerLawFit, fit_power_law
from .spectrum import (
    SpectrumSummary,
    cumulative_variance_excl_pc1,
    n_for_fraction,
    rank_ordered,
    spectrum_summary,
)

__all__ = [
    "CurvatureResult",
    "DriftDiffusion",
    "DriftTest",
    "EWidthResult",
    "PhaseTransition",
    "PowerLawFit",
    "QuadFitResult",
    "SpectrumSummary",
    "VarianceFlatnessFit",
    "cumulative_variance_excl_pc1",
    "detect_transition",
    "drift_diffusion",
    "ensemble",
    "drift_test",
    "drift_test_from_gram",
    "fit_power_law",
    "flatness_curvature_at_zero",
    "flatness_e_width",
    "flatness_quadratic_fit",
    "loss_rate",
    "mlf",
    "n_for_fraction",
    "nulls",
    "rank_ordered",
    "spectrum_summary",
    "variance_flatness_exponent",
    "velocity_autocorrelation",
]
