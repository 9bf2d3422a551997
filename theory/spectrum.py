"""The PCA spectrum of an SGD trajectory (Fig 1A, 1B).

``variances`` is always the explained variance sigma_i^2 of each PCA mode, a 1-D array
(any order; ranked here, i = 1 the largest). Negative values beyond round-off are refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._arrays import caller_of, check_array
from .powerlaw import PowerLawFit, fit_power_law

__all__ = [
    "SpectrumSummary",
    "cumulative_variance_excl_pc1",
    "n_for_fraction",
    "rank_ordered",
    "spectrum_summary",
]

_ROUNDOFF = 1e-9  # |negative| variances below this fraction of the largest are round-off zeros


def rank_ordered(variances):
    """The variances sorted in decreasing order (caller's array type), after the checks.

    Refuses 2-D input, fewer than 2 values, non-finite values and negative variances larger
    than round-off (1e-9 of the largest; those are set to 0, as an eigensolver's tiny
    negative eigenvalues of a rank-deficient covariance are).
    """
    return caller_of(variances).wrap(_rank_ordered(variances))


def _rank_ordered(variances) -> np.ndarray:
    v = check_array(
        variances,
        "variances",
        min_len=2,
        hint="pass one spectrum (sigma_i^2 per mode) as a 1-D array",
    )
    top = float(np.max(np.abs(v)))
    neg = v < -_ROUNDOFF * top
    if neg.any():
        k = int(np.flatnonzero(neg)[0])
        raise ValueError(
            f"variances must be non-negative, got {v[k]:.6g} at index {k} ({int(neg.sum())} "
            "negative beyond round-off); a PCA variance cannot be negative: check what was passed"
        )
    return np.sort(np.where(v < 0, 0.0, v))[::-1]


def cumulative_variance_excl_pc1(variances):
    """Normalised cumulative variance of PCs 2..n (Fig 1B), in the caller's array type.

    Returns ``c`` with ``c[n-2] = sum_{i=2}^{n} sigma_i^2 / sum_{i>=2} sigma_i^2`` for
    n = 2..N, i.e. the fraction carried by the top (n-1) components excluding PC1.
    """
    v = _rank_ordered(variances)[1:]
    total = v.sum()
    if total <= 0:
        raise ValueError("all variances beyond PC1 are zero: the trajectory did not move")
    return caller_of(variances).wrap(np.cumsum(v) / total)


def n_for_fraction(variances, fraction: float = 0.9) -> int:
    """Smallest rank n such that PCs 2..n carry ``fraction`` of the variance beyond PC1."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    v = _rank_ordered(variances)[1:]
    total = v.sum()
    if total <= 0:
        raise ValueError("all variances beyond PC1 are zero: the trajectory did not move")
    return int(np.searchsorted(np.cumsum(v) / total, fraction - 1e-12) + 2)


@dataclass(frozen=True)
class SpectrumSummary:
    """Fig 1 A-B numbers: gamma (sigma_i^2 ~ i^-gamma) over a rank range, n90, var1/var2.

    ``rank_range`` is the range of ranks the gamma fit used (always inside the spectrum).
    """

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
    """Power-law exponent of the rank-ordered spectrum and the Fig 1B numbers.

    ``rank_range = (lo, hi)`` (1-based, inclusive) must lie within the non-zero part of the
    spectrum: a range beyond it raises (it is never shortened behind the caller's back).
    """
    v = _rank_ordered(variances)
    lo, hi = (int(r) for r in rank_range)
    if not 1 <= lo < hi:
        raise ValueError(f"rank_range must satisfy 1 <= lo < hi, got {tuple(rank_range)}")
    n_pos = int(np.count_nonzero(v > 0))
    if hi > n_pos:
        raise ValueError(
            f"rank_range {lo}-{hi} goes beyond the spectrum: only {n_pos} of {v.size} "
            f"variances are non-zero (a window of T snapshots has at most T-1); use a rank "
            f"range with hi <= {n_pos} or record a longer window"
        )
    if hi - lo < 2:
        raise ValueError(f"rank_range {lo}-{hi} holds fewer than 3 ranks; widen it")
    ranks = np.arange(1, v.size + 1, dtype=np.float64)
    fit: PowerLawFit = fit_power_law(ranks, v, x_range=(lo, hi))
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
