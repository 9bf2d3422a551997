"""Golden values of ``sgdyn reproduce --quick`` (deterministic: digits, seed 0, CPU, 1 thread).

The pinned numbers are in tests/golden/reproduce_quick.json. Tolerances: integers exact
(n90 +- 1), capture/PCA/flatness numbers 1e-3 relative (a different thread count changes
them by <= 1e-5: float noise, not a different result), the Langevin contrast 2e-2 / 0.05
(its noise is amplified by 600 stochastic steps; threads change it by ~2e-4).

After an intended change of the numbers, regenerate and commit the file with a note why:

    SGDYN_UPDATE_GOLDEN=1 python -m pytest tests/test_golden_quick.py
"""

import json
import os
from pathlib import Path

import pytest

from sgdyn.validation.cli import main

GOLDEN = Path(__file__).parent / "golden" / "reproduce_quick.json"
EXACT = [
    "phases.transition_epoch", "phases.window_start_epoch", "pca.n_snapshots",
    "pca.n_features", "flatness.n_modes", "flatness.n_fit_modes", "flatness.first_fitted_mode",
]  # fmt: skip
REL = [
    "pca.gamma", "pca.var1_over_var2", "pca.fraction_pc1", "pca.total_variance",
    "phases.loss_at_window_end", "dynamics.pc1.drift_ratio",
    "dynamics.modes_2_to_k.median_drift_ratio", "flatness.L0", "flatness.psi",
    "flatness.psi_quadratic", "flatness.agreement.median_ratio_quadratic_over_ewidth",
    "pc1.beta", "pc1.beta_k_mean", "equilibrium.temperature.temperature",
]  # fmt: skip
LANGEVIN = ["equilibrium.psi", "equilibrium.psi_own_pca"]


def _get(d, key):
    for k in key.split("."):
        d = d[k]
    return d


@pytest.fixture(scope="module")
def quick_summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "run"
    argv = ["reproduce", "--quick", "--device", "cpu", "--threads", "1", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    return json.loads((out / "summary.json").read_text())


def test_quick_outputs_match_the_golden_values(quick_summary):
    got = {k: _get(quick_summary, k) for k in EXACT + ["pca.n90_excl_pc1"] + REL + LANGEVIN}
    if os.environ.get("SGDYN_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"wrote {GOLDEN}")
    want = json.loads(GOLDEN.read_text())
    how = "regenerate after an intended change: SGDYN_UPDATE_GOLDEN=1 pytest " + __file__
    for k in EXACT:
        assert got[k] == want[k], f"{k}: {got[k]} != golden {want[k]}; {how}"
    assert abs(got["pca.n90_excl_pc1"] - want["pca.n90_excl_pc1"]) <= 1, how
    for k in REL:
        assert got[k] == pytest.approx(want[k], rel=1e-3), f"{k}: golden {want[k]}; {how}"
    for k in LANGEVIN:
        assert got[k] == pytest.approx(want[k], rel=2e-2, abs=0.05), f"{k}; {how}"


def test_quick_run_science_signs(quick_summary):
    s = quick_summary
    assert s["flatness"]["n_fit_modes"] == s["flatness"]["n_modes"] - 1  # PC1 excluded
    assert s["flatness"]["psi"] > 0  # SGD: inverse variance-flatness relation
    assert s["equilibrium"]["psi"] < 0 and s["equilibrium"]["psi_own_pca"] < 0  # Eq 16
