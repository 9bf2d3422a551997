"""How much memory a device has free, for refusing allocations that cannot fit before they start."""

from __future__ import annotations

import os

import torch

__all__ = [
    "InsufficientMemoryError",
    "available_bytes",
    "check_fits",
    "format_bytes",
    "own_storage",
]


def available_bytes(device=None) -> int | None:
    """Free memory on ``device`` in bytes (CUDA: ``mem_get_info``; CPU: ``MemAvailable`` of
    /proc/meminfo, else free physical pages); None when it cannot be known."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def own_storage(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or a copy on its device when it is a view into a larger storage: a view
    carries that whole storage into ``torch.save`` files and forward-mode AD tangents."""
    if t.untyped_storage().nbytes() > t.numel() * t.element_size():
        return t.clone()
    return t


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


class InsufficientMemoryError(ValueError, MemoryError):
    """An allocation was refused before it started: the message gives the size and the
    option that changes it (a ValueError too, so command lines report it on one line)."""


def check_fits(need: int, device, what: str, advice: str, limit: int | None = None) -> None:
    """Raise :class:`InsufficientMemoryError` when ``need`` bytes exceed ``limit`` (default:
    what :func:`available_bytes` reports free on ``device``; unknown: no check)."""
    if limit is None:
        limit = available_bytes(device)
    if limit is not None and need > limit:
        raise InsufficientMemoryError(
            f"{what} needs about {format_bytes(need)} on {device} but only "
            f"{format_bytes(limit)} is available: {advice}"
        )
