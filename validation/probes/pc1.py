"""The drift along PC1 (Supplement II, Fig S2, Eqs S3-S5).

Moving a solution along p1, ``w = w0 + theta p1``, changes every sample's margin
``Delta Y_k = Y_k,correct - max_(wrong) Y_k`` roughly linearly, ``Delta Y_k(theta) ~
Delta Y_k(0) + beta_k theta`` (Eq S3), so the loss is ``L1(theta) ~ L0 exp(-beta theta +
beta2 theta^2)`` (Eq S5): ln L1 has a finite slope -beta at 0, which drives the drift.

p1's sign is arbitrary out of PCA; :func:`orient_along_drift` turns it to point along the
motion of the window (theta1(end) > theta1(start)), so that beta > 0 means the loss falls
in the direction SGD drifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sgdyn.theory.flatness import flatness_e_width, flatness_quadratic_fit

from .network_landscape import NetworkLandscape


def orient_along_drift(p1: torch.Tensor, trajectory: torch.Tensor) -> torch.Tensor:
    """p1 with the sign that makes the window's net displacement along it positive."""
    p1 = p1.reshape(-1)
    t = trajectory.to(p1.dtype)
    disp = float((t[-1] - t[0]) @ p1)
    return p1 if disp >= 0 else -p1


@torch.no_grad()
def margins_along(
    land: NetworkLandscape, w0: torch.Tensor, p: torch.Tensor, thetas, samples=None
) -> np.ndarray:
    """Delta Y_k(theta) (Eq S3) for the chosen samples, shape (n_samples, n_theta)."""
    w0 = land.as_point(w0, "w0")
    p = land.as_directions(p)[0]
    idx = torch.arange(land.n_samples) if samples is None else torch.as_tensor(samples)
    idx = idx.to(land.device)
    y = land.y[idx]
    out = []
    for th in np.asarray(thetas, dtype=np.float64):
        logits = land.outputs(w0 + float(th) * p, idx)
        correct = logits.gather(1, y[:, None])[:, 0]
        wrong = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        out.append((correct - wrong).double().cpu().numpy())
    return np.stack(out, axis=1)


@dataclass
class PC1Result:
    """Fig S2 numbers. ``beta``/``beta2`` from the fit of ln L1 (Eq S5); ``beta_k`` the
    per-sample margin slopes (Eq S3) with ``beta_k_mean``; ``class_margins`` (10, n_theta)
    the per-class mean margins of ``n_per_class`` samples (Fig S2A)."""

    thetas: np.ndarray
    lnL1: np.ndarray
    beta: float
    beta2: float
    fit_r2: float
    beta_k: np.ndarray
    beta_k_mean: float
    beta_k_median: float
    margin_fit_r2_median: float
    class_margins: np.ndarray
    class_labels: np.ndarray
    theta_range: float
    L0: float

    def summary(self) -> dict:
        return {
            "beta": self.beta,
            "beta2": self.beta2,
            "fit_r2": self.fit_r2,
            "beta_k_mean": self.beta_k_mean,
            "beta_k_median": self.beta_k_median,
            "margin_linear_fit_r2_median": self.margin_fit_r2_median,
            "theta_range": self.theta_range,
            "L0": self.L0,
            "slope_times_range": -self.beta * self.theta_range,
        }


def pc1_analysis(
    land: NetworkLandscape,
    w0: torch.Tensor,
    p1: torch.Tensor,
    *,
    theta_range: float | None = None,
    n_theta: int = 21,
    n_per_class: int = 5,
    seed: int = 0,
) -> PC1Result:
    """Eqs S3-S5 along ``p1`` around ``w0`` (orient p1 first with :func:`orient_along_drift`).

    ``theta_range``: half-width of the theta grid; default the smaller distance to the
    e*L0 crossing on either side (so ln L1 rises by at most ~1 in the fitted range).
    Per-sample slopes beta_k come from straight-line fits of Delta Y_k over the grid for
    every training sample.
    """
    w0 = land.as_point(w0, "w0")
    p1 = land.as_directions(p1)[0]
    L0 = float(land.full_loss(w0))
    if theta_range is None:
        ew = flatness_e_width(
            lambda a: land.losses_along(w0, p1[None], torch.as_tensor(a)[:, None])[:, 0].numpy(),
            1,
            L0=L0,
            init_step=0.1,
            tol=1e-3,
            on_unbounded="flag",
        )
        r = min(-ew.left[0], ew.right[0])
        theta_range = float(r) if np.isfinite(r) else 1.0
    thetas = np.linspace(-theta_range, theta_range, n_theta)
    L1 = land.losses_along(w0, p1[None], torch.as_tensor(thetas)[None])[0].numpy()
    q = flatness_quadratic_fit(thetas, L1[None], L0, fix_intercept=False)
    M = margins_along(land, w0, p1[None], thetas)
    X = np.stack([np.ones_like(thetas), thetas], axis=1)
    coef, *_ = np.linalg.lstsq(X, M.T, rcond=None)
    pred = (X @ coef).T
    ss_res = ((M - pred) ** 2).sum(1)
    ss_tot = ((M - M.mean(1, keepdims=True)) ** 2).sum(1)
    r2 = 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1)
    beta_k = coef[1]
    y = land.y.cpu().numpy()
    rng = np.random.default_rng(seed)
    labels = np.unique(y)
    cls = []
    for c in labels:
        pick = rng.choice(np.flatnonzero(y == c), size=min(n_per_class, int((y == c).sum())))
        cls.append(M[pick].mean(0))
    return PC1Result(
        thetas=thetas,
        lnL1=np.log(L1),
        beta=float(-q.slope[0]),
        beta2=float(q.curvature[0]),
        fit_r2=float(q.r2[0]),
        beta_k=beta_k,
        beta_k_mean=float(beta_k.mean()),
        beta_k_median=float(np.median(beta_k)),
        margin_fit_r2_median=float(np.median(r2)),
        class_margins=np.stack(cls),
        class_labels=labels,
        theta_range=float(theta_range),
        L0=L0,
    )
