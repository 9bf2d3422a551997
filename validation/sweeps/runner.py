"""The sweep runner: ``run_cells(fn, cells, out)``.

A *cell* is a key (its folder name) and JSON-serialisable parameters. ``fn`` is a top-level
function ``fn(params: dict, cell_dir: Path) -> dict`` (importable by worker processes, or a
``"module:function"`` string); it may write arrays and figures into ``cell_dir`` and returns a
JSON-serialisable record. The runner writes ``out/cells/<key>/result.json`` last (atomically),
so a cell folder is finished exactly when that file exists; a failing cell writes
``error.json`` with its one-line reason and the others go on. Rerunning skips finished cells
whose parameters match and refuses (with the way out) a finished cell whose parameters differ.
A cell runs with ``threads`` torch threads and the same limit on numpy/scipy's BLAS and
OpenMP pools (threadpoolctl): two workers with a default 2-thread OpenBLAS each ran a
LAPACK workload 4-5x slower than with one thread each (``bench/blas_oversubscription.py``).
"""

from __future__ import annotations

import importlib
import json
import re
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
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


def cell_resources(device, threads: int) -> dict:
    """What one cell asks a scheduling engine (Ray) for: a CPU per torch thread, and one GPU
    on a CUDA device (``--gpus-per-cell`` overrides it); the local engine ignores it."""
    return {"cpu": max(1, int(threads)), "gpu": 1 if str(device).startswith("cuda") else 0}


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


class _NoLimits:
    def restore_original_limits(self) -> None:
        pass


def limit_blas_threads(n: int):
    """Limit numpy/scipy's BLAS and OpenMP pools to ``n`` threads (threadpoolctl) until the
    returned object's ``restore_original_limits()``; without threadpoolctl (a bare install
    with ``--no-deps``) nothing is limited."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return _NoLimits()
    return threadpool_limits(int(n))


@contextmanager
def pinned_threads(threads: int):
    """``threads`` torch threads and the same limit on numpy/scipy's BLAS pools (module doc)
    inside the block; both restored after."""
    import torch

    prev = torch.get_num_threads()
    n = max(1, int(threads))
    torch.set_num_threads(n)
    limits = limit_blas_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)
        limits.restore_original_limits()


def execute_cell(fn: Callable | str, key: str, params: dict, out: str, threads: int) -> dict:
    """Run one cell in this process and write its folder; never raises for a cell's own
    failure (the error is recorded in ``error.json`` and returned)."""
    with pinned_threads(threads):
        return _execute(fn, key, params, out)


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


@dataclass(frozen=True)
class Task:
    """What an engine schedules: one cell (``group_fn`` None) or a group of cells run by one
    call of ``fn(params_list, cell_dirs) -> list[dict | Exception]`` (e.g. R replicas)."""

    fn: str
    cells: tuple
    grouped: bool = False

    @property
    def resources(self) -> dict:
        """Per-task resources: the largest request of its cells."""
        res: dict = {}
        for c in self.cells:
            for k, v in c.resources.items():
                res[k] = max(res.get(k, 0), v)
        return res


def execute_group(fn: Callable | str, keys, params_list, out: str, threads: int) -> list[dict]:
    """Run a group of cells with one call of ``fn(params_list, cell_dirs)`` and write every
    cell's folder as :func:`execute_cell` does; an exception of the whole call (or an
    exception returned for one cell) fails those cells only."""
    with pinned_threads(threads):
        return _execute_group(fn, keys, params_list, out)


def _execute_group(fn: Callable | str, keys, params_list, out: str) -> list[dict]:
    dirs = [cell_dir(Path(out), k) for k in keys]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / "error.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        results = list(resolve(fn)([dict(p) for p in params_list], dirs))
        if len(results) != len(keys):
            raise TypeError(f"group function returned {len(results)} results for {len(keys)}")
        tb = ""
    except Exception as e:  # noqa: BLE001 - the group's failure fails its cells only
        results, tb = [e] * len(keys), traceback.format_exc()
    wall = (time.perf_counter() - t0) / max(1, len(keys))
    recs = []
    for k, p, d, res in zip(keys, params_list, dirs, results, strict=True):
        if isinstance(res, dict):
            try:
                json.dumps(res, default=str)
            except TypeError as e:
                res = e
        if not isinstance(res, dict):
            err = (
                res
                if isinstance(res, Exception)
                else TypeError(f"group function returned {type(res).__name__}, expected dict")
            )
            rec = {
                "key": k,
                "params": p,
                "error": f"{type(err).__name__}: {err}".splitlines()[0],
                "traceback": tb or "".join(traceback.format_exception(err)),
                "wall_s": wall,
            }
            _write_json(d / "error.json", rec)
            recs.append({"key": k, "status": "failed", **rec})
            continue
        rec = {"key": k, "params": p, "result": res, "wall_s": wall}
        _write_json(d / "result.json", rec)  # last: marks the cell finished
        recs.append({"key": k, "status": "done", **rec})
    return recs


def run_task(task: Task, out: str, threads: int) -> list[dict]:
    """Execute one :class:`Task` in this process (what every engine's worker calls)."""
    if task.grouped:
        return execute_group(
            task.fn, [c.key for c in task.cells], [c.params for c in task.cells], out, threads
        )
    c = task.cells[0]
    return [execute_cell(task.fn, c.key, c.params, out, threads)]


def _run_local(tasks: Sequence[Task], out: Path, *, jobs: int, threads: int, progress, **_):
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if jobs == 1:
        for t in tasks:
            yield from run_task(t, str(out), threads)
        return
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        futs = [ex.submit(run_task, t, str(out), threads) for t in tasks]
        for f in as_completed(futs):
            yield from f.result()


def _run_ray(tasks, out, **kw):
    try:
        from .ray_engine import run_ray
    except ModuleNotFoundError as e:
        if e.name in ("ray", "sgdyn.validation.sweeps.ray_engine"):
            raise SweepError(
                "--engine ray needs Ray: install the cluster extra, pip install -e '.[cluster]'"
            ) from None
        raise
    yield from run_ray(tasks, out, **kw)


# an engine: ``engine(tasks, out, *, jobs, threads, progress, **options)`` yields one record
# (the dict of execute_cell) per cell as cells finish
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
    group_by: Callable[[Cell], object] | None = None,
    group_fn: Callable | str | None = None,
    **engine_options,
) -> list[CellResult]:
    """Run every unfinished cell with ``engine``; return one :class:`CellResult` per cell, in
    the order of ``cells``. ``jobs`` worker processes (local engine), ``threads`` torch threads
    per worker. ``force`` reruns finished cells.

    Grouped cells: with ``group_fn`` (``fn(params_list, cell_dirs) -> list[dict | Exception]``,
    a top-level function or ``"module:function"``) the unfinished cells with equal
    ``group_by(cell)`` run as one task (e.g. replicas sharing B and architecture trained at
    once); each cell still gets its own folder and result, exactly as with ``fn``."""
    if engine not in ENGINES:
        raise SweepError(f"unknown engine {engine!r}; choose one of {available_engines()}")
    if jobs < 1 or threads < 1:
        raise SweepError("--jobs and --threads must be >= 1")
    validate_cells(cells)
    for f in (fn, group_fn):
        if f is not None and not isinstance(f, str) and "<locals>" in fn_name(f):
            raise SweepError("the cell function must be a top-level function (workers import it)")
    if group_fn is not None and group_by is None:
        raise SweepError("group_fn needs group_by (the key that decides which cells run together)")
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
    if group_fn is None:
        tasks = [Task(fn_name(fn), (c,)) for c in todo]
    else:
        groups: dict = {}
        for c in todo:
            groups.setdefault(group_by(c), []).append(c)
        tasks = [Task(fn_name(group_fn), tuple(g), True) for g in groups.values()]
    runner = ENGINES[engine]
    for rec in runner(tasks, out, jobs=jobs, threads=threads, progress=progress, **engine_options):
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


def raise_if_failed(done: Sequence[CellResult], out, what: str = "cells") -> None:
    """For studies that need every cell: one RuntimeError naming the first failure (the
    finished cells stay in ``out/cells``; a rerun retries only the failed ones)."""
    failed = [r for r in done if r.status == "failed"]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(done)} {what} failed (first: {failed[0].key}: "
            f"{failed[0].error}); the finished cells are kept in {out}/cells and a rerun "
            "retries only the failed ones"
        )
