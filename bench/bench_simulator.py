"""Replica-steps per second: matrix-free MLF SGD step vs a dense torch loop (same run).

The dense baseline samples M^mu densely every step (``torch.randn(R, N, N)``, symmetrised,
scaled) and applies it with ``bmm``: O(R N^2) memory. The matrix-free step is
:func:`sgdyn.kernels.mlf_step.mlf_matvec2` (Triton + Philox on CUDA, the blocked upper-triangle
path on the CPU): O(N) memory per replica (O(block N) on the CPU path).

    python bench/bench_simulator.py --device cpu --N 500 --replicas 32
    python bench/bench_simulator.py --device cuda --N 2500 --N 20000 --replicas 64
    python bench/bench_simulator.py --N 500 --replicas 32 --precision   # float64 cost, syncs

pytest-benchmark: ``pytest bench/bench_simulator.py --benchmark-only`` (CPU, N=500).
"""

from __future__ import annotations

import argparse
import time

import torch

from sgdyn.kernels.host_sync import HostSyncCounter
from sgdyn.kernels.mlf_step import mlf_matvec2, philox_keys
from sgdyn.simulator import simulate
from sgdyn.simulator.ensemble import sample_minima_and_levels
from sgdyn.simulator.presets import paper_like


def _setup(N, R, device):
    spec = paper_like(N=N)
    p = spec.tensors(device=device)
    g = torch.Generator().manual_seed(0)
    th_mu, L0 = sample_minima_and_levels(spec, R, g, device=device)
    theta = 0.01 * torch.randn(R, N, device=device)
    return spec, p, th_mu, L0, theta


def step_matrix_free(theta, th_mu, L0, p, keys, gen, alpha=0.25, impl=None):
    impl = impl or ("triton" if theta.device.type == "cuda" else "blocked")
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


def compare(N, R, device="cpu", reps=5, dense=True, impl=None) -> dict:
    device = torch.device(device)
    spec, p, th_mu, L0, theta = _setup(N, R, device)
    gen = torch.Generator(device=device).manual_seed(1)
    keys = philox_keys(0, torch.arange(R)).to(device)
    out = {"N": N, "replicas": R, "device": str(device)}
    dt, mem = _time(
        lambda: step_matrix_free(theta, th_mu, L0, p, keys, gen, impl=impl), device, reps
    )
    out.update(mf_replica_steps_per_s=R / dt, mf_peak_bytes=mem)
    if dense:
        try:
            dt_d, mem_d = _time(lambda: step_dense(theta, th_mu, L0, p, gen), device, reps)
            out.update(dense_replica_steps_per_s=R / dt_d, dense_peak_bytes=mem_d,
                       speedup=dt_d / dt)  # fmt: skip
        except (torch.OutOfMemoryError, RuntimeError) as e:
            out.update(dense_replica_steps_per_s=None, dense_error=str(e).split("\n")[0][:120])
    return out


def precision_cost(N, R, n_steps, device="cpu", impl="auto", alpha=0.02, reps=3) -> dict:
    """Wall time of simulate() in float64 over float32 (same spec, replicas and steps; a
    small alpha so that no replica diverges at large N)."""
    spec = paper_like(N=N)
    out = {"N": N, "replicas": R, "steps": n_steps, "device": str(device), "alpha": alpha}
    for dt in ("float32", "float64"):
        simulate(spec, alpha=alpha, n_steps=2, n_replicas=R, device=device, dtype=dt, impl=impl)
        best = float("inf")
        for _ in range(reps):  # best of reps: the machine may be shared
            t = time.perf_counter()
            simulate(spec, alpha=alpha, n_steps=n_steps, n_replicas=R, device=device, dtype=dt,
                     impl=impl)  # fmt: skip
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        out[f"{dt}_s"] = best
    out["float64_over_float32"] = out["float64_s"] / out["float32_s"]
    return out


def host_syncs(N, R, n_steps, device="cpu", check_every=50, impl="auto", alpha=0.02) -> dict:
    """Host round-trips per simulate() step: Python-level calls (HostSyncCounter) and the
    profiler's count of ``aten::_local_scalar_dense`` (every ``.item()``-like read) and, on
    CUDA, of device synchronisations / device-to-host copies."""
    from torch.profiler import ProfilerActivity, profile

    spec = paper_like(N=N)
    kw = dict(alpha=alpha, n_replicas=R, device=device, check_every=check_every, impl=impl)
    res = {"N": N, "replicas": R, "device": str(device), "check_every": check_every}
    counts = []
    for T in (n_steps, 2 * n_steps):  # the difference removes the fixed set-up / final copy
        acts = [ProfilerActivity.CPU] + (
            [ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else []
        )
        with HostSyncCounter() as c, profile(activities=acts) as prof:
            simulate(spec, n_steps=T, **kw)
        names = [e.name for e in prof.events()]
        counts.append({
            "python": c.total,
            "local_scalar_dense": sum(n == "aten::_local_scalar_dense" for n in names),
            "cuda_sync_calls": sum("Synchronize" in n for n in names),
            "cuda_reported": c.cuda_syncs,
        })  # fmt: skip
    for k in counts[0]:
        res[f"{k}_per_step"] = (counts[1][k] - counts[0][k]) / n_steps
    return res


def gpu_cases(ctx):
    """GPU targets (bench/gpu_run.py): simulator >= 10x dense at N = 2,500, N = 20,000 runs,
    the float64 cost and the host syncs per simulate() step."""
    dev = ctx.device
    impl = "triton"  # compiled on CUDA, interpreted in a dry run

    def ratio_2500():
        N, R = ctx.size(2500, 64), ctx.size(64, 4)
        r = compare(N, R, dev, reps=ctx.size(5, 1), impl=impl)
        r["ratio"] = r.get("speedup")
        r["seconds"] = R / r["mf_replica_steps_per_s"]
        r["flops"] = 4.0 * R * N * N  # two matvecs with M^mu, generated in-kernel
        return r

    def run_20000():
        N, R = ctx.size(20000, 96), ctx.size(64, 2)
        r = compare(N, R, dev, reps=ctx.size(3, 1), dense=False, impl=impl)
        r["seconds"] = R / r["mf_replica_steps_per_s"]
        r["flops"] = 4.0 * R * N * N
        r["ran"] = 1
        return r

    return [
        {"name": "simulator_vs_dense_N2500", "run": ratio_2500, "target": ("ratio", ">=", 10)},
        {"name": "simulator_matrix_free_N20000", "run": run_20000, "target": ("ran", ">=", 1)},
        {"name": "simulate_float64_cost", "run": lambda: precision_cost(
            ctx.size(2500, 16), ctx.size(64, 4), ctx.size(20, 3), dev, impl=impl,
            reps=ctx.size(2, 1))},
        {"name": "simulate_host_syncs_per_step", "run": lambda: host_syncs(
            ctx.size(500, 8), ctx.size(64, 4), ctx.size(100, 10), dev,
            check_every=ctx.size(50, 5), impl=impl)},
    ]  # fmt: skip


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
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument(
        "--precision",
        action="store_true",
        help="also: simulate() float64 / float32 wall time and host syncs per step",
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"torch threads: {a.threads}")
    if a.precision:
        for N in a.N or [500]:
            print(precision_cost(N, a.replicas, 50, a.device))
            print(host_syncs(N, a.replicas, 100, a.device))
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
