"""Exact T_i(0) and D_i (Eqs 14, 17) for K directions over a training set: the fused
per-sample projection path vs (a) torch.func per-sample gradients then projection, and
(b) the naive way: sampling minibatches and running autograd on each.

Fused: :func:`sgdyn.validation.studies.mechanism.measure_diffusion` (one pass: the probed
layer's input h_s and output gradient delta_s from the cached tail, projected onto all K
directions without forming a per-sample gradient; exact over random minibatches of B by the
finite-population formula). (a): ``vmap(grad)`` of the whole model's per-sample loss w.r.t.
the probe in chunks, each (chunk, N) gradient block projected onto the K directions (also
exact). (b): ``m`` random minibatches of B, autograd on each, the variance of their gradient
projections (a sampled estimate: its standard error is reported, and its distance from the
exact value). Everything runs with one torch thread unless ``--threads`` says otherwise.

    python bench/bench_mechanism.py                    # K=200, 5,000 samples, 1,000 batches
    pytest bench/bench_mechanism.py --benchmark-only   # pytest-benchmark (small)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

from sgdyn.theory.ensemble import minibatch_moments
from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import MLP
from sgdyn.validation.probes.network_landscape import NetworkLandscape
from sgdyn.validation.studies.mechanism import measure_diffusion
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch

PROBE = "layers.1.weight"
LR, B = 0.1, 50


def setup(epochs: int = 3, K: int = 200, limit: int | None = None, seed: int = 0):
    torch.manual_seed(seed)
    data = load_dataset("mnist5k", limit=limit)
    model = MLP()
    opt = make_optimizer(model, OptimConfig(lr=LR, batch_size=B))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        train_epoch(model, opt, data.x, data.y, B, gen)
    N = dict(model.named_parameters())[PROBE].numel()
    g = torch.Generator().manual_seed(seed + 1)
    P = torch.linalg.qr(torch.randn(N, K, generator=g))[0].T.contiguous()  # orthonormal (K, N)
    return model, data, P


def fused(land, P):
    r = measure_diffusion(land, land.current(), P, LR, batch_size=B)
    return np.asarray(r.D), np.asarray(r.T0)


def vmap_grad(model, data, P, chunk: int = 250):
    """(a) per-sample gradients by torch.func.vmap(grad), then projected; exact moments."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    w = params[PROBE]

    def loss_one(wp, x, y):
        out = torch.func.functional_call(model, {**params, PROBE: wp}, (x[None],))
        return F.cross_entropy(out, y[None])

    g1 = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0))
    proj = []
    for s in range(0, data.x.shape[0], chunk):
        G = g1(w, data.x[s : s + chunk], data.y[s : s + chunk]).reshape(-1, w.numel())
        proj.append(G @ P.T)
    g = torch.cat(proj).double().numpy()
    var = np.asarray(minibatch_moments(g, B).var)
    return LR**2 * var, LR / 2 * var


def sampled(model, data, P, m: int, seed: int = 0):
    """(b) m random minibatches (without replacement within each), autograd on each."""
    w = dict(model.named_parameters())[PROBE]
    rng = np.random.default_rng(seed)
    n = data.x.shape[0]
    proj = np.empty((m, P.shape[0]))
    for mu in range(m):
        idx = torch.as_tensor(rng.choice(n, B, replace=False))
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.x[idx]), data.y[idx])
        (g,) = torch.autograd.grad(loss, w)
        proj[mu] = (P @ g.reshape(-1)).double().numpy()
    var = proj.var(0, ddof=1)
    dev = (proj - proj.mean(0)) ** 2
    se = dev.std(0, ddof=1) / np.sqrt(m)  # standard error of the variance estimate
    return LR**2 * var, LR / 2 * var, LR**2 * se


def compare(K: int = 200, m: int = 1000, epochs: int = 3, repeats: int = 3):
    model, data, P = setup(epochs, K)
    t0 = time.perf_counter()
    land = NetworkLandscape(model, PROBE, data, batch_size=B)
    t_build = time.perf_counter() - t0
    tf = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        D, T0 = fused(land, P)
        tf.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    Da, _ = vmap_grad(model, data, P)
    ta = time.perf_counter() - t0
    t0 = time.perf_counter()
    Db, _, se = sampled(model, data, P, m)
    tb = time.perf_counter() - t0
    tfm = float(np.median(tf))
    z = (Db - D) / se
    rel_se = float(np.median(se / D))
    m_1pct = m * (rel_se / 0.01) ** 2  # se ~ 1/sqrt(m): minibatches (b) needs for 1 %
    return {
        "K": K,
        "n_samples": int(data.x.shape[0]),
        "minibatches_b": m,
        "t_landscape_build_s": t_build,
        "t_fused_s": tfm,
        "t_fused_all_s": tf,
        "t_vmap_grad_s": ta,
        "t_sampled_s": tb,
        "ratio_vs_vmap_grad": ta / tfm,
        "ratio_vs_sampled": tb / tfm,
        "ratio_vs_sampled_incl_build": tb / (tfm + t_build),
        "max_rel_diff_vmap": float(np.max(np.abs(Da - D) / D)),
        "sampled_rel_se_median": rel_se,
        "sampled_minibatches_for_1pct": m_1pct,
        "ratio_vs_sampled_at_1pct_extrapolated": tb * m_1pct / m / tfm,
        "sampled_rel_err_median": float(np.median(np.abs(Db - D) / D)),
        "sampled_z_rms": float(np.sqrt(np.mean(z**2))),
    }


def test_bench_mechanism_fused(benchmark):
    model, data, P = setup(1, 20, limit=500)
    land = NetworkLandscape(model, PROBE, data, batch_size=B)
    D, _ = benchmark(lambda: fused(land, P))
    Da, _ = vmap_grad(model, data, P)
    np.testing.assert_allclose(D, Da, rtol=1e-4)


def test_bench_mechanism_sampled(benchmark):
    model, data, P = setup(1, 20, limit=500)
    benchmark(lambda: sampled(model, data, P, 50))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dirs", type=int, default=200)
    ap.add_argument("--minibatches", type=int, default=1000, help="(b)'s sampled minibatches")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of the fused path")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    r = compare(a.dirs, a.minibatches, repeats=a.repeats)
    print(
        f"exact T_i(0) and D_i for K={r['K']} directions over {r['n_samples']} samples "
        f"(B={B}, {a.threads} thread(s)):\n"
        f"  fused projections: {r['t_fused_s']:.3f} s median "
        f"[{', '.join(f'{t:.3f}' for t in r['t_fused_all_s'])}] "
        f"(+ {r['t_landscape_build_s']:.3f} s to build the landscape once)\n"
        f"  (a) vmap(grad) per-sample gradients + projection: {r['t_vmap_grad_s']:.2f} s, "
        f"ratio {r['ratio_vs_vmap_grad']:.1f}x, max rel. diff {r['max_rel_diff_vmap']:.1e}\n"
        f"  (b) {r['minibatches_b']} sampled minibatches with autograd: {r['t_sampled_s']:.2f} s, "
        f"ratio {r['ratio_vs_sampled']:.1f}x ({r['ratio_vs_sampled_incl_build']:.1f}x with the "
        f"build); its standard error {100 * r['sampled_rel_se_median']:.1f}% of D (median), "
        f"actual error {100 * r['sampled_rel_err_median']:.1f}%, rms z {r['sampled_z_rms']:.2f}\n"
        f"  (b) at a 1% standard error (exact path: float round-off) would need "
        f"{r['sampled_minibatches_for_1pct']:.0f} minibatches: ratio "
        f"{r['ratio_vs_sampled_at_1pct_extrapolated']:.0f}x (extrapolated, se ~ 1/sqrt(m))"
    )
    return r


if __name__ == "__main__":
    main()
