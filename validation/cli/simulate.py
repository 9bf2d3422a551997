"""Simulate the paper's random-landscape (MLF ensemble) theory and check it (Sec IV).

Writes summary.json (sim.psi, theory.psi, equilibrium.psi, checks, config), arrays.npz,
PNG figures, report.md and report.html to --out (``sgdyn.validation.studies.simulate``).
Presets: paper-like (N, --F-min, --F-max) or from-profiles (--profiles FILE with M0,
sigma_M, sigma_theta per mode). The memory the run needs is estimated first.
"""

from __future__ import annotations

from pathlib import Path

from .common import add_common_options, execute

NAME = "simulate"
HELP = "simulate the random-landscape (MLF) theory: SGD/Langevin replicas, theory vs simulation"
PRESETS = ("paper-like", "from-profiles")  # = sgdyn.simulator.presets.PRESETS (tested)


def add_arguments(p) -> None:
    add_common_options(p)
    p.add_argument("--preset", default="paper-like", choices=PRESETS, help="MLF ensemble")
    p.add_argument("--N", type=int, default=30, help="number of modes (paper-like)")
    p.add_argument("--F-min", type=float, default=1.0, help="flatness of the sharpest mode")
    p.add_argument("--F-max", type=float, default=10.0, help="flatness of the flattest mode")
    p.add_argument(
        "--profiles",
        type=Path,
        default=None,
        metavar="FILE",
        help="from-profiles: JSON/.npz with M0, sigma_M, sigma_theta per mode "
        "(optional sigma_off, off_profile, theta1_0, L0, L0_cv)",
    )
    p.add_argument("--replicas", type=int, default=64, help="independent replicas")
    p.add_argument(
        "--lr",
        dest="alpha",
        type=float,
        default=0.25,
        help="SGD learning rate alpha (diffusive window)",
    )
    p.add_argument(
        "--window-steps",
        dest="window_diffusive",
        type=int,
        default=0,
        help="diffusive PCA window in steps (0: tau_min / 5)",
    )
    p.add_argument(
        "--stationary-lr",
        dest="alpha_stationary",
        type=float,
        default=1.0,
        help="learning rate of the stationary (Eq 12) and Langevin runs",
    )
    p.add_argument(
        "--stationary-window-steps",
        dest="window_stationary",
        type=int,
        default=0,
        help="stationary window in steps (0: 20 tau_max)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float64"),
        help="precision of the integrations (float64 for theory checks at small N)",
    )
    p.add_argument("--temperature", type=float, default=1e-4, help="Langevin temperature")
    p.add_argument(
        "--minibatches",
        type=int,
        default=512,
        help="K of the finite ensemble probed for the flatness",
    )
    p.add_argument(
        "--n-minima", type=int, default=20000, help="sampled MLFs for the Eq 11 minima check"
    )
    p.add_argument(
        "--max-memory",
        type=float,
        default=None,
        metavar="GB",
        help="refuse runs estimated above this (default: 80%% of available memory)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small fast run for tests/CI (~10 s): N=12, F in [1,3], 48 replicas, "
        "K=256, 8000 minima; options given explicitly still apply",
    )


def _describe(s):
    return [
        f"psi: diffusive sim {s['sim']['psi']:.3f} vs theory {s['theory']['psi']:.3f}; "
        f"stationary sim {s['sim']['psi_stationary']:.3f} vs {s['theory']['psi_stationary']:.3f}; "
        f"equilibrium sim {s['equilibrium']['psi']:.3f} vs {s['theory']['psi_equilibrium']:.3f}"
    ]


def run(args) -> int:
    from sgdyn.validation.studies.simulate import (
        QUICK,
        SimStudyConfig,
        load_profiles,
        run_simulate,
    )

    if isinstance(args.profiles, Path):  # the values go into the config, not the path
        args.profiles = load_profiles(args.profiles)
    quick = dict(QUICK)
    if args.preset == "from-profiles":
        # N comes from the profiles; F_min/F_max shape the paper-like preset only
        given = getattr(args, "_given", set(vars(args)))
        for k in ("N", "F_min", "F_max"):
            quick.pop(k)
            if k not in given:
                setattr(args, k, len(args.profiles["M0"]) if k == "N" and args.profiles else None)
                given.add(k)

    def go(cfg, out, before_compute=None, **kw):
        return run_simulate(
            cfg, out, max_memory_gb=args.max_memory, before_compute=before_compute, **kw
        )

    from sgdyn.simulator import distributed

    ctx = distributed.init_from_env(getattr(args, "device", None) or "auto")
    if ctx is None:  # one process: the default
        return execute(args, config_cls=SimStudyConfig, run=go, quick=quick, describe=_describe)
    return _run_under_torchrun(args, ctx, go, quick)


def _run_under_torchrun(args, ctx, go, quick) -> int:
    """Rank 0 runs ``execute`` (config, run directory, report) and broadcasts the resolved
    config when the computation starts (None if it never does: bad input, finished run);
    the other ranks compute their replica shards of that config and write nothing."""
    from sgdyn.simulator import distributed
    from sgdyn.validation.studies.simulate import SimStudyConfig, run_study

    sent = []

    def send(cfg):
        sent.append(distributed.broadcast_object(cfg.as_dict()))

    try:
        if ctx.rank == 0:
            return execute(
                args, config_cls=SimStudyConfig, quick=quick, describe=_describe,
                run=lambda cfg, out, **kw: go(cfg, out, before_compute=send, **kw),
            )  # fmt: skip
        import torch

        torch.set_num_threads(max(1, int(getattr(args, "threads", 1) or 1)))
        cfg = distributed.broadcast_object(None)
        if cfg is not None:
            run_study(SimStudyConfig.from_dict(cfg))
        return 0
    finally:
        if ctx.rank == 0 and not sent:
            distributed.broadcast_object(None)  # release the other ranks
        distributed.close()
