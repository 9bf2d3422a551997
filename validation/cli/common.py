"""Options every ``sgdyn`` subcommand shares, defined once."""

from __future__ import annotations

from pathlib import Path


def add_common_options(p, *, seed_default=None, device_default=None) -> None:
    """``--out --force --seed --device --no-progress`` with the same names and meaning
    in every command."""
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    p.add_argument(
        "--seed",
        type=int,
        default=seed_default,
        help="random seed" + ("" if seed_default is None else f" (default {seed_default})"),
    )
    p.add_argument(
        "--device",
        default=device_default,
        help="torch device, cpu or cuda"
        + ("" if device_default is None else f" (default {device_default})"),
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
