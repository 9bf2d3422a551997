"""Variance-flatness relation over a grid of minibatch sizes B and learning rates alpha (Fig 2D).

For every (B, alpha): train, capture a window in the exploration phase, measure the
flatness F_i of the first PCA directions (e-width and quadratic fit) around the window's last
snapshot and fit sigma_i^2 ~ F_i^-psi over the diffusive modes i >= 2 (Eq 8)
(``sgdyn.validation.studies.flatness_grid``). Independent runs go to separate processes
(``--jobs``, each with ``--threads`` torch threads) or to a Ray cluster (``--engine ray
--address ADDR``); the cells that share B and the model train together as replicas
(``--no-batch``: one run per cell; the numbers are equal). Writes summary.json, arrays.npz,
fig2d_grid.png, report.md and report.html to ``--out``.
"""

from __future__ import annotations

from .common import (
    add_common_options,
    add_sweep_options,
    add_window_options,
    execute,
    float_list,
    int_list,
    sweep_kwargs,
)

NAME = "flatness-grid"
HELP = "variance-flatness exponent psi over a grid of batch sizes and learning rates (Fig 2D)"
DATASETS = ("mnist5k", "mnist", "digits", "cifar10")
MODELS = ("mlp", "lenet-mnist", "lenet-cifar")


def add_arguments(p) -> None:
    add_common_options(p)
    add_sweep_options(p)
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="mnist5k",
        help="data (mnist5k: the embedded MNIST subset)",
    )
    p.add_argument("--data-root", default=None, help="torchvision-layout / ImageFolder folder")
    p.add_argument("--model", choices=MODELS, default="mlp", help="network")
    p.add_argument(
        "--batch-sizes",
        type=int_list,
        default=(25, 50, 100),
        help="comma-separated minibatch sizes B, e.g. 25,50,100",
    )
    p.add_argument(
        "--lrs",
        type=float_list,
        default=(0.05, 0.1),
        help="comma-separated learning rates alpha, e.g. 0.05,0.1",
    )
    add_window_options(p)
    p.add_argument(
        "--landscape-modes", type=int, default=100, help="PCA directions whose flatness is measured"
    )
    p.add_argument("--tol", type=float, default=1e-3, help="relative e-width tolerance")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for checks: digits, B in {50,100}, alpha=0.1, window after "
        "epoch 4 for 2 epochs, 12 modes; options given explicitly still apply",
    )


def _describe(s):
    return [
        f"B={r['batch_size']} alpha={r['lr']:g}: psi = {r['psi']:.2f} +- {r['psi_err']:.2f} "
        f"(quadratic F: {r['psi_quadratic']:.2f})"
        for r in s["runs"]
    ]


def run(args) -> int:
    from sgdyn.validation.studies.flatness_grid import QUICK, GridConfig, run_grid

    sweep = sweep_kwargs(args)

    return execute(
        args,
        config_cls=GridConfig,
        run=lambda cfg, out, **kw: run_grid(cfg, out, threads=args.threads, **sweep, **kw),
        quick=QUICK,
        describe=_describe,
    )
