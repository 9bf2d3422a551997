"""The two phases of learning (Fig S1): fast learning, then exploration.

The full-training loss L(epoch) drops quickly, then slowly. We locate the transition as the
breakpoint of a continuous two-segment straight-line fit to ``log L`` versus epoch (the
breakpoint that minimises the squared error), and call it confirmed once the loss after it
falls at most ``max_slope_ratio`` times as fast (in log L per epoch) as before it and
enough epochs lie beyond it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PhaseTransition:
    """Where the fast-learning phase ends (epochs are indices into the loss curve)."""

    transition_epoch: int
    region: tuple[int, int]  # epochs whose breakpoint fits about as well (F-test, ~1 sigma)
    fast_slope: float  # d log L / d epoch before the transition
    slow_slope: float  # d log L / d epoch after it
    confirmed: bool
    n_epochs: int

    def as_dict(self) -> dict:
        d = asdict(self)
        d["region"] = list(self.region)
        return d


def _segment_fit(e: np.ndarray, y: np.ndarray, b: float) -> tuple[float, np.ndarray]:
    basis = np.stack([np.ones_like(e), np.minimum(e - b, 0.0), np.maximum(e - b, 0.0)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    resid = y - basis @ coef
    return float(resid @ resid), coef


def detect_transition(
    losses,
    *,
    min_epochs_after: int = 3,
    max_slope_ratio: float = 0.25,
) -> PhaseTransition:
    """Locate the fast-learning -> exploration transition in a per-epoch loss curve.

    ``losses[e]`` is the full-training loss after epoch ``e`` (index 0 may be the loss at
    initialisation). Needs at least 5 positive finite values.
    """
    L = np.asarray(losses, dtype=np.float64).ravel()
    if L.size < 5:
        raise ValueError(f"phase detection needs at least 5 epochs of loss, got {L.size}")
    if not np.all(np.isfinite(L)) or np.any(L <= 0):
        bad = int(np.flatnonzero(~np.isfinite(L) | (L <= 0))[0])
        raise ValueError(
            f"loss curve has a non-finite or non-positive value at epoch {bad} ({L[bad]}); "
            "training diverged - lower the learning rate"
        )
    y = np.log(L)
    e = np.arange(L.size, dtype=np.float64)
    candidates = np.arange(1, L.size - 1)
    sse = np.empty(candidates.size)
    coefs = []
    for k, b in enumerate(candidates):
        sse[k], c = _segment_fit(e, y, float(b))
        coefs.append(c)
    k_best = int(np.argmin(sse))
    b_best = int(candidates[k_best])
    _, s1, s2 = coefs[k_best]
    # Breakpoints whose fit is within ~1 sigma of the best (F-test with 1 extra parameter).
    dof = max(L.size - 4, 1)
    tol = sse[k_best] * (1.0 + 1.0 / dof) + 1e-15
    near = candidates[sse <= tol]
    region = (int(near.min()), int(near.max()))
    steep_then_flat = s1 < 0 and abs(s2) <= max_slope_ratio * abs(s1)
    confirmed = bool(steep_then_flat and (L.size - 1 - b_best) >= min_epochs_after)
    return PhaseTransition(b_best, region, float(s1), float(s2), confirmed, int(L.size))
