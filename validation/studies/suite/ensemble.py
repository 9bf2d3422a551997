"""Per-minibatch MLF ensemble along K directions, through the ``Landscape`` protocol only.

At the solution w0 and for each minibatch mu, ln L^mu is probed along the directions p_i by
central differences of its gradient (``minibatch_loss_and_grad``):

    d_i^mu(a) = p_i . grad ln L^mu(w0 + a p_j),
    H^mu_ij = [d_i^mu(+h_j) - d_i^mu(-h_j)] / (2 h_j)        (the K x K matrix M^mu of Eq 9),
    M^mu_ii = H^mu_ii,   theta^mu_i = -d_i^mu(0) / M^mu_ii  (one-direction Eq 9 minimum),
    L^mu_0 = L^mu(w0).

For an exact Eq 9 loss (the simulator's MLF landscape) these are exact for any h: ln L^mu
is quadratic. The one-direction minimum is the profile minimum of Eq 11 (it includes the
off-diagonal shift sum_j M_ij theta_j / M_ii). The active temperature of Eq 17 at w0,
T_i(0) = alpha/2 <(p_i . grad (L^mu - L))^2>_mu, comes from the same calls.

This is the suite's own measurement; the mechanism study's ``measure_ensemble`` returns the
same diagonal arrays (``M``, ``theta``, ``L0``) and, when present, is preferred by
:func:`measure` (the suite adds the cross-mode matrix, which it needs for the ablation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MinibatchEnsemble:
    """Arrays per minibatch (rows) and direction (columns); ``M_cross`` (n_mu, K, K)."""

    M: np.ndarray
    theta: np.ndarray
    L0: np.ndarray
    M_cross: np.ndarray
    grad: np.ndarray  # p_i . grad L^mu(w0), (n_mu, K)
    steps: np.ndarray  # h_i, (K,)
    batches: np.ndarray

    def temperature(self, alpha: float) -> np.ndarray:
        """Eq 17 at dtheta = 0: T_i(0) = alpha/2 <(p_i . grad delta L^mu)^2>_mu, (K,)."""
        g = self.grad - self.grad.mean(axis=0)
        return 0.5 * float(alpha) * (g**2).mean(axis=0)

    def arrays(self) -> dict:
        return {
            "ensemble_M": self.M,
            "ensemble_theta": self.theta,
            "ensemble_L0": self.L0,
            "ensemble_M_cross": self.M_cross,
            "ensemble_grad": self.grad,
            "ensemble_steps": self.steps,
        }


def measure_minibatch_ensemble(
    landscape, w0, directions, *, steps, batches=None, max_batches: int = 64
) -> MinibatchEnsemble:
    """Measure the ensemble (module docstring). ``steps`` (K,) or scalar: h_i, e.g. a tenth
    of each direction's flatness; ``batches``: minibatch indices (default: the first
    ``max_batches``)."""
    P = torch.as_tensor(directions)
    if P.dim() != 2:
        raise ValueError(f"directions must be (K, n_params), got {tuple(P.shape)}")
    K = P.shape[0]
    h = np.broadcast_to(np.asarray(steps, dtype=np.float64), (K,)).copy()
    if not np.all(np.isfinite(h) & (h > 0)):
        raise ValueError("steps must be positive and finite (e.g. 0.1 * F_i)")
    if batches is None:
        batches = np.arange(min(int(landscape.n_minibatches), int(max_batches)))
    batches = np.asarray(batches, dtype=np.int64)
    if batches.size < 2:
        raise ValueError("need >= 2 minibatches for an ensemble")
    w0 = torch.as_tensor(w0).reshape(-1)
    n = batches.size
    H = np.zeros((n, K, K))
    d0 = np.zeros((n, K))
    g0 = np.zeros((n, K))
    L0 = np.zeros(n)

    def dlog(w, mu):
        L, g = landscape.minibatch_loss_and_grad(w, int(mu))
        Pg = P.to(g.dtype).to(g.device)
        proj = (Pg @ g).double().cpu().numpy()
        return float(L), proj

    for r, mu in enumerate(batches):
        L, proj = dlog(w0, mu)
        L0[r], g0[r], d0[r] = L, proj, proj / L
        for j in range(K):
            pj = P[j].to(w0.dtype).to(w0.device)
            Lp, gp = dlog(w0 + h[j] * pj, mu)
            Lm, gm = dlog(w0 - h[j] * pj, mu)
            H[r, :, j] = (gp / Lp - gm / Lm) / (2 * h[j])
    H = 0.5 * (H + H.transpose(0, 2, 1))
    Mii = np.diagonal(H, axis1=1, axis2=2).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(Mii != 0, -d0 / Mii, 0.0)
    return MinibatchEnsemble(
        M=Mii, theta=theta, L0=L0, M_cross=H, grad=g0, steps=h, batches=batches
    )
