"""``sgdyn reproduce``: the paper's protocol end to end, written into a run directory.

Capture (784-50-50-10, B=50, alpha=0.1, a 10-epoch window in the exploration phase, PCA of
the 2,500 weights between the hidden layers), then the Fig 1 / Fig S1 analysis, then the
landscape stage (Fig 2, S2, Eq 16) when available. Files: ``summary.json``, ``arrays.npz``,
``fig*.png``, ``report.md``; ``capture.pt`` lets a rerun skip training (resumable).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sgdyn import __version__
from sgdyn.kernels import StreamingPCA
from sgdyn.theory import (
    cumulative_variance_excl_pc1,
    detect_transition,
    drift_diffusion,
    fit_power_law,
    spectrum_summary,
)
from sgdyn.validation.data import load_dataset
from sgdyn.validation.io.rundir import atomic_write_bytes, prepare_out_dir, write_json, write_npz
from sgdyn.validation.models import build_model
from sgdyn.validation.studies.capture import CaptureConfig, CaptureResult, capture_window

from . import figures as plots
from .null_models import null_models
from .report import write_report

log = logging.getLogger(__name__)

PAPER = {
    "gamma": "~2.6 (2-3) over ranks 20-200",
    "n90_excl_pc1": "35",
    "var1_over_var2": "much larger than 1 (PC1 drifts)",
    "window_epochs": "10",
    "psi": "~4",
}


@dataclass
class ReproduceConfig(CaptureConfig):
    rank_range: tuple[int, int] = (20, 200)
    n_theta_saved: int = 60
    quick: bool = False
    landscape: bool = True
    landscape_modes: int = 200  # PCA directions whose flatness is measured (Fig 2)
    langevin_steps: int = 6000  # cap on the equilibrium (Eq 16) run

    @classmethod
    def quick_defaults(cls, **overrides) -> ReproduceConfig:
        """A reduced protocol on scikit-learn's 8x8 digits for tests and CI (seconds)."""
        base = dict(
            dataset="digits",
            window_epochs=4,
            max_epochs=40,
            min_epochs=5,
            rank_range=(5, 60),
            n_theta_saved=55,
            quick=True,
        )
        base.update(overrides)
        return cls(**base)

    def as_dict(self) -> dict:
        d = super().as_dict()
        d["rank_range"] = list(self.rank_range)
        return d


def _capture_state(res: CaptureResult) -> dict:
    return {
        "config": res.config.as_dict(),
        "model": res.model.state_dict(),
        "trajectory": res.trajectory.cpu(),
        "loss_curve": res.loss_curve,
        "step_losses": res.step_losses,
        "window_start_epoch": res.window_start_epoch,
        "window_reason": res.window_reason,
        "steps_per_epoch": res.steps_per_epoch,
        "probe": res.probe,
        "timings": res.timings,
    }


def _load_capture(path: Path, cfg: ReproduceConfig) -> CaptureResult | None:
    if not path.exists():
        return None
    try:
        st = torch.load(path, map_location=cfg.device, weights_only=False)
    except Exception as e:  # a corrupt checkpoint is recomputed, not fatal
        log.warning("ignoring unreadable checkpoint %s (%s); recapturing", path, e)
        return None
    if st.get("config") != cfg.as_dict():
        return None
    data = load_dataset(cfg.dataset, cfg.data_root, classes=cfg.classes).to(cfg.device)
    model = build_model(cfg.model, data.n_features, cfg.hidden).to(cfg.device)
    model.load_state_dict(st["model"])
    traj = st["trajectory"].to(cfg.device)
    log.info("resuming from %s (training skipped)", path)
    return CaptureResult(
        config=cfg,
        model=model,
        data=data,
        probe=st["probe"],
        trajectory=traj,
        pca=StreamingPCA().fit(traj),
        loss_curve=np.asarray(st["loss_curve"]),
        step_losses=np.asarray(st["step_losses"]),
        phases=detect_transition(st["loss_curve"]),
        window_start_epoch=st["window_start_epoch"],
        window_reason=st["window_reason"],
        steps_per_epoch=st["steps_per_epoch"],
        timings=dict(st["timings"], resumed=True),
    )


def analyse_capture(res: CaptureResult, cfg: ReproduceConfig) -> tuple[dict, dict]:
    """Fig 1 and Fig S1 numbers (summary dict) and arrays from a captured window."""
    T = res.trajectory.shape[0]
    var = res.pca.explained_variance_.cpu().numpy()[: T - 1]  # rank <= T-1
    if not res.pca.total_variance_ > 0:
        raise RuntimeError(
            f"the probed weights {res.probe} did not move during the window (dead ReLUs after "
            "a too-large learning rate?); lower --lr or choose another --probe"
        )
    spec = spectrum_summary(var, rank_range=cfg.rank_range)
    lo, hi = cfg.rank_range
    fit = fit_power_law(np.arange(1, var.size + 1), var, x_range=(lo, min(hi, var.size)))
    cum = cumulative_variance_excl_pc1(var)
    k = min(cfg.n_theta_saved, var.size)
    theta = res.pca.transform(res.trajectory)[:, :k].cpu().numpy()
    block = max(1, res.steps_per_epoch // 10)
    dd = drift_diffusion(theta, block=block)
    spe = res.steps_per_epoch
    others = slice(1, k)
    ph = res.phases
    summary = {
        "pca": {
            **spec.as_dict(),
            "n_snapshots": int(T),
            "n_features": int(res.trajectory.shape[1]),
            "probe": res.probe,
            "total_variance": float(res.pca.total_variance_),
        },
        "phases": {
            "transition_epoch": ph.transition_epoch,
            "transition_region": None if ph.region is None else list(ph.region),
            "fast_rate": ph.fast_rate,
            "slow_rate": ph.slow_rate,
            "max_slow_rate": ph.max_slow_rate,
            "window_start_epoch": res.window_start_epoch,
            "window_end_epoch": res.window_start_epoch + cfg.window_epochs - 1,
            "window_reason": res.window_reason,
            "loss_at_window_start": float(res.loss_curve[res.window_start_epoch - 1]),
            "loss_at_window_end": float(res.loss_curve[-1]),
        },
        "dynamics": {
            "block_steps": block,
            "pc1": {
                "drift_velocity_per_epoch": float(dd.drift_velocity[0] * spe),
                "drift_ratio": float(dd.drift_ratio[0]),
                "corr_time_epochs": float(dd.corr_time_steps[0] / spe),
                "corr_time_censored": bool(dd.censored[0]),
            },
            "modes_2_to_k": {
                "k": k,
                "median_drift_ratio": float(np.median(dd.drift_ratio[others])),
                "median_corr_time_epochs": float(np.median(dd.corr_time_steps[others] / spe)),
                "fraction_censored": float(np.mean(dd.censored[others])),
            },
        },
    }
    arrays = {
        "variances": var,
        "cumulative_excl_pc1": cum,
        "theta": theta.astype(np.float32),
        "loss_curve": res.loss_curve,
        "loss_rate": ph.rate,
        "step_losses": res.step_losses,
        "components_top": res.pca.components_[:k].cpu().numpy().astype(np.float32),
        "mean_weights": res.pca.mean_.cpu().numpy(),
        "drift_ratio": dd.drift_ratio,
        "corr_time_steps": dd.corr_time_steps,
        "drift_velocity": dd.drift_velocity,
        "diffusion": dd.diffusion,
    }
    summary["nulls"] = null_models(
        res.trajectory,
        {
            "var1_over_var2": spec.var1_over_var2,
            "gamma": spec.gamma,
            "n90_excl_pc1": spec.n90_excl_pc1,
            "fraction_pc1": spec.fraction_pc1,
            "pc1_drift_ratio": dd.drift_ratio[0],
            "pc1_corr_time_steps": dd.corr_time_steps[0],
            "modes_median_drift_ratio": np.median(dd.drift_ratio[others]),
            "modes_median_corr_time_steps": np.median(dd.corr_time_steps[others]),
        },
        block=block,
        n_modes=k,
        rank_range=cfg.rank_range,
        steps_per_epoch=spe,
        seed=cfg.seed,
    )
    summary["_fit_intercept"] = fit.intercept
    return summary, arrays


def make_figures(out: Path, summary: dict, arrays: dict, res: CaptureResult, cfg) -> list:
    spe = res.steps_per_epoch
    th = arrays["theta"]
    figs = [
        (
            plots.fig1a_spectrum(
                out / "fig1a_spectrum.png",
                arrays["variances"],
                summary["pca"]["gamma"],
                summary["_fit_intercept"],
                cfg.rank_range,
            ),
            "Fig 1A: rank-ordered PCA variance and power-law fit",
        ),
        (
            plots.fig1b_cumulative(
                out / "fig1b_cumulative.png",
                arrays["cumulative_excl_pc1"],
                summary["pca"]["n90_excl_pc1"],
            ),
            "Fig 1B: cumulative variance excluding PC1",
        ),
        (
            plots.fig_trajectory(
                out / "fig1c_theta1_theta2.png",
                th[:, 0],
                th[:, 1],
                r"$\theta_1$",
                r"$\theta_2$",
                "C  drift along PC1",
                spe,
            ),
            "Fig 1C: trajectory in the (theta1, theta2) plane",
        ),
    ]
    if th.shape[1] >= 50:
        figs.append(
            (
                plots.fig_trajectory(
                    out / "fig1d_theta49_theta50.png",
                    th[:, 48],
                    th[:, 49],
                    r"$\theta_{49}$",
                    r"$\theta_{50}$",
                    "D  diffusion",
                    spe,
                ),
                "Fig 1D: trajectory in the (theta49, theta50) plane",
            )
        )
    else:
        figs.append(
            (
                plots.fig_trajectory(
                    out / "fig1d_theta_last.png",
                    th[:, -2],
                    th[:, -1],
                    rf"$\theta_{{{th.shape[1] - 1}}}$",
                    rf"$\theta_{{{th.shape[1]}}}$",
                    "D  diffusion",
                    spe,
                ),
                "Fig 1D: trajectory in the plane of the two last saved modes",
            )
        )
    ph = summary["phases"]
    figs.append(
        (
            plots.figs1_phases(
                out / "figS1_phases.png",
                arrays["loss_curve"],
                ph["transition_epoch"],
                ph["transition_region"],
                (ph["window_start_epoch"], ph["window_end_epoch"]),
            ),
            "Fig S1: full training loss per epoch, transition and PCA window",
        )
    )
    return figs


def run_reproduce(
    cfg: ReproduceConfig, out: Path, *, force: bool = False, progress: bool = True
) -> dict:
    """Run the whole protocol into ``out`` and return the summary dict."""
    out = Path(out)
    cfg_dict = cfg.as_dict()
    if prepare_out_dir(out, cfg_dict, force):
        log.info("%s already holds this finished run; nothing to do (use --force to redo)", out)
        return json.loads((out / "summary.json").read_text())
    t0 = time.perf_counter()
    ckpt = out / "capture.pt"
    res = None if force else _load_capture(ckpt, cfg)
    if res is None:
        res = capture_window(cfg, progress=progress)
        import io

        buf = io.BytesIO()
        torch.save(_capture_state(res), buf)
        atomic_write_bytes(ckpt, buf.getvalue())
    summary, arrays = analyse_capture(res, cfg)
    figures = make_figures(out, summary, arrays, res, cfg)
    summary.pop("_fit_intercept")
    sections = []
    if cfg.landscape:
        stage = _landscape_stage(res, cfg, out)
        if stage is not None:
            summary.update(stage.summary)
            arrays.update(stage.arrays)
            figures.extend(stage.figures)
            sections.append(stage.markdown)
    summary["config"] = cfg_dict
    summary["data"] = {"name": res.data.name, "source": res.data.source, "n_samples": len(res.data)}
    summary["timings"] = dict(res.timings, total_s=time.perf_counter() - t0)
    summary["environment"] = {
        "sgdyn": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(cfg.device),
    }
    summary["paper"] = PAPER
    write_npz(out / "arrays.npz", arrays)
    write_report(out / "report.md", summary, figures, sections)
    write_json(out / "summary.json", summary)  # written last: its presence marks a finished run
    return summary


def _landscape_stage(res: CaptureResult, cfg: ReproduceConfig, out: Path):
    from .landscape_stage import run_landscape_stage

    ctx = ReproduceContext(
        model=res.model,
        data=res.data,
        probe=res.probe,
        pca=res.pca,
        trajectory=res.trajectory,
        config=cfg,
        out_dir=out,
        device=torch.device(cfg.device),
        steps_per_epoch=res.steps_per_epoch,
    )
    return run_landscape_stage(ctx)


@dataclass
class ReproduceContext:
    """What the analysis stages after the capture receive."""

    model: torch.nn.Module
    data: object
    probe: str
    pca: StreamingPCA
    trajectory: torch.Tensor
    config: ReproduceConfig
    out_dir: Path
    device: torch.device
    steps_per_epoch: int


def config_from_args(args) -> ReproduceConfig:
    fields = {f.name for f in dataclasses.fields(ReproduceConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if "hidden" in given:
        given["hidden"] = tuple(given["hidden"])
    if "rank_range" in given:
        given["rank_range"] = tuple(given["rank_range"])
    if "classes" in given:
        given["classes"] = tuple(given["classes"])
    if getattr(args, "quick", False):
        return ReproduceConfig.quick_defaults(**given)
    return ReproduceConfig(**given)
