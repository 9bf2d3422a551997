"""sgdyn.theory.ensemble against brute force: every minibatch enumerated, explicit loops, and
synthetic Eq 9 profiles with known (M, theta, L0)."""

import itertools

import numpy as np
import pytest

from sgdyn.theory.ensemble import (
    active_temperature,
    diffusion_constants,
    ensemble_summary,
    fit_mlf_profiles,
    minibatch_moments,
    partition_moments,
    power_law_with_null,
)

RNG = np.random.default_rng(3)


def _enumerate(v, B):
    means = np.array([v[list(c)].mean(0) for c in itertools.combinations(range(len(v)), B)])
    return means.mean(0), means.var(0), (means**2).mean(0)


@pytest.mark.parametrize("n,B", [(7, 1), (7, 3), (8, 4), (9, 8), (6, 6)])
def test_without_replacement_moments_equal_enumeration_of_all_minibatches(n, B):
    v = RNG.standard_normal((n, 3)) * np.array([1.0, 5.0, 0.1]) + np.array([0.0, 2.0, -1.0])
    m = minibatch_moments(v, B)
    mean, var, sec = _enumerate(v, B)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(m.var, var, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(m.second_moment, sec, rtol=1e-10)
    m1 = minibatch_moments(v[:, 1], B)  # 1-D input
    assert float(m1.var) == pytest.approx(var[1], rel=1e-10, abs=1e-15)


def test_diffusion_and_temperature_are_the_enumerated_variances():
    v = RNG.standard_normal((8, 2))
    _, var, _ = _enumerate(v, 3)
    np.testing.assert_allclose(diffusion_constants(v, 0.1, batch_size=3), 0.01 * var, rtol=1e-10)
    np.testing.assert_allclose(active_temperature(v, 0.1, batch_size=3), 0.05 * var, rtol=1e-10)


def test_partition_moments_equal_an_explicit_loop_over_the_batches():
    v = RNG.standard_normal((12, 2))
    b = np.array([[0, 5, 7], [1, 2, 3], [11, 4, 9], [6, 8, 10]])
    mb = np.array([[v[i].mean(0) for i in [row]][0] for row in b])
    loop = np.array([[np.mean([v[i, k] for i in row]) for k in range(2)] for row in b])
    np.testing.assert_allclose(mb, loop)
    m = partition_moments(v, b)
    np.testing.assert_allclose(m.mean, loop.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.var, ((loop - loop.mean(0)) ** 2).mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        diffusion_constants(v, 0.5, batches=b), 0.25 * loop.var(0), rtol=1e-12
    )


def test_one_direction_eq9_fit_recovers_known_parameters():
    a = np.linspace(-0.3, 0.3, 9)
    M = RNG.uniform(5, 50, (20, 3))
    th = RNG.normal(0, 0.05, (20, 3))
    L0 = RNG.uniform(0.01, 0.1, (20, 3))
    prof = L0[..., None] * np.exp(0.5 * M[..., None] * (a**2 - 2 * a * th[..., None]))
    fit = fit_mlf_profiles(a, prof)
    np.testing.assert_allclose(fit.M, M, rtol=1e-8)
    np.testing.assert_allclose(fit.theta, th, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(fit.L0, L0, rtol=1e-8)
    assert np.max(fit.rms) < 1e-10
    # one amplitude row per direction
    a2 = np.stack([a, 2 * a, 0.5 * a])
    prof2 = L0[..., None] * np.exp(0.5 * M[..., None] * (a2**2 - 2 * a2 * th[..., None]))
    fit2 = fit_mlf_profiles(a2, prof2)
    np.testing.assert_allclose(fit2.M, M, rtol=1e-8)
    np.testing.assert_allclose(fit2.theta, th, rtol=1e-7, atol=1e-12)
    st = ensemble_summary(fit2.M, fit2.theta, fit2.L0)
    np.testing.assert_allclose(st.M0, M.mean(0), rtol=1e-8)
    np.testing.assert_allclose(st.sigma_theta2, th.var(0), rtol=1e-6)
    np.testing.assert_allclose(st.product, M.mean(0) ** 2 * th.var(0), rtol=1e-6)
    np.testing.assert_allclose(st.L0_sq_mean, (L0**2).mean(0), rtol=1e-8)


def test_power_law_with_null():
    x = np.geomspace(1, 10, 30)
    y = 3 * x**-2.0 * np.exp(0.01 * RNG.standard_normal(30))
    r = power_law_with_null(x, y, n_shuffle=100)
    assert r["exponent"] == pytest.approx(-2.0, abs=0.02)
    assert abs(r["null_shuffled_mean"]) < 3 * r["null_shuffled_sd"]
    assert r["null_p"] == 0.0 and r["err"] > 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: minibatch_moments(np.ones(5), 6), "batch_size"),
        (lambda: minibatch_moments(np.ones((2, 2, 2)), 1), "1-D or 2-D"),
        (lambda: partition_moments(np.ones(5), np.array([[0, 5]])), "sample indices"),
        (lambda: diffusion_constants(np.ones(5), 0.1), "exactly one"),
        (lambda: active_temperature(np.ones(5), -1.0, batch_size=2), "positive"),
        (lambda: fit_mlf_profiles(np.array([0.0, 0.0, 1.0]), np.ones(3)), "3 distinct"),
        (lambda: fit_mlf_profiles(np.linspace(-1, 1, 5), -np.ones(5)), "positive"),
        (lambda: fit_mlf_profiles(np.linspace(-1, 1, 5), np.ones(4)), "amplitude axis"),
        (lambda: ensemble_summary(np.ones((3, 2)), np.ones((3, 3)), np.ones((3, 2))), "one shape"),
    ],
)
def test_refusals(call, match):
    with pytest.raises(ValueError, match=match):
        call()
