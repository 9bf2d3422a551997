"""theory.flatness on analytic landscapes with known widths (Eq 7 form) and planted exponents."""

import numpy as np
import pytest
from scipy.optimize import brentq

from sgdyn.theory.flatness import (
    flatness_e_width,
    flatness_quadratic_fit,
    variance_flatness_exponent,
)


def _exp_quad(F, L0=0.05, shift=None):
    """L_k(a) = L0 exp(4 (a - s_k)^2 / F_k^2 - 4 s_k^2 / F_k^2): exactly Eq 7 (shifted)."""
    F = np.asarray(F, float)
    s = np.zeros_like(F) if shift is None else np.asarray(shift, float)
    return lambda a: L0 * np.exp(4 * ((a - s) ** 2 - s**2) / F**2)


def test_e_width_recovers_planted_widths_exp_of_quadratic():
    F = np.geomspace(0.03, 40.0, 25)
    res = flatness_e_width(_exp_quad(F), F.size, L0=0.05, tol=1e-7)
    assert res.converged.all()
    np.testing.assert_allclose(res.width, F, rtol=1e-6)
    np.testing.assert_allclose(res.right, F / 2, rtol=1e-6)
    np.testing.assert_allclose(res.left, -F / 2, rtol=1e-6)
    assert res.n_evals < 2 * (np.log2(1e3 / 1e-2) + 2 + 60)


def test_e_width_asymmetric_profile_closed_form():
    # ln L = ln L0 + b a + c a^2 crosses ln L0 + 1 at a = (-b +- sqrt(b^2 + 4c)) / (2c)
    b, c = np.array([0.5, -2.0, 3.0]), np.array([4.0, 1.0, 100.0])
    res = flatness_e_width(lambda a: 0.1 * np.exp(b * a + c * a**2), 3, L0=0.1, tol=1e-8)
    disc = np.sqrt(b**2 + 4 * c)
    np.testing.assert_allclose(res.right, (-b + disc) / (2 * c), rtol=1e-6)
    np.testing.assert_allclose(res.left, (-b - disc) / (2 * c), rtol=1e-6)
    np.testing.assert_allclose(res.width, disc / c, rtol=1e-6)


def test_e_width_other_factor_and_tolerance_is_respected():
    F = np.array([1.0, 2.0])
    # L <= 2 L0 region of exp(4a^2/F^2): |a| <= F sqrt(ln 2) / 2
    res = flatness_e_width(_exp_quad(F, L0=1.0), 2, L0=1.0, factor=2.0, tol=1e-3)
    exact = F * np.sqrt(np.log(2.0))
    assert np.all(np.abs(res.width - exact) <= 1e-3 * exact + 1e-12)


def test_interp_exact_for_exp_of_quadratic_in_few_calls():
    # ln L is linear in a^2 (Eq 7): the secant predicts the crossing exactly, so each side
    # takes a handful of batched calls, where bisection needs ~log2(1/tol) after bracketing
    F = np.geomspace(0.03, 40.0, 25)
    fn = _exp_quad(F)
    fast = flatness_e_width(fn, F.size, L0=0.05, init_step=0.05, tol=1e-3)
    slow = flatness_e_width(fn, F.size, L0=0.05, init_step=0.05, tol=1e-3, method="bisect")
    assert fast.converged.all() and slow.converged.all()
    np.testing.assert_allclose(fast.width, F, rtol=1e-12)  # the falsi point is exact here
    assert np.all(np.abs(slow.width - F) <= 1e-3 * F)
    assert fast.n_evals <= 16 and slow.n_evals >= 40


def _brent_crossings(lnL_minus_lnL0, n, hi=1e3):
    """Independent scalar reference: first crossing of ln L - ln L0 = 1 on each side."""
    out = np.empty((n, 2))
    for k in range(n):
        for j, sgn in enumerate((-1.0, 1.0)):
            g = lambda a, s=sgn, k=k: lnL_minus_lnL0(s * a, k) - 1.0  # noqa: E731
            grid = np.geomspace(1e-4, hi, 4000)
            i = int(np.flatnonzero(np.array([g(x) for x in grid]) >= 0)[0])
            out[k, j] = sgn * brentq(g, grid[i - 1], grid[i], xtol=1e-14, rtol=1e-14)
    return out


@pytest.mark.parametrize("method", ["interp", "bisect"])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_crossings_within_tol_on_non_quadratic_profiles(method, tol):
    # linear term as along PC1 (the loss first falls on one side), a quartic term, a
    # saturating profile (ln L concave in a^2) and a very steep one (convex): every
    # reported crossing must lie within tol (relative) of the true one
    rng = np.random.default_rng(0)
    n = 12
    b = rng.uniform(-3, 3, n)
    c = rng.uniform(0.05, 20, n)
    q = rng.uniform(0, 2, n) * (np.arange(n) % 2)
    prof = [
        lambda a, k: b[k] * a + c[k] * a**2 + q[k] * a**4,
        lambda a, k: np.log1p(c[k] * a**2),  # L = L0 (1 + c a^2): crossing sqrt((e-1)/c)
        lambda a, k: (a / (0.1 + 0.3 * k)) ** 6 - 0.5 * b[k] * a,
    ]
    for p in prof:
        fn = lambda a, p=p: 0.3 * np.exp(np.array([p(a[k], k) for k in range(n)]))  # noqa: E731
        with np.errstate(over="ignore"):  # 8x jumps may overflow: they fall back to doubling
            res = flatness_e_width(fn, n, L0=0.3, init_step=0.05, tol=tol, method=method)
        ref = _brent_crossings(p, n)
        assert res.converged.all(), res.message
        assert np.all(np.abs(res.left - ref[:, 0]) <= tol * np.abs(ref[:, 0]))
        assert np.all(np.abs(res.right - ref[:, 1]) <= tol * ref[:, 1])
    sat = np.sqrt((np.e - 1) / c)  # closed form of the saturating profile
    np.testing.assert_allclose(_brent_crossings(prof[1], n)[:, 1], sat, rtol=1e-12)


def test_jump_into_overflow_falls_back_to_doubling():
    # exp((a/s)^12) overflows to inf an 8x jump past the crossing (a = s) but not at
    # 2x: the secant bracketing retries by doubling instead of raising; doubling itself
    # meeting a non-finite loss still raises
    s = np.array([0.3, 1.0, 3.0])
    with np.errstate(over="ignore"):
        fn = lambda a: np.exp((a / s) ** 12)  # noqa: E731
        res = flatness_e_width(fn, 3, L0=1.0, init_step=0.01, tol=1e-6)
        np.testing.assert_allclose(res.right, s, rtol=1e-6)
        np.testing.assert_allclose(res.left, -s, rtol=1e-6)
        with pytest.raises(ValueError, match="non-finite loss"):
            flatness_e_width(lambda a: np.exp((a / s) ** 2000), 3, L0=1.0, init_step=0.01)


def test_pc1_like_linear_term_closed_form_and_methods_agree():
    # ln L = ln L0 - beta a + c a^2 (Eq S5 with a linear drift term): crossings
    # a = (beta +- sqrt(beta^2 + 4 c)) / (2 c); the loss dips below L0 for 0 < a < beta / c
    beta, c = np.array([0.6, 2.0, 5.0]), np.array([0.08, 0.5, 1.0])
    fn = lambda a: 0.02 * np.exp(-beta * a + c * a**2)  # noqa: E731
    disc = np.sqrt(beta**2 + 4 * c)
    for method in ("interp", "bisect"):
        res = flatness_e_width(fn, 3, L0=0.02, init_step=0.05, tol=1e-6, method=method)
        np.testing.assert_allclose(res.right, (beta + disc) / (2 * c), rtol=1e-6)
        np.testing.assert_allclose(res.left, (beta - disc) / (2 * c), rtol=1e-6)


def test_call_count_bound_on_crawling_profile():
    # ln L concave in a^2 and very flat: secant predictions keep falling short
    fn = lambda a: np.exp(0.25 * np.log1p(a**2 / 1e2))  # noqa: E731  L0 = 1
    tol, init, amax, max_iter = 1e-6, 1e-2, 1e6, 60
    res = flatness_e_width(fn, 1, L0=1.0, init_step=init, max_amplitude=amax, tol=tol)
    exact = np.sqrt(1e2 * (np.e**4 - 1))
    assert abs(res.right[0] - exact) <= tol * exact
    assert res.n_evals <= 2 * (np.log2(amax / init) + np.log(1 / tol) / np.log(4) + 4 + max_iter)


@pytest.mark.parametrize("method", ["interp", "bisect"])
def test_unbounded_profile_raises_or_flags_no_hang(method):
    F = np.array([1.0, np.inf, 2.0])
    fn = lambda a: 0.2 * np.exp(4 * a**2 / F**2)  # noqa: E731  (direction 1 is flat)
    with pytest.raises(ValueError, match=r"never reached .*max_amplitude"):
        flatness_e_width(fn, 3, L0=0.2, max_amplitude=50.0, method=method)
    res = flatness_e_width(fn, 3, L0=0.2, max_amplitude=50.0, on_unbounded="flag", method=method)
    assert not res.converged[1] and np.isnan(res.width[1])
    np.testing.assert_allclose(res.width[[0, 2]], [1.0, 2.0], rtol=1e-3)
    assert "1 direction" in res.message


@pytest.mark.parametrize("method", ["interp", "bisect"])
def test_non_finite_loss_raises(method):
    def fn(a):
        out = np.exp(a**2)
        out[1] = np.nan if abs(a[1]) > 0.5 else out[1]
        return out

    with pytest.raises(ValueError, match="non-finite loss .* direction 1"):
        flatness_e_width(fn, 2, L0=1.0, method=method)


def test_profile_fn_wrong_length_and_bad_args():
    with pytest.raises(ValueError, match="returned 1 losses for 2"):
        flatness_e_width(lambda a: np.ones(1), 2, L0=1.0)
    with pytest.raises(ValueError, match="L0 must be positive"):
        flatness_e_width(lambda a: np.ones(2), 2, L0=0.0)
    with pytest.raises(ValueError, match="tol"):
        flatness_e_width(lambda a: np.ones(2), 2, L0=1.0, tol=2.0)
    with pytest.raises(ValueError, match="method must be"):
        flatness_e_width(lambda a: np.ones(2), 2, L0=1.0, method="newton")


def test_quadratic_fit_recovers_F_and_slope():
    F = np.array([0.5, 3.0, 10.0])
    a = np.linspace(-0.2, 0.2, 41)
    beta = np.array([0.0, 0.3, -1.0])
    L = 0.07 * np.exp(beta[:, None] * a + 4 * a**2 / F[:, None] ** 2)
    q = flatness_quadratic_fit(a, L, 0.07)
    np.testing.assert_allclose(q.F, F, rtol=1e-9)
    np.testing.assert_allclose(q.slope, beta, atol=1e-9)
    np.testing.assert_allclose(q.r2, 1.0, atol=1e-9)
    q2 = flatness_quadratic_fit(a, L, 1.0, fix_intercept=False, window=0.1)
    np.testing.assert_allclose(q2.F, F, rtol=1e-9)
    np.testing.assert_allclose(q2.intercept, np.log(0.07), atol=1e-9)
    assert (q2.n_points == 21).all()


def test_quadratic_fit_agrees_with_e_width_on_exact_form_and_bad_inputs():
    F = np.array([0.8, 1.7])
    fn = _exp_quad(F, L0=0.3)
    a = np.linspace(-0.3, 0.3, 13)
    L = np.stack([fn(np.full(2, x)) for x in a], axis=1)
    q = flatness_quadratic_fit(a, L, 0.3)
    e = flatness_e_width(fn, 2, L0=0.3, tol=1e-8)
    np.testing.assert_allclose(q.F, e.width, rtol=1e-6)
    with pytest.raises(ValueError, match="positive and finite"):
        flatness_quadratic_fit(a, -L, 0.3)
    with pytest.raises(ValueError, match="needs >= 3"):
        flatness_quadratic_fit(a, L, 0.3, window=0.01)


def test_variance_flatness_exponent_recovers_planted_psi():
    rng = np.random.default_rng(1)
    F = np.geomspace(1.0, 30.0, 60)
    var = 2e-3 * F**-4.0 * np.exp(0.05 * rng.standard_normal(F.size))
    fit = variance_flatness_exponent(var, F)
    assert abs(fit.psi - 4.0) < 3 * fit.psi_err + 0.02
    assert 0 < fit.psi_err < 0.1 and fit.n_points == 60
    # equilibrium: sigma^2 ~ T F^2 -> psi = -2
    eq = variance_flatness_exponent(0.01 * F**2, F)
    assert abs(eq.psi + 2.0) < 1e-9
    m = np.arange(F.size) >= 10
    assert variance_flatness_exponent(var, F, mask=m).n_points == 50
    with pytest.raises(ValueError, match="same length"):
        variance_flatness_exponent(var[:-1], F)
