"""Per-replica random streams on the device, keyed by the global replica index (Sec IV, Eq 9).

The integrators draw theta^mu, L^mu_0 (Eq 9), the fresh M^mu of the blocked CPU step and the
Langevin noise every step. Those draws happen on the simulation's device (a torch
``Generator`` there: Philox on CUDA, Mersenne twister on the CPU), so a step makes no host
copy; CPU and GPU sample the same law (not the same numbers).

Replicas are grouped in chunks of ``CHUNK`` consecutive *global* indices; each chunk has its
own generator, seeded from (seed, stream, chunk index) by a splitmix64 hash. A process that
simulates global replicas ``[offset, offset + R)`` (one rank under ``torchrun``,
:mod:`sgdyn.simulator.distributed`) therefore draws exactly the numbers that a single process
simulating all replicas draws for them: the rank never enters the seed.
"""

from __future__ import annotations

import torch

CHUNK = 16  # replicas per generator; shard boundaries are multiples of it
_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def chunk_seed(seed: int, stream: int, chunk: int) -> int:
    """63-bit generator seed of one chunk of one stream (independent of any rank)."""
    return _splitmix64(_splitmix64(_splitmix64(int(seed) & _M64) ^ stream) ^ chunk) >> 1


class ReplicaStreams:
    """Generators for global replicas ``[offset, offset + n)`` of one random stream.

    ``randn(*shape)`` returns (n, *shape) standard normals on ``device`` in ``dtype``;
    replica r's rows come from the generator of its chunk, in the order the chunk draws.
    """

    def __init__(self, seed: int, stream: int, n: int, device, offset: int = 0, chunk=CHUNK):
        if n < 1 or offset < 0:
            raise ValueError(f"need n >= 1 replicas and offset >= 0, got {n}, {offset}")
        if offset % chunk:
            raise ValueError(
                f"a shard must start at a multiple of {chunk} replicas (got offset {offset}); "
                "shard whole chunks (sgdyn.simulator.distributed.shard_range)"
            )
        self.n, self.device = int(n), torch.device(device)
        self.sizes, self.gens = [], []
        for start in range(offset, offset + n, chunk):
            self.sizes.append(min(chunk, offset + n - start))
            g = torch.Generator(device=self.device)
            g.manual_seed(chunk_seed(seed, stream, start // chunk))
            self.gens.append(g)

    def randn(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        parts = [
            torch.randn(k, *shape, generator=g, device=self.device, dtype=dtype)
            for k, g in zip(self.sizes, self.gens, strict=True)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)
