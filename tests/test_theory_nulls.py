"""Random-walk null models (theory.nulls) and the increment drift test (theory.dynamics)."""

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.decomposition import PCA

from sgdyn.theory import drift_diffusion, spectrum_summary
from sgdyn.theory.dynamics import drift_test, drift_test_from_gram
from sgdyn.theory.nulls import (
    DIAGNOSTICS,
    gram_diagnostics,
    increment_spectrum,
    limit_diagnostics,
    random_walk_gram,
    random_walk_null,
    random_walk_pca_limit,
    trajectory_diagnostics,
)


def test_limit_is_the_eigensystem_of_the_centred_walk_covariance():
    # independent reference: eigh of C min(s, t) C for a discrete walk started at x_0 = 0
    T = 40
    s = np.arange(T)
    C = np.eye(T) - 1.0 / T
    lam, U = np.linalg.eigh(C @ np.minimum.outer(s, s).astype(float) @ C)
    lam, U = lam[::-1][: T - 1], U[:, ::-1]
    var, theta = random_walk_pca_limit(T, 5)
    assert np.allclose(var * (T - 1), lam, rtol=1e-10)
    # theta_k = U_k sqrt(lam_k) up to sign
    for k in range(5):
        ref = U[:, k] * np.sqrt(lam[k])
        assert min(np.abs(theta[:, k] - ref).max(), np.abs(theta[:, k] + ref).max()) < 1e-8
    assert var[0] / var[1] == pytest.approx(4.0, rel=0.01)


def test_random_walk_gram_has_the_walk_covariance():
    # E[G_st] = (sum of increment variances) min(s, t): average of many draws
    rng = np.random.default_rng(0)
    T, R = 6, 1500
    s = np.arange(T)
    target = np.minimum.outer(s, s).astype(float)

    def check(draws, total):
        draws = np.asarray(draws) / total
        se = draws.std(0, ddof=1) / np.sqrt(R) + 1e-12
        assert np.all(np.abs(draws.mean(0) - target) < 4.5 * se)

    check([random_walk_gram(T, 3, rng=rng) for _ in range(R)], 3)
    check([random_walk_gram(T, 40, rng=rng) for _ in range(R)], 40)  # Bartlett path
    d = np.array([2.0, 0.5, 0.0, 0.25])
    check([random_walk_gram(T, increment_variances=d, rng=rng) for _ in range(R)], d.sum())


def test_gram_diagnostics_match_sklearn_pca_of_the_explicit_trajectory():
    rng = np.random.default_rng(1)
    T, N, block, k = 80, 30, 2, 10
    X = np.cumsum(rng.standard_normal((T, N)) * rng.uniform(0.2, 2, N), axis=0)
    X[:, 0] += 0.3 * np.arange(T)  # some drift
    got = gram_diagnostics(X @ X.T, block=block, n_modes=k, rank_range=(2, 20))
    pca = PCA().fit(X)
    spec = spectrum_summary(pca.explained_variance_[: T - 1], rank_range=(2, 20))
    dd = drift_diffusion(pca.transform(X)[:, :k], block=block)
    assert got["var1_over_var2"] == pytest.approx(spec.var1_over_var2, rel=1e-9)
    assert got["gamma"] == pytest.approx(spec.gamma, rel=1e-9)
    assert got["n90_excl_pc1"] == spec.n90_excl_pc1
    assert got["pc1_drift_ratio"] == pytest.approx(dd.drift_ratio[0], rel=1e-8)
    assert got["modes_median_drift_ratio"] == pytest.approx(np.median(dd.drift_ratio[1:]), 1e-8)
    assert got["pc1_corr_time_steps"] == dd.corr_time_steps[0]
    assert set(got) == set(DIAGNOSTICS)


def test_finite_n_null_approaches_the_closed_form_for_n_much_larger_than_t():
    kw = dict(block=2, n_modes=12, rank_range=(3, 30))
    lim = limit_diagnostics(100, **kw)
    null = random_walk_null(100, 50_000, n_replicas=3, seed=1, **kw)
    for key in ("var1_over_var2", "gamma", "pc1_drift_ratio", "fraction_pc1"):
        assert null.mean[key] == pytest.approx(lim[key], rel=0.05), key
    assert abs(null.mean["n90_excl_pc1"] - lim["n90_excl_pc1"]) <= 1


def test_pca_of_a_random_walk_looks_like_drift_but_the_increment_test_does_not():
    # the issue's observation, reduced: PC1 of a pure random walk has a large drift ratio
    # (the run's "persistent drift") and var1/var2 ~ 4; the increment test stays null
    null = random_walk_null(300, 750, block=3, n_modes=30, rank_range=(5, 60), n_replicas=3)
    assert null.mean["pc1_drift_ratio"] > 5
    assert 3 < null.mean["var1_over_var2"] < 5.5
    assert abs(null.mean["drift_z"]) < 3


def test_drift_test_is_student_t_under_random_walks_and_detects_drift():
    rng = np.random.default_rng(2)
    T, N, block = 41, 20, 1
    zs = []
    for _ in range(300):
        scales = rng.uniform(0.1, 3.0, N)  # anisotropic: the null does not care
        G = random_walk_gram(T, increment_variances=scales, rng=rng)
        zs.append(drift_test_from_gram(G, block).z)
    dt = drift_test_from_gram(G, block)
    assert stats.kstest(zs, stats.t(dt.dof).cdf).pvalue > 0.01
    # power needs |drift|^2 (n/2) >> total noise variance: 2 per step along one of 20 axes
    X = np.cumsum(rng.standard_normal((T, N)), axis=0) + 2.0 * np.arange(T)[:, None] * (
        np.arange(N) == 0
    )
    res = drift_test(X, block)
    assert res.z > 4 and res.p_value < 1e-3
    assert res.z == pytest.approx(drift_test_from_gram(X @ X.T, block).z, rel=1e-10)
    tt = drift_test(torch.as_tensor(X), block)  # the Gram is formed in torch
    assert tt.z == pytest.approx(res.z, rel=1e-10)


def test_increment_spectrum_matches_numpy_cov():
    rng = np.random.default_rng(3)
    X = np.cumsum(rng.standard_normal((50, 8)) * np.arange(1, 9), axis=0) + np.arange(50)[:, None]
    ref = np.sort(np.linalg.eigvalsh(np.cov(np.diff(X, axis=0), rowvar=False)))[::-1]
    got = increment_spectrum(X)
    assert np.allclose(got[:8], ref, rtol=1e-10)
    assert got.shape == (49,) and np.all(got[8:] == 0)  # N < T: from the 8 x 8 scatter
    tg = increment_spectrum(torch.as_tensor(X))
    assert isinstance(tg, torch.Tensor) and np.allclose(tg.numpy()[:8], ref, rtol=1e-10)
    assert tg.shape == (49,) and bool((tg[8:] == 0).all())
    W = X[:6]  # N > T: from the (T - 1) x (T - 1) Gram; sklearn's PCA as the reference
    pca = PCA().fit(np.diff(W, axis=0))
    assert np.allclose(increment_spectrum(W)[:4], pca.explained_variance_[:4], rtol=1e-10)


def test_null_arguments_are_checked():
    with pytest.raises(ValueError, match="either n_features"):
        random_walk_null(50, block=1, n_modes=5, rank_range=(2, 10))
    with pytest.raises(ValueError, match="rank_range"):
        random_walk_null(50, 100, block=1, n_modes=5, rank_range=(2, 60))
    with pytest.raises(ValueError, match="non-negative"):
        random_walk_null(50, increment_variances=[1.0, -1.0], block=1, n_modes=5,
                         rank_range=(2, 10))  # fmt: skip
    with pytest.raises(ValueError, match="did not move"):
        drift_test(np.zeros((20, 3)), 1)


@pytest.mark.slow
def test_issue_sized_isotropic_null():
    # T = 1000, N = 2,500, blocks of 10 steps, 60 modes (the default run's shape)
    null = random_walk_null(1000, 2500, block=10, n_modes=60, rank_range=(20, 200), n_replicas=3)
    assert null.mean["pc1_drift_ratio"] == pytest.approx(8.9, abs=0.3)
    assert null.mean["modes_median_drift_ratio"] == pytest.approx(0.125, abs=0.02)
    assert null.mean["var1_over_var2"] == pytest.approx(4.0, abs=0.5)


def test_trajectory_diagnostics_equal_the_gram_form_at_o_t_n2():
    """The positions' N x N path (N < T) gives the Gram path's numbers; the drift test on
    the block endpoints only gives the full Gram's."""
    rng = np.random.default_rng(3)
    T, N, block, k = 400, 12, 5, 6
    X = np.cumsum(rng.standard_normal((T, N)) * rng.uniform(0.2, 2, N), axis=0)
    X[:, 0] += 0.05 * np.arange(T)
    kw = dict(block=block, n_modes=k, rank_range=(2, 10))
    got, ref = trajectory_diagnostics(X, **kw), gram_diagnostics(X @ X.T, **kw)
    assert set(got) == set(ref) == set(DIAGNOSTICS)
    for key in DIAGNOSTICS:
        assert got[key] == pytest.approx(ref[key], rel=1e-7, abs=1e-9), key
    dt = drift_test(X, block)
    full = drift_test_from_gram((X - X.mean(0)) @ (X - X.mean(0)).T, block)
    assert dt.block == block and dt.n_blocks == full.n_blocks
    assert dt.z == pytest.approx(full.z, rel=1e-9)
    assert dt.drift_ratio_full == pytest.approx(full.drift_ratio_full, rel=1e-9)


def test_anisotropic_null_draws_equal_the_gram_draws():
    """random_walk_null takes the same random draws as random_walk_gram, analysed in
    position form when the walk has fewer dimensions than snapshots."""
    T, d = 120, np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02])
    kw = dict(block=2, n_modes=4, rank_range=(2, 7))
    got = random_walk_null(T, increment_variances=d, n_replicas=2, seed=5, **kw)
    for r in range(2):
        G = random_walk_gram(T, increment_variances=d, rng=np.random.default_rng([5, 1, r]))
        ref = gram_diagnostics(G, **kw)
        for key in DIAGNOSTICS:
            assert got.replicas[key][r] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key
