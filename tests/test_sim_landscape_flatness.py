"""MLFLandscape.flatness: the same call and result type as NetworkLandscape.flatness, checked
against scipy's brentq on the averaged loss along each direction."""

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from sgdyn.simulator import MLFLandscape, paper_like
from sgdyn.theory.flatness import EWidthResult


def test_mlf_flatness_matches_brentq_crossings():
    spec = paper_like(N=5, F_min=1, F_max=3)
    land = MLFLandscape(spec, 12, seed=2, dtype=torch.float64)
    w0 = torch.zeros(5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    P = torch.cat([torch.eye(5, dtype=torch.float64)[:3], torch.randn(2, 5, generator=g).double()])
    P /= P.norm(dim=1, keepdim=True)
    res = land.flatness(w0, P, init_step=0.05, tol=1e-9)
    assert isinstance(res, EWidthResult) and res.converged.all()
    L0 = float(land.full_loss(w0))
    for k in range(5):

        def f(a, k=k):
            return float(land.full_loss(w0 + a * P[k])) - np.e * L0

        hi = 0.05
        while f(hi) < 0:
            hi *= 2
        lo = -0.05
        while f(lo) < 0:
            lo *= 2
        right = brentq(f, 0.0, hi, xtol=1e-12)
        left = brentq(f, lo, 0.0, xtol=1e-12)
        assert res.right[k] == pytest.approx(right, rel=1e-8)
        assert res.left[k] == pytest.approx(left, rel=1e-8)
    with pytest.raises(ValueError, match=r"directions must be finite \(K, 5\)"):
        land.flatness(w0, torch.ones(2, 4))
