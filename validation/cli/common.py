"""What every ``sgdyn`` subcommand shares, defined once.

A command module adopts it in two calls::

    def add_arguments(p):
        add_common_options(p)                      # --out --force --seed --device --threads
        p.add_argument("--lr", type=float, ...)    # dest = a field of the study's config

    def run(args):
        return execute(args, config_cls=MyConfig, run=run_my_study, quick=MY_QUICK,
                       describe=lambda s: [f"psi = {s['psi']:.2f}"])

:func:`execute` resolves the config (the config class's defaults, or ``--quick``'s, or a saved
``--config FILE``; then every option given on the command line, which always wins and is
recorded), validates it before any folder is created, answers ``--print-config``, refuses a
run directory holding another finished run, pins the torch threads, and calls
``run(cfg, out, force=..., progress=...)``, the study's Python API, which writes the run
directory through :class:`sgdyn.validation.io.RunDir`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# options of add_common_options that are not study settings
RUN_OPTIONS = {
    "out",
    "force",
    "threads",
    "no_progress",
    "verbose",
    "config",
    "print_config",
    "command",
    # add_sweep_options
    "engine",
    "address",
    "jobs",
    "gpus_per_cell",
    "no_batch",
}


def _list_of(kind, name):
    def parse(s: str):
        try:
            vals = tuple(kind(v) for v in str(s).split(",") if v.strip())
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {name}, e.g. 1,2,3; got {s!r}"
            ) from e
        if not vals:
            raise argparse.ArgumentTypeError(f"expected at least one {name[:-1]}")
        return vals

    parse.__name__ = f"{name} list"
    return parse


# list syntax of every command: one comma-separated value (e.g. --hidden 50,50)
int_list = _list_of(int, "integers")
float_list = _list_of(float, "numbers")


def add_common_options(p, *, seed_default: int = 0) -> None:
    """``--out --force --seed --device --threads --no-progress -v --config --print-config``."""
    g = p.add_argument_group("options every command shares")
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="run directory (required unless --print-config)",
    )
    g.add_argument(
        "--force", action="store_true", help="overwrite a finished run with other settings in --out"
    )
    g.add_argument("--seed", type=int, default=seed_default, help="random seed")
    g.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (CUDA when present, else cpu), cpu, cuda, cuda:1",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process (0: leave torch's choice; 1 keeps a shared machine usable)",
    )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are shown only on a terminal anyway)",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logging and full tracebacks",
    )
    g.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="rerun a saved config: a run's summary.json (options given here override it)",
    )
    g.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )


def progress_enabled(args) -> bool:
    """Progress bars only on a terminal, and never with ``--no-progress``."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def set_threads(n: int) -> None:
    import torch

    if n < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's default), got {n}")
    if n > 0:
        from sgdyn.validation.sweeps.runner import limit_blas_threads

        torch.set_num_threads(n)
        limit_blas_threads(n)  # numpy/scipy BLAS too: oversubscribed they ran 4x slower


def resolve_config(args, config_cls, quick: dict | None = None):
    """The study config for ``args`` (module docstring) and the names given explicitly."""
    from sgdyn.validation.io.config import load_config_file

    names = config_cls.field_names()
    given = getattr(args, "_given", None)
    if given is None:  # built without sgdyn's parser: every attribute counts as given
        given = set(vars(args))
    if getattr(args, "config", None) is not None:
        if getattr(args, "quick", False):
            raise ValueError("--quick and --config exclude each other (the saved config says)")
        base = load_config_file(args.config, args.command)
    elif getattr(args, "quick", False):
        base = dict(quick or {})
        if "quick" in names:
            base["quick"] = True
    else:
        base = {}
    overrides = {k: getattr(args, k) for k in given if k in names and k != "quick"}
    cfg = config_cls.from_dict(base, **overrides)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def execute(args, *, config_cls, run, quick: dict | None = None, describe=None) -> int:
    """Config -> checks -> ``run(cfg, out, force=, progress=)`` -> one-line result (module doc)."""
    from sgdyn.validation.io.rundir import RunDir

    cfg = resolve_config(args, config_cls, quick)
    if getattr(args, "print_config", False):
        print(json.dumps({"command": args.command, "config": cfg.as_dict()}, indent=2))
        return 0
    if args.out is None:
        raise ValueError("--out DIR is required: the folder where the run is written")
    set_threads(args.threads)
    out = Path(args.out)
    if RunDir(out, cfg.as_dict(), command=args.command, force=args.force).check() == "done":
        print(f"{out} already holds this finished run (summary.json); nothing to do")
        return 0
    summary = run(cfg, out, force=args.force, progress=progress_enabled(args))
    for line in describe(summary) if describe else []:
        print(line)
    print(f"wrote {out}: " + ", ".join(summary.get("files", [])))
    return 0


def add_window_options(p) -> None:
    """``--window-epochs --window-start --max-epochs``: where the recorded PCA window lies
    (commands that capture one, e.g. reproduce and flatness-grid)."""
    p.add_argument("--window-epochs", type=int, default=10, help="PCA window T in epochs")
    p.add_argument(
        "--window-start",
        type=int,
        default=None,
        help="start the window after this epoch instead of detecting the transition",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        default=200,
        help="give up waiting for the exploration phase after this many epochs",
    )


def add_sweep_options(p, *, batch: bool = True) -> None:
    """``--engine --address --jobs --gpus-per-cell --no-batch`` of commands that run a sweep
    through :func:`sgdyn.validation.sweeps.run_cells` (run options, not study settings);
    ``batch=False``: no ``--no-batch`` (the command's cells are not replica groups)."""
    g = p.add_argument_group("sweep options")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: processes on this machine; ray: Ray tasks (pip install -e '.[cluster]')",
    )
    g.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (from `ray start --head`; 'auto' finds a local one); "
        "none: a Ray instance for this run only",
    )
    g.add_argument("--jobs", type=int, default=1, help="parallel processes (local engine)")
    g.add_argument(
        "--gpus-per-cell",
        type=float,
        default=None,
        help="GPUs each Ray task asks for (a fraction packs several on one card)",
    )
    if batch:
        g.add_argument(
            "--no-batch",
            action="store_true",
            help="one run per cell instead of training the cells that share B and model together",
        )


def sweep_kwargs(args) -> dict:
    """The keyword arguments of ``run_cells`` / a study's runner from the sweep options."""
    if args.engine != "ray" and (args.address is not None or args.gpus_per_cell is not None):
        raise ValueError("--address and --gpus-per-cell apply to --engine ray only")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.gpus_per_cell is not None and args.gpus_per_cell < 0:
        raise ValueError(f"--gpus-per-cell must be >= 0, got {args.gpus_per_cell}")
    kw = {"engine": args.engine, "jobs": args.jobs}
    if hasattr(args, "no_batch"):
        kw["batch"] = not args.no_batch
    if args.engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:  # before any folder is created
            raise ValueError(
                "--engine ray needs Ray: install the cluster extra, pip install -e '.[cluster]'"
            )
        kw.update(address=args.address, gpus_per_cell=args.gpus_per_cell)
    return kw
