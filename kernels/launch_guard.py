"""One guard for every Triton launcher: device, dtype and layout checks before a launch.

Compiled Triton kernels read raw pointers, so a CPU tensor, a tensor on another GPU or an
unexpected dtype would be read as garbage (or crash the context) instead of failing. Every
launcher (``per_sample_triton``, ``streaming_pca_triton``, ``mlf_step_triton``) calls
:func:`check_launch` first:

- all tensors on one device (``ValueError`` naming them otherwise);
- that device is CUDA, or the CPU with ``TRITON_INTERPRET=1`` (``RuntimeError`` saying so);
- floating tensors share one dtype from the kernel's supported list (``TypeError``: the guard
  never casts, the caller chooses the precision);
- integer tensors (Philox keys, offsets) are int64.

:func:`contiguous` returns a contiguous tensor for kernels that index with row-major offsets.
"""

from __future__ import annotations

import torch

from .dispatch import interpreter_on

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_launch(
    kernel: str,
    floats: dict[str, torch.Tensor],
    ints: dict[str, torch.Tensor] | None = None,
    *,
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
) -> tuple[torch.device, torch.dtype]:
    """Validate the tensors of one launch of ``kernel``; return (device, float dtype)."""
    ints = ints or {}
    every = {**floats, **ints}
    devices = {name: t.device for name, t in every.items()}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"{kernel}: all tensors must be on one device, got {where}")
    device = next(iter(devices.values()))
    if device.type != "cuda" and not interpreter_on():
        raise RuntimeError(
            f"{kernel}: the compiled Triton kernel needs CUDA tensors, got {device}; on the CPU "
            "set TRITON_INTERPRET=1 before importing triton (tests) or use the torch twin"
        )
    kinds = {name: t.dtype for name, t in floats.items()}
    bad = {n: d for n, d in kinds.items() if d not in dtypes}
    if bad:
        raise TypeError(
            f"{kernel} takes {' or '.join(str(d).removeprefix('torch.') for d in dtypes)} "
            "only (no silent cast), got "
            + ", ".join(f"{n}: {d}" for n, d in bad.items())
            + "; convert the inputs with .to(dtype) first"
        )
    if len(set(kinds.values())) > 1:
        raise TypeError(
            f"{kernel}: floating inputs must share one dtype, got "
            + ", ".join(f"{n}: {d}" for n, d in kinds.items())
        )
    for name, t in ints.items():
        if t.dtype != torch.int64:
            raise TypeError(f"{kernel}: {name} must be int64, got {t.dtype}")
    return device, next(iter(kinds.values())) if kinds else torch.float32


def contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if row-major contiguous, else a contiguous copy (same dtype and device)."""
    return t if t.is_contiguous() else t.contiguous()
