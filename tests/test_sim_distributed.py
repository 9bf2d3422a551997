"""`sgdyn simulate` under torchrun: replicas sharded over gloo ranks give the numbers of one
process for the same seed (replica streams keyed by the global replica index)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sgdyn.simulator.distributed import shard_range, simulate_sharded
from sgdyn.simulator.presets import paper_like
from sgdyn.simulator.rng import CHUNK
from sgdyn.validation.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--quick", "--N", "6", "--replicas", "40", "--stationary-window-steps", "300",
        "--n-minima", "500", "--minibatches", "32", "--no-progress", "--device", "cpu",
        "--threads", "1"]  # fmt: skip


@pytest.mark.parametrize("total,world", [(64, 2), (40, 2), (48, 3), (16, 2), (100, 4)])
def test_shards_cover_every_replica_once_in_whole_chunks(total, world):
    got = [shard_range(total, r, world) for r in range(world)]
    covered = [i for off, n in got for i in range(off, off + n)]
    assert covered == list(range(total))
    assert all(off % CHUNK == 0 for off, n in got if n)


def test_without_a_process_group_it_is_plain_simulate():
    spec = paper_like(6, F_min=1.0, F_max=3.0)
    r = simulate_sharded(spec, alpha=0.25, n_steps=5, n_replicas=20, seed=1)
    assert r.theta.shape == (5, 20, 6)


def _torchrun(nproc, *cli):
    env = dict(os.environ, OMP_NUM_THREADS="1", TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--standalone", "-m", "sgdyn.validation.cli", *cli]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_ranks_emulated_in_one_process_equal_the_single_run(monkeypatch):
    """Fast version of the torchrun test: each rank's shard is computed here, the all-gather
    is emulated, and the merged result equals one process's run."""
    import torch.distributed as dist

    from sgdyn.simulator import distributed as d

    spec = paper_like(6, F_min=1.0, F_max=3.0)
    kw = dict(alpha=0.25, n_steps=12, n_replicas=40, seed=3, record_every=2)
    full = simulate_sharded(spec, **kw)
    parts = {}
    for rank in (1, 0):  # rank 1 first: its part is what rank 0 receives
        monkeypatch.setattr(d, "_CURRENT", [d.DistContext(rank, 2, "gloo", "cpu")])

        def gather(out, obj, rank=rank):
            parts[rank] = obj
            out[:] = [parts.get(0, (0, None, None)), parts[1]]

        monkeypatch.setattr(dist, "all_gather_object", gather)
        res = simulate_sharded(spec, **kw)
    assert res.info["ranks"] == 2 and res.theta.shape == full.theta.shape
    np.testing.assert_allclose(res.theta, full.theta, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_equal_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["simulate", *TINY, "--seed", "2", "--out", str(one)]) == 0
    _torchrun(2, "simulate", *TINY, "--seed", "2", "--out", str(two))
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["environment"]["ranks"] == 2 and s2["environment"]["backend"] == "gloo"
    for part in ("sim", "equilibrium"):
        for k, v in s1[part].items():
            if isinstance(v, float):
                assert s2[part][k] == pytest.approx(v, rel=1e-5, abs=1e-9), (part, k)
    with np.load(one / "arrays.npz") as a, np.load(two / "arrays.npz") as b:
        for k in ("var_diffusive", "var_stationary", "var_equilibrium", "D_measured"):
            np.testing.assert_allclose(b[k], a[k], rtol=1e-5)
    # only rank 0 wrote: one run directory, no stray files
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
