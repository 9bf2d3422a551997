"""sgdyn forgetting: the quick study end to end, the task split, and bad input."""

import json

import numpy as np
import pytest
import torch

from sgdyn.validation.cli.main import main
from sgdyn.validation.data import ArrayDataset
from sgdyn.validation.studies.forgetting import QUICK, ForgettingConfig, run_forgetting
from sgdyn.validation.studies.forgetting_tasks import make_tasks


def _toy(labels, n_per=10):
    y = torch.tensor([c for c in labels for _ in range(n_per)])
    x = torch.rand(len(y), 4)
    return ArrayDataset(x, y, (1, 2, 2), "toy", "test")


def test_make_tasks_split_is_disjoint_and_per_class():
    ds = _toy(range(4), n_per=10)
    tasks = make_tasks(ds, [(0, 1), (2, 3)], test_fraction=0.2, seed=0)
    assert [t.classes for t in tasks] == [(0, 1), (2, 3)]
    for t in tasks:
        assert len(t.y) == 16 and len(t.y_test) == 4
        assert set(t.y.tolist()) == set(t.classes) == set(t.y_test.tolist())
        tr = {tuple(r) for r in t.x.tolist()}
        assert not tr & {tuple(r) for r in t.x_test.tolist()}


def test_task_with_missing_class_is_refused():
    ds = _toy([0, 1, 2], n_per=5)
    with pytest.raises(ValueError, match="class 3 has no samples"):
        make_tasks(ds, [(0, 1), (2, 3)])


@pytest.mark.parametrize(
    "over, match",
    [
        ({"lam": -1.0}, "--lam"),
        ({"ewc_lams": (1.0, -5.0)}, "--ewc-lams"),
        ({"nc": 3000}, "--nc"),
        ({"fisher": "sampled"}, "--fisher"),
        ({"n_tasks": 7}, "--n-tasks"),
    ],
)
def test_config_refusals(over, match):
    with pytest.raises(ValueError, match=match):
        ForgettingConfig(**{**QUICK, **over}).validate()


def test_nc_above_components_refused_before_work(tmp_path):
    cfg = ForgettingConfig(**{**QUICK, "nc": 200, "ncs": (5, 200)})  # window of 60 steps
    with pytest.raises(ValueError, match="at most 59 components"):
        run_forgetting(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cli_bad_input_one_line(tmp_path, capsys):
    rc = main(["forgetting", "--out", str(tmp_path / "r"), "--quick", "--lam", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and "lambda" in err.lower() or "--lam" in err


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("forgetting") / "run"
    rc = main(["forgetting", "--out", str(out), "--quick", "--threads", "1", "--no-progress"])
    assert rc == 0
    return out


def test_quick_study_end_to_end(quick_run):
    s = json.loads((quick_run / "summary.json").read_text())
    for key in ("ldc.best.eps_sum", "ewc.best.eps_sum", "ldc.nc_star", "no_constraint.eps1"):
        d = s
        for part in key.split("."):
            d = d[part]
        assert d is not None
    for m in ("none", "ewc", "ldc"):
        f = s["sequence"]["avg_forgetting"][m]
        assert 0.0 <= f + 1e-12 <= 1.0
    # the null: no constraint forgets task 1 at least as much as LDC's best point
    assert s["no_constraint"]["eps1"] >= s["ldc"]["best"]["eps1"] - 1e-9
    for f in (
        "fig4ac_errors_vs_time.png",
        "fig4bd_q.png",
        "fig4e_tradeoff.png",
        "fig4f_nc.png",
        "fig_sequence_accuracy.png",
        "report.md",
        "report.html",
        "arrays.npz",
    ):
        assert (quick_run / f).stat().st_size > 0
    rep = (quick_run / "report.md").read_text()
    assert "random orthonormal" in rep and "no constraint" in rep
    with np.load(quick_run / "arrays.npz") as z:
        assert "sequence_R_ldc" in z.files and z["sequence_R_ldc"].shape == (3, 3)


def test_quick_rerun_is_a_no_op(quick_run, capsys):
    rc = main(["forgetting", "--out", str(quick_run), "--quick", "--threads", "1"])
    assert rc == 0 and "already holds" in capsys.readouterr().out


def test_q_matches_direct_projection(quick_run):
    """q_i stored for a cell equals |(w2 - w1) . p_1i| computed here, one mode at a time."""
    base = torch.load(quick_run / "base" / "seed0.pt", weights_only=True)
    with np.load(quick_run / "cells" / "ldc_lam10_nc20_s0" / "arrays.npz") as z:
        q, w2 = z["q"], z["w2"].astype(np.float64)
    w1, P = base["w1"].double().numpy(), base["P"].double().numpy()
    direct = [abs(sum((w2[k] - w1[k]) * P[i, k] for k in range(w1.size))) for i in range(5)]
    assert np.allclose(q[:5], direct, rtol=1e-4, atol=1e-7)


def test_flatness_follows_eq8_with_calibrated_prefactor(quick_run):
    """--flatness variance: F_i sigma_i^(2/psi) is the prefactor C for every mode (Eq 8),
    and C is the geometric mean of F_measured sigma^(2/psi) over the calibration modes."""
    base = torch.load(quick_run / "base" / "seed0.pt", weights_only=True)
    info = json.loads(base["info"])["flatness"]
    F, var = base["F"].numpy(), base["var"].numpy()
    C = F * var ** (1 / info["psi_used"])
    assert np.allclose(C, info["prefactor_C"], rtol=1e-9)
    idx = np.asarray(info["measured_modes"]) - 1
    Fm = np.asarray(info["measured_F"])
    ok = np.isfinite(Fm)
    geo = np.exp(np.mean(np.log(Fm[ok] * var[idx][ok] ** (1 / info["psi_used"]))))
    assert np.isclose(geo, info["prefactor_C"], rtol=1e-9)


def test_cli_takes_the_shared_sweep_options(tmp_path, monkeypatch, capsys):
    """--engine/--address/--jobs reach run_cells (one runner for every sweep); Ray-only
    options without --engine ray are refused before any folder exists."""
    rc = main(["forgetting", "--out", str(tmp_path / "r"), "--quick", "--address", "auto"])
    assert rc == 2 and "--engine ray" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

    import sgdyn.validation.studies.forgetting as study

    seen = {}

    def fake_run_cells(fn, cells, out, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(study, "run_cells", fake_run_cells)
    rc = main(["forgetting", "--out", str(tmp_path / "s"), "--quick", "--jobs", "2",
               "--threads", "1", "--no-progress"])  # fmt: skip
    assert rc == 2 and seen["engine"] == "local" and seen["jobs"] == 2
