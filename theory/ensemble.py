"""Exact statistics of the minibatch-loss (MLF) ensemble from per-sample values (Sec IV, VI).

A minibatch value (its loss L^mu, its gradient projection dL^mu/dtheta_i) is the mean of its
samples' values, so every moment over the ensemble of minibatches follows from the n
per-sample values without sampling a single minibatch:

- :func:`minibatch_moments`: minibatches of size B drawn uniformly without replacement from
  n samples (every B-subset equally likely; also the law of each batch of a random epoch
  partition). Mean = the population mean m, variance = (s^2 / B) (n - B) / (n - 1) with s^2
  the population variance (ddof 0): the finite-population correction. The second moment
  E|x_mu|^2 = m^2 + Var.
- :func:`partition_moments`: the exact moments over an explicit set of minibatches (e.g. the
  partitions SGD used), an (n_mu, B) index array.
- :func:`diffusion_constants`: D_i = alpha^2 Var_mu(dL^mu/dtheta_i) (Eq 14's left side, the
  per-step variance of the SGD increment along p_i).
- :func:`active_temperature`: T_i = (alpha/2) <|d dL^mu/d dtheta|^2>_mu (Eq 17) with
  dL^mu = L^mu - L, i.e. (alpha/2) Var_mu of the minibatch slope (the mean slope is the
  overall loss's and drops out of dL^mu).
- :func:`fit_mlf_profiles`: the one-direction form of Eq 9,
  ln L^mu_i(dtheta) = ln L^mu_0 + (M^mu_ii / 2) (dtheta^2 - 2 dtheta theta^mu_i), fitted by
  least squares (a quadratic in dtheta per profile), giving (M, theta, L0) for every profile;
  :func:`ensemble_summary` gives M^(0)_ii = <M^mu_ii>_mu and sigma~^2_theta,i (Eq 11).
- :func:`power_law_with_null`: an exponent (``theory.powerlaw``) beside its shuffled-pairs
  null (the same fit with x permuted: what an exponent looks like without a relation).

Arrays in, numbers out (:mod:`._arrays`): results come back in the caller's array type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._arrays import caller_of, check_array, check_positive, to_numpy
from .powerlaw import fit_power_law

__all__ = [
    "EnsembleSummary",
    "MLFProfileFit",
    "Moments",
    "active_temperature",
    "diffusion_constants",
    "ensemble_summary",
    "fit_mlf_profiles",
    "minibatch_moments",
    "partition_moments",
    "power_law_with_null",
]


@dataclass
class Moments:
    """Mean, variance and second moment E|x|^2 = mean^2 + var of a minibatch mean, per column."""

    mean: object
    var: object
    second_moment: object


def _values(values, name="values"):
    return check_array(
        values,
        name,
        ndim=(1, 2),
        min_len=1,
        hint="pass per-sample values as (n_samples,) or (n_samples, K)",
    )


def minibatch_moments(values, batch_size: int) -> Moments:
    """Exact moments of the mean of a minibatch of ``batch_size`` samples drawn without
    replacement from the n rows of ``values`` ((n,) or (n, K); moments per column).

    Var = (s^2 / B) (n - B) / (n - 1), s^2 the population variance (ddof 0); B = n gives 0.
    """
    caller = caller_of(values)
    v = _values(values)
    n = v.shape[0]
    B = int(batch_size)
    if B != batch_size or not 1 <= B <= n:
        raise ValueError(
            f"batch_size must be an integer in 1..{n} (the number of samples), got {batch_size}"
        )
    mean = v.mean(0)
    s2 = v.var(0)
    var = np.zeros_like(s2) if n == 1 else s2 / B * (n - B) / (n - 1)
    return Moments(caller.wrap(mean), caller.wrap(var), caller.wrap(mean**2 + var))


def _batches(batches, n: int) -> np.ndarray:
    b = check_array(
        batches,
        "batches",
        ndim=2,
        min_len=1,
        hint="pass minibatches as an (n_minibatches, batch_size) index array",
    )
    if b.shape[1] < 1 or np.any(b != np.round(b)) or b.min() < 0 or b.max() >= n:
        raise ValueError(
            f"batches must hold integer sample indices in 0..{n - 1} (one row per minibatch), "
            f"got values in [{b.min():g}, {b.max():g}]"
        )
    return b.astype(np.int64)


def partition_moments(values, batches) -> Moments:
    """Exact moments over the explicit minibatches ``batches`` (n_mu, B) of the rows of
    ``values`` ((n,) or (n, K)): mean over mu of the minibatch means, their variance over mu
    (ddof 0: the ensemble is the given set) and second moment."""
    caller = caller_of(values)
    v = _values(values)
    b = _batches(batches, v.shape[0])
    mb = v[b].mean(1)  # (n_mu,) or (n_mu, K)
    mean = mb.mean(0)
    var = mb.var(0)
    return Moments(caller.wrap(mean), caller.wrap(var), caller.wrap(mean**2 + var))


def _moments(values, batch_size, batches) -> Moments:
    if (batch_size is None) == (batches is None):
        raise ValueError(
            "give exactly one of batch_size (random minibatches without "
            "replacement) or batches (an explicit set)"
        )
    if batches is not None:
        return partition_moments(values, batches)
    return minibatch_moments(values, batch_size)


def diffusion_constants(projections, lr: float, *, batch_size=None, batches=None):
    """D_i = lr^2 Var_mu(dL^mu/dtheta_i) (Eq 14) from per-sample gradient projections
    g_s . p_i, (n,) or (n, K): exact over random minibatches of ``batch_size`` or over the
    explicit ``batches``."""
    lr = check_positive(lr, "lr", hint="the SGD learning rate alpha")
    return _moments(projections, batch_size, batches).var * lr**2


def active_temperature(slopes, lr: float, *, batch_size=None, batches=None):
    """T = (lr / 2) <|d dL^mu / d dtheta|^2>_mu (Eq 17), dL^mu = L^mu - L, from per-sample
    slopes d l_s(w0 + dtheta p_i) / d dtheta ((n,) or (n, ...) per column): (lr/2) Var_mu
    of the minibatch slope, exact over random minibatches of ``batch_size`` or over
    ``batches``."""
    lr = check_positive(lr, "lr", hint="the SGD learning rate alpha")
    return _moments(slopes, batch_size, batches).var * (lr / 2)


@dataclass
class MLFProfileFit:
    """Eq 9 along one direction per profile: ln L^mu(a) = ln L0 + (M/2)(a^2 - 2 a theta).

    ``M``, ``theta``, ``L0`` have the leading shape of the profiles (e.g. (n_mu, K));
    ``rms`` is the root-mean-square residual of ln L (a quadratic's misfit)."""

    M: object
    theta: object
    L0: object
    rms: object


def fit_mlf_profiles(amplitudes, losses) -> MLFProfileFit:
    """Least-squares fit of the one-direction Eq 9 to loss profiles.

    ``amplitudes``: (A,) shared by all profiles or (K, A) one row per direction (the last
    profile axis is K then); ``losses``: (..., A) or (..., K, A) positive losses
    L^mu(w0 + a p_k). Returns :class:`MLFProfileFit` with the leading shape of ``losses``.
    A fit needs at least 3 distinct amplitudes per direction.
    """
    caller = caller_of(amplitudes, losses)
    a = check_array(
        amplitudes, "amplitudes", ndim=(1, 2), hint="one row of amplitudes per direction"
    )
    L = check_array(
        losses, "losses", ndim=None, sign="positive", hint="Eq 9 fits ln L: losses must be positive"
    )
    if L.ndim < 1 or L.shape[-1] != a.shape[-1]:
        raise ValueError(
            f"losses must end with the amplitude axis of length {a.shape[-1]}, got shape {L.shape}"
        )
    if a.ndim == 2 and (L.ndim < 2 or L.shape[-2] != a.shape[0]):
        raise ValueError(
            f"amplitudes are (K={a.shape[0]}, A): losses must be (..., K, A), got shape {L.shape}"
        )
    A2 = np.atleast_2d(a)  # (K or 1, A)
    for k, row in enumerate(A2):
        if np.unique(row).size < 3:
            raise ValueError(
                f"amplitudes row {k} needs at least 3 distinct values for a quadratic fit"
            )
    y = np.log(L)
    lead = y.shape[:-1]
    if a.ndim == 1:
        Y = y.reshape(-1, a.size).T  # (A, P)
        X = np.stack([np.ones_like(a), a, a**2], 1)
        coef, *_ = np.linalg.lstsq(X, Y, rcond=None)  # (3, P)
        resid = Y - X @ coef
        c = coef.T.reshape(*lead, 3)
        rms = np.sqrt((resid**2).mean(0)).reshape(lead)
    else:
        K, nA = a.shape
        Yk = np.moveaxis(y.reshape(-1, K, nA), 1, 0)  # (K, P, A)
        c = np.empty((K, Yk.shape[1], 3))
        rms = np.empty((K, Yk.shape[1]))
        for k in range(K):
            X = np.stack([np.ones(nA), a[k], a[k] ** 2], 1)
            coef, *_ = np.linalg.lstsq(X, Yk[k].T, rcond=None)
            c[k] = coef.T
            rms[k] = np.sqrt(((Yk[k].T - X @ coef) ** 2).mean(0))
        c = np.moveaxis(c, 0, 1).reshape(*lead, 3)
        rms = np.moveaxis(rms, 0, 1).reshape(lead)
    M = 2.0 * c[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(M != 0, -c[..., 1] / M, np.nan)
    return MLFProfileFit(
        caller.wrap(M), caller.wrap(theta), caller.wrap(np.exp(c[..., 0])), caller.wrap(rms)
    )


@dataclass
class EnsembleSummary:
    """Ensemble statistics per direction (over the minibatch axis 0) of an Eq 9 fit.

    ``M0`` = <M^mu_ii>_mu (M^(0)_ii), ``sigma_M2`` its variance; ``theta_mean`` and
    ``sigma_theta2`` = Var_mu theta~^mu_i (Eq 11's sigma~^2_theta,i, about the ensemble mean;
    the paper takes that mean to be 0); ``L0_mean`` = <L^mu_0>_mu and ``L0_sq_mean`` =
    <(L^mu_0)^2>_mu (Eq 14); ``product`` = M0^2 sigma_theta2 (Fig 3B)."""

    M0: object
    sigma_M2: object
    theta_mean: object
    sigma_theta2: object
    L0_mean: object
    L0_sq_mean: object
    product: object

    def as_dict(self) -> dict:
        return {k: to_numpy(v).tolist() for k, v in asdict(self).items()}


def ensemble_summary(M, theta, L0) -> EnsembleSummary:
    """Per-direction ensemble statistics from per-minibatch fits ``M``, ``theta``, ``L0``,
    each (n_mu, K) (or (n_mu,)): mean and variance over the minibatch axis."""
    caller = caller_of(M, theta, L0)
    m = check_array(M, "M", ndim=(1, 2), min_len=2, hint="(n_minibatches, K) per-minibatch fits")
    t = check_array(theta, "theta", ndim=(1, 2), min_len=2)
    l0 = check_array(L0, "L0", ndim=(1, 2), min_len=2, sign="positive")
    if not m.shape == t.shape == l0.shape:
        raise ValueError(
            f"M, theta and L0 must have one shape, got {m.shape}, {t.shape}, {l0.shape}"
        )
    M0 = m.mean(0)
    s2 = t.var(0)
    w = caller.wrap
    return EnsembleSummary(
        w(M0), w(m.var(0)), w(t.mean(0)), w(s2), w(l0.mean(0)), w((l0**2).mean(0)), w(M0**2 * s2)
    )


def power_law_with_null(x, y, *, n_shuffle: int = 200, seed: int = 0, n_boot: int = 200) -> dict:
    """Exponent of ``y ~ x^slope`` (:func:`~sgdyn.theory.powerlaw.fit_power_law`) beside the
    shuffled-pairs null: the slope with ``x`` randomly permuted, ``n_shuffle`` times (its mean,
    standard deviation and the fraction of shuffles at least as steep in magnitude).
    Plain dict of floats (for summary.json)."""
    fit = fit_power_law(x, y, n_boot=n_boot, seed=seed)
    xs = check_array(x, "x")
    ys = check_array(y, "y")
    rng = np.random.default_rng(seed)
    lx, ly = np.log(xs), np.log(ys)
    slopes = np.empty(int(n_shuffle))
    for r in range(slopes.size):
        px = lx[rng.permutation(lx.size)]
        pxm = px - px.mean()
        slopes[r] = (pxm * (ly - ly.mean())).sum() / (pxm**2).sum()
    err = fit.slope_err_boot if np.isfinite(fit.slope_err_boot) else fit.slope_err
    return {
        "exponent": fit.slope,
        "err": float(err),
        "err_ols": fit.slope_err,
        "r2": fit.r2,
        "n_points": fit.n_points,
        "null_shuffled_mean": float(slopes.mean()) if slopes.size else float("nan"),
        "null_shuffled_sd": float(slopes.std(ddof=1)) if slopes.size > 1 else float("nan"),
        "null_p": float(np.mean(np.abs(slopes) >= abs(fit.slope))) if slopes.size else float("nan"),
    }
