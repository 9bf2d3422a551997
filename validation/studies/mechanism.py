"""The mechanism on any landscape: the MLF ensemble (Sec IV, Fig 3), the diffusion constants
(Eq 14) and the active temperature (Sec VI, Eq 17, Fig 5), exact from per-sample values.

Everything here goes through the :class:`sgdyn.landscape.Landscape` protocol only
(``per_sample_losses_along``, ``per_sample_slopes_along``, ``per_sample_projections``,
``losses_along``), so the same
estimators run on a real network (:class:`~sgdyn.validation.probes.NetworkLandscape`) and on
the simulator's finite MLF ensemble (:class:`~sgdyn.simulator.landscape.MLFLandscape`,
where each minibatch is one "sample").

- :func:`measure_ensemble`: the minibatch loss profiles L^mu_i(dtheta) along every direction
  p_i for a set of minibatches, each fitted to the one-direction Eq 9 -> M^mu_ii, theta~^mu_i,
  L^mu_0 per (minibatch, direction), and the ensemble statistics M^(0)_ii, sigma~^2_theta,i.
- :func:`measure_diffusion`: D_i = alpha^2 Var_mu(dL^mu/dtheta_i) and T_i(0) for all K
  directions from ONE pass over the data (the per-sample projections onto K directions).
- :func:`measure_temperature`: the profiles T_i(dtheta) = (alpha/2) Var_mu(dL^mu/d dtheta)
  along chosen directions (per-sample slopes, many (direction, amplitude) pairs per pass).

Minibatch moments are exact (finite-population correction, :mod:`sgdyn.theory.ensemble`):
over random minibatches of ``batch_size`` drawn without replacement, or over an explicit set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sgdyn.theory.ensemble import (
    active_temperature,
    diffusion_constants,
    ensemble_summary,
    fit_mlf_profiles,
    minibatch_moments,
)

__all__ = [
    "DiffusionMeasurement",
    "EnsembleMeasurement",
    "TemperatureMeasurement",
    "epoch_batches",
    "measure_diffusion",
    "measure_ensemble",
    "measure_temperature",
]

_CHUNK_BYTES = 64 << 20  # per-sample losses held at once (n_samples x directions x amplitudes)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _n_samples(landscape) -> int:
    n = getattr(landscape, "n_samples", None)
    return int(n) if n is not None else int(landscape.n_minibatches)


def epoch_batches(n_samples: int, batch_size: int, n_epochs: int = 1, seed: int = 0) -> np.ndarray:
    """The minibatches of ``n_epochs`` random epoch partitions (as SGD draws them): each epoch
    a permutation of the n samples cut into n // B batches; (n_epochs * (n // B), B) int64."""
    if not 1 <= batch_size <= n_samples:
        raise ValueError(f"batch_size must be in 1..{n_samples}, got {batch_size}")
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
    rng = np.random.default_rng(seed)
    m = n_samples // batch_size
    return np.concatenate(
        [
            rng.permutation(n_samples)[: m * batch_size].reshape(m, batch_size)
            for _ in range(n_epochs)
        ]
    )


def _check_directions(landscape, directions) -> torch.Tensor:
    P = torch.as_tensor(directions)
    if P.ndim == 1:
        P = P[None]
    if P.ndim != 2 or P.shape[1] != landscape.n_params:
        raise ValueError(
            f"directions must be (K, {landscape.n_params}) (one row per direction, the probed "
            f"parameter's size), got {tuple(P.shape)}"
        )
    return P


def _check_batches(batches, n: int) -> torch.Tensor:
    b = torch.as_tensor(np.asarray(batches))
    if b.ndim == 1:
        b = b[:, None]
    if b.ndim != 2 or b.numel() == 0 or b.is_floating_point():
        raise ValueError(
            f"batches must be an integer (n_minibatches, batch_size) index array, got "
            f"{tuple(b.shape)} {b.dtype}"
        )
    if int(b.min()) < 0 or int(b.max()) >= n:
        raise ValueError(f"batches hold sample indices outside 0..{n - 1}")
    return b.long()


@dataclass
class EnsembleMeasurement:
    """Per-minibatch Eq 9 fits along K directions (numpy arrays).

    ``M``, ``theta``, ``L0``, ``rms``: (n_mu, K) curvature M^mu_ii, minimum theta~^mu_i
    (measured from w0), level L^mu_0 and the fit's rms residual of ln L; ``F``: (K,) flatness
    if given, else None; ``M0``, ``sigma_theta2``, ``theta_mean``, ``sigma_M2``,
    ``L0_mean``, ``L0_sq_mean``, ``product`` (= M0^2 sigma_theta2): per mode (K,);
    ``amplitudes`` (K, A); ``profiles`` (n_mu, K, A) minibatch losses L^mu_i(a);
    ``full_profiles`` (K, A) the overall loss L_i(a) (mean over all samples)."""

    M: np.ndarray
    theta: np.ndarray
    L0: np.ndarray
    rms: np.ndarray
    F: np.ndarray | None
    M0: np.ndarray
    sigma_theta2: np.ndarray
    theta_mean: np.ndarray
    sigma_M2: np.ndarray
    L0_mean: np.ndarray
    L0_sq_mean: np.ndarray
    product: np.ndarray
    amplitudes: np.ndarray
    profiles: np.ndarray
    full_profiles: np.ndarray

    @property
    def n_minibatches(self) -> int:
        return int(self.M.shape[0])


def measure_ensemble(
    landscape,
    w0,
    directions,
    batches,
    amplitudes,
    *,
    F=None,
    chunk_bytes: int = _CHUNK_BYTES,
) -> EnsembleMeasurement:
    """The MLF ensemble along ``directions`` (K, N) around ``w0``: every minibatch's profile
    L^mu_i(a) = mean over its samples of l_s(w0 + a p_i) at ``amplitudes`` ((A,) shared or
    (K, A)), fitted to the one-direction Eq 9 (:func:`sgdyn.theory.ensemble.fit_mlf_profiles`).

    ``batches``: (n_mu, B) sample indices (e.g. :func:`epoch_batches`; on the simulator's
    landscape ``np.arange(n_minibatches)[:, None]``). ``F``: optional (K,) flatness kept
    beside the fits.
    """
    P = _check_directions(landscape, directions)
    K = P.shape[0]
    a = _np(amplitudes)
    if a.ndim == 1:
        a = np.broadcast_to(a, (K, a.size)).copy()
    if a.ndim != 2 or a.shape[0] != K or a.shape[1] < 3:
        raise ValueError(f"amplitudes must be (A,) or (K={K}, A) with A >= 3, got {a.shape}")
    n = _n_samples(landscape)
    b = _check_batches(batches, n)
    if F is not None:
        F = _np(F).reshape(-1)
        if F.size != K:
            raise ValueError(f"F must have one entry per direction (K={K}), got {F.size}")
    nA = a.shape[1]
    kc = max(1, min(K, int(chunk_bytes) // max(1, n * nA * 8)))
    prof = np.empty((b.shape[0], K, nA))
    full = np.empty((K, nA))
    for k0 in range(0, K, kc):
        k1 = min(K, k0 + kc)
        vals = landscape.per_sample_losses_along(w0, P[k0:k1], torch.as_tensor(a[k0:k1]))
        vals = torch.as_tensor(vals, dtype=torch.float64).cpu()  # (n, kc, A)
        if vals.shape != (n, k1 - k0, nA):
            raise RuntimeError(
                f"per_sample_losses_along returned {tuple(vals.shape)}, expected {(n, k1 - k0, nA)}"
            )
        full[k0:k1] = vals.mean(0).numpy()
        prof[:, k0:k1] = vals[b].mean(1).numpy()
    fit = fit_mlf_profiles(a, prof)
    st = ensemble_summary(fit.M, fit.theta, fit.L0)
    return EnsembleMeasurement(
        M=fit.M,
        theta=fit.theta,
        L0=fit.L0,
        rms=fit.rms,
        F=F,
        M0=st.M0,
        sigma_theta2=st.sigma_theta2,
        theta_mean=st.theta_mean,
        sigma_M2=st.sigma_M2,
        L0_mean=st.L0_mean,
        L0_sq_mean=st.L0_sq_mean,
        product=st.product,
        amplitudes=a,
        profiles=prof.astype(np.float32),
        full_profiles=full,
    )


def _moment_kwargs(landscape, batch_size, batches):
    if batches is not None:
        if batch_size is not None:
            raise ValueError("give batch_size or batches, not both")
        return {"batches": _np(_check_batches(batches, _n_samples(landscape)))}
    if batch_size is None:  # the landscape's own minibatch size (simulator: 1 = each L^mu)
        batch_size = int(getattr(landscape, "batch_size", 1))
    return {"batch_size": int(batch_size)}


@dataclass
class DiffusionMeasurement:
    """From one pass at ``w``: ``D`` (K,) = alpha^2 Var_mu(dL^mu/dtheta_i) (Eq 14),
    ``T0`` (K,) = (alpha/2) Var_mu (Eq 17 at dtheta = 0; = D / (2 alpha)), ``mean_slope``
    (K,) = dL/dtheta_i, ``second_moment`` (K,) = <(dL^mu/dtheta_i)^2>_mu."""

    D: np.ndarray
    T0: np.ndarray
    mean_slope: np.ndarray
    second_moment: np.ndarray
    lr: float
    batch: str


def measure_diffusion(
    landscape, w, directions, lr: float, *, batch_size=None, batches=None
) -> DiffusionMeasurement:
    """D_i and T_i(0) for all K ``directions`` at ``w`` from one ``per_sample_projections``
    pass; exact over random minibatches of ``batch_size`` (default: the landscape's
    ``batch_size``, 1 on the simulator) or over the explicit ``batches``."""
    P = _check_directions(landscape, directions)
    kw = _moment_kwargs(landscape, batch_size, batches)
    g = _np(landscape.per_sample_projections(w, P))  # (n, K)
    if kw.get("batch_size") is not None:
        mom = minibatch_moments(g, kw["batch_size"])
    else:
        from sgdyn.theory.ensemble import partition_moments

        mom = partition_moments(g, kw["batches"])
    what = f"B={kw['batch_size']}" if "batch_size" in kw else f"{len(kw['batches'])} batches"
    return DiffusionMeasurement(
        D=diffusion_constants(g, lr, **kw),
        T0=active_temperature(g, lr, **kw),
        mean_slope=np.asarray(mom.mean),
        second_moment=np.asarray(mom.second_moment),
        lr=float(lr),
        batch=what,
    )


@dataclass
class TemperatureMeasurement:
    """T_i(dtheta) (K, A) along each direction at ``amplitudes`` (K, A) (Eq 17), with the
    overall loss L_i(dtheta) (K, A) beside it (Fig 5A)."""

    T: np.ndarray
    amplitudes: np.ndarray
    loss: np.ndarray
    lr: float


def measure_temperature(
    landscape,
    w0,
    directions,
    amplitudes,
    lr: float,
    *,
    batch_size=None,
    batches=None,
    chunk_bytes: int = _CHUNK_BYTES,
) -> TemperatureMeasurement:
    """Profiles T_i(dtheta) = (alpha/2) Var_mu(dL^mu(w0 + dtheta p_i)/d dtheta) (Eq 17),
    exact, from ``per_sample_slopes_along`` (many (direction, amplitude) pairs per pass)."""
    P = _check_directions(landscape, directions)
    K = P.shape[0]
    a = _np(amplitudes)
    if a.ndim == 1:
        a = np.broadcast_to(a, (K, a.size)).copy()
    if a.ndim != 2 or a.shape[0] != K:
        raise ValueError(f"amplitudes must be (A,) or (K={K}, A), got {a.shape}")
    kw = _moment_kwargs(landscape, batch_size, batches)
    w0 = torch.as_tensor(w0).reshape(-1)
    if w0.numel() != landscape.n_params:
        raise ValueError(f"w0 has {w0.numel()} entries, the landscape {landscape.n_params}")
    n = _n_samples(landscape)
    T = np.empty(a.shape)
    kc = max(1, min(K, int(chunk_bytes) // max(1, n * a.shape[1] * 8)))
    for k0 in range(0, K, kc):
        k1 = min(K, k0 + kc)
        s = landscape.per_sample_slopes_along(w0, P[k0:k1], torch.as_tensor(a[k0:k1]))
        s = _np(s).reshape(n, -1)  # (n, kc * A): every (direction, amplitude) a column
        T[k0:k1] = np.asarray(active_temperature(s, lr, **kw)).reshape(k1 - k0, -1)
    loss = _np(landscape.losses_along(w0, P, torch.as_tensor(a)))
    return TemperatureMeasurement(T=T, amplitudes=a, loss=loss, lr=float(lr))
