"""``sgdyn reproduce``: the paper's protocol end to end, written into a run directory.

Capture (784-50-50-10, B=50, alpha=0.1, a 10-epoch window in the exploration phase, PCA of
the 2,500 weights between the hidden layers), then the Fig 1 / Fig S1 analysis, then the
landscape stage (Fig 2, S2, Eq 16) when available. Files: ``summary.json``, ``arrays.npz``,
``fig*.png``, ``report.md``; ``capture.pt`` lets a rerun skip training (resumable).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sgdyn.kernels import StreamingPCA
from sgdyn.theory import (
    cumulative_variance_excl_pc1,
    detect_transition,
    drift_diffusion,
    fit_power_law,
    spectrum_summary,
)
from sgdyn.validation.io.rundir import RunDir, environment_info
from sgdyn.validation.io.tensors import owned_tree
from sgdyn.validation.models import build_model
from sgdyn.validation.studies.capture import (
    CaptureConfig,
    CaptureResult,
    capture_window,
    data_fingerprint,
)
from sgdyn.validation.training.loop import OptimConfig

from . import figures as plots
from .null_models import null_models
from .report import report_markdown

log = logging.getLogger(__name__)

PAPER = {
    "gamma": "~2.6 (2-3) over ranks 20-200",
    "n90_excl_pc1": "35",
    "var1_over_var2": "much larger than 1 (PC1 drifts)",
    "window_epochs": "10",
    "psi": "~4",
}


QUICK = dict(
    dataset="digits",
    window_epochs=4,
    max_epochs=40,
    min_epochs=5,
    rank_range=(5, 60),
    n_theta_saved=55,
    landscape_modes=30,
    langevin_steps=600,
    quick=True,
)  # a reduced protocol on scikit-learn's 8x8 digits for tests and CI (seconds)

CHECKPOINT = "capture.pt"
CHECKPOINT_FORMAT = 2


@dataclass
class ReproduceConfig(CaptureConfig):
    rank_range: tuple[int, int] = (20, 200)
    n_theta_saved: int = 60
    quick: bool = False
    landscape: bool = True
    landscape_modes: int = 200  # PCA directions whose flatness is measured (Fig 2)
    langevin_steps: int = 6000  # cap on the equilibrium (Eq 16) run
    mechanism: bool = True  # the MLF ensemble / Eq 14 / active temperature stage (Figs 3, 5)
    mechanism_epochs: int = 2  # epoch partitions whose minibatches form the ensemble (Fig 3)

    @classmethod
    def quick_defaults(cls, **overrides) -> ReproduceConfig:
        """:data:`QUICK` with ``overrides`` (options given explicitly win)."""
        return cls(**{**QUICK, **overrides})

    def validate(self) -> None:
        super().validate()
        lo, hi = self.rank_range
        if not 1 <= lo < hi:
            raise ValueError(f"--rank-range needs 1 <= LO < HI, got {lo},{hi}")
        if self.landscape_modes < 4:
            raise ValueError("--landscape-modes must be >= 4 (psi needs >= 3 diffusive modes)")
        if self.langevin_steps < 1 or self.n_theta_saved < 2:
            raise ValueError("--langevin-steps must be >= 1 and n_theta_saved >= 2")
        if self.mechanism_epochs < 1:
            raise ValueError(f"--mechanism-epochs must be >= 1, got {self.mechanism_epochs}")


def _capture_state(res: CaptureResult, cfg: ReproduceConfig) -> dict:
    """The checkpoint: plain types and tensors only (loadable with ``weights_only=True``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "capture_config": cfg.capture_key(),
        "data_fingerprint": res.data_fingerprint,
        "model": res.model.state_dict(),
        "trajectory": res.trajectory.cpu(),
        "loss_curve": torch.as_tensor(np.asarray(res.loss_curve, dtype=np.float64)),
        "step_losses": torch.as_tensor(np.asarray(res.step_losses)),
        "window_start_epoch": int(res.window_start_epoch),
        "window_reason": str(res.window_reason),
        "steps_per_epoch": int(res.steps_per_epoch),
        "probe": str(res.probe),
        "timings": {k: float(v) for k, v in res.timings.items()},
        "checkpoints": [{k: v.cpu() for k, v in c.items()} for c in res.checkpoints],
        "checkpoint_steps": [int(t) for t in res.checkpoint_steps],
    }


def _write_capture(rd: RunDir, res: CaptureResult, cfg: ReproduceConfig) -> None:
    """The checkpoint file of ``rd``: each tensor saved with its own elements only (a replica's
    window is a view into the group's (R, steps, N) buffer)."""
    buf = io.BytesIO()
    torch.save(owned_tree(_capture_state(res, cfg)), buf)
    rd.write_bytes(CHECKPOINT, buf.getvalue())


def save_capture(out: Path, cfg: ReproduceConfig, res: CaptureResult) -> None:
    """Checkpoint a window captured elsewhere into the run folder ``out`` (made ready as
    :func:`run_reproduce` does), so a later ``run_reproduce(cfg, out)`` resumes from it
    instead of training: a group of replicas keeps every window even if the process dies
    while the first cell is analysed."""
    if res.config.capture_key() != cfg.capture_key():
        raise ValueError("the capture was made with other capture settings than its config")
    rd = RunDir(out, cfg.as_dict(), command="reproduce", keep=(CHECKPOINT,))
    if rd.check() == "done":
        return
    rd.start()
    _write_capture(rd, res, cfg)


def has_capture(out: Path, cfg: ReproduceConfig) -> bool:
    """Whether the run folder ``out`` holds a checkpointed window with ``cfg``'s capture
    settings (the data fingerprint is checked when it is loaded)."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return False
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: not a usable checkpoint
        return False
    return (
        isinstance(st, dict)
        and st.get("format") == CHECKPOINT_FORMAT
        and st.get("capture_config") == cfg.capture_key()
    )


def _load_capture(path: Path, cfg: ReproduceConfig, data) -> CaptureResult | None:
    """The checkpointed capture if it was made with these capture settings on this data.

    Loaded with ``weights_only=True`` (a run folder from someone else cannot run code); the
    settings are compared before anything else, then the data fingerprint."""
    if not path.exists():
        return None
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unreadable or not a plain checkpoint: recomputed, never executed
        log.warning("ignoring %s (%s); recapturing", path, str(e).split("\n")[0][:200])
        return None
    if not isinstance(st, dict) or st.get("format") != CHECKPOINT_FORMAT:
        log.warning(
            "ignoring %s (not an sgdyn %d checkpoint); recapturing", path, CHECKPOINT_FORMAT
        )
        return None
    if st.get("capture_config") != cfg.capture_key():
        log.info("%s holds another capture's settings; recapturing", path)
        return None
    fp = data_fingerprint(data)
    if st.get("data_fingerprint") != fp:
        log.warning("the data changed since %s was written (fingerprint); recapturing", path)
        return None
    model = build_model(cfg.model, data.n_features, cfg.hidden).to(cfg.device)
    model.load_state_dict(st["model"])
    traj = st["trajectory"].to(cfg.device)
    loss_curve = st["loss_curve"].numpy()
    log.info("resuming from %s (training skipped)", path)
    return CaptureResult(
        config=cfg,
        model=model,
        data=data,
        probe=st["probe"],
        trajectory=traj,
        pca=StreamingPCA().fit(traj),
        loss_curve=loss_curve,
        step_losses=st["step_losses"].numpy(),
        phases=detect_transition(loss_curve),
        window_start_epoch=st["window_start_epoch"],
        window_reason=st["window_reason"],
        steps_per_epoch=st["steps_per_epoch"],
        timings=dict(st["timings"], resumed=True),
        data_fingerprint=fp,
        checkpoints=[
            {k: v.to(cfg.device) for k, v in c.items()} for c in st.get("checkpoints", [])
        ],
        checkpoint_steps=list(st.get("checkpoint_steps", [])),
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
    cfg: ReproduceConfig,
    out: Path,
    *,
    force: bool = False,
    progress: bool = False,
    capture: CaptureResult | None = None,
) -> dict:
    """Run the whole protocol into the run directory ``out`` and return the summary.

    Options and data are checked before the folder is touched. ``capture.pt`` (keyed on the
    capture settings and a fingerprint of the data) lets a rerun skip training, also under
    ``force`` and when only analysis options (rank range, landscape modes, ...) changed.
    ``capture``: a window captured elsewhere with these capture settings on this data (e.g.
    one of R replicas trained together by
    :func:`~sgdyn.validation.studies.capture_replicas.capture_windows`); it is checkpointed
    and analysed instead of training here (refused if its settings or data differ)."""
    cfg.validate()
    if capture is not None and capture.config.capture_key() != cfg.capture_key():
        raise ValueError("the capture handed to run_reproduce was made with other capture "
                         "settings than its config; capture it with this config")  # fmt: skip
    rd = RunDir(out, cfg.as_dict(), command="reproduce", force=force, keep=(CHECKPOINT,))
    if rd.check() == "done":  # reads only; a different finished run is refused here
        log.info("%s already holds this finished run; nothing to do (use --force to redo)", out)
        return rd.summary()
    data = cfg.load_data()
    OptimConfig(cfg.optimizer, cfg.lr, cfg.batch_size).validate(len(data))
    if cfg.probe is not None:
        names = [
            n for n, _ in build_model(cfg.model, data.n_features, cfg.hidden).named_parameters()
        ]
        if cfg.probe not in names:
            raise ValueError(f"--probe {cfg.probe}: the model has no parameter of that name; "
                             f"choose one of {names}")  # fmt: skip
    data = data.to(cfg.device)
    if capture is not None and capture.data_fingerprint != data_fingerprint(data):
        raise ValueError("the capture handed to run_reproduce was made on other data (its "
                         "fingerprint differs); capture it on this config's data")  # fmt: skip
    rd.start()
    out = rd.path
    t0 = time.perf_counter()
    ckpt = out / CHECKPOINT
    res = _load_capture(ckpt, cfg, data)
    if res is None:
        res = capture if capture is not None else capture_window(cfg, progress=progress, data=data)
        _write_capture(rd, res, cfg)
    summary, arrays = analyse_capture(res, cfg)
    figures = make_figures(out, summary, arrays, res, cfg)
    summary.pop("_fit_intercept")
    sections = []
    stage = None
    if cfg.landscape:
        stage = _landscape_stage(res, cfg, out)
        if stage is not None:
            summary.update(stage.summary)
            arrays.update(stage.arrays)
            figures.extend(stage.figures)
            sections.append(stage.markdown)
    if cfg.mechanism:
        mech = _mechanism_stage(res, cfg, out, stage, summary)
        summary.update(mech.summary)
        arrays.update(mech.arrays)
        figures.extend(mech.figures)
        sections.append(mech.markdown)
    summary["config"] = cfg.as_dict()
    summary["data"] = {
        "name": res.data.name,
        "source": res.data.source,
        "n_samples": len(res.data),
        "fingerprint_sha256": res.data_fingerprint,
    }
    summary["timings"] = dict(res.timings, total_s=time.perf_counter() - t0)
    summary["environment"] = environment_info(device=str(cfg.device))
    summary["paper"] = PAPER
    return rd.finish(
        summary,
        arrays=arrays,
        report=report_markdown(summary, figures, sections),
        title="sgdyn reproduce: SGD trajectory PCA and landscape (Feng & Tu)",
    )


def _landscape_stage(res: CaptureResult, cfg: ReproduceConfig, out: Path):
    from .landscape_stage import run_landscape_stage

    return run_landscape_stage(_context(res, cfg, out))


def _mechanism_stage(res: CaptureResult, cfg: ReproduceConfig, out: Path, stage, summary):
    from .mechanism_stage import run_mechanism_stage

    ctx = _context(res, cfg, out)
    F = psi = None
    if stage is not None and "flat_F_ewidth" in stage.arrays:
        F = stage.arrays["flat_F_ewidth"]
        psi = stage.summary["flatness"]["psi"]
    t0 = time.perf_counter()
    out_stage = run_mechanism_stage(
        ctx,
        F=F,
        psi=psi,
        window_steps=cfg.window_epochs * res.steps_per_epoch,
        phases=summary.get("phases"),
        checkpoints=res.checkpoints,
        checkpoint_steps=res.checkpoint_steps,
    )
    out_stage.summary["mechanism"]["stage_time_s"] = time.perf_counter() - t0
    return out_stage


def _context(res: CaptureResult, cfg: ReproduceConfig, out: Path) -> ReproduceContext:
    return ReproduceContext(
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
