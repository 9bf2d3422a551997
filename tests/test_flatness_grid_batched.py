"""flatness-grid: the cells sharing B train as replicas and give the per-cell path's numbers."""

import json

import numpy as np
import pytest

from sgdyn.validation.cli.main import main
from sgdyn.validation.studies.capture import CaptureConfig, capture_window
from sgdyn.validation.studies.capture_replicas import capture_windows
from sgdyn.validation.studies.flatness_grid import QUICK, GridConfig, run_grid


def test_capture_windows_equal_separate_captures():
    cfgs = [
        CaptureConfig(dataset="digits", lr=a, batch_size=50, window_epochs=2, window_start=s,
                      max_epochs=5, min_epochs=5, device="cpu")
        for a, s in [(0.1, 4), (0.2, 3), (0.3, None)]
    ]  # fmt: skip
    for one, many in zip([capture_window(c, progress=False) for c in cfgs],
                         capture_windows(cfgs), strict=True):  # fmt: skip
        assert one.window_start_epoch == many.window_start_epoch
        assert one.window_reason == many.window_reason
        np.testing.assert_allclose(many.trajectory, one.trajectory, rtol=0, atol=1e-5)
        np.testing.assert_allclose(many.loss_curve, one.loss_curve, rtol=1e-5)
        np.testing.assert_allclose(
            many.pca.explained_variance_[:10], one.pca.explained_variance_[:10], rtol=1e-4
        )


def test_capture_windows_refuse_mixed_batch_sizes():
    cfgs = [CaptureConfig(dataset="digits", batch_size=b, device="cpu") for b in (50, 100)]
    with pytest.raises(ValueError, match="group the cells by B"):
        capture_windows(cfgs)


def test_batched_grid_equals_the_per_cell_grid(tmp_path):
    cfg = GridConfig.from_dict(dict(QUICK, quick=True), lrs=(0.1, 0.2), batch_sizes=(50,))
    cfg.device = "cpu"
    a = run_grid(cfg, tmp_path / "batched")
    b = run_grid(cfg, tmp_path / "per_cell", batch=False)
    assert a["sweep"]["batched_replicas"] and not b["sweep"]["batched_replicas"]
    for ra, rb in zip(a["runs"], b["runs"], strict=True):
        assert (ra["batch_size"], ra["lr"]) == (rb["batch_size"], rb["lr"])
        assert ra["psi"] == pytest.approx(rb["psi"], rel=1e-3)
        assert ra["psi_quadratic"] == pytest.approx(rb["psi_quadratic"], rel=1e-3)
    with np.load(tmp_path / "batched" / "arrays.npz") as za:
        with np.load(tmp_path / "per_cell" / "arrays.npz") as zb:
            for k in za.files:
                np.testing.assert_allclose(za[k], zb[k], rtol=1e-3)


def test_cli_engine_ray_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    out = tmp_path / "g"
    assert main(["flatness-grid", "--quick", "--engine", "ray", "--out", str(out)]) == 2
    assert "pip install -e '.[cluster]'" in capsys.readouterr().err
    assert not out.exists()


def test_cli_sweep_options(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["flatness-grid", "--quick", "--batch-sizes", "50", "--no-batch",
                 "--out", str(out)]) == 0  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    assert s["sweep"] == {"engine": "local", "batched_replicas": False}
    assert main(["flatness-grid", "--quick", "--address", "x:1", "--out", str(out)]) == 2
    assert "--engine ray only" in capsys.readouterr().err
