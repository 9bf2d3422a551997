"""The ``from-network`` preset: an MLF ensemble built from a network's measured minibatch ensemble.

Input: plain arrays measured along K PCA directions p_1..p_K at the solution w0 (mode 1 =
PC1, the drift direction), one row per minibatch mu (the mechanism stage's ``ensemble_M``,
``ensemble_theta``, ``ensemble_L0``):

- ``M`` (n_mu, K): per-minibatch curvature M^mu_ii of ln L^mu along p_i (Eq 9);
- ``theta`` (n_mu, K): per-minibatch minimum theta^mu_i along p_i;
- ``L0`` (n_mu, K) or (n_mu,): per-minibatch level L^mu_0 (one per minibatch; a (n_mu, K)
  array from per-direction fits is averaged over directions);
- optionally ``M_cross`` (n, K, K): the full per-minibatch matrix M^mu_ij in the top-K
  subspace (its own set of n minibatches), whose off-diagonal spread sets the separable
  cross-mode scale sigma_ij = s_i s_j.

Output: :class:`MLFEnsembleSpec` with the mean-field law of Sec IV read off as moments,
nothing fitted to the network's psi:

    M0_i = <M^mu_ii>,  sigma_M,i = std M^mu_ii,  L0 = <L^mu_0>,  L0_cv = std L^mu_0 / L0,
    b^mu_i = M^mu_ii theta^mu_i  (minus the log-slope of L^mu at w0: always well measured),
    theta1_0 = <b^mu_1> / M0_1,
    sigma_theta,i^2 = (Var b^mu_i - sigma_M,i^2 theta_0,i^2) / (M0_i^2 + sigma_M,i^2),
    s_i s_j ~ std_mu M^mu_ij (i != j): least squares of ln std M_ij = ln s_i + ln s_j.

sigma_theta comes from the moments of b = M theta under the law's independence of M^mu_ii
and theta^mu_i (E b = M0 theta_0, Var b = (M0^2 + sigma_M^2) sigma_theta^2 + sigma_M^2
theta_0^2), not from the spread of the one-direction minima theta^mu_i = b^mu_i / M^mu_ii
themselves: a minibatch whose profile is nearly flat along p_i (M^mu_ii ~ 0, typical of PC1)
gives an arbitrarily large theta^mu_i, and that outlier would set sigma_theta alone.

A measured network direction can have <M^mu_ii> <= 0 (a locally concave profile); the MLF law
needs M0_i > 0, so such modes are floored at ``min_curvature_frac`` times the median positive
curvature and listed in ``meta["floored_modes"]`` (the report shows them).
"""

from __future__ import annotations

import numpy as np
import torch

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
    b = M * theta  # M^mu_ii theta^mu_i = - d ln L^mu / d theta_i at w0
    theta1_0 = float(b[:, 0].mean() / M0[0])
    var_b = b.var(axis=0, ddof=1)
    var_b[0] -= sigma_M[0] ** 2 * theta1_0**2
    sigma_theta = np.sqrt(np.clip(var_b, 0.0, None) / (M0**2 + sigma_M**2))
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
        if Mc.shape[1:] != (K, K):  # its own minibatches: only the off-diagonal spread is used
            raise ValueError(f"M_cross must be (n, K, K) with K = {K}, got {Mc.shape}")
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


class MeasuredMLFLandscape:
    """A finite ensemble of *measured* Eq 9 losses in a K-dimensional subspace:

        L^mu(x) = L^mu_0 exp(g^mu . x + x^T M^mu x / 2),

    with each minibatch's own matrix M^mu (n_mu, K, K) and log-gradient g^mu = -M^mu theta^mu
    (n_mu, K) as measured on a network (no Gaussian law, no solve of M^mu). It implements the
    :class:`sgdyn.landscape.Landscape` protocol and the ``matvec2`` hook the integrators use,
    so the same SGD code and the same flatness estimator run on it. ``diagonal=True`` keeps
    only the diagonal of every M^mu (the one-direction fits).
    """

    def __init__(self, spec: MLFEnsembleSpec, M, grad_log, L0, *, diagonal: bool = False):
        M = _arr(M, "M", (3,))
        g = _arr(grad_log, "grad_log", (2,))
        L = _arr(L0, "L0", (1,))
        n, K, _ = M.shape
        if g.shape != (n, K) or L.shape != (n,) or M.shape != (n, K, K) or spec.N != K:
            raise ValueError(
                f"need M (n, K, K), grad_log (n, K), L0 (n,) and a spec with K modes; got "
                f"{M.shape}, {g.shape}, {L.shape}, N={spec.N}"
            )
        if diagonal:
            M = np.einsum("nii->ni", M)[:, :, None] * np.eye(K)[None]
        self.spec = spec
        self.n_params = K
        self.n_minibatches = n
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.M = torch.as_tensor(0.5 * (M + M.transpose(0, 2, 1)), dtype=self.dtype)
        self.minus_g = torch.as_tensor(-g, dtype=self.dtype)
        self.L0mu = torch.as_tensor(L, dtype=self.dtype)
        self.theta_mu = torch.zeros(n, K, dtype=self.dtype)  # unused: matvec2 gives -g

    def matvec2(self, mu, x):
        """(M^mu x, -g^mu): the integrators' X = x.(u/2 - v), gradient direction u - v."""
        M = self.M[mu]
        return torch.einsum("rij,rj->ri", M, x.to(self.dtype)), self.minus_g[mu]

    def loss_and_grad_pairs(self, mu, x):
        u, v = self.matvec2(mu, x)
        X = (x.to(self.dtype) * (0.5 * u - v)).sum(-1)
        L = self.L0mu[mu] * torch.exp(X)
        return L, L[:, None] * (u - v)

    def _mean_loss(self, P):
        P = P.to(self.dtype)
        n = P.shape[0]
        acc = torch.zeros(n, dtype=torch.float64)
        for mu in range(self.n_minibatches):
            L, _ = self.loss_and_grad_pairs(torch.full((n,), mu), P)
            acc += L.double()
        return acc / self.n_minibatches

    def full_loss(self, w):
        return self._mean_loss(w.reshape(1, -1))[0]

    def minibatch_loss_and_grad(self, w, mu: int):
        if not 0 <= mu < self.n_minibatches:
            raise ValueError(f"minibatch index {mu} out of range [0, {self.n_minibatches})")
        L, g = self.loss_and_grad_pairs(torch.tensor([mu]), w.reshape(1, -1))
        return L[0], g[0]

    def losses_along(self, w0, directions, amplitudes):
        d = torch.as_tensor(directions, dtype=self.dtype)
        a = torch.as_tensor(amplitudes, dtype=self.dtype)
        P = w0.to(self.dtype)[None, None, :] + a[:, :, None] * d[:, None, :]
        return self._mean_loss(P.reshape(-1, self.n_params)).reshape(a.shape)

    def per_sample_projections(self, w, directions):
        mu = torch.arange(self.n_minibatches)
        _, g = self.loss_and_grad_pairs(mu, w.reshape(1, -1).expand(self.n_minibatches, -1))
        return g @ torch.as_tensor(directions, dtype=g.dtype).T
