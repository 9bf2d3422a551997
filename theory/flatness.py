"""Flatness of a loss profile (Eqs 6-8) and the variance-flatness exponent psi.

A loss profile is L_i(da) = L(w0 + da p_i) along a direction p_i (Eq 6). The paper defines
the flatness F_i two ways:

- the **e-width**: the width of the region around da = 0 where L_i <= e * L0
  (:func:`flatness_e_width`, root finding on each side);
- the **quadratic fit** of ln L_i near 0, ``ln L_i = ln L0 + 4 da^2 / F_i^2`` (Eq 7)
  (:func:`flatness_quadratic_fit`).

For an exact exponential-of-quadratic profile the two coincide: ln L crosses ln L0 + 1 at
da = +-F/2, so the e-width is F. The exponent psi of sigma_i^2 ~ F_i^-psi (Eq 8) comes from
:func:`variance_flatness_exponent`.

Everything here is numpy only: ``profile_fn`` is any callable, so the same root finder runs
on a real network (batched cached-tail evaluator) and on an analytic or simulated landscape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .powerlaw import PowerLawFit, fit_power_law

__all__ = [
    "EWidthResult",
    "QuadFitResult",
    "VarianceFlatnessFit",
    "flatness_e_width",
    "flatness_quadratic_fit",
    "variance_flatness_exponent",
]


@dataclass
class EWidthResult:
    """Crossings of ``L = factor * L0`` on both sides of 0, per direction.

    ``left`` (<= 0) and ``right`` (>= 0) are the signed crossing amplitudes, ``width =
    right - left`` the flatness F_i. ``converged[k]`` is True when both sides of direction
    k were bracketed within ``max_amplitude`` and bisected to the tolerance. For directions
    that were not (only with ``on_unbounded="flag"``) ``width`` is NaN and ``message`` says
    which. ``n_evals`` counts ``profile_fn`` calls (each one evaluates every direction).
    """

    width: np.ndarray
    left: np.ndarray
    right: np.ndarray
    converged: np.ndarray
    tol: float
    factor: float
    n_evals: int
    message: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                d[k] = v.tolist()
        return d


def _check_losses(losses, n_dirs: int, amps: np.ndarray) -> np.ndarray:
    out = np.asarray(losses, dtype=np.float64).reshape(-1)
    if out.shape[0] != n_dirs:
        raise ValueError(f"profile_fn returned {out.shape[0]} losses for {n_dirs} directions")
    bad = ~np.isfinite(out)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"non-finite loss {out[k]} along direction {k} at amplitude {amps[k]:.6g} "
            f"({int(bad.sum())} direction(s) affected): the model diverges there; "
            "lower max_amplitude or check the direction's scale (directions should be unit "
            "vectors)"
        )
    return out


def flatness_e_width(
    profile_fn: Callable[[np.ndarray], np.ndarray],
    n_dirs: int,
    *,
    L0,
    factor: float = np.e,
    init_step: float = 1e-2,
    max_amplitude: float = 1e3,
    tol: float = 1e-4,
    max_iter: int = 60,
    on_unbounded: str = "raise",
) -> EWidthResult:
    """Flatness F_i as the width of the region where L_i <= ``factor`` * L0 (Sec III).

    ``profile_fn(amplitudes)`` takes an array (n_dirs,) and returns the losses (n_dirs,)
    with direction k evaluated at ``amplitudes[k]``. Each side (negative, positive) is
    solved for all directions at once: bracket by doubling the step from ``init_step``
    until the loss reaches the threshold (or the step exceeds ``max_amplitude``), then
    bisect until the bracket is below ``tol`` relative to the crossing (``hi - lo <= tol *
    hi``), at most ``max_iter`` bisections. Assumes L_i(0) = L0 < threshold; the first
    crossing outward from 0 is found.

    A non-finite loss raises ``ValueError``. A direction whose profile stays below the
    threshold up to ``max_amplitude`` raises ``ValueError`` (``on_unbounded="raise"``) or is
    flagged with NaN width, ``converged=False`` and a message (``"flag"``). The call count
    is bounded by 2 * (log2(max_amplitude / init_step) + 2 + max_iter): it never hangs.
    """
    n_dirs = int(n_dirs)
    if n_dirs < 1:
        raise ValueError(f"n_dirs must be >= 1, got {n_dirs}")
    if on_unbounded not in ("raise", "flag"):
        raise ValueError(f"on_unbounded must be 'raise' or 'flag', got {on_unbounded!r}")
    if not (init_step > 0 and max_amplitude >= init_step and np.isfinite(max_amplitude)):
        raise ValueError(
            f"need 0 < init_step <= max_amplitude < inf, got {init_step}, {max_amplitude}"
        )
    if not (0 < tol < 1):
        raise ValueError(f"tol is relative and must be in (0, 1), got {tol}")
    if not factor > 1:
        raise ValueError(f"factor must be > 1 (the paper uses e), got {factor}")
    L0 = np.broadcast_to(np.asarray(L0, dtype=np.float64), (n_dirs,))
    if not (np.isfinite(L0).all() and (L0 > 0).all()):
        raise ValueError("L0 must be positive and finite (the loss at the centre w0)")
    thr = factor * L0
    n_evals = 0

    def f(a: np.ndarray) -> np.ndarray:
        nonlocal n_evals
        n_evals += 1
        return _check_losses(profile_fn(a), n_dirs, a)

    crossings, conv_sides, unbounded = [], [], np.zeros(n_dirs, dtype=bool)
    for sign in (-1.0, 1.0):
        lo = np.zeros(n_dirs)
        hi = np.full(n_dirs, float(init_step))
        while True:  # bracket: grow hi (doubling, capped at max_amplitude) until crossed
            below = f(sign * hi) < thr
            grow = below & (hi < max_amplitude)
            if not grow.any():
                break
            lo = np.where(grow, hi, lo)
            hi = np.where(grow, np.minimum(2 * hi, max_amplitude), hi)
        side_unbounded = below  # still below the threshold at |a| = max_amplitude
        unbounded |= side_unbounded
        active = ~side_unbounded
        it = 0
        while it < max_iter:
            todo = active & (hi - lo > tol * hi)
            if not todo.any():
                break
            mid = 0.5 * (lo + hi)
            val = f(sign * np.where(todo, mid, hi))
            up = todo & (val >= thr)
            hi = np.where(up, mid, hi)
            lo = np.where(todo & ~up, mid, lo)
            it += 1
        conv_sides.append(active & (hi - lo <= tol * hi))
        crossings.append(sign * 0.5 * (lo + hi))
    left, right = crossings
    converged = conv_sides[0] & conv_sides[1] & ~unbounded
    width = right - left
    message = ""
    if unbounded.any():
        idx = np.flatnonzero(unbounded)
        message = (
            f"{idx.size} direction(s) never reached {factor:.4g}*L0 within |amplitude| <= "
            f"{max_amplitude:g} (first: {idx[:10].tolist()}); raise max_amplitude or treat "
            "these directions as flat beyond the search range"
        )
        if on_unbounded == "raise":
            raise ValueError(message)
        width = np.where(unbounded, np.nan, width)
    elif not converged.all():
        message = f"{int((~converged).sum())} direction(s) not bisected to tol in max_iter"
    return EWidthResult(width, left, right, converged, float(tol), float(factor), n_evals, message)


@dataclass
class QuadFitResult:
    """Least-squares fit ``ln L_k(a) = c0 + slope a + curvature a^2`` per direction (Eq 7).

    ``F = 2 / sqrt(curvature)`` (Eq 7: curvature = 4 / F^2; NaN where curvature <= 0).
    ``intercept`` is ln L0 when the intercept was fixed. ``r2`` is the coefficient of
    determination of ln L over the fitted points; ``n_points`` how many were used.
    The slope term is the -beta of Eq S5 along PC1 and should be ~0 for diffusive modes.
    """

    F: np.ndarray
    curvature: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray
    r2: np.ndarray
    n_points: np.ndarray

    def as_dict(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}


def flatness_quadratic_fit(
    amplitudes,
    losses,
    L0,
    *,
    window=None,
    fix_intercept: bool = True,
) -> QuadFitResult:
    """Fit ln L_i(a) near 0 to ln L0 + slope a + 4 a^2 / F_i^2 (Eq 7) for K profiles.

    ``amplitudes`` (A,), ``losses`` (K, A) positive, ``L0`` scalar or (K,). ``window``
    (scalar or (K,)) keeps only ``|a| <= window`` per direction (None: all points). With
    ``fix_intercept`` the constant is ln L0 as in Eq 7; otherwise it is fitted too.
    """
    a = np.asarray(amplitudes, dtype=np.float64).ravel()
    Ls = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    if Ls.shape[1] != a.size:
        raise ValueError(f"losses must be (K, {a.size}) to match amplitudes, got {Ls.shape}")
    if not (np.isfinite(Ls).all() and (Ls > 0).all()):
        raise ValueError("losses must be positive and finite to take their logarithm")
    K = Ls.shape[0]
    L0 = np.broadcast_to(np.asarray(L0, dtype=np.float64), (K,))
    if not (np.isfinite(L0).all() and (L0 > 0).all()):
        raise ValueError("L0 must be positive and finite")
    win = np.full(K, np.inf) if window is None else np.broadcast_to(np.asarray(window, float), (K,))
    lnL = np.log(Ls)
    out = {k: np.full(K, np.nan) for k in ("F", "curvature", "slope", "intercept", "r2")}
    npts = np.zeros(K, dtype=np.int64)
    need = 2 if fix_intercept else 3
    for k in range(K):
        m = np.abs(a) <= win[k]
        npts[k] = int(m.sum())
        if npts[k] < need + 1:
            raise ValueError(
                f"direction {k}: only {npts[k]} amplitudes inside window {win[k]:.4g}; a "
                f"quadratic fit needs >= {need + 1}: widen the window or sample more points"
            )
        x, y = a[m], lnL[k, m]
        if fix_intercept:
            X = np.stack([x, x**2], axis=1)
            coef, *_ = np.linalg.lstsq(X, y - np.log(L0[k]), rcond=None)
            c0, c1, c2 = np.log(L0[k]), coef[0], coef[1]
        else:
            X = np.stack([np.ones_like(x), x, x**2], axis=1)
            (c0, c1, c2), *_ = np.linalg.lstsq(X, y, rcond=None)
        pred = c0 + c1 * x + c2 * x**2
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        ss_res = float(np.sum((y - pred) ** 2))
        out["r2"][k] = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
        out["curvature"][k], out["slope"][k], out["intercept"][k] = c2, c1, c0
        out["F"][k] = 2.0 / np.sqrt(c2) if c2 > 0 else np.nan
    return QuadFitResult(n_points=npts, **out)


@dataclass
class VarianceFlatnessFit:
    """sigma_i^2 ~ F_i^-psi (Eq 8): ``psi = -slope`` of the log-log fit, with errors."""

    psi: float
    psi_err: float
    psi_err_boot: float
    prefactor: float
    r2: float
    n_points: int
    fit: PowerLawFit = field(repr=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["fit"] = self.fit.as_dict()
        return d


def variance_flatness_exponent(
    variances,
    F,
    *,
    mask=None,
    F_range: tuple[float, float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> VarianceFlatnessFit:
    """Exponent psi of sigma_i^2 ~ F_i^-psi (Eq 8) via :func:`fit_power_law`.

    ``variances`` and ``F`` are per mode (pass only the diffusive modes i >= 2, or a boolean
    ``mask``); NaN flatness values (unbounded profiles) are dropped. ``psi_err`` is the OLS
    standard error, ``psi_err_boot`` the bootstrap one. A positive psi is the inverse
    relation of SGD; the equilibrium fluctuation-response relation (Eq 16) gives psi = -2.
    """
    v = np.asarray(variances, dtype=np.float64).ravel()
    f = np.asarray(F, dtype=np.float64).ravel()
    if v.shape != f.shape:
        raise ValueError(f"variances and F must have the same length, got {v.size} and {f.size}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).ravel()
        if mask.shape != v.shape:
            raise ValueError("mask must have one entry per mode")
        v, f = v[mask], f[mask]
    fit = fit_power_law(f, v, x_range=F_range, n_boot=n_boot, seed=seed)
    return VarianceFlatnessFit(
        psi=-fit.slope,
        psi_err=fit.slope_err,
        psi_err_boot=fit.slope_err_boot,
        prefactor=float(np.exp(fit.intercept)),
        r2=fit.r2,
        n_points=fit.n_points,
        fit=fit,
    )
