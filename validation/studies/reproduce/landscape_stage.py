"""Landscape stage of ``sgdyn reproduce``: Fig 2 A-D, Fig S2 and the equilibrium contrast.

Given a captured window (model at the window's end, training set, probe, PCA), this stage

1. builds the probe's :class:`~sgdyn.validation.probes.NetworkLandscape`;
2. takes **w0 = the last snapshot of the window** (the model as it stands at the end: an
   actual SGD solution, and the point where the cached tail's other layers belong);
3. measures the loss profiles L_i (Eq 6) along PCA directions i = 1..n_modes, the flatness
   F_i by the e-width (root finding, relative tolerance ``tol``) and by the quadratic fit of
   ln L_i (Eq 7) over one amplitude window |da| <= A shared by every direction (A = a
   quarter of the smallest diffusive e-width, so each fit stays inside every e*L0 region
   while no direction's window knows its own e-width), and their agreement;
4. fits sigma_i^2 ~ F_i^-psi (Eq 8) over the diffusive modes i >= 2;
5. runs the PC1 analysis (Eqs S3-S5) with p1 oriented along the window's drift;
6. runs Langevin dynamics at the SGD-matched temperature on the same full loss
   (:mod:`.langevin`) and analyses it with the very same code (Eq 16 contrast);
7. measures the curvature beside the flatness (:mod:`sgdyn.validation.probes.curvature`):
   p_i.H.p_i along every probed PCA direction by Hessian-vector products, the top Hessian
   eigenpairs by Lanczos, F_i against the curvature prediction F_i^2 = 8 / (pHp / L0 -
   (g.p / L0)^2) (Eq 7 read at a = 0), and how well the p_i align with Hessian eigenvectors,
   each beside its random-direction null (summary keys ``curvature.*``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sgdyn.theory.flatness import flatness_quadratic_fit, variance_flatness_exponent
from sgdyn.validation.probes.curvature import curvature_analysis
from sgdyn.validation.probes.langevin import langevin_capture
from sgdyn.validation.probes.network_landscape import NetworkLandscape
from sgdyn.validation.probes.pc1 import orient_along_drift, pc1_analysis

log = logging.getLogger(__name__)

PAPER_PSI = 4.0


@dataclass
class StageResult:
    """What the stage hands back to the report: JSON-able numbers, arrays, figures, text."""

    summary: dict
    arrays: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)  # (png filename in out_dir, caption)
    markdown: str = ""


def analyse_flatness(
    land: NetworkLandscape,
    w0: torch.Tensor,
    components: torch.Tensor,
    variances,
    *,
    tol: float = 1e-3,
    n_grid: int = 21,
    first_diffusive: int = 2,
    quad_window: float | None = None,
) -> tuple[dict, dict]:
    """Flatness (both definitions) along ``components`` (K, N) and the psi fit (Eq 8).

    Returns ``(summary, arrays)``. Mode numbers are 1-based (mode 1 = PC1); the psi fit uses
    modes >= ``first_diffusive``. The Eq 7 quadratic fit uses ``n_grid`` amplitudes in
    |da| <= ``quad_window``, the same window for every direction (default: a quarter of the
    smallest e-width among the diffusive modes), so its agreement with the e-width is not
    built in (a window scaled by each direction's own e-width reaches the e-crossing itself).
    """
    t0 = time.perf_counter()
    P = torch.as_tensor(components).to(land.dtype)
    var = np.asarray(torch.as_tensor(variances).double().cpu().numpy())[: P.shape[0]]
    L0 = float(land.full_loss(w0))
    ew = land.flatness(w0, P, L0=L0, init_step=0.05, tol=tol, on_unbounded="flag")
    t1 = time.perf_counter()
    F = ew.width
    Fsafe = np.where(np.isfinite(F), F, np.nanmax(F) if np.isfinite(F).any() else 1.0)
    u = np.linspace(-0.75, 0.75, n_grid)  # in units of each direction's e-width (plots only)
    amps = torch.as_tensor(u[None] * Fsafe[:, None])
    prof = land.losses_along(w0, P, amps).numpy()
    t2 = time.perf_counter()
    modes = np.arange(1, P.shape[0] + 1)
    diff = modes >= first_diffusive
    if quad_window is None:  # one window for all: inside the stiffest diffusive e-region
        Fd = F[diff & np.isfinite(F)] if (diff & np.isfinite(F)).any() else Fsafe
        quad_window = 0.25 * float(np.min(Fd))
    if not quad_window > 0:
        raise ValueError(f"quad_window must be positive, got {quad_window}")
    qa = np.linspace(-quad_window, quad_window, n_grid)
    qprof = land.losses_along(w0, P, torch.as_tensor(np.tile(qa, (P.shape[0], 1)))).numpy()
    q = flatness_quadratic_fit(qa, qprof, L0)
    Fq, r2, slope = q.F, q.r2, q.slope
    ratio = Fq / F
    fit = variance_flatness_exponent(var, F, mask=diff)
    mq = diff & np.isfinite(Fq)  # a concave Eq 7 fit (NaN) is left out, not refused
    fit_q = variance_flatness_exponent(var[mq], Fq[mq])
    ok = diff & np.isfinite(ratio)
    summary = {
        "w0": "last snapshot of the window (the model at the window's end)",
        "L0": L0,
        "n_modes": int(P.shape[0]),
        "first_fitted_mode": int(first_diffusive),
        "n_fit_modes": int(fit.n_points),
        "psi": fit.psi,
        "psi_err": fit.psi_err,
        "psi_err_boot": fit.psi_err_boot,
        "psi_r2": fit.r2,
        "psi_quadratic": fit_q.psi,
        "psi_quadratic_err": fit_q.psi_err,
        "F": F.tolist(),
        "variance": var.tolist(),
        "F_quadratic": Fq.tolist(),
        "agreement": {
            "median_ratio_quadratic_over_ewidth": float(np.median(ratio[ok])),
            "p05_ratio": float(np.percentile(ratio[ok], 5)),
            "p95_ratio": float(np.percentile(ratio[ok], 95)),
            "pc1_ratio": float(ratio[0]),
            "median_fit_r2": float(np.median(r2[ok])),
            "quad_window": float(quad_window),
            "method": "Eq 7 least squares of ln L - ln L0 = s da + c da^2 over |da| <= "
            "quad_window, the same window for every direction",
        },
        "ewidth_tol": tol,
        "n_unbounded": int((~ew.converged).sum()),
        "n_profile_calls": ew.n_evals,
        "timings": {"ewidth_s": t1 - t0, "profiles_s": t2 - t1},
    }
    arrays = {
        "flat_modes": modes,
        "flat_F_ewidth": F,
        "flat_F_quadratic": Fq,
        "flat_variance": var,
        "flat_left": ew.left,
        "flat_right": ew.right,
        "flat_quad_r2": r2,
        "flat_quad_slope": slope,
        "profile_amplitudes": amps.numpy(),
        "profile_losses": prof,
        "quad_amplitudes": qa,
        "quad_losses": qprof,
    }
    return summary, arrays


def _plots(out_dir: Path, arrays: dict, summ: dict, pc1, eq_arr, eq_summ) -> list:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    from sgdyn.validation.io.rundir import save_figure

    figs = []
    modes = arrays["flat_modes"]
    amps, prof = arrays["profile_amplitudes"], arrays["profile_losses"]
    show = [i for i in (10, 20, 50, 100) if i <= len(modes)] or list(modes[1:5])
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots(1, 2)
    L0 = summ["L0"]
    for i in show:
        k = i - 1
        ax[0].plot(amps[k], prof[k], label=f"i={i}")
        ax[1].plot(amps[k], np.log(prof[k]), label=f"i={i}")
        F = arrays["flat_F_quadratic"][k]
        a = amps[k]
        ax[1].plot(a, np.log(L0) + 4 * a**2 / F**2, "r:", lw=1)
    ax[0].axhline(np.e * L0, color="k", ls="--", lw=0.8, label="e*L0")
    ax[1].axhline(np.log(L0) + 1, color="k", ls="--", lw=0.8)
    ax[0].set(xlabel="dtheta", ylabel="L_i", title="(A) loss profiles")
    ax[1].set(xlabel="dtheta", ylabel="ln L_i", title="(B) ln L_i and Eq 7 fits (red)")
    ax[0].legend()
    save_figure(fig, out_dir / "fig2ab_profiles.png")
    figs.append(
        (
            "fig2ab_profiles.png",
            "Fig 2A-B: loss profiles L_i along PCA directions and ln L_i with "
            "quadratic fits (Eq 7).",
        )
    )

    fig = Figure(figsize=(10, 4))
    ax = fig.subplots(1, 2)
    ax[0].plot(modes, arrays["flat_F_ewidth"], "o", ms=3, label="e-width")
    ax[0].plot(modes, arrays["flat_F_quadratic"], "x", ms=3, label="quadratic fit (Eq 7)")
    ax[0].set(xscale="log", yscale="log", xlabel="PCA rank i", ylabel="F_i", title="(C) flatness")
    ax[0].legend()
    d = modes >= 2
    F, v = arrays["flat_F_ewidth"], arrays["flat_variance"]
    ax[1].loglog(F[d], v[d], "o", ms=3, label=f"SGD: psi={summ['psi']:.2f}+-{summ['psi_err']:.2f}")
    xs = np.geomspace(np.nanmin(F[d]), np.nanmax(F[d]), 20)
    ax[1].loglog(
        xs, np.exp(np.mean(np.log(v[d]) + summ["psi"] * np.log(F[d]))) * xs ** -summ["psi"], "k--"
    )
    ax[1].set(xlabel="F_i", ylabel="sigma_i^2", title="(D) variance vs flatness (i>=2)")
    ax[1].xaxis.set_minor_formatter(NullFormatter())
    ax[1].legend()
    save_figure(fig, out_dir / "fig2cd_flatness.png")
    figs.append(
        (
            "fig2cd_flatness.png",
            "Fig 2C-D: flatness F_i vs rank (both definitions) and the inverse "
            "variance-flatness relation sigma_i^2 ~ F_i^-psi (Eq 8).",
        )
    )

    if pc1 is not None:
        fig = Figure(figsize=(10, 4))
        ax = fig.subplots(1, 2)
        for c, row in zip(pc1.class_labels, pc1.class_margins, strict=True):
            ax[0].plot(pc1.thetas, row, label=str(c))
        ax[0].set(
            xlabel="theta_1",
            ylabel="Delta Y_k",
            title="(S2A) margins along p1 (5-sample class means)",
        )
        ax[0].legend(fontsize=7, ncol=2)
        ax[1].plot(pc1.thetas, pc1.lnL1, "o", ms=3, label="i=1")
        t = pc1.thetas
        ax[1].plot(
            t,
            np.log(pc1.L0) - pc1.beta * t + pc1.beta2 * t**2,
            "r:",
            label=f"Eq S5, beta={pc1.beta:.3g}",
        )
        for i in show[:3]:
            k = i - 1
            m = np.abs(amps[k]) <= pc1.theta_range
            ax[1].plot(amps[k][m], np.log(prof[k][m]), label=f"i={i}")
        ax[1].set(
            xlabel="theta_i", ylabel="ln L_i", title="(S2B) ln L_i: finite slope only for i=1"
        )
        ax[1].legend(fontsize=7)
        save_figure(fig, out_dir / "figS2_pc1.png")
        figs.append(
            (
                "figS2_pc1.png",
                "Fig S2: margins Delta Y_k along p1 (Eq S3) and ln L_1 with its Eq S5 "
                "fit (finite slope drives the drift).",
            )
        )

    if eq_arr is not None:
        fig = Figure(figsize=(5.5, 4))
        ax = fig.subplots()
        ax.loglog(F[d], v[d], "o", ms=3, label=f"SGD psi={summ['psi']:.2f}")
        Fe, ve = eq_arr["flat_F_ewidth"], eq_arr["flat_variance"]
        de = eq_arr["flat_modes"] >= 2
        ax.loglog(Fe[de], ve[de], "s", ms=3, label=f"Langevin psi={eq_summ['psi']:.2f}")
        ax.set(xlabel="F_i", ylabel="sigma_i^2", title="SGD vs equilibrium (Eq 16)")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend()
        save_figure(fig, out_dir / "fig_equilibrium_contrast.png")
        figs.append(
            (
                "fig_equilibrium_contrast.png",
                "SGD (inverse relation, psi > 0) vs Langevin at the SGD-matched "
                "temperature (fluctuation-response, Eq 16: psi < 0).",
            )
        )
    return figs


def equilibrium_contrast(land, w0, comps, summ, cfg, quick: bool) -> tuple[dict, dict | None]:
    """Langevin at the SGD-matched temperature in the span of the diffusive modes (i >= 2).

    Step size: 0.3 / k_max with k_i = 8 L0 / F_i^2 (the curvature of Eq 7's form at 0), so
    the stiffest mode is stable; the run lasts ~10 relaxation times of the flattest mode
    (capped). Analysed twice with the same code: its own PCA + flatness (psi_own) and its
    variance along SGD's p_i against SGD's F_i (psi, the direct Eq 16 test). Equilibrium
    predicts sigma_i^2 = T F_i^2 / (8 L0), psi = -2.
    """
    F = np.asarray(summ["F"])[1:]
    sub = comps[1:]
    ok = np.isfinite(F)
    if ok.sum() < 3:
        return {"psi": float("nan"), "error": "fewer than 3 bounded diffusive modes"}, None
    sub, F = sub[torch.as_tensor(ok)], F[ok]
    L0 = summ["L0"]
    k = 8 * L0 / F**2
    lr = 0.3 / k.max()
    tau = 1 / (lr * k.min())
    cap_steps = int(getattr(cfg, "langevin_steps", 600 if quick else 6000))
    n_steps = int(min(cap_steps, max(200, 10 * tau)))
    try:
        cap = langevin_capture(
            land,
            w0,
            lr=lr,
            n_steps=n_steps,
            burn_in=n_steps // 4,
            sgd_lr=float(cfg.lr),
            subspace=sub,
            seed=cfg.seed,
        )
    except (RuntimeError, ValueError) as e:  # report it, do not sink the whole run
        log.warning("equilibrium contrast failed: %s", e)
        return {"psi": float("nan"), "error": str(e)}, None
    T = cap.temperature["temperature"]
    theta = (cap.trajectory.double() - cap.trajectory.double().mean(0)) @ sub.double().T
    var_same = theta.var(0).cpu().numpy()
    fit_same = variance_flatness_exponent(var_same, F)
    n_own = min(len(F), cap.pca.components_.shape[0])
    own, own_arr = analyse_flatness(
        land,
        cap.trajectory[-1].to(land.dtype),
        cap.pca.components_[:n_own],
        cap.pca.explained_variance_,
        first_diffusive=1,
    )
    pred = T * F**2 / (8 * L0)
    out = {
        "psi": fit_same.psi,
        "psi_err": fit_same.psi_err,
        "psi_err_boot": fit_same.psi_err_boot,
        "psi_own_pca": own["psi"],
        "psi_own_pca_err": own["psi_err"],
        "variance_over_boltzmann_median": float(np.median(var_same / pred)),
        "temperature": cap.temperature,
        "lr": lr,
        "n_steps": n_steps,
        "burn_in": cap.burn_in,
        "relaxation_steps_flattest": float(tau),
        "F": F.tolist(),
        "variance": var_same.tolist(),
        "paper_expectation": "sigma_i^2 = T F_i^2 / (8 L0) (Eq 16): psi = -2",
    }
    arrays = {"flat_modes": np.arange(2, len(F) + 2), "flat_F_ewidth": F, "flat_variance": var_same}
    arrays.update({f"own_{k}": v for k, v in own_arr.items() if not k.startswith("profile")})
    return out, arrays


def curvature_stage(land, w0, comps, summ, cfg, quick: bool) -> tuple[dict, dict | None]:
    """Curvature along the probed PCA directions and the top Hessian eigenpairs (module doc,
    step 7); an error is reported in the summary, not raised (the rest of the run stands)."""
    n_eig = 10 if quick else int(getattr(cfg, "curvature_eigs", 20))
    try:
        cur = curvature_analysis(
            land, w0, comps, L0=summ["L0"], n_eig=n_eig, n_null=32, seed=int(cfg.seed)
        )
    except (RuntimeError, ValueError) as e:  # e.g. Lanczos did not converge
        log.warning("curvature analysis failed: %s", e)
        return {"error": str(e)}, None
    out = cur.summary(F_ewidth=summ["F"], F_quadratic=summ["F_quadratic"])
    arrays = {
        "curv_pHp": cur.pHp,
        "curv_grad_proj": cur.grad_proj,
        "curv_F_hessian": cur.F_hessian,
        "curv_eig_cosine": cur.eig_cosine,
        "curv_null_eig_cosine": cur.null_eig_cosine,
        "curv_null_pHp": cur.null_pHp,
        "curv_eigenvalues": cur.eigenvalues,
        "curv_top_in_span": cur.top_in_span,
        "curv_best_match": cur.best_match,
        "curv_best_match_index": cur.best_match_index,
    }
    return out, arrays


def _curvature_plot(out_dir: Path, arrays: dict, cs: dict) -> tuple[str, str]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    modes = arrays["flat_modes"]
    Fe, Fh = arrays["flat_F_ewidth"], arrays["curv_F_hessian"]
    d = modes >= 2
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    ax[0].loglog(Fh[d], Fe[d], "o", ms=3, label="e-width")
    ax[0].loglog(Fh[d], arrays["flat_F_quadratic"][d], "x", ms=3, label="quadratic fit (Eq 7)")
    ok = d & np.isfinite(Fh)
    if ok.any():
        lim = [np.nanmin(Fh[ok]), np.nanmax(Fh[ok])]
        ax[0].loglog(lim, lim, "k--", lw=0.8, label="F = F_hessian")
    ax[0].set(
        xlabel="F_hessian = (8 / (pHp/L0 - (g.p/L0)^2))^1/2",
        ylabel="F_i",
        title="flatness vs curvature along p_i (i>=2)",
    )
    ax[0].legend(fontsize=8)
    ax[0].xaxis.set_minor_formatter(NullFormatter())
    ax[0].yaxis.set_minor_formatter(NullFormatter())
    ax[1].semilogx(modes, arrays["curv_eig_cosine"], "o", ms=3, label="PCA p_i")
    null = arrays["curv_null_eig_cosine"]
    ax[1].axhspan(
        np.percentile(null, 5), np.percentile(null, 95), color="0.85", label="random (5-95%)"
    )
    ax[1].axhline(1.0, color="k", lw=0.8, ls=":")
    ax[1].set(xlabel="PCA rank i", ylabel="cos(p_i, H p_i)", title="is p_i a Hessian eigenvector?")
    ax[1].legend(fontsize=8)
    ev = arrays["curv_eigenvalues"]
    ax[2].semilogy(np.arange(1, len(ev) + 1), ev, "s", ms=4, label="Hessian top eigenvalues")
    ax[2].semilogy(modes, np.clip(arrays["curv_pHp"], 1e-300, None), "o", ms=3, label="p_i.H.p_i")
    ax[2].set(xscale="log", xlabel="rank", ylabel="curvature", title="spectrum vs PCA directions")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "fig_curvature.png", dpi=110)
    plt.close(fig)
    al = cs["alignment"]
    return (
        "fig_curvature.png",
        "Curvature beside flatness: F_i against the Hessian prediction (Eq 7 at 0), the "
        "eigenvector cosine cos(p_i, H p_i) against random directions "
        f"(median {al['eig_cosine_median']:.2f} vs {al['null_eig_cosine_median']:.2f}), and "
        "the Lanczos top eigenvalues beside p_i.H.p_i.",
    )


def run_landscape_stage(ctx) -> StageResult:
    """Fig 2 A-D, Fig S2 and the equilibrium contrast for a captured window (module doc).

    ``ctx`` has ``model, data, probe, pca, trajectory, config (lr, batch_size, seed, quick),
    out_dir, device``. Quick mode (< ~20 s on CPU): 30 modes, 300 Langevin steps.
    """
    t_start = time.perf_counter()
    cfg = ctx.config
    quick = bool(getattr(cfg, "quick", False))
    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    land = NetworkLandscape(
        ctx.model, ctx.probe, ctx.data, batch_size=cfg.batch_size, seed=cfg.seed
    )
    traj = ctx.trajectory
    w0 = traj[-1].to(land.device, land.dtype)
    comps = ctx.pca.components_
    n_modes = min(int(getattr(cfg, "landscape_modes", 30 if quick else 200)), comps.shape[0])
    log.info("landscape: flatness along %d PCA directions (evaluator: %s)", n_modes, land.mode)
    summ, arrays = analyse_flatness(land, w0, comps[:n_modes], ctx.pca.explained_variance_)

    t_pc1 = time.perf_counter()
    p1 = orient_along_drift(comps[0].to(land.dtype), traj)
    pc1 = pc1_analysis(land, w0, p1, seed=cfg.seed)
    pc1_summary = pc1.summary()
    pc1_summary["time_s"] = time.perf_counter() - t_pc1
    arrays.update(
        pc1_thetas=pc1.thetas,
        pc1_lnL1=pc1.lnL1,
        pc1_beta_k=pc1.beta_k,
        pc1_class_margins=pc1.class_margins,
    )

    t_eq = time.perf_counter()
    log.info("landscape: Langevin equilibrium contrast (Eq 16)")
    eq_summary, eq_arr = equilibrium_contrast(land, w0, comps[:n_modes], summ, cfg, quick)
    eq_summary["time_s"] = time.perf_counter() - t_eq
    if eq_arr is not None:
        arrays.update({f"eq_{k}": v for k, v in eq_arr.items() if not k.startswith("profile")})

    t_cur = time.perf_counter()
    log.info("landscape: curvature (HVPs along %d directions, Lanczos)", n_modes)
    cur_summary, cur_arr = curvature_stage(land, w0, comps[:n_modes], summ, cfg, quick)
    cur_summary["time_s"] = time.perf_counter() - t_cur
    if cur_arr is not None:
        arrays.update(cur_arr)

    figures = _plots(out_dir, arrays, summ, pc1, eq_arr, eq_summary)
    if cur_arr is not None:
        figures.append(_curvature_plot(out_dir, arrays, cur_summary))
    total = time.perf_counter() - t_start
    summary = {
        "flatness": summ,
        "pc1": pc1_summary,
        "equilibrium": eq_summary,
        "curvature": cur_summary,
        "landscape_time_s": total,
    }
    ag = summ["agreement"]
    nan = float("nan")
    eq = eq_summary
    rows = [
        (
            "psi (sigma_i^2 ~ F_i^-psi, i >= 2, e-width F)",
            f"{summ['psi']:.2f} +- {summ['psi_err']:.2f} (boot {summ['psi_err_boot']:.2f})",
            "~4",
        ),
        (
            "psi with quadratic-fit F (Eq 7)",
            f"{summ['psi_quadratic']:.2f} +- {summ['psi_quadratic_err']:.2f}",
            "~4",
        ),
        (
            f"F_quadratic / F_e-width, i >= 2: median (5-95%); Eq 7 fit over |da| <= "
            f"{ag['quad_window']:.3g} for every direction",
            f"{ag['median_ratio_quadratic_over_ewidth']:.3f} "
            f"({ag['p05_ratio']:.3f}-{ag['p95_ratio']:.3f})",
            "1 for Eq 7's form",
        ),
        (
            "PC1: beta (ln L1 slope, Eq S5)",
            f"{pc1.beta:.3g} (beta2 {pc1.beta2:.3g}, R^2 {pc1.fit_r2:.4f})",
            "> 0",
        ),
        (
            "PC1: mean margin slope beta_k (Eq S3)",
            f"{pc1.beta_k_mean:.3g} (median linear R^2 {pc1.margin_fit_r2_median:.4f})",
            "> 0, linear",
        ),
        (
            "Langevin (T matched to SGD): psi, own PCA + flatness",
            f"{eq.get('psi_own_pca', nan):.2f} +- {eq.get('psi_own_pca_err', nan):.2f}",
            "-2 (Eq 16)",
        ),
        (
            "Langevin: psi of its variance along SGD's p_i vs F_i",
            f"{eq.get('psi', nan):.2f} +- {eq.get('psi_err', nan):.2f}",
            "< 0",
        ),
        (
            "Langevin variance along p_i / (T F_i^2 / 8 L0), median",
            f"{eq.get('variance_over_boltzmann_median', nan):.2f}",
            "~1 if p_i were Hessian eigenvectors",
        ),
    ]
    if cur_arr is not None:
        rel, relq, al = (
            cur_summary["relation_ewidth"],
            cur_summary["relation_quadratic"],
            cur_summary["alignment"],
        )
        ev = cur_summary["hessian_top_eigenvalues"]
        rows += [
            (
                "F_e-width / F_hessian, i >= 2: median (5-95%)",
                f"{rel.get('median_ratio', nan):.3f} "
                f"({rel.get('p05_ratio', nan):.3f}-{rel.get('p95_ratio', nan):.3f})",
                "1 for Eq 7's form",
            ),
            (
                "F_quadratic / F_hessian, i >= 2: median",
                f"{relq.get('median_ratio', nan):.3f}",
                "1 (same curvature at 0)",
            ),
            (
                "slope of ln F_e-width vs ln p_i.H.p_i",
                f"{rel.get('loglog_slope_F_vs_pHp', nan):.3f}",
                "-0.5 near a minimum",
            ),
            (
                "cos(p_i, H p_i), i >= 2: median (random directions)",
                f"{al['eig_cosine_median']:.3f} ({al['null_eig_cosine_median']:.3f})",
                "1 if p_i were eigenvectors",
            ),
            (
                f"top-{len(ev)} Hessian eigenvectors inside span(p_1..p_{summ['n_modes']})",
                f"{al['top_eigvec_in_span_mean']:.3f} (random span {al['span_null']:.3f})",
                "",
            ),
            (
                "Hessian lambda_max (Lanczos) / max_i p_i.H.p_i",
                f"{ev[0]:.4g} / {ev[0] * cur_summary['pHp_max_over_lambda_max']:.4g}",
                "",
            ),
        ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    Fd = np.asarray(summ["F"][1:], dtype=float)
    md = (
        "## Landscape around the solution (Figs 2, S2; Eq 16)\n\n"
        f"w0 = last snapshot of the window, L0 = {summ['L0']:.4g}; {summ['n_modes']} PCA "
        f"directions; profile evaluator: {land.mode}.\n\n"
        "| quantity | measured | paper |\n|---|---|---|\n"
        f"{table}\n\n"
        f"F_i spans {np.nanmin(Fd):.3g} to {np.nanmax(Fd):.3g} for i >= 2; PC1 has F_1 = "
        f"{summ['F'][0]:.3g} and a quadratic/e-width ratio of {ag['pc1_ratio']:.2f} (its "
        f"profile is tilted, Eq S5). Stage time {total:.1f} s.\n"
    )
    return StageResult(summary=summary, arrays=arrays, figures=figures, markdown=md)
