"""Capture R windows at once: :func:`~sgdyn.validation.studies.capture.capture_window` for R
configs that differ only in learning rate and seed, trained together as
:class:`~sgdyn.validation.training.replicas.Replicas`.

Every replica goes through the single run's phases on its own schedule: train until its
exploration phase is detected on its own loss curve (or its ``window_start``), then record
its own window of ``window_epochs`` epochs; a replica that has finished (or failed) stops
training while the others go on. The results are the :class:`CaptureResult` objects of R
separate captures (equal numbers up to float32 rounding of the batched matmuls); a replica
that diverges or does not learn returns its exception instead of stopping the others.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from sgdyn.theory import detect_transition
from sgdyn.validation.data import ArrayDataset
from sgdyn.validation.models import build_model, default_probe_param
from sgdyn.validation.studies.capture import (
    CaptureConfig,
    CaptureResult,
    check_learning,
    data_fingerprint,
)
from sgdyn.validation.training.loop import OptimConfig, check_finite
from sgdyn.validation.training.replicas import ReplicaRecorder, Replicas

log = logging.getLogger(__name__)

# settings that may differ between the replicas of one group (each follows its own schedule)
PER_REPLICA = ("lr", "seed", "window_start", "min_epochs", "settle_epochs", "max_epochs")


def group_key(cfg: CaptureConfig) -> tuple:
    """Configs with equal keys can be captured together (same B, architecture, data, ...)."""
    return tuple(sorted((k, repr(v)) for k, v in cfg.capture_key().items() if k not in PER_REPLICA))


def capture_windows(
    cfgs: list[CaptureConfig], data: ArrayDataset | None = None
) -> list[CaptureResult | Exception]:
    """R captures at once (module doc); returns one CaptureResult or exception per config."""
    if not cfgs:
        return []
    for c in cfgs:
        c.validate()
    if len({group_key(c) for c in cfgs}) != 1:
        diff = sorted(
            k
            for k in cfgs[0].capture_key()
            if k not in PER_REPLICA and len({repr(c.capture_key()[k]) for c in cfgs}) > 1
        )
        raise ValueError(
            f"replicas captured together may differ only in {PER_REPLICA}; these differ: {diff} "
            "(e.g. batch_size: group the cells by B)"
        )
    cfg0 = cfgs[0]
    if cfg0.optimizer != "sgd":
        raise ValueError(f"replicas train with plain SGD only, got optimizer {cfg0.optimizer!r}")
    t_start = time.perf_counter()
    device = torch.device(cfg0.device)
    if data is None:
        data = cfg0.load_data()
    data = data.to(device)
    for c in cfgs:
        OptimConfig(c.optimizer, c.lr, c.batch_size).validate(len(data))
    models = []
    for c in cfgs:  # the single run's initialisation: torch.manual_seed(seed), then the model
        torch.manual_seed(c.seed)
        models.append(build_model(c.model, data.n_features, c.hidden).to(device))
    template = models[0]
    probe = cfg0.probe or default_probe_param(template)
    R = len(cfgs)
    rep = Replicas(models, [c.lr for c in cfgs], cfg0.batch_size, [c.seed for c in cfgs])
    spe = len(data) // cfg0.batch_size
    n_feat = rep.snapshot(probe).shape[1]
    rec = ReplicaRecorder(R, cfg0.window_epochs * spe, n_feat, device=device)

    losses = [[float(v)] for v in rep.full_loss(data.x, data.y).cpu()]
    state = ["pre"] * R
    errors: dict[int, Exception] = {}
    epoch, start, reason = [0] * R, [0] * R, [""] * R
    rec_epochs, window_losses = [0] * R, [[] for _ in range(R)]
    t_pre, t_rec = [0.0] * R, [0.0] * R
    for r, c in enumerate(cfgs):
        try:
            check_finite(losses[r][0], 0, c.lr)
        except Exception as e:  # noqa: BLE001 - one replica's failure stops only that one
            state[r], errors[r] = "failed", e

    def begin_window(r: int) -> None:
        c = cfgs[r]
        check_learning(losses[r], data.y, epoch[r], c.lr, "start of the window")
        state[r], start[r], t_pre[r] = "rec", epoch[r] + 1, time.perf_counter()

    while any(s in ("pre", "rec") for s in state):
        for r, c in enumerate(cfgs):  # the single run's test at the top of its epoch loop
            if state[r] != "pre":
                continue
            try:
                if c.window_start is not None:
                    if epoch[r] >= c.window_start:
                        reason[r] = f"window_start={c.window_start} given by the user"
                        begin_window(r)
                elif epoch[r] >= c.min_epochs:
                    ph = detect_transition(losses[r])
                    if ph.confirmed and epoch[r] >= ph.transition_epoch + c.settle_epochs:
                        reason[r] = (
                            f"exploration phase: transition detected at epoch "
                            f"{ph.transition_epoch} (-d ln L/d epoch fell from "
                            f"{ph.fast_rate:.3g} to <= {ph.max_slow_rate})"
                        )
                        begin_window(r)
                    elif epoch[r] >= c.max_epochs:
                        reason[r] = (
                            f"no transition within max_epochs={c.max_epochs}; the window starts "
                            "there (pass --window-start or raise --max-epochs)"
                        )
                        log.warning(reason[r])
                        begin_window(r)
            except Exception as e:  # noqa: BLE001
                state[r], errors[r] = "failed", e
        active = [s in ("pre", "rec") for s in state]
        if not any(active):
            break
        rows = [r for r in range(R) if state[r] == "rec"]
        step_losses = rep.train_epoch(
            data.x,
            data.y,
            active=active,
            on_step=(lambda _s, rows=rows: rec.record(rep.snapshot(probe), rows)) if rows else None,
        )
        full = rep.full_loss(data.x, data.y).cpu()
        worst = step_losses.max(dim=1).values.cpu()
        for r, c in enumerate(cfgs):
            if not active[r]:
                continue
            epoch[r] += 1
            losses[r].append(float(full[r]))
            try:
                check_finite(max(losses[r][-1], float(worst[r])), epoch[r], c.lr, losses[r][0])
                if state[r] == "rec":
                    window_losses[r].append(step_losses[r])
                    rec_epochs[r] += 1
                    if rec_epochs[r] == c.window_epochs:
                        check_learning(losses[r], data.y, epoch[r], c.lr, "end of the window")
                        state[r], t_rec[r] = "done", time.perf_counter()
            except Exception as e:  # noqa: BLE001
                state[r], errors[r] = "failed", e

    done = [r for r in range(R) if state[r] == "done"]
    t0 = time.perf_counter()
    pcas = dict(zip(done, rec.pca(done), strict=True))
    t_pca = (time.perf_counter() - t0) / max(1, len(done))
    fp = data_fingerprint(data)
    out: list[CaptureResult | Exception] = []
    for r, c in enumerate(cfgs):
        if state[r] != "done":
            out.append(errors[r])
            continue
        curve = np.asarray(losses[r])
        out.append(
            CaptureResult(
                config=c,
                model=rep.model(r, template),
                data=data,
                probe=probe,
                trajectory=rec.trajectory(r),
                pca=pcas[r],
                loss_curve=curve,
                step_losses=torch.cat(window_losses[r]).float().cpu().numpy(),
                phases=detect_transition(curve),
                window_start_epoch=start[r],
                window_reason=reason[r],
                steps_per_epoch=spe,
                data_fingerprint=fp,
                timings={
                    "train_to_window_s": t_pre[r] - t_start,
                    "window_s": t_rec[r] - t_pre[r],
                    "pca_s": t_pca,
                    "replicas": R,
                },
            )
        )
    return out
