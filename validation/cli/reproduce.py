"""Run the paper's protocol (Fig 1 A-D, Fig S1; Fig 2 / S2 / Eq 16 when the landscape
stage is on) and write summary.json, arrays.npz, PNG figures and report.md into --out.
Defaults: 784-50-50-10 MLP without bias, SGD alpha=0.1, B=50, on the embedded 5,000-image
MNIST subset (or the full MNIST with --dataset mnist --data-root DIR), a 10-epoch window
starting in the exploration phase, PCA of the 2,500 weights between the hidden layers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .common import add_common_options

NAME = "reproduce"
HELP = "run the paper's protocol end to end into a run directory"


def add_arguments(p) -> None:
    add_common_options(p, seed_default=0, device_default="cpu")
    p.add_argument("--quick", action="store_true", help="reduced protocol on 8x8 digits (seconds)")
    p.add_argument(
        "--dataset",
        choices=["mnist5k", "mnist", "digits", "cifar10"],
        default=None,
        help="data (default mnist5k: the embedded MNIST subset)",
    )
    p.add_argument("--data-root", default=None, help="torchvision-layout / ImageFolder folder")
    p.add_argument("--model", choices=["mlp", "lenet-mnist", "lenet-cifar"], default=None)
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="MLP hidden widths")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate alpha (default 0.1)")
    p.add_argument("--batch-size", type=int, default=None, help="minibatch size B (default 50)")
    p.add_argument("--window-epochs", type=int, default=None, help="PCA window T (default 10)")
    p.add_argument(
        "--window-start",
        type=int,
        default=None,
        help="start the window after this epoch instead of detecting the transition",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="give up waiting for the exploration phase after this many epochs",
    )
    p.add_argument("--probe", default=None, help="parameter name to record (default: paper's)")
    p.add_argument(
        "--rank-range",
        type=int,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="rank range of the gamma fit (default 20 200)",
    )
    p.add_argument(
        "--no-landscape",
        dest="landscape",
        action="store_false",
        default=None,
        help="skip the landscape stage (Fig 2, S2, Eq 16)",
    )
    p.add_argument(
        "--landscape-modes",
        type=int,
        default=None,
        help="PCA directions whose flatness is measured (default 200; conv probes "
        "cost far more per direction)",
    )
    p.add_argument(
        "--langevin-steps",
        type=int,
        default=None,
        help="cap on the Langevin equilibrium run's steps (default 6000)",
    )


def run(args) -> int:
    from sgdyn.validation.studies.reproduce.pipeline import config_from_args, run_reproduce

    cfg = config_from_args(args)
    summary = run_reproduce(cfg, args.out, force=args.force, progress=not args.no_progress)
    p, ph = summary["pca"], summary["phases"]
    logging.getLogger("sgdyn").info("wrote %s", args.out)
    print(
        f"gamma = {p['gamma']:.3f} +- {p['gamma_err_boot']:.3f}, n90 = {p['n90_excl_pc1']}, "
        f"var1/var2 = {p['var1_over_var2']:.3g}, transition epoch = {ph['transition_epoch']}, "
        f"total {summary['timings']['total_s']:.1f} s -> {Path(args.out) / 'report.md'}"
    )
    return 0
