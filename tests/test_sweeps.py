"""The sweep runner: order, one folder per finished cell, failure isolation, resume, refusals."""

import json
import sys

import pytest

from sgdyn.validation.sweeps import Cell, SweepError, run_cells


def square_cell(params, cell_dir):
    """A cell that counts its own executions (to see what a resume reruns)."""
    n = cell_dir / "runs.txt"
    n.write_text(str(int(n.read_text()) + 1 if n.exists() else 1))
    if params.get("fail"):
        raise ValueError("this cell was told to fail\nsecond line")
    return {"y": params["x"] ** 2}


def runs(out, key):
    return int((out / "cells" / key / "runs.txt").read_text())


CELLS = [Cell("a", {"x": 2}), Cell("b", {"x": 3}), Cell("c", {"x": 4})]


def test_runs_every_cell_in_order_and_writes_result_last(tmp_path):
    res = run_cells(square_cell, CELLS, tmp_path)
    assert [r.key for r in res] == ["a", "b", "c"]
    assert [r.result["y"] for r in res] == [4, 9, 16]
    assert all(r.status == "done" and r.wall_s >= 0 for r in res)
    rec = json.loads((tmp_path / "cells" / "b" / "result.json").read_text())
    assert rec["params"] == {"x": 3} and rec["result"] == {"y": 9}


def test_failed_cell_is_recorded_and_others_finish(tmp_path):
    cells = [Cell("ok", {"x": 1}), Cell("bad", {"x": 1, "fail": True}), Cell("ok2", {"x": 5})]
    res = run_cells(square_cell, cells, tmp_path)
    assert [r.status for r in res] == ["done", "failed", "done"]
    assert res[1].error == "ValueError: this cell was told to fail"
    assert (tmp_path / "cells" / "bad" / "error.json").is_file()
    assert not (tmp_path / "cells" / "bad" / "result.json").exists()
    # a rerun retries only the failed cell
    res = run_cells(square_cell, cells, tmp_path)
    assert [r.status for r in res] == ["cached", "failed", "cached"]
    assert runs(tmp_path, "ok") == 1 and runs(tmp_path, "bad") == 2


def test_resume_skips_finished_cells_and_reruns_a_deleted_one(tmp_path):
    run_cells(square_cell, CELLS, tmp_path)
    (tmp_path / "cells" / "b" / "result.json").unlink()
    res = run_cells(square_cell, CELLS, tmp_path)
    assert [r.status for r in res] == ["cached", "done", "cached"]
    assert [runs(tmp_path, k) for k in "abc"] == [1, 2, 1]
    assert res[0].result == {"y": 4}


def test_finished_cell_with_other_params_is_refused_unless_forced(tmp_path):
    run_cells(square_cell, CELLS[:1], tmp_path)
    with pytest.raises(SweepError, match="other parameters"):
        run_cells(square_cell, [Cell("a", {"x": 7})], tmp_path)
    res = run_cells(square_cell, [Cell("a", {"x": 7})], tmp_path, force=True)
    assert res[0].result == {"y": 49} and runs(tmp_path, "a") == 2


def test_worker_processes_give_the_same_results(tmp_path):
    res = run_cells("test_sweeps:square_cell", CELLS, tmp_path, jobs=2)
    assert [r.result["y"] for r in res] == [4, 9, 16]


def pools_cell(params, cell_dir):
    """A cell that reports the thread counts it ran with (torch and the BLAS pools)."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    np.linalg.eigh(np.eye(64))  # load numpy's BLAS/LAPACK
    blas = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
    return {"torch": torch.get_num_threads(), "blas": blas}


@pytest.mark.parametrize("jobs", [1, 2])
def test_cells_run_with_torch_and_blas_threads_pinned(tmp_path, jobs):
    """--threads pins numpy/scipy's BLAS pools as well as torch: two worker processes with a
    2-thread OpenBLAS each ran an eigh workload 4x slower than with one thread each."""
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info()]
    res = run_cells("test_sweeps:pools_cell", CELLS[:2], tmp_path, jobs=jobs, threads=1)
    for r in res:
        assert r.result["torch"] == 1 and r.result["blas"] in ([1], []), r.result
    assert [p["num_threads"] for p in threadpool_info()] == before  # restored in this process


@pytest.mark.parametrize(
    "cells,match",
    [
        ([Cell("a/b", {"x": 1})], "names a folder"),
        ([Cell("a", {"x": 1}), Cell("a", {"x": 2})], "twice"),
        ([Cell("a", {"x": object()})], "JSON"),
    ],
)
def test_bad_cells_are_refused_before_anything_runs(tmp_path, cells, match):
    with pytest.raises(SweepError, match=match):
        run_cells(square_cell, cells, tmp_path)
    assert not (tmp_path / "cells").exists()


def test_unknown_engine_and_local_functions_are_refused(tmp_path):
    with pytest.raises(SweepError, match="unknown engine"):
        run_cells(square_cell, CELLS, tmp_path, engine="slurm")

    def local_fn(params, d):
        return {}

    with pytest.raises(SweepError, match="top-level"):
        run_cells(local_fn, CELLS, tmp_path)


def test_ray_engine_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(SweepError, match=r"\.\[cluster\]"):
        run_cells(square_cell, CELLS, tmp_path, engine="ray")


def test_raise_if_failed_names_the_first_failure(tmp_path):
    from sgdyn.validation.sweeps import CellResult, raise_if_failed

    ok = CellResult(key="a", params={}, status="done", result={})
    bad = CellResult(key="b", params={}, status="failed", error="boom")
    raise_if_failed([ok], tmp_path)
    with pytest.raises(RuntimeError, match=r"1 of 2 grid cells failed \(first: b: boom\)"):
        raise_if_failed([ok, bad], tmp_path, "grid cells")


def test_threads_option_pins_blas_and_tolerates_a_bare_install(monkeypatch):
    """`--threads N` (cli.common.set_threads) limits the BLAS pools of this process too; with
    threadpoolctl missing (a `--no-deps` install) nothing is limited and nothing fails."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from sgdyn.validation.cli.common import set_threads
    from sgdyn.validation.sweeps.runner import limit_blas_threads

    np.linalg.eigh(np.eye(8))
    prev = torch.get_num_threads()
    with threadpool_limits(None):  # restores this process's pools afterwards
        set_threads(1)
        assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} <= {1}
    torch.set_num_threads(prev)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    limit_blas_threads(1).restore_original_limits()
