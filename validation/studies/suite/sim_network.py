"""The simulator fed by a network: SGD on the ``from-network`` MLF ensemble, and ablations.

Given the spec built from a network's minibatch ensemble (:mod:`sgdyn.simulator.from_network`)
and the network's SGD settings (alpha, minibatches per epoch K = N_data / B, window T in
steps), :func:`simulate_from_network` integrates SGD on Eq 9 for ``replicas`` replicas from
w0 (theta = 0) and measures psi with the same estimators as the network: window variance per
mode (mean removed) against the e-width flatness of the simulated averaged loss
(:meth:`MLFLandscape.flatness`), diffusive modes i >= 2.

Variants (each switches ONE mean-field assumption relative to ``network``):

- ``network``: measured cross-mode structure, the K minibatches visited without replacement
  each epoch, the network's finite window T;
- ``diagonal``: cross-mode scale sigma_off = 0 (the diagonal mean field);
- ``replacement``: each step draws a minibatch uniformly (with replacement);
- ``fresh``: an infinite ensemble (a new MLF every step, the mean-field law itself);
- ``relaxed``: a window long against every relaxation time (burn-in 5 tau_max, window
  10 tau_max, capped), the stationary regime instead of the finite window.

Beside them the linearised theory (Eqs 12, 14): psi of the diffusive limit D_i T / 6 (the
paper's 2 when Fig 3B's scalings hold) and of the exact finite-window OU variance
(:func:`sgdyn.theory.mlf.ou_window_variance`). No parameter is tuned to the network's psi.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from sgdyn.simulator.integrators import SimulationDiverged, simulate
from sgdyn.simulator.landscape import MLFLandscape
from sgdyn.theory import mlf
from sgdyn.theory.flatness import variance_flatness_exponent

VARIANTS = ("network", "diagonal", "replacement", "fresh", "relaxed")


def _psi(var, F) -> dict:
    v, f = np.asarray(var)[1:], np.asarray(F)[1:]
    ok = np.isfinite(f) & (v > 0) & np.isfinite(v)
    if ok.sum() < 3:
        return {"psi": None, "psi_err": None, "error": "fewer than 3 usable diffusive modes"}
    fit = variance_flatness_exponent(v[ok], f[ok])
    return {"psi": float(fit.psi), "psi_err": float(fit.psi_err_boot), "n_modes": int(ok.sum())}


def simulated_flatness(spec, n_minibatches: int, seed: int = 0) -> np.ndarray:
    """e-width of the simulated averaged loss along each mode axis at w0 = 0 (NaN: unbounded)."""
    land = MLFLandscape(spec, n_minibatches, seed=seed)
    ew = land.flatness(torch.zeros(spec.N), torch.eye(spec.N), init_step=0.05, on_unbounded="flag")
    return np.asarray(ew.width, dtype=np.float64)


def simulate_from_network(
    spec,
    *,
    alpha: float,
    steps_per_epoch: int,
    window_steps: int,
    replicas: int = 32,
    seed: int = 0,
    variants=VARIANTS,
    max_steps: int = 20000,
) -> tuple[dict, dict]:
    """Run every variant (module docstring); returns ``(summary, arrays)``; a diverging
    variant is recorded with its reason, the others still run."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown simulator variants {unknown}; choose from {VARIANTS}")
    K = max(int(steps_per_epoch), 1)
    T = int(window_steps)
    if T < 4:
        raise ValueError(f"window_steps must be >= 4, got {T}")
    F_sim = simulated_flatness(spec, K, seed=seed + 11)
    out: dict = {"F_sim": F_sim.tolist(), "variants": {}}
    arrays: dict = {"sim_F": F_sim}
    tau = mlf.relaxation_time(alpha, spec.L0, spec.M0)
    D = mlf.diffusion_constant(
        alpha, spec.L0_sq_mean, spec.M0, spec.s, spec.sigma_theta, spec.theta1_0, spec.sigma_M,
        spec.L0, paper=False,
    )  # fmt: skip
    M_eq10 = mlf.averaged_curvature(**spec.theory_kwargs())
    F_eq10 = mlf.flatness_from_curvature(M_eq10)
    tau_M = mlf.relaxation_time(alpha, spec.L0, M_eq10)
    wv = mlf.window_variances(D, np.maximum(tau_M, 1.0), T, start="origin")
    out["theory"] = {
        "psi_diffusive_limit": _psi(wv["diffusive"], F_eq10),
        "psi_exact_window": _psi(wv["exact"], F_eq10),
        "psi_stationary_limit": _psi(wv["stationary"], F_eq10),
        "tau_range_steps": [float(tau.min()), float(tau.max())],
        "window_steps": T,
        "window_over_tau_median": float(np.median(T / tau)),
    }
    arrays.update(theory_F_eq10=F_eq10, theory_var_diffusive=wv["diffusive"],
                  theory_var_exact=wv["exact"])  # fmt: skip
    diag = replace(spec, sigma_off=0.0)
    for v in variants:
        sp = diag if v == "diagonal" else spec
        land = None if v == "fresh" else MLFLandscape(sp, K, seed=seed + 11)
        burn, n_steps, every = 0, T, 1
        if v == "relaxed":
            burn = int(min(5 * tau.max(), max_steps // 3))
            n_steps = int(min(max(T, 10 * tau.max()), max_steps))
            every = max(1, (burn + n_steps) // 4000)
        try:
            res = simulate(
                sp, dynamics="sgd", alpha=alpha, n_steps=burn + n_steps, n_replicas=replicas,
                landscape=land, seed=seed + 1, record_every=every,
                replacement=(v == "replacement"),
            )  # fmt: skip
        except SimulationDiverged as e:
            out["variants"][v] = {"psi": None, "error": str(e).splitlines()[0]}
            continue
        th = res.theta[burn // every :]
        var = th.var(axis=0).mean(axis=0)
        F_use = F_sim if v != "diagonal" else simulated_flatness(sp, K, seed=seed + 11)
        rec = _psi(var, F_use)
        rec.update(window_steps=int(n_steps), burn_in=int(burn), record_every=int(every))
        out["variants"][v] = rec
        arrays[f"sim_var_{v}"] = var
    return out, arrays
