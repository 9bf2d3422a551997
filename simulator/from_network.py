"""The ``from-network`` preset: an MLF ensemble built from a network's measured minibatch ensemble.

Input: plain arrays measured along K PCA directions p_1..p_K at the solution w0 (mode 1 =
PC1, the drift direction), one row per minibatch mu (the mechanism stage's ``ensemble_M``,
``ensemble_theta``, ``ensemble_L0``):

- ``M`` (n_mu, K): per-minibatch curvature M^mu_ii of ln L^mu along p_i (Eq 9);
- ``theta`` (n_mu, K): per-minibatch minimum theta^mu_i along p_i;
- ``L0`` (n_mu, K) or (n_mu,): per-minibatch level L^mu_0 (one per minibatch; a (n_mu, K)
  array from per-direction fits is averaged over directions);
- optionally ``M_cross`` (n_mu, K, K): the full per-minibatch matrix M^mu_ij in the top-K
  subspace, whose off-diagonal spread sets the separable cross-mode scale sigma_ij = s_i s_j.

Output: :class:`MLFEnsembleSpec` with the mean-field law of Sec IV read off as moments,
nothing fitted to the network's psi:

    M0_i = <M^mu_ii>,  sigma_M,i = std M^mu_ii,  theta1_0 = <theta^mu_1>,
    sigma_theta,i = std theta^mu_i (i >= 2; mode 1 about its mean),
    L0 = <L^mu_0>,  L0_cv = std L^mu_0 / L0,
    s_i s_j ~ std_mu M^mu_ij (i != j): least squares of ln std M_ij = ln s_i + ln s_j.

A measured network direction can have <M^mu_ii> <= 0 (a locally concave profile); the MLF law
needs M0_i > 0, so such modes are floored at ``min_curvature_frac`` times the median positive
curvature and listed in ``meta["floored_modes"]`` (the report shows them).
"""

from __future__ import annotations

import numpy as np

from .ensemble import MLFEnsembleSpec


def _arr(x, name: str, ndim: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in ndim:
        dims = " or ".join(map(str, ndim))
        raise ValueError(f"{name} must have {dims} dimensions, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite entries (a failed per-minibatch fit?)")
    return a


def fit_separable_offdiag(M_cross) -> tuple[float, np.ndarray, dict]:
    """Separable off-diagonal scale from per-minibatch matrices ``M_cross`` (n_mu, K, K).

    sigma_ij = std_mu M^mu_ij for i < j; least squares of ln sigma_ij = ln s_i + ln s_j over
    the pairs. Returns ``(sigma_off, off_profile, info)`` with s = sigma_off * off_profile,
    max(off_profile) = 1, and ``info`` the fit's relative rms error and the raw pair scales.
    """
    Mc = _arr(M_cross, "M_cross", (3,))
    n_mu, K, K2 = Mc.shape
    if K != K2 or K < 3:
        raise ValueError(f"M_cross must be (n_mu, K, K) with K >= 3, got {Mc.shape}")
    if n_mu < 2:
        raise ValueError("M_cross needs >= 2 minibatches for a spread")
    Msym = 0.5 * (Mc + Mc.transpose(0, 2, 1))
    sd = Msym.std(axis=0, ddof=1)
    iu, ju = np.triu_indices(K, 1)
    y = sd[iu, ju]
    scale = float(np.median(np.abs(np.diagonal(Msym, axis1=1, axis2=2))))
    keep = y > 1e-9 * scale  # round-off spread of an exactly diagonal ensemble is no signal
    if keep.sum() < K:
        return 0.0, np.ones(K), {"rel_rms": None, "n_pairs": int(keep.sum())}
    A = np.zeros((int(keep.sum()), K))
    rows = np.arange(A.shape[0])
    A[rows, iu[keep]] = 1.0
    A[rows, ju[keep]] = 1.0
    logs, *_ = np.linalg.lstsq(A, np.log(y[keep]), rcond=None)
    s = np.exp(logs)
    pred = s[iu] * s[ju]
    info = {
        "rel_rms": float(np.sqrt(np.mean((pred[keep] / y[keep] - 1.0) ** 2))),
        "n_pairs": int(keep.sum()),
        "median_pair_sd": float(np.median(y)),
    }
    smax = float(s.max())
    return smax, s / smax, info


def from_network(
    M,
    theta,
    L0,
    *,
    M_cross=None,
    F=None,
    min_curvature_frac: float = 0.05,
    name: str = "from-network",
) -> MLFEnsembleSpec:
    """Build the MLF ensemble from measured per-minibatch arrays (module docstring).

    ``M_cross`` given: the measured cross-mode structure (separable fit); None: diagonal
    (sigma_off = 0). ``F`` (K,) (the network's flatness along the same directions) is only
    recorded in ``meta`` for the report.
    """
    M = _arr(M, "M", (2,))
    theta = _arr(theta, "theta", (2,))
    L = _arr(L0, "L0", (1, 2))
    n_mu, K = M.shape
    if theta.shape != M.shape:
        raise ValueError(f"theta has shape {theta.shape}, M {M.shape}: one row per minibatch")
    if L.shape[0] != n_mu or (L.ndim == 2 and L.shape != M.shape):
        raise ValueError(f"L0 must be (n_mu,) or (n_mu, K) = ({n_mu}, {K}), got {L.shape}")
    if n_mu < 2:
        raise ValueError("need >= 2 minibatches to measure an ensemble spread")
    if K < 2:
        raise ValueError(f"need >= 2 directions (PC1 + diffusive modes), got {K}")
    if np.any(L <= 0):
        raise ValueError("L0 (per-minibatch loss levels) must be positive")
    if not 0 < min_curvature_frac < 1:
        raise ValueError(f"min_curvature_frac must be in (0, 1), got {min_curvature_frac}")
    Lmu = L.mean(axis=1) if L.ndim == 2 else L
    M0 = M.mean(axis=0)
    pos = M0[M0 > 0]
    if pos.size == 0:
        raise ValueError(
            "every measured mean curvature <M^mu_ii> is <= 0: w0 is not near a minimum of the "
            "minibatch losses along these directions; capture later in the exploration phase"
        )
    floor = min_curvature_frac * float(np.median(pos))
    floored = np.nonzero(M0 < floor)[0]
    M0 = np.maximum(M0, floor)
    sigma_M = M.std(axis=0, ddof=1)
    sigma_theta = theta.std(axis=0, ddof=1)
    theta1_0 = float(theta[:, 0].mean())
    L0_mean = float(Lmu.mean())
    L0_cv = float(Lmu.std(ddof=1) / L0_mean)
    meta = {
        "n_minibatches_measured": int(n_mu),
        "floored_modes": (floored + 1).tolist(),
        "curvature_floor": floor,
        "theta_mean": theta.mean(axis=0).tolist(),
        "cross_mode": "diagonal" if M_cross is None else "measured (separable fit)",
    }
    if F is not None:
        meta["F_network"] = np.asarray(F, dtype=np.float64).ravel().tolist()
    sigma_off, off_profile = 0.0, None
    if M_cross is not None:
        Mc = _arr(M_cross, "M_cross", (3,))
        if Mc.shape != (n_mu, K, K):
            raise ValueError(f"M_cross must be (n_mu, K, K) = ({n_mu}, {K}, {K}), got {Mc.shape}")
        sigma_off, off_profile, info = fit_separable_offdiag(Mc)
        meta["offdiag_fit"] = info
    return MLFEnsembleSpec(
        M0=M0,
        sigma_M=sigma_M,
        sigma_theta=sigma_theta,
        sigma_off=float(sigma_off),
        off_profile=off_profile,
        theta1_0=theta1_0,
        L0=L0_mean,
        L0_cv=L0_cv,
        name=name,
        meta=meta,
    )
