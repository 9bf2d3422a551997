"""``sgdyn simulate``: every theory-vs-simulation check of the quick run within the bands that
docs/simulator.md justifies ("Checks and their bands"), the exact finite-window predictions,
presets, --config reruns, memory refusal, run-directory files."""

import json

import numpy as np
import pytest

from sgdyn.simulator.presets import paper_like
from sgdyn.theory import mlf
from sgdyn.validation.cli import main
from sgdyn.validation.studies.simulate import (
    QUICK,
    SimStudyConfig,
    estimate_memory,
    recorded_window_variance,
)

# a small, fast run for the CLI-machinery tests (not for the science)
TINY = ["--quick", "--N", "6", "--replicas", "8", "--stationary-window-steps", "300",
        "--n-minima", "500", "--minibatches", "32", "--no-progress", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "run"
    assert main(["simulate", "--quick", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="module")
def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def _band(check, median, lo, hi):
    assert median[0] <= check["median"] <= median[1], check
    assert lo <= check["min"] and check["max"] <= hi, check


def test_flatness_and_minima_checks(summary):
    c = summary["checks"]
    # deterministic: the exact mean-field e-width is 2% below Eq 10 (quartic terms)
    _band(c["F_exact_over_eq10"], (0.975, 0.985), 0.975, 0.985)
    # K = 256 finite ensemble: Monte-Carlo error of the averaged profile
    _band(c["F_mc_over_eq10"], (0.95, 1.01), 0.88, 1.08)
    # 8000 sampled minima: relative sampling error of a variance sqrt(2/8000) = 1.6 %
    _band(c["sigma_tilde2_sampled_over_exact"], (0.97, 1.03), 0.935, 1.065)
    _band(c["sigma_tilde2_sampled_over_eq11"], (0.98, 1.05), 0.94, 1.08)


def test_sgd_diffusion_and_drift_checks(summary):
    """These break when the SGD step is wrong (a step scaled by 0.6 gives D x 0.36)."""
    c, s = summary["checks"], summary["sim"]
    # 6 increments x 48 replicas per mode: sqrt(2/287) = 8.3 % per mode, ~3 % for the median
    _band(c["D_measured_over_exact"], (0.88, 1.08), 0.65, 1.35)
    _band(c["D_measured_over_eq14"], (0.90, 1.12), 0.65, 1.40)
    # over the whole window the nonlinear MLF lowers D by ~17 % (docs/simulator.md)
    _band(c["D_window_over_exact"], (0.75, 0.92), 0.6, 1.1)
    _band(c["window_var_diffusive_over_ou"], (0.75, 1.0), 0.55, 1.3)
    # PC1 drift over 5 steps, 48 replicas: within 3 standard errors + 10 % (nonlinearity)
    ratio, err = (
        c["drift_measured_over_eq13"],
        s["drift_velocity_stderr"] / summary["theory"]["drift_velocity"],
    )
    assert 0.05 < err < 0.15
    assert abs(ratio - 1) < 3 * err + 0.1, (ratio, err)


def test_stationary_and_equilibrium_checks_use_exact_finite_windows(summary, run_dir):
    c, t = summary["checks"], summary["theory"]
    # T = 20 tau_max, 48 replicas: at most ~5 % per mode; exact finite-window prediction
    _band(c["window_var_stationary_over_exact_ou"], (0.97, 1.03), 0.92, 1.08)
    # Langevin on Eq 10: L(theta) = L_min e^X fluctuates by <X> ~ N T / (2 L_min) ~ 6 % above
    # L_min, stiffening every mode by that much; plus ~5 % sampling per mode
    _band(c["equilibrium_var_over_exact_window"], (0.88, 0.98), 0.82, 1.03)
    arr = np.load(run_dir / "arrays.npz")
    F = arr["F_eq10"][1:]
    # the reported predictions are computed, not literals
    assert t["psi_equilibrium"] == pytest.approx(
        mlf.predicted_psi(arr["pred_equilibrium"][1:], F).psi, rel=1e-12
    )
    assert t["psi_equilibrium"] != -2.0
    assert t["psi_equilibrium_limit"] == pytest.approx(-2.0, abs=0.05)  # Eq 16
    assert t["psi_stationary"] == pytest.approx(
        mlf.predicted_psi(arr["pred_stationary"][1:], F).psi, rel=1e-12
    )
    # the finite window differs from the T >> tau limit by more than the sampling error
    assert not np.allclose(arr["pred_stationary"], arr["limit_stationary"], rtol=0.03)
    assert not np.allclose(arr["pred_equilibrium"], arr["limit_equilibrium"], rtol=0.03)


def test_psi_simulated_vs_theory(summary):
    s, t, e = summary["sim"], summary["theory"], summary["equilibrium"]
    assert t["psi"] == pytest.approx(1.89, abs=0.05)  # exact OU window, Fig 3B scalings
    assert t["psi_diffusive_limit"] == pytest.approx(2.0, abs=1e-6)
    assert abs(s["psi"] - t["psi"]) < 0.3  # psi_err ~ 0.1
    assert abs(s["psi_stationary"] - t["psi_stationary"]) < 0.1
    assert abs(e["psi"] - t["psi_equilibrium"]) < 0.1
    assert s["psi_pca_diffusive"] > 1.5  # inverse relation also on the pooled PCA


def test_recorded_window_variance_matches_brute_force_covariance():
    # independent reference: the exact covariance of the recorded AR(1) values, by recursion
    D, tau, k, b, T = 0.3, 7.0, 3, 4, 9
    rho = 1 - 1 / tau
    n = (b + T) * k
    A = np.zeros((n + 1, n + 1))  # x_t = sum_s A[t, s] xi_s
    for t in range(1, n + 1):
        A[t] = rho * A[t - 1]
        A[t, t] = 1.0
    C = D * A @ A.T
    idx = [(j + 1) * k for j in range(b, b + T)]
    Cw = C[np.ix_(idx, idx)]
    brute = np.trace(Cw) / T - Cw.sum() / T**2
    got = recorded_window_variance(D, tau, T, burn_records=b, every=k)
    assert float(got) == pytest.approx(brute, rel=1e-10)


def test_writes_the_run_directory_files(run_dir, summary):
    for f in ("summary.json", "report.md", "report.html", "arrays.npz", "variance_flatness.png",
              "flatness_check.png"):  # fmt: skip
        assert (run_dir / f).stat().st_size > 0
        assert f in summary["files"]
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    assert summary["command"] == "simulate" and summary["config"]["quick"] is True
    assert summary["environment"]["torch_threads"] == 1


def test_refuses_to_overwrite_a_different_finished_run(run_dir, capsys):
    assert main(["simulate", "--quick", "--out", str(run_dir), "--seed", "9"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["simulate", "--quick", "--out", str(run_dir), "--device", "cpu"]) == 0
    assert "already holds this finished run" in capsys.readouterr().out


def test_saved_config_reruns_to_the_same_numbers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["simulate", *TINY, "--seed", "3", "--out", str(a)]) == 0
    assert main(["simulate", "--config", str(a / "summary.json"), "--out", str(b)]) == 0
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["config"] == sb["config"]
    for k in ("sim", "theory", "equilibrium", "checks"):
        assert sa[k] == sb[k]


def test_from_profiles_preset_runs_from_a_file(tmp_path, capsys):
    spec = paper_like(6, F_min=1.0, F_max=3.0)
    prof = {"M0": spec.M0, "sigma_M": spec.sigma_M, "sigma_theta": spec.sigma_theta,
            "sigma_off": spec.sigma_off, "off_profile": spec.off_profile,
            "theta1_0": spec.theta1_0, "L0": spec.L0, "L0_cv": spec.L0_cv}  # fmt: skip
    f = tmp_path / "prof.npz"
    np.savez(f, **prof)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["simulate", *TINY, "--out", str(a)]) == 0
    assert main(["simulate", *TINY[1:], "--preset", "from-profiles", "--profiles", str(f),
                 "--out", str(b)]) == 0  # fmt: skip
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sb["config"]["N"] == 6 and sb["config"]["F_max"] is None
    assert sb["config"]["profiles"]["M0"] == pytest.approx(list(spec.M0))
    assert sb["sim"]["psi"] == pytest.approx(sa["sim"]["psi"], rel=1e-6)
    assert main(["simulate", "--preset", "from-profiles", "--profiles", str(f), "--F-max", "4",
                 "--print-config"]) == 2  # fmt: skip
    assert "paper-like preset only" in capsys.readouterr().err


def test_memory_is_estimated_before_anything_is_allocated(tmp_path, capsys):
    out = tmp_path / "big"
    assert main(["simulate", "--N", "300", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "GB" in err and "--n-minima" in err and "--max-memory" in err
    assert not out.exists()
    assert main(["simulate", *TINY, "--max-memory", "0.0001", "--out", str(out)]) == 2
    assert "more than --max-memory" in capsys.readouterr().err
    # the estimate grows as the allocations do: minima N^2, probes N^3, trajectories N R
    m1 = estimate_memory(SimStudyConfig(**QUICK))
    m2 = estimate_memory(SimStudyConfig(**{**QUICK, "N": 24}))
    assert m2["sampled minima (--n-minima)"] == 4 * m1["sampled minima (--n-minima)"]
    assert m2["flatness probes (--N)"] == 8 * m1["flatness probes (--N)"]


def test_float64_study_runs_in_float64_and_agrees_with_float32(tmp_path):
    a, b = tmp_path / "f32", tmp_path / "f64"
    assert main(["simulate", *TINY, "--out", str(a)]) == 0
    assert main(["simulate", *TINY, "--dtype", "float64", "--out", str(b)]) == 0
    s32 = json.loads((a / "summary.json").read_text())
    s64 = json.loads((b / "summary.json").read_text())
    assert s64["config"]["dtype"] == "float64"
    # different precision and random numbers, same law: psi agrees within the errors
    d = abs(s64["sim"]["psi"] - s32["sim"]["psi"])
    assert d < 4 * np.hypot(s64["sim"]["psi_err"], s32["sim"]["psi_err"]) + 0.05
    with pytest.raises(ValueError, match="--dtype must be float32 or float64"):
        SimStudyConfig(dtype="float16").validate()
