"""Drift versus diffusion of the PCA coordinates theta_i(t) (Fig 1C-D).

PC1 moves with a persistent net drift; the other modes random-walk with a short velocity
correlation time. These functions turn that into numbers per mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def _as_2d(theta) -> np.ndarray:
    th = np.asarray(theta, dtype=np.float64)
    if th.ndim == 1:
        th = th[:, None]
    if th.ndim != 2 or th.shape[0] < 4:
        raise ValueError(f"theta must be (n_steps >= 4, n_modes), got shape {th.shape}")
    if not np.all(np.isfinite(th)):
        raise ValueError("theta has non-finite values; the trajectory diverged")
    return th


def velocity_autocorrelation(theta, block: int = 1, max_lag: int | None = None) -> np.ndarray:
    """Normalised (non-centred) autocorrelation C(tau) of the block velocity of each mode.

    The velocity is ``v_t = (theta[(t+1) block] - theta[t block]) / block``. C is *not*
    mean-subtracted, so a persistent drift shows as a plateau at ``<v>^2 / <v^2>`` while a
    pure random walk decays to 0 after one lag. Returns an array (max_lag + 1, n_modes).
    """
    th = _as_2d(theta)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    coarse = th[::block]
    v = np.diff(coarse, axis=0) / block
    n = v.shape[0]
    if n < 2:
        raise ValueError(f"block={block} leaves fewer than 2 velocities; use a smaller block")
    if max_lag is None:
        max_lag = n // 2
    max_lag = min(max_lag, n - 1)
    c0 = np.mean(v * v, axis=0)
    c0 = np.where(c0 > 0, c0, 1.0)
    out = np.empty((max_lag + 1, v.shape[1]))
    for lag in range(max_lag + 1):
        out[lag] = np.mean(v[: n - lag] * v[lag:], axis=0) / c0
    return out


@dataclass(frozen=True)
class DriftDiffusion:
    """Per-mode drift/diffusion numbers (arrays indexed by mode).

    drift_velocity     net displacement / elapsed steps (per step)
    diffusion          mean squared block velocity minus the drift part, per step: D_i
    drift_ratio        |net displacement| / sqrt(sum of squared block increments):
                       ~1 for a random walk, ~sqrt(n_blocks) for ballistic drift
    corr_time_steps    first lag (in steps) where C(tau) drops below 1/e; equals the
                       longest lag examined (``censored``) when it never does
    """

    block: int
    drift_velocity: np.ndarray
    diffusion: np.ndarray
    drift_ratio: np.ndarray
    corr_time_steps: np.ndarray
    censored: np.ndarray

    def as_dict(self) -> dict:
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()
        }


def drift_diffusion(theta, block: int = 1, max_lag: int | None = None) -> DriftDiffusion:
    """Drift velocity, diffusion constant and velocity correlation time of each mode."""
    th = _as_2d(theta)
    n_steps = th.shape[0] - 1
    drift = (th[-1] - th[0]) / n_steps
    coarse = th[::block]
    inc = np.diff(coarse, axis=0)
    msd_step = np.mean(inc * inc, axis=0) / block  # <dtheta^2> per step
    diffusion = np.clip(msd_step - drift**2 * block, 0.0, None)
    drift_ratio = np.abs(coarse[-1] - coarse[0]) / np.sqrt(np.sum(inc * inc, axis=0) + 1e-300)
    acf = velocity_autocorrelation(th, block=block, max_lag=max_lag)
    below = acf < np.exp(-1.0)
    below[0] = False
    first = np.where(below.any(axis=0), below.argmax(axis=0), acf.shape[0] - 1)
    censored = ~below.any(axis=0)
    return DriftDiffusion(
        block=block,
        drift_velocity=drift,
        diffusion=diffusion,
        drift_ratio=drift_ratio,
        corr_time_steps=first.astype(np.float64) * block,
        censored=censored,
    )
