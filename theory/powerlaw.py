"""Power-law fits y ~ C x^slope on log-log axes, with an uncertainty.

Used for the PCA spectrum exponent gamma (sigma_i^2 ~ i^-gamma, Fig 1A) and the
variance-flatness exponent psi (sigma_i^2 ~ F_i^-psi, Eq 8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PowerLawFit:
    """Result of a log-log least-squares fit ``log y = intercept + slope * log x``.

    ``slope_err`` is the ordinary-least-squares standard error of the slope;
    ``slope_err_boot`` a bootstrap (resampling the points) standard deviation, which is
    the more honest figure when residuals are correlated (as they are along a spectrum).
    """

    slope: float
    slope_err: float
    slope_err_boot: float
    intercept: float
    r2: float
    n_points: int

    def as_dict(self) -> dict:
        return asdict(self)


def fit_power_law(
    x,
    y,
    *,
    x_range: tuple[float, float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> PowerLawFit:
    """Fit ``y = C x^slope`` by least squares on ``log x, log y``.

    Points with non-positive or non-finite x or y are dropped; ``x_range`` (inclusive)
    restricts the fit. Raises ``ValueError`` with what to do when fewer than 3 points remain.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if x_range is not None:
        lo, hi = x_range
        keep &= (x >= lo) & (x <= hi)
    n = int(keep.sum())
    if n < 3:
        raise ValueError(
            f"power-law fit needs at least 3 positive finite points in range {x_range}, "
            f"got {n}; widen the range or record a longer trajectory"
        )
    lx, ly = np.log(x[keep]), np.log(y[keep])
    slope, intercept, slope_err, r2 = _ols(lx, ly)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if np.ptp(lx[idx]) == 0:
            continue
        boot.append(_ols(lx[idx], ly[idx])[0])
    slope_err_boot = float(np.std(boot, ddof=1)) if len(boot) > 1 else float("nan")
    return PowerLawFit(float(slope), float(slope_err), slope_err_boot, float(intercept), r2, n)


def _ols(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float, float, float]:
    """Slope, intercept, slope standard error and R^2 of a straight-line fit."""
    n = lx.size
    xm, ym = lx.mean(), ly.mean()
    sxx = np.sum((lx - xm) ** 2)
    slope = np.sum((lx - xm) * (ly - ym)) / sxx
    intercept = ym - slope * xm
    resid = ly - (intercept + slope * lx)
    ss_res = float(np.sum(resid**2))
    ss_tot = float(np.sum((ly - ym) ** 2))
    dof = max(n - 2, 1)
    slope_err = float(np.sqrt(ss_res / dof / sxx)) if n > 2 else float("nan")
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(slope), float(intercept), slope_err, float(r2)
