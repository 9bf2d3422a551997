"""Null models for the trajectory diagnostics of Fig 1: the PCA of a driftless random walk.

The Fig 1 numbers (var1/var2, gamma, n90, the PC1 drift ratio, velocity correlation times)
are not zero for a pure random walk: PCA picks the directions the walk went furthest along,
and the PCA of a random walk in many dimensions is itself structured (Antognini &
Sohl-Dickstein 2018, "PCA of high dimensional random walks with comparison to neural network
training"): for N >> T its modes are cosines, theta_k(t) ~ cos(pi k (t + 1/2) / T), with
variances ~ 1 / (4 sin^2(pi k / 2T)), so var1/var2 -> 4, gamma -> 2 and PC1 has a large
drift ratio without any drift. So each diagnostic needs its null value beside it:

- :func:`random_walk_pca_limit`: the N >> T isotropic closed form (exact discrete spectrum
  and modes of the centred random-walk covariance, checked in the tests);
- :func:`random_walk_null`: a driftless random walk of the run's exact shape (T snapshots,
  N weights), isotropic or anisotropic (increment variances given, e.g. the run's own
  :func:`increment_spectrum`: the same fluctuations without the drift), simulated with a
  fixed seed and analysed by the very same estimators. A walk in more dimensions than
  snapshots (N >= T - 1) is drawn as its T x T Gram matrix (Wishart, Bartlett decomposition)
  and analysed by :func:`gram_diagnostics`, O(T^3) whatever N is; a walk in fewer (a long
  window of a small probe: T = 12,000 steps of 2,500 weights) is drawn as its positions and
  analysed by :func:`trajectory_diagnostics` through the N x N covariance, O(T N^2), from
  the same random draws. Isotropic results are cached in-process.

Drift itself is better tested on the increments than on PCA positions:
:func:`sgdyn.theory.dynamics.drift_test` (its null is a Student t, closed form).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import scipy.linalg as sla
from scipy import stats

from ._arrays import Caller, caller_of, check_array, to_numpy, xp_array
from .dynamics import drift_diffusion, drift_test, drift_test_from_gram
from .spectrum import spectrum_summary

__all__ = [
    "DIAGNOSTICS",
    "NullDiagnostics",
    "gram_diagnostics",
    "increment_spectrum",
    "limit_diagnostics",
    "random_walk_gram",
    "random_walk_null",
    "random_walk_pca_limit",
    "trajectory_diagnostics",
]

DIAGNOSTICS = (
    "var1_over_var2",
    "gamma",
    "n90_excl_pc1",
    "fraction_pc1",
    "pc1_drift_ratio",
    "pc1_corr_time_steps",
    "modes_median_drift_ratio",
    "modes_median_corr_time_steps",
    "drift_z",
    "drift_ratio_full",
)
"""Names of the diagnostics computed by :func:`gram_diagnostics` (the keys of its dict)."""


def _check_shape(n_snapshots, block, n_modes, rank_range):
    T = int(n_snapshots)
    if T != n_snapshots or T < 8:
        raise ValueError(f"n_snapshots must be an integer >= 8, got {n_snapshots}")
    k = int(n_modes)
    if not 2 <= k <= T - 1:
        raise ValueError(f"n_modes must be in [2, T-1] = [2, {T - 1}], got {n_modes}")
    lo, hi = (int(r) for r in rank_range)
    if not 1 <= lo < hi <= T - 1:
        raise ValueError(
            f"rank_range {lo}-{hi} does not fit a window of {T} snapshots (ranks 1..{T - 1})"
        )
    return T, int(block), k, (lo, hi)


def random_walk_pca_limit(n_snapshots: int, n_modes: int | None = None):
    """PCA of an isotropic random walk for N >> T (closed form), per unit N D.

    Returns ``(variances, theta)``: the T - 1 PCA variances (divisor T - 1, as
    ``explained_variance_``) of a walk with increment variance D per step per dimension, in
    units of N D: sigma_k^2 = 1 / (4 (T - 1) sin^2(pi k / 2T)), k = 1..T-1; and the (T,
    n_modes) PC projections theta_k(t) = sqrt(2 / T) cos(pi k (t + 1/2) / T) sqrt((T - 1)
    sigma_k^2) (unit-norm cosine times the singular value). These are the exact eigenpairs
    of the centred covariance min(s, t) of a discrete walk (Antognini & Sohl-Dickstein 2018);
    a finite N adds Wishart noise (:func:`random_walk_null`). Numpy arrays.
    """
    T = int(n_snapshots)
    if T < 3:
        raise ValueError(f"n_snapshots must be >= 3, got {n_snapshots}")
    k = np.arange(1, T)
    lam = 1.0 / (4.0 * np.sin(np.pi * k / (2.0 * T)) ** 2)  # eigenvalues of C min(s,t) C
    n_modes = T - 1 if n_modes is None else int(n_modes)
    t = np.arange(T)[:, None] + 0.5
    kk = np.arange(1, n_modes + 1)[None, :]
    U = np.sqrt(2.0 / T) * np.cos(np.pi * kk * t / T)
    return lam / (T - 1), U * np.sqrt(lam[:n_modes])[None, :]


def random_walk_gram(
    n_snapshots: int,
    n_features: int | None = None,
    increment_variances=None,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """Gram matrix X X^T (T x T) of the positions x_0 = 0, x_t = xi_1 + ... + xi_t of a
    driftless Gaussian random walk, drawn without forming X.

    Isotropic: ``n_features`` = N dimensions, each increment N(0, 1): the increments' Gram
    is Wishart(N, I_{T-1}) (Bartlett decomposition, O(T^3), when N >= T - 1). Anisotropic:
    ``increment_variances`` d_j (one per dimension; zeros ignored): xi ~ N(0, diag(d)).
    Returned in the array type of ``increment_variances`` (numpy for the isotropic walk).
    """
    T = int(n_snapshots)
    if T < 2:
        raise ValueError(f"n_snapshots must be >= 2, got {n_snapshots}")
    n_inc = T - 1
    caller = caller_of(increment_variances)
    if increment_variances is None:
        N = int(n_features)
        if N < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if N >= n_inc:
            W = stats.wishart(df=N, scale=np.eye(n_inc)).rvs(random_state=rng)
        else:
            Z = rng.standard_normal((n_inc, N))
            W = Z @ Z.T
    else:
        d = check_array(increment_variances, "increment_variances", sign="nonnegative")
        d = d[d > 0]
        if d.size == 0:
            raise ValueError("all increment variances are zero: the walk does not move")
        Z = rng.standard_normal((n_inc, d.size)) * np.sqrt(d)[None, :]
        W = Z @ Z.T
    P = np.zeros((T, T))
    P[1:, 1:] = W
    return caller.wrap(np.cumsum(np.cumsum(P, axis=0), axis=1))


def gram_diagnostics(
    G,
    *,
    block: int,
    n_modes: int,
    rank_range: tuple[int, int],
    fraction: float = 0.9,
) -> dict:
    """The Fig 1 diagnostics of a trajectory given by its position Gram matrix G = X X^T.

    PCA of the window from the centred Gram (variances = eigenvalues / (T - 1)), then the
    same estimators as a real run: :func:`~sgdyn.theory.spectrum.spectrum_summary` (gamma
    over ``rank_range``, n90, var1/var2), :func:`~sgdyn.theory.dynamics.drift_diffusion` on
    the top ``n_modes`` PC projections in blocks of ``block`` steps (PC1 and the median over
    modes 2..n_modes), and :func:`~sgdyn.theory.dynamics.drift_test_from_gram`. Returns a
    dict with the keys of :data:`DIAGNOSTICS` (correlation times in steps).
    """
    G = check_array(G, "G", ndim=2)
    T, block, k, rr = _check_shape(G.shape[0], block, n_modes, rank_range)
    m = G.mean(axis=0)
    Gc = G - m[None, :] - m[:, None] + m.mean()
    lam, U = sla.eigh(Gc, driver="evd")
    lam, U = lam[::-1], U[:, ::-1]
    var = np.clip(lam[: T - 1], 0.0, None) / (T - 1)  # eigensolver round-off below 0
    spec = spectrum_summary(var, rank_range=rr, fraction=fraction)
    theta = U[:, :k] * np.sqrt(np.clip(lam[:k], 0.0, None))[None, :]
    return {**_mode_diagnostics(theta, block), **_spec_dict(spec), **_drift_dict(G, block)}


def trajectory_diagnostics(
    X,
    *,
    block: int,
    n_modes: int,
    rank_range: tuple[int, int],
    fraction: float = 0.9,
) -> dict:
    """:func:`gram_diagnostics` of the positions ``X`` (T, N) themselves: equal numbers (the
    nonzero eigenvalues of X_c X_c^T and X_c^T X_c agree and theta = X_c v_k), at O(T N^2)
    through the N x N covariance when N < T instead of O(T^3); the drift test reads only the
    Gram of the block endpoints."""
    X = check_array(X, "X", ndim=2)
    T, N = X.shape
    T, block, k, rr = _check_shape(T, block, n_modes, rank_range)
    if N >= T:
        return gram_diagnostics(X @ X.T, block=block, n_modes=k, rank_range=rr, fraction=fraction)
    Xc = X - X.mean(axis=0, keepdims=True)
    lam, V = sla.eigh(Xc.T @ Xc, driver="evd")
    lam, V = np.clip(lam[::-1], 0.0, None), V[:, ::-1]
    var = np.zeros(T - 1)
    var[:N] = lam / (T - 1)
    spec = spectrum_summary(var, rank_range=rr, fraction=fraction)
    theta = np.zeros((T, k))
    kk = min(k, N)
    theta[:, :kk] = Xc @ V[:, :kk]
    dt = drift_test(X, block)  # reads only the Gram of the block endpoints
    drift = {"drift_z": dt.z, "drift_ratio_full": dt.drift_ratio_full}
    return {**_mode_diagnostics(theta, block), **_spec_dict(spec), **drift}


def _walk_diagnostics(T: int, scales, N: int | None, rng, **kw) -> dict:
    """Diagnostics of one driftless walk: increments N(0, diag(scales^2)) (or N isotropic unit
    ones), drawn as a Wishart Gram when there are more dimensions than increments, else as
    positions (the draws of :func:`random_walk_gram` either way)."""
    n_inc = T - 1
    if scales is None and N >= n_inc:
        return gram_diagnostics(random_walk_gram(T, N, rng=rng), **kw)
    Z = rng.standard_normal((n_inc, N if scales is None else scales.size))
    if scales is not None:
        Z = Z * scales[None, :]
    X = np.zeros((T, Z.shape[1]))
    np.cumsum(Z, axis=0, out=X[1:])
    return trajectory_diagnostics(X, **kw)


def _spec_dict(spec) -> dict:
    return {
        "var1_over_var2": spec.var1_over_var2,
        "gamma": spec.gamma,
        "n90_excl_pc1": float(spec.n90_excl_pc1),
        "fraction_pc1": spec.fraction_pc1,
    }


def _mode_diagnostics(theta: np.ndarray, block: int) -> dict:
    dd = drift_diffusion(theta, block=block)
    return {
        "pc1_drift_ratio": float(dd.drift_ratio[0]),
        "pc1_corr_time_steps": float(dd.corr_time_steps[0]),
        "modes_median_drift_ratio": float(np.median(dd.drift_ratio[1:])),
        "modes_median_corr_time_steps": float(np.median(dd.corr_time_steps[1:])),
    }


def _drift_dict(G: np.ndarray, block: int) -> dict:
    dt = drift_test_from_gram(G, block)
    return {"drift_z": dt.z, "drift_ratio_full": dt.drift_ratio_full}


@dataclass(frozen=True)
class NullDiagnostics:
    """A null model's diagnostics over ``n_replicas`` seeded draws.

    ``mean`` / ``sd`` / ``replicas`` map each name of :data:`DIAGNOSTICS` to the mean, the
    standard deviation (ddof=1) and the list of values over replicas. ``model`` names the
    null; ``params`` the shape it was drawn with.
    """

    model: str
    mean: dict
    sd: dict
    replicas: dict
    params: dict

    def as_dict(self) -> dict:
        return asdict(self)


def _summarise(model: str, rows: list[dict], params: dict) -> NullDiagnostics:
    keys = rows[0].keys()
    vals = {key: [float(r[key]) for r in rows] for key in keys}
    sd = {key: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for key, v in vals.items()}
    return NullDiagnostics(
        model=model,
        mean={key: float(np.mean(v)) for key, v in vals.items()},
        sd=sd,
        replicas=vals,
        params=params,
    )


@functools.lru_cache(maxsize=16)
def _isotropic_cached(T, N, block, k, rr, fraction, n_replicas, seed) -> NullDiagnostics:
    kw = dict(block=block, n_modes=k, rank_range=rr, fraction=fraction)
    rows = [
        _walk_diagnostics(T, None, N, np.random.default_rng([seed, r]), **kw)
        for r in range(n_replicas)
    ]
    params = dict(n_snapshots=T, n_features=N, block=block, n_modes=k, rank_range=list(rr),
                  n_replicas=n_replicas, seed=seed)  # fmt: skip
    return _summarise("isotropic random walk", rows, params)


def random_walk_null(
    n_snapshots: int,
    n_features: int | None = None,
    increment_variances=None,
    *,
    block: int,
    n_modes: int,
    rank_range: tuple[int, int],
    fraction: float = 0.9,
    n_replicas: int = 4,
    seed: int = 0,
) -> NullDiagnostics:
    """Diagnostics of a driftless random walk of T snapshots (mean, sd over seeded replicas).

    Isotropic (``n_features`` = N, unit increments; cached by its arguments) or anisotropic
    (``increment_variances``: the variance of the increments along each direction, e.g.
    :func:`increment_spectrum` of the run, so the null has the run's fluctuations without
    its drift). The same estimators and options as the run (:func:`gram_diagnostics`).
    """
    T, block, k, rr = _check_shape(n_snapshots, block, n_modes, rank_range)
    R = int(n_replicas)
    if R < 1:
        raise ValueError(f"n_replicas must be >= 1, got {n_replicas}")
    if (n_features is None) == (increment_variances is None):
        raise ValueError("give either n_features (isotropic) or increment_variances")
    if increment_variances is None:
        return _isotropic_cached(T, int(n_features), block, k, rr, float(fraction), R, int(seed))
    d = check_array(increment_variances, "increment_variances", sign="nonnegative")
    scales = np.sqrt(d[d > 0])
    if scales.size == 0:
        raise ValueError("all increment variances are zero: the walk does not move")
    kw = dict(block=block, n_modes=k, rank_range=rr, fraction=fraction)
    rows = [
        _walk_diagnostics(T, scales, None, np.random.default_rng([seed, 1, r]), **kw)
        for r in range(R)
    ]
    params = dict(n_snapshots=T, n_directions=int(np.count_nonzero(d)), block=block, n_modes=k,
                  rank_range=list(rr), n_replicas=R, seed=int(seed))  # fmt: skip
    return _summarise("anisotropic random walk (the run's increment spectrum)", rows, params)


def limit_diagnostics(
    n_snapshots: int, *, block: int, n_modes: int, rank_range: tuple[int, int], fraction=0.9
) -> dict:
    """:data:`DIAGNOSTICS` of the N >> T isotropic limit (:func:`random_walk_pca_limit`).

    Deterministic; ``drift_z`` is its null mean (0) and ``drift_ratio_full`` its root mean
    square (1): with independent increments E|net|^2 = E sum |increments|^2.
    """
    T, block, k, rr = _check_shape(n_snapshots, block, n_modes, rank_range)
    var, theta = random_walk_pca_limit(T, k)
    spec = spectrum_summary(var, rank_range=rr, fraction=fraction)
    return {
        **_mode_diagnostics(theta, block),
        **_spec_dict(spec),
        "drift_z": 0.0,
        "drift_ratio_full": 1.0,
    }


def increment_spectrum(trajectory):
    """Variances of the increments along their principal directions, drift removed.

    ``trajectory`` (T, N): positions at T consecutive steps, any array library. The
    increments x_{t+1} - x_t are centred (their mean, the drift per step, is removed) and the
    eigenvalues of their covariance (divisor T - 2) returned in decreasing order, T - 1 of
    them (at most min(T - 2, N) non-zero), computed in the caller's namespace in float64
    from the smaller of the (T-1) x (T-1) Gram and the N x N scatter matrix (same non-zero
    eigenvalues; a 12,000-step window of 2,500 weights: 2,500^2 instead of 12,000^2). The
    anisotropic null of :func:`random_walk_null` draws increments with these variances: the
    run's fluctuations without its drift.
    """
    c = caller_of(trajectory)
    f64 = Caller(c.xp, c.device, c.xp.float64)
    X = xp_array(trajectory, "trajectory", f64, hint="pass the positions as (T, N)")
    if X.ndim != 2 or X.shape[0] < 4:
        raise ValueError(f"trajectory must be (T >= 4, N), got shape {tuple(X.shape)}")
    xp = c.xp
    D = X[1:, ...] - X[:-1, ...]
    D = D - xp.mean(D, axis=0, keepdims=True)
    n_inc, N = D.shape
    small = D @ xp.matrix_transpose(D) if n_inc <= N else xp.matrix_transpose(D) @ D
    ev = xp.flip(xp.linalg.eigvalsh(small) / (n_inc - 1), axis=0)
    if ev.shape[0] < n_inc:  # the Gram's other eigenvalues are 0
        ev = xp.concat([ev, xp.zeros(n_inc - ev.shape[0], dtype=ev.dtype, device=c.device)])
    ev = xp.where(ev > 0, ev, xp.zeros_like(ev))  # round-off below 0 (rank <= T - 2)
    ev = xp.astype(ev, c.dtype)
    return ev if not c.is_numpy else to_numpy(ev)
