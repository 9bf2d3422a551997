"""The mechanism stage of ``sgdyn reproduce`` (Figs 3, 5; Eq 14) on the quick protocol: keys,
arrays and figures, the checkpoints it needs, and the clear message without them."""

import io
import json

import numpy as np
import pytest
import torch

from sgdyn.validation.cli import main
from sgdyn.validation.studies.reproduce.mechanism_stage import (
    NoCheckpointsError,
    temperature_history,
)

FIGS = [
    "fig3a_mlf_profiles.png",
    "fig3b_ensemble_vs_F.png",
    "fig5a_temperature_profile.png",
    "fig5b_temperature_vs_F.png",
    "fig5c_temperature_in_time.png",
    "fig5d_temperature_and_loss.png",
]


def _run(out, *extra):
    argv = ["reproduce", "--quick", "--no-progress", "--no-landscape", "--device", "cpu"]
    return main([*argv, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mech") / "run"
    assert _run(out) == 0
    return out


def test_stage_writes_keys_arrays_and_figures(run):
    s = json.loads((run / "summary.json").read_text())
    for key in ("sigma_theta_vs_F_exponent", "M0_vs_F_exponent", "product_vs_F_exponent"):
        r = s["ensemble"][key]
        assert np.isfinite(r["exponent"]) and r["err"] > 0
        assert "null_shuffled_mean" in r
    m = s["mechanism"]
    assert np.isfinite(m["psi_D"]) and np.isfinite(m["psi"])
    r = m["var_over_D_window"]
    assert 0 < r["median"] and r["null_random_walk"] == pytest.approx(1 / 6, rel=0.05)
    # psi - psi_D is the slope of the ratio, exactly (log-linear fits on the same modes)
    assert m["psi_same_modes"] - m["psi_D"] == pytest.approx(-r["slope_vs_F"], abs=1e-9)
    t = s["temperature"]
    assert np.isfinite(t["T0_vs_F_exponent"]["exponent"]) and np.isfinite(t["corr_T_L"]["r"])
    assert t["n_checkpoints"] == s["phases"]["window_end_epoch"]  # one per epoch from epoch 1
    a = np.load(run / "arrays.npz")
    n_mu, K = s["ensemble"]["n_minibatches"], s["ensemble"]["n_modes"]
    for name in ("ensemble_M", "ensemble_theta", "ensemble_L0"):
        assert a[name].shape == (n_mu, K)
    assert a["mech_D"].shape == (K,) and np.all(a["mech_D"] > 0)
    np.testing.assert_allclose(a["mech_T0"], a["mech_D"] / (2 * 0.1), rtol=1e-10)
    for f in FIGS:
        assert (run / f).stat().st_size > 0
    assert "The mechanism" in (run / "report.md").read_text()


def test_capture_without_checkpoints_gives_a_clear_message(run, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    st = torch.load(dst / "capture.pt", weights_only=True)
    st.pop("checkpoints")
    st.pop("checkpoint_steps")
    buf = io.BytesIO()
    torch.save(st, buf)
    (dst / "capture.pt").write_bytes(buf.getvalue())
    assert _run(dst, "--force") == 0
    s = json.loads((dst / "summary.json").read_text())
    assert s["timings"].get("resumed") is True
    assert "no checkpoints" in s["temperature"]["corr_T_L"]["error"]
    assert not (dst / "fig5d_temperature_and_loss.png").exists()
    with pytest.raises(NoCheckpointsError, match="rerun with --force"):
        temperature_history(None, [], [], torch.eye(2), 0.1, profile_mode=0,
                            amplitudes=np.zeros(3), n_profiles=2)  # fmt: skip
