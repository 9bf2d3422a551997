"""Ensemble specs, presets, sampler, schedule, integrators and the finite-ensemble landscape."""

import numpy as np
import pytest
import torch

from sgdyn.landscape import Landscape
from sgdyn.simulator.ensemble import MinibatchSchedule, MLFEnsembleSpec, sample_dense
from sgdyn.simulator.integrators import SimulationDiverged, simulate
from sgdyn.simulator.landscape import MLFLandscape
from sgdyn.simulator.presets import from_profiles, get_preset, paper_like
from sgdyn.theory import fit_power_law, mlf


def test_invalid_specs_raise_clear_errors():
    ok = dict(M0=[1.0, 2.0], sigma_M=[0.1, 0.1], sigma_theta=[0.1, 0.2])
    MLFEnsembleSpec(**ok)
    with pytest.raises(ValueError, match="standard deviations"):
        MLFEnsembleSpec(**{**ok, "sigma_theta": [0.1, -0.2]})
    with pytest.raises(ValueError, match="one entry per mode"):
        MLFEnsembleSpec(**{**ok, "sigma_M": [0.1, 0.1, 0.1]})
    with pytest.raises(ValueError, match="positive"):
        MLFEnsembleSpec(**{**ok, "M0": [1.0, 0.0]})
    with pytest.raises(ValueError, match="sigma_off"):
        MLFEnsembleSpec(**ok, sigma_off=-1.0)
    big = MLFEnsembleSpec(M0=np.ones(5000), sigma_M=np.zeros(5000), sigma_theta=np.ones(5000))
    with pytest.raises(ValueError, match="too large"):
        sample_dense(big, 1)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")


def test_paper_like_preset_has_fig3b_scalings():
    spec = paper_like(N=25, F_min=1.0, F_max=8.0)
    kw = spec.theory_kwargs()
    F = mlf.flatness_from_curvature(mlf.averaged_curvature(**kw))
    assert np.allclose(F, np.geomspace(1, 8, 25))
    st2 = mlf.min_position_variance(spec.M0, spec.s, spec.sigma_theta, spec.theta1_0)
    assert fit_power_law(F[1:], np.sqrt(st2[1:]), n_boot=0).slope == pytest.approx(1, abs=0.02)
    assert fit_power_law(F, spec.M0, n_boot=0).slope == pytest.approx(-2, abs=1e-6)
    # M^mu stays positive definite for typical draws
    M = sample_dense(spec, 50, seed=0).M
    assert float(torch.linalg.eigvalsh(M).min()) > 0
    fp = from_profiles(spec.M0, spec.sigma_M, spec.sigma_theta, sigma_off=0.01)
    assert fp.name == "from-profiles" and fp.N == 25


def test_sampler_moments():
    spec = paper_like(N=6)
    d = sample_dense(spec, 100_000, seed=2)
    diag = torch.diagonal(d.M, dim1=1, dim2=2).numpy()
    assert np.allclose(diag.mean(0), spec.M0, rtol=0.01)
    assert np.allclose(diag.std(0), spec.sigma_M, rtol=0.02)
    off = d.M[:, 1, 4].numpy()
    assert off.std() == pytest.approx(spec.s[1] * spec.s[4], rel=0.02)
    assert torch.equal(d.M, d.M.transpose(1, 2))
    th = d.theta_mu.numpy()
    assert th[:, 0].mean() == pytest.approx(spec.theta1_0, abs=0.01)
    assert np.allclose(th.std(0), spec.sigma_theta, rtol=0.02)
    L = d.L0mu.numpy()
    assert L.mean() == pytest.approx(spec.L0, rel=0.01)
    assert (L**2).mean() == pytest.approx(spec.L0_sq_mean, rel=0.02)


def test_schedule_samples_without_replacement_per_epoch():
    s = MinibatchSchedule(3, 5, seed=0)
    ep = torch.stack([s.next() for _ in range(5)])
    assert all(sorted(ep[:, r].tolist()) == list(range(5)) for r in range(3))
    fresh = MinibatchSchedule(2, None)
    assert fresh.next().tolist() == [0, 1] and fresh.next().tolist() == [2, 3]


def test_landscape_protocol_and_gradients():
    spec = paper_like(N=6)
    land = MLFLandscape(spec, 16, seed=1, dtype=torch.float64)
    assert isinstance(land, Landscape)
    w = torch.randn(6, dtype=torch.float64) * 0.05
    full = land.full_loss(w)
    mean = torch.stack([land.minibatch_loss_and_grad(w, m)[0] for m in range(16)]).mean()
    assert float(full) == pytest.approx(float(mean), rel=1e-10)
    L, g = land.minibatch_loss_and_grad(w, 3)
    wr = w.clone().requires_grad_(True)
    M = land.M_cache[3]
    tm = land.theta_mu[3]
    Lref = land.L0mu[3] * torch.exp(0.5 * wr @ M @ wr - wr @ M @ tm)  # Eq 9
    Lref.backward()
    assert float(L) == pytest.approx(float(Lref.detach()), rel=1e-10)
    assert torch.allclose(g, wr.grad, rtol=1e-8)
    d = torch.eye(6, dtype=torch.float64)[:2]
    prof = land.losses_along(w, d, torch.tensor([[0.1], [-0.2]], dtype=torch.float64))
    assert float(prof[1, 0]) == pytest.approx(float(land.full_loss(w - 0.2 * d[1])), rel=1e-10)
    proj = land.per_sample_projections(w, d)
    assert proj.shape == (16, 2)
    assert torch.allclose(proj[3], g @ d.T)


def test_linear_dynamics_matches_exact_ou_window_variance():
    spec = paper_like(N=6, F_min=1, F_max=2)
    alpha = 2.0
    tau = mlf.relaxation_time(alpha, spec.L0, spec.M0)
    D = mlf.diffusion_constant(alpha, spec.L0_sq_mean, spec.M0, spec.s, spec.sigma_theta,
                               spec.theta1_0, spec.sigma_M, spec.L0, paper=False)  # fmt: skip
    T = 60
    r = simulate(spec, dynamics="linear", alpha=alpha, n_steps=T, n_replicas=600, seed=4)
    var = r.theta.var(axis=0).mean(0)
    pred = mlf.ou_window_variance(D, tau, T, start="origin")
    assert np.allclose(var[1:], pred[1:], rtol=0.12)


def test_langevin_gives_equilibrium_eq16():
    spec = paper_like(N=5, F_min=1, F_max=3)
    M = mlf.averaged_curvature(**spec.theory_kwargs())
    alpha, temp = 4.0, 1e-4
    Lmin = mlf.averaged_loss_minimum(spec.L0, spec.M0[0], M[0], spec.theta1_0)
    tau = mlf.relaxation_time(alpha, Lmin, M)
    burn = int(5 * tau.max())
    r = simulate(spec, dynamics="langevin", alpha=alpha, n_steps=burn + 3000, temperature=temp,
                 n_replicas=64, seed=5)  # fmt: skip
    var = r.theta[burn:].var(axis=0).mean(0)
    pred = mlf.window_variances(2 * alpha * temp, tau, 3000)["exact"]
    assert np.allclose(var[1:], pred[1:], rtol=0.1)
    assert np.allclose(pred, mlf.equilibrium_variance(temp, Lmin, M, alpha=alpha), rtol=0.03)
    assert var[-1] > var[1]  # flatter -> larger variance in equilibrium (Eq 16)


def test_finite_ensemble_sgd_runs_and_diverging_step_is_reported():
    spec = paper_like(N=6)
    land = MLFLandscape(spec, 8, seed=0)
    r = simulate(spec, dynamics="sgd", alpha=0.25, n_steps=20, n_replicas=4, landscape=land)
    assert r.theta.shape == (20, 4, 6) and np.isfinite(r.theta).all()
    with pytest.raises(SimulationDiverged, match="lower alpha"):
        simulate(spec, dynamics="sgd", alpha=500.0, n_steps=200, n_replicas=4, check_every=10)
    with pytest.raises(SimulationDiverged, match="diverged"):
        simulate(spec, dynamics="linear", alpha=1e4, n_steps=400, n_replicas=2)
    with pytest.raises(ValueError, match="temperature"):
        simulate(spec, dynamics="langevin", alpha=0.1, n_steps=2)


def test_diverged_message_states_the_condition_that_failed():
    spec = paper_like(N=6)
    stiff = 500.0 * spec.L0 * spec.M0.max()  # alpha L0 max M_ii
    with pytest.raises(SimulationDiverged) as e:
        simulate(spec, dynamics="sgd", alpha=500.0, n_steps=200, n_replicas=4, check_every=10)
    msg = str(e.value)
    assert f"alpha L0 max M_ii = {stiff:.3g} >= 2" in msg
    assert f"lower alpha below {2 * 500.0 / stiff:.3g}" in msg
    # a stable mean step (alpha L0 M < 2) that still leaves the allowed exponent
    with pytest.raises(SimulationDiverged) as e:
        simulate(spec, dynamics="sgd", alpha=0.25, n_steps=50, n_replicas=4, check_every=10,
                 max_exponent=1e-6)  # fmt: skip
    msg = str(e.value)
    assert "MLF exponent reached" in msg and "max_exponent=1e-06" in msg and "< 2" in msg
    assert "non-finite" not in msg
    with pytest.raises(SimulationDiverged) as e:
        simulate(spec, dynamics="linear", alpha=1e4, n_steps=400, n_replicas=2)
    msg = str(e.value)
    assert "became non-finite" in msg and ">= 2" in msg and "MLF exponent" not in msg
