"""The two phases of learning (Fig S1): fast learning, then exploration.

The full-training loss drops quickly, then slowly ("the loss L only changes very slowly").
We make that a number: the *learning rate of the loss* r(e) = -d ln L / d epoch, estimated
at each epoch by a robust (Theil-Sen: median of pairwise slopes) fit of ln L over the
trailing ``window`` epochs, so single-epoch loss spikes do not matter. The transition epoch
is the first epoch from which r(e) <= ``max_slow_rate`` (default 0.05: the loss falls by less
than 5 % per epoch) holds for ``persist`` consecutive epochs; the highlighted transition
region of Fig S1 starts where r first falls below ``region_factor * max_slow_rate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PhaseTransition:
    """Where the fast-learning phase ends (epochs index the loss curve)."""

    transition_epoch: int | None  # None when the curve never slows down enough
    region: tuple[int, int] | None  # the transition region (Fig S1 shading)
    rate: np.ndarray  # r(e) = -d ln L/d epoch (trailing robust fit; NaN for e < window)
    fast_rate: float  # median r over the fast phase
    slow_rate: float  # median r over the exploration phase (NaN if not reached)
    max_slow_rate: float
    confirmed: bool
    n_epochs: int

    def as_dict(self) -> dict:
        d = asdict(self)
        d["region"] = None if self.region is None else list(self.region)
        d["rate"] = [None if not np.isfinite(r) else float(r) for r in self.rate]
        return d


def loss_rate(losses, window: int = 5) -> np.ndarray:
    """r(e) = -(Theil-Sen slope of ln L over epochs e-window..e); NaN where e < window."""
    y = np.log(np.asarray(losses, dtype=np.float64))
    r = np.full(y.size, np.nan)
    idx = np.arange(window + 1)
    i, j = np.triu_indices(window + 1, k=1)
    for e in range(window, y.size):
        seg = y[e - window : e + 1]
        r[e] = -np.median((seg[j] - seg[i]) / (idx[j] - idx[i]))
    return r


def detect_transition(
    losses,
    *,
    window: int = 5,
    max_slow_rate: float = 0.05,
    persist: int = 3,
    region_factor: float = 2.0,
) -> PhaseTransition:
    """Locate the fast-learning -> exploration transition in a per-epoch loss curve.

    ``losses[e]`` is the full-training loss after epoch ``e`` (index 0: at initialisation).
    Needs at least ``window + 1`` positive finite values.
    """
    L = np.asarray(losses, dtype=np.float64).ravel()
    if window < 2 or persist < 1:
        raise ValueError(f"need window >= 2 and persist >= 1, got {window}, {persist}")
    if L.size < window + 1:
        raise ValueError(
            f"phase detection needs at least {window + 1} epochs of loss, got {L.size}"
        )
    if not np.all(np.isfinite(L)) or np.any(L <= 0):
        bad = int(np.flatnonzero(~np.isfinite(L) | (L <= 0))[0])
        raise ValueError(
            f"loss curve has a non-finite or non-positive value at epoch {bad} ({L[bad]}); "
            "training diverged - lower the learning rate"
        )
    r = loss_rate(L, window)
    below = np.nan_to_num(r, nan=np.inf) <= max_slow_rate
    # the rate must stay below the threshold for ``persist`` consecutive epochs
    run = np.convolve(below.astype(int), np.ones(persist, dtype=int), mode="valid")
    slow = np.flatnonzero(run == persist)
    if slow.size == 0:
        fast = r[np.isfinite(r)]
        return PhaseTransition(
            None, None, r, float(np.median(fast)), float("nan"), max_slow_rate, False, L.size
        )
    e_t = int(slow[0])
    below_region = np.flatnonzero(r[: e_t + 1] <= region_factor * max_slow_rate)
    region = (int(below_region[0]), e_t)
    fast = r[window : region[0] + 1]
    return PhaseTransition(
        transition_epoch=e_t,
        region=region,
        rate=r,
        fast_rate=float(np.median(fast)) if fast.size else float("nan"),
        slow_rate=float(np.nanmedian(r[e_t:])),
        max_slow_rate=max_slow_rate,
        confirmed=True,
        n_epochs=int(L.size),
    )
