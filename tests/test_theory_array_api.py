"""Every public sgdyn.theory function on numpy and torch (CPU; CUDA and cupy when present).

Each function is called once with numpy inputs and once with the same inputs as torch
tensors (float64): the torch call must return torch tensors wherever the numpy call returns
arrays (on the input's device), and the same numbers. A coverage test makes sure no public
function is missing from the table. Gradients through the closed forms are checked by
``torch.autograd.gradcheck`` (finite differences).
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from sgdyn import theory
from sgdyn.theory import dynamics, ensemble, flatness, mlf, nulls, phases, powerlaw, spectrum

RNG = np.random.default_rng(0)
F6 = np.geomspace(0.5, 5.0, 6)
VAR6 = 1e-3 * F6**-3.0 * np.exp(0.05 * RNG.standard_normal(6))
SPEC = 100.0 * np.arange(1, 301.0) ** -2.5 * np.exp(0.05 * RNG.standard_normal(300))
THETA = np.cumsum(RNG.standard_normal((200, 5)), axis=0) + 0.3 * np.arange(200)[:, None]
TRAJ = np.cumsum(RNG.standard_normal((60, 20)), axis=0)
GRAM = TRAJ @ TRAJ.T
E = np.arange(60.0)
CURVE = 2.0 * np.exp(-E / 4.0) + 0.01 * np.exp(-0.01 * E)
AMPS = np.linspace(-0.2, 0.2, 21)
PROF = 0.07 * np.exp(np.array([0.0, 0.3, -1.0])[:, None] * AMPS + 4 * AMPS**2 / F6[:3, None] ** 2)
H = 0.01
PROF4 = 0.07 * np.exp(4 * (H * np.array(flatness.CURVATURE_OFFSETS))[None] ** 2 / F6[:, None] ** 2)
M0 = np.array([2.0, 1.5, 1.0, 0.6, 0.3])
SM, ST, R5 = 0.2 * M0, 0.3 / np.sqrt(M0), np.array([0.5, 0.6, 0.7, 0.8, 0.9])
SIJ = np.outer(R5, R5)
KW = dict(M0=M0, sigma_M=SM, sigma_ij=R5, sigma_theta=ST, theta1_0=0.3)
INC = np.array([3.0, 1.0, 0.5, 0.2, 0.1])
PSV = RNG.standard_normal((9, 3))  # per-sample values (ensemble moments)
BATCHES = np.array([[0, 3, 5], [1, 2, 8], [4, 6, 7]])
MLF_PROF = 0.03 * np.exp(0.5 * np.array([[9.0], [20.0]])[:, None] * (AMPS**2 - 0.02 * AMPS))


def _exp_quad_np(a):
    return 0.05 * np.exp(4 * np.asarray(a) ** 2 / F6**2)


# name -> (function, positional args, keyword args); numpy arrays in args are converted
CASES = {
    "fit_power_law": (powerlaw.fit_power_law, (F6, VAR6), {}),
    "spectrum_summary": (spectrum.spectrum_summary, (SPEC,), {"rank_range": (5, 100)}),
    "rank_ordered": (spectrum.rank_ordered, (SPEC,), {}),
    "cumulative_variance_excl_pc1": (spectrum.cumulative_variance_excl_pc1, (SPEC,), {}),
    "n_for_fraction": (spectrum.n_for_fraction, (SPEC,), {}),
    "detect_transition": (phases.detect_transition, (CURVE,), {}),
    "loss_rate": (phases.loss_rate, (CURVE,), {}),
    "drift_diffusion": (dynamics.drift_diffusion, (THETA,), {"block": 2}),
    "velocity_autocorrelation": (dynamics.velocity_autocorrelation, (THETA,), {"max_lag": 9}),
    "drift_test": (dynamics.drift_test, (TRAJ,), {"block": 2}),
    "drift_test_from_gram": (dynamics.drift_test_from_gram, (GRAM,), {"block": 2}),
    "flatness_e_width": (flatness.flatness_e_width, ("PROFILE", 6), {"L0": "L0", "tol": 1e-6}),
    "flatness_quadratic_fit": (flatness.flatness_quadratic_fit, (AMPS, PROF, 0.07), {}),
    "flatness_curvature_at_zero": (flatness.flatness_curvature_at_zero, (H, PROF4, 0.07), {}),
    "variance_flatness_exponent": (flatness.variance_flatness_exponent, (VAR6, F6), {}),
    "offdiag_weighted_sum": (mlf.offdiag_weighted_sum, (SIJ, ST), {}),
    "theta_mu_second_moment": (mlf.theta_mu_second_moment, (ST, 0.3), {}),
    "averaged_curvature": (mlf.averaged_curvature, (), dict(KW, paper=False)),
    "flatness_from_curvature": (mlf.flatness_from_curvature, (M0,), {}),
    "curvature_from_flatness": (mlf.curvature_from_flatness, (F6,), {}),
    "averaged_loss": (mlf.averaged_loss, (0.1 * THETA[:4], 0.02, M0, 2 * M0, 0.3), {}),
    "averaged_loss_minimum": (mlf.averaged_loss_minimum, (0.02, M0[:1], 2 * M0[:1], 0.3), {}),
    "exact_mode_profile": (mlf.exact_mode_profile, (AMPS, 2, 0.02), KW),
    "min_position_variance": (mlf.min_position_variance, (M0, R5, ST, 0.3, SM), {"paper": False}),
    "drift_velocity": (mlf.drift_velocity, (np.array(0.1), 0.02, M0[0], 0.3), {}),
    "diffusion_constant": (
        mlf.diffusion_constant,
        (0.1, 5e-4, M0, SIJ, ST, 0.3, SM, 0.02),
        {"paper": False},
    ),  # fmt: skip
    "relaxation_time": (mlf.relaxation_time, (0.1, 0.02, M0), {}),
    "ou_window_variance": (mlf.ou_window_variance, (VAR6, 1.0 / F6 * 50, 40), {}),
    "window_variances": (mlf.window_variances, (VAR6, 1.0 / F6 * 50, 40), {}),
    "predicted_psi": (mlf.predicted_psi, (VAR6, F6), {}),
    "equilibrium_variance": (mlf.equilibrium_variance, (1e-3, 0.02, M0), {"alpha": 0.5}),
    "minibatch_moments": (ensemble.minibatch_moments, (PSV, 4), {}),
    "partition_moments": (ensemble.partition_moments, (PSV, BATCHES), {}),
    "diffusion_constants": (ensemble.diffusion_constants, (PSV, 0.1), {"batch_size": 4}),
    "active_temperature": (ensemble.active_temperature, (PSV, 0.1), {"batches": BATCHES}),
    "fit_mlf_profiles": (ensemble.fit_mlf_profiles, (AMPS, MLF_PROF), {}),
    "ensemble_summary": (
        ensemble.ensemble_summary,
        (THETA[:, :3], THETA[:, 1:4], 0.1 + np.abs(THETA[:, 2:])),
        {},
    ),
    "power_law_with_null": (ensemble.power_law_with_null, (F6, VAR6), {"n_shuffle": 20}),
    "gram_diagnostics": (
        nulls.gram_diagnostics,
        (GRAM,),
        dict(block=2, n_modes=5, rank_range=(2, 20)),
    ),  # noqa: E501
    "increment_spectrum": (nulls.increment_spectrum, (TRAJ,), {}),
    "trajectory_diagnostics": (
        nulls.trajectory_diagnostics,
        (TRAJ,),
        dict(block=2, n_modes=5, rank_range=(2, 15)),
    ),
    "random_walk_gram": (nulls.random_walk_gram, (30,), {"increment_variances": INC, "rng": "RNG"}),
    "random_walk_null": (
        nulls.random_walk_null,
        (30,),
        dict(increment_variances=INC, block=1, n_modes=4, rank_range=(2, 5), n_replicas=2),
    ),  # fmt: skip
}
# public functions without array inputs (integers in, numpy out)
NO_ARRAY_INPUT = {"random_walk_pca_limit", "limit_diagnostics"}


def _public_functions():
    names = set()
    for mod in (theory, ensemble, mlf, nulls, dynamics, flatness, phases, powerlaw, spectrum):
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                names.add(name)
    return names


def test_every_public_function_is_covered():
    assert _public_functions() - NO_ARRAY_INPUT == set(CASES)


def _convert(x, to):
    if isinstance(x, np.ndarray):
        return to(x)
    if isinstance(x, tuple):
        return tuple(_convert(v, to) for v in x)
    return x


def _call(name, to, device):
    fn, args, kw = CASES[name]
    args, kw = _convert(args, to), {k: _convert(v, to) for k, v in kw.items()}
    if name == "flatness_e_width":
        if to is np.asarray:
            args = (_exp_quad_np, *args[1:])
        else:  # a torch profile function (returns tensors on the device)
            args = (lambda a: torch.as_tensor(_exp_quad_np(a), device=device), *args[1:])
        kw["L0"] = 0.05
    if kw.get("rng") == "RNG":
        kw["rng"] = np.random.default_rng(5)
    return fn(*args, **kw)


def _same(a, b, device, path="out"):
    if isinstance(a, np.ndarray) and a.ndim > 0:
        assert isinstance(b, torch.Tensor), f"{path}: expected a torch.Tensor, got {type(b)}"
        assert b.device.type == device, f"{path}: on {b.device}, expected {device}"
        bn = b.detach().cpu().numpy()
        assert bn.shape == a.shape, path
        if a.dtype == bool:
            assert np.array_equal(a, bn), path
        else:
            tiny = 1e-12 * float(np.nanmax(np.abs(a[np.isfinite(a)]), initial=0.0))  # round-off
            np.testing.assert_allclose(bn, a, rtol=1e-10, atol=tiny, err_msg=path)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), device, f"{path}.{f.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], device, f"{path}[{k}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _same(u, v, device, f"{path}[{i}]")
    elif isinstance(a, (float, np.floating)) or (isinstance(a, np.ndarray) and a.ndim == 0):
        bv = float(b.detach().cpu()) if isinstance(b, torch.Tensor) else float(b)
        if np.isnan(float(a)):
            assert np.isnan(bv), path
        else:
            assert bv == pytest.approx(float(a), rel=1e-10, abs=1e-300), path
    else:
        assert a == b, path


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_inputs_return_torch_with_the_same_numbers(name, device):
    ref = _call(name, np.asarray, "cpu")
    out = _call(name, lambda x: torch.as_tensor(x, dtype=torch.float64, device=device), device)
    _same(ref, out, device)


def test_float32_inputs_keep_float32_and_lists_give_numpy():
    out = mlf.flatness_from_curvature(torch.tensor([1.0, 2.0], dtype=torch.float32))
    assert out.dtype == torch.float32
    cum = spectrum.cumulative_variance_excl_pc1(torch.tensor(SPEC, dtype=torch.float32))
    assert isinstance(cum, torch.Tensor) and cum.dtype == torch.float32
    assert isinstance(mlf.flatness_from_curvature([1.0, 2.0]), np.ndarray)
    # numpy and Python numbers mix with torch; the result follows torch
    assert isinstance(mlf.relaxation_time(0.1, np.float64(0.02), torch.tensor(M0)), torch.Tensor)


@pytest.mark.parametrize(
    "fn",
    [
        lambda M0: mlf.averaged_curvature(M0, SM, R5, ST, 0.3, paper=False),
        lambda M0: mlf.flatness_from_curvature(mlf.averaged_curvature(M0, SM, SIJ, ST, 0.3)),
        lambda M0: mlf.diffusion_constant(0.1, 5e-4, M0, R5, ST, 0.3, SM, 0.02, paper=False),
        lambda M0: mlf.min_position_variance(M0, 0.2, ST),
        lambda M0: mlf.exact_mode_profile(torch.tensor(AMPS), 1, 0.02, M0, SM, R5, ST, 0.3),
        lambda M0: mlf.equilibrium_variance(1e-3, 0.02, M0, alpha=0.5),
        lambda M0: mlf.relaxation_time(0.1, 0.02, M0),
        lambda M0: mlf.window_variances(M0, 50.0, 40)["stationary"],
    ],
)
def test_gradients_flow_through_the_closed_forms(fn):
    M0t = torch.tensor(M0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (M0t,))


def test_scalar_parameters_take_gradients_too():
    T = torch.tensor(2e-3, dtype=torch.float64, requires_grad=True)
    var = mlf.equilibrium_variance(T, 0.02, torch.tensor(M0)).sum()
    (g,) = torch.autograd.grad(var, T)
    assert float(g) == pytest.approx(float(np.sum(1.0 / (0.02 * M0))))  # d/dT of T/(L0 M)


def test_mixing_two_array_libraries_is_refused_and_estimators_detach():
    M0t = torch.tensor(M0, requires_grad=True)
    fit = spectrum.spectrum_summary(torch.tensor(SPEC, requires_grad=True), rank_range=(5, 100))
    assert isinstance(fit.gamma, float)
    assert mlf.flatness_from_curvature(M0t).requires_grad

    import types

    from sgdyn.theory._arrays import caller_of

    class Other:  # an array of some other array-API library
        def __array_namespace__(self, api_version=None):
            return types.ModuleType("other_array_library")

    with pytest.raises(TypeError, match="different libraries"):
        caller_of(torch.ones(2), Other())


def _cupy_or_skip():
    cp = pytest.importorskip("cupy")
    try:
        cp.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - cupy installed without a usable GPU
        pytest.skip("cupy has no CUDA device")
    return cp


def test_cupy_inputs_return_cupy():
    cp = _cupy_or_skip()

    def same(a, b):
        if isinstance(a, np.ndarray) and a.ndim > 0:
            assert isinstance(b, cp.ndarray)
            np.testing.assert_allclose(cp.asnumpy(b), a, rtol=1e-10, atol=1e-12 * np.abs(a).max())
        elif dataclasses.is_dataclass(a):
            for f in dataclasses.fields(a):
                same(getattr(a, f.name), getattr(b, f.name))
        elif isinstance(a, dict):
            for k in a:
                same(a[k], b[k])

    for name in sorted(set(CASES) - {"flatness_e_width"}):  # profile functions are user code
        same(_call(name, np.asarray, "cpu"), _call(name, cp.asarray, "cuda"))
