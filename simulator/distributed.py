"""The simulator across processes: replicas sharded over ``torchrun`` ranks (Sec IV).

    torchrun --nproc_per_node 2 -m sgdyn.validation.cli simulate --quick --out runs/sim2

Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`init_from_env` joins the process group (gloo
on the CPU, NCCL when the run's device is CUDA, each rank on ``cuda:LOCAL_RANK``).
:func:`simulate_sharded` gives each rank a contiguous range of whole replica chunks
(:func:`shard_range`), runs :func:`~sgdyn.simulator.integrators.simulate` on it with the
*global* replica offset, and all-gathers the recorded trajectories, so every rank ends with
the trajectory array a single process would have computed for the same seed: the random
streams are keyed by (seed, global replica index), never by the rank
(:mod:`sgdyn.simulator.rng`). Without a process group it is plain ``simulate``.

The CLI (``validation/cli/simulate.py``): rank 0 goes through ``execute`` (config, run
directory, report) and broadcasts the resolved config; the other ranks only compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .integrators import SimResult, SimulationDiverged, simulate
from .rng import CHUNK


@dataclass
class DistContext:
    rank: int
    world: int
    backend: str
    device: torch.device


_CURRENT: list[DistContext] = []


def current() -> DistContext | None:
    """The active process group of the simulator, or None (single process)."""
    return _CURRENT[-1] if _CURRENT else None


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> DistContext | None:
    """Join the torchrun process group (None when not launched with several processes)."""
    if not launched_by_torchrun():
        return None
    import torch.distributed as dist

    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda under torchrun but CUDA is not available on this node")
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev, backend = torch.device("cuda", local), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), backend, dev)
    _CURRENT.append(ctx)
    return ctx


def close() -> None:
    """Leave the process group joined by :func:`init_from_env`."""
    import torch.distributed as dist

    if _CURRENT:
        _CURRENT.pop()
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (a plain picklable value)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard_range(total: int, rank: int, world: int, chunk: int = CHUNK) -> tuple[int, int]:
    """(offset, count) of the global replicas of ``rank``: contiguous whole chunks, as even
    as the chunks allow (a rank may get none when there are fewer chunks than ranks)."""
    if not (0 <= rank < world) or total < 1:
        raise ValueError(f"need 0 <= rank < world and total >= 1, got {rank}, {world}, {total}")
    n_chunks = -(-total // chunk)
    c0, c1 = rank * n_chunks // world, (rank + 1) * n_chunks // world
    off = min(c0 * chunk, total)
    return off, min(c1 * chunk, total) - off


def simulate_sharded(spec, *, n_replicas: int = 16, **kwargs) -> SimResult:
    """:func:`simulate` with the replicas sharded across the active ranks (see module doc);
    every rank returns the full result. A divergence on any rank raises on all of them."""
    ctx = current()
    if ctx is None or ctx.world == 1:
        return simulate(spec, n_replicas=n_replicas, **kwargs)
    import torch.distributed as dist

    off, n = shard_range(n_replicas, ctx.rank, ctx.world)
    part, err = None, None
    if n > 0:
        try:
            res = simulate(spec, n_replicas=n, replica_offset=off, total_replicas=n_replicas,
                           **kwargs)  # fmt: skip
            part = (res.theta, res.info)
        except SimulationDiverged as e:
            err = str(e)
    parts = [None] * ctx.world
    dist.all_gather_object(parts, (off, part, err))
    errors = [e for _, _, e in parts if e]
    if errors:
        raise SimulationDiverged(errors[0])
    got = [p for _, p, _ in sorted(parts, key=lambda x: x[0]) if p is not None]
    theta = np.concatenate([th for th, _ in got], axis=1)
    info = dict(got[0][1])
    info.update(n_replicas=n_replicas, replica_offset=0, total_replicas=n_replicas,
                ranks=ctx.world, backend=ctx.backend,
                max_exponent_seen=max(i["max_exponent_seen"] for _, i in got))  # fmt: skip
    return SimResult(
        theta=theta, record_every=kwargs.get("record_every", 1),
        modes=np.arange(theta.shape[2]) if kwargs.get("record_modes") is None
        else np.asarray(kwargs["record_modes"]),
        dynamics=kwargs.get("dynamics", "sgd"), alpha=kwargs["alpha"],
        n_steps=kwargs["n_steps"], info=info,
    )  # fmt: skip
