"""The mechanism estimators (validation/studies/mechanism.py) through the Landscape protocol:
against autograd over explicitly enumerated minibatches on small nets (MLP and LeNet conv2d
probes), and on the simulator's landscape against the ensemble it was built from."""

import itertools

import numpy as np
import pytest
import torch

from sgdyn.simulator.landscape import MLFLandscape
from sgdyn.simulator.presets import paper_like
from sgdyn.theory import mlf
from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import MLP, LeNetMNIST
from sgdyn.validation.probes.network_landscape import NetworkLandscape
from sgdyn.validation.studies.mechanism import (
    epoch_batches,
    measure_diffusion,
    measure_ensemble,
    measure_temperature,
)

LR = 0.1


def _unit(K, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(K, N, generator=g, dtype=torch.float64)
    return P / P.norm(dim=1, keepdim=True)


def _autograd_slopes(model, probe, x, y, w, P, batches):
    """dL^mu/dtheta_k at w for every explicit minibatch (autograd on the whole model)."""
    out = []
    for b in batches:
        wr = w.detach().clone().requires_grad_(True)
        shape = dict(model.named_parameters())[probe].shape
        logits = torch.func.functional_call(model, {probe: wr.reshape(shape)}, (x[list(b)],))
        loss = torch.nn.functional.cross_entropy(logits, y[list(b)])
        (g,) = torch.autograd.grad(loss, wr)
        out.append((P @ g).numpy())
    return np.array(out)


@pytest.fixture(scope="module")
def small_mlp():
    d = load_dataset("digits", limit=10)
    torch.manual_seed(0)
    m = MLP((64, 12, 10, 10)).double()
    return m, d, NetworkLandscape(m, "layers.1.weight", d, batch_size=3)


def test_temperature_and_diffusion_equal_autograd_over_all_minibatches(small_mlp):
    m, d, L = small_mlp
    w0 = L.current()
    P = _unit(4, L.n_params)
    combos = list(itertools.combinations(range(10), 3))
    slopes = _autograd_slopes(m, L.probe_name, d.x.double(), d.y, w0, P, combos)
    res = measure_diffusion(L, w0, P, LR)  # batch_size 3 (the landscape's): exact
    np.testing.assert_allclose(res.T0, LR / 2 * slopes.var(0), rtol=1e-9)
    np.testing.assert_allclose(res.D, LR**2 * slopes.var(0), rtol=1e-9)
    np.testing.assert_allclose(res.mean_slope, slopes.mean(0), rtol=1e-9, atol=1e-14)
    # the profile at dtheta != 0 (one pass per pair) against the same enumeration
    a = np.array([-0.5, 0.0, 0.8])
    prof = measure_temperature(L, w0, P[:2], a, LR)
    for k in range(2):
        for j, aj in enumerate(a):
            s = _autograd_slopes(
                m, L.probe_name, d.x.double(), d.y, w0 + aj * P[k], P[k : k + 1], combos
            )
            assert prof.T[k, j] == pytest.approx(LR / 2 * s.var(), rel=1e-9)
    np.testing.assert_allclose(prof.T[:, 1], res.T0[:2], rtol=1e-12)


def test_explicit_batches_and_minibatch_profiles_equal_direct_evaluation(small_mlp):
    m, d, L = small_mlp
    w0 = L.current()
    P = _unit(3, L.n_params, seed=1)
    batches = epoch_batches(10, 3, n_epochs=2, seed=0)
    slopes = _autograd_slopes(m, L.probe_name, d.x.double(), d.y, w0, P, batches)
    res = measure_diffusion(L, w0, P, LR, batches=batches)
    np.testing.assert_allclose(res.D, LR**2 * slopes.var(0), rtol=1e-9)
    a = np.linspace(-2.0, 2.0, 7)
    ens = measure_ensemble(L, w0, P, batches, a)
    shape = L.param.shape
    for mu in (0, 4):
        for k in range(3):
            for j in (0, 3, 6):
                w = (w0 + a[j] * P[k]).reshape(shape)
                with torch.no_grad():
                    out = torch.func.functional_call(
                        m, {L.probe_name: w}, (d.x.double()[batches[mu]],)
                    )
                    ref = torch.nn.functional.cross_entropy(out, d.y[batches[mu]])
                assert ens.profiles[mu, k, j] == pytest.approx(float(ref), rel=1e-6)
    np.testing.assert_allclose(ens.full_profiles, L.losses_along(w0, P, a).numpy(), rtol=1e-10)
    assert ens.M.shape == ens.theta.shape == ens.L0.shape == (len(batches), 3)
    np.testing.assert_allclose(ens.M0, ens.M.mean(0))


def test_lenet_conv2d_probe_diffusion_equals_autograd():
    d = load_dataset("mnist5k", limit=8)
    torch.manual_seed(0)
    m = LeNetMNIST().double()
    L = NetworkLandscape(m, "conv2.weight", (d.images().double(), d.y), batch_size=2)
    w0 = L.current()
    P = _unit(3, L.n_params)
    combos = list(itertools.combinations(range(8), 2))
    slopes = _autograd_slopes(m, L.probe_name, d.images().double(), d.y, w0, P, combos)
    res = measure_diffusion(L, w0, P, LR)
    np.testing.assert_allclose(res.D, LR**2 * slopes.var(0), rtol=1e-8)
    tm = measure_temperature(L, w0, P[:1], np.array([0.0, 0.3]), LR)  # conv slopes, batched
    assert tm.T[0, 0] == pytest.approx(res.T0[0], rel=1e-9)
    s = _autograd_slopes(m, L.probe_name, d.images().double(), d.y, w0 + 0.3 * P[0], P[:1], combos)
    assert tm.T[0, 1] == pytest.approx(LR / 2 * s.var(), rel=1e-8)


def test_simulator_landscape_recovers_the_ensemble_it_was_built_from():
    spec = paper_like(N=5, off_frac=0.0, F_min=1.0, F_max=4.0)
    n_mu = 400
    land = MLFLandscape(spec, n_mu, seed=2, dtype=torch.float64)
    P = torch.eye(5, dtype=torch.float64)
    w0 = torch.zeros(5, dtype=torch.float64)
    a = np.linspace(-0.5, 0.5, 7)
    ens = measure_ensemble(land, w0, P, np.arange(n_mu)[:, None], a)
    # each minibatch's own (M^mu_ii, theta^mu_i, L^mu_0): exact (no off-diagonal terms)
    diag = torch.diagonal(land.M_cache, dim1=1, dim2=2).numpy()
    np.testing.assert_allclose(ens.M, diag, rtol=1e-8)
    np.testing.assert_allclose(ens.theta, land.theta_mu.numpy(), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(ens.L0, land.L0mu.numpy()[:, None].repeat(5, 1), rtol=1e-8)
    # the ensemble statistics: the spec's, within sampling error
    se_M = spec.sigma_M / np.sqrt(n_mu)
    assert np.all(np.abs(ens.M0 - spec.M0) < 4 * se_M + 1e-12)
    s2 = spec.sigma_theta**2
    s2[0] = s2[0]  # mode 1 has a mean theta1_0: Var about the mean is still sigma^2
    assert np.all(np.abs(ens.sigma_theta2 / s2 - 1) < 4 * np.sqrt(2 / n_mu))
    # D_i over the ensemble: alpha^2 Var_mu(dL^mu/dtheta_i), the same one-pass estimator
    res = measure_diffusion(land, w0, P, LR)
    g = torch.stack([land.minibatch_loss_and_grad(w0, mu)[1] for mu in range(n_mu)]).numpy()
    np.testing.assert_allclose(res.D, LR**2 * g.var(0), rtol=1e-8)


def test_simulator_with_off_diagonal_terms_matches_eq11():
    spec = paper_like(N=6, off_frac=0.3, F_min=1.0, F_max=3.0)
    n_mu = 600
    land = MLFLandscape(spec, n_mu, seed=4, dtype=torch.float64)
    P = torch.eye(6, dtype=torch.float64)
    ens = measure_ensemble(
        land,
        torch.zeros(6, dtype=torch.float64),
        P,
        np.arange(n_mu)[:, None],
        np.linspace(-0.3, 0.3, 9),
    )
    kw = spec.theory_kwargs()
    pred = mlf.min_position_variance(
        kw["M0"], kw["sigma_ij"], kw["sigma_theta"], kw["theta1_0"], kw["sigma_M"], paper=False
    )
    pred = np.asarray(pred)
    # Eq 11 for modes >= 2 (mode 1's minimum has a nonzero mean); <M^-2> approximated
    assert np.all(np.abs(ens.sigma_theta2[1:] / pred[1:] - 1) < 0.3)


def test_bad_input_is_refused_with_what_to_do(small_mlp):
    m, d, L = small_mlp
    w0 = L.current()
    with pytest.raises(ValueError, match=r"directions must be \(K, 120\)"):
        measure_diffusion(L, w0, torch.ones(2, 7), LR)
    with pytest.raises(ValueError, match=r"directions must be \(K, 120\)"):
        measure_ensemble(L, w0, torch.ones(2, 7), epoch_batches(10, 3), np.linspace(-1, 1, 5))
    with pytest.raises(ValueError, match="outside 0..9"):
        measure_ensemble(L, w0, _unit(1, 120), np.array([[0, 10]]), np.linspace(-1, 1, 5))
    ln = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 10))
    Lb = NetworkLandscape(ln.double(), "1.weight", d, batch_size=3)  # a LayerNorm probe
    with pytest.raises(ValueError, match="Linear or Conv2d weight"):
        measure_diffusion(Lb, Lb.current(), _unit(1, Lb.n_params), LR)


def test_per_sample_losses_along_cached_tail_equals_whole_model(small_mlp):
    m, d, L = small_mlp
    slow = NetworkLandscape(m, "layers.1.weight", d, batch_size=3, fast=False)
    P = _unit(2, L.n_params, seed=3)
    a = torch.tensor([[-1.0, 0.0, 0.5], [0.2, 1.0, 2.0]], dtype=torch.float64)
    fast = L.per_sample_losses_along(L.current(), P, a)
    ref = slow.per_sample_losses_along(L.current(), P, a)
    assert fast.shape == (10, 2, 3)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.mean(0), L.losses_along(L.current(), P, a))


def test_per_sample_slopes_along_equal_projections_at_the_shifted_points(small_mlp):
    m, d, L = small_mlp
    slow = NetworkLandscape(m, "layers.1.weight", d, batch_size=3, fast=False)
    P = _unit(2, L.n_params, seed=4)
    a = torch.tensor([[-1.0, 0.0, 0.5], [0.2, 1.0, 2.0]], dtype=torch.float64)
    w0 = L.current()
    fast = L.per_sample_slopes_along(w0, P, a)
    for k in range(2):
        for j in range(3):
            ref = L.per_sample_projections(w0 + a[k, j] * P[k], P[k : k + 1])[:, 0]
            torch.testing.assert_close(fast[:, k, j], ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(slow.per_sample_slopes_along(w0, P, a), fast, rtol=1e-9, atol=1e-12)
    spec = paper_like(N=5)
    land = MLFLandscape(spec, 12, seed=1, dtype=torch.float64)
    Q = _unit(3, 5, seed=5)
    b = torch.tensor([-0.1, 0.0, 0.2], dtype=torch.float64)
    sl = land.per_sample_slopes_along(torch.zeros(5, dtype=torch.float64), Q, b)
    for k in range(3):
        for j in range(3):
            ref = land.per_sample_projections(b[j] * Q[k], Q[k : k + 1])[:, 0]
            torch.testing.assert_close(sl[:, k, j], ref, rtol=1e-10, atol=1e-14)
