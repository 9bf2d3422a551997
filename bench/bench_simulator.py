"""Replica-steps per second: matrix-free MLF SGD step vs a dense torch loop (same run).

The dense baseline samples M^mu densely every step (``torch.randn(R, N, N)``, symmetrised,
scaled) and applies it with ``bmm``: O(R N^2) memory. The matrix-free step is
:func:`sgdyn.kernels.mlf_step.mlf_matvec2` (Triton + Philox on CUDA, the blocked upper-triangle
path on the CPU): O(N) memory per replica (O(block N) on the CPU path).

    python bench/bench_simulator.py --device cpu --N 500 --replicas 32
    python bench/bench_simulator.py --device cuda --N 2500 --N 20000 --replicas 64

pytest-benchmark: ``pytest bench/bench_simulator.py --benchmark-only`` (CPU, N=500).
"""

from __future__ import annotations

import argparse
import time

import torch

from sgdyn.kernels.mlf_step import mlf_matvec2, philox_keys
from sgdyn.simulator.ensemble import sample_minima_and_levels
from sgdyn.simulator.presets import paper_like


def _setup(N, R, device):
    spec = paper_like(N=N)
    p = spec.tensors(device=device)
    g = torch.Generator().manual_seed(0)
    th_mu, L0 = sample_minima_and_levels(spec, R, g, device=device)
    theta = 0.01 * torch.randn(R, N, device=device)
    return spec, p, th_mu, L0, theta


def step_matrix_free(theta, th_mu, L0, p, keys, gen, alpha=0.25):
    impl = "triton" if theta.device.type == "cuda" else "blocked"
    u, v = mlf_matvec2(keys, theta, th_mu, p["M0"], p["sigma_M"], p["s"], impl=impl,
                       fresh_generator=gen if impl == "blocked" else None)  # fmt: skip
    X = (theta * (0.5 * u - v)).sum(-1)
    return theta - alpha * (L0 * torch.exp(X))[:, None] * (u - v)


def step_dense(theta, th_mu, L0, p, gen, alpha=0.25):
    R, N = theta.shape
    Z = torch.randn(R, N, N, generator=gen, device=theta.device)
    Z = (Z + Z.transpose(1, 2)) * 0.7071067811865476
    M = Z * (p["s"][:, None] * p["s"][None, :])
    M.diagonal(dim1=1, dim2=2).copy_(
        p["M0"] + p["sigma_M"] * torch.randn(R, N, generator=gen, device=theta.device)
    )
    u = torch.bmm(M, theta[:, :, None])[..., 0]
    v = torch.bmm(M, th_mu[:, :, None])[..., 0]
    X = (theta * (0.5 * u - v)).sum(-1)
    return theta - alpha * (L0 * torch.exp(X))[:, None] * (u - v)


def _time(fn, device, reps):
    fn()  # warm-up / compile
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / reps
    mem = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return dt, mem


def compare(N, R, device="cpu", reps=5, dense=True) -> dict:
    device = torch.device(device)
    spec, p, th_mu, L0, theta = _setup(N, R, device)
    gen = torch.Generator(device=device).manual_seed(1)
    keys = philox_keys(0, torch.arange(R))
    out = {"N": N, "replicas": R, "device": str(device)}
    dt, mem = _time(lambda: step_matrix_free(theta, th_mu, L0, p, keys, gen), device, reps)
    out.update(mf_replica_steps_per_s=R / dt, mf_peak_bytes=mem)
    if dense:
        try:
            dt_d, mem_d = _time(lambda: step_dense(theta, th_mu, L0, p, gen), device, reps)
            out.update(dense_replica_steps_per_s=R / dt_d, dense_peak_bytes=mem_d,
                       speedup=dt_d / dt)  # fmt: skip
        except (torch.OutOfMemoryError, RuntimeError) as e:
            out.update(dense_replica_steps_per_s=None, dense_error=str(e).split("\n")[0][:120])
    return out


def _fmt(r):
    d = r.get("dense_replica_steps_per_s")
    sp = r.get("speedup")
    mem = r.get("mf_peak_bytes")
    return (f"| {r['device']} | {r['N']} | {r['replicas']} | {r['mf_replica_steps_per_s']:.4g} | "
            f"{'n/a' if d is None else f'{d:.4g}'} | {'n/a' if sp is None else f'{sp:.2f}x'} | "
            f"{'-' if mem is None else f'{mem / 2**20:.0f} MiB'} | "
            f"{r.get('dense_error', '')} |")  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--N", type=int, action="append", help="repeatable; default 500")
    ap.add_argument("--replicas", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-dense", action="store_true")
    a = ap.parse_args(argv)
    print("| device | N | replicas | matrix-free replica-steps/s | dense replica-steps/s | "
          "ratio | mf peak mem | note |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for N in a.N or [500]:
        print(_fmt(compare(N, a.replicas, a.device, a.reps, dense=not a.no_dense)), flush=True)


# -- pytest-benchmark (CPU, N=500) --------------------------------------------------------
def test_bench_matrix_free_cpu(benchmark):
    device = torch.device("cpu")
    spec, p, th_mu, L0, theta = _setup(500, 16, device)
    gen = torch.Generator().manual_seed(1)
    keys = philox_keys(0, torch.arange(16))
    benchmark(lambda: step_matrix_free(theta, th_mu, L0, p, keys, gen))
    r = compare(500, 16, "cpu", reps=3)
    print(f"\nmatrix-free / dense replica-steps per second at N=500: {r['speedup']:.2f}x")


def test_bench_dense_cpu(benchmark):
    spec, p, th_mu, L0, theta = _setup(500, 16, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    benchmark(lambda: step_dense(theta, th_mu, L0, p, gen))


if __name__ == "__main__":
    main()
