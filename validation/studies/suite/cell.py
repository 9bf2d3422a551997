"""One suite cell: capture -> spectrum -> flatness -> psi -> ensemble -> simulator -> contrast.

:func:`run_cell` is the sweep runner's cell function (``fn(params, cell_dir) -> dict``). It
reuses ``sgdyn reproduce`` for the network part (:func:`run_reproduce` into
``cell_dir/reproduce``: capture, spectrum and gamma, phases, flatness and psi, Langevin
equilibrium contrast; its ``capture.pt`` makes a rerun skip training), then

- measures the per-minibatch MLF ensemble along the top PCA directions at w0 (the window's
  last snapshot) through the ``Landscape`` protocol: the mechanism study's
  :func:`~sgdyn.validation.studies.mechanism.measure_ensemble` (per-mode M^mu_ii, theta^mu_i,
  L^mu_0) and ``measure_diffusion`` (T_i(0)), and the K x K cross-mode matrices of
  :mod:`.ensemble`;
- reads the Fig 3B exponents off it (sigma_theta,i ~ F_i, M0_ii ~ F_i^-2, (M0 sigma_theta)^2
  ~ F_i^-2) and the active temperature T_i(0) of Eq 17 against F_i;
- builds the ``from-network`` simulator ensemble and integrates SGD with the network's alpha,
  minibatches per epoch and window, with the ablations of :mod:`.sim_network`.

The returned record holds plain numbers only (``summary.json`` of the suite collects them);
arrays go to ``cell_dir/suite_arrays.npz`` and a sigma^2-vs-F panel to ``cell_dir/panel.png``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

#: cell parameters handed to ``ReproduceConfig`` (the rest belong to the suite's own stages)
REPRO_KEYS = (
    "dataset", "data_root", "model", "hidden", "optimizer", "lr", "batch_size", "seed",
    "window_epochs", "window_start", "min_epochs", "max_epochs", "settle_epochs", "rank_range",
    "n_theta_saved", "landscape_modes", "langevin_steps", "quick", "classes", "device",
    "mechanism", "per_class",
)  # fmt: skip
SUITE_KEYS = ("ensemble_modes", "ensemble_batches", "ensemble_step", "replicas", "sim_max_steps")
# mechanism=False: the suite measures the ensemble itself (below), not in the reproduce stage
DEFAULTS = dict(mechanism=False, ensemble_modes=20, ensemble_batches=128, ensemble_step=0.1,
                replicas=32, sim_max_steps=20000)  # fmt: skip


class _Skip(Exception):
    """The simulator does not apply to this cell (the reason is recorded)."""


def _fit(x, y) -> dict:
    """log-log slope of y vs x over the finite positive pairs, with its OLS error."""
    from sgdyn.theory import fit_power_law

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 3:
        return {"slope": None, "err": None, "n": int(ok.sum())}
    f = fit_power_law(x[ok], y[ok], n_boot=0)
    return {"slope": float(f.slope), "err": float(f.slope_err), "n": int(ok.sum())}


def reproduce_config(params: dict):
    from sgdyn.validation.studies.reproduce.pipeline import ReproduceConfig

    kw = {k: params[k] for k in REPRO_KEYS if k in params}
    for k in ("hidden", "rank_range", "classes"):
        if kw.get(k) is not None:
            kw[k] = tuple(kw[k])
    kw.setdefault("device", "cpu")
    return ReproduceConfig(**kw)


def cell_group(cell) -> tuple:
    """Cells with equal keys train together as replicas: SGD cells that share B, the model,
    the data and the window protocol (they may differ in alpha and seed); any other cell is
    a group of its own."""
    from sgdyn.validation.studies.capture_replicas import group_key

    cfg = reproduce_config({**DEFAULTS, **cell.params})
    if cfg.optimizer != "sgd":
        return ("single", cell.key)
    return ("sgd", group_key(cfg))


def run_group(params_list: list[dict], cell_dirs: list[Path]) -> list[dict | Exception]:
    """A group of :func:`cell_group` captured at once as replicas
    (:func:`~sgdyn.validation.studies.capture_replicas.capture_windows`), then each cell run
    as :func:`run_cell` on its own capture; the sweep runner's group function. Every window
    is checkpointed into its cell's ``reproduce/capture.pt`` before any cell is analysed, and
    a cell whose checkpoint already holds its window (an interrupted run) is not retrained.
    A group of one (or the one cell left to capture on a resume) is captured the same way:
    replica r's trajectory does not depend on the other replicas (bit for bit on the CPU),
    so a cell gives the same window whichever cells it was run with; float32 rounding of the
    per-cell loop (``--no-batch``) differs and grows over a long run into another trajectory
    of the same seed (docs/scaling.md)."""
    from sgdyn.validation.studies.capture_replicas import capture_windows
    from sgdyn.validation.studies.reproduce.pipeline import has_capture, save_capture

    cfgs = [reproduce_config({**DEFAULTS, **p}) for p in params_list]
    todo = [i for i, (c, d) in enumerate(zip(cfgs, cell_dirs, strict=True))
            if not has_capture(Path(d) / "reproduce", c)]  # fmt: skip
    failed: dict[int, Exception] = {}  # replicas that diverged or did not learn
    if todo and all(cfgs[i].optimizer == "sgd" for i in todo):  # cell_group's SGD groups
        t0 = time.perf_counter()
        caps = capture_windows([cfgs[i] for i in todo])
        log.info("captured %d cells as replicas in %.1f s", len(todo), time.perf_counter() - t0)
        for i, cap in zip(todo, caps, strict=True):
            if isinstance(cap, Exception):
                failed[i] = cap
            else:
                save_capture(Path(cell_dirs[i]) / "reproduce", cfgs[i], cap)
        del caps
    out = []
    for i, (p, d) in enumerate(zip(params_list, cell_dirs, strict=True)):
        if i in failed:
            out.append(failed[i])
            continue
        try:
            out.append(run_cell(p, d))  # resumes from the checkpointed window
        except Exception as e:  # noqa: BLE001 - one cell's failure must not stop the group
            out.append(e)
    return out


def run_cell(params: dict, cell_dir: Path) -> dict:
    """The sweep runner's cell function (module docstring); a window checkpointed in
    ``cell_dir/reproduce`` (e.g. by :func:`run_group`) is analysed without training."""
    from sgdyn.simulator.from_network import from_network
    from sgdyn.validation.models import build_model
    from sgdyn.validation.probes.network_landscape import NetworkLandscape
    from sgdyn.validation.studies.mechanism import (
        epoch_batches,
        measure_diffusion,
        measure_ensemble,
    )
    from sgdyn.validation.studies.reproduce.pipeline import CHECKPOINT, run_reproduce

    from .ensemble import measure_minibatch_ensemble
    from .sim_network import simulate_from_network

    unknown = sorted(set(params) - set(REPRO_KEYS) - set(SUITE_KEYS) - {"key"})
    if unknown:
        raise ValueError(f"unknown cell parameters {unknown}")
    p = {**DEFAULTS, **params}
    cell_dir = Path(cell_dir)
    cfg = reproduce_config(p)
    timings = {}
    t0 = time.perf_counter()
    rsum = run_reproduce(cfg, cell_dir / "reproduce")
    timings["reproduce_s"] = time.perf_counter() - t0
    timings["capture_replicas"] = int(rsum.get("timings", {}).get("replicas", 1))
    rdir = cell_dir / "reproduce"
    with np.load(rdir / "arrays.npz", allow_pickle=False) as z:
        comps = z["components_top"]
        F_net = z["flat_F_ewidth"]
        var_net = z["flat_variance"]
    rec = _network_record(rsum, cfg)
    # ---- ensemble on the network, through the Landscape protocol ---------------------------
    t1 = time.perf_counter()
    st = torch.load(rdir / CHECKPOINT, map_location="cpu", weights_only=True)
    data = cfg.load_data()
    model = build_model(cfg.model, data.n_features, cfg.hidden)
    model.load_state_dict(st["model"])
    land = NetworkLandscape(model, st["probe"], data, batch_size=cfg.batch_size, seed=cfg.seed)
    K = int(min(p["ensemble_modes"], comps.shape[0], F_net.size))
    P = torch.as_tensor(comps[:K]).to(land.dtype)
    w0 = st["trajectory"][-1].to(land.dtype)
    F = np.asarray(F_net[:K], dtype=np.float64)
    Ffill = np.where(np.isfinite(F), F, np.nanmedian(F))
    # the per-mode ensemble of the mechanism study (one-direction Eq 9 fits of whole
    # minibatch profiles over one epoch's random partition) and its exact T_i(0) (Eq 17)
    amps = np.linspace(-0.5, 0.5, 9)[None] * Ffill[:, None]
    batches = epoch_batches(len(data), cfg.batch_size, 1, seed=cfg.seed)
    try:
        mech = measure_ensemble(land, w0, P, batches, amps)  # F may hold NaN (unbounded PC1)
    except (ValueError, RuntimeError) as e:
        # e.g. minibatch losses that underflow to 0 (no ln L to fit): the network's own
        # numbers stand, the ensemble claims read 'not measured'
        why = f"{type(e).__name__}: {e}".splitlines()[0]
        rec["mlf"] = {"error": f"ensemble not measured: {why}"}
        rec["sim"] = {"error": f"ensemble not measured: {why}"}
        rec["timings"] = {**timings, "ensemble_s": time.perf_counter() - t1}
        np.savez_compressed(cell_dir / "suite_arrays.npz", F_network=F_net, var_network=var_net)
        return rec
    T0 = measure_diffusion(land, w0, P, cfg.lr, batch_size=cfg.batch_size).T0
    # the cross-mode structure in the top-K subspace: K x K matrices M^mu by central
    # differences of minibatch gradients (the suite's own, :mod:`.ensemble`)
    ens = measure_minibatch_ensemble(
        land, w0, P, steps=p["ensemble_step"] * Ffill, max_batches=p["ensemble_batches"]
    )
    timings["ensemble_s"] = time.perf_counter() - t1
    d = slice(1, K)
    sig_th = np.sqrt(mech.sigma_theta2)
    rec["mlf"] = {
        "n_modes": K,
        "n_minibatches": int(mech.M.shape[0]),
        "sigma_theta_vs_F": _fit(F[d], sig_th[d]),
        "M0_vs_F": _fit(F[d], mech.M0[d]),
        "product_vs_F": _fit(F[d], mech.product[d]),
        "T0_vs_F": _fit(F[d], T0[d]),
        "fraction_negative_curvature": float(np.mean(mech.M[:, d] <= 0)),
        "median_fit_rms": float(np.median(mech.rms)),
    }
    # ---- simulator from the network -----------------------------------------------------------
    t2 = time.perf_counter()
    spe = int(st["steps_per_epoch"])
    T = int(st["trajectory"].shape[0])
    sim_arrays = {}
    alpha_sim = cfg.lr / (1.0 - 0.9) if cfg.optimizer == "momentum" else cfg.lr
    try:
        if cfg.optimizer == "adam":
            raise _Skip("the simulator integrates SGD; Adam's per-parameter steps have no alpha")
        spec = from_network(mech.M, mech.theta, mech.L0, M_cross=ens.M_cross, F=F)
        sim, sim_arrays = simulate_from_network(
            spec, alpha=alpha_sim, steps_per_epoch=spe, window_steps=T, replicas=p["replicas"],
            seed=cfg.seed, max_steps=p["sim_max_steps"],
            measured={"M": ens.M_cross, "grad_log": ens.grad / ens.L0[:, None], "L0": ens.L0},
        )  # fmt: skip
        sim["spec"] = {
            "N": spec.N, "L0": spec.L0, "L0_cv": spec.L0_cv, "sigma_off": spec.sigma_off,
            "theta1_0": spec.theta1_0, "floored_modes": spec.meta["floored_modes"],
            "offdiag_fit": spec.meta.get("offdiag_fit"),
        }  # fmt: skip
        sim["alpha"] = alpha_sim
        if cfg.optimizer == "momentum":
            sim["note"] = "momentum 0.9: SGD at the effective step alpha / (1 - 0.9)"
    except _Skip as e:
        sim = {"skipped": str(e)}
    except (ValueError, RuntimeError) as e:
        sim = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
    timings["simulator_s"] = time.perf_counter() - t2
    rec["sim"] = sim
    rec["timings"] = timings
    arrays = {"F_network": F_net, "var_network": var_net, "ensemble_M": mech.M,
              "ensemble_theta": mech.theta, "ensemble_L0": mech.L0, "ensemble_M0": mech.M0,
              "ensemble_sigma_theta2": mech.sigma_theta2, "ensemble_product": mech.product,
              "ensemble_M_cross": ens.M_cross, "T0": T0, **sim_arrays}  # fmt: skip
    np.savez_compressed(cell_dir / "suite_arrays.npz", **arrays)
    try:
        _panel(cell_dir / "panel.png", arrays, rec)
    except Exception as e:  # noqa: BLE001 - a figure must not fail the cell
        log.warning("panel for %s failed: %s", cell_dir.name, e)
    return rec


def _network_record(rsum: dict, cfg) -> dict:
    fl = rsum.get("flatness", {})
    eq = rsum.get("equilibrium", {})
    ph = rsum.get("phases", {})
    pca = rsum.get("pca", {})

    def num(v):
        return None if v is None or not np.isfinite(v) else float(v)

    return {
        "dataset": cfg.dataset,
        "per_class": cfg.per_class,
        "model": cfg.model,
        "hidden": list(cfg.hidden),
        "optimizer": cfg.optimizer,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "phases": {
            "transition_epoch": ph.get("transition_epoch"),
            "window_reason": ph.get("window_reason"),
            "fast_rate": num(ph.get("fast_rate")),
            "slow_rate": num(ph.get("slow_rate")),
        },
        "gamma": num(pca.get("gamma")),
        "gamma_err": num(pca.get("gamma_err_boot", pca.get("gamma_err"))),
        "psi": num(fl.get("psi")),
        "psi_err": num(fl.get("psi_err_boot", fl.get("psi_err"))),
        "psi_eq": num(eq.get("psi")),
        "psi_eq_err": num(eq.get("psi_err_boot", eq.get("psi_err"))),
        "equilibrium_error": eq.get("error"),
    }


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _panel(path: Path, a: dict, rec: dict) -> None:
    """Fig S3-style sigma^2 vs F panel of one cell: the network and the simulator."""
    from matplotlib.figure import Figure

    from sgdyn.validation.io.rundir import save_figure

    fig = Figure(figsize=(4.5, 3.6))
    ax = fig.subplots()
    F, v = a["F_network"][1:], a["var_network"][1:]
    ax.loglog(F, v, "o", ms=3, label=f"network psi={_f(rec['psi'])}")
    if "sim_var_network" in a:
        Fs = a["sim_F_network"][1:]
        ps = rec["sim"]["variants"]["network"].get("psi")
        ax.loglog(Fs, a["sim_var_network"][1:], "s", ms=3, mfc="none",
                  label=f"simulator-from-network psi={_f(ps)}")  # fmt: skip
    ax.set(xlabel="F_i", ylabel="sigma_i^2", title=f"{rec['dataset']} {rec['model']} "
           f"{rec['optimizer']} B={rec['batch_size']} a={rec['lr']}")  # fmt: skip
    ax.title.set_fontsize(8)
    ax.legend(fontsize=6)
    save_figure(fig, path)
