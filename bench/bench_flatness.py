"""Flatness of many PCA directions: cached-tail batched evaluator vs per-direction bisection.

Baseline (the style of the authors' public code, rebuilt here): for each direction and each
side, bracket by doubling then bisect, every probe of the loss being a whole-model forward
pass over the training set with the probed weights overwritten. Fast path:
:meth:`NetworkLandscape.flatness` (cached activations entering the probe, tail only, all
directions per pass). Both use the same bracketing start, relative tolerance and threshold;
the widths must agree within the tolerance.

    /work/venv/bin/python bench/bench_flatness.py          # 200 directions, prints the ratio
    /work/venv/bin/pytest bench/bench_flatness.py --benchmark-only   # pytest-benchmark (small)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

from sgdyn.validation.data import load_dataset
from sgdyn.validation.landscape_net import NetworkLandscape
from sgdyn.validation.models import MLP
from sgdyn.validation.train import OptimConfig, make_optimizer, train_epoch


def trained_mlp(epochs: int, seed: int = 0):
    torch.manual_seed(seed)
    data = load_dataset("mnist5k")
    model = MLP()
    opt = make_optimizer(model, OptimConfig(lr=0.1, batch_size=50))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        train_epoch(model, opt, data.x, data.y, 50, gen)
    return model, data


def pca_directions(model, data, n_steps: int, K: int) -> torch.Tensor:
    """Top-K PCA directions of a short SGD window of layers.1.weight (sklearn-free, exact)."""
    opt = make_optimizer(model, OptimConfig(lr=0.1, batch_size=50))
    gen = torch.Generator().manual_seed(1)
    snaps = []
    while len(snaps) < n_steps:
        train_epoch(
            model,
            opt,
            data.x,
            data.y,
            50,
            gen,
            on_step=lambda _: snaps.append(model.layers[1].weight.detach().reshape(-1).clone()),
        )
    X = torch.stack(snaps[:n_steps]).double()
    X -= X.mean(0)
    _, _, Vt = torch.linalg.svd(X, full_matrices=False)
    return Vt[:K].float()


@torch.no_grad()
def baseline_flatness(model, data, probe, w0, P, L0, init_step, tol, max_amplitude=1e3):
    """Per-direction, per-side bisection with whole-model forward passes (the baseline)."""
    param = dict(model.named_parameters())[probe]
    shape = param.shape

    def loss_at(w):
        param.copy_(w.view(shape))
        return float(F.cross_entropy(model(data.x), data.y))

    thr = np.e * L0
    widths, n_evals = [], 0
    for p in P:
        ends = []
        for sign in (-1.0, 1.0):
            lo, hi = 0.0, init_step
            while True:
                n_evals += 1
                if loss_at(w0 + sign * hi * p) >= thr or hi >= max_amplitude:
                    break
                lo, hi = hi, min(2 * hi, max_amplitude)
            while hi - lo > tol * hi:
                mid = 0.5 * (lo + hi)
                n_evals += 1
                if loss_at(w0 + sign * mid * p) >= thr:
                    hi = mid
                else:
                    lo = mid
            ends.append(0.5 * (lo + hi))
        widths.append(ends[0] + ends[1])
    param.copy_(w0.view(shape))
    return np.asarray(widths), n_evals


def compare(K: int = 200, tol: float = 1e-3, init_step: float = 0.05, epochs: int = 15):
    model, data = trained_mlp(epochs)
    P = pca_directions(model, data, 300, K)
    probe = "layers.1.weight"
    t0 = time.perf_counter()
    land = NetworkLandscape(model, probe, data)
    w0 = land.current()
    L0 = float(land.full_loss(w0))
    res = land.flatness(w0, P, L0=L0, init_step=init_step, tol=tol)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    Fb, n_evals = baseline_flatness(model, data, probe, w0, P, L0, init_step, tol)
    t_base = time.perf_counter() - t0
    rel = np.abs(res.width - Fb) / Fb
    return {
        "K": K,
        "tol": tol,
        "t_fast_s": t_fast,
        "t_baseline_s": t_base,
        "ratio": t_base / t_fast,
        "max_rel_diff": float(rel.max()),
        "baseline_whole_model_passes": n_evals,
        "fast_batched_calls": res.n_evals,
    }


def test_bench_flatness_fast(benchmark):
    model, data = trained_mlp(3)
    P = pca_directions(model, data, 60, 20)
    land = NetworkLandscape(model, "layers.1.weight", data)
    w0 = land.current()
    res = benchmark(lambda: land.flatness(w0, P, init_step=0.05, tol=1e-3))
    Fb, _ = baseline_flatness(
        model, data, "layers.1.weight", w0, P, float(land.full_loss(w0)), 0.05, 1e-3
    )
    assert np.allclose(res.width, Fb, rtol=3e-3)


def test_bench_flatness_baseline(benchmark):
    model, data = trained_mlp(3)
    P = pca_directions(model, data, 60, 20)
    land = NetworkLandscape(model, "layers.1.weight", data)
    w0, L0 = land.current(), float(land.full_loss(land.current()))
    benchmark(lambda: baseline_flatness(model, data, "layers.1.weight", w0, P, L0, 0.05, 1e-3))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dirs", type=int, default=200)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    r = compare(a.dirs, a.tol)
    print(
        f"flatness of {r['K']} directions (tol {r['tol']:g}, {a.threads} thread(s)): "
        f"cached-tail batched {r['t_fast_s']:.2f} s ({r['fast_batched_calls']} batched calls), "
        f"whole-model bisection {r['t_baseline_s']:.2f} s "
        f"({r['baseline_whole_model_passes']} passes); ratio {r['ratio']:.1f}x; "
        f"max relative width difference {r['max_rel_diff']:.2e}"
    )
