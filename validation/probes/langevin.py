"""Equilibrium contrast (Sec VI, Eq 16): Langevin dynamics at a constant temperature.

The sampler (Euler-Maruyama for dw = -grad L dt + sqrt(2 T) dW with dt = lr)::

    w <- w - lr * grad L(w) + sqrt(2 lr T) * xi,    xi ~ N(0, I),

uses the *full-batch* gradient plus isotropic Gaussian noise, so its stationary density is
the Boltzmann distribution P(w) ~ exp(-L(w) / T) (up to O(lr) corrections). For a
quadratic L = sum_i k_i theta_i^2 / 2 the variance is T / k_i; with Eq 7's form
(L ~ L0 (1 + 4 theta^2 / F^2), k = 8 L0 / F^2) it is sigma_i^2 = T F_i^2 / (8 L0): the
fluctuation-response relation, variance *growing* with flatness (psi = -2 in Eq 8).

Temperature matching (:func:`sgd_matched_temperature`). One SGD step is
``w <- w - lr grad L - lr (g^mu - grad L)``; its noise has covariance lr^2 C with
``C = cov_mu(g^mu)``. The Langevin step's noise has covariance 2 lr T I. Equal average noise
power per step, ``2 lr T N = lr^2 tr C``, gives

    T = lr * <|g^mu - grad L|^2>_mu / (2 N),

with the average over the minibatches of one epoch at the window's end point and N the
number of probed parameters. Only the probe moves (the rest of the network is held fixed),
as in the SGD analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sgdyn.kernels import StreamingPCA


def sgd_matched_temperature(land, w, lr: float, max_minibatches: int | None = None) -> dict:
    """T matched to SGD's average noise power at ``w`` (module docstring), with its parts."""
    w = land.as_point(w)
    _, g_full = land.full_loss_and_grad(w)
    n_mb = (
        land.n_minibatches if max_minibatches is None else min(max_minibatches, land.n_minibatches)
    )
    sq = []
    for mu in range(n_mb):
        _, g = land.minibatch_loss_and_grad(w, mu)
        sq.append(float(((g - g_full) ** 2).sum()))
    noise_power = float(np.mean(sq))
    T = lr * noise_power / (2 * land.n_params)
    return {
        "temperature": T,
        "noise_power": noise_power,
        "grad_norm": float(g_full.norm()),
        "n_minibatches": n_mb,
        "lr": lr,
        "n_params": land.n_params,
    }


def langevin_run(
    grad_fn,
    w0: torch.Tensor,
    *,
    lr: float,
    temperature: float,
    n_steps: int,
    record_every: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Run the sampler from ``w0``; ``grad_fn(w) -> grad L(w)``. Returns (n_records, N)."""
    if not (lr > 0 and temperature >= 0 and n_steps >= 1 and record_every >= 1):
        raise ValueError(
            f"need lr > 0, temperature >= 0, n_steps >= 1, record_every >= 1; got {lr}, "
            f"{temperature}, {n_steps}, {record_every}"
        )
    g = torch.Generator(device=w0.device).manual_seed(int(seed))
    w = w0.detach().clone()
    scale = float(np.sqrt(2 * lr * temperature))
    out = torch.empty(n_steps // record_every, w.numel(), dtype=w.dtype, device=w.device)
    r = 0
    for step in range(n_steps):
        grad = grad_fn(w)
        noise = torch.randn(w.shape, generator=g, device=w.device, dtype=w.dtype)
        w = w - lr * grad + scale * noise
        if not torch.isfinite(w).all():
            raise RuntimeError(
                f"Langevin run diverged at step {step}: lower lr ({lr}) or the temperature"
            )
        if (step + 1) % record_every == 0 and r < out.shape[0]:
            out[r] = w
            r += 1
    return out


@dataclass
class LangevinCapture:
    trajectory: torch.Tensor  # (n_steps, N) full probe vectors w0 + theta @ P
    pca: StreamingPCA
    temperature: dict
    lr: float
    n_steps: int
    burn_in: int
    subspace_dim: int | None


def langevin_capture(
    land,
    w0: torch.Tensor,
    *,
    lr: float,
    n_steps: int,
    burn_in: int = 0,
    temperature: float | None = None,
    sgd_lr: float | None = None,
    subspace: torch.Tensor | None = None,
    seed: int = 0,
) -> LangevinCapture:
    """Langevin on ``land``'s full loss from ``w0``, recorded and PCA'd exactly as SGD.

    ``temperature`` defaults to the SGD-matched one at ``sgd_lr`` (default ``lr``).
    With ``subspace`` (K, N) orthonormal rows, the dynamics run in w = w0 + theta P (the
    gradient projected, isotropic noise in theta): this keeps the run away from the
    non-equilibrium drift along PC1 (cross-entropy has no minimum along it) so the diffusive
    directions can equilibrate. ``burn_in`` steps are discarded.
    """
    w0 = land.as_point(w0)
    if temperature is None:
        info = sgd_matched_temperature(land, w0, sgd_lr if sgd_lr is not None else lr)
    else:
        info = {"temperature": float(temperature)}
    T = info["temperature"]
    if subspace is None:

        def grad_fn(w):
            return land.full_loss_and_grad(w)[1]

        start = w0
    else:
        P = land.as_directions(subspace)

        def grad_fn(theta):
            return P @ land.full_loss_and_grad(w0 + theta @ P)[1]

        start = torch.zeros(P.shape[0], dtype=w0.dtype, device=w0.device)
    if burn_in > 0:
        start = langevin_run(
            grad_fn, start, lr=lr, temperature=T, n_steps=burn_in, record_every=burn_in, seed=seed
        )[-1]
    traj = langevin_run(grad_fn, start, lr=lr, temperature=T, n_steps=n_steps, seed=seed + 1)
    if subspace is not None:
        traj = w0 + traj @ P
    pca = StreamingPCA().fit(traj)
    return LangevinCapture(
        traj, pca, info, lr, n_steps, burn_in, None if subspace is None else int(P.shape[0])
    )
