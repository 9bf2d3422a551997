"""Phase detection (Fig S1) on synthetic loss curves with a known transition."""

import numpy as np
import pytest

from sgdyn.theory import detect_transition
from sgdyn.theory.phases import loss_rate


def _curve(n=80, tau=4.0, floor=0.01, slow=0.01):
    e = np.arange(n, dtype=float)
    return 2.0 * np.exp(-e / tau) + floor * np.exp(-slow * e), e


def test_transition_matches_closed_form_rate():
    L, e = _curve()
    # analytic -d ln L/de; the detector's trailing 5-epoch fit lags by about half a window
    dL = -2.0 / 4.0 * np.exp(-e / 4.0) - 0.01 * 0.01 * np.exp(-0.01 * e)
    rate = -dL / L
    e_star = int(np.argmax(rate <= 0.05))
    ph = detect_transition(L)
    assert ph.confirmed
    assert e_star <= ph.transition_epoch <= e_star + 4
    assert ph.slow_rate < 0.05 < ph.fast_rate
    assert ph.region[0] <= ph.transition_epoch


def test_spikes_do_not_trigger_early_detection():
    L, _ = _curve()
    clean = detect_transition(L).transition_epoch
    for where in ([8], [8, 9], [20], [20, 21]):  # isolated loss spikes in the fast phase
        spiky = L.copy()
        spiky[where] *= 3.0
        assert abs(detect_transition(spiky).transition_epoch - clean) <= 1


def test_rate_of_pure_exponential_is_exact():
    e = np.arange(30)
    r = loss_rate(np.exp(-0.3 * e), window=5)
    assert np.all(np.isnan(r[:5]))
    assert np.allclose(r[5:], 0.3)


def test_never_slowing_curve_is_not_confirmed():
    ph = detect_transition(np.exp(-0.5 * np.arange(20)))
    assert not ph.confirmed and ph.transition_epoch is None


def test_diverged_curve_is_reported():
    L = np.r_[np.exp(-0.1 * np.arange(10)), np.nan]
    with pytest.raises(ValueError, match="diverged"):
        detect_transition(L)
    with pytest.raises(ValueError, match="at least"):
        detect_transition([1.0, 0.5])
