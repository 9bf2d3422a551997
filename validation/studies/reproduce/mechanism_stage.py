"""Mechanism stage of ``sgdyn reproduce``: the MLF ensemble (Fig 3), the chain from noise to
variance (Eq 14) and the active temperature (Eq 17, Fig 5) on the captured network.

At w0 = the last snapshot of the window, along the window's PCA directions p_i:

1. **Fig 3 (Sec IV).** The minibatch profiles L^mu_i(dtheta) for ``mechanism_epochs`` random
   epoch partitions (B = the run's batch size), exact from per-sample losses, each fitted to
   the one-direction Eq 9 -> M^mu_ii, theta~^mu_i, L^mu_0
   (:func:`sgdyn.validation.studies.mechanism.measure_ensemble`); sigma~_theta,i, M^(0)_ii and
   (M^(0)_ii)^2 sigma~^2_theta,i against F_i with their exponents (paper: +1, -2, -2), each
   beside its shuffled-F null.
2. **Eq 14 on the network.** D_i = alpha^2 Var_mu(dL^mu/dtheta_i) for every i from one pass
   (exact over random minibatches of B), its exponent psi_D (D_i ~ F_i^-psi_D) against psi
   (sigma_i^2 ~ F_i^-psi), and r_i = sigma_i^2 / (D_i T_window): a pure random walk with
   these increments gives r = (T+1)/(6T) ~ 1/6 for every mode (the null), Eq 14 assumes
   sigma_i^2 ~ D_i, i.e. r flat in F; the slope of ln r against ln F is the part of psi the
   noise does not explain (psi = psi_D - slope_r, exactly, on the same modes).
3. **Eq 17, Fig 5.** T_i(0) for every i (the same pass: T_i(0) = D_i / (2 alpha)) and its
   exponent against F_i; the profile T_i(dtheta) with L_i(dtheta) (5A); T_i(dtheta, t) at
   checkpoints across training (5C) and T(t) = <T_i(0, t)>_i with L(t) from the first epoch
   through the window (5D) and their correlation, beside the correlation of their changes
   (two series that both fall correlate trivially) and its permutation null.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np

from sgdyn.theory.ensemble import power_law_with_null
from sgdyn.validation.probes.network_landscape import NetworkLandscape
from sgdyn.validation.studies.mechanism import (
    epoch_batches,
    measure_diffusion,
    measure_ensemble,
    measure_temperature,
)

from .landscape_stage import StageResult

log = logging.getLogger(__name__)

PAPER = {
    "sigma_theta_vs_F": "+1 (sigma~_theta,i ~ F_i, Fig 3B)",
    "M0_vs_F": "-2 (M0_ii ~ F_i^-2, Fig 3B)",
    "product_vs_F": "-2 ((M0_ii)^2 sigma~^2 ~ F_i^-2, Fig 3B; Eq 14 then gives psi = 2)",
    "psi": "~4 measured; Eq 14 predicts 2",
    "T0_vs_F": "negative (T_i lower in flatter directions, Fig 5B inset)",
    "corr_T_L": "high (T falls in sync with L, Fig 5D inset)",
}


MAX_CHECKPOINTS = 80  # checkpoints evaluated for Fig 5D (evenly spaced when there are more)


class NoCheckpointsError(ValueError):
    """Fig 5C/5D need model states from across training; the capture kept none."""


def _pl(x, y, seed, label):
    """Power-law exponent with its shuffled null over the positive, finite points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 3:
        return {"exponent": float("nan"), "err": float("nan"), "n_points": int(ok.sum()),
                "error": f"fewer than 3 positive points for {label}"}  # fmt: skip
    r = power_law_with_null(x[ok], y[ok], n_shuffle=200, seed=seed, n_boot=200)
    r["n_excluded_nonpositive"] = int((~ok).sum())
    return r


def _landscape_at(ctx, state: dict) -> NetworkLandscape:
    model = copy.deepcopy(ctx.model)
    model.load_state_dict(state)
    cfg = ctx.config
    return NetworkLandscape(model, ctx.probe, ctx.data, batch_size=cfg.batch_size, seed=cfg.seed)


def temperature_history(ctx, checkpoints, steps, P, lr, *, profile_mode, amplitudes, n_profiles):
    """T_i(0, t) for the directions P at every checkpoint (one pass each), L(t), and the
    profiles T_i(dtheta, t) along ``profile_mode`` at ``n_profiles`` checkpoints (Fig 5C/D)."""
    if not checkpoints:
        raise NoCheckpointsError(
            "this capture kept no checkpoints across training (a capture.pt from before "
            "checkpointing?): Fig 5C/5D need them; rerun with --force to recapture"
        )
    T0, L = [], []
    pick = sorted(set(np.linspace(0, len(checkpoints) - 1, n_profiles).round().astype(int)))
    prof = {}
    for c, state in enumerate(checkpoints):
        land = _landscape_at(ctx, state)
        w = land.current()
        T0.append(measure_diffusion(land, w, P.to(land.dtype), lr).T0)
        L.append(float(land.full_loss(w)))
        if c in pick:
            tm = measure_temperature(land, w, P[profile_mode : profile_mode + 1].to(land.dtype),
                                     amplitudes, lr)  # fmt: skip
            prof[c] = (tm.T[0], tm.loss[0])
    return np.asarray(T0), np.asarray(L), pick, prof


def _corr(x, y, seed):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3:
        return {"r": float("nan"), "n": int(x.size)}
    r = float(np.corrcoef(x, y)[0, 1])
    dx, dy = np.diff(np.log(x)), np.diff(np.log(y))
    nan = float("nan")
    rd = float(np.corrcoef(dx, dy)[0, 1]) if dx.size >= 3 else nan
    rng = np.random.default_rng(seed)
    n_null = 200 if dx.size >= 3 else 0  # too few changes for a correlation or a null
    null = np.array([np.corrcoef(dx[rng.permutation(dx.size)], dy)[0, 1] for _ in range(n_null)])
    null = null if null.size > 1 else np.array([nan, nan])
    return {
        "r": r,
        "r_log": float(np.corrcoef(np.log(x), np.log(y))[0, 1]),
        "r_changes": rd,
        "null_changes_shuffled_mean": float(np.mean(null)),
        "null_changes_shuffled_sd": float(np.std(null, ddof=1)),
        "n": int(x.size),
        "method": "Pearson r of T(t) and L(t) over the checkpoints; r_changes: of the "
        "per-interval changes of ln T and ln L (beside its permutation null)",
    }


def run_mechanism_stage(
    ctx,
    *,
    F=None,
    psi=None,
    window_steps=None,
    phases=None,
    checkpoints=(),
    checkpoint_steps=(),
) -> StageResult:
    """Figs 3A-B, 5A-D and the Eq 14 numbers for a captured window (module doc).

    ``F``: e-width flatness of the PCA directions (the landscape stage's; measured here when
    None); ``psi``: the landscape stage's exponent (recomputed from F when None)."""
    t_start = time.perf_counter()
    cfg = ctx.config
    quick = bool(getattr(cfg, "quick", False))
    out_dir = Path(ctx.out_dir)
    lr, B, seed = float(cfg.lr), int(cfg.batch_size), int(cfg.seed)
    land = NetworkLandscape(ctx.model, ctx.probe, ctx.data, batch_size=B, seed=seed)
    w0 = ctx.trajectory[-1].to(land.device, land.dtype)
    comps = ctx.pca.components_
    K = min(int(getattr(cfg, "landscape_modes", 30 if quick else 200)), comps.shape[0])
    P = comps[:K].to(land.dtype)
    var = ctx.pca.explained_variance_[:K].double().cpu().numpy()
    timings = {}
    if F is None:
        F = np.asarray(land.flatness(w0, P, init_step=0.05, tol=1e-3, on_unbounded="flag").width)
    F = np.asarray(F, float)[:K]
    modes = np.arange(1, K + 1)
    diff = (modes >= 2) & np.isfinite(F) & (F > 0)
    Fs = np.where(np.isfinite(F), F, np.nanmax(F))

    # -- 1. the MLF ensemble (Fig 3) ------------------------------------------------------
    t = time.perf_counter()
    n_ep = int(getattr(cfg, "mechanism_epochs", 2))
    batches = epoch_batches(land.n_samples, B, n_epochs=n_ep, seed=seed + 1)
    u = np.linspace(-0.5, 0.5, 9)
    amps = u[None] * Fs[:, None]
    ens = measure_ensemble(land, w0, P, batches, amps, F=F)
    timings["ensemble_s"] = time.perf_counter() - t
    sig = np.sqrt(ens.sigma_theta2)
    ensemble = {
        "n_minibatches": ens.n_minibatches,
        "n_epochs": n_ep,
        "batch_size": B,
        "n_modes": K,
        "amplitudes": "9 points in |dtheta| <= F_i / 2 per direction",
        "fit_rms_median": float(np.median(ens.rms)),
        "sigma_theta_vs_F_exponent": _pl(F[diff], sig[diff], seed, "sigma_theta"),
        "M0_vs_F_exponent": _pl(F[diff], ens.M0[diff], seed, "M0"),
        "product_vs_F_exponent": _pl(F[diff], ens.product[diff], seed, "product"),
        "M0_F2_over_8_median": float(np.median(ens.M0[diff] * F[diff] ** 2 / 8)),
        "fraction_negative_M": float(np.mean(ens.M[:, diff] <= 0)),
        "theta_mean_over_sigma_median": float(np.median(np.abs(ens.theta_mean[diff]) / sig[diff])),
        "paper": {k: PAPER[k] for k in ("sigma_theta_vs_F", "M0_vs_F", "product_vs_F")},
    }

    # -- 2. diffusion, Eq 14 ----------------------------------------------------------------
    t = time.perf_counter()
    dm = measure_diffusion(land, w0, P, lr, batch_size=B)
    timings["diffusion_one_pass_s"] = time.perf_counter() - t
    D, T0 = np.asarray(dm.D), np.asarray(dm.T0)
    Tw = int(window_steps or ctx.trajectory.shape[0])
    ratio = var / (D * Tw)
    null_rw = (Tw + 1) / (6 * Tw)
    psiD = _pl(F[diff], D[diff], seed, "D")
    psi_fit = _pl(F[diff], var[diff], seed, "variance")
    rfit = _pl(F[diff], ratio[diff], seed, "ratio")
    psi_v = float(psi) if psi is not None else -psi_fit["exponent"]
    mech = {
        "psi_D": -psiD["exponent"],
        "psi_D_err": psiD["err"],
        "psi_D_fit": psiD,
        "psi": psi_v,
        "psi_same_modes": -psi_fit["exponent"],
        "psi_D_over_psi": -psiD["exponent"] / psi_v if psi_v else float("nan"),
        "eq14_psi": 2.0,
        "window_steps": Tw,
        "var_over_D_window": {
            "median": float(np.median(ratio[diff])),
            "p05": float(np.percentile(ratio[diff], 5)),
            "p95": float(np.percentile(ratio[diff], 95)),
            "mode2": float(ratio[1]) if K > 1 else float("nan"),
            "pc1": float(ratio[0]),
            "slope_vs_F": rfit.get("exponent", float("nan")),
            "slope_vs_F_err": rfit.get("err", float("nan")),
            "null_random_walk": null_rw,
            "fraction_below_random_walk": float(np.mean(ratio[diff] < null_rw)),
            "meaning": "sigma_i^2 / (D_i T): a free random walk with these increments gives "
            "(T+1)/(6T) for every mode; below it the motion is confined (restoring force), "
            "and psi - psi_D = -slope_vs_F is the part of psi the noise does not explain",
        },
        "paper": PAPER["psi"],
    }

    # -- 3. active temperature (Eq 17, Fig 5) -----------------------------------------------
    T0fit = _pl(F[diff], T0[diff], seed, "T0")
    i_prof = min(10, K) - 1  # the paper's Fig 5C direction i = 10
    ta = np.linspace(-1.0, 1.0, 7 if quick else 11) * Fs[i_prof]
    t = time.perf_counter()
    tprof = measure_temperature(land, w0, P[i_prof : i_prof + 1], ta, lr, batch_size=B)
    timings["temperature_profile_s"] = time.perf_counter() - t
    temp = {
        "T0_vs_F_exponent": T0fit,
        "T0_median": float(np.median(T0[diff])),
        "profile_mode": i_prof + 1,
        "profile_corr_T_L": float(np.corrcoef(tprof.T[0], tprof.loss[0])[0, 1]),
        "paper": {k: PAPER[k] for k in ("T0_vs_F", "corr_T_L")},
    }
    arrays = {
        "ensemble_M": ens.M,
        "ensemble_theta": ens.theta,
        "ensemble_L0": ens.L0,
        "ensemble_rms": ens.rms,
        "ensemble_F": F,
        "ensemble_M0": ens.M0,
        "ensemble_sigma_theta2": ens.sigma_theta2,
        "ensemble_amplitudes": ens.amplitudes,
        "ensemble_full_profiles": ens.full_profiles,
        "ensemble_batches": batches.astype(np.int32),
        "mech_D": D,
        "mech_T0": T0,
        "mech_var_over_D_window": ratio,
        "temp_profile_amplitudes": tprof.amplitudes[0],
        "temp_profile_T": tprof.T[0],
        "temp_profile_L": tprof.loss[0],
    }
    i3 = min(30, K) - 1  # the paper's Fig 3 direction i = 30
    arrays["ensemble_profiles_mode"] = ens.profiles[:, i3]
    figures = [
        _fig3a(out_dir, ens, i3),
        _fig3b(out_dir, F, sig, ens, diff, ensemble),
        _fig5a(out_dir, tprof, i_prof),
        _fig5b(out_dir, modes, T0, F, diff, T0fit),
    ]
    # Fig 5C/5D: checkpoints across training
    t = time.perf_counter()
    try:
        steps = np.asarray(checkpoint_steps)
        spe = int(getattr(ctx, "steps_per_epoch", 1) or 1)
        use = [c for c, s in enumerate(steps) if s >= spe]  # from the first epoch on
        if len(use) > MAX_CHECKPOINTS:  # bound the cost: evenly spaced, the last one kept
            pick_c = np.linspace(0, len(use) - 1, MAX_CHECKPOINTS).round().astype(int)
            use = [use[i] for i in sorted(set(pick_c))]
        Kt = min(K, 50)
        T0t, Lt, pick, profs = temperature_history(
            ctx, [checkpoints[c] for c in use], steps[use], P[:Kt].cpu(), lr,
            profile_mode=i_prof, amplitudes=ta, n_profiles=5,
        )  # fmt: skip
        Tt = T0t.mean(1)
        ep = steps[use] / spe
        temp["corr_T_L"] = _corr(Tt, Lt, seed)
        tr = (phases or {}).get("transition_epoch")
        if tr is not None:  # the exploration phase only (from the detected transition on)
            late = ep >= tr
            temp["corr_T_L"]["exploration"] = _corr(Tt[late], Lt[late], seed)
            temp["corr_T_L"]["exploration"]["from_epoch"] = float(tr)
        temp["n_checkpoints"] = len(use)
        temp["T_t_modes"] = Kt
        arrays.update(temp_t_epochs=ep, temp_T_t=Tt, temp_T_t_modes=T0t, temp_L_t=Lt)
        arrays["temp_profiles_t"] = np.array([profs[c][0] for c in sorted(profs)])
        arrays["temp_profiles_t_epochs"] = ep[sorted(profs)]
        figures.append(_fig5c(out_dir, ta, profs, ep, i_prof))
        figures.append(_fig5d(out_dir, ep, Tt, Lt, phases, temp["corr_T_L"]))
    except NoCheckpointsError as e:
        log.warning("%s", e)
        temp["corr_T_L"] = {"r": float("nan"), "error": str(e)}
    timings["history_s"] = time.perf_counter() - t
    total = time.perf_counter() - t_start
    timings["total_s"] = total
    summary = {
        "ensemble": ensemble,
        "mechanism": {**mech, "timings": timings},
        "temperature": temp,
    }
    md = _markdown(ensemble, mech, temp, total, land.mode)
    return StageResult(summary=summary, arrays=arrays, figures=figures, markdown=md)


def _fmt_exp(r):
    e, s = r.get("exponent", float("nan")), r.get("err", float("nan"))
    nm, ns = r.get("null_shuffled_mean", float("nan")), r.get("null_shuffled_sd", float("nan"))
    return f"{e:.2f} +- {s:.2f}", f"{nm:.2f} +- {ns:.2f}"


def _markdown(ens, mech, temp, total, mode) -> str:
    rows = []
    for key, label in (
        ("sigma_theta_vs_F_exponent", "sigma~_theta,i vs F_i (Fig 3B)"),
        ("M0_vs_F_exponent", "M0_ii vs F_i (Fig 3B)"),
        ("product_vs_F_exponent", "(M0_ii)^2 sigma~^2_theta,i vs F_i (Fig 3B)"),
    ):
        m, n = _fmt_exp(ens[key])
        rows.append((label, m, n, PAPER[key.replace("_exponent", "")]))
    pd = mech["psi_D_fit"]
    m, n = _fmt_exp(pd)
    rows.append(("D_i vs F_i: exponent (= -psi_D)", m, n, "-2 (Eq 14)"))
    rows.append(("psi_D / psi", f"{mech['psi_D']:.2f} / {mech['psi']:.2f}", "", "2 / ~4"))
    r = mech["var_over_D_window"]
    rows.append((
        "sigma_i^2 / (D_i T_window), i >= 2: median (5-95%)",
        f"{r['median']:.3g} ({r['p05']:.3g}-{r['p95']:.3g})",
        f"{r['null_random_walk']:.3g} (free random walk)",
        "const. (Eq 14)",
    ))  # fmt: skip
    rows.append((
        "slope of ln[sigma_i^2/(D_i T)] vs ln F_i (= psi_D - psi)",
        f"{r['slope_vs_F']:.2f} +- {r['slope_vs_F_err']:.2f}", "0 (random walk)", "0",
    ))  # fmt: skip
    m, n = _fmt_exp(temp["T0_vs_F_exponent"])
    rows.append(("T_i(0) vs F_i (Fig 5B)", m, n, PAPER["T0_vs_F"]))
    c = temp.get("corr_T_L", {})
    ex = c.get("exploration")
    if ex:
        rows.append((
            f"corr(T, L) in the exploration phase (epoch >= {ex.get('from_epoch', 0):.0f}); "
            "of their changes",
            f"{ex.get('r', float('nan')):.3f}; {ex.get('r_changes', float('nan')):.3f}",
            f"changes shuffled: {ex.get('null_changes_shuffled_mean', float('nan')):.2f} +- "
            f"{ex.get('null_changes_shuffled_sd', float('nan')):.2f}",
            PAPER["corr_T_L"],
        ))  # fmt: skip
    rows.append((
        "corr(T(t), L(t)) over checkpoints (Fig 5D); of their changes",
        f"{c.get('r', float('nan')):.3f}; {c.get('r_changes', float('nan')):.3f}",
        f"changes shuffled: {c.get('null_changes_shuffled_mean', float('nan')):.2f} +- "
        f"{c.get('null_changes_shuffled_sd', float('nan')):.2f}",
        PAPER["corr_T_L"],
    ))  # fmt: skip
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    return (
        "## The mechanism: MLF ensemble, noise and active temperature (Figs 3, 5; Eqs 9-14, 17)"
        "\n\n"
        f"{ens['n_minibatches']} minibatches ({ens['n_epochs']} epoch partitions, "
        f"B={ens['batch_size']}) along {ens['n_modes']} PCA directions, exact from per-sample "
        f"losses and gradient projections (evaluator: {mode}); exponents over modes i >= 2, "
        "each beside the same fit with F_i shuffled among the modes.\n\n"
        "| quantity | measured | null | paper |\n|---|---|---|---|\n"
        f"{table}\n\n"
        f"Eq 9 one-direction fits: median rms residual of ln L^mu {ens['fit_rms_median']:.3g}; "
        f"M0_ii F_i^2 / 8 median {ens['M0_F2_over_8_median']:.3g} (1 if the mean MLF "
        f"curvature were the averaged loss's). Stage time {total:.1f} s.\n"
    )


# -- figures -------------------------------------------------------------------------------
def _save(fig, out_dir: Path, name: str) -> str:
    from sgdyn.validation.io.rundir import save_figure

    save_figure(fig, out_dir / name)
    return name


def _fig3a(out_dir, ens, k):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 3.6))
    ax = fig.subplots()
    a = ens.amplitudes[k]
    show = min(12, ens.n_minibatches)
    for mu in range(show):
        ax.plot(a, np.log(ens.profiles[mu, k]), "b--", lw=0.7, alpha=0.7,
                label=r"$\ln L^\mu_i$" if mu == 0 else None)  # fmt: skip
    ax.plot(a, np.log(ens.full_profiles[k]), "r-", lw=2, label=r"$\ln L_i$")
    ax.set(xlabel=r"$\delta\theta$", ylabel="ln loss", title=f"A  MLF profiles, i = {k + 1}")
    ax.legend()
    return _save(fig, out_dir, "fig3a_mlf_profiles.png"), (
        f"Fig 3A: ln L_i (red) and {show} minibatch profiles ln L^mu_i along PCA direction "
        f"i = {k + 1}"
    )


def _fig3b(out_dir, F, sig, ens, diff, summ):
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(11, 3.6))
    ax = fig.subplots(1, 3)
    for a_, y, key, lab in (
        (ax[0], sig**2, "sigma_theta_vs_F_exponent", r"$\tilde\sigma^2_{\theta,i}$"),
        (ax[1], ens.M0, "M0_vs_F_exponent", r"$M^{(0)}_{ii}$"),
        (ax[2], ens.product, "product_vs_F_exponent", r"$(M^{(0)}_{ii})^2\tilde\sigma^2_i$"),
    ):
        ok = diff & (y > 0)
        a_.loglog(F[ok], y[ok], "o", ms=3)
        e = summ[key].get("exponent", float("nan"))
        if np.isfinite(e) and ok.sum() >= 3:
            if key.startswith("sigma"):
                e2 = 2 * e  # the fit is of sigma~ (not squared)
            else:
                e2 = e
            xf = np.geomspace(F[ok].min(), F[ok].max(), 10)
            c = np.exp(np.mean(np.log(y[ok]) - e2 * np.log(F[ok])))
            a_.loglog(xf, c * xf**e2, "r-", label=f"slope {e2:.2f}")
            a_.legend()
        a_.set(xlabel=r"flatness $F_i$", ylabel=lab)
        a_.xaxis.set_minor_formatter(NullFormatter())
    ax[0].set_title("B  minimum spread")
    ax[1].set_title("mean MLF curvature")
    ax[2].set_title("product (Eq 14)")
    return _save(fig, out_dir, "fig3b_ensemble_vs_F.png"), (
        "Fig 3B: variance of the MLF minima, mean MLF curvature and their Eq 14 product "
        "versus the flatness F_i (i >= 2)"
    )


def _fig5a(out_dir, tprof, k):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 3.6))
    ax = fig.subplots()
    a = tprof.amplitudes[0]
    ax.plot(a, tprof.T[0], "b-o", ms=3, label=r"$T_i(\delta\theta)$")
    ax.set(xlabel=r"$\delta\theta$", ylabel="active temperature",
           title=f"A  T and L profiles, i = {k + 1}")  # fmt: skip
    ax2 = ax.twinx()
    ax2.plot(a, tprof.loss[0], "r-", label=r"$L_i(\delta\theta)$")
    ax2.set_ylabel("loss", color="r")
    ax.legend(loc="upper center")
    return _save(fig, out_dir, "fig5a_temperature_profile.png"), (
        f"Fig 5A: active temperature T_i(dtheta) (Eq 17) and loss L_i(dtheta) along i = {k + 1} "
        "at the end of the window"
    )


def _fig5b(out_dir, modes, T0, F, diff, fit):
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots(1, 2)
    ax[0].semilogy(modes, T0, "o", ms=3)
    ax[0].set(xlabel="PCA direction i", ylabel=r"$T_i(0)$", title="B  T_i(0) per direction")
    ok = diff & (T0 > 0)
    ax[1].loglog(F[ok], T0[ok], "o", ms=3)
    e = fit.get("exponent", float("nan"))
    if np.isfinite(e):
        xf = np.geomspace(F[ok].min(), F[ok].max(), 10)
        c = np.exp(np.mean(np.log(T0[ok]) - e * np.log(F[ok])))
        ax[1].loglog(xf, c * xf**e, "r-", label=f"slope {e:.2f}")
        ax[1].legend()
    ax[1].set(xlabel=r"$F_i$", ylabel=r"$T_i(0)$", title="T_i(0) vs flatness")
    ax[1].xaxis.set_minor_formatter(NullFormatter())
    return _save(fig, out_dir, "fig5b_temperature_vs_F.png"), (
        "Fig 5B: minimum active temperature T_i(0) per PCA direction and versus F_i"
    )


def _fig5c(out_dir, a, profs, ep, k):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 3.6))
    ax = fig.subplots()
    for c in sorted(profs):
        ax.semilogy(a, profs[c][0], "-o", ms=2, label=f"epoch {ep[c]:.0f}")
    ax.set(xlabel=r"$\delta\theta$", ylabel=r"$T_i(\delta\theta, t)$",
           title=f"C  T profiles over time, i = {k + 1}")  # fmt: skip
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "fig5c_temperature_in_time.png"), (
        f"Fig 5C: T_i(dtheta, t) along i = {k + 1} around the weights at several times"
    )


def _fig5d(out_dir, ep, Tt, Lt, phases, corr):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.4, 3.8))
    ax = fig.subplots()
    ax.semilogy(ep, Tt, "b-", label="T(t)")
    ax.set(xlabel="epoch", ylabel=r"$T(t)=\langle T_i(0,t)\rangle_i$", title="D  T and L in time")
    ax2 = ax.twinx()
    ax2.semilogy(ep, Lt, "r-", label="L(t)")
    ax2.set_ylabel("loss L", color="r")
    reg = (phases or {}).get("transition_region")
    if reg:
        ax.axvspan(reg[0], reg[1], color="0.85", zorder=0)
    ins = ax.inset_axes([0.55, 0.55, 0.4, 0.4])
    ins.loglog(Lt, Tt, ".", ms=3)
    ins.text(0.05, 0.85, f"r = {corr.get('r', float('nan')):.2f}", fontsize=7,
             transform=ins.transAxes)  # fmt: skip
    ins.tick_params(labelsize=6)
    return _save(fig, out_dir, "fig5d_temperature_and_loss.png"), (
        "Fig 5D: T(t) (mean over the first directions of T_i(0, t)) and L(t) from the first "
        "epoch through the window; shaded: the fast-learning -> exploration transition; inset "
        "T against L"
    )
