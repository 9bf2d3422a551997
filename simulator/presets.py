"""Ready-made MLF ensembles: ``paper-like``, ``from-profiles`` and ``from-network``
(:mod:`.from_network`: built from a network's measured minibatch ensemble).

``paper-like``: flatness growing with the mode index and the Fig 3B scalings
M0_ii ∝ F_i^-2 and sigma~_theta,i ∝ F_i. The target flatness profile is log-spaced from
``F_min`` to ``F_max``; M0_ii = c_M * 8 / F_i^2 (a fraction c_M of the averaged curvature of
Eq 10), sigma_M,i = cv_M * M0_ii, and sigma_theta,i is solved so that Eq 10 gives exactly
M_ii = 8 / F_i^2 (fixed point over the off-diagonal sum).
"""

from __future__ import annotations

import numpy as np

from ..theory.mlf import averaged_curvature, offdiag_weighted_sum
from .ensemble import MLFEnsembleSpec
from .from_network import from_network

PRESETS = ("paper-like", "from-profiles")  # the `sgdyn simulate` CLI choices
ALL_PRESETS = (*PRESETS, "from-network")  # from-network: measured arrays, used by the suite


def paper_like(
    N: int = 50,
    *,
    F_min: float = 1.0,
    F_max: float = 10.0,
    c_M: float = 0.5,
    cv_M: float = 0.2,
    off_frac: float = 0.02,
    theta1_0: float = 0.5,
    L0: float = 1e-2,
    L0_cv: float = 0.3,
) -> MLFEnsembleSpec:
    """Paper-like ensemble (see module docstring).

    ``off_frac`` sets sigma_off so that the off-diagonal sum of Eq 10 is about that fraction
    of each M_ii (it shifts the minima, Eq 11, and couples modes).
    """
    if N < 3:
        raise ValueError(f"paper-like preset needs N >= 3, got {N}")
    if not (0 < c_M < 1):
        raise ValueError(f"c_M must be in (0, 1), got {c_M}")
    if not (0 < F_min < F_max):
        raise ValueError(f"need 0 < F_min < F_max, got {F_min}, {F_max}")
    if not 0 <= off_frac < 1 - c_M:
        raise ValueError(f"off_frac must be in [0, 1 - c_M) = [0, {1 - c_M}), got {off_frac}")
    F = np.geomspace(F_min, F_max, N)
    M_target = 8.0 / F**2
    M0 = c_M * M_target
    sM = cv_M * M0
    # off-diagonal profile s_i ∝ sqrt(M0_i): keeps every term of Eq 10 ∝ M_ii and
    # sigma~_theta,i ∝ F_i (Eq 11), and M^mu stays positive definite with high probability
    r = np.sqrt(M0 / M0.max())
    sT2 = (1 - c_M - off_frac) * M_target / (M0**2 + sM**2)
    sigma_off = 0.0
    for _ in range(100):  # fixed point: M_ii(sigma_theta) = M_target (Eq 10)
        w = sT2.copy()
        w[0] += theta1_0**2
        sigma_off = (off_frac * M0.max() / (c_M * np.sum(r**2 * w))) ** 0.25
        off = offdiag_weighted_sum(sigma_off * r, w)
        sT2 = np.clip(M_target - M0 - off, 1e-12, None) / (M0**2 + sM**2)
    spec = MLFEnsembleSpec(
        M0=M0,
        sigma_M=sM,
        sigma_theta=np.sqrt(sT2),
        sigma_off=sigma_off,
        off_profile=r,
        theta1_0=theta1_0,
        L0=L0,
        L0_cv=L0_cv,
        name="paper-like",
        meta={"F_target": F.tolist(), "c_M": c_M, "cv_M": cv_M, "off_frac": off_frac},
    )
    M = averaged_curvature(**spec.theory_kwargs())
    if np.max(np.abs(M / M_target - 1)) > 1e-6:
        raise RuntimeError(
            "paper-like preset could not match Eq 10 to the target flatness; lower off_frac"
        )
    return spec


def from_profiles(
    M0,
    sigma_M,
    sigma_theta,
    *,
    sigma_off=0.0,
    off_profile=None,
    theta1_0=0.0,
    L0=1e-2,
    L0_cv=0.3,
) -> MLFEnsembleSpec:
    """An ensemble from caller-measured per-mode profiles (e.g. from a real network)."""
    return MLFEnsembleSpec(
        M0=M0,
        sigma_M=sigma_M,
        sigma_theta=sigma_theta,
        sigma_off=float(sigma_off),
        off_profile=off_profile,
        theta1_0=float(theta1_0),
        L0=float(L0),
        L0_cv=float(L0_cv),
        name="from-profiles",
    )


def get_preset(name: str, **kw) -> MLFEnsembleSpec:
    if name == "paper-like":
        return paper_like(**kw)
    if name == "from-profiles":
        return from_profiles(**kw)
    if name == "from-network":
        return from_network(**kw)
    raise ValueError(f"unknown preset {name!r}; choose one of {ALL_PRESETS}")
