"""A plain SGD training loop (SGD with learning rate alpha and minibatch B; momentum and
Adam selectable) with per-epoch full-training loss, minibatches drawn without replacement
each epoch. Measurements attach through ``on_step`` callbacks / optimizer hooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class DivergenceError(RuntimeError):
    """The loss became NaN/Inf or exploded: lower the learning rate."""


@dataclass
class OptimConfig:
    optimizer: str = "sgd"  # sgd | momentum | adam
    lr: float = 0.1
    batch_size: int = 50
    momentum: float = 0.9
    weight_decay: float = 0.0

    def validate(self, n_samples: int) -> None:
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"learning rate must be a positive number, got {self.lr}")
        if not 1 <= self.batch_size <= n_samples:
            raise ValueError(
                f"batch size must be between 1 and the number of samples ({n_samples}), "
                f"got {self.batch_size}"
            )
        if self.optimizer not in ("sgd", "momentum", "adam"):
            raise ValueError(f"optimizer must be sgd, momentum or adam, got {self.optimizer!r}")


def make_optimizer(model: nn.Module, cfg: OptimConfig, params=None) -> torch.optim.Optimizer:
    params = list(model.parameters()) if params is None else list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def full_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 10000) -> float:
    """Mean cross-entropy over the whole set (Eq 1), evaluated in chunks."""
    total = 0.0
    for s in range(0, x.shape[0], chunk):
        total += float(F.cross_entropy(model(x[s : s + chunk]), y[s : s + chunk], reduction="sum"))
    return total / x.shape[0]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 10000) -> float:
    correct = 0
    for s in range(0, x.shape[0], chunk):
        correct += int((model(x[s : s + chunk]).argmax(1) == y[s : s + chunk]).sum())
    return correct / x.shape[0]


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    on_step: Callable[[int], None] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
) -> torch.Tensor:
    """One epoch of minibatch SGD (batches without replacement, the last partial one dropped).

    Returns the per-step minibatch losses as a device tensor (no host sync per step).
    ``loss_fn(logits, y)`` defaults to cross-entropy; pass any other loss (e.g. with a penalty).
    ``penalty(model)`` (optional) is added to every step's loss: the constraints against
    forgetting of :mod:`.penalties` (Eq 15 and its baseline); the returned losses include it.
    """
    model.train()
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator).to(x.device)
    n_steps = n // batch_size
    losses = torch.empty(n_steps, device=x.device)
    for step in range(n_steps):
        idx = perm[step * batch_size : (step + 1) * batch_size]
        logits = model(x[idx])
        loss = F.cross_entropy(logits, y[idx]) if loss_fn is None else loss_fn(logits, y[idx])
        if penalty is not None:
            loss = loss + penalty(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()
        if on_step is not None:
            on_step(step)
    return losses


def check_finite(loss: float, epoch: int, lr: float, initial: float | None = None) -> None:
    """Raise :class:`DivergenceError` for a NaN/Inf loss or one 10x above its initial value."""
    limit = 1e6 if initial is None else 10.0 * max(initial, 1e-3)
    if not math.isfinite(loss) or loss > limit:
        raise DivergenceError(
            f"training diverged at epoch {epoch} (loss reached {loss:.4g}, initial "
            f"{initial if initial is None else f'{initial:.4g}'}); lower the learning rate "
            f"(now {lr}) or raise the batch size"
        )
