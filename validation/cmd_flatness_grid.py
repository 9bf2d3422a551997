"""Variance-flatness relation over a grid of minibatch sizes B and learning rates alpha (Fig 2D).

For every (B, alpha): train, capture a window in the exploration phase, measure the flatness
F_i of the first PCA directions (e-width and quadratic fit) around the window's last
snapshot and fit sigma_i^2 ~ F_i^-psi over the diffusive modes i >= 2 (Eq 8). Independent
runs go to separate processes (``--jobs``). Writes summary.json, arrays.npz, fig2d_grid.png
and report.md to ``--out``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

NAME = "flatness-grid"
HELP = "variance-flatness exponent psi over a grid of batch sizes and learning rates (Fig 2D)"


def _floats(s: str) -> list[float]:
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError as e:
        raise ValueError(f"expected comma-separated numbers, got {s!r}") from e


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dataset", default="mnist5k", help="mnist5k, mnist, digits, cifar10")
    p.add_argument("--data-root", default=None, help="torchvision-layout data folder")
    p.add_argument("--model", default="mlp", help="mlp, lenet-mnist or lenet-cifar")
    p.add_argument("--batch-sizes", default="25,50,100", help="comma-separated B values")
    p.add_argument("--lrs", default="0.05,0.1", help="comma-separated learning rates alpha")
    p.add_argument("--n-modes", type=int, default=100, help="PCA directions measured")
    p.add_argument("--window-epochs", type=int, default=10, help="window length in epochs")
    p.add_argument("--max-epochs", type=int, default=200, help="cap on the fast phase")
    p.add_argument("--tol", type=float, default=1e-3, help="relative e-width tolerance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="parallel processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for checks: digits data, B in {50,100}, alpha=0.1, 4+2 epochs, 12 modes",
    )


def _one(job: dict) -> dict:
    """One (B, alpha) run in its own process: capture, flatness, psi."""
    import torch

    from .experiment import CaptureConfig, capture_window
    from .landscape_net import NetworkLandscape
    from .landscape_stage import analyse_flatness

    torch.set_num_threads(job["threads"])
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
    return {
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "window_start_epoch": cap.window_start_epoch,
        "window_reason": cap.window_reason,
        "summary": summ,
        "F": arr["flat_F_ewidth"],
        "F_quadratic": arr["flat_F_quadratic"],
        "variance": arr["flat_variance"],
        "time_capture_s": t1 - t0,
        "time_landscape_s": t2 - t1,
    }


def _plot(out: Path, results: list[dict]) -> None:
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


def run(args) -> int:
    out = Path(args.out)
    if args.quick:
        dataset, bs, lrs, we, me, n_modes = "digits", [50, 100], [0.1], 2, 5, 12
        window_start = 4
    else:
        dataset, bs, lrs = args.dataset, _floats(args.batch_sizes), _floats(args.lrs)
        we, me, n_modes, window_start = args.window_epochs, args.max_epochs, args.n_modes, None
    if not bs or not lrs:
        raise ValueError("give at least one batch size and one learning rate")
    if any(b < 1 or b != int(b) for b in bs):
        raise ValueError(f"batch sizes must be positive integers, got {bs}")
    if any(not a > 0 for a in lrs):
        raise ValueError(f"learning rates must be positive, got {lrs}")
    if args.jobs < 1 or args.threads < 1:
        raise ValueError("--jobs and --threads must be >= 1")
    if n_modes < 4:
        raise ValueError("--n-modes must be >= 4 (psi needs >= 3 diffusive modes)")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        {
            "capture": {
                "dataset": dataset,
                "data_root": args.data_root,
                "model": args.model,
                "lr": float(a),
                "batch_size": int(b),
                "seed": args.seed,
                "window_epochs": we,
                "window_start": window_start,
                "max_epochs": max(me, 5),
                "min_epochs": min(5, me),
            },
            "n_modes": n_modes,
            "tol": args.tol,
            "threads": args.threads,
        }
        for b in bs
        for a in lrs
    ]
    t0 = time.perf_counter()
    if args.jobs == 1:
        results = [_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            results = list(ex.map(_one, jobs))
    wall = time.perf_counter() - t0
    _plot(out, results)
    arrays = {}
    for r in results:
        tag = f"B{r['batch_size']}_lr{r['lr']:g}"
        for k in ("F", "F_quadratic", "variance"):
            arrays[f"{k}_{tag}"] = np.asarray(r[k])
    np.savez(out / "arrays.npz", **arrays)
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
        "command": NAME,
        "dataset": dataset,
        "model": args.model,
        "seed": args.seed,
        "quick": bool(args.quick),
        "jobs": args.jobs,
        "wall_s": wall,
        "runs": rows,
        "paper_psi": 4.0,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "# Variance-flatness exponent over (B, alpha) (Fig 2D, Eq 8)",
        "",
        f"dataset {dataset}, model {args.model}, seed {args.seed}; modes i >= 2 of the first "
        f"{n_modes}; w0 = last snapshot of each window. Paper: psi ~ 4.",
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
        f"Wall time {wall:.1f} s with {args.jobs} process(es).",
        "",
        "![](fig2d_grid.png)",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:-2]))
    print(f"wrote {out}/summary.json, arrays.npz, fig2d_grid.png, report.md")
    return 0
