"""Trajectory recorder: attaches to a normal PyTorch loop and records named parameters.

BackPACK/Cockpit style: it does not own the loop. Attach it to the optimizer (a step
post-hook) or call :meth:`TrajectoryRecorder.record` yourself after each step. Snapshots go
into a preallocated on-device :class:`~sgdyn.kernels.TrajectoryBuffer` (one device copy per
step, no host synchronisation). When the window ends, :meth:`pca` fits the streaming
estimator (:class:`~sgdyn.kernels.StreamingPCA`) on the recorded snapshots; with
``keep_trajectory=False`` snapshots are instead merged into the estimator every ``chunk``
steps and only O(N^2) memory is kept (the default with the sketch: O(ell N)).

Once the window is full the hook does nothing (it cannot remove itself from inside the
optimizer's loop over its hooks); :meth:`TrajectoryRecorder.detach` removes it. Before
anything is allocated the recorder estimates its memory (:meth:`memory_estimate`) and
refuses, with the number and the options that change it, what the device cannot hold.

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
from sgdyn.kernels.memory import check_fits, format_bytes

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
    """Record the parameters ``names`` of ``model`` at every optimizer step of a window.

    ``keep_trajectory``: keep every snapshot (needed for :meth:`trajectory`; default for the
    exact estimator) or merge them into the estimator every ``chunk`` steps (default for the
    sketch, which then never holds the window). ``max_memory``: bytes the recorder may use
    (default: what the device reports free); more raises
    :class:`~sgdyn.kernels.memory.InsufficientMemoryError` before any allocation.
    """

    def __init__(
        self,
        model: nn.Module,
        names: str | list[str],
        n_steps: int,
        *,
        keep_trajectory: bool | None = None,
        chunk: int = 256,
        dtype: torch.dtype = torch.float32,
        estimator="auto",
        sketch_size: int | None = None,
        max_memory: int | None = None,
    ):
        names = [names] if isinstance(names, str) else list(names)
        params = dict(model.named_parameters())
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"model has no parameter(s) {missing}; available: {list(params)}")
        if n_steps < 2:
            raise ValueError(f"a PCA window needs at least 2 steps, got {n_steps}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.names = names
        self.params = [params[n] for n in names]
        self.shapes = {n: tuple(p.shape) for n, p in zip(names, self.params, strict=True)}
        self.n_features = sum(p.numel() for p in self.params)
        self.n_steps = n_steps
        self.estimator = make_estimator(estimator, self.n_features, sketch_size)
        if keep_trajectory is None:
            keep_trajectory = not isinstance(self.estimator, SketchPCA)
        self.keep_trajectory = bool(keep_trajectory)
        self.chunk = int(chunk)
        device = self.params[0].device
        self.dtype = dtype
        est = self.memory_estimate()
        check_fits(
            est["total"],
            device,
            f"TrajectoryRecorder ({self._describe(est)})",
            "use keep_trajectory=False (merge every `chunk` steps), estimator='sketch' (O(ell N) "
            "instead of N^2), a shorter window or fewer parameters, or pass max_memory",
            max_memory,
        )
        cap = n_steps if self.keep_trajectory else min(self.chunk, n_steps)
        self.buffer = TrajectoryBuffer(cap, self.n_features, device=device, dtype=dtype)
        self.n_recorded = 0
        self._handle = None

    def memory_estimate(self) -> dict:
        """Bytes the recorder will need at its peak: ``buffer`` (snapshots kept on the
        device), ``estimator`` (PCA state and the decomposition) and ``total``."""
        N, n = self.n_features, self.n_steps
        elem = torch.empty((), dtype=self.dtype).element_size()
        rows = n if self.keep_trajectory else min(self.chunk, n)
        buffer = rows * N * elem
        f8 = 8
        if isinstance(self.estimator, SketchPCA):
            ell = self.estimator.sketch_rows
            est = 2 * ell * N * f8 + rows * N * f8 + (2 * ell) ** 2 * f8
        elif isinstance(self.estimator, StreamingPCA):
            if self.keep_trajectory and n < N:  # Gram path: window copy, n x n, components
                est = n * N * f8 * 2 + n * n * f8
            else:  # moments: M2, batch scatter, eigendecomposition
                est = 3 * N * N * f8 + rows * N * f8
        else:  # a user's estimator object: unknown, count the window copy
            est = rows * N * f8
        return {"buffer": buffer, "estimator": est, "total": buffer + est}

    def _describe(self, est: dict) -> str:
        kind = type(self.estimator).__name__
        keep = "window kept" if self.keep_trajectory else f"chunks of {self.chunk}"
        return (
            f"{self.n_steps} steps x {self.n_features} weights, {keep}: buffer "
            f"{format_bytes(est['buffer'])}, {kind} {format_bytes(est['estimator'])}"
        )

    # -- attaching -------------------------------------------------------------------------
    def attach(self, optimizer: torch.optim.Optimizer) -> TrajectoryRecorder:
        """Record after every ``optimizer.step()`` until the window is full (afterwards the
        hook stays but does nothing; :meth:`detach` removes it)."""
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
