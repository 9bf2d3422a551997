"""Training: optimizers, the epoch loop, full-loss / accuracy evaluation, divergence checks."""

from .loop import (
    DivergenceError,
    OptimConfig,
    accuracy,
    check_finite,
    full_loss,
    make_optimizer,
    train_epoch,
)

__all__ = [
    "DivergenceError",
    "OptimConfig",
    "accuracy",
    "check_finite",
    "full_loss",
    "make_optimizer",
    "train_epoch",
]
