"""One SGD run close to the hardware (issue 11, item 4): the training step of Eq 2,
w <- w - alpha grad L^mu(w), three ways, with the same numbers.

``mode="eager"``: forward, backward and a fused ``torch._foreach_add_`` update (what
``torch.optim.SGD`` does, without its per-step Python bookkeeping). ``mode="compile"``: forward
and gradient (:func:`torch.func.grad_and_value`) are one graph compiled by
:func:`torch.compile` together with the update, copied back in place. ``mode="graph"`` (CUDA
only): the eager step is captured once in a CUDA graph with static minibatch buffers and
replayed, removing the per-kernel launch cost that bounds a small MLP on a GPU.

Loss bookkeeping never synchronises with the host: each step writes its minibatch loss into
a device tensor; :meth:`FastSGD.train_epoch` returns it and the caller reads it once per epoch.
:func:`flop_bound_s` gives the step's lower bound 2 * 3 * params * B / (measured matmul
FLOP rate): forward 2 P B flops, backward twice that.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad_and_value
from torch.nn import functional as F

MODES = ("eager", "compile", "graph")


class FastSGD:
    """Plain SGD (learning rate ``lr``) on ``model`` with the step implementation ``mode``
    (``backend``: the :func:`torch.compile` backend of ``mode="compile"``)."""

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        mode: str = "eager",
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        backend: str = "inductor",
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not lr > 0:
            raise ValueError(f"the learning rate must be positive, got {lr}")
        self.device = next(model.parameters()).device
        if mode == "graph" and self.device.type != "cuda":
            raise ValueError(
                "mode='graph' (CUDA graphs) needs the model on a CUDA device; use 'compile' "
                "or 'eager' on the CPU"
            )
        self.model, self.lr, self.mode = model, float(lr), mode
        self.loss_fn = F.cross_entropy if loss_fn is None else loss_fn
        self.params = dict(model.named_parameters())
        self.backend = backend  # torch.compile backend ("aot_eager": no code generation)
        self._compiled = None
        self._graph = None

    # -- the three steps --------------------------------------------------------------------
    def _eager(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fn(self.model(xb), yb)
        ps = list(self.params.values())
        grads = torch.autograd.grad(loss, ps)
        with torch.no_grad():
            torch._foreach_add_(ps, grads, alpha=-self.lr)
        return loss.detach()

    def _functional_update(self, params: dict, xb: torch.Tensor, yb: torch.Tensor):
        def loss_of(p):
            return self.loss_fn(functional_call(self.model, p, (xb,)), yb)

        grads, loss = grad_and_value(loss_of)(params)
        return [p - self.lr * grads[k] for k, p in params.items()], loss

    def _compile_step(self, xb, yb) -> torch.Tensor:
        # the compiled graph returns the updated weights (forward, gradient and update fused;
        # equal to the eager update up to float rounding); one foreach copy writes them back
        if self._compiled is None:
            self._compiled = torch.compile(
                self._functional_update, dynamic=False, backend=self.backend
            )
        ps = list(self.params.values())
        with torch.no_grad():
            new, loss = self._compiled({k: p.detach() for k, p in self.params.items()}, xb, yb)
            torch._foreach_copy_(ps, new)
        return loss

    def _graph_step(self, xb, yb) -> torch.Tensor:
        if self._graph is None:
            self._static = (xb.clone(), yb.clone())
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):  # warm-up on a side stream, as CUDA graphs require
                backup = {k: p.detach().clone() for k, p in self.params.items()}
                for _ in range(3):
                    self._eager(*self._static)
                with torch.no_grad():
                    for k, p in self.params.items():
                        p.copy_(backup[k])
            torch.cuda.current_stream().wait_stream(s)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._static_loss = self._eager(*self._static)
        self._static[0].copy_(xb)
        self._static[1].copy_(yb)
        self._graph.replay()
        return self._static_loss.clone()

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One SGD step on the minibatch; returns its loss as a device scalar (no sync)."""
        if self.mode == "eager":
            return self._eager(xb, yb)
        if self.mode == "compile":
            return self._compile_step(xb, yb)
        return self._graph_step(xb, yb)

    def train_epoch(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> torch.Tensor:
        """One epoch, batches without replacement in the order of
        :func:`~sgdyn.validation.training.loop.train_epoch` (the same generator gives the same
        minibatches); returns the per-step losses on the device (read once per epoch)."""
        n = x.shape[0]
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch size must be between 1 and {n}, got {batch_size}")
        self.model.train()
        perm = torch.randperm(n, generator=generator).to(x.device)
        steps = n // batch_size
        losses = torch.empty(steps, device=x.device)
        for s in range(steps):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            losses[s] = self.step(x[idx], y[idx])
        return losses


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def step_flops(model: nn.Module, batch_size: int) -> float:
    """Floating-point operations of one SGD step of a dense network: 2 * 3 * params * B."""
    return 2.0 * 3.0 * n_params(model) * batch_size


def matmul_flop_rate(n: int = 512, repeats: int = 20, dtype=torch.float32, device="cpu") -> float:
    """Measured FLOP/s of an n x n x n matmul on this device (threads as set), best of
    ``repeats``."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats + 2):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def flop_bound_s(model: nn.Module, batch_size: int, rate: float | None = None) -> float:
    """Lower bound on one step's time: :func:`step_flops` / ``rate`` (default: measured)."""
    return step_flops(model, batch_size) / (rate if rate is not None else matmul_flop_rate())
