"""Choose between a Triton kernel and its plain-torch twin.

Default: Triton for CUDA tensors, the torch twin elsewhere. Force one with the environment
variable ``SGDYN_BACKEND`` (``torch`` or ``triton``) or the :func:`use_backend` context
manager. Forcing ``triton`` on CPU tensors only works under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

_VALID = ("auto", "torch", "triton")
_forced: list[str] = []


def _requested() -> str:
    if _forced:
        return _forced[-1]
    env = os.environ.get("SGDYN_BACKEND", "auto").lower()
    if env not in _VALID:
        raise ValueError(f"SGDYN_BACKEND must be one of {_VALID}, got {env!r}")
    return env


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - triton ships with CUDA torch builds
        return False
    return True


def interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def backend_for(t: torch.Tensor) -> str:
    """'triton' or 'torch' for work on tensor ``t``."""
    req = _requested()
    if req == "torch":
        return "torch"
    if req == "triton":
        if not triton_available():
            raise RuntimeError("SGDYN_BACKEND=triton but triton is not installed")
        if t.device.type != "cuda" and not interpreter_on():
            raise RuntimeError(
                "the Triton backend needs CUDA tensors; on the CPU set TRITON_INTERPRET=1 "
                "(slow, for tests) or use the torch backend"
            )
        return "triton"
    return "triton" if (t.device.type == "cuda" and triton_available()) else "torch"


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force ``'torch'``, ``'triton'`` or ``'auto'`` inside a ``with`` block."""
    if name not in _VALID:
        raise ValueError(f"backend must be one of {_VALID}, got {name!r}")
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()
