"""The sweep runner: ``run_cells(fn, cells, out)``.

A *cell* is a key (its folder name) and JSON-serialisable parameters. ``fn`` is a top-level
function ``fn(params: dict, cell_dir: Path) -> dict`` (importable by worker processes, or a
``"module:function"`` string); it may write arrays and figures into ``cell_dir`` and returns a
JSON-serialisable record. The runner writes ``out/cells/<key>/result.json`` last (atomically),
so a cell folder is finished exactly when that file exists; a failing cell writes
``error.json`` with its one-line reason and the others go on. Rerunning skips finished cells
whose parameters match and refuses (with the way out) a finished cell whose parameters differ.
"""

from __future__ import annotations

import importlib
import json
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sgdyn.validation.io.rundir import atomic_write_bytes

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


class SweepError(ValueError):
    """A sweep that cannot start (bad cells, unknown engine, a finished cell that differs)."""


@dataclass(frozen=True)
class Cell:
    """One independent run of a sweep. ``resources``: ``{"cpu": n, "gpu": fraction}`` per cell
    (used by engines that schedule, e.g. Ray)."""

    key: str
    params: dict
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0})


@dataclass
class CellResult:
    key: str
    params: dict
    status: str  # "done" (ran now), "cached" (finished earlier), "failed"
    result: dict | None = None
    error: str | None = None
    wall_s: float | None = None


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def resolve(fn: Callable | str) -> Callable:
    if callable(fn):
        return fn
    mod, _, name = str(fn).partition(":")
    if not name:
        raise SweepError(f"cell function {fn!r}: expected 'module:function'")
    return getattr(importlib.import_module(mod), name)


def fn_name(fn: Callable | str) -> str:
    if isinstance(fn, str):
        return fn
    return f"{fn.__module__}:{fn.__qualname__}"


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def cell_dir(out: Path, key: str) -> Path:
    return Path(out) / "cells" / key


def read_finished(out: Path, cell: Cell) -> dict | None:
    """The stored record of a finished cell, or None; refuses a finished cell whose params
    differ from ``cell.params``."""
    path = cell_dir(out, cell.key) / "result.json"
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a torn write cannot happen (atomic); treat a foreign file as unfinished
    if _canon(rec.get("params")) != _canon(cell.params):
        raise SweepError(
            f"cell {cell.key!r} in {out} finished with other parameters; "
            "use another --out, delete that cell's folder, or pass --force"
        )
    return rec


def execute_cell(fn: Callable | str, key: str, params: dict, out: str, threads: int) -> dict:
    """Run one cell in this process and write its folder; never raises for a cell's own
    failure (the error is recorded in ``error.json`` and returned)."""
    import torch

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        return _execute(fn, key, params, out)
    finally:
        torch.set_num_threads(prev_threads)


def _execute(fn: Callable | str, key: str, params: dict, out: str) -> dict:
    d = cell_dir(Path(out), key)
    d.mkdir(parents=True, exist_ok=True)
    (d / "error.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        result = resolve(fn)(dict(params), d)
        if not isinstance(result, dict):
            raise TypeError(f"cell function returned {type(result).__name__}, expected dict")
        json.dumps(result, default=str)
    except Exception as e:  # noqa: BLE001 - one cell's failure must not stop the sweep
        rec = {
            "key": key,
            "params": params,
            "error": f"{type(e).__name__}: {e}".splitlines()[0],
            "traceback": traceback.format_exc(),
            "wall_s": time.perf_counter() - t0,
        }
        _write_json(d / "error.json", rec)
        return {"key": key, "status": "failed", **rec}
    rec = {"key": key, "params": params, "result": result, "wall_s": time.perf_counter() - t0}
    _write_json(d / "result.json", rec)  # last: marks the cell finished
    return {"key": key, "status": "done", **rec}


def _run_local(fn, todo: Sequence[Cell], out: Path, *, jobs: int, threads: int, progress, **_):
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if jobs == 1:
        for c in todo:
            yield execute_cell(fn_name(fn), c.key, c.params, str(out), threads)
        return
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        futs = [
            ex.submit(execute_cell, fn_name(fn), c.key, c.params, str(out), threads) for c in todo
        ]
        for f in as_completed(futs):
            yield f.result()


def _run_ray(fn, todo, out, **kw):
    try:
        from .ray_engine import run_ray
    except ModuleNotFoundError as e:
        if e.name in ("ray", "sgdyn.validation.sweeps.ray_engine"):
            raise SweepError(
                "--engine ray needs Ray: install the cluster extra, pip install -e '.[cluster]'"
            ) from None
        raise
    yield from run_ray(fn, todo, out, **kw)


ENGINES: dict[str, Callable] = {"local": _run_local, "ray": _run_ray}


def available_engines() -> list[str]:
    return sorted(ENGINES)


def validate_cells(cells: Sequence[Cell]) -> None:
    seen = set()
    for c in cells:
        if not isinstance(c.key, str) or not _KEY.match(c.key):
            raise SweepError(
                f"cell key {c.key!r}: use letters, digits and . _ = + - (it names a folder)"
            )
        if c.key in seen:
            raise SweepError(f"cell key {c.key!r} appears twice")
        seen.add(c.key)
        try:
            json.dumps(c.params)
        except TypeError as e:
            raise SweepError(f"cell {c.key!r}: parameters must be JSON-serialisable ({e})") from e


def run_cells(
    fn: Callable | str,
    cells: Sequence[Cell],
    out: Path,
    *,
    engine: str = "local",
    jobs: int = 1,
    threads: int = 1,
    force: bool = False,
    progress: bool = False,
    **engine_options,
) -> list[CellResult]:
    """Run every unfinished cell with ``engine``; return one :class:`CellResult` per cell, in
    the order of ``cells``. ``jobs`` worker processes (local engine), ``threads`` torch threads
    per worker. ``force`` reruns finished cells."""
    if engine not in ENGINES:
        raise SweepError(f"unknown engine {engine!r}; choose one of {available_engines()}")
    if jobs < 1 or threads < 1:
        raise SweepError("--jobs and --threads must be >= 1")
    validate_cells(cells)
    if not isinstance(fn, str) and "<locals>" in fn_name(fn):
        raise SweepError("the cell function must be a top-level function (workers import it)")
    out = Path(out)
    results: dict[str, CellResult] = {}
    todo = []
    for c in cells:
        rec = None if force else read_finished(out, c)
        if rec is None:
            todo.append(c)
        else:
            results[c.key] = CellResult(
                c.key, c.params, "cached", rec["result"], None, rec["wall_s"]
            )
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="cells", unit="cell", leave=False)
    runner = ENGINES[engine]
    for rec in runner(
        fn, todo, out, jobs=jobs, threads=threads, progress=progress, **engine_options
    ):
        results[rec["key"]] = CellResult(
            rec["key"],
            rec["params"],
            rec["status"],
            rec.get("result"),
            rec.get("error"),
            rec.get("wall_s"),
        )
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return [results[c.key] for c in cells]
