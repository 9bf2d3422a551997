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

A third estimate, independent of the e-width, is the curvature of ln L_i at 0 by central
differences at a fixed step (:func:`flatness_curvature_at_zero`): F_i = (8 / (ln L_i)'')^(1/2)
(Eq 7). Unlike a quadratic fit over the e*L0 region, it does not use the e-crossing.

No model code here: ``profile_fn`` is any callable, so the same root finder runs on a real
network (batched cached-tail evaluator) and on an analytic or simulated landscape. Arrays
from any array-API library are accepted and results come back in the caller's type
(:mod:`._arrays`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ._arrays import caller_of, check_array, check_positive, to_numpy
from .powerlaw import PowerLawFit, fit_power_law

__all__ = [
    "CURVATURE_OFFSETS",
    "CurvatureResult",
    "EWidthResult",
    "QuadFitResult",
    "VarianceFlatnessFit",
    "flatness_curvature_at_zero",
    "flatness_e_width",
    "flatness_quadratic_fit",
    "variance_flatness_exponent",
]


def _arrays_to_lists(d: dict) -> dict:
    for k, v in d.items():
        if hasattr(v, "shape") and not isinstance(v, (float, int)):
            d[k] = to_numpy(v).tolist()
    return d


@dataclass
class EWidthResult:
    """Crossings of ``L = factor * L0`` on both sides of 0, per direction.

    ``left`` (<= 0) and ``right`` (>= 0) are the signed crossing amplitudes, ``width =
    right - left`` the flatness F_i. ``converged[k]`` is True when both sides of direction
    k were bracketed within ``max_amplitude`` and bisected to the tolerance. For directions
    that were not (only with ``on_unbounded="flag"``) ``width`` is NaN and ``message`` says
    which. ``n_evals`` counts ``profile_fn`` calls (each one evaluates every direction).
    """

    width: object
    left: object
    right: object
    converged: object
    tol: float
    factor: float
    n_evals: int
    message: str = ""

    def as_dict(self) -> dict:
        return _arrays_to_lists(asdict(self))


def _check_losses(losses, n_dirs: int, amps: np.ndarray, tolerate=None) -> np.ndarray:
    out = np.asarray(to_numpy(losses), dtype=np.float64)
    if out.ndim != 1 or out.shape[0] != n_dirs:
        if out.ndim != 1:
            raise ValueError(
                f"profile_fn must return one loss per direction, shape ({n_dirs},), got {out.shape}"
            )
        raise ValueError(f"profile_fn returned {out.shape[0]} losses for {n_dirs} directions")
    bad = ~np.isfinite(out)
    if tolerate is not None:  # the caller handles non-finite values there
        bad &= ~tolerate
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
    method: str = "interp",
) -> EWidthResult:
    """Flatness F_i as the width of the region where L_i <= ``factor`` * L0 (Sec III).

    ``profile_fn(amplitudes)`` takes an array (n_dirs,) and returns the losses (n_dirs,)
    with direction k evaluated at ``amplitudes[k]``. Each side (negative, positive) is
    solved for all directions at once, in two phases:

    1. bracket: probe ``init_step`` (see below for the second side), then grow the probe
       until the loss reaches the threshold (or the probe reaches ``max_amplitude``);
    2. refine the bracket [lo, hi] until ``hi - lo <= tol * hi`` (``tol`` is relative to
       the crossing), at most ``max_iter`` refinement probes. The result is a point of the
       final bracket, so it is within ``tol`` (relative) of the true crossing.

    ``method="interp"`` (default) works on g(x) = ln L - ln(factor L0) against x = a^2,
    which is a straight line for Eq 7's exp-of-quadratic profile, so the secant through two
    probes is exact there. Bracketing probes the secant's root through the last two probes
    (the first pair being a = 0, where g = -ln factor, and ``init_step``), overshot by
    0.4 tol, no further than 8x the last probe (8x too where the secant does not rise);
    when predictions keep falling short the minimum growth rises from 1 + tol by 4x per
    miss to 2x, so it cannot crawl. Refinement probes the secant's root of the last two
    probes (the regula-falsi point of [lo, hi] when that falls outside the bracket),
    stepped 0.4 tol past it towards the bracket's far end, or straight to ``lo / (1 -
    0.95 tol)`` (``hi * (1 - 0.95 tol)``) when that finishes the bracket; it bisects
    whenever the last two probes did not halve the bracket. The second side starts at the
    mirror image of the first side's crossing (profiles are near-symmetric) instead of
    ``init_step``. The answer is the regula-falsi point of the final bracket (exact for
    Eq 7's form). ``method="bisect"``: doubling from ``init_step`` then bisection, the
    answer being the bracket midpoint (the classic scheme; ~3x more probes).

    ``profile_fn`` receives a host numpy float64 array and may return any array type (numpy,
    torch on any device, cupy); the result's arrays come back in the type of ``L0`` when it
    is a non-numpy array, else in the type ``profile_fn`` returns.

    Assumes L_i(0) = L0 < threshold; the first crossing outward from 0 is found (jumps of
    up to 8x, or the mirror start, can step over a crossing that is followed by a dip back
    below the threshold, as doubling can). A non-finite loss raises ``ValueError``. A
    direction whose profile stays below the threshold up to ``max_amplitude`` raises
    ``ValueError`` (``on_unbounded="raise"``) or is flagged with NaN width,
    ``converged=False`` and a message (``"flag"``). The call count is bounded by
    2 * (log2(max_amplitude / init_step) + log4(1 / tol) + 4 + max_iter): it never hangs.
    """
    n_dirs = int(n_dirs)
    if n_dirs < 1:
        raise ValueError(f"n_dirs must be >= 1, got {n_dirs}")
    if on_unbounded not in ("raise", "flag"):
        raise ValueError(f"on_unbounded must be 'raise' or 'flag', got {on_unbounded!r}")
    if method not in ("interp", "bisect"):
        raise ValueError(f"method must be 'interp' or 'bisect', got {method!r}")
    if not (init_step > 0 and max_amplitude >= init_step and np.isfinite(max_amplitude)):
        raise ValueError(
            f"need 0 < init_step <= max_amplitude < inf, got {init_step}, {max_amplitude}"
        )
    if not (0 < tol < 1):
        raise ValueError(f"tol is relative and must be in (0, 1), got {tol}")
    if not factor > 1:
        raise ValueError(f"factor must be > 1 (the paper uses e), got {factor}")
    if int(max_iter) < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    L0_in = L0
    L0 = check_array(
        L0, "L0", ndim=(0, 1), sign="positive", hint="the loss at the centre w0 (or one per dir)"
    )
    if L0.ndim == 1 and L0.shape[0] not in (1, n_dirs):
        raise ValueError(f"L0 must be a scalar or have {n_dirs} entries, got {L0.shape[0]}")
    L0 = np.broadcast_to(L0, (n_dirs,))
    n_evals = 0
    first_out = []  # the first profile output decides the result's array type

    def f(a: np.ndarray, tolerate=None) -> np.ndarray:
        nonlocal n_evals
        n_evals += 1
        out = profile_fn(a)
        if not first_out:
            first_out.append(out)
        return _check_losses(out, n_dirs, a, tolerate)

    solve = _side_interp if method == "interp" else _side_bisect
    crossings, conv_sides, unbounded = [], [], np.zeros(n_dirs, dtype=bool)
    start = np.full(n_dirs, float(init_step))
    for sign in (-1.0, 1.0):
        x, conv, unb = solve(f, sign, n_dirs, L0, float(factor), start, float(init_step),
                             float(max_amplitude), float(tol), int(max_iter))  # fmt: skip
        if method == "interp":  # the other side starts at the mirror of this crossing
            start = np.where(conv & (x > init_step), x, init_step)
        crossings.append(sign * x)
        conv_sides.append(conv)
        unbounded |= unb
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
        message = f"{int((~converged).sum())} direction(s) not refined to tol in max_iter"
    w = caller_of(L0_in, *first_out[:1]).wrap
    return EWidthResult(
        w(width), w(left), w(right), w(converged), float(tol), float(factor), n_evals, message
    )


def _side_bisect(f, sign, n, L0, factor, start, init_step, max_amp, tol, max_iter):
    """Doubling from ``init_step``, then bisection; crossing = bracket midpoint."""
    thr = factor * L0
    lo = np.zeros(n)
    hi = np.full(n, init_step)
    while True:  # bracket: grow hi (doubling, capped at max_amplitude) until crossed
        below = f(sign * hi) < thr
        grow = below & (hi < max_amp)
        if not grow.any():
            break
        lo = np.where(grow, hi, lo)
        hi = np.where(grow, np.minimum(2 * hi, max_amp), hi)
    active = ~below  # still below the threshold at |a| = max_amplitude: unbounded
    for _ in range(max_iter):
        todo = active & (hi - lo > tol * hi)
        if not todo.any():
            break
        mid = 0.5 * (lo + hi)
        up = todo & (f(sign * np.where(todo, mid, hi)) >= thr)
        hi = np.where(up, mid, hi)
        lo = np.where(todo & ~up, mid, lo)
    return 0.5 * (lo + hi), active & (hi - lo <= tol * hi), below


def _side_interp(f, sign, n, L0, factor, start, init_step, max_amp, tol, max_iter):
    """Secant bracketing and safeguarded secant refinement on g = ln L - ln thr vs x = a^2."""
    lnthr = np.log(factor) + np.log(L0)

    def g(a, tolerate=None):
        return np.log(np.maximum(f(sign * a, tolerate), 1e-300)) - lnthr

    # lo/hi: the bracket (g(lo) < 0 <= g(hi)); q1, q2: the last two probes (secant points)
    lo, glo = np.zeros(n), np.full(n, -np.log(factor))  # g(0) = -ln factor
    hi, ghi = np.full(n, np.nan), np.full(n, np.nan)
    q1, g1, q2, g2 = lo.copy(), glo.copy(), lo.copy(), glo.copy()
    start = np.minimum(np.broadcast_to(start, (n,)), max_amp)
    last = start.copy()  # last amplitude asked for (repeated for finished dirs)
    fin = 1.0 / (1.0 - 0.95 * tol)  # a probe at lo * fin (hi / fin) finishes if it crosses

    def take(todo, a, ga):
        nonlocal lo, glo, hi, ghi, q1, g1, q2, g2
        up, dn = todo & (ga >= 0), todo & (ga < 0)
        hi, ghi = np.where(up, a, hi), np.where(up, ga, ghi)
        lo, glo = np.where(dn, a, lo), np.where(dn, ga, glo)
        q2, g2 = np.where(todo, q1, q2), np.where(todo, g1, g2)
        q1, g1 = np.where(todo, a, q1), np.where(todo, ga, g1)
        return up, dn

    # 1. bracket: first probe ``start``, then the secant's root, overshot a little
    probe = start.copy()
    searching = np.ones(n, dtype=bool)
    unbounded = np.zeros(n, dtype=bool)
    short = np.zeros(n, dtype=np.int64)  # predictions that fell short of the crossing
    predicted = np.zeros(n, dtype=bool)  # the current probe is a prediction (not a jump)
    while searching.any():
        a = np.where(searching, probe, last)
        last = a
        # a jump beyond doubling that meets a non-finite loss falls back to doubling
        step2 = np.where(lo > 0, 2.0 * lo, init_step)
        jump = searching & (a > step2 * (1 + 1e-9))
        ga = g(a, jump)
        nonfinite = jump & ~np.isfinite(ga)
        _, below = take(searching & ~nonfinite, a, ga)
        short += below & predicted
        unbounded |= below & (a >= max_amp)
        searching = (below & (a < max_amp)) | nonfinite
        if not searching.any():
            break
        pred = _secant(q1, g1, q2, g2)
        ok = np.isfinite(pred) & (pred > lo)
        pred = np.where(pred <= lo * fin, lo * fin, pred * (1 + 0.4 * tol))
        gmin = np.minimum(2.0, 1.0 + tol * 4.0 ** np.maximum(short - 2, 0))  # no crawl
        nxt = np.where(ok, np.clip(pred, gmin * lo, 8.0 * lo), 8.0 * lo)
        predicted = ok & (pred <= 8.0 * lo)
        probe = np.where(nonfinite, step2, np.minimum(nxt, max_amp))
        predicted &= ~nonfinite

    # 2. refine [lo, hi] to hi - lo <= tol * hi
    active = ~unbounded
    w_prev2, w_prev1 = np.full(n, np.inf), np.full(n, np.inf)
    for _ in range(max_iter):
        w = hi - lo
        todo = active & (w > tol * hi)
        if not todo.any():
            break
        c = _secant(q1, g1, q2, g2)
        inside = np.isfinite(c) & (c > lo) & (c < hi)
        c = np.where(inside, c, _falsi(lo, glo, hi, ghi))
        d = 0.4 * tol * c
        c = np.where(hi - c > c - lo, c + d, c - d)  # step past the root, towards the far end
        c = np.where(c <= lo * fin, lo * fin, c)  # finishing probes
        c = np.where(c >= hi / fin, hi / fin, c)
        c = np.clip(c, lo + 0.01 * w, hi - 0.01 * w)
        c = np.where(w > 0.5 * w_prev2, 0.5 * (lo + hi), c)  # too slow: bisect
        a = np.where(todo, c, last)
        last = a
        take(todo, a, g(a))
        w_prev2 = np.where(todo, w_prev1, w_prev2)
        w_prev1 = np.where(todo, w, w_prev1)
    conv = active & (hi - lo <= tol * hi)
    x = np.where(active, _falsi(lo, glo, hi, ghi), hi)
    return x, conv, unbounded


def _secant(q1, g1, q2, g2):
    """Root of the line through (q1^2, g1), (q2^2, g2) as an amplitude (NaN if none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = q1**2 - g1 * (q1**2 - q2**2) / (g1 - g2)
        return np.where(x >= 0, np.sqrt(np.abs(x)), np.nan)


def _falsi(lo, glo, hi, ghi):
    """Root of the straight line through (lo^2, glo), (hi^2, ghi), as an amplitude in
    [lo, hi] (glo < 0 <= ghi); exact for g linear in a^2 (Eq 7)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -glo / (ghi - glo)
    t = np.clip(np.nan_to_num(t, nan=0.5), 0.0, 1.0)
    return np.sqrt(lo**2 + t * (hi**2 - lo**2))


@dataclass
class QuadFitResult:
    """Least-squares fit ``ln L_k(a) = c0 + slope a + curvature a^2`` per direction (Eq 7).

    ``F = 2 / sqrt(curvature)`` (Eq 7: curvature = 4 / F^2; NaN where curvature <= 0).
    ``intercept`` is ln L0 when the intercept was fixed. ``r2`` is the coefficient of
    determination of ln L over the fitted points; ``n_points`` how many were used.
    The slope term is the -beta of Eq S5 along PC1 and should be ~0 for diffusive modes.
    Arrays are in the caller's type.
    """

    F: object
    curvature: object
    slope: object
    intercept: object
    r2: object
    n_points: object

    def as_dict(self) -> dict:
        return _arrays_to_lists(asdict(self))


def _check_profiles(amplitudes, losses, L0):
    a = check_array(amplitudes, "amplitudes", hint="one amplitude grid (A,) shared by all profiles")
    Ls = check_array(losses, "losses", ndim=(1, 2), finite=False,
                     hint="losses are (K, A): K profiles on the amplitude grid")  # fmt: skip
    Ls = np.atleast_2d(Ls)
    if Ls.shape[1] != a.size:
        raise ValueError(f"losses must be (K, {a.size}) to match amplitudes, got {Ls.shape}")
    if not (np.isfinite(Ls).all() and (Ls > 0).all()):
        raise ValueError("losses must be positive and finite to take their logarithm")
    K = Ls.shape[0]
    L0 = check_array(L0, "L0", ndim=(0, 1), sign="positive", hint="the loss at the centre w0")
    if L0.ndim == 1 and L0.shape[0] not in (1, K):
        raise ValueError(f"L0 must be a scalar or have {K} entries, got {L0.shape[0]}")
    return a, Ls, np.broadcast_to(L0, (K,))


def flatness_quadratic_fit(
    amplitudes,
    losses,
    L0,
    *,
    window=None,
    fix_intercept: bool = True,
) -> QuadFitResult:
    """Fit ln L_i(a) near 0 to ln L0 + slope a + 4 a^2 / F_i^2 (Eq 7) for K profiles.

    ``amplitudes`` (A,), ``losses`` (K, A) (or (A,) for one profile) positive, ``L0`` scalar
    or (K,). ``window`` (positive scalar or (K,)) keeps only ``|a| <= window`` per direction
    (None: all points). With ``fix_intercept`` the constant is ln L0 as in Eq 7; otherwise
    it is fitted too.
    """
    caller = caller_of(amplitudes, losses, L0)
    a, Ls, L0 = _check_profiles(amplitudes, losses, L0)
    K = Ls.shape[0]
    if window is None:
        win = np.full(K, np.inf)
    else:
        win = check_array(window, "window", ndim=(0, 1), sign="positive")
        if win.ndim == 1 and win.shape[0] not in (1, K):
            raise ValueError(f"window must be a scalar or have {K} entries, got {win.shape[0]}")
        win = np.broadcast_to(win, (K,))
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
    w = caller.wrap
    return QuadFitResult(n_points=w(npts), **{k: w(v) for k, v in out.items()})


CURVATURE_OFFSETS = (-2.0, -1.0, 1.0, 2.0)
"""Amplitudes, in units of the step h, at which :func:`flatness_curvature_at_zero` needs L."""


@dataclass
class CurvatureResult:
    """Curvature and slope of ln L_k at a = 0 by central differences (Richardson-extrapolated).

    ``curvature`` = (ln L)''(0), ``slope`` = (ln L)'(0) (the -beta of Eq S5 along PC1),
    ``F`` = (8 / curvature)^(1/2) (Eq 7; NaN where curvature <= 0), ``richardson_rel_diff``
    = |c(h) - c(2h)| / |c|: the size of the discretisation error that the extrapolation
    removed (large values mean the step is too big for that direction, or the loss too noisy
    for it). Arrays in the caller's type.
    """

    F: object
    curvature: object
    slope: object
    richardson_rel_diff: object
    step: float

    def as_dict(self) -> dict:
        return _arrays_to_lists(asdict(self))


def flatness_curvature_at_zero(step, losses, L0) -> CurvatureResult:
    """Flatness F_k = (8 / (ln L_k)''(0))^(1/2) (Eq 7) from losses at a = -2h, -h, h, 2h.

    ``losses`` (K, 4) (or (4,)) at the amplitudes ``step * CURVATURE_OFFSETS``, ``L0`` the loss
    at a = 0 (scalar or (K,)). Central second differences at h and 2h, combined as
    (4 c(h) - c(2h)) / 3 (error O(h^4)). Independent of the e-width: nothing here looks at
    where L reaches e * L0, so its agreement with :func:`flatness_e_width` tests Eq 7's form.
    """
    caller = caller_of(losses, L0)
    h = check_positive(step, "step", hint="the finite-difference step (an amplitude)")
    _, Ls, L0v = _check_profiles(np.asarray(CURVATURE_OFFSETS) * h, losses, L0)
    y = np.log(Ls) - np.log(L0v)[:, None]  # ln L - ln L0 at -2h, -h, h, 2h
    c_h = (y[:, 1] + y[:, 2]) / h**2
    c_2h = (y[:, 0] + y[:, 3]) / (4 * h**2)
    c = (4 * c_h - c_2h) / 3
    s = (4 * (y[:, 2] - y[:, 1]) / (2 * h) - (y[:, 3] - y[:, 0]) / (4 * h)) / 3
    with np.errstate(divide="ignore", invalid="ignore"):
        F = np.where(c > 0, np.sqrt(8.0 / np.where(c > 0, c, 1.0)), np.nan)
        rel = np.abs(c_h - c_2h) / np.abs(c)
    w = caller.wrap
    return CurvatureResult(F=w(F), curvature=w(c), slope=w(s), richardson_rel_diff=w(rel), step=h)


@dataclass
class VarianceFlatnessFit:
    """sigma_i^2 ~ F_i^-psi (Eq 8): ``psi = -slope`` of the log-log fit, with errors.

    ``n_unbounded``: modes left out because their flatness is NaN (a profile that never
    reached e * L0; :func:`flatness_e_width` with ``on_unbounded="flag"``).
    """

    psi: float
    psi_err: float
    psi_err_boot: float
    prefactor: float
    r2: float
    n_points: int
    fit: PowerLawFit = field(repr=False)
    n_unbounded: int = 0

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

    ``variances`` and ``F`` are 1-D, per mode (pass only the diffusive modes i >= 2, or a
    boolean ``mask``). Variances must be positive and finite, F positive; NaN flatness
    values (unbounded profiles) are left out and counted in ``n_unbounded``. ``psi_err`` is
    the OLS standard error, ``psi_err_boot`` the bootstrap one. A positive psi is the inverse
    relation of SGD; the equilibrium fluctuation-response relation (Eq 16) gives psi = -2.
    """
    v = check_array(variances, "variances", sign="positive",
                    hint="sigma_i^2 per mode, one 1-D array")  # fmt: skip
    f = check_array(F, "F", finite="allow_inf", sign="positive",
                    hint="flatness per mode, one 1-D array (NaN = unbounded profile)")  # fmt: skip
    if np.isinf(f).any():
        raise ValueError("F has an infinite value; mark unbounded profiles with NaN instead")
    if v.shape != f.shape:
        raise ValueError(f"variances and F must have the same length, got {v.size} and {f.size}")
    if mask is not None:
        m = to_numpy(mask)
        if m.dtype != bool or m.shape != v.shape:
            raise ValueError(f"mask must be a boolean array with one entry per mode ({v.size})")
        v, f = v[m], f[m]
    unbounded = np.isnan(f)
    fit = fit_power_law(f[~unbounded], v[~unbounded], x_range=F_range, n_boot=n_boot, seed=seed)
    return VarianceFlatnessFit(
        psi=-fit.slope,
        psi_err=fit.slope_err,
        psi_err_boot=fit.slope_err_boot,
        prefactor=float(np.exp(fit.intercept)),
        r2=fit.r2,
        n_points=fit.n_points,
        fit=fit,
        n_unbounded=int(unbounded.sum()),
    )
