"""The random-landscape study behind ``sgdyn simulate``: theory (Eqs 10-14, 16) vs simulation.

From Python::

    from sgdyn.validation.studies.simulate import SimStudyConfig, run_simulate
    summary = run_simulate(SimStudyConfig(N=12, F_max=3.0), "runs/sim")   # a run directory
    summary, arrays = run_study(SimStudyConfig(N=12, F_max=3.0))           # numbers only

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

Every window variance is compared with the exact finite-window prediction
(:func:`sgdyn.theory.mlf.ou_window_variance`, started at w0 = 0 with the run's burn-in and
recording interval); the infinite-window limits (T << tau: psi = 2; Eq 16: psi = -2) are
reported beside them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sgdyn.kernels import StreamingPCA
from sgdyn.kernels.memory import available_bytes
from sgdyn.simulator.distributed import simulate_sharded
from sgdyn.simulator.ensemble import sample_dense
from sgdyn.simulator.landscape import MLFLandscape
from sgdyn.simulator.presets import PRESETS, from_profiles, paper_like
from sgdyn.theory import mlf
from sgdyn.theory.dynamics import drift_diffusion
from sgdyn.theory.flatness import flatness_e_width, variance_flatness_exponent
from sgdyn.validation.io.config import StudyConfig

log = logging.getLogger(__name__)

NAME = "simulate"
PROFILE_KEYS = ("M0", "sigma_M", "sigma_theta")
PROFILE_OPTIONAL = ("sigma_off", "off_profile", "theta1_0", "L0", "L0_cv")


@dataclass
class SimStudyConfig(StudyConfig):
    """Settings of one simulator study (all recorded in summary.json's ``config``).

    ``preset="paper-like"`` builds the ensemble from ``N, F_min, F_max``;
    ``preset="from-profiles"`` takes it from ``profiles`` (``M0, sigma_M, sigma_theta`` per
    mode, optional ``sigma_off, off_profile, theta1_0, L0, L0_cv``), and N = len(M0)."""

    preset: str = "paper-like"
    N: int | None = 30
    F_min: float | None = 1.0
    F_max: float | None = 10.0
    profiles: dict | None = None
    replicas: int = 64
    alpha: float = 0.25
    window_diffusive: int = 0  # 0: tau_min / 5
    alpha_stationary: float = 1.0
    window_stationary: int = 0  # 0: 20 tau_max (of the linear dynamics at alpha_stationary)
    temperature: float = 1e-4
    minibatches: int = 512
    n_minima: int = 20000
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"  # precision of the integrations (float64: theory checks, small N)
    quick: bool = False

    def validate(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {PRESETS}")
        if self.preset == "from-profiles":
            if not self.profiles:
                raise ValueError("preset from-profiles needs --profiles FILE (JSON or .npz)")
            if self.F_min is not None or self.F_max is not None:
                raise ValueError("--F-min/--F-max shape the paper-like preset only")
            n = len(self.profiles["M0"])
            if self.N not in (None, n):
                raise ValueError(f"--N {self.N} but the profiles have {n} modes; drop --N")
        else:
            if self.profiles is not None:
                raise ValueError("--profiles needs --preset from-profiles")
            if self.N is None or self.N < 3:
                raise ValueError(f"need --N >= 3, got {self.N}")
            if not (self.F_min and self.F_max and 0 < self.F_min < self.F_max):
                raise ValueError(f"need 0 < --F-min < --F-max, got {self.F_min}, {self.F_max}")
        for name in ("alpha", "alpha_stationary"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive learning rate, got {v}")
        if self.replicas < 2:
            raise ValueError(f"need --replicas >= 2, got {self.replicas}")
        if self.window_diffusive < 0 or self.window_stationary < 0:
            raise ValueError("window lengths must be >= 0 (0: the automatic choice)")
        if not self.temperature >= 0:
            raise ValueError(f"--temperature must be >= 0, got {self.temperature}")
        if self.minibatches < 1 or self.n_minima < 2:
            raise ValueError("need --minibatches >= 1 and --n-minima >= 2")


QUICK = dict(N=12, F_min=1.0, F_max=3.0, replicas=48, minibatches=256, n_minima=8000)


def load_profiles(path) -> dict:
    """Per-mode profiles for ``from-profiles`` from a JSON object or an ``.npz`` file, as
    plain lists (so the run's config is self-contained)."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        else:
            import json

            raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--profiles {path}: cannot read it ({e})") from e
    missing = [k for k in PROFILE_KEYS if k not in raw]
    if missing:
        raise ValueError(f"--profiles {path} lacks {missing} (need {PROFILE_KEYS})")
    unknown = sorted(set(raw) - set(PROFILE_KEYS) - set(PROFILE_OPTIONAL))
    if unknown:
        raise ValueError(f"--profiles {path}: unknown keys {unknown}")
    return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in raw.items()}


def build_spec(cfg: SimStudyConfig):
    if cfg.preset == "from-profiles":
        p = dict(cfg.profiles)
        return from_profiles(p.pop("M0"), p.pop("sigma_M"), p.pop("sigma_theta"), **p)
    return paper_like(cfg.N, F_min=cfg.F_min, F_max=cfg.F_max)


@dataclass
class _Plan:
    """Derived sizes of a study: windows, burn-in and recording interval."""

    spec: object
    Td: int
    Ts: int
    burn: int
    rec_every: int


def plan(cfg: SimStudyConfig) -> _Plan:
    spec = build_spec(cfg)
    tau_lin = mlf.relaxation_time(cfg.alpha, spec.L0, spec.M0)
    Td = cfg.window_diffusive or max(int(tau_lin.min() / 5), 8)
    tau_s = mlf.relaxation_time(cfg.alpha_stationary, spec.L0, spec.M0)
    Ts = cfg.window_stationary or int(20 * tau_s.max())
    return _Plan(spec, Td, Ts, int(4 * tau_s.max()), max(1, Ts // 4000))


def estimate_memory(cfg: SimStudyConfig) -> dict:
    """Peak bytes of the study's large allocations, by part (and the option that sets it)."""
    p = plan(cfg)
    N, R = p.spec.N, cfg.replicas
    n_rec = p.Td + 2 * ((p.burn + p.Ts) // p.rec_every)
    itemsize = 8 if cfg.dtype == "float64" else 4
    return {
        "sampled minima (--n-minima)": 5 * cfg.n_minima * N * N * 8,  # dense float64 + temps
        "finite ensemble (--minibatches)": cfg.minibatches * N * N * 4,
        "flatness probes (--N)": min(64, cfg.minibatches) * N * N * N * 4,
        "trajectories (--replicas, --window-steps)": n_rec * R * N * (8 + itemsize),  # + float64
    }


def check_memory(cfg: SimStudyConfig, max_memory_gb: float | None = None) -> dict:
    """Refuse, before any allocation, a study that needs more memory than allowed."""
    parts = estimate_memory(cfg)
    need = sum(parts.values())
    if max_memory_gb is not None:
        limit, what = max_memory_gb * 1e9, f"--max-memory {max_memory_gb:g} GB"
    else:
        avail = available_bytes("cpu") or 0  # MemAvailable; 0 when unknown
        limit, what = (
            (0.8 * avail, f"80% of the {avail / 1e9:.1f} GB available")
            if avail
            else (float("inf"), "unknown")
        )
    if need > limit:
        big = max(parts, key=parts.get)
        raise ValueError(
            f"simulate would need ~{need / 1e9:.1f} GB (largest: {big} {parts[big] / 1e9:.1f} "
            f"GB), more than {what}; lower {big.split('(')[1].rstrip(')')} or raise --max-memory"
        )
    return {"estimate_bytes": need, "parts": parts, "limit": what}


def _ratio_stats(r) -> dict:
    r = np.asarray(r, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return {"median": None, "min": None, "max": None}
    return {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}


def _window_var(theta: np.ndarray) -> np.ndarray:
    """Per-replica window variance (mean removed, ddof 0), averaged over replicas: (n_modes,)."""
    return theta.var(axis=0).mean(axis=0)


def recorded_window_variance(D, tau, n_window: int, *, burn_records: int, every: int):
    """Exact window variance of the records x_{(j+1)k}, j = burn_records .. burn_records +
    n_window - 1, of an OU/AR(1) process started at 0 (rho = 1 - 1/tau, noise D per step),
    recorded every k = ``every`` steps: the records are an AR(1) with rho^k and noise
    D (1 - rho^2k) / (1 - rho^2), fed to :func:`mlf.ou_window_variance` (start at origin)."""
    D, tau = np.broadcast_arrays(np.asarray(D, float), np.asarray(tau, float))
    rho = 1.0 - 1.0 / tau
    rk = rho**every
    Dk = D * (1.0 - rk**2) / (1.0 - rho**2)
    return mlf.ou_window_variance(
        Dk, 1.0 / (1.0 - rk), n_window, start="origin", burn_in=burn_records
    )


def run_study(cfg: SimStudyConfig, progress: bool = False):
    """Return (summary dict, arrays dict): the numbers of the study, no files."""
    cfg.validate()
    device = torch.device(cfg.device)
    pl = plan(cfg)
    spec = pl.spec
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
    summary: dict = {"spec": spec.as_dict(), "checks": {}}
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
        return land.losses_along(w0, eye, A).cpu().numpy()[:, 0]

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
    del smp, Md, diagM, offsum
    tmin_var = tmin.var(axis=0)
    summary["checks"]["sigma_tilde2_sampled_over_eq11"] = _ratio_stats(
        tmin_var[diff] / sig_paper[diff]
    )
    summary["checks"]["sigma_tilde2_sampled_over_exact"] = _ratio_stats(
        tmin_var[diff] / sig_exact[diff]
    )
    arrays["sigma_tilde2_sampled"] = tmin_var

    # 3. SGD on Eq 9, diffusive window ---------------------------------------------------
    Td = pl.Td
    sgd = simulate_sharded(spec, dynamics="sgd", alpha=a, n_steps=Td, n_replicas=cfg.replicas,
                   seed=cfg.seed + 1, device=device, progress=progress,
                   dtype=cfg.dtype)  # fmt: skip
    th = sgd.theta  # (T, R, N), starting from w0 = 0
    var_d = _window_var(th)
    pred_d = mlf.ou_window_variance(D_exact, tau_M, Td, start="origin")
    # Eq 14 is the velocity variance at theta ~ 0: use the first few steps from w0 = 0
    full = np.concatenate([np.zeros((1,) + th.shape[1:]), th], axis=0)
    inc = np.diff(full[: min(6, Td) + 1], axis=0)  # (k, R, N)
    Ds = inc.var(axis=1, ddof=1).mean(axis=0)
    Ds_window = np.mean([drift_diffusion(th[:, r]).diffusion for r in range(th.shape[1])], 0)
    summary["checks"]["D_window_over_exact"] = _ratio_stats(Ds_window[diff] / D_exact[diff])
    k_drift = min(4, Td - 1) + 1
    drift_meas = float(np.mean(th[k_drift - 1, :, 0]) / k_drift)
    drift_err = float(np.std(th[k_drift - 1, :, 0], ddof=1) / np.sqrt(th.shape[1]) / k_drift)
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
        lambda amps: land.losses_along(w0, comps, torch.as_tensor(amps)[:, None])
        .cpu().numpy()[:, 0],
        N, L0=L0_mc, init_step=0.05, on_unbounded="flag",
    )  # fmt: skip
    try:
        psi_pca = variance_flatness_exponent(pc_var[1:], Fpc.width[1:]).psi
    except ValueError:
        psi_pca = None
    arrays.update(var_diffusive=var_d, pred_diffusive=pred_d, D_measured=Ds, pc_var=pc_var,
                  F_pc=Fpc.width, tau_M=tau_M, tau_lin=tau_lin)  # fmt: skip
    del sgd, th, full

    # 4. linear dynamics (Eq 12), stationary window ------------------------------------
    a_s = cfg.alpha_stationary
    tau_s = mlf.relaxation_time(a_s, spec.L0, spec.M0)
    Ts, burn, rec_every = pl.Ts, pl.burn, pl.rec_every
    D_s = mlf.diffusion_constant(
        a_s, spec.L0_sq_mean, spec.M0, spec.s, spec.sigma_theta, spec.theta1_0, spec.sigma_M,
        spec.L0, paper=False,
    )  # fmt: skip
    st = simulate_sharded(spec, dynamics="linear", alpha=a_s, n_steps=burn + Ts,
                  n_replicas=cfg.replicas, seed=cfg.seed + 2, device=device, record_every=rec_every,
                  progress=progress, dtype=cfg.dtype)  # fmt: skip
    b_rec = burn // rec_every
    th_s = st.theta[b_rec:]
    n_win = th_s.shape[0]
    var_s = _window_var(th_s)
    pred_s = recorded_window_variance(D_s, tau_s, n_win, burn_records=b_rec, every=rec_every)
    lim_s = mlf.window_variances(D_s, tau_s, Ts)["stationary"]  # T >> tau limit
    psi_sim_s = variance_flatness_exponent(var_s[diff], F[diff])
    psi_th_s = mlf.predicted_psi(pred_s[diff], F[diff]).psi
    psi_th_s_lim = mlf.predicted_psi(lim_s[diff], F[diff]).psi
    summary["checks"]["window_var_stationary_over_exact_ou"] = _ratio_stats(
        var_s[diff] / pred_s[diff]
    )
    arrays.update(var_stationary=var_s, pred_stationary=pred_s, limit_stationary=lim_s)
    del st, th_s

    # 5. equilibrium Langevin on the averaged loss (Eq 16) ------------------------------
    eq = simulate_sharded(spec, dynamics="langevin", alpha=a_s, n_steps=burn + Ts,
                  temperature=cfg.temperature, n_replicas=cfg.replicas,
                  seed=cfg.seed + 3, device=device,
                  record_every=rec_every, progress=progress, dtype=cfg.dtype)  # fmt: skip
    var_eq = _window_var(eq.theta[b_rec:])
    Lmin = mlf.averaged_loss_minimum(spec.L0, spec.M0[0], M[0], spec.theta1_0)
    lim_eq = mlf.equilibrium_variance(cfg.temperature, Lmin, M, alpha=a_s)  # Eq 16, T -> inf
    # linearised Langevin about the minimum: rho = 1 - alpha Lmin M_ii, noise 2 alpha T per step
    tau_eq = mlf.relaxation_time(a_s, Lmin, M)
    pred_eq = recorded_window_variance(
        2 * a_s * cfg.temperature, tau_eq, n_win, burn_records=b_rec, every=rec_every
    )
    psi_eq = variance_flatness_exponent(var_eq[diff], F[diff])
    psi_th_eq = mlf.predicted_psi(pred_eq[diff], F[diff]).psi
    psi_th_eq_lim = mlf.predicted_psi(lim_eq[diff], F[diff]).psi
    summary["checks"]["equilibrium_var_over_exact_window"] = _ratio_stats(
        var_eq[diff] / pred_eq[diff]
    )
    arrays.update(var_equilibrium=var_eq, pred_equilibrium=pred_eq, limit_equilibrium=lim_eq)

    summary["sim"] = {
        "psi": psi_sim_d.psi, "psi_err": psi_sim_d.psi_err_boot,
        "psi_diffusive": psi_sim_d.psi, "psi_stationary": psi_sim_s.psi,
        "psi_stationary_err": psi_sim_s.psi_err_boot, "psi_pca_diffusive": psi_pca,
        "window_diffusive": Td, "window_stationary": Ts, "burn_in_stationary": burn,
        "record_every_stationary": rec_every, "drift_velocity": drift_meas,
        "drift_velocity_stderr": drift_err,
    }  # fmt: skip
    summary["theory"] = {
        "psi": psi_th_d, "psi_diffusive": psi_th_d, "psi_diffusive_limit": psi_th_d_lim,
        "psi_stationary": psi_th_s, "psi_stationary_limit": psi_th_s_lim,
        "psi_equilibrium": psi_th_eq, "psi_equilibrium_limit": psi_th_eq_lim,
        "drift_velocity": v1, "tau_range": [float(tau_M.min()), float(tau_M.max())],
    }  # fmt: skip
    summary["equilibrium"] = {"psi": psi_eq.psi, "psi_err": psi_eq.psi_err_boot,
                              "temperature": cfg.temperature}  # fmt: skip
    return summary, arrays


def run_simulate(
    cfg: SimStudyConfig,
    out,
    *,
    force: bool = False,
    progress: bool = False,
    max_memory_gb: float | None = None,
    before_compute=None,
) -> dict:
    """Run the study into the run directory ``out`` (figures, report.md/.html, arrays.npz,
    summary.json last) and return the summary. A finished run with the same config is
    returned as is; one with another config is refused unless ``force``."""
    import time

    from sgdyn.validation.io.rundir import RunDir

    cfg.validate()
    mem = check_memory(cfg, max_memory_gb)
    rd = RunDir(out, cfg.as_dict(), command=NAME, force=force)
    if rd.start():
        return rd.summary()
    if before_compute is not None:  # e.g. torchrun: hand the config to the other ranks
        before_compute(cfg)
    t0 = time.perf_counter()
    summary, arrays = run_study(cfg, progress=progress)
    figs = make_figures(rd, arrays)
    summary["memory_estimate_bytes"] = mem["estimate_bytes"]
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["environment"] = {"device": cfg.device}
    from sgdyn.simulator.distributed import current

    if current() is not None:
        summary["environment"].update(ranks=current().world, backend=current().backend)
    return rd.finish(
        summary, arrays=arrays, report=report_markdown(summary, cfg, figs),
        title="sgdyn simulate: random-landscape theory vs simulation",
    )  # fmt: skip


def make_figures(rd, arrays: dict) -> list[str]:
    """Variance-flatness (theory lines, simulation points) and the flatness check."""
    from matplotlib.figure import Figure

    F = arrays["F_eq10"][1:]
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
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
    ax.set_title("points: simulation, lines: exact finite-window theory")
    names = [rd.save_figure(fig, "variance_flatness.png")]
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    Fall = arrays["F_eq10"]
    ax.plot(Fall, arrays["F_exact"], "o", ms=4, label="exact mean-field profile")
    ax.plot(Fall, arrays["F_mc"], "s", ms=4, mfc="none", label="finite ensemble (MC)")
    ax.plot(Fall, Fall, "k-", lw=1, label="Eq 10")
    ax.set_xlabel("$F_i$ (Eq 10)")
    ax.set_ylabel("e-width of the averaged profile")
    ax.legend(fontsize=7)
    names.append(rd.save_figure(fig, "flatness_check.png"))
    return names


def report_markdown(summary: dict, cfg: SimStudyConfig, figures: list[str]) -> str:
    s, t, e, c = summary["sim"], summary["theory"], summary["equilibrium"], summary["checks"]

    def f(x):
        return "n/a" if x is None else f"{x:.3g}"

    size = f"N={len(summary['spec']['M0'])}"
    lines = [
        "# Random-landscape simulation (Sec IV)",
        "",
        f"Preset `{cfg.preset}`, {size}, replicas={cfg.replicas}, seed={cfg.seed}, "
        f"device {cfg.device}.",
        "",
        "| variance-flatness exponent psi | simulated | theory (exact window) | limit |",
        "|---|---|---|---|",
        f"| diffusive window (T={s['window_diffusive']}, SGD on Eq 9) | "
        f"{f(s['psi_diffusive'])} ± {f(s['psi_err'])} | {f(t['psi_diffusive'])} | "
        f"{f(t['psi_diffusive_limit'])} (T << tau) |",
        f"| diffusive, pooled PCA + probed flatness | {f(s['psi_pca_diffusive'])} | | |",
        f"| stationary window (T={s['window_stationary']}, Eq 12) | {f(s['psi_stationary'])} "
        f"± {f(s['psi_stationary_err'])} | {f(t['psi_stationary'])} | "
        f"{f(t['psi_stationary_limit'])} (T >> tau) |",
        f"| equilibrium Langevin (Eq 16) | {f(e['psi'])} ± {f(e['psi_err'])} | "
        f"{f(t['psi_equilibrium'])} | {f(t['psi_equilibrium_limit'])} (Eq 16) |",
        "",
        "| check (measured / predicted, diffusive modes i>=2) | median | min | max |",
        "|---|---|---|---|",
    ]
    for k, v in c.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {f(v['median'])} | {f(v['min'])} | {f(v['max'])} |")
        else:
            lines.append(f"| {k} | {f(v)} | | |")
    lines += [
        "",
        f"PC1 drift over the first steps: {f(s['drift_velocity'])} ± "
        f"{f(s['drift_velocity_stderr'])} per step (Eq 13: {f(t['drift_velocity'])}). "
        "Window variances are compared with the exact finite-window OU prediction (started "
        "at w0 = 0, with the run's burn-in and recording interval); the limits are beside.",
        "",
    ]
    lines += [f"![{n}]({n})" for n in figures]
    return "\n".join(lines) + "\n"
