"""The from-network preset recovers the MLF ensemble it was measured on (through the
Landscape protocol), and the simulator-from-network study runs its variants."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from sgdyn.simulator.ensemble import MLFEnsembleSpec, sample_dense
from sgdyn.simulator.from_network import (
    MeasuredMLFLandscape,
    fit_separable_offdiag,
    from_network,
)
from sgdyn.simulator.landscape import MLFLandscape
from sgdyn.simulator.presets import get_preset, paper_like
from sgdyn.theory import mlf
from sgdyn.validation.studies.suite.ensemble import measure_minibatch_ensemble
from sgdyn.validation.studies.suite.sim_network import VARIANTS, simulate_from_network

N_MU = 1500


def _measure(spec, seed=3):
    land = MLFLandscape(spec, N_MU, seed=seed, dtype=torch.float64)
    eye = torch.eye(spec.N, dtype=torch.float64)
    return measure_minibatch_ensemble(land, torch.zeros(spec.N, dtype=torch.float64), eye,
                                      steps=0.1, max_batches=N_MU)  # fmt: skip


def _within(est, true, rel):
    est, true = np.asarray(est), np.asarray(true)
    assert np.all(np.abs(est / true - 1) < rel), (est, true)


def test_diagonal_spec_recovered_within_sampling_error():
    # cv_M = 0.5: sigma_M matters in sigma_theta's moment estimator (M0^2 + sigma_M^2)
    spec = replace(paper_like(6, F_min=1, F_max=3, cv_M=0.5), sigma_off=0.0)
    ens = _measure(spec)
    got = get_preset("from-network", M=ens.M, theta=ens.theta, L0=ens.L0, M_cross=ens.M_cross)
    n = N_MU
    _within(got.M0, spec.M0, 4 * spec.sigma_M.max() / spec.M0.min() / np.sqrt(n))
    _within(got.sigma_M, spec.sigma_M, 4 / np.sqrt(2 * n))
    _within(got.sigma_theta, spec.sigma_theta, 4 / np.sqrt(2 * n))
    assert abs(got.theta1_0 - spec.theta1_0) < 4 * spec.sigma_theta[0] / np.sqrt(n)
    _within(got.L0, spec.L0, 4 * spec.L0_cv / np.sqrt(n))
    _within(got.L0_cv, spec.L0_cv, 4 / np.sqrt(2 * n))
    assert got.sigma_off == 0.0  # round-off spread is not read as coupling


def test_cross_mode_structure_recovered():
    spec = paper_like(6, F_min=1, F_max=3, off_frac=0.05)
    ens = _measure(spec)
    got = from_network(ens.M, ens.theta, ens.L0, M_cross=ens.M_cross)
    _within(got.s, spec.s, 0.1)
    # the one-direction minimum is the profile minimum of Eq 11 (exact, with sigma_M)
    sig_exact = mlf.min_position_variance(
        spec.M0, spec.s, spec.sigma_theta, 0.0, spec.sigma_M, paper=False
    )
    _within(ens.theta.var(axis=0)[1:], sig_exact[1:], 0.25)
    diag = from_network(ens.M, ens.theta, ens.L0)
    assert diag.sigma_off == 0.0 and diag.meta["cross_mode"] == "diagonal"
    # the cross-mode matrices may come from another set of minibatches
    half = from_network(ens.M, ens.theta, ens.L0, M_cross=ens.M_cross[: N_MU // 2])
    _within(half.s, spec.s, 0.15)
    with pytest.raises(ValueError, match="K = 6"):
        from_network(ens.M, ens.theta, ens.L0, M_cross=ens.M_cross[:, :5, :5])


def test_separable_fit_against_dense_samples():
    spec = MLFEnsembleSpec(M0=np.ones(5), sigma_M=0.1 * np.ones(5), sigma_theta=np.ones(5),
                           sigma_off=0.3, off_profile=[1.0, 0.8, 0.6, 0.4, 0.2])  # fmt: skip
    M = sample_dense(spec, 4000, seed=1).M.numpy()
    so, prof, info = fit_separable_offdiag(M)
    _within(so * prof, spec.s, 0.1)
    assert info["rel_rms"] < 0.1


def test_from_network_refusals():
    M = np.ones((5, 3))
    with pytest.raises(ValueError, match="one row per minibatch"):
        from_network(M, np.ones((4, 3)), np.ones(5))
    with pytest.raises(ValueError, match="<= 0"):
        from_network(-M, M, np.ones(5))
    with pytest.raises(ValueError, match="non-finite"):
        from_network(M, M * np.nan, np.ones(5))
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("from-nowhere")


def test_concave_modes_floored_and_listed():
    rng = np.random.default_rng(0)
    M = rng.normal([1.0, 2.0, -0.5], 0.1, size=(50, 3))
    got = from_network(M, rng.normal(size=(50, 3)), np.full(50, 0.1))
    assert got.meta["floored_modes"] == [3] and got.M0[2] > 0


def test_measured_landscape_equals_the_landscape_it_was_measured_on():
    spec = paper_like(6, F_min=1, F_max=3, off_frac=0.05)
    land = MLFLandscape(spec, 12, seed=5, dtype=torch.float64)
    ens = measure_minibatch_ensemble(land, torch.zeros(6, dtype=torch.float64),
                                     torch.eye(6, dtype=torch.float64), steps=0.2)  # fmt: skip
    meas = MeasuredMLFLandscape(spec, ens.M_cross, ens.grad / ens.L0[:, None], ens.L0)
    x = 0.3 * torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    for mu in (0, 7):
        for w in x:
            L, g = land.minibatch_loss_and_grad(w.double(), mu)
            Lm, gm = meas.minibatch_loss_and_grad(w.float(), mu)
            assert float(Lm) == pytest.approx(float(L), rel=1e-4)
            np.testing.assert_allclose(gm.numpy(), g.numpy(), rtol=1e-3, atol=1e-6)
    amps = torch.linspace(-0.5, 0.5, 5)[None].repeat(6, 1)
    np.testing.assert_allclose(
        meas.losses_along(torch.zeros(6), torch.eye(6), amps).numpy(),
        land.losses_along(torch.zeros(6), torch.eye(6), amps).numpy(), rtol=1e-4,
    )  # fmt: skip


def test_simulate_from_network_variants_and_theory():
    spec = paper_like(8, F_min=1, F_max=3)
    land = MLFLandscape(spec, 20, seed=2, dtype=torch.float64)
    ens = measure_minibatch_ensemble(land, torch.zeros(8, dtype=torch.float64),
                                     torch.eye(8, dtype=torch.float64), steps=0.1)  # fmt: skip
    measured = {"M": ens.M_cross, "grad_log": ens.grad / ens.L0[:, None], "L0": ens.L0}
    summ, arrays = simulate_from_network(spec, alpha=0.5, steps_per_epoch=20, window_steps=40,
                                         measured=measured, replicas=16,
                                         max_steps=2000)  # fmt: skip
    v = summ["variants"]
    assert set(v) == set(VARIANTS)
    for name, rec in v.items():
        assert rec["psi"] is not None and np.isfinite(rec["psi"]), (name, rec)
    # T << tau and Fig 3B scalings by construction: the diffusive limit gives psi = 2
    assert summ["theory"]["psi_diffusive_limit"]["psi"] == pytest.approx(2.0, abs=0.05)
    # short window: the simulation sits near the exact finite-window prediction
    assert abs(v["fresh"]["psi"] - summ["theory"]["psi_exact_window"]["psi"]) < 0.6
    with pytest.raises(ValueError, match="unknown simulator variants"):
        simulate_from_network(spec, alpha=0.5, steps_per_epoch=5, window_steps=10,
                              variants=["bogus"])  # fmt: skip


def test_flat_minibatch_does_not_set_sigma_theta():
    """A minibatch with a nearly flat profile (M^mu_ii ~ 0) has a huge one-direction minimum
    b/M; sigma_theta comes from the well-measured slopes b and stays put."""
    rng = np.random.default_rng(1)
    n = 400
    M = rng.normal([2.0, 3.0, 4.0], 0.3, size=(n, 3))
    theta = rng.normal(0.0, [0.5, 0.2, 0.1], size=(n, 3))
    base = from_network(M, theta, np.full(n, 0.1))
    b = M * theta
    M2 = M.copy()
    M2[0, 1] = 1e-6
    theta2 = b / M2
    got = from_network(M2, theta2, np.full(n, 0.1))
    assert np.abs(theta2[:, 1]).max() > 1e4  # the outlier is there ...
    _within(got.sigma_theta[1:], base.sigma_theta[1:], 0.1)  # ... and does not matter
    _within(base.sigma_theta[1:], [0.2, 0.1], 0.15)


def test_mechanism_measurement_feeds_from_network():
    """The contract path: the mechanism study's measure_ensemble on the simulator's own
    landscape -> plain arrays -> from-network recovers the spec it was built from."""
    from sgdyn.validation.studies.mechanism import measure_ensemble

    spec = replace(paper_like(6, F_min=1, F_max=3), sigma_off=0.0)
    land = MLFLandscape(spec, N_MU, seed=3, dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.float64)
    m = measure_ensemble(land, torch.zeros(6, dtype=torch.float64), eye,
                         np.arange(N_MU)[:, None], np.linspace(-0.3, 0.3, 7))  # fmt: skip
    got = from_network(m.M, m.theta, m.L0)
    n = N_MU
    _within(got.M0, spec.M0, 4 * spec.sigma_M.max() / spec.M0.min() / np.sqrt(n))
    _within(got.sigma_M, spec.sigma_M, 4 / np.sqrt(2 * n))
    _within(got.sigma_theta, spec.sigma_theta, 6 / np.sqrt(2 * n))
    _within(got.L0, spec.L0, 4 * spec.L0_cv / np.sqrt(n))
