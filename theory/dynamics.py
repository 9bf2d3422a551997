"""Drift versus diffusion of the PCA coordinates theta_i(t) (Fig 1C-D), and a drift test.

PC1 moves with a persistent net drift; the other modes random-walk with a short velocity
correlation time. :func:`drift_diffusion` turns that into numbers per mode. Those numbers are
*not* zero for a driftless random walk: PCA picks the directions of largest excursion, and
the PCA of a pure random walk has cosine-shaped modes with a large PC1 drift ratio (see
:mod:`sgdyn.theory.nulls` for the random-walk values to compare with). :func:`drift_test`
tests drift on the increments instead, in a direction chosen without looking at the
increments it is tested on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats

from ._arrays import Caller, caller_of, check_array, to_numpy, xp_array

__all__ = [
    "DriftDiffusion",
    "DriftTest",
    "drift_diffusion",
    "drift_test",
    "drift_test_from_gram",
    "velocity_autocorrelation",
]


def _as_2d(theta) -> np.ndarray:
    th = check_array(
        theta,
        "theta",
        ndim=(1, 2),
        hint="pass theta as (n_steps, n_modes); the trajectory diverged if values are not finite",
    )
    if th.ndim == 1:
        th = th[:, None]
    if th.shape[0] < 4:
        raise ValueError(f"theta must be (n_steps >= 4, n_modes), got shape {th.shape}")
    return th


def _check_block(block, n_steps: int) -> int:
    b = int(block)
    if b != block or b < 1:
        raise ValueError(f"block must be an integer >= 1, got {block}")
    if (n_steps - 1) // b < 2:
        raise ValueError(f"block={b} leaves fewer than 2 velocities; use a smaller block")
    return b


def _acf(th: np.ndarray, block: int, max_lag: int | None) -> np.ndarray:
    coarse = th[::block]
    v = np.diff(coarse, axis=0) / block
    n = v.shape[0]
    if max_lag is None:
        max_lag = n // 2
    max_lag = min(int(max_lag), n - 1)
    c0 = np.mean(v * v, axis=0)
    still = c0 <= 0
    if still.any():
        raise ValueError(
            f"mode {int(np.flatnonzero(still)[0])} does not move (all velocities are zero): "
            "drop the modes beyond the trajectory's rank"
        )
    out = np.empty((max_lag + 1, v.shape[1]))
    for lag in range(max_lag + 1):
        out[lag] = np.mean(v[: n - lag] * v[lag:], axis=0) / c0
    return out


def velocity_autocorrelation(theta, block: int = 1, max_lag: int | None = None):
    """Normalised (non-centred) autocorrelation C(tau) of the block velocity of each mode.

    The velocity is ``v_t = (theta[(t+1) block] - theta[t block]) / block``. C is *not*
    mean-subtracted, so a persistent drift shows as a plateau at ``<v>^2 / <v^2>`` while a
    pure random walk decays to 0 after one lag. Returns (max_lag + 1, n_modes), in the
    caller's array type.
    """
    th = _as_2d(theta)
    return caller_of(theta).wrap(_acf(th, _check_block(block, th.shape[0]), max_lag))


@dataclass(frozen=True)
class DriftDiffusion:
    """Per-mode drift/diffusion numbers (arrays indexed by mode, in the caller's type).

    drift_velocity     net displacement / elapsed steps (per step)
    diffusion          variance of the block increments per step: D_i (drift removed)
    drift_ratio        |net displacement| / sqrt(sum of squared block increments): for a
                       random walk in a *fixed* direction its square averages 1; along PCA
                       modes of a random walk it does not (PC1 of an isotropic walk of
                       T = 1000 steps in blocks of 10: ~9; :mod:`sgdyn.theory.nulls`);
                       ~sqrt(n_blocks) for ballistic drift
    corr_time_steps    first lag (in steps) where C(tau) drops below 1/e; equals the
                       longest lag examined (``censored``) when it never does
    """

    block: int
    drift_velocity: object
    diffusion: object
    drift_ratio: object
    corr_time_steps: object
    censored: object

    def as_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if k != "block":
                d[k] = to_numpy(v).tolist()
        return d


def drift_diffusion(theta, block: int = 1, max_lag: int | None = None) -> DriftDiffusion:
    """Drift velocity, diffusion constant and velocity correlation time of each mode.

    ``theta`` (n_steps, n_modes) or (n_steps,). Results come back in the caller's array type.
    """
    th = _as_2d(theta)
    block = _check_block(block, th.shape[0])
    n_steps = th.shape[0] - 1
    drift = (th[-1] - th[0]) / n_steps
    coarse = th[::block]
    inc = np.diff(coarse, axis=0)
    diffusion = np.var(inc, axis=0) / block
    drift_ratio = np.abs(coarse[-1] - coarse[0]) / np.sqrt(np.sum(inc * inc, axis=0) + 1e-300)
    acf = _acf(th, block, max_lag)
    below = acf < np.exp(-1.0)
    below[0] = False
    first = np.where(below.any(axis=0), below.argmax(axis=0), acf.shape[0] - 1)
    censored = ~below.any(axis=0)
    w = caller_of(theta).wrap
    return DriftDiffusion(
        block=block,
        drift_velocity=w(drift),
        diffusion=w(diffusion),
        drift_ratio=w(drift_ratio),
        corr_time_steps=w(first.astype(np.float64) * block),
        censored=w(censored),
    )


@dataclass(frozen=True)
class DriftTest:
    """Split-half drift test on block increments (:func:`drift_test`).

    ``z``: mean increment of the second half along the first half's mean-increment
    direction, in units of its standard error. Under a driftless random walk whose block
    increments are independent it is Student-t distributed with ``dof`` degrees of freedom
    (null mean 0, sd ~1), whatever the increments' covariance; ``p_value`` is one-sided
    (drift continues in the same direction). ``drift_ratio_full``: |net displacement| /
    sqrt(sum of squared block increments) in the full space (no PCA selection): its square
    averages 1 under the same null. ``n_blocks`` block increments of ``block`` steps.
    """

    z: float
    p_value: float
    dof: int
    drift_ratio_full: float
    block: int
    n_blocks: int

    def as_dict(self) -> dict:
        return asdict(self)


def drift_test_from_gram(G, block: int) -> DriftTest:
    """:func:`drift_test` from the (T, T) Gram matrix of the positions, G = X X^T.

    Everything the test needs is an inner product of positions, so the same code runs on a
    real trajectory and on a random-walk null simulated in Gram form (:mod:`.nulls`).
    """
    G = check_array(G, "G", ndim=2, hint="pass the (T, T) Gram matrix of the positions")
    T = G.shape[0]
    if G.shape != (T, T):
        raise ValueError(f"G must be square, got {G.shape}")
    block = _check_block(block, T)
    idx = np.arange(0, T, block)
    n_b = idx.size - 1
    if n_b < 4:
        raise ValueError(f"block={block} leaves {n_b} block increments; the test needs >= 4")
    # block increments d_b = x[idx[b+1]] - x[idx[b]]: their Gram from G
    Gi = G[np.ix_(idx, idx)]
    B = Gi[1:, 1:] - Gi[1:, :-1] - Gi[:-1, 1:] + Gi[:-1, :-1]  # (n_b, n_b) <d_a, d_b>
    h = n_b // 2
    first, second = np.arange(h), np.arange(h, n_b)
    u_norm2 = B[np.ix_(first, first)].sum()  # |sum_a d_a|^2 over the first half
    if not u_norm2 > 0:
        raise ValueError("the trajectory did not move in the first half of the window")
    s = B[np.ix_(second, first)].sum(axis=1) / np.sqrt(u_norm2)  # d_b . u, u unit
    m, sd = float(np.mean(s)), float(np.std(s, ddof=1))
    dof = second.size - 1
    z = m / (sd / np.sqrt(second.size)) if sd > 0 else float("inf") * np.sign(m)
    net2 = G[idx[-1], idx[-1]] + G[idx[0], idx[0]] - 2 * G[idx[0], idx[-1]]
    ratio = float(np.sqrt(max(net2, 0.0) / max(np.trace(B), 1e-300)))
    return DriftTest(
        z=float(z),
        p_value=float(stats.t.sf(z, dof)),
        dof=int(dof),
        drift_ratio_full=ratio,
        block=block,
        n_blocks=int(n_b),
    )


def drift_test(trajectory, block: int = 1) -> DriftTest:
    """Is there drift beyond a random walk? A test on the increments, not the positions.

    ``trajectory`` (T, N): positions (weights) at T steps, any array library; the Gram
    matrix X X^T (T x T) is formed in the caller's namespace (on its device), then:
    block increments d_b of ``block`` steps; the drift direction u = mean of the first
    half's d_b (chosen without the second half); z = mean(d_b . u) / its standard error over
    the second half. PCA directions are not used: they are chosen *because* the walk went
    far along them, which makes PC1 of a pure random walk look like drift.
    """
    c = caller_of(trajectory)
    f64 = Caller(c.xp, c.device, c.xp.float64)  # Gram differences need float64 (cancellation)
    X = xp_array(trajectory, "trajectory", f64, hint="pass the positions as (T, N)")
    if X.ndim != 2:
        raise ValueError(f"trajectory must be (T, N), got shape {tuple(X.shape)}")
    T = X.shape[0]
    block = _check_block(block, T)
    # the test reads inner products of the block endpoints only: their Gram, not the T x T one
    Xb = X[::block]
    if Xb.shape[0] - 1 < 4:
        raise ValueError(f"block={block} leaves {Xb.shape[0] - 1} block increments; the test "
                         "needs >= 4")  # fmt: skip
    Xb = Xb - c.xp.mean(Xb, axis=0, keepdims=True)  # centring does not change increments
    return replace(drift_test_from_gram(to_numpy(Xb @ c.xp.matrix_transpose(Xb)), 1), block=block)
