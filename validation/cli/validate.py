"""Run a validation suite (theory <-> simulator <-> real networks) and evaluate the paper's claims.

Each cell of the suite (dataset x model x optimizer x B x alpha x seed, listed in
``validation/studies/suite/suites/<name>.toml``) runs capture -> spectrum -> flatness -> psi
-> ensemble -> simulator-from-network -> equilibrium contrast in its own process
(``--jobs``); a killed run resumes from the finished cells. Writes summary.json (one record
per cell, the ``claims`` table), report.md, report.html and figures to ``--out``
(``sgdyn.validation.studies.suite.study``).
"""

from __future__ import annotations

from .common import add_common_options, add_sweep_options, execute, sweep_kwargs

NAME = "validate"
HELP = "run a validation suite (quick, paper, full) and evaluate the paper's claims per cell"


def _keys(s: str):
    vals = tuple(v.strip() for v in str(s).split(",") if v.strip())
    if not vals:
        import argparse

        raise argparse.ArgumentTypeError("expected comma-separated cell keys")
    return vals


def add_arguments(p) -> None:
    add_common_options(p)
    add_sweep_options(p)
    p.add_argument(
        "--suite", default="quick", help="suite: quick, paper, full, or the path of a .toml file"
    )
    p.add_argument(
        "--cells",
        type=_keys,
        default=None,
        metavar="KEY,...",
        help="run only these cells of the suite (comma-separated keys; all when omitted)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder with MNIST/raw and cifar-10-batches-py or cifar10-jpeg (mnist, cifar10 cells)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced protocol in every cell (2-epoch window, 12 modes): a smoke test",
    )


def _describe(s):
    lines = []
    for r in s["psi_table"]:
        if r.get("error"):
            lines.append(f"{r['key']}: failed ({r['error']})")
            continue

        def f(x):
            return "n/a" if x is None else f"{x:.2f}"

        lines.append(
            f"{r['key']}: psi_real {f(r['psi_real'])}, psi_sim {f(r['psi_sim'])}, "
            f"theory {f(r['theory_diffusive'])}"
        )
    for name, c in s["claims"].items():
        lines.append(f"claim {name}: {c['status']} ({len(c['holds'])} hold, "
                     f"{len(c['fails'])} fail, {len(c['not_measured'])} not measured)")  # fmt: skip
    return lines


def run(args) -> int:
    from sgdyn.validation.studies.suite.study import QUICK, ValidateConfig, run_validate

    sweep = sweep_kwargs(args)
    return execute(
        args,
        config_cls=ValidateConfig,
        run=lambda cfg, out, **kw: run_validate(
            cfg, out, threads=max(1, args.threads), **sweep, **kw
        ),
        quick=QUICK,
        describe=_describe,
    )
