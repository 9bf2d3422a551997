"""The random-landscape study behind ``sgdyn simulate``: theory (Eqs 10-14, 16) vs simulation.

Runs, for one MLF ensemble:

1. Eq 10 flatness vs the e-width of (a) the exact mean-field averaged profile and (b) the
   Monte-Carlo averaged profile of a finite ensemble (:class:`MLFLandscape`), both measured
   with :func:`sgdyn.theory.flatness.flatness_e_width`;
2. Eq 11 vs the variance of sampled per-MLF profile minima;
3. SGD on the nonlinear MLF (Eq 9) in the diffusive window (T << tau): drift of PC1 and D_i
   (Eqs 13, 14), window variances vs the exact OU prediction, psi simulated vs predicted,
   and the pooled PCA spectrum (StreamingPCA) with the flatness of each PC probed on the
   landscape;
4. the linearised dynamics (Eq 12) in the stationary window (T >> tau);
5. the equilibrium Langevin baseline on the averaged loss (Eq 16).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sgdyn.kernels import StreamingPCA
from sgdyn.simulator.ensemble import sample_dense
from sgdyn.simulator.integrators import simulate
from sgdyn.simulator.landscape import MLFLandscape
from sgdyn.simulator.presets import get_preset
from sgdyn.theory import mlf
from sgdyn.theory.dynamics import drift_diffusion
from sgdyn.theory.flatness import flatness_e_width, variance_flatness_exponent

log = logging.getLogger(__name__)


@dataclass
class SimStudyConfig:
    preset: str = "paper-like"
    N: int = 30
    F_min: float = 1.0
    F_max: float = 10.0
    replicas: int = 64
    alpha: float = 0.25
    window_diffusive: int = 0  # 0: tau_min / 5
    alpha_stationary: float = 1.0
    window_stationary: int = 0  # 0: 20 tau_max (of the linear dynamics at alpha_stationary)
    temperature: float = 1e-4
    minibatches: int = 512
    n_minima: int = 20000
    seed: int = 0
    device: str = "cpu"
    quick: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


QUICK = dict(N=12, F_min=1.0, F_max=3.0, replicas=48, minibatches=256, n_minima=8000)


def _ratio_stats(r) -> dict:
    r = np.asarray(r, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return {"median": None, "min": None, "max": None}
    return {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}


def _window_var(theta: np.ndarray) -> np.ndarray:
    """Per-replica window variance (mean removed, ddof 0), averaged over replicas: (n_modes,)."""
    return theta.var(axis=0).mean(axis=0)


def run_study(cfg: SimStudyConfig, progress: bool = True):
    """Return (summary dict, arrays dict)."""
    device = torch.device(cfg.device)
    spec = get_preset(cfg.preset, N=cfg.N, F_min=cfg.F_min, F_max=cfg.F_max)
    N, kw = spec.N, spec.theory_kwargs()
    M = mlf.averaged_curvature(**kw)
    F = mlf.flatness_from_curvature(M)
    diff = np.arange(1, N)  # diffusive modes i >= 2
    sig_paper = mlf.min_position_variance(spec.M0, spec.s, spec.sigma_theta, spec.theta1_0)
    sig_exact = mlf.min_position_variance(
        spec.M0, spec.s, spec.sigma_theta, spec.theta1_0, spec.sigma_M, paper=False
    )
    a = cfg.alpha
    D_paper = mlf.diffusion_constant(a, spec.L0_sq_mean, spec.M0, spec.s, spec.sigma_theta)
    D_exact = mlf.diffusion_constant(
        a, spec.L0_sq_mean, spec.M0, spec.s, spec.sigma_theta, spec.theta1_0, spec.sigma_M,
        spec.L0, paper=False,
    )  # fmt: skip
    v1 = mlf.drift_velocity(a, spec.L0, spec.M0[0], spec.theta1_0)
    tau_M = mlf.relaxation_time(a, spec.L0, M)  # paper's tau (averaged loss)
    tau_lin = mlf.relaxation_time(a, spec.L0, spec.M0)  # mean rate of Eq 12
    summary: dict = {"config": cfg.as_dict(), "spec": spec.as_dict(), "checks": {}}
    arrays: dict = {"F_eq10": F, "M_eq10": M, "sigma_tilde2_eq11": sig_paper, "D_eq14": D_paper}

    # 1. flatness: exact mean-field profile and finite-ensemble Monte Carlo, vs Eq 10 ----
    def exact_profile(amps):
        return np.array([mlf.exact_mode_profile([amps[k]], k, spec.L0, **kw)[0] for k in range(N)])

    Fx = flatness_e_width(exact_profile, N, L0=spec.L0, init_step=0.05, on_unbounded="flag")
    land = MLFLandscape(spec, cfg.minibatches, seed=cfg.seed + 11, device=device)
    eye = torch.eye(N)
    w0 = torch.zeros(N)
    L0_mc = float(land.full_loss(w0))

    def mc_profile(amps):
        A = torch.as_tensor(amps, dtype=torch.float32)[:, None]
        return land.losses_along(w0, eye, A).numpy()[:, 0]

    Fmc = flatness_e_width(mc_profile, N, L0=L0_mc, init_step=0.05, on_unbounded="flag")
    # Eq 10's e-width for mode 1 includes its linear term; compare diffusive modes only
    summary["checks"]["F_exact_over_eq10"] = _ratio_stats(Fx.width[diff] / F[diff])
    summary["checks"]["F_mc_over_eq10"] = _ratio_stats(Fmc.width[diff] / F[diff])
    arrays.update(F_exact=Fx.width, F_mc=Fmc.width)

    # 2. Eq 11 vs sampled minima ---------------------------------------------------------
    smp = sample_dense(spec, cfg.n_minima, seed=cfg.seed + 13)
    Md = smp.M
    diagM = torch.diagonal(Md, dim1=1, dim2=2)
    offsum = torch.einsum("nij,nj->ni", Md, smp.theta_mu) - diagM * smp.theta_mu
    tmin = (smp.theta_mu + offsum / diagM).numpy()
    tmin_var = tmin.var(axis=0)
    summary["checks"]["sigma_tilde2_sampled_over_eq11"] = _ratio_stats(
        tmin_var[diff] / sig_paper[diff]
    )
    summary["checks"]["sigma_tilde2_sampled_over_exact"] = _ratio_stats(
        tmin_var[diff] / sig_exact[diff]
    )
    arrays["sigma_tilde2_sampled"] = tmin_var

    # 3. SGD on Eq 9, diffusive window ---------------------------------------------------
    Td = cfg.window_diffusive or max(int(tau_lin.min() / 5), 8)
    sgd = simulate(spec, dynamics="sgd", alpha=a, n_steps=Td, n_replicas=cfg.replicas,
                   seed=cfg.seed + 1, device=device, progress=progress)  # fmt: skip
    th = sgd.theta  # (T, R, N), starting from w0 = 0
    var_d = _window_var(th)
    pred_d = mlf.ou_window_variance(D_exact, tau_M, Td, start="origin")
    # Eq 14 is the velocity variance at theta ~ 0: use the first few steps from w0 = 0
    full = np.concatenate([np.zeros((1,) + th.shape[1:]), th], axis=0)
    inc = np.diff(full[: min(6, Td) + 1], axis=0)  # (k, R, N)
    Ds = inc.var(axis=1, ddof=1).mean(axis=0)
    Ds_window = np.mean([drift_diffusion(th[:, r]).diffusion for r in range(th.shape[1])], 0)
    summary["checks"]["D_window_over_exact"] = _ratio_stats(Ds_window[diff] / D_exact[diff])
    drift_meas = float(np.mean(th[min(4, Td - 1), :, 0]) / (min(4, Td - 1) + 1))
    summary["checks"]["D_measured_over_eq14"] = _ratio_stats(Ds[diff] / D_paper[diff])
    summary["checks"]["D_measured_over_exact"] = _ratio_stats(Ds[diff] / D_exact[diff])
    summary["checks"]["drift_measured_over_eq13"] = drift_meas / v1 if v1 != 0 else None
    summary["checks"]["window_var_diffusive_over_ou"] = _ratio_stats(var_d[diff] / pred_d[diff])
    psi_sim_d = variance_flatness_exponent(var_d[diff], F[diff])
    psi_th_d = mlf.predicted_psi(pred_d[diff], F[diff]).psi
    psi_th_d_lim = mlf.predicted_psi(
        mlf.window_variances(D_paper, tau_M, Td)["diffusive"][diff], F[diff]
    ).psi
    # pooled PCA of the replicas' windows (each window mean-removed) + flatness of each PC
    pca = StreamingPCA()
    for r in range(th.shape[1]):
        pca.partial_fit(torch.as_tensor(th[:, r] - th[:, r].mean(0)))
    pca.finalize()
    comps = pca.components_.float()
    pc_var = pca.explained_variance_.numpy()
    Fpc = flatness_e_width(
        lambda amps: land.losses_along(w0, comps, torch.as_tensor(amps)[:, None]).numpy()[:, 0],
        N, L0=L0_mc, init_step=0.05, on_unbounded="flag",
    )  # fmt: skip
    try:
        psi_pca = variance_flatness_exponent(pc_var[1:], Fpc.width[1:]).psi
    except ValueError:
        psi_pca = None
    arrays.update(var_diffusive=var_d, pred_diffusive=pred_d, D_measured=Ds, pc_var=pc_var,
                  F_pc=Fpc.width, tau_M=tau_M, tau_lin=tau_lin)  # fmt: skip

    # 4. linear dynamics (Eq 12), stationary window ------------------------------------
    a_s = cfg.alpha_stationary
    tau_s = mlf.relaxation_time(a_s, spec.L0, spec.M0)
    Ts = cfg.window_stationary or int(20 * tau_s.max())
    burn = int(4 * tau_s.max())
    D_s = mlf.diffusion_constant(
        a_s, spec.L0_sq_mean, spec.M0, spec.s, spec.sigma_theta, spec.theta1_0, spec.sigma_M,
        spec.L0, paper=False,
    )  # fmt: skip
    rec_every = max(1, Ts // 4000)
    st = simulate(spec, dynamics="linear", alpha=a_s, n_steps=burn + Ts, n_replicas=cfg.replicas,
                  seed=cfg.seed + 2, device=device, record_every=rec_every,
                  progress=progress)  # fmt: skip
    th_s = st.theta[burn // rec_every :]
    var_s = _window_var(th_s)
    pred_s = mlf.window_variances(D_s, tau_s, Ts)["stationary"]
    psi_sim_s = variance_flatness_exponent(var_s[diff], F[diff])
    psi_th_s = mlf.predicted_psi(pred_s[diff], F[diff]).psi
    summary["checks"]["window_var_stationary_over_ou"] = _ratio_stats(var_s[diff] / pred_s[diff])
    arrays.update(var_stationary=var_s, pred_stationary=pred_s)

    # 5. equilibrium Langevin on the averaged loss (Eq 16) ------------------------------
    eq = simulate(spec, dynamics="langevin", alpha=a_s, n_steps=burn + Ts,
                  temperature=cfg.temperature, n_replicas=cfg.replicas,
                  seed=cfg.seed + 3, device=device,
                  record_every=rec_every, progress=progress)  # fmt: skip
    var_eq = _window_var(eq.theta[burn // rec_every :])
    Lmin = mlf.averaged_loss_minimum(spec.L0, spec.M0[0], M[0], spec.theta1_0)
    pred_eq = mlf.equilibrium_variance(cfg.temperature, Lmin, M, alpha=a_s)
    psi_eq = variance_flatness_exponent(var_eq[diff], F[diff])
    summary["checks"]["equilibrium_var_over_eq16"] = _ratio_stats(var_eq[diff] / pred_eq[diff])
    arrays.update(var_equilibrium=var_eq, pred_equilibrium=pred_eq)

    summary["sim"] = {
        "psi": psi_sim_d.psi, "psi_err": psi_sim_d.psi_err_boot,
        "psi_diffusive": psi_sim_d.psi, "psi_stationary": psi_sim_s.psi,
        "psi_stationary_err": psi_sim_s.psi_err_boot, "psi_pca_diffusive": psi_pca,
        "window_diffusive": Td, "window_stationary": Ts, "burn_in_stationary": burn,
        "drift_velocity": drift_meas,
    }  # fmt: skip
    summary["theory"] = {
        "psi": psi_th_d, "psi_diffusive": psi_th_d, "psi_diffusive_limit": psi_th_d_lim,
        "psi_stationary": psi_th_s, "psi_equilibrium": -2.0, "drift_velocity": v1,
        "tau_range": [float(tau_M.min()), float(tau_M.max())],
    }  # fmt: skip
    summary["equilibrium"] = {"psi": psi_eq.psi, "psi_err": psi_eq.psi_err_boot,
                              "temperature": cfg.temperature}  # fmt: skip
    return summary, arrays


def make_figures(out: Path, arrays: dict, summary: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    F = arrays["F_eq10"][1:]
    names = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for key, pk, lab, c in [
        ("var_diffusive", "pred_diffusive", "SGD, diffusive window", "C0"),
        ("var_stationary", "pred_stationary", "linear, stationary window", "C1"),
        ("var_equilibrium", "pred_equilibrium", "Langevin (equilibrium)", "C2"),
    ]:
        ax.loglog(F, arrays[key][1:], "o", color=c, label=lab, ms=4)
        ax.loglog(F, arrays[pk][1:], "-", color=c, lw=1)
    ax.set_xlabel("flatness $F_i$ (Eq 10)")
    ax.set_ylabel(r"window variance $\sigma_i^2$")
    ax.legend(fontsize=7)
    ax.set_title("points: simulation, lines: theory")
    fig.tight_layout()
    fig.savefig(out / "variance_flatness.png", dpi=110)
    plt.close(fig)
    names.append("variance_flatness.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    Fall = arrays["F_eq10"]
    ax.plot(Fall, arrays["F_exact"], "o", ms=4, label="exact mean-field profile")
    ax.plot(Fall, arrays["F_mc"], "s", ms=4, mfc="none", label="finite ensemble (MC)")
    ax.plot(Fall, Fall, "k-", lw=1, label="Eq 10")
    ax.set_xlabel("$F_i$ (Eq 10)")
    ax.set_ylabel("e-width of the averaged profile")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "flatness_check.png", dpi=110)
    plt.close(fig)
    names.append("flatness_check.png")
    return names


def report_markdown(summary: dict, figures: list[str]) -> str:
    s, t, e, c = summary["sim"], summary["theory"], summary["equilibrium"], summary["checks"]

    def f(x):
        return "n/a" if x is None else f"{x:.3g}"

    lines = [
        "# Random-landscape simulation (Sec IV)",
        "",
        f"Preset `{summary['config']['preset']}`, N={summary['config']['N']}, "
        f"replicas={summary['config']['replicas']}, seed={summary['config']['seed']}.",
        "",
        "| variance-flatness exponent psi | simulated | theory |",
        "|---|---|---|",
        f"| diffusive window (T={s['window_diffusive']}, SGD on Eq 9) | "
        f"{f(s['psi_diffusive'])} ± {f(s['psi_err'])} | {f(t['psi_diffusive'])} "
        f"(T<<tau limit {f(t['psi_diffusive_limit'])}) |",
        f"| diffusive, pooled PCA + probed flatness | {f(s['psi_pca_diffusive'])} | |",
        f"| stationary window (T={s['window_stationary']}, Eq 12) | {f(s['psi_stationary'])} "
        f"± {f(s['psi_stationary_err'])} | {f(t['psi_stationary'])} |",
        f"| equilibrium Langevin (Eq 16) | {f(e['psi'])} ± {f(e['psi_err'])} | -2 |",
        "",
        "| check (measured / predicted, diffusive modes i>=2) | median | min | max |",
        "|---|---|---|---|",
    ]
    for k, v in c.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {f(v['median'])} | {f(v['min'])} | {f(v['max'])} |")
        else:
            lines.append(f"| {k} | {f(v)} | | |")
    lines += [""] + [f"![{n}]({n})" for n in figures]
    return "\n".join(lines) + "\n"
