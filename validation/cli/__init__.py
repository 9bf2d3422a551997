"""The ``sgdyn`` command line: ``main`` and one thin module per subcommand."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
