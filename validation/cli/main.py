"""The ``sgdyn`` command: one subcommand per module of ``sgdyn.validation.cli``.

A subcommand module defines ``NAME`` (str), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``; adding such a file to ``validation/cli/`` adds the subcommand.
Options every command shares are defined once in :mod:`.common`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from sgdyn import __version__

_NOT_COMMANDS = {"main", "common", "__main__"}


def _command_modules():
    import sgdyn.validation.cli as pkg

    mods = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in _NOT_COMMANDS:
            mods.append(importlib.import_module(f"sgdyn.validation.cli.{info.name}"))
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sgdyn",
        description=(
            "Capture, measure and simulate the stochastic dynamics of SGD "
            "(Feng & Tu, self-tuned annealing / inverse variance-flatness relation)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"sgdyn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=mod.__doc__,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, KeyError, RuntimeError, FileNotFoundError) as e:
        # Bad input: one clear line, no traceback (use -v for the traceback).
        if args.verbose:
            raise
        print(f"sgdyn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
