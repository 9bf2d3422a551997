"""Trajectory recorder: attaches to a normal PyTorch loop and records named parameters.

BackPACK/Cockpit style: it does not own the loop. Attach it to the optimizer (a step
post-hook) or call :meth:`TrajectoryRecorder.record` yourself after each step. Snapshots go
into a preallocated on-device :class:`~sgdyn.kernels.TrajectoryBuffer` (one device copy per
step, no host synchronisation). When the window ends, :meth:`pca` fits the streaming
estimator (:class:`~sgdyn.kernels.StreamingPCA`) on the recorded snapshots; with
``keep_trajectory=False`` snapshots are instead merged into the estimator every ``chunk``
steps and only O(N^2) memory is kept.

For large layers (N x N does not fit) the recorder switches to the Frequent-Directions
sketch (:class:`~sgdyn.kernels.SketchPCA`, O(ell N) memory, documented error bound):
``estimator="auto"`` (default) picks the exact estimator up to ``EXACT_MAX_FEATURES``
features and the sketch above; ``"exact"``, ``"sketch"`` or any object with
``reset``/``partial_fit``/``finalize`` force one. On CUDA the estimators' batch updates run
as Triton kernels (:mod:`sgdyn.kernels.dispatch`).
"""

from __future__ import annotations

import torch
from torch import nn

from sgdyn.kernels import SketchPCA, StreamingPCA, TrajectoryBuffer

# Above this many features the exact N x N scatter (float64) would exceed ~2 GiB.
EXACT_MAX_FEATURES = 16384


def make_estimator(estimator, n_features: int, sketch_size: int | None = None):
    """The PCA estimator for ``n_features``: ``"auto"``, ``"exact"``, ``"sketch"`` or an
    estimator object (returned as is)."""
    if not isinstance(estimator, str):
        missing = [m for m in ("reset", "partial_fit", "finalize") if not hasattr(estimator, m)]
        if missing:
            raise TypeError(
                f"estimator object lacks {missing}; pass 'auto', 'exact', 'sketch' or a "
                "StreamingPCA/SketchPCA instance"
            )
        return estimator
    if estimator == "auto":
        estimator = "exact" if n_features <= EXACT_MAX_FEATURES else "sketch"
    if estimator == "exact":
        return StreamingPCA()
    if estimator == "sketch":
        return SketchPCA(sketch_size=sketch_size if sketch_size is not None else 128)
    raise ValueError(f"estimator must be 'auto', 'exact', 'sketch' or an object, got {estimator!r}")


class TrajectoryRecorder:
    """Record the parameters ``names`` of ``model`` at every optimizer step of a window."""

    def __init__(
        self,
        model: nn.Module,
        names: str | list[str],
        n_steps: int,
        *,
        keep_trajectory: bool = True,
        chunk: int = 256,
        dtype: torch.dtype = torch.float32,
        estimator="auto",
        sketch_size: int | None = None,
    ):
        names = [names] if isinstance(names, str) else list(names)
        params = dict(model.named_parameters())
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"model has no parameter(s) {missing}; available: {list(params)}")
        if n_steps < 2:
            raise ValueError(f"a PCA window needs at least 2 steps, got {n_steps}")
        self.names = names
        self.params = [params[n] for n in names]
        self.shapes = {n: tuple(p.shape) for n, p in zip(names, self.params, strict=True)}
        self.n_features = sum(p.numel() for p in self.params)
        self.n_steps = n_steps
        self.keep_trajectory = keep_trajectory
        device = self.params[0].device
        cap = n_steps if keep_trajectory else min(chunk, n_steps)
        self.buffer = TrajectoryBuffer(cap, self.n_features, device=device, dtype=dtype)
        self.estimator = make_estimator(estimator, self.n_features, sketch_size)
        self.n_recorded = 0
        self._handle = None

    # -- attaching -------------------------------------------------------------------------
    def attach(self, optimizer: torch.optim.Optimizer) -> TrajectoryRecorder:
        """Record after every ``optimizer.step()`` until the window is full (afterwards the
        hook does nothing; :meth:`detach` removes it)."""
        self._handle = optimizer.register_step_post_hook(lambda *_: self.record())
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @property
    def done(self) -> bool:
        return self.n_recorded >= self.n_steps

    # -- recording -------------------------------------------------------------------------
    @torch.no_grad()
    def snapshot(self) -> torch.Tensor:
        """The current flat parameter vector (concatenated in ``names`` order)."""
        if len(self.params) == 1:
            return self.params[0].detach().reshape(-1)
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def record(self) -> None:
        # Once the window is full the hook is a no-op: removing it here, inside the
        # optimizer's own loop over its hooks, would mutate that dict mid-iteration.
        if self.done:
            return
        if self.buffer.full:  # streaming mode: merge the chunk and reuse the buffer
            self.estimator.partial_fit(self.buffer.view())
            self.buffer.clear()
        self.buffer.append(self.snapshot())
        self.n_recorded += 1

    # -- results ---------------------------------------------------------------------------
    def trajectory(self) -> torch.Tensor:
        """The recorded window (n_recorded, n_features); only with ``keep_trajectory``."""
        if not self.keep_trajectory:
            raise RuntimeError("keep_trajectory=False: only the PCA moments were kept")
        return self.buffer.view()

    def pca(self) -> StreamingPCA | SketchPCA:
        """Fit and return the PCA estimator (exact or sketched) on everything recorded."""
        if self.n_recorded < 2:
            raise ValueError(f"only {self.n_recorded} snapshots recorded; a PCA needs >= 2")
        est = self.estimator
        if self.keep_trajectory:
            return est.fit(self.buffer.view())
        if self.buffer.n:
            est.partial_fit(self.buffer.view())
            self.buffer.clear()
        return est.finalize()

    def state_dict(self) -> dict:
        return {
            "n_recorded": self.n_recorded,
            "data": self.buffer.view().clone(),
            "names": self.names,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["names"] != self.names:
            raise ValueError(f"checkpoint records {state['names']}, this recorder {self.names}")
        n = int(state["data"].shape[0])
        self.buffer.data[:n].copy_(state["data"])
        self.buffer.n = n
        self.n_recorded = int(state["n_recorded"])
