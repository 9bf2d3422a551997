"""Landscape-dependent constraints (LDC, Eq 15) against catastrophic forgetting beside EWC
(Sec V, Fig 4): MNIST class-pair tasks, task 1's PCA directions and flatness as constraints
for task 2, lambda / Nc sweeps, and a five-task sequence (``sgdyn.validation.studies.forgetting``).
Writes summary.json, arrays.npz, fig4*.png, fig_sequence_accuracy.png, report.md/html.
"""

from __future__ import annotations

from .common import (
    add_common_options,
    add_sweep_options,
    execute,
    float_list,
    int_list,
    sweep_kwargs,
)

NAME = "forgetting"
HELP = "LDC (Eq 15) vs EWC against catastrophic forgetting on MNIST class pairs (Fig 4)"


def add_arguments(p) -> None:
    add_common_options(p)
    add_sweep_options(p, batch=False)
    p.add_argument(
        "--dataset",
        choices=("mnist5k", "mnist", "digits"),
        default="mnist5k",
        help="data (mnist5k: the embedded MNIST subset; mnist needs --data-root)",
    )
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw (full MNIST)")
    p.add_argument("--n-tasks", type=int, default=5, help="class pairs in the sequence (2..5)")
    p.add_argument("--n-seeds", type=int, default=3, help="seeds per sweep point (error bars)")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    p.add_argument("--batch-size", type=int, default=50, help="minibatch size B")
    p.add_argument("--pretrain-epochs", type=int, default=20, help="pre-training on all tasks")
    p.add_argument(
        "--max-epochs",
        type=int,
        default=100,
        help="give up waiting for a task's exploration phase after this many epochs",
    )
    p.add_argument(
        "--min-window-steps",
        type=int,
        default=1000,
        help="the PCA window lasts at least this many steps (>= Nc + 1 components)",
    )
    p.add_argument("--task2-epochs", type=int, default=30, help="task-2 training time")
    p.add_argument("--lam", type=float, default=10.0, help="LDC lambda of Fig 4C/D")
    p.add_argument("--nc", type=int, default=200, help="LDC constrained modes Nc of Fig 4C/D")
    p.add_argument(
        "--lams",
        type=float_list,
        default=(0.1, 1.0, 10.0, 100.0, 1000.0),
        help="LDC lambda sweep, e.g. 0.1,1,10",
    )
    p.add_argument(
        "--ewc-lams",
        type=float_list,
        default=(1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0),
        help="EWC lambda sweep",
    )
    p.add_argument(
        "--ncs",
        type=int_list,
        default=(10, 25, 50, 100, 200, 400, 800),
        help="LDC Nc sweep (Fig 4F)",
    )
    p.add_argument(
        "--ewc-ks",
        type=int_list,
        default=(10, 50, 100, 250, 500, 1000, 2500),
        help="EWC numbers of constrained weights (top-k Fisher, Fig 4F)",
    )
    p.add_argument(
        "--fisher",
        choices=("empirical", "expected"),
        default="empirical",
        help="EWC Fisher: empirical (true labels) or expected (model's labels)",
    )
    p.add_argument(
        "--flatness",
        choices=("variance", "landscape"),
        default="variance",
        help="F_1i from the variance by Eq 8 (calibrated) or measured e-widths",
    )
    p.add_argument(
        "--penalty-step",
        choices=("implicit", "explicit"),
        default="implicit",
        help="implicit: step-stable penalties (F^2 + 2 lr lam), explicit: Eq 15 as written",
    )
    p.add_argument("--psi", type=float, default=4.0, help="Eq 8 exponent for --flatness variance")
    p.add_argument(
        "--no-sequence",
        dest="sequence",
        action="store_false",
        help="skip the five-task sequence (two-task figures and sweeps only)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for checks: 8x8 digits, 3 tasks, 1 seed, short sweeps",
    )


def _describe(s):
    n, m = s["no_constraint"], s["ldc"]["main"]
    seq = s["sequence"]["avg_forgetting"]
    return [
        f"no constraint: eps1 = {n['eps1']:.3f}, eps2 = {n['eps2']:.3f}",
        f"LDC: eps1 = {m['eps1']:.3f}, eps2 = {m['eps2']:.3f}; best eps1+eps2 LDC "
        f"{s['ldc']['best']['eps_sum']:.3f} vs EWC {s['ewc']['best']['eps_sum']:.3f}; "
        f"N*_c = {s['ldc']['nc_star']}",
        "sequence avg forgetting: " + ", ".join(f"{k} {v:.3f}" for k, v in seq.items())
        if seq
        else "sequence skipped (--no-sequence)",
    ]


def run(args) -> int:
    from sgdyn.validation.studies.forgetting import QUICK, ForgettingConfig, run_forgetting

    sweep = sweep_kwargs(args)
    return execute(
        args,
        config_cls=ForgettingConfig,
        run=lambda cfg, out, **kw: run_forgetting(cfg, out, threads=args.threads, **sweep, **kw),
        quick=QUICK,
        describe=_describe,
    )
