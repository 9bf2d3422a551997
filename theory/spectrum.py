"""The PCA spectrum of an SGD trajectory (Fig 1A, 1B).

``variances`` is always the rank-ordered explained variance sigma_i^2 (i = 1 first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .powerlaw import PowerLawFit, fit_power_law


def _rank_ordered(variances) -> np.ndarray:
    v = np.asarray(variances, dtype=np.float64).ravel()
    if v.size < 2:
        raise ValueError(f"a spectrum needs at least 2 variances, got {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError("the spectrum has non-finite variances; check the recorded trajectory")
    return np.sort(np.clip(v, 0.0, None))[::-1]


def cumulative_variance_excl_pc1(variances) -> np.ndarray:
    """Normalised cumulative variance of PCs 2..n (Fig 1B).

    Returns ``c`` with ``c[n-2] = sum_{i=2}^{n} sigma_i^2 / sum_{i>=2} sigma_i^2`` for
    n = 2..N, i.e. the fraction carried by the top (n-1) components excluding PC1.
    """
    v = _rank_ordered(variances)[1:]
    total = v.sum()
    if total <= 0:
        raise ValueError("all variances beyond PC1 are zero: the trajectory did not move")
    return np.cumsum(v) / total


def n_for_fraction(variances, fraction: float = 0.9) -> int:
    """Smallest rank n such that PCs 2..n carry ``fraction`` of the variance beyond PC1."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    c = cumulative_variance_excl_pc1(variances)
    return int(np.searchsorted(c, fraction - 1e-12) + 2)


@dataclass(frozen=True)
class SpectrumSummary:
    """Fig 1 A-B numbers: gamma (sigma_i^2 ~ i^-gamma) over a rank range, n90, var1/var2."""

    gamma: float
    gamma_err: float
    gamma_err_boot: float
    gamma_r2: float
    rank_range: tuple[int, int]
    n90_excl_pc1: int
    var1_over_var2: float
    fraction_pc1: float

    def as_dict(self) -> dict:
        d = asdict(self)
        d["rank_range"] = list(self.rank_range)
        return d


def spectrum_summary(
    variances, rank_range: tuple[int, int] = (20, 200), fraction: float = 0.9
) -> SpectrumSummary:
    """Power-law exponent of the rank-ordered spectrum and the Fig 1B numbers."""
    v = _rank_ordered(variances)
    lo, hi = rank_range
    if not 1 <= lo < hi:
        raise ValueError(f"rank_range must satisfy 1 <= lo < hi, got {rank_range}")
    ranks = np.arange(1, v.size + 1)
    fit: PowerLawFit = fit_power_law(ranks, v, x_range=(lo, min(hi, v.size)))
    return SpectrumSummary(
        gamma=-fit.slope,
        gamma_err=fit.slope_err,
        gamma_err_boot=fit.slope_err_boot,
        gamma_r2=fit.r2,
        rank_range=(lo, hi),
        n90_excl_pc1=n_for_fraction(v, fraction),
        var1_over_var2=float(v[0] / v[1]) if v[1] > 0 else float("inf"),
        fraction_pc1=float(v[0] / v.sum()),
    )
