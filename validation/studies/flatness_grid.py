"""Variance-flatness relation over a grid of minibatch sizes B and learning rates alpha (Fig 2D).

For every (B, alpha) cell: train, capture a window in the exploration phase, measure the
flatness F_i of the first PCA directions (e-width and quadratic fit) around the window's last
snapshot and fit sigma_i^2 ~ F_i^-psi over the diffusive modes i >= 2 (Eq 8). ``run_grid``
runs the cells (in separate processes with ``jobs > 1``) and writes summary.json, arrays.npz,
fig2d_grid.png and report.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sgdyn.validation.io.rundir import atomic_write_bytes, prepare_out_dir, write_json, write_npz
from sgdyn.validation.sweeps import Cell, run_cells
from sgdyn.validation.sweeps.runner import cell_dir


def run_cell(job: dict, cell_dir: Path | None = None) -> dict:
    """One (B, alpha) cell: capture, flatness, psi. A sweep-runner cell function: the
    per-mode arrays go to ``cell_dir/arrays.npz``, the returned record is JSON."""
    from sgdyn.validation.probes.network_landscape import NetworkLandscape
    from sgdyn.validation.studies.capture import CaptureConfig, capture_window
    from sgdyn.validation.studies.reproduce.landscape_stage import analyse_flatness

    t0 = time.perf_counter()
    cfg = CaptureConfig(**job["capture"])
    cap = capture_window(cfg, progress=False)
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
        "time_capture_s": t1 - t0,
        "time_landscape_s": t2 - t1,
    }


def plot_grid(out: Path, results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
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
    fig.tight_layout()
    fig.savefig(out / "fig2d_grid.png", dpi=110)
    plt.close(fig)


def grid_jobs(
    *,
    dataset: str,
    data_root,
    model: str,
    batch_sizes,
    lrs,
    seed: int,
    window_epochs: int,
    window_start,
    max_epochs: int,
    n_modes: int,
    tol: float,
    threads: int,
    device: str = "cpu",
) -> list[dict]:
    """One job (a plain dict, picklable for worker processes) per (B, alpha) cell."""
    if not batch_sizes or not lrs:
        raise ValueError("give at least one batch size and one learning rate")
    if any(b < 1 or b != int(b) for b in batch_sizes):
        raise ValueError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if any(not a > 0 for a in lrs):
        raise ValueError(f"learning rates must be positive, got {list(lrs)}")
    if threads < 1:
        raise ValueError("--threads must be >= 1")
    if n_modes < 4:
        raise ValueError("--n-modes must be >= 4 (psi needs >= 3 diffusive modes)")
    return [
        {
            "capture": {
                "dataset": dataset,
                "data_root": data_root,
                "model": model,
                "lr": float(a),
                "batch_size": int(b),
                "seed": seed,
                "window_epochs": window_epochs,
                "window_start": window_start,
                "max_epochs": max(max_epochs, 5),
                "min_epochs": min(5, max_epochs),
                "device": device,
            },
            "n_modes": n_modes,
            "tol": tol,
            "threads": threads,
        }
        for b in batch_sizes
        for a in lrs
    ]


def run_grid(
    jobs: list[dict],
    out: Path,
    meta: dict,
    n_workers: int = 1,
    force: bool = False,
    engine: str = "local",
) -> tuple[dict | None, list[str]]:
    """Run every cell (``n_workers`` processes), write the grid's files into ``out``; return
    the summary and the report's table lines (``(None, [])`` when ``out`` already holds this
    finished grid)."""
    if n_workers < 1:
        raise ValueError("--jobs must be >= 1")
    out = Path(out)
    config = {**meta, "cells": jobs}
    if prepare_out_dir(out, config, force):
        return None, []
    t0 = time.perf_counter()
    cells = [
        Cell(f"B{j['capture']['batch_size']}_lr{j['capture']['lr']:g}", j, {"cpu": j["threads"]})
        for j in jobs
    ]
    done = run_cells(
        run_cell, cells, out, engine=engine, jobs=n_workers, threads=jobs[0]["threads"], force=force
    )
    failed = [r for r in done if r.status == "failed"]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(done)} grid cells failed (first: {failed[0].key}: "
            f"{failed[0].error}); the finished cells are kept in {out}/cells and a rerun "
            "retries only the failed ones"
        )
    results = []
    for r in done:
        with np.load(cell_dir(out, r.key) / "arrays.npz") as z:
            results.append({**r.result, **{k: z[k] for k in z.files}})
    wall = time.perf_counter() - t0
    plot_grid(out, results)
    arrays = {}
    for r in results:
        tag = f"B{r['batch_size']}_lr{r['lr']:g}"
        for k in ("F", "F_quadratic", "variance"):
            arrays[f"{k}_{tag}"] = np.asarray(r[k])
    write_npz(out / "arrays.npz", arrays)
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
    summary = {
        **meta,
        "config": config,
        "jobs": n_workers,
        "wall_s": wall,
        "runs": rows,
        "paper_psi": 4.0,
    }
    n_modes = jobs[0]["n_modes"]
    lines = [
        "# Variance-flatness exponent over (B, alpha) (Fig 2D, Eq 8)",
        "",
        f"dataset {meta['dataset']}, model {meta['model']}, seed {meta['seed']}; modes i >= 2 "
        f"of the first {n_modes}; w0 = last snapshot of each window. Paper: psi ~ 4.",
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
    lines += [
        "",
        f"Wall time {wall:.1f} s with {n_workers} process(es).",
        "",
        "![](fig2d_grid.png)",
    ]
    atomic_write_bytes(out / "report.md", ("\n".join(lines) + "\n").encode())
    write_json(out / "summary.json", summary)  # last: marks the grid finished
    return summary, lines[4:-2]
