"""Langevin sampler (Boltzmann variance), PC1 analysis (Eqs S3-S5), the reproduce stage and
the flatness-grid CLI."""

import json
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

from sgdyn.validation.cli import main
from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import MLP
from sgdyn.validation.probes.langevin import langevin_run, sgd_matched_temperature
from sgdyn.validation.probes.network_landscape import NetworkLandscape
from sgdyn.validation.probes.pc1 import margins_along, orient_along_drift, pc1_analysis
from sgdyn.validation.probes.recorder import TrajectoryRecorder
from sgdyn.validation.studies.reproduce.landscape_stage import run_landscape_stage
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch


def test_langevin_gives_boltzmann_variance_on_quadratic():
    # L = sum k_i w_i^2 / 2: Euler-Maruyama's exact stationary variance T / (k (1 - lr k / 2))
    k = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64).repeat_interleave(3000)
    lr, T = 0.02, 0.3
    traj = langevin_run(
        lambda w: k * w,
        torch.zeros_like(k),
        lr=lr,
        temperature=T,
        n_steps=3000,
        record_every=100,
        seed=0,
    )[5:]  # drop 500 steps of burn-in (>= 5 relaxation times of the slowest mode)
    var = (traj**2).mean(0).view(3, -1).mean(1)
    exact = T / (k.view(3, -1)[:, 0] * (1 - lr * k.view(3, -1)[:, 0] / 2))
    torch.testing.assert_close(var, exact, rtol=0.03, atol=0)
    with pytest.raises(ValueError, match="lr > 0"):
        langevin_run(lambda w: w, torch.zeros(2), lr=-1.0, temperature=1.0, n_steps=1)
    with pytest.raises(RuntimeError, match="diverged"):
        langevin_run(lambda w: 1e3 * w, torch.ones(2), lr=1.0, temperature=0.0, n_steps=200)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = load_dataset("digits", limit=600)
    model = MLP((64, 20, 20, 10))
    opt = make_optimizer(model, OptimConfig(lr=0.1, batch_size=20))
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        train_epoch(model, opt, data.x, data.y, 20, gen)
    rec = TrajectoryRecorder(model, "layers.1.weight", 150).attach(opt)
    while not rec.done:
        train_epoch(model, opt, data.x, data.y, 20, gen)
    return model, data, rec


def test_pc1_slope_matches_autograd_derivative(trained):
    model, data, rec = trained
    land = NetworkLandscape(model, "layers.1.weight", data)
    traj = rec.trajectory()
    pca = rec.pca()
    p1 = orient_along_drift(pca.components_[0].float(), traj)
    assert float((traj[-1] - traj[0]) @ p1) >= 0
    w0 = traj[-1]
    res = pc1_analysis(land, w0, p1, theta_range=0.05, n_theta=11)
    L0, g = land.full_loss_and_grad(w0)
    beta_autograd = -float(g @ p1) / float(L0)  # d ln L / d theta at 0 = -beta (Eq S5)
    assert res.beta == pytest.approx(beta_autograd, rel=0.02, abs=1e-4)
    # margins: independent computation with the whole model at one theta
    th = 0.03
    M = margins_along(land, w0, p1, [th], samples=[0, 1, 2])
    with torch.no_grad():
        out = torch.func.functional_call(
            model, {"layers.1.weight": (w0 + th * p1).view(20, 20)}, (data.x[:3],)
        )
    for s in range(3):
        y = int(data.y[s])
        wrong = torch.cat([out[s, :y], out[s, y + 1 :]]).max()
        assert M[s, 0] == pytest.approx(float(out[s, y] - wrong), rel=1e-5, abs=1e-5)
    assert res.class_margins.shape == (10, 11)


def test_sgd_matched_temperature_equals_the_noise_of_real_sgd_steps(trained):
    """Independent reference: one real ``torch.optim.SGD`` step of the whole model per
    minibatch (autograd through every layer, only the probe trainable) from w; its noise is
    the spread of the displacements around the full-batch step, and Langevin at T matches it
    when 2 lr T N = <|dw_mu - dw_full|^2>_mu (probes/langevin.py)."""
    import copy

    from torch.nn import functional as F

    model, data, _ = trained
    lr = 0.1
    land = NetworkLandscape(model, "layers.1.weight", data, batch_size=100)
    info = sgd_matched_temperature(land, land.current(), lr=lr)

    def step(idx):
        m = copy.deepcopy(model)
        for name, p in m.named_parameters():
            p.requires_grad_(name == "layers.1.weight")
        w = dict(m.named_parameters())["layers.1.weight"]
        before = w.detach().clone()
        opt = torch.optim.SGD([w], lr=lr)
        F.cross_entropy(m(data.x[idx]), data.y[idx]).backward()
        opt.step()
        return (w.detach() - before).flatten().double()

    full = step(torch.arange(len(data)))
    moves = [step(land.minibatch_indices(mu)) for mu in range(land.n_minibatches)]
    noise = np.mean([float(((d - full) ** 2).sum()) for d in moves])
    T_ref = noise / (2 * lr * full.numel())
    assert info["temperature"] == pytest.approx(T_ref, rel=1e-3)
    assert info["n_params"] == full.numel() == 400


def test_stage_quick_writes_summary_and_figures(trained, tmp_path):
    model, data, rec = trained
    ctx = NS(
        model=model,
        data=data,
        probe="layers.1.weight",
        pca=rec.pca(),
        trajectory=rec.trajectory(),
        config=NS(lr=0.1, batch_size=20, seed=0, quick=True, optimizer="sgd"),
        out_dir=tmp_path,
        device="cpu",
    )
    r = run_landscape_stage(ctx)
    s = r.summary
    assert np.isfinite(s["flatness"]["psi"]) and s["flatness"]["psi_err"] > 0
    assert len(s["flatness"]["F"]) == len(s["flatness"]["variance"]) == 30
    # psi is fitted on the diffusive modes 2..30 only (PC1 drifts: its F is tilted, Eq S5)
    assert s["flatness"]["first_fitted_mode"] == 2 and s["flatness"]["n_fit_modes"] == 29
    # SGD: inverse variance-flatness relation; equilibrium at the matched T: the opposite
    assert s["flatness"]["psi"] > 0
    assert s["equilibrium"]["psi"] < 0 and s["equilibrium"]["psi_own_pca"] < 0
    assert np.isfinite(s["pc1"]["beta"]) and "psi" in s["equilibrium"]
    json.dumps(s)  # JSON-able
    for name, caption in r.figures:
        assert (tmp_path / name).stat().st_size > 1000 and caption
    assert len(r.figures) == 5 and "psi" in r.markdown and "F_hessian" in r.markdown
    cs = s["curvature"]
    assert len(cs["hessian_top_eigenvalues"]) == 10 and len(cs["pHp"]) == 30
    assert cs["relation_ewidth"]["n"] >= 20 and cs["alignment"]["span_null"] == 30 / 400
    assert max(cs["pHp"]) <= cs["hessian_top_eigenvalues"][0] * (1 + 1e-6)  # Rayleigh bound
    # the reported F are the e-widths: the crossing of e*L0 on both sides
    land = NetworkLandscape(model, "layers.1.weight", data)
    w0, k = ctx.trajectory[-1], 3
    L0 = float(land._whole_loss(w0))
    p = ctx.pca.components_[k].float()
    for x in (r.arrays["flat_left"][k], r.arrays["flat_right"][k]):
        assert float(land._whole_loss(w0 + float(x) * p)) / (np.e * L0) == pytest.approx(
            1, abs=5e-3
        )
    # the reported curvature: second difference of the whole-model loss (float64 copy)
    m64 = type(model)(model.sizes).double()
    m64.load_state_dict(model.state_dict())
    l64 = NetworkLandscape(m64, "layers.1.weight", data, fast=False)
    h, w0d, pd = 1e-5, w0.double(), p.double()  # small: few ReLU kinks crossed
    second = [float(l64.full_loss(w0d + a * pd)) for a in (-h, 0.0, h)]
    fd = (second[0] - 2 * second[1] + second[2]) / h**2
    assert cs["pHp"][k] == pytest.approx(fd, rel=2e-3)


def test_flatness_grid_cli_quick(tmp_path, capsys):
    assert main(["flatness-grid", "--quick", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert len(s["runs"]) == 2 and all(np.isfinite(r["psi"]) for r in s["runs"])
    assert (tmp_path / "fig2d_grid.png").exists() and (tmp_path / "report.md").exists()
    assert np.load(tmp_path / "arrays.npz")["F_B50_lr0.1"].shape == (12,)
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    assert s["command"] == "flatness-grid" and "report.html" in s["files"]
    # the saved config reruns to the same numbers
    again = tmp_path.parent / (tmp_path.name + "_again")
    assert (
        main(["flatness-grid", "--config", str(tmp_path / "summary.json"), "--out", str(again)])
        == 0
    )
    s2 = json.loads((again / "summary.json").read_text())
    assert s2["config"] == s["config"]
    assert [r["psi"] for r in s2["runs"]] == [r["psi"] for r in s["runs"]]
    assert main(["flatness-grid", "--out", str(tmp_path), "--lrs", "-1"]) == 2
    assert "learning rates must be positive" in capsys.readouterr().err
