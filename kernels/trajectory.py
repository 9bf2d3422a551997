"""A preallocated on-device buffer of flat parameter snapshots (no host copy per step)."""

from __future__ import annotations

import torch


class TrajectoryBuffer:
    """Holds ``capacity`` snapshots of ``n_features`` values on ``device``.

    ``append`` is one device-to-device copy into a preallocated row, so recording every
    SGD step costs no host synchronisation.
    """

    def __init__(self, capacity: int, n_features: int, device=None, dtype=torch.float32):
        if capacity < 1 or n_features < 1:
            raise ValueError(f"capacity and n_features must be >= 1, got {capacity}, {n_features}")
        self.data = torch.empty(capacity, n_features, device=device, dtype=dtype)
        self.n = 0

    @property
    def capacity(self) -> int:
        return self.data.shape[0]

    @property
    def full(self) -> bool:
        return self.n >= self.capacity

    def append(self, x: torch.Tensor) -> None:
        if self.n >= self.capacity:
            raise RuntimeError(f"trajectory buffer is full ({self.capacity} snapshots)")
        self.data[self.n].copy_(x.detach().reshape(-1))
        self.n += 1

    def view(self) -> torch.Tensor:
        """The recorded snapshots so far, (n, n_features), without copying."""
        return self.data[: self.n]

    def clear(self) -> None:
        self.n = 0
