"""The two phases of learning (Fig S1): fast learning, then exploration.

The full-training loss drops quickly, then slowly ("the loss L only changes very slowly").
We make that a number: the *learning rate of the loss* r(e) = -d ln L / d epoch, estimated
at each epoch by a robust Theil-Sen fit (median of pairwise slopes, the estimator of
``scipy.stats.theilslopes``) of ln L over the trailing ``window`` epochs, so single-epoch loss
spikes do not matter. The transition epoch is the first epoch from which
|r(e)| <= ``max_slow_rate`` (default 0.05: the loss changes by less than 5 % per epoch) holds
for ``persist`` consecutive epochs *after* a fast phase (some earlier r > ``max_slow_rate``);
the highlighted transition region of Fig S1 starts where r first falls below
``region_factor * max_slow_rate``. A curve that never fell fast (flat from the start) or
that rises is never confirmed as a transition.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._arrays import caller_of, check_array, to_numpy

__all__ = ["PhaseTransition", "detect_transition", "loss_rate"]


@dataclass(frozen=True)
class PhaseTransition:
    """Where the fast-learning phase ends (epochs index the loss curve).

    ``reason`` says why the transition was not confirmed (empty when it was).
    """

    transition_epoch: int | None  # None when the curve never slows down enough
    region: tuple[int, int] | None  # the transition region (Fig S1 shading)
    rate: object  # r(e) = -d ln L/d epoch (trailing robust fit; NaN for e < window)
    fast_rate: float  # median r over the fast phase
    slow_rate: float  # median r over the exploration phase (NaN if not reached)
    max_slow_rate: float
    confirmed: bool
    n_epochs: int
    reason: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["region"] = None if self.region is None else list(self.region)
        d["rate"] = [None if not np.isfinite(r) else float(r) for r in to_numpy(self.rate)]
        return d


def _check_losses(losses, name="losses") -> np.ndarray:
    L = check_array(losses, name, ndim=1, finite=False, hint="pass one loss per epoch")
    if not np.all(np.isfinite(L)) or np.any(L <= 0):
        bad = int(np.flatnonzero(~np.isfinite(L) | (L <= 0))[0])
        raise ValueError(
            f"loss curve has a non-finite or non-positive value at epoch {bad} ({L[bad]}); "
            "training diverged - lower the learning rate"
        )
    return L


def _rate(L: np.ndarray, window: int) -> np.ndarray:
    y = np.log(L)
    r = np.full(y.size, np.nan)
    if y.size <= window:
        return r
    i, j = np.triu_indices(window + 1, k=1)
    seg = sliding_window_view(y, window + 1)  # (n_epochs - window, window + 1)
    r[window:] = -np.median((seg[:, j] - seg[:, i]) / (j - i), axis=1)
    return r


def loss_rate(losses, window: int = 5):
    """r(e) = -(Theil-Sen slope of ln L over epochs e-window..e); NaN where e < window.

    Vectorised over epochs (all windows at once); the same numbers as
    ``scipy.stats.theilslopes`` per window, ~20x faster on an 80-epoch curve
    (``bench/bench_theory_libs.py``), which matters because the capture calls it every epoch.
    Returned in the caller's array type.
    """
    if int(window) < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    return caller_of(losses).wrap(_rate(_check_losses(losses), int(window)))


def detect_transition(
    losses,
    *,
    window: int = 5,
    max_slow_rate: float = 0.05,
    persist: int = 3,
    region_factor: float = 2.0,
) -> PhaseTransition:
    """Locate the fast-learning -> exploration transition in a per-epoch loss curve.

    ``losses[e]`` is the full-training loss after epoch ``e`` (index 0: at initialisation),
    1-D. Needs at least ``window + 1`` positive finite values. Not confirmed (with a
    ``reason``) when the loss never slowed down, never fell fast before slowing down (a flat
    curve), or rises faster than ``max_slow_rate`` per epoch.
    """
    caller = caller_of(losses)
    L = _check_losses(losses)
    if window < 2 or persist < 1:
        raise ValueError(f"need window >= 2 and persist >= 1, got {window}, {persist}")
    if not (max_slow_rate > 0 and region_factor >= 1):
        raise ValueError(
            f"need max_slow_rate > 0 and region_factor >= 1, got {max_slow_rate}, {region_factor}"
        )
    if L.size < window + 1:
        raise ValueError(
            f"phase detection needs at least {window + 1} epochs of loss, got {L.size}"
        )
    r = _rate(L, window)
    rf = np.nan_to_num(r, nan=np.inf)
    slow_now = np.abs(rf) <= max_slow_rate
    # the rate must stay slow for ``persist`` consecutive epochs, after a fast epoch
    run = np.convolve(slow_now.astype(int), np.ones(persist, dtype=int), mode="valid")
    fast_before = np.maximum.accumulate(np.nan_to_num(r, nan=-np.inf) > max_slow_rate)
    ok = (run == persist) & fast_before[: run.size]
    slow = np.flatnonzero(ok)
    finite = r[np.isfinite(r)]
    if slow.size == 0:
        if (run == persist).any():
            reason = (
                "the loss was already slow (|d ln L/d epoch| <= max_slow_rate) without a "
                "fast-learning phase before: nothing to call a transition"
            )
        elif finite.size and np.median(finite[-persist:]) < -max_slow_rate:
            reason = "the loss is rising: training is unstable (lower the learning rate)"
        else:
            reason = "the loss never slowed down to max_slow_rate: train longer"
        return PhaseTransition(
            None,
            None,
            caller.wrap(r),
            float(np.median(finite)) if finite.size else float("nan"),
            float("nan"),
            max_slow_rate,
            False,
            int(L.size),
            reason,
        )
    e_t = int(slow[0])
    # the region starts after the last epoch (before e_t) still above region_factor * max
    head = np.nan_to_num(r[:e_t], nan=-np.inf)
    above = np.flatnonzero(head > region_factor * max_slow_rate)
    if above.size == 0:
        above = np.flatnonzero(head > max_slow_rate)
    region = (int(above[-1]) + 1, e_t)
    fast = r[window : region[0] + 1]
    return PhaseTransition(
        transition_epoch=e_t,
        region=region,
        rate=caller.wrap(r),
        fast_rate=float(np.median(fast)) if fast.size else float("nan"),
        slow_rate=float(np.nanmedian(r[e_t:])),
        max_slow_rate=max_slow_rate,
        confirmed=True,
        n_epochs=int(L.size),
    )
