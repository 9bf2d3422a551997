"""Power-law fits y ~ C x^slope on log-log axes, with an uncertainty.

Used for the PCA spectrum exponent gamma (sigma_i^2 ~ i^-gamma, Fig 1A) and the
variance-flatness exponent psi (sigma_i^2 ~ F_i^-psi, Eq 8). The straight-line fit is
``scipy.stats.linregress``; the bootstrap is ``scipy.stats.bootstrap`` (pairs resampled,
vectorised statistic). Both replaced hand-written code (``bench/bench_theory_libs.py``:
the scipy version is the faster one).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ._arrays import check_array

__all__ = ["PowerLawFit", "fit_power_law"]

# scipy >= 1.15 takes ``rng``; older releases ``random_state`` (same Generator semantics)
_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


@dataclass(frozen=True)
class PowerLawFit:
    """Result of a log-log least-squares fit ``log y = intercept + slope * log x``.

    ``slope_err`` is the ordinary-least-squares standard error of the slope;
    ``slope_err_boot`` a bootstrap (resampling the points) standard deviation, which is
    the more honest figure when residuals are correlated (as they are along a spectrum);
    ``slope_ci_boot`` the 95 % bootstrap (BCa) confidence interval of the slope.
    ``x_range`` is the range of x actually fitted (the smallest and largest x used).
    """

    slope: float
    slope_err: float
    slope_err_boot: float
    intercept: float
    r2: float
    n_points: int
    slope_ci_boot: tuple[float, float] = (float("nan"), float("nan"))
    x_range: tuple[float, float] = (float("nan"), float("nan"))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["slope_ci_boot"] = list(self.slope_ci_boot)
        d["x_range"] = list(self.x_range)
        return d


def _slope(lx, ly, axis=-1):
    """OLS slope along ``axis`` (vectorised over bootstrap resamples); NaN if x is constant."""
    xm = lx.mean(axis, keepdims=True)
    ym = ly.mean(axis, keepdims=True)
    sxx = ((lx - xm) ** 2).sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, ((lx - xm) * (ly - ym)).sum(axis) / sxx, np.nan)


def fit_power_law(
    x,
    y,
    *,
    x_range: tuple[float, float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> PowerLawFit:
    """Fit ``y = C x^slope`` by least squares on ``log x, log y`` (scipy ``linregress``).

    ``x``, ``y``: 1-D, same length, finite, strictly positive (nothing is dropped silently:
    a zero or negative value inside the fitted range raises). ``x_range`` (inclusive)
    restricts the fit. ``n_boot`` bootstrap resamples of the pairs (``scipy.stats.bootstrap``,
    seeded by ``seed``; 0 skips the bootstrap). Raises ``ValueError`` with what to do when
    fewer than 3 points remain.
    """
    x = check_array(x, "x", hint="power-law fits take one 1-D series")
    y = check_array(y, "y", hint="power-law fits take one 1-D series")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    keep = np.ones(x.shape, dtype=bool)
    if x_range is not None:
        lo, hi = (float(v) for v in x_range)
        if not lo <= hi:
            raise ValueError(f"x_range must satisfy lo <= hi, got {x_range}")
        keep &= (x >= lo) & (x <= hi)
    bad = keep & ((x <= 0) | (y <= 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"a power law needs positive x and y; got x={x[k]:.6g}, y={y[k]:.6g} at index {k} "
            f"({int(bad.sum())} such point(s) in the fitted range): restrict x_range to the "
            "positive part (e.g. the ranks with non-zero variance) instead of dropping points"
        )
    n = int(keep.sum())
    if n < 3:
        raise ValueError(
            f"power-law fit needs at least 3 points in range {x_range}, got {n}; widen the "
            "range or record a longer trajectory"
        )
    lx, ly = np.log(x[keep]), np.log(y[keep])
    if np.ptp(lx) == 0:
        raise ValueError("all fitted x values are equal: a slope is undefined")
    reg = stats.linregress(lx, ly)
    r2 = float(reg.rvalue**2) if np.ptp(ly) > 0 else 1.0
    slope_err = float(reg.stderr) if n > 2 else float("nan")
    err_boot, ci = float("nan"), (float("nan"), float("nan"))
    if n_boot > 1:
        with warnings.catch_warnings():  # exact data: every resample gives the same slope
            warnings.simplefilter("ignore", getattr(stats, "DegenerateDataWarning", RuntimeWarning))
            warnings.simplefilter("ignore", RuntimeWarning)  # BCa acceleration 0/0 on exact data
            res = stats.bootstrap(
                (lx, ly),
                _slope,
                paired=True,
                vectorized=True,
                n_resamples=int(n_boot),
                method="BCa",
                **{_RNG_KW: np.random.default_rng(seed)},
            )
        dist = res.bootstrap_distribution
        dist = dist[np.isfinite(dist)]  # a resample with one distinct x has no slope
        if dist.size > 1:
            err_boot = float(np.std(dist, ddof=1))
        ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    xs = x[keep]
    return PowerLawFit(
        slope=float(reg.slope),
        slope_err=slope_err,
        slope_err_boot=err_boot,
        intercept=float(reg.intercept),
        r2=r2,
        n_points=n,
        slope_ci_boot=ci,
        x_range=(float(xs.min()), float(xs.max())),
    )
