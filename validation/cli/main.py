"""The ``sgdyn`` command: one subcommand per module of ``sgdyn.validation.cli``.

A subcommand module defines ``NAME`` (str), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``; adding such a file to ``validation/cli/`` adds the subcommand.
Options every command shares and the config / run-directory helper are in :mod:`.common`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from sgdyn import __version__

_NOT_COMMANDS = {"main", "common", "__main__"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` once, and only for a real default."""

    def _get_help_string(self, action):
        h = action.help or ""
        if (
            "default" in h
            or any(action.default is v for v in (None, False, argparse.SUPPRESS))
            or not action.option_strings
        ):
            return h
        return h + " (default: %(default)s)"


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
            mod.NAME, help=mod.HELP, description=mod.__doc__, formatter_class=HelpFormatter
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _given_options(parser: argparse.ArgumentParser, argv) -> set[str]:
    """The option destinations given on the command line (not left at their default)."""
    parsers = [parser]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            parsers += list(a.choices.values())
    saved = [(a, a.default) for p in parsers for a in p._actions]
    saved_defaults = [(p, dict(p._defaults)) for p in parsers]
    try:
        for a, _ in saved:
            a.default = argparse.SUPPRESS
        for p, _ in saved_defaults:
            p._defaults.clear()
        return set(vars(parser.parse_args(argv)))
    finally:
        for a, d in saved:
            a.default = d
        for p, d in saved_defaults:
            p._defaults.update(d)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args._given = _given_options(parser, argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        # Bad input or a file-system problem: one clear line, no traceback (-v shows it).
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"sgdyn {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
