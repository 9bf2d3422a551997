"""``sgdyn simulate --quick`` end to end: files, key numbers, refusal to overwrite."""

import json

import pytest

from sgdyn.validation.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "run"
    assert main(["simulate", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def test_quick_run_writes_summary_and_report(run_dir):
    s = json.loads((run_dir / "summary.json").read_text())
    for k in ("sim", "theory", "equilibrium", "checks", "config"):
        assert k in s
    # paper-like preset (Fig 3B scalings): inverse relation in the diffusive window,
    # the equilibrium baseline gives the opposite sign (Eq 16: psi = -2)
    assert s["theory"]["psi"] == pytest.approx(2.0, abs=0.3)
    assert s["sim"]["psi"] == pytest.approx(s["theory"]["psi"], abs=0.4)
    assert s["equilibrium"]["psi"] == pytest.approx(-2.0, abs=0.3)
    assert abs(s["sim"]["psi_stationary"] - s["theory"]["psi_stationary"]) < 0.3
    c = s["checks"]
    assert c["sigma_tilde2_sampled_over_exact"]["median"] == pytest.approx(1.0, abs=0.05)
    assert c["F_exact_over_eq10"]["median"] == pytest.approx(1.0, abs=0.1)
    for f in ("report.md", "arrays.npz", "variance_flatness.png", "flatness_check.png"):
        assert (run_dir / f).exists()


def test_refuses_to_overwrite_a_different_finished_run(run_dir, capsys):
    assert main(["simulate", "--quick", "--out", str(run_dir), "--seed", "9"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["simulate", "--quick", "--out", str(run_dir), "--no-progress"]) == 0
    assert "already holds this finished run" in capsys.readouterr().out
