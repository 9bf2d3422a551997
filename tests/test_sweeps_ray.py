"""The sweep runner's grouped tasks and its Ray engine on a local instance."""

import sys
from pathlib import Path

import pytest
from test_sweeps import CELLS, runs, square_cell

from sgdyn.validation.sweeps import Cell, SweepError, run_cells


def square_group(params_list, cell_dirs):
    """A group function: one result per cell; a cell asked to fail returns its exception."""
    out = []
    for p, d in zip(params_list, cell_dirs, strict=True):
        out.append(square_cell(p, d) if not p.get("fail") else ValueError("told to fail"))
    (cell_dirs[0] / "group_size.txt").write_text(str(len(params_list)))
    return out


def test_grouped_cells_equal_the_per_cell_path_and_resume(tmp_path):
    cells = CELLS + [Cell("d", {"x": 5, "fail": True})]
    per_cell = run_cells(square_cell, cells, tmp_path / "a")
    grouped = run_cells(
        square_group, cells, tmp_path / "b", group_by=lambda c: c.params["x"] % 2,
        group_fn=square_group,
    )  # fmt: skip
    assert [r.result for r in grouped] == [r.result for r in per_cell]
    assert [r.status for r in grouped] == ["done", "done", "done", "failed"]
    assert grouped[3].error == "ValueError: told to fail"
    (tmp_path / "b" / "cells" / "b" / "result.json").unlink()
    again = run_cells(
        square_group, cells, tmp_path / "b", group_by=lambda c: 0, group_fn=square_group
    )
    assert [r.status for r in again] == ["cached", "done", "cached", "failed"]
    assert runs(tmp_path / "b", "b") == 2 and runs(tmp_path / "b", "a") == 1
    with pytest.raises(SweepError, match="group_by"):
        run_cells(square_group, cells, tmp_path / "c", group_fn=square_group)


def test_engine_ray_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "sgdyn.validation.sweeps.ray_engine", raising=False)
    with pytest.raises(SweepError, match=r"pip install -e '\.\[cluster\]'"):
        run_cells(square_cell, CELLS, tmp_path, engine="ray")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    here = str(Path(__file__).parent)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": here}},
    )
    yield ray
    ray.shutdown()


def test_ray_engine_runs_a_grid_and_resumes_after_a_deleted_cell(tmp_path, local_ray):
    import shutil

    cells = [Cell("a", {"x": 2}, {"cpu": 1, "gpu": 0}), Cell("b", {"x": 3}, {"cpu": 1})]
    res = run_cells(square_cell, cells, tmp_path, engine="ray")
    assert [r.status for r in res] == ["done", "done"]
    assert [r.result["y"] for r in res] == [4, 9]
    shutil.rmtree(tmp_path / "cells" / "b")
    res = run_cells(square_cell, cells, tmp_path, engine="ray")
    assert [r.status for r in res] == ["cached", "done"]
    assert runs(tmp_path, "a") == 1 and runs(tmp_path, "b") == 1
    # grouped tasks go through the same engine
    res = run_cells(
        square_group, cells, tmp_path / "g", engine="ray", group_by=lambda c: 0,
        group_fn=square_group,
    )  # fmt: skip
    assert [r.result["y"] for r in res] == [4, 9]
    assert (tmp_path / "g" / "cells" / "a" / "group_size.txt").read_text() == "2"
    # a request the cluster can never satisfy is refused instead of waiting forever
    with pytest.raises(SweepError, match="Ray cluster has"):
        run_cells(square_cell, [Cell("z", {"x": 1})], tmp_path, engine="ray", gpus_per_cell=1)


@pytest.mark.slow  # the fast version: test_ray_engine_runs_a_grid_and_resumes_after_a_deleted_cell
def test_flatness_grid_on_ray_equals_the_local_engine(tmp_path, local_ray):
    from sgdyn.validation.studies.flatness_grid import QUICK, GridConfig, run_grid

    cfg = GridConfig.from_dict(dict(QUICK, quick=True), lrs=(0.1, 0.2), batch_sizes=(50,))
    cfg.device = "cpu"
    a = run_grid(cfg, tmp_path / "ray", engine="ray")
    b = run_grid(cfg, tmp_path / "local")
    assert a["sweep"]["engine"] == "ray"
    assert [r["psi"] for r in a["runs"]] == [r["psi"] for r in b["runs"]]
