"""Spectrum estimators (Fig 1A-B) against planted power laws and explicit sums."""

import numpy as np
import pytest

from sgdyn.theory import (
    cumulative_variance_excl_pc1,
    fit_power_law,
    n_for_fraction,
    spectrum_summary,
)


@pytest.mark.parametrize("gamma", [1.5, 2.6, 4.0])
def test_gamma_recovers_planted_exponent(gamma):
    rng = np.random.default_rng(1)
    i = np.arange(1, 1001)
    v = 3.0 * i ** (-gamma) * np.exp(0.05 * rng.standard_normal(i.size))
    v[0] *= 50  # a PC1 outlier must not matter for the 20-200 fit
    s = spectrum_summary(v, rank_range=(20, 200))
    assert abs(s.gamma - gamma) < 3 * s.gamma_err_boot + 0.02
    assert s.gamma_err > 0 and s.gamma_err_boot > 0
    assert s.gamma_r2 > 0.98


def test_fit_power_law_matches_numpy_polyfit():
    rng = np.random.default_rng(0)
    x = np.linspace(1, 50, 40)
    y = 2.0 * x**-1.3 * np.exp(0.1 * rng.standard_normal(x.size))
    fit = fit_power_law(x, y)
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)
    # OLS standard error from numpy's covariance estimate
    _, cov = np.polyfit(np.log(x), np.log(y), 1, cov="unscaled")
    resid = np.log(y) - (slope * np.log(x) + intercept)
    se = np.sqrt(cov[0, 0] * resid @ resid / (x.size - 2))
    assert fit.slope_err == pytest.approx(se, rel=1e-8)


def test_cumulative_and_n90_by_hand():
    v = np.array([100.0, 5, 3, 1, 0.5, 0.5])
    c = cumulative_variance_excl_pc1(v)
    assert np.allclose(c, np.cumsum([5, 3, 1, 0.5, 0.5]) / 10.0)
    # PCs 2..3 carry 80 %, 2..4 carry 90 %
    assert n_for_fraction(v, 0.9) == 4
    assert n_for_fraction(v, 0.8) == 3
    assert n_for_fraction(v[::-1], 0.9) == 4  # order of input does not matter


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="at least 3"):
        fit_power_law([1, 2], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        spectrum_summary([1.0, np.nan, 0.5])
    with pytest.raises(ValueError, match="rank_range"):
        spectrum_summary(np.ones(10), rank_range=(5, 2))
    with pytest.raises(ValueError, match="did not move"):
        cumulative_variance_excl_pc1([1.0, 0.0, 0.0])
