"""Variance-flatness relation over a grid of minibatch sizes B and learning rates alpha (Fig 2D).

For every (B, alpha) cell: train, capture a window in the exploration phase, measure the
flatness F_i of the first PCA directions (e-width and quadratic fit) around the window's last
snapshot and fit sigma_i^2 ~ F_i^-psi over the diffusive modes i >= 2 (Eq 8). ``run_grid``
runs the cells through the sweep runner (the cells sharing B train together as replicas;
separate processes with ``jobs > 1``, or a Ray cluster) into a run directory: summary.json,
arrays.npz, fig2d_grid.png, report.md and report.html.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgdyn.validation.io.config import StudyConfig
from sgdyn.validation.io.rundir import RunDir, write_npz
from sgdyn.validation.sweeps import Cell, cell_resources, raise_if_failed, run_cells
from sgdyn.validation.sweeps.runner import cell_dir

NAME = "flatness-grid"


def run_cell(job: dict, cell_dir: Path | None = None) -> dict:
    """One (B, alpha) cell: capture, flatness, psi. A sweep-runner cell function: the
    per-mode arrays go to ``cell_dir/arrays.npz``, the returned record is JSON."""
    from sgdyn.validation.studies.capture import CaptureConfig, capture_window

    t0 = time.perf_counter()
    cap = capture_window(CaptureConfig(**job["capture"]), progress=False)
    return analyse_cell(cap, job, cell_dir, time.perf_counter() - t0)


def run_group(jobs: list[dict], cell_dirs: list[Path]) -> list[dict | Exception]:
    """Cells that share B and the model, captured at once as replicas
    (:func:`~sgdyn.validation.studies.capture_replicas.capture_windows`), then analysed one by
    one as :func:`run_cell` does; a group-runner function of the sweep runner."""
    from sgdyn.validation.studies.capture import CaptureConfig
    from sgdyn.validation.studies.capture_replicas import capture_windows

    t0 = time.perf_counter()
    caps = capture_windows([CaptureConfig(**j["capture"]) for j in jobs])
    t_cap = (time.perf_counter() - t0) / len(jobs)
    out = []
    for cap, job, d in zip(caps, jobs, cell_dirs, strict=True):
        if isinstance(cap, Exception):
            out.append(cap)
            continue
        try:
            out.append(analyse_cell(cap, job, d, t_cap))
        except Exception as e:  # noqa: BLE001 - one cell's failure must not stop the group
            out.append(e)
    return out


def cell_group(cell: Cell) -> tuple:
    """Cells with equal keys train together as replicas (same B, model, data, window)."""
    from sgdyn.validation.studies.capture import CaptureConfig
    from sgdyn.validation.studies.capture_replicas import group_key

    return group_key(CaptureConfig(**cell.params["capture"]))


def analyse_cell(cap, job: dict, cell_dir: Path | None, time_capture_s: float) -> dict:
    """Flatness and psi of one captured window; arrays to ``cell_dir/arrays.npz``."""
    from sgdyn.validation.probes.network_landscape import NetworkLandscape
    from sgdyn.validation.studies.reproduce.landscape_stage import analyse_flatness

    cfg = cap.config
    t1 = time.perf_counter()
    land = NetworkLandscape(cap.model, cap.probe, cap.data, batch_size=cfg.batch_size)
    w0 = cap.trajectory[-1].to(land.dtype)
    n = min(job["n_modes"], cap.pca.components_.shape[0])
    summ, arr = analyse_flatness(
        land, w0, cap.pca.components_[:n], cap.pca.explained_variance_, tol=job["tol"]
    )
    t2 = time.perf_counter()
    arrays = {
        "F": arr["flat_F_ewidth"],
        "F_quadratic": arr["flat_F_quadratic"],
        "variance": arr["flat_variance"],
    }
    if cell_dir is not None:
        write_npz(Path(cell_dir) / "arrays.npz", arrays)
    return {
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "window_start_epoch": cap.window_start_epoch,
        "window_reason": cap.window_reason,
        "summary": summ,
        "time_capture_s": time_capture_s,
        "time_landscape_s": t2 - t1,
    }


def plot_grid(rd, results: list[dict]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for r in results:
        F, v = r["F"][1:], r["variance"][1:]
        s = r["summary"]
        ax.loglog(
            F,
            v,
            "o",
            ms=3,
            label=f"B={r['batch_size']}, a={r['lr']:g}: psi={s['psi']:.2f}+-{s['psi_err']:.2f}",
        )
    ax.set(xlabel="flatness F_i", ylabel="variance sigma_i^2", title="Fig 2D: i >= 2")
    ax.legend(fontsize=7)
    return rd.save_figure(fig, "fig2d_grid.png")


@dataclass
class GridConfig(StudyConfig):
    """Settings of a (B, alpha) grid; every cell trains with the same data, model and seed."""

    dataset: str = "mnist5k"
    data_root: str | None = None
    model: str = "mlp"
    batch_sizes: tuple[int, ...] = (25, 50, 100)
    lrs: tuple[float, ...] = (0.05, 0.1)
    seed: int = 0
    window_epochs: int = 10
    window_start: int | None = None
    max_epochs: int = 200
    landscape_modes: int = 100
    tol: float = 1e-3
    device: str = "auto"
    quick: bool = False

    def validate(self) -> None:
        grid_jobs(self, threads=1)


# --quick: digits, B in {50, 100}, alpha = 0.1, window after epoch 4, 2 epochs, 12 modes
QUICK = dict(dataset="digits", batch_sizes=(50, 100), lrs=(0.1,), window_epochs=2,
             window_start=4, max_epochs=5, landscape_modes=12)  # fmt: skip


def grid_jobs(cfg: GridConfig, threads: int = 1) -> list[dict]:
    """One job (a plain dict, picklable for worker processes) per (B, alpha) cell."""
    if not cfg.batch_sizes or not cfg.lrs:
        raise ValueError("give at least one batch size and one learning rate")
    if any(b < 1 or b != int(b) for b in cfg.batch_sizes):
        raise ValueError(f"batch sizes must be positive integers, got {list(cfg.batch_sizes)}")
    if any(not a > 0 for a in cfg.lrs):
        raise ValueError(f"learning rates must be positive, got {list(cfg.lrs)}")
    if threads < 0:
        raise ValueError("--threads must be >= 0")
    if cfg.landscape_modes < 4:
        raise ValueError("--landscape-modes must be >= 4 (psi needs >= 3 diffusive modes)")
    jobs = [
        {
            "capture": {
                "dataset": cfg.dataset,
                "data_root": cfg.data_root,
                "model": cfg.model,
                "lr": float(a),
                "batch_size": int(b),
                "seed": cfg.seed,
                "window_epochs": cfg.window_epochs,
                "window_start": cfg.window_start,
                "max_epochs": max(cfg.max_epochs, 5),
                "min_epochs": min(5, cfg.max_epochs),
                "device": cfg.device,
            },
            "n_modes": cfg.landscape_modes,
            "tol": cfg.tol,
            "threads": threads,
        }
        for b in cfg.batch_sizes
        for a in cfg.lrs
    ]
    from sgdyn.validation.studies.capture import CaptureConfig

    for j in jobs:
        CaptureConfig(**j["capture"]).validate()
    return jobs


def run_grid(
    cfg: GridConfig,
    out,
    *,
    force: bool = False,
    progress: bool = False,
    jobs: int = 1,
    threads: int = 1,
    engine: str = "local",
    batch: bool = True,
    **engine_options,
) -> dict:
    """Run every cell through the sweep runner (``engine``, ``jobs`` processes, ``threads``
    torch threads each) into the run directory ``out``; return the summary (the finished one
    if ``out`` already holds it). Finished cells (``out/cells/<key>``) are not rerun.
    ``batch``: the cells that share B and the model train together as replicas
    (:func:`run_group`, one task per group); False: one task per cell (:func:`run_cell`)."""
    if jobs < 1:
        raise ValueError("--jobs must be >= 1")
    cells = grid_jobs(cfg, threads)
    rd = RunDir(out, cfg.as_dict(), command=NAME, force=force)
    if rd.start():
        return rd.summary()
    t0 = time.perf_counter()
    # what a Ray task asks for (the local engine ignores it): one GPU per task on CUDA unless
    # --gpus-per-cell says otherwise
    resources = cell_resources(cfg.device, threads)
    cell_list = [
        Cell(f"B{j['capture']['batch_size']}_lr{j['capture']['lr']:g}", j, resources) for j in cells
    ]
    done = run_cells(
        run_cell,
        cell_list,
        rd.path,
        engine=engine,
        jobs=jobs,
        threads=max(1, threads),
        force=force,
        progress=progress,
        group_by=cell_group if batch else None,
        group_fn=run_group if batch else None,
        **engine_options,
    )
    raise_if_failed(done, out, "grid cells")
    results = []
    for r in done:
        with np.load(cell_dir(Path(out), r.key) / "arrays.npz") as z:
            results.append({**r.result, **{k: z[k] for k in z.files}})
    wall = time.perf_counter() - t0
    fig = plot_grid(rd, results)
    arrays = {}
    for r in results:
        tag = f"B{r['batch_size']}_lr{r['lr']:g}"
        for k in ("F", "F_quadratic", "variance"):
            arrays[f"{k}_{tag}"] = np.asarray(r[k])
    rows = []
    for r in results:
        s = r["summary"]
        rows.append(
            {
                "batch_size": r["batch_size"],
                "lr": r["lr"],
                "psi": s["psi"],
                "psi_err": s["psi_err"],
                "psi_err_boot": s["psi_err_boot"],
                "psi_quadratic": s["psi_quadratic"],
                "psi_quadratic_err": s["psi_quadratic_err"],
                "agreement": s["agreement"],
                "L0": s["L0"],
                "n_modes": s["n_modes"],
                "window_start_epoch": r["window_start_epoch"],
                "time_capture_s": r["time_capture_s"],
                "time_landscape_s": r["time_landscape_s"],
            }
        )
    summary = {"jobs": jobs, "wall_s": wall, "runs": rows, "paper_psi": 4.0}
    summary["sweep"] = {"engine": engine, "batched_replicas": bool(batch)}
    lines = [
        "# Variance-flatness exponent over (B, alpha) (Fig 2D, Eq 8)",
        "",
        f"dataset {cfg.dataset}, model {cfg.model}, seed {cfg.seed}; modes i >= 2 "
        f"of the first {cfg.landscape_modes}; w0 = last snapshot of each window. "
        "Paper: psi ~ 4.",
        "",
        "| B | alpha | psi (e-width) | psi (quadratic F) | F_q/F_e median | L0 | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch_size']} | {r['lr']:g} | {r['psi']:.2f} +- {r['psi_err']:.2f} | "
            f"{r['psi_quadratic']:.2f} +- {r['psi_quadratic_err']:.2f} | "
            f"{r['agreement']['median_ratio_quadratic_over_ewidth']:.3f} | {r['L0']:.3g} | "
            f"{r['time_capture_s'] + r['time_landscape_s']:.1f} |"
        )
    lines += ["", f"Wall time {wall:.1f} s with {jobs} process(es).", "", f"![]({fig})"]
    summary["environment"] = {"device": cfg.device, "jobs": jobs, "threads_per_job": threads}
    return rd.finish(
        summary, arrays=arrays, report="\n".join(lines) + "\n",
        title="sgdyn flatness-grid: psi over (B, alpha)",
    )  # fmt: skip
