"""Formulas and estimators on arrays (numpy only; no model code).

Everything here takes plain arrays (numpy, or anything ``np.asarray`` accepts) and returns
plain numbers / dataclasses, so the same estimators run on a real network's trajectory and
on a simulated random-landscape trajectory.
"""

from . import mlf
from .dynamics import DriftDiffusion, drift_diffusion, velocity_autocorrelation
from .flatness import (
    EWidthResult,
    QuadFitResult,
    VarianceFlatnessFit,
    flatness_e_width,
    flatness_quadratic_fit,
    variance_flatness_exponent,
)
from .phases import PhaseTransition, detect_transition
from .powerlaw import PowerLawFit, fit_power_law
from .spectrum import (
    SpectrumSummary,
    cumulative_variance_excl_pc1,
    n_for_fraction,
    spectrum_summary,
)

__all__ = [
    "EWidthResult",
    "QuadFitResult",
    "VarianceFlatnessFit",
    "flatness_e_width",
    "flatness_quadratic_fit",
    "variance_flatness_exponent",
    "DriftDiffusion",
    "PhaseTransition",
    "PowerLawFit",
    "SpectrumSummary",
    "cumulative_variance_excl_pc1",
    "detect_transition",
    "mlf",
    "drift_diffusion",
    "fit_power_law",
    "n_for_fraction",
    "spectrum_summary",
    "velocity_autocorrelation",
]
