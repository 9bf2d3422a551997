"""Tensors ready for ``torch.save``: ``torch.save`` writes a tensor's whole storage, so a view
(one replica's window out of the (R, steps, N) buffer, the top rows of a components matrix)
would carry everything around it into the file, and back into memory when it is loaded."""

from __future__ import annotations

import torch

from sgdyn.kernels.memory import own_storage


def owned(t: torch.Tensor) -> torch.Tensor:
    """``t`` on the CPU holding only its own elements (a view into a larger storage is
    copied out; anything else is returned as it is)."""
    return own_storage(t.detach().cpu())


def owned_tree(obj):
    """:func:`owned` applied to every tensor inside nested dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        return owned(obj)
    if isinstance(obj, dict):
        return {k: owned_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(owned_tree(v) for v in obj)
    return obj
