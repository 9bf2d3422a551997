"""Bad input to sgdyn.theory is refused at the boundary with a message, never turned into a
number (issue 12, estimator safety): each refusal is tested here."""

import numpy as np
import pytest
import torch

from sgdyn.theory import (
    cumulative_variance_excl_pc1,
    detect_transition,
    drift_diffusion,
    fit_power_law,
    mlf,
    n_for_fraction,
    spectrum_summary,
    variance_flatness_exponent,
)
from sgdyn.theory.flatness import flatness_curvature_at_zero, flatness_e_width

SPEC = 50.0 * np.arange(1, 151.0) ** -2.5


@pytest.mark.parametrize(
    "call",
    [
        lambda v: spectrum_summary(v, rank_range=(2, 4)),
        cumulative_variance_excl_pc1,
        n_for_fraction,
        lambda v: fit_power_law(v, v),
        lambda v: variance_flatness_exponent(v, v),
        detect_transition,
        lambda v: drift_diffusion(v[..., None]),  # 3-D theta
    ],
)
def test_2d_input_is_refused_not_flattened(call):
    two_d = np.stack([SPEC[:10], SPEC[:10]])
    with pytest.raises(ValueError, match=r"must be .*-D, got shape"):
        call(two_d)
    with pytest.raises(ValueError, match="-D, got shape"):
        call(torch.as_tensor(two_d))


def test_negative_variances_are_refused_not_clipped_or_dropped():
    v = SPEC.copy()
    v[40] = -1e-3
    with pytest.raises(ValueError, match="non-negative"):
        spectrum_summary(v, rank_range=(20, 100))
    with pytest.raises(ValueError, match="non-negative"):
        cumulative_variance_excl_pc1(v)
    with pytest.raises(ValueError, match="positive x and y"):
        fit_power_law(np.arange(1.0, 151), v)
    with pytest.raises(ValueError, match="positive"):
        variance_flatness_exponent(v[30:50], np.arange(1.0, 21))
    # an eigensolver's round-off below zero (1e-12 of the largest) is a zero, not an error
    w = SPEC.copy()
    w[-1] = -1e-12 * SPEC[0]
    assert cumulative_variance_excl_pc1(w)[-1] == pytest.approx(1.0)


def test_rank_range_beyond_the_spectrum_is_refused():
    with pytest.raises(ValueError, match=r"rank_range 20-200 goes beyond .* 150 of 150"):
        spectrum_summary(SPEC, rank_range=(20, 200))
    zeros_tail = np.r_[SPEC[:120], np.zeros(30)]  # rank-deficient: zeros beyond rank 120
    with pytest.raises(ValueError, match="only 120 of 150 variances are non-zero"):
        spectrum_summary(zeros_tail, rank_range=(20, 140))
    s = spectrum_summary(zeros_tail, rank_range=(20, 120))
    assert s.rank_range == (20, 120)


def test_flat_or_rising_loss_curves_are_not_confirmed_transitions():
    e = np.arange(40.0)
    flat = detect_transition(np.full(40, 0.3) * (1 + 1e-3 * np.sin(e)))
    assert not flat.confirmed and flat.transition_epoch is None
    assert "without a fast-learning phase" in flat.reason
    rising = detect_transition(0.1 * np.exp(0.2 * e))
    assert not rising.confirmed and "rising" in rising.reason
    # fast fall then a rise: the rise is not an exploration phase
    fall_rise = detect_transition(
        np.r_[2 * np.exp(-e[:20] / 3), 2 * np.exp(-19 / 3) * np.exp(0.2 * e[1:21])]
    )  # noqa: E501
    assert not fall_rise.confirmed
    # a plateau at initialisation, then a fast fall, then slow: confirmed after the fall
    curve = np.r_[
        np.full(8, 2.3), 2.3 * np.exp(-e[1:20] / 3), 2.3 * np.exp(-19 / 3) * np.exp(-0.01 * e[1:30])
    ]  # noqa: E501
    ph = detect_transition(curve)
    assert ph.confirmed and ph.transition_epoch > 10 and ph.reason == ""


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mlf.relaxation_time(-0.1, 0.02, [1.0, 2.0]), "alpha must be positive"),
        (lambda: mlf.relaxation_time(0.1, -0.02, [1.0, 2.0]), "L0 must be positive"),
        (lambda: mlf.relaxation_time(0.1, 0.02, [1.0, -2.0]), "M must be positive"),
        (lambda: mlf.equilibrium_variance(-1e-3, 0.02, [1.0]), "temperature must be non-neg"),
        (lambda: mlf.equilibrium_variance(1e-3, 0.02, [1.0], alpha=-0.5), "alpha must be pos"),
        (lambda: mlf.equilibrium_variance(1e-3, 1.0, [1.0], alpha=3.0), "unstable"),
        (lambda: mlf.diffusion_constant(-0.1, 1e-4, [1.0, 2.0], 0.1, [0.1, 0.2]), "alpha"),
        (lambda: mlf.diffusion_constant(0.1, 1e-4, [1.0, 2.0], 0.1, [-0.1, 0.2]), "sigma_th"),
        (lambda: mlf.drift_velocity(-0.1, 0.02, 1.0, 0.3), "alpha must be positive"),
        (lambda: mlf.averaged_curvature([1.0, -1.0], 0.1, 0.1, 0.1), "M0 must be positive"),
        (lambda: mlf.flatness_from_curvature([1.0, np.nan]), "non-finite"),
        (lambda: mlf.ou_window_variance(1.0, np.nan, 10), "tau has a non-finite value"),
        (lambda: mlf.ou_window_variance(1.0, [5.0, np.nan], 10), "non-finite value"),
        (lambda: mlf.ou_window_variance(-1.0, 5.0, 10), "D must be non-negative"),
    ],
)
def test_impossible_physical_parameters_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_infinite_tau_is_the_random_walk_and_nan_is_not():
    assert mlf.ou_window_variance(0.7, np.inf, 50) == pytest.approx(0.7 * (50**2 - 1) / 300)
    with pytest.raises(ValueError, match="tau"):
        mlf.ou_window_variance(0.7, float("nan"), 50)


def test_other_boundary_checks():
    with pytest.raises(ValueError, match="theta has a non-finite value"):
        drift_diffusion(np.r_[np.arange(10.0), np.inf])
    with pytest.raises(ValueError, match="mask must be a boolean"):
        variance_flatness_exponent(SPEC[:5], np.arange(1.0, 6), mask=[1, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="L0 must be positive"):
        flatness_e_width(lambda a: np.ones(2), 2, L0=-1.0)
    with pytest.raises(ValueError, match="profile_fn must return one loss per direction"):
        flatness_e_width(lambda a: np.ones((2, 2)), 2, L0=0.5)
    with pytest.raises(ValueError, match="step must be positive"):
        flatness_curvature_at_zero(0.0, np.ones((2, 4)), 1.0)
    with pytest.raises(ValueError, match="does not move"):
        drift_diffusion(np.c_[np.arange(10.0), np.zeros(10)])


def test_ensemble_estimators_refuse_bad_input_with_what_to_do():
    from sgdyn.theory import ensemble

    v = np.arange(10.0)
    with pytest.raises(ValueError, match=r"batch_size must be an integer in 1\.\.10"):
        ensemble.minibatch_moments(v, 11)
    with pytest.raises(ValueError, match="non-finite"):
        ensemble.minibatch_moments(np.array([1.0, np.nan, 2.0]), 2)
    with pytest.raises(ValueError, match="integer sample indices"):
        ensemble.partition_moments(v, np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="give exactly one of batch_size"):
        ensemble.active_temperature(v, 0.1, batch_size=2, batches=np.array([[0, 1]]))
    with pytest.raises(ValueError, match="losses must be positive"):
        ensemble.fit_mlf_profiles(np.linspace(-1, 1, 5), np.zeros(5))
    with pytest.raises(ValueError, match=r"losses must be \(\.\.\., K, A\)"):
        ensemble.fit_mlf_profiles(np.ones((2, 5)) * np.linspace(-1, 1, 5), np.ones((3, 5)))
    with pytest.raises(ValueError, match="positive x and y"):
        ensemble.power_law_with_null(v, v + 1)
