"""The simulator fed by a network: SGD on the ``from-network`` MLF ensemble, and ablations.

Given the spec built from a network's minibatch ensemble (:mod:`sgdyn.simulator.from_network`)
and the network's SGD settings (alpha, minibatches per epoch K = N_data / B, window T in
steps), :func:`simulate_from_network` integrates SGD on Eq 9 for ``replicas`` replicas from
w0 (theta = 0) and measures psi with the same estimators as the network: window variance per
mode (mean removed) against the e-width flatness of the simulated averaged loss (the
``Landscape``'s ``losses_along`` through :func:`sgdyn.theory.flatness.flatness_e_width`),
diffusive modes i >= 2.

Variants; each switches ONE assumption relative to ``network``:

- ``network``: the from-network mean-field law (Gaussian per-mode M^mu_ii, theta^mu_i,
  log-normal L^mu_0; diagonal), the network's K minibatches visited without replacement
  each epoch, the network's finite window T, started at the drawn finite set's own averaged
  minimum (:func:`averaged_minimum`; the network, late in training, sits at its own set's
  minimum, and a freshly drawn set's minimum lies ~ sigma_theta / sqrt(K) away from the
  origin: started at 0 every slow mode drifts there inside the window, which inflates the
  flat modes' variance and turned psi negative; the closure test on a known MLF,
  tests/test_suite_closure.py, pins this);
- ``cross-separable``: + the measured cross-mode scale as Gaussian off-diagonals
  sigma_ij = s_i s_j (the mean-field law's cross-mode term);
- ``cross-measured``: the network's own measured K x K matrices M^mu, log-gradients and
  levels per minibatch (:class:`MeasuredMLFLandscape`: the measured cross-mode structure
  itself, no Gaussian law);
- ``measured-diagonal``: the same measured minibatches with only the diagonal of each M^mu;
- ``replacement``: each step draws a minibatch uniformly (with replacement);
- ``fresh``: an infinite ensemble (a new MLF every step, the mean-field law itself);
- ``relaxed``: a window long against every relaxation time (burn-in 5 tau_max, window
  10 tau_max, capped at ``max_steps``), the stationary regime instead of the finite window.

Beside them the linearised theory (Eqs 12, 14): psi of the diffusive limit D_i T / 6 (the
paper's 2 when Fig 3B's scalings hold) and of the exact finite-window OU variance
(:func:`sgdyn.theory.mlf.ou_window_variance`). No parameter is tuned to the network's psi.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from sgdyn.simulator.from_network import MeasuredMLFLandscape
from sgdyn.simulator.integrators import SimulationDiverged, simulate
from sgdyn.simulator.landscape import MLFLandscape
from sgdyn.theory import mlf
from sgdyn.theory.flatness import flatness_e_width, variance_flatness_exponent

VARIANTS = (
    "network", "cross-separable", "cross-measured", "measured-diagonal", "replacement",
    "fresh", "relaxed",
)  # fmt: skip
PRIMARY = "network"


def _psi(var, F) -> dict:
    v, f = np.asarray(var, float)[1:], np.asarray(F, float)[1:]
    ok = np.isfinite(f) & np.isfinite(v) & (v > 0) & (f > 0)
    if ok.sum() < 3:
        return {"psi": None, "psi_err": None, "error": "fewer than 3 usable diffusive modes"}
    fit = variance_flatness_exponent(v[ok], f[ok])
    return {"psi": float(fit.psi), "psi_err": float(fit.psi_err_boot), "n_modes": int(ok.sum())}


def landscape_flatness(land) -> np.ndarray:
    """e-width of a landscape's averaged loss along each axis at w0 = 0 (NaN: unbounded)."""
    n = land.n_params
    w0 = torch.zeros(n)
    eye = torch.eye(n)
    L0 = float(land.full_loss(w0))

    def profile(amps):
        a = torch.as_tensor(np.asarray(amps), dtype=torch.float32)[:, None]
        return land.losses_along(w0, eye, a).cpu().numpy()[:, 0]

    ew = flatness_e_width(profile, n, L0=L0, init_step=0.05, on_unbounded="flag")
    return np.asarray(ew.width, dtype=np.float64)


def averaged_minimum(land, *, max_iter: int = 500) -> torch.Tensor:
    """The minimum of a finite ensemble's averaged loss L = <L^mu>_mu (minimising ln L by
    L-BFGS; gradient = mean of the minibatch gradients, ``per_sample_projections`` on the
    axes), through the ``Landscape`` protocol; (n_params,) in the landscape's dtype."""
    n = land.n_params
    eye = torch.eye(n, dtype=land.dtype)
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [x], max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        w = x.detach().to(land.dtype)
        L = float(land.full_loss(w))
        g = land.per_sample_projections(w, eye).double().mean(0)
        x.grad = (g / L).to(torch.float64).reshape(n)
        return torch.tensor(np.log(L), dtype=torch.float64)

    opt.step(closure)
    w = x.detach()
    if not torch.all(torch.isfinite(w)):
        raise ValueError("the finite ensemble's averaged loss has no finite minimum")
    return w.to(land.dtype)


def simulate_from_network(
    spec,
    *,
    alpha: float,
    steps_per_epoch: int,
    window_steps: int,
    measured: dict | None = None,
    replicas: int = 32,
    seed: int = 0,
    variants=VARIANTS,
    max_steps: int = 20000,
) -> tuple[dict, dict]:
    """Run every variant (module docstring); returns ``(summary, arrays)``. ``measured``:
    ``{"M": (n, K, K), "grad_log": (n, K), "L0": (n,)}`` for the measured variants (skipped
    without it). A diverging variant is recorded with its reason; the others still run."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown simulator variants {unknown}; choose from {VARIANTS}")
    K = max(int(steps_per_epoch), 1)
    T = int(window_steps)
    if T < 4:
        raise ValueError(f"window_steps must be >= 4, got {T}")
    diag = replace(spec, sigma_off=0.0)
    tau = mlf.relaxation_time(alpha, diag.L0, diag.M0)
    D = mlf.diffusion_constant(
        alpha, diag.L0_sq_mean, diag.M0, diag.s, diag.sigma_theta, diag.theta1_0, diag.sigma_M,
        diag.L0, paper=False,
    )  # fmt: skip
    M_eq10 = mlf.averaged_curvature(**diag.theory_kwargs())
    F_eq10 = mlf.flatness_from_curvature(M_eq10)
    tau_M = mlf.relaxation_time(alpha, diag.L0, M_eq10)
    wv = mlf.window_variances(D, np.maximum(tau_M, 1.0), T, start="origin")
    out: dict = {"primary": PRIMARY, "variants": {}}
    out["theory"] = {
        "psi_diffusive_limit": _psi(wv["diffusive"], F_eq10),
        "psi_exact_window": _psi(wv["exact"], F_eq10),
        "psi_stationary_limit": _psi(wv["stationary"], F_eq10),
        "tau_range_steps": [float(tau.min()), float(tau.max())],
        "window_steps": T,
        "window_over_tau_median": float(np.median(T / tau)),
    }
    arrays: dict = {"theory_F_eq10": F_eq10, "theory_var_diffusive": wv["diffusive"],
                    "theory_var_exact": wv["exact"]}  # fmt: skip
    for v in variants:
        if v in ("cross-measured", "measured-diagonal"):
            if measured is None:
                continue
            sp = diag
            land = MeasuredMLFLandscape(
                diag, measured["M"], measured["grad_log"], measured["L0"],
                diagonal=v == "measured-diagonal",
            )  # fmt: skip
        else:
            sp = spec if v == "cross-separable" else diag
            land = MLFLandscape(sp, K, seed=seed + 11)
        burn, n_steps, every = 0, T, 1
        # drawn finite sets start at their own averaged minimum; the measured variants hold
        # the network's own minibatches, for which the origin is the network's w0
        start = v not in ("fresh", "cross-measured", "measured-diagonal")
        if v == "relaxed":
            burn = int(min(5 * tau.max(), max_steps // 3))
            n_steps = int(min(max(T, 10 * tau.max()), max_steps))
            every = max(1, (burn + n_steps) // 4000)
        rec: dict = {}
        try:
            F_v = landscape_flatness(land)
            theta0 = averaged_minimum(land) if start else None
            res = simulate(
                sp, dynamics="sgd", alpha=alpha, n_steps=burn + n_steps, n_replicas=replicas,
                landscape=None if v == "fresh" else land, seed=seed + 1, record_every=every,
                replacement=(v == "replacement"), theta0=theta0,
            )  # fmt: skip
        except (SimulationDiverged, ValueError) as e:
            out["variants"][v] = {"psi": None, "error": str(e).splitlines()[0]}
            continue
        th = res.theta[burn // every :]
        var = th.var(axis=0).mean(axis=0)
        rec = _psi(var, F_v)
        rec.update(window_steps=int(n_steps), burn_in=int(burn), record_every=int(every),
                   start="averaged minimum" if start else "origin")  # fmt: skip
        out["variants"][v] = rec
        arrays[f"sim_var_{v}"] = var
        arrays[f"sim_F_{v}"] = F_v
    return out, arrays
