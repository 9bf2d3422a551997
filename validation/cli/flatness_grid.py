"""Variance-flatness relation over a grid of minibatch sizes B and learning rates alpha (Fig 2D).

For every (B, alpha): train, capture a window in the exploration phase, measure the flatness
F_i of the first PCA directions (e-width and quadratic fit) around the window's last
snapshot and fit sigma_i^2 ~ F_i^-psi over the diffusive modes i >= 2 (Eq 8)
(``sgdyn.validation.studies.flatness_grid``). Independent runs go to separate processes
(``--jobs``). Writes summary.json, arrays.npz, fig2d_grid.png and report.md to ``--out``.
"""

from __future__ import annotations

from pathlib import Path

from .common import add_common_options

NAME = "flatness-grid"
HELP = "variance-flatness exponent psi over a grid of batch sizes and learning rates (Fig 2D)"


def _floats(s: str) -> list[float]:
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError as e:
        raise ValueError(f"expected comma-separated numbers, got {s!r}") from e


def add_arguments(p) -> None:
    add_common_options(p, seed_default=0, device_default="cpu")
    p.add_argument("--dataset", default="mnist5k", help="mnist5k, mnist, digits, cifar10")
    p.add_argument("--data-root", default=None, help="torchvision-layout data folder")
    p.add_argument("--model", default="mlp", help="mlp, lenet-mnist or lenet-cifar")
    p.add_argument("--batch-sizes", default="25,50,100", help="comma-separated B values")
    p.add_argument("--lrs", default="0.05,0.1", help="comma-separated learning rates alpha")
    p.add_argument("--n-modes", type=int, default=100, help="PCA directions measured")
    p.add_argument("--window-epochs", type=int, default=10, help="window length in epochs")
    p.add_argument("--max-epochs", type=int, default=200, help="cap on the fast phase")
    p.add_argument("--tol", type=float, default=1e-3, help="relative e-width tolerance")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for checks: digits data, B in {50,100}, alpha=0.1, 4+2 epochs, 12 modes",
    )


def run(args) -> int:
    from sgdyn.validation.studies.flatness_grid import grid_jobs, run_grid

    if args.quick:
        dataset, bs, lrs, we, me, n_modes = "digits", [50, 100], [0.1], 2, 5, 12
        window_start = 4
    else:
        dataset, bs, lrs = args.dataset, _floats(args.batch_sizes), _floats(args.lrs)
        we, me, n_modes, window_start = args.window_epochs, args.max_epochs, args.n_modes, None
    jobs = grid_jobs(
        dataset=dataset,
        data_root=args.data_root,
        model=args.model,
        batch_sizes=bs,
        lrs=lrs,
        seed=args.seed,
        window_epochs=we,
        window_start=window_start,
        max_epochs=me,
        n_modes=n_modes,
        tol=args.tol,
        threads=args.threads,
        device=args.device,
    )
    meta = {
        "command": NAME,
        "dataset": dataset,
        "model": args.model,
        "seed": args.seed,
        "quick": bool(args.quick),
    }
    summary, table = run_grid(jobs, Path(args.out), meta, n_workers=args.jobs, force=args.force)
    if summary is None:
        print(f"{args.out} already holds this finished grid (summary.json); nothing to do")
        return 0
    print("\n".join(table))
    print(f"wrote {args.out}/summary.json, arrays.npz, fig2d_grid.png, report.md")
    return 0
