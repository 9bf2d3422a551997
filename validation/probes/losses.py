"""Any loss a user trains with, as one loss value per sample.

The landscape of a probe is the mean of per-sample losses over the data (Eq 1:
L = N^-1 sum_s l(x_s, w)); profiles, flatness, per-sample gradient projections and
minibatch losses all need the per-sample values. :func:`per_sample_loss` turns what a user
passes as ``loss_fn`` into that form:

- ``None``: cross-entropy on logits, any number of classes (the paper's loss);
- a ``torch.nn`` loss module (``nn.MSELoss()``, ``nn.CrossEntropyLoss(label_smoothing=0.1)``,
  ...): a copy with ``reduction="none"``;
- a function taking ``reduction=`` (``F.mse_loss``, ``F.cross_entropy``, ...): called with
  ``reduction="none"``;
- any other callable ``f(output, target)`` returning one value per sample.

Per-sample values with extra dimensions (MSE on (n, d) outputs, sequence cross-entropy
(n, T)) are averaged over them, so the mean over samples equals the loss's own
``reduction="mean"`` (class-weighted cross-entropy is the exception: its "mean" divides by
the summed weights; the landscape uses the plain mean over samples).
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PerSampleLoss", "per_sample_loss", "stable_cross_entropy"]


def stable_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy that keeps its precision for well-classified samples.

    ``logsumexp(z) - z_y`` rounds to exactly 0 in float32 once the margin exceeds ~16 (the
    loss ~e^-16 is below the rounding of z_y), so ln L of a minibatch of such samples does
    not exist (Eq 9 fits ln L^mu). The same value written as
    ``softplus(logsumexp_{c != y}(z_c - z_y))`` = ln(1 + sum_{c != y} e^{z_c - z_y}) keeps
    its relative precision down to margins of ~87 in float32. (n, C) logits with integer
    labels; anything else goes to ``F.cross_entropy``."""
    if logits.ndim != 2 or logits.shape[1] < 2 or y.is_floating_point():
        return F.cross_entropy(logits, y, reduction="none")
    d = logits - logits.gather(1, y[:, None])
    d = d.scatter(1, y[:, None], float("-inf"))
    return F.softplus(torch.logsumexp(d, 1))


class PerSampleLoss:
    """``loss(output, target) -> (n,)`` per-sample losses; ``name`` says what it wraps and
    ``is_cross_entropy`` marks the default (the batched evaluator has a fused path for it)."""

    def __init__(self, fn: Callable, name: str, is_cross_entropy: bool = False):
        self.fn = fn
        self.name = name
        self.is_cross_entropy = is_cross_entropy

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        vals = self.fn(output, target)
        n = output.shape[0]
        if not isinstance(vals, torch.Tensor) or vals.ndim == 0 or vals.shape[0] != n:
            shape = tuple(vals.shape) if isinstance(vals, torch.Tensor) else type(vals).__name__
            raise ValueError(
                f"loss_fn {self.name} returned {shape} for {n} samples; it must return one "
                "loss per sample: pass a loss with reduction='none' (e.g. "
                "nn.MSELoss(reduction='none')) or a function of (output, target) returning (n,)"
            )
        if vals.ndim > 1:
            vals = vals.reshape(n, -1).mean(1)
        return vals

    def __repr__(self) -> str:
        return f"PerSampleLoss({self.name})"


def per_sample_loss(loss_fn=None) -> PerSampleLoss:
    """Wrap ``loss_fn`` (module doc) so that it returns one loss per sample."""
    if isinstance(loss_fn, PerSampleLoss):
        return loss_fn
    if loss_fn is None or loss_fn is F.cross_entropy:
        return PerSampleLoss(stable_cross_entropy, "cross_entropy", True)
    if isinstance(loss_fn, nn.Module):
        mod = copy.copy(loss_fn)  # shallow: shares weights/buffers, own reduction
        if hasattr(mod, "reduction"):
            mod.reduction = "none"
        plain_ce = (
            type(loss_fn) is nn.CrossEntropyLoss
            and loss_fn.weight is None
            and loss_fn.label_smoothing == 0.0
            and loss_fn.ignore_index == -100
        )
        return PerSampleLoss(mod, type(loss_fn).__name__, plain_ce)
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be None (cross-entropy), a torch loss module or a callable, "
            f"got {type(loss_fn).__name__}"
        )
    name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
    try:
        takes_reduction = "reduction" in inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        takes_reduction = False
    if takes_reduction:
        return PerSampleLoss(functools.partial(loss_fn, reduction="none"), name)
    return PerSampleLoss(loss_fn, name)
