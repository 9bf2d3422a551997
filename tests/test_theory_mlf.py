"""Random-landscape theory (Eqs 10-14, 16) against Monte-Carlo averages and closed forms."""

import numpy as np
import pytest
import torch

from sgdyn.simulator.ensemble import MLFEnsembleSpec, sample_dense
from sgdyn.theory import mlf
from sgdyn.theory.flatness import flatness_e_width


@pytest.fixture(scope="module")
def spec():
    rng = np.random.default_rng(0)
    N = 5
    M0 = np.array([2.0, 1.5, 1.0, 0.6, 0.3])
    return MLFEnsembleSpec(
        M0=M0, sigma_M=0.2 * M0, sigma_theta=0.3 / np.sqrt(M0), sigma_off=0.15,
        off_profile=rng.uniform(0.5, 1.0, N), theta1_0=0.3, L0=0.02, L0_cv=0.4,
    )  # fmt: skip


@pytest.fixture(scope="module")
def draws(spec):
    return sample_dense(spec, 200_000, seed=1)


def test_offdiag_sum_forms_agree():
    rng = np.random.default_rng(1)
    r, w = rng.uniform(0.1, 1, 6), rng.uniform(0, 2, 6)
    full = np.outer(r, r)
    loop = np.array([sum(full[i, j] ** 2 * w[j] for j in range(6) if j != i) for i in range(6)])
    assert np.allclose(mlf.offdiag_weighted_sum(r, w), loop)
    assert np.allclose(mlf.offdiag_weighted_sum(full, w), loop)
    assert np.allclose(mlf.offdiag_weighted_sum(0.3, w), 0.09 * (w.sum() - w))
    with pytest.raises(ValueError, match="length"):
        mlf.offdiag_weighted_sum(r[:3], w)


def test_eq10_is_the_second_order_of_the_exact_average(spec):
    kw = spec.theory_kwargs()
    M = mlf.averaged_curvature(**kw, paper=False)
    for i in range(1, spec.N):  # diffusive modes: no linear term
        h = 1e-3
        lp = np.log(mlf.exact_mode_profile([-h, 0.0, h], i, spec.L0, **kw))
        curv = (lp[0] - 2 * lp[1] + lp[2]) / h**2
        assert curv == pytest.approx(M[i], rel=1e-4)
    # mode 1: slope -M0_11 theta1_0 (Eq 10) plus the paper-omitted sigma_M^2 theta1_0^2 term
    lp = np.log(mlf.exact_mode_profile([-1e-3, 0.0, 1e-3], 0, spec.L0, **kw))
    assert (lp[2] - lp[0]) / 2e-3 == pytest.approx(-spec.M0[0] * spec.theta1_0, rel=1e-3)
    assert M[0] - mlf.averaged_curvature(**kw)[0] == pytest.approx(
        (spec.sigma_M[0] * spec.theta1_0) ** 2
    )


def test_exact_profile_matches_monte_carlo(spec, draws):
    kw = spec.theory_kwargs()
    for i in (1, 3):
        t = torch.tensor([0.2, -0.3], dtype=torch.float64)
        theta = torch.zeros(2, 1, spec.N, dtype=torch.float64)
        theta[:, 0, i] = t
        th = theta.expand(2, draws.M.shape[0], spec.N)
        M, tm = draws.M, draws.theta_mu
        X = 0.5 * torch.einsum("rni,nij,rnj->rn", th, M, th) - torch.einsum(
            "rni,nij,nj->rn", th, M, tm
        )
        mc = (draws.L0mu * torch.exp(X)).mean(1).numpy()
        ex = mlf.exact_mode_profile(t.numpy(), i, spec.L0, **kw)
        assert np.allclose(mc, ex, rtol=0.01)


def test_flatness_is_the_e_width_of_eq10(spec):
    kw = spec.theory_kwargs()
    M = mlf.averaged_curvature(**kw)
    F = mlf.flatness_from_curvature(M)
    th = lambda a: mlf.averaged_loss(np.diag(a), spec.L0, spec.M0, M, 0.0)  # noqa: E731
    res = flatness_e_width(th, spec.N, L0=spec.L0, tol=1e-7)
    assert np.allclose(res.width, F, rtol=1e-5)
    assert np.allclose(mlf.curvature_from_flatness(F), M)


def test_eq11_minimum_positions(spec, draws):
    M, tm = draws.M.numpy(), draws.theta_mu.numpy()
    d = np.einsum("nii->ni", M)
    tmin = tm + (np.einsum("nij,nj->ni", M, tm) - d * tm) / d
    var = tmin.var(0)
    ex = mlf.min_position_variance(
        spec.M0, spec.s, spec.sigma_theta, spec.theta1_0, spec.sigma_M, paper=False
    )
    assert np.allclose(var[1:], ex[1:], rtol=0.02)
    paper = mlf.min_position_variance(spec.M0, spec.s, spec.sigma_theta)
    assert np.all(paper[1:] <= ex[1:])  # the paper drops positive terms


def test_eq13_eq14_drift_and_diffusion(spec, draws):
    alpha = 0.5
    v = alpha * draws.L0mu[:, None] * torch.einsum("nij,nj->ni", draws.M, draws.theta_mu)
    v = v.numpy()
    assert v[:, 0].mean() == pytest.approx(
        mlf.drift_velocity(alpha, spec.L0, spec.M0[0], spec.theta1_0), rel=0.02
    )
    D = mlf.diffusion_constant(
        alpha, spec.L0_sq_mean, spec.M0, spec.s, spec.sigma_theta, spec.theta1_0,
        spec.sigma_M, spec.L0, paper=False,
    )  # fmt: skip
    assert np.allclose(v.var(0), D, rtol=0.03)
    Dp = mlf.diffusion_constant(alpha, spec.L0_sq_mean, spec.M0, spec.s, spec.sigma_theta)
    # paper's Eq 14 omits sigma_M^2 sigma_theta^2: low by about cv_M^2 = 4 %
    assert np.all(Dp[1:] < D[1:]) and np.all(Dp[1:] / D[1:] > 0.9)


def _ar1(rho, T, R, start, burn, rng):
    x = rng.normal(size=R) / np.sqrt(1 - rho**2) if start == "stationary" else np.zeros(R)
    for _ in range(burn):
        x = rho * x + rng.normal(size=R)
    out = np.empty((T, R))
    for t in range(T):
        x = rho * x + rng.normal(size=R)
        out[t] = x
    return out.var(0).mean()


@pytest.mark.parametrize(
    "tau,T,start,burn",
    [(40.0, 150, "stationary", 0), (500.0, 60, "origin", 0), (20.0, 80, "origin", 15),
     (4.0, 300, "stationary", 0)],
)  # fmt: skip
def test_ou_window_variance_vs_simulation(tau, T, start, burn):
    rng = np.random.default_rng(3)
    sim = _ar1(1 - 1 / tau, T, 6000, start, burn, rng)
    pred = mlf.ou_window_variance(2.0, tau, T, start=start, burn_in=burn) / 2.0
    assert sim == pytest.approx(float(pred), rel=0.03)


def test_ou_window_limits():
    D = 0.7
    assert mlf.ou_window_variance(D, 1e9, 50) == pytest.approx(D * (50**2 - 1) / 300, rel=1e-5)
    assert mlf.ou_window_variance(D, np.inf, 50, start="origin") == pytest.approx(
        D * (50**2 - 1) / 300
    )
    rho = 1 - 1 / 10
    assert mlf.ou_window_variance(D, 10.0, 200_000) == pytest.approx(D / (1 - rho**2), rel=1e-3)
    wv = mlf.window_variances(D, np.array([1e7, 10.0]), 100)
    assert wv["exact"][0] == pytest.approx(wv["diffusive"][0], rel=1e-4)
    assert mlf.ou_window_variance(D, 5.0, 10, ddof=1) == pytest.approx(
        mlf.ou_window_variance(D, 5.0, 10) * 10 / 9
    )
    with pytest.raises(ValueError):
        mlf.ou_window_variance(D, 0.5, 10)


def test_predicted_exponents_follow_scalings():
    F = np.geomspace(1, 10, 20)
    M0 = 4 / F**2  # Fig 3B: M0 ~ F^-2, sigma~ ~ F
    D = M0**2 * F**2
    psi, _ = mlf.predicted_psi(D, F)
    assert psi == pytest.approx(2.0)
    tau = 1 / (0.01 * M0)
    psi_stat, _ = mlf.predicted_psi(D * tau / 2, F)
    assert psi_stat == pytest.approx(0.0, abs=1e-9)
    var_eq = mlf.equilibrium_variance(1e-3, 0.01, 8 / F**2)
    assert np.allclose(var_eq, 1e-3 * F**2 / (8 * 0.01))  # Eq 16: T F^2 / (8 L0)
    psi_eq, _ = mlf.predicted_psi(var_eq, F)
    assert psi_eq == pytest.approx(-2.0)
