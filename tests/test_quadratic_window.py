"""The Eq 7 quadratic-fit flatness of the reproduce stage does not know each direction's
e-width (issue 12): on profiles that are not Eq 7-shaped it must disagree with the e-width
by the closed-form amount, where a window scaled by F_e would agree by construction."""

import numpy as np
import pytest
import torch

from sgdyn.theory.flatness import flatness_e_width
from sgdyn.validation.studies.reproduce.landscape_stage import analyse_flatness


class SaturatingLandscape:
    """L_k(a) = L0 (1 + c_k a^2): ln L is concave in a^2. Curvature of ln L at 0: 2 c_k, so
    Eq 7 gives F = 2 / sqrt(c_k); the e-width is 2 sqrt((e - 1) / c_k)."""

    dtype = torch.float64

    def __init__(self, c, L0=0.1):
        self.c, self.L0 = np.asarray(c, float), L0

    def full_loss(self, w0):
        return self.L0

    def losses_along(self, w0, P, amps):
        a = np.asarray(amps, float)
        return torch.as_tensor(self.L0 * (1 + self.c[:, None] * a**2))

    def flatness(self, w0, P, *, L0, **kw):
        kw.pop("on_unbounded", None)
        return flatness_e_width(lambda a: self.L0 * (1 + self.c * a**2), len(self.c), L0=L0, **kw)


def test_quadratic_fit_window_is_independent_of_each_e_width():
    c = np.array([200.0, 100.0, 3.0, 1.0])
    land = SaturatingLandscape(c)
    summ, arr = analyse_flatness(land, torch.zeros(1), torch.eye(4), np.ones(4), tol=1e-6)
    F_e = 2 * np.sqrt((np.e - 1) / c)
    np.testing.assert_allclose(arr["flat_F_ewidth"], F_e, rtol=1e-5)
    assert summ["agreement"]["quad_window"] == pytest.approx(F_e[1] / 4, rel=1e-5)
    # flat directions see a window far inside their e-region: Eq 7 from the local curvature
    ratio = arr["flat_F_quadratic"] / arr["flat_F_ewidth"]
    assert ratio[2:] == pytest.approx(1 / np.sqrt(np.e - 1), rel=0.01)  # 0.763, not ~1
    # a window of half each direction's own e-width (the old scheme) pulls the ratio up
    old = []
    for k in range(4):
        a = np.linspace(-0.5, 0.5, 21) * F_e[k]
        y = np.log1p(c[k] * a**2)
        curv = np.linalg.lstsq(np.c_[a, a**2], y, rcond=None)[0][1]
        old.append(2 / np.sqrt(curv) / F_e[k])
    assert np.all(np.array(old) > 0.85)
