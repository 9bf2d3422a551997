"""Train a network and capture an SGD window in the exploration phase (the spine of every run).

:func:`capture_window` trains with a plain loop (:mod:`.train`), records the full-training
loss per epoch, detects the fast-learning -> exploration transition on the fly
(:func:`sgdyn.theory.detect_transition`), then records the probed parameters at every step
of a window of ``window_epochs`` epochs and fits the streaming PCA on it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sgdyn.kernels import StreamingPCA
from sgdyn.theory import PhaseTransition, detect_transition
from sgdyn.validation.data import ArrayDataset, load_dataset
from sgdyn.validation.io.config import StudyConfig
from sgdyn.validation.models import build_model, default_probe_param
from sgdyn.validation.probes.recorder import TrajectoryRecorder
from sgdyn.validation.training.loop import (
    OptimConfig,
    check_finite,
    full_loss,
    make_optimizer,
    train_epoch,
)

log = logging.getLogger(__name__)


@dataclass
class CaptureConfig(StudyConfig):
    """Everything that determines a captured window (all of it goes into summary.json)."""

    dataset: str = "mnist5k"
    data_root: str | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] = (50, 50)
    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 50
    seed: int = 0
    window_epochs: int = 10
    window_start: int | None = None  # None: first epoch after a confirmed transition
    min_epochs: int = 5  # never start the window before this epoch
    settle_epochs: int = 0  # extra epochs after the confirmed transition
    max_epochs: int = 200  # give up waiting for the transition after this many epochs
    probe: str | None = None  # parameter name; None = the paper's (between hidden layers)
    device: str = "auto"  # cuda when torch sees one, else cpu (resolved on construction)
    classes: tuple[int, ...] | None = None
    per_class: int | None = None  # the first n samples of every class (e.g. CIFAR-10 on a CPU)

    def load_data(self) -> ArrayDataset:
        """This config's training data (dataset, data_root, classes, per_class)."""
        return load_dataset(
            self.dataset, self.data_root, classes=self.classes, per_class=self.per_class
        )

    def validate(self) -> None:
        if self.per_class is not None and self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}")
        if self.window_epochs < 1:
            raise ValueError(f"window_epochs must be >= 1, got {self.window_epochs}")
        if self.window_start is not None and self.window_start < 0:
            raise ValueError(f"window_start must be >= 0, got {self.window_start}")
        if self.max_epochs < self.min_epochs:
            raise ValueError(
                f"max_epochs ({self.max_epochs}) must be >= min_epochs ({self.min_epochs})"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the learning rate must be positive, got --lr {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"the batch size must be >= 1, got --batch-size {self.batch_size}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, got --hidden {self.hidden}")

    def capture_key(self) -> dict:
        """The settings that determine the captured window (what a checkpoint is keyed on)."""
        return {k: v for k, v in self.as_dict().items() if k in CaptureConfig.field_names()}


def data_fingerprint(data: ArrayDataset) -> str:
    """sha256 of the samples and labels (what a checkpoint must have been trained on)."""
    h = hashlib.sha256()
    for t in (data.x, data.y):
        a = t.detach().cpu().contiguous().numpy()
        h.update(str((a.dtype, a.shape)).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


class NotLearningError(RuntimeError):
    """The network does not learn (loss at the class-frequency level): no SGD window to record."""


def check_learning(losses, y: torch.Tensor, epoch: int, lr: float, where: str) -> None:
    """Refuse a network whose full loss is no better than predicting the class frequencies
    (dead ReLUs after a too-large step, or no learning at all): the entropy H of the labels
    is the loss of the best constant output (ln 10 for balanced digits)."""
    p = torch.bincount(y.long().cpu()).double()
    p = p[p > 0] / p.sum()
    H = float(-(p * p.log()).sum())
    L = float(losses[-1])
    if L > 0.95 * H:
        raise NotLearningError(
            f"the network is not learning: full loss {L:.4g} at epoch {epoch} ({where}) is "
            f"within 5% of {H:.4g}, the loss of predicting the class frequencies (initial loss "
            f"{float(losses[0]):.4g}); dead units after too large a step or no progress: "
            f"change --lr (now {lr:g}) or train longer (--max-epochs)"
        )


@dataclass
class CaptureResult:
    config: CaptureConfig
    model: nn.Module
    data: ArrayDataset
    probe: str
    trajectory: torch.Tensor  # (T, N) recorded snapshots of the probe
    pca: StreamingPCA  # finalised on the trajectory
    loss_curve: np.ndarray  # full-training loss, index 0 = at initialisation, e = after epoch e
    step_losses: np.ndarray  # minibatch losses of every step of the window
    phases: PhaseTransition  # detected on the whole loss curve
    window_start_epoch: int  # first epoch of the window (1-based: epoch e covers steps of epoch e)
    window_reason: str
    steps_per_epoch: int
    timings: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    # the whole model's state every ``checkpoint_every`` steps (on the device), from step 0
    # through the window: the mechanism stage evaluates Eq 17 on them afterwards (Fig 5C/D)
    checkpoints: list = field(default_factory=list)
    checkpoint_steps: list = field(default_factory=list)


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=False)


class _Checkpointer:
    """Optimizer step hook: a detached copy of the model's state every ``every`` steps, kept
    on the device (cheap: one copy of the weights; no synchronisation, no file)."""

    def __init__(self, model: nn.Module, every: int):
        if every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 step, got {every}")
        self.model, self.every, self.step = model, int(every), 0
        self.states: list[dict] = []
        self.steps: list[int] = []
        self.take()

    def take(self) -> None:
        self.states.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        self.steps.append(self.step)

    def __call__(self, *args, **kwargs) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self.take()


def capture_window(
    cfg: CaptureConfig,
    progress: bool = True,
    data: ArrayDataset | None = None,
    *,
    checkpoint_every: int | None = None,
) -> CaptureResult:
    """Train until the exploration phase (or ``cfg.window_start``), then record a window.

    ``checkpoint_every``: keep the model's state every that many SGD steps (default: once
    per epoch; 0: none), from initialisation through the window (``checkpoints``)."""
    cfg.validate()
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    if data is None:
        data = cfg.load_data()
    data = data.to(device)
    OptimConfig(cfg.optimizer, cfg.lr, cfg.batch_size).validate(len(data))
    model = build_model(cfg.model, data.n_features, cfg.hidden).to(device)
    probe = cfg.probe or default_probe_param(model)
    opt = make_optimizer(model, OptimConfig(cfg.optimizer, cfg.lr, cfg.batch_size))
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(data) // cfg.batch_size
    every = steps_per_epoch if checkpoint_every is None else int(checkpoint_every)
    ckpt = _Checkpointer(model, every) if every else None
    hook = opt.register_step_post_hook(ckpt) if ckpt is not None else None

    losses = [full_loss(model, data.x, data.y)]
    check_finite(losses[0], 0, cfg.lr)
    # --- phase 1: train until the window starts --------------------------------------------
    bar = _progress(cfg.window_start or cfg.max_epochs, "fast-learning phase", progress)
    epoch, reason = 0, ""
    while True:
        if cfg.window_start is not None:
            if epoch >= cfg.window_start:
                reason = f"window_start={cfg.window_start} given by the user"
                break
        elif epoch >= cfg.min_epochs:
            ph = detect_transition(losses)
            if ph.confirmed and epoch >= ph.transition_epoch + cfg.settle_epochs:
                reason = (
                    f"exploration phase: transition detected at epoch {ph.transition_epoch} "
                    f"(-d ln L/d epoch fell from {ph.fast_rate:.3g} to <= {ph.max_slow_rate})"
                )
                break
            if epoch >= cfg.max_epochs:
                reason = (
                    f"no transition within max_epochs={cfg.max_epochs}; the window starts "
                    "there (pass --window-start or raise --max-epochs)"
                )
                log.warning(reason)
                break
        step_losses = train_epoch(model, opt, data.x, data.y, cfg.batch_size, gen)
        epoch += 1
        losses.append(full_loss(model, data.x, data.y))
        check_finite(max(losses[-1], float(step_losses.max())), epoch, cfg.lr, losses[0])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
    if bar is not None:
        bar.close()
    check_learning(losses, data.y, epoch, cfg.lr, "start of the window")
    t_pre = time.perf_counter()
    window_start = epoch + 1
    log.info("window starts at epoch %d: %s", window_start, reason)

    # --- phase 2: record every step of the window ------------------------------------------
    # the study analyses theta_i(t) of the window, so it keeps the trajectory (the recorder
    # refuses, with the numbers, a window that cannot fit)
    rec = TrajectoryRecorder(
        model, probe, cfg.window_epochs * steps_per_epoch, keep_trajectory=True
    )
    rec.attach(opt)
    step_losses: list[torch.Tensor] = []
    bar = _progress(cfg.window_epochs, "recording window", progress)
    for _ in range(cfg.window_epochs):
        step_losses.append(train_epoch(model, opt, data.x, data.y, cfg.batch_size, gen))
        epoch += 1
        losses.append(full_loss(model, data.x, data.y))
        check_finite(max(losses[-1], float(step_losses[-1].max())), epoch, cfg.lr, losses[0])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    check_learning(losses, data.y, epoch, cfg.lr, "end of the window")
    if hook is not None:
        hook.remove()
    t_rec = time.perf_counter()
    pca = rec.pca()
    t_pca = time.perf_counter()
    loss_curve = np.asarray(losses)
    return CaptureResult(
        config=cfg,
        model=model,
        data=data,
        probe=probe,
        trajectory=rec.trajectory(),
        pca=pca,
        loss_curve=loss_curve,
        step_losses=torch.cat(step_losses).cpu().numpy(),
        phases=detect_transition(loss_curve),
        window_start_epoch=window_start,
        window_reason=reason,
        steps_per_epoch=steps_per_epoch,
        data_fingerprint=data_fingerprint(data),
        checkpoints=ckpt.states if ckpt is not None else [],
        checkpoint_steps=ckpt.steps if ckpt is not None else [],
        timings={
            "train_to_window_s": t_pre - t_start,
            "window_s": t_rec - t_pre,
            "pca_s": t_pca - t_rec,
        },
    )
