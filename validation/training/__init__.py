"""Training: optimizers, the epoch loop, full-loss / accuracy evaluation, divergence checks,
penalties against forgetting (LDC Eq 15, EWC)."""

from .loop import (
    DivergenceError,
    OptimConfig,
    accuracy,
    check_finite,
    full_loss,
    make_optimizer,
    train_epoch,
)
from .penalties import EWCPenalty, LDCPenalty, PenaltySum, diagonal_fisher

__all__ = [
    "DivergenceError",
    "EWCPenalty",
    "LDCPenalty",
    "PenaltySum",
    "diagonal_fisher",
    "OptimConfig",
    "accuracy",
    "check_finite",
    "full_loss",
    "make_optimizer",
    "train_epoch",
]
