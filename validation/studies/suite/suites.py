"""Suites as data: one TOML file per suite in ``suites/`` (:mod:`tomllib`; tomli on 3.10).

A suite file has ``name``, ``description``, a ``[defaults]`` table (cell parameters every
cell gets) and ``[[grid]]`` tables whose list-valued axes expand as a product::

    [[grid]]
    dataset = ["digits"]                                   # datasets
    model = [{ model = "mlp", hidden = [50, 50], tag = "mlp2" }]   # models (tag names the key)
    optimizer = ["sgd", "momentum"]                        # optimizers
    batch_lr = [[50, 0.1], [100, 0.1]]                     # (B, alpha) pairs
    seed = [0]                                             # seeds
    max_epochs = 30                                        # any other key: a scalar override

Each cell's key is ``<dataset>-<tag>-<optimizer>-B<B>-a<alpha>-s<seed>`` and its parameters
are those of :func:`sgdyn.validation.studies.suite.cell.run_cell`. ``data_root`` is added by
the command (``--data-root``) to cells whose dataset reads files (mnist, cifar10).
"""

from __future__ import annotations

import itertools
import sys
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from sgdyn.validation.sweeps import Cell

from .cell import DEFAULTS as CELL_DEFAULTS
from .cell import REPRO_KEYS, SUITE_KEYS

AXES = ("dataset", "model", "optimizer", "batch_lr", "seed")
FILE_DATASETS = ("mnist", "cifar10", "cifar-10")


def available_suites() -> list[str]:
    folder = resources.files(__package__) / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_suite(name: str) -> dict:
    """The parsed suite ``name``: a shipped suite, or the path of a user's ``.toml`` file in
    the same format (refuses an unknown name with the list)."""
    names = available_suites()
    if str(name).endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"suite file {path} does not exist")
        text = path.read_text()
    elif name in names:
        text = (resources.files(__package__) / "suites" / f"{name}.toml").read_text()
    else:
        raise ValueError(f"unknown suite {name!r}; choose one of {names} or a .toml file")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"suite file {name} does not parse: {e}") from e


def _fmt(x) -> str:
    return f"{x:g}"


def expand(suite: dict, *, data_root: str | None = None) -> list[Cell]:
    """All cells of a parsed suite, in file order."""
    defaults = dict(suite.get("defaults", {}))
    allowed = set(REPRO_KEYS) | set(SUITE_KEYS)
    cells: list[Cell] = []
    for g in suite.get("grid", []):
        missing = [a for a in AXES if a not in g]
        if missing:
            raise ValueError(f"suite {suite.get('name')}: a [[grid]] lacks {missing}")
        extra = {k: v for k, v in g.items() if k not in AXES}
        bad = sorted((set(extra) | set(defaults)) - allowed)
        if bad:
            raise ValueError(f"suite {suite.get('name')}: unknown cell parameters {bad}")
        for ds, mdl, opt, (B, lr), seed in itertools.product(
            g["dataset"], g["model"], g["optimizer"], g["batch_lr"], g["seed"]
        ):
            mdl = dict(mdl)
            tag = mdl.pop("tag", mdl["model"])
            key = f"{ds}-{tag}-{opt}-B{int(B)}-a{_fmt(lr)}-s{int(seed)}"
            params = {**CELL_DEFAULTS, **defaults, **mdl, **extra, "dataset": ds,
                      "optimizer": opt, "batch_size": int(B), "lr": float(lr),
                      "seed": int(seed)}  # fmt: skip
            if ds in FILE_DATASETS and (data_root is not None or "data_root" not in extra):
                params["data_root"] = data_root  # --data-root wins over a grid's own
            cells.append(Cell(key, params))
    if not cells:
        raise ValueError(f"suite {suite.get('name')} has no cells")
    return cells


def select(cells: list[Cell], keys) -> list[Cell]:
    """The cells named in ``keys`` (all when None); unknown keys are refused with the list."""
    if not keys:
        return list(cells)
    have = {c.key: c for c in cells}
    unknown = [k for k in keys if k not in have]
    if unknown:
        raise ValueError(f"unknown cell keys {unknown}; this suite has {sorted(have)}")
    return [have[k] for k in keys]
