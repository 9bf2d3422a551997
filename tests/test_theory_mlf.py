"""Random-landscape theory (Eqs 10-14, 16) against Monte-Carlo averages and closed forms."""

import numpy as np
import pytest
import torch

from sgdyn.simulator.ensemble import MLFEnsembleSpec, sample_dense
from sgdyn.theory import mlf
from sgdyn.theory.flatness import flatness_e_width, variance_flatness_exponent


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
    # mode 1: slope -M0_11 theta1_0 (Eq 10)
    lp = np.log(mlf.exact_mode_profile([-1e-3, 0.0, 1e-3], 0, spec.L0, **kw))
    assert (lp[2] - lp[0]) / 2e-3 == pytest.approx(-spec.M0[0] * spec.theta1_0, rel=1e-3)


def test_eq10_curvature_is_the_cumulant_of_the_sampled_ensemble(spec, draws):
    # d^2/dt^2 ln <L^mu(t e_i)> at t = 0 is <M^mu_ii> + Var((M^mu theta^mu)_i) (second
    # cumulant of the exponent's derivative; L^mu_0 factors out): an estimate from the
    # sampled ensemble that shares nothing with Eq 10's algebra. paper=False is exact; the
    # paper's form differs only by sigma_M,1^2 theta1_0^2 on mode 1.
    M, tm = draws.M.numpy(), draws.theta_mu.numpy()
    mc = np.einsum("nii->i", M) / M.shape[0] + np.einsum("nij,nj->ni", M, tm).var(0)
    exact = mlf.averaged_curvature(**spec.theory_kwargs(), paper=False)
    assert np.allclose(exact, mc, rtol=0.015)
    paper = mlf.averaged_curvature(**spec.theory_kwargs())
    assert np.allclose(paper[1:], mc[1:], rtol=0.015)
    assert paper[0] < exact[0]  # the omitted term is positive


def _independent_paper_ensemble(sigma_form, n=400_000, seed=5):
    """Monte-Carlo draws of an ensemble where the paper's Eqs 11 and 14 are exact
    (sigma_M = 0, theta1_0 = 0), sampled in plain numpy (not the simulator's sampler)."""
    rng = np.random.default_rng(seed)
    N = 4
    M0 = np.array([2.0, 1.0, 0.5, 0.25])
    sT = np.array([0.4, 0.6, 0.8, 1.0])
    r = np.array([0.5, 0.7, 0.9, 0.6])
    full = {"scalar": np.full((N, N), 0.45), "separable": np.outer(r, r),
            "matrix": rng.uniform(0.2, 0.7, (N, N))}[sigma_form]  # fmt: skip
    full = np.triu(full, 1) + np.triu(full, 1).T  # symmetric, diagonal unused
    Z = rng.standard_normal((n, N, N))
    Z = np.triu(Z, 1)
    Mmu = (Z + Z.transpose(0, 2, 1)) * full + np.diag(M0)
    th = rng.standard_normal((n, N)) * sT
    L0mu = np.where(rng.random(n) < 0.5, 0.01, 0.03)  # <L0^2> = (1e-4 + 9e-4) / 2
    arg = {"scalar": 0.45, "separable": r, "matrix": full}[sigma_form]
    return M0, sT, arg, Mmu, th, L0mu, 5e-4


@pytest.mark.parametrize("form", ["scalar", "separable", "matrix"])
def test_paper_eq11_eq14_against_an_independent_ensemble(form):
    M0, sT, sig, Mmu, th, L0mu, L0sq = _independent_paper_ensemble(form)
    # Eq 11: minima theta~_i = theta_i + sum_{j != i} M_ij theta_j / M_ii
    diag = np.einsum("nii->ni", Mmu)
    tmin = th + (np.einsum("nij,nj->ni", Mmu, th) - diag * th) / diag
    eq11 = mlf.min_position_variance(M0, sig, sT)
    assert np.allclose(eq11, tmin.var(0), rtol=0.012)
    # Eq 14: v_i = alpha L^mu_0 (M^mu theta^mu)_i, D_i = <v_i^2>
    alpha = 0.3
    v = alpha * L0mu[:, None] * np.einsum("nij,nj->ni", Mmu, th)
    eq14 = mlf.diffusion_constant(alpha, L0sq, M0, sig, sT)
    assert np.allclose(eq14, (v**2).mean(0), rtol=0.02)
    # the off-diagonal sums carry a large share here, so dropping them cannot pass
    assert np.all(np.abs(eq11 - sT**2) / eq11 > 0.1)
    assert np.all(np.abs(eq14 - alpha**2 * L0sq * M0**2 * sT**2) / eq14 > 0.1)


def test_paper_eq11_eq14_by_explicit_loops():
    # the per-element sums written out, from the full sigma_ij matrix
    rng = np.random.default_rng(7)
    N = 6
    M0, sT, r = rng.uniform(0.2, 2, N), rng.uniform(0.1, 1, N), rng.uniform(0.1, 1, N)
    sig = np.outer(r, r)
    alpha, L0sq = 0.2, 3e-4
    eq11 = [sT[i] ** 2 + sum((sig[i, j] * sT[j]) ** 2 for j in range(N) if j != i) / M0[i] ** 2
            for i in range(N)]  # fmt: skip
    eq14 = []
    for i in range(N):
        acc = (M0[i] * sT[i]) ** 2
        for j in range(N):
            if j != i:
                acc += (sig[i, j] * sT[j]) ** 2
        eq14.append(alpha**2 * L0sq * acc)
    for form in (r, sig):
        assert np.allclose(mlf.min_position_variance(M0, form, sT), eq11, rtol=1e-13)
        assert np.allclose(mlf.diffusion_constant(alpha, L0sq, M0, form, sT), eq14, rtol=1e-13)


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
    assert mlf.predicted_psi(D, F).psi == pytest.approx(2.0)
    tau = 1 / (0.01 * M0)
    assert mlf.predicted_psi(D * tau / 2, F).psi == pytest.approx(0.0, abs=1e-9)
    psi_eq = mlf.predicted_psi(mlf.equilibrium_variance(1e-3, 0.01, 8 / F**2), F)
    assert psi_eq.psi == pytest.approx(-2.0)
    assert type(psi_eq) is type(variance_flatness_exponent(D, F))  # issue 13.7


def test_eq16_against_boltzmann_quadrature_and_the_discrete_langevin_chain():
    from scipy.integrate import quad
    from scipy.linalg import solve_discrete_lyapunov

    T, L0, M = 2e-3, 0.05, np.array([0.5, 3.0, 40.0])
    var = mlf.equilibrium_variance(T, L0, M)
    for k, m in enumerate(M):  # <theta^2> under exp(-L(theta) / T), L = L0 (1 + m theta^2 / 2)
        w = lambda x, m=m: np.exp(-L0 * m * x**2 / (2 * T))  # noqa: E731
        lim = 12 * np.sqrt(T / (L0 * m))
        num = quad(lambda x, w=w: x**2 * w(x), -lim, lim, epsabs=0, epsrel=1e-12)[0]
        assert var[k] == pytest.approx(num / quad(w, -lim, lim, epsrel=1e-12)[0], rel=1e-8)
    # discrete update theta <- (1 - alpha L0 m) theta + sqrt(2 alpha T) xi: stationary
    # variance from the discrete Lyapunov equation
    alpha = 0.9
    A = np.diag(1 - alpha * L0 * M)
    P = solve_discrete_lyapunov(A, 2 * alpha * T * np.eye(3))
    assert np.allclose(mlf.equilibrium_variance(T, L0, M, alpha=alpha), np.diag(P), rtol=1e-10)
