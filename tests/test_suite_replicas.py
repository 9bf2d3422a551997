"""`sgdyn validate`: the SGD cells that share B and the model train together as replicas and
give the numbers of the per-cell path (issue 11 item 1 for the validation suite)."""

import pytest
from _tiny_suite import grid, suite_toml

from sgdyn.validation.studies.suite.cell import cell_group
from sgdyn.validation.studies.suite.study import ValidateConfig, run_validate
from sgdyn.validation.sweeps import Cell

SEEDS = suite_toml(
    "seeds",
    "two seeds of one digits SGD cell and an Adam cell",
    grid("sgd", 50, 0.2, seeds=(0, 1)),
    grid("adam", 50, 0.003),
)


def test_groups_are_sgd_cells_sharing_b_and_model():
    base = dict(dataset="digits", model="mlp", hidden=[20, 20], optimizer="sgd", lr=0.1,
                batch_size=50, seed=0)  # fmt: skip
    g = cell_group(Cell("a", base))
    assert cell_group(Cell("b", {**base, "seed": 3, "lr": 0.2})) == g  # alpha, seed may differ
    assert cell_group(Cell("c", {**base, "batch_size": 25})) != g
    assert cell_group(Cell("d", {**base, "hidden": [20, 20, 20]})) != g
    adam = {**base, "optimizer": "adam"}
    assert cell_group(Cell("e", adam)) != cell_group(Cell("f", adam))  # each its own


def test_replica_cells_equal_the_per_cell_path(tmp_path):
    suite = tmp_path / "seeds.toml"
    suite.write_text(SEEDS)
    cfg = ValidateConfig(suite=str(suite), device="cpu")
    a = run_validate(cfg, tmp_path / "batched")
    b = run_validate(cfg, tmp_path / "per_cell", batch=False)
    assert a["sweep"]["batched_replicas"] and not b["sweep"]["batched_replicas"]
    ca = {c["key"]: c for c in a["cells"]}
    cb = {c["key"]: c for c in b["cells"]}
    assert set(ca) == set(cb) and len(ca) == 3
    for key in ca:
        ra, rb = ca[key]["record"], cb[key]["record"]
        sgd = ra["optimizer"] == "sgd"
        assert ra["timings"]["capture_replicas"] == (2 if sgd else 1)
        assert rb["timings"]["capture_replicas"] == 1
        assert ra["psi"] == pytest.approx(rb["psi"], rel=1e-3)
        assert ra["gamma"] == pytest.approx(rb["gamma"], rel=1e-3)
        if sgd:
            assert ra["mlf"]["M0_vs_F"]["slope"] == pytest.approx(
                rb["mlf"]["M0_vs_F"]["slope"], rel=1e-3, abs=1e-3
            )


def test_a_cell_run_alone_gets_the_window_it_gets_in_its_group(tmp_path):
    """A lone SGD cell is captured on the replica path too (a group of one): its window is
    bit for bit the one it had as a replica among others, whichever cells ran with it."""
    import torch

    suite = tmp_path / "seeds.toml"
    suite.write_text(SEEDS)
    both = run_validate(ValidateConfig(suite=str(suite), device="cpu"), tmp_path / "both")
    key = next(c["key"] for c in both["cells"] if c["key"].endswith("sgd-B50-a0.2-s1"))
    alone = run_validate(
        ValidateConfig(suite=str(suite), device="cpu", cells=(key,)), tmp_path / "alone"
    )
    assert alone["cells"][0]["record"]["timings"]["capture_replicas"] == 1

    def window(run):
        f = tmp_path / run / "cells" / key / "reproduce" / "capture.pt"
        return torch.load(f, weights_only=True)["trajectory"]

    assert torch.equal(window("alone"), window("both"))
    t = window("both")  # the file holds this cell's window only, not the group's buffer
    assert t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_reproduce_refuses_a_capture_made_with_other_settings(tmp_path):
    from dataclasses import replace

    from sgdyn.validation.studies.capture import capture_window
    from sgdyn.validation.studies.reproduce.pipeline import ReproduceConfig, run_reproduce

    cfg = ReproduceConfig.quick_defaults(
        hidden=(20, 20), lr=0.2, window_start=8, window_epochs=1, max_epochs=12, device="cpu"
    )
    cap = capture_window(cfg, progress=False)
    with pytest.raises(ValueError, match="other capture settings"):
        run_reproduce(replace(cfg, lr=cfg.lr * 2), tmp_path / "a", capture=cap)
    with pytest.raises(ValueError, match="other data"):
        run_reproduce(
            replace(cfg, per_class=50),
            tmp_path / "b",
            capture=replace(cap, config=replace(cfg, per_class=50)),
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_group_keeps_every_window_when_its_cells_fail(tmp_path, monkeypatch):
    """The group's windows are checkpointed before any cell is analysed: after every cell of
    the group failed, a rerun trains nothing (capture_windows is not called again)."""
    import sgdyn.validation.studies.capture_replicas as cr
    from sgdyn.validation.studies.suite import cell as cell_mod

    suite = tmp_path / "seeds.toml"
    suite.write_text(SEEDS.split("[[grid]]")[0] + "[[grid]]" + SEEDS.split("[[grid]]")[1])
    cfg = ValidateConfig(suite=str(suite), device="cpu")

    def broken(*a, **k):
        raise RuntimeError("analysis died")

    monkeypatch.setattr(cell_mod, "run_cell", broken)
    s = run_validate(cfg, tmp_path / "run")
    assert s["n_failed"] == 2
    for c in s["cells"]:
        assert (tmp_path / "run" / "cells" / c["key"] / "reproduce" / "capture.pt").is_file()
    monkeypatch.undo()
    (tmp_path / "run" / "summary.json").unlink()

    def no_training(*a, **k):
        raise AssertionError("the windows were trained again")

    monkeypatch.setattr(cr, "capture_windows", no_training)
    s = run_validate(cfg, tmp_path / "run")
    assert s["n_failed"] == 0
    assert all(c["record"]["timings"]["capture_replicas"] == 2 for c in s["cells"])
