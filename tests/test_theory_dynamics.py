"""Drift vs diffusion numbers on processes with known answers."""

import numpy as np

from sgdyn.theory import drift_diffusion, velocity_autocorrelation


def test_drift_vs_random_walk():
    rng = np.random.default_rng(0)
    T = 4000
    walk = np.cumsum(rng.standard_normal(T))
    drift = 2.0 * np.arange(T) + np.cumsum(rng.standard_normal(T))
    dd = drift_diffusion(np.stack([drift, walk], axis=1), block=1)
    assert abs(dd.drift_velocity[0] - 2.0) < 0.05
    # random walk: |net| / rms path ~ |N(0,1)|, drift: ~ sqrt(T) * v / sqrt(1 + v^2)
    assert dd.drift_ratio[0] > 20 and dd.drift_ratio[1] < 4
    # non-centred velocity ACF of the drift plateaus at v^2 / (v^2 + 1) = 0.8 > 1/e
    assert dd.censored[0] and not dd.censored[1]
    assert dd.corr_time_steps[1] == 1
    assert abs(dd.diffusion[1] - 1.0) < 0.1


def test_ar1_velocity_correlation_time():
    rng = np.random.default_rng(1)
    phi, T = 0.9, 50000
    v = np.zeros(T)
    for t in range(1, T):
        v[t] = phi * v[t - 1] + rng.standard_normal()
    theta = np.cumsum(v)
    acf = velocity_autocorrelation(theta, max_lag=30)
    assert np.allclose(acf[:10, 0], phi ** np.arange(10), atol=0.05)
    dd = drift_diffusion(theta)
    # first lag with phi^k < 1/e: k = ceil(1 / -ln phi) = 10
    assert dd.corr_time_steps[0] == 10
