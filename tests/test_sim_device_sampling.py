"""simulate(): draws on the device from per-replica streams, sharding, precision, host syncs.

- a shard of the replicas (as one torchrun rank runs it) reproduces those replicas of the
  single-process run (seeds depend on the global replica index, not the rank);
- the CPU blocked path, the torch twin and the Triton kernel sample the same law inside
  simulate() (two-sample Kolmogorov-Smirnov), and a wrong law is rejected by the same test;
- float64 runs in float64 end to end; the step loop makes no per-step host round-trip.
"""

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from sgdyn.kernels.host_sync import HostSyncCounter
from sgdyn.simulator import MLFEnsembleSpec, paper_like, simulate
from sgdyn.simulator.rng import CHUNK, ReplicaStreams


def _spec(sigma_off=0.35, sigma_M=0.4):
    N = 6
    return MLFEnsembleSpec(
        M0=np.linspace(1.0, 2.0, N), sigma_M=np.full(N, sigma_M), sigma_theta=np.full(N, 0.05),
        sigma_off=sigma_off, L0=0.5, L0_cv=0.3,
    )  # fmt: skip


@pytest.mark.parametrize("dynamics", ["sgd", "langevin"])
def test_shards_reproduce_the_single_process_replicas(dynamics):
    spec = paper_like(8, F_min=1.0, F_max=3.0)
    kw = dict(dynamics=dynamics, alpha=0.25, n_steps=30, seed=4, temperature=1e-3)
    R = 3 * CHUNK - 5  # a partial last chunk
    full = simulate(spec, n_replicas=R, **kw).theta
    a = simulate(spec, n_replicas=2 * CHUNK, replica_offset=0, total_replicas=R, **kw).theta
    b = simulate(spec, n_replicas=R - 2 * CHUNK, replica_offset=2 * CHUNK, total_replicas=R,
                 **kw).theta  # fmt: skip
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), full, rtol=1e-6, atol=1e-7)
    other = simulate(spec, n_replicas=R, **{**kw, "seed": 5}).theta
    assert not np.allclose(other, full)


def test_streams_refuse_a_shard_inside_a_chunk():
    with pytest.raises(ValueError, match="multiple of"):
        ReplicaStreams(0, 1, 4, "cpu", offset=3)


def _final(spec, impl, R, seed, kernel_device="cpu", dtype="float32"):
    res = simulate(spec, dynamics="linear", alpha=0.4, n_steps=2, n_replicas=R, seed=seed,
                   impl=impl, theta0=np.full(spec.N, 0.3), device=kernel_device,
                   dtype=dtype)  # fmt: skip
    return res.theta[-1]  # (R, N): driven by M^mu (theta - theta^mu), so by M's law


def _ks_min_p(a, b):
    return min(ks_2samp(a[:, i], b[:, i]).pvalue for i in range(a.shape[1]))


def test_blocked_and_twin_paths_sample_the_same_law_inside_simulate():
    spec = _spec()
    blocked = _final(spec, "blocked", 1024, seed=1)
    twin = _final(spec, "twin", 1024, seed=2)
    assert _ks_min_p(blocked, twin) > 1e-3 / spec.N  # Bonferroni over modes
    # the same test rejects a law with 40% wider off-diagonal and diagonal spreads (power)
    wrong = _final(_spec(sigma_off=0.35 * 1.4, sigma_M=0.4 * 1.4), "twin", 1024, seed=2)
    assert _ks_min_p(blocked, wrong) < 1e-4


def test_triton_path_inside_simulate_equals_twin_and_samples_the_blocked_law(kernel_device):
    spec = _spec()
    R = 2 * CHUNK
    tri = _final(spec, "triton", R, seed=3, kernel_device=kernel_device)
    twin = _final(spec, "twin", R, seed=3, kernel_device=kernel_device)
    np.testing.assert_allclose(tri, twin, rtol=1e-4, atol=1e-5)  # same keys, same streams
    blocked = _final(spec, "blocked", 512, seed=9)
    assert _ks_min_p(tri, blocked) > 1e-3 / spec.N


def test_float64_runs_in_float64(kernel_device):
    spec = _spec()
    a = simulate(spec, alpha=0.4, n_steps=3, n_replicas=4, impl="twin", dtype="float64",
                 theta0=np.full(spec.N, 0.3), device=kernel_device)  # fmt: skip
    b = simulate(spec, alpha=0.4, n_steps=3, n_replicas=4, impl="triton", dtype=torch.float64,
                 theta0=np.full(spec.N, 0.3), device=kernel_device)  # fmt: skip
    assert a.info["dtype"] == b.info["dtype"] == "float64"
    # equal up to the float32 Philox normals (the draws), products and sums in float64
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dtype"):
        simulate(spec, alpha=0.4, n_steps=1, dtype="float16")


def test_no_per_step_host_round_trip():
    spec = paper_like(10, F_min=1.0, F_max=3.0)
    counts = []
    for T in (50, 150):
        with HostSyncCounter() as c:
            simulate(spec, alpha=0.25, n_steps=T, n_replicas=8, check_every=50)
        counts.append(c.total)
    # only the divergence check (every check_every steps) and the final copy touch the host
    assert (counts[1] - counts[0]) / 100 <= 1 / 50


def test_landscape_dtype_must_match_the_run():
    from sgdyn.simulator import MLFLandscape

    spec = _spec()
    land = MLFLandscape(spec, 8)
    with pytest.raises(ValueError, match="landscape holds torch.float32"):
        simulate(spec, alpha=0.1, n_steps=1, landscape=land, dtype="float64")
    land64 = MLFLandscape(spec, 8, dtype=torch.float64)
    r = simulate(spec, alpha=0.1, n_steps=3, n_replicas=2, landscape=land64, dtype="float64")
    assert r.info["dtype"] == "float64" and np.isfinite(r.theta).all()
