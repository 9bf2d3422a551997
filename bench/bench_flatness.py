"""Flatness of many PCA directions: cached-tail batched evaluator vs per-direction bisection.

Baseline (the style of the authors' public code, rebuilt here): for each direction and each
side, bracket by doubling then bisect, every probe of the loss being a whole-model forward
pass over the training set with the probed weights overwritten. Fast path:
:meth:`NetworkLandscape.flatness` (cached activations entering the probe, tail only, all
directions per pass, secant / regula-falsi root finder on ln L vs a^2). Both start at the
same ``init_step``, use the same relative tolerance (``hi - lo <= tol * hi``) and threshold
e * L0; the widths must agree within the tolerance. Also timed: the batched evaluator with
the baseline's bisection (``method="bisect"``), which separates the evaluator's gain from
the root finder's. The baseline is single-threaded, so everything runs with
``torch.set_num_threads(1)`` (``--threads``).

    python bench/bench_flatness.py                     # 200 directions, prints the ratio
    pytest bench/bench_flatness.py --benchmark-only    # pytest-benchmark (small)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

from sgdyn.theory.flatness import flatness_e_width
from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import MLP
from sgdyn.validation.probes.network_landscape import NetworkLandscape
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch


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


def _fast(model, data, probe, P, init_step, tol, method="interp"):
    """The fast path end to end: landscape (cached inputs), L0, batched e-width flatness."""
    land = NetworkLandscape(model, probe, data)
    w0 = land.current()
    L0 = float(land.full_loss(w0))
    return land.flatness(w0, P, L0=L0, init_step=init_step, tol=tol, method=method), w0, L0


def _count_pairs(model, data, probe, P, init_step, tol, method):
    """(direction, amplitude) evaluations the batched path makes (untimed run)."""
    land = NetworkLandscape(model, probe, data)
    w0 = land.current()
    L0 = float(land.full_loss(w0))
    n = 0
    for _, ev in land.evaluators(w0, P):
        flatness_e_width(ev, ev.n_dirs, L0=L0, init_step=init_step, tol=tol, method=method)
        n += ev.n_pairs
    return n


def compare(
    K: int = 200,
    tol: float = 1e-3,
    init_step: float = 0.05,
    epochs: int = 15,
    repeats: int = 3,
    baseline_repeats: int = 1,
):
    """Time the fast path (``repeats`` times), the batched evaluator with plain bisection
    (same root finder as the baseline: isolates the evaluator's gain) and the baseline."""
    model, data = trained_mlp(epochs)
    P = pca_directions(model, data, 300, K)
    probe = "layers.1.weight"
    t_fast = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res, w0, L0 = _fast(model, data, probe, P, init_step, tol)
        t_fast.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    res_b, _, _ = _fast(model, data, probe, P, init_step, tol, method="bisect")
    t_fast_bisect = time.perf_counter() - t0
    t_base = []
    for _ in range(baseline_repeats):
        t0 = time.perf_counter()
        Fb, n_evals = baseline_flatness(model, data, probe, w0, P, L0, init_step, tol)
        t_base.append(time.perf_counter() - t0)
    tf, tb = float(np.median(t_fast)), float(np.median(t_base))
    return {
        "K": K,
        "tol": tol,
        "t_fast_s": tf,
        "t_fast_all_s": t_fast,
        "t_fast_bisect_s": t_fast_bisect,
        "t_baseline_s": tb,
        "t_baseline_all_s": t_base,
        "ratio": tb / tf,
        "ratio_evaluator_only": tb / t_fast_bisect,
        "max_rel_diff": float(np.max(np.abs(res.width - Fb) / Fb)),
        "max_rel_diff_bisect": float(np.max(np.abs(res_b.width - Fb) / Fb)),
        "baseline_whole_model_passes": n_evals,
        "fast_pairs": _count_pairs(model, data, probe, P, init_step, tol, "interp"),
        "fast_bisect_pairs": _count_pairs(model, data, probe, P, init_step, tol, "bisect"),
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
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of the fast path")
    ap.add_argument("--baseline-repeats", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)  # the baseline is one process: same threads for both
    r = compare(a.dirs, a.tol, repeats=a.repeats, baseline_repeats=a.baseline_repeats)
    fmt = lambda ts: ", ".join(f"{t:.2f}" for t in ts)  # noqa: E731
    print(
        f"flatness of {r['K']} directions (tol {r['tol']:g}, {a.threads} thread(s)):\n"
        f"  fast (cached tail, batched, secant root finder): {r['t_fast_s']:.2f} s median "
        f"[{fmt(r['t_fast_all_s'])}], {r['fast_pairs']} evaluations in "
        f"{r['fast_batched_calls']} batched calls\n"
        f"  cached tail, batched, bisection: {r['t_fast_bisect_s']:.2f} s, "
        f"{r['fast_bisect_pairs']} evaluations\n"
        f"  baseline (per-direction bisection, whole-model passes): {r['t_baseline_s']:.2f} s "
        f"[{fmt(r['t_baseline_all_s'])}], {r['baseline_whole_model_passes']} passes\n"
        f"  ratio {r['ratio']:.1f}x (evaluator alone, same bisection: "
        f"{r['ratio_evaluator_only']:.1f}x); max relative width difference vs baseline "
        f"{r['max_rel_diff']:.2e} (bisection: {r['max_rel_diff_bisect']:.2e})"
    )
