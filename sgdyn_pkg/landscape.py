"""The one interface every measured landscape implements (one pipeline, two landscapes).

A *landscape* gives, for a flat parameter vector ``w`` of length ``n_params``:

- ``full_loss(w)``: the overall loss L(w) (Eq 1), a 0-d tensor;
- ``minibatch_loss_and_grad(w, mu)``: the mini loss L^mu(w) (Eq 3) and its gradient for
  minibatch index ``mu`` in ``range(n_minibatches)``;
- ``losses_along(w0, directions, amplitudes)``: L(w0 + a_kj p_k) for directions (K, N) and
  amplitudes (K, A), returned as (K, A): the loss profiles of Eq 6, batched;
- ``per_sample_projections(w, directions)``: per-sample gradient projections g_s . p_k,
  (n_samples, K). A minibatch gradient is the mean of its samples' gradients, so these give
  every minibatch's gradient projection exactly;
- ``per_sample_losses_along(w0, directions, amplitudes)``: per-sample losses
  l_s(w0 + a_kj p_k), (n_samples, K, A) float64: every minibatch's loss profile L^mu_k(a)
  is the mean over its samples (the MLF ensemble of Sec IV, exactly);
- ``per_sample_slopes_along(w0, directions, amplitudes)``: per-sample slopes
  d l_s(w0 + a p_k)/da = g_s(w0 + a_kj p_k) . p_k, (n_samples, K, A) float64: the active
  temperature profiles T_k(a) of Eq 17 (a variance over minibatches of their means).

The simulator's landscape counts each of its minibatches as one "sample" (its L^mu and
gradient), so a minibatch there is a single index.

A real network restricted to one layer (:mod:`sgdyn.validation`) and the simulator's sampled
MLF ensemble (:mod:`sgdyn.simulator`) both implement it, and the trajectory recorder, PCA,
profiles, flatness, ensemble statistics and active temperature run unchanged on either.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Landscape(Protocol):
    n_params: int
    n_minibatches: int

    def full_loss(self, w: torch.Tensor) -> torch.Tensor: ...

    def minibatch_loss_and_grad(
        self, w: torch.Tensor, mu: int
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def losses_along(
        self, w0: torch.Tensor, directions: torch.Tensor, amplitudes: torch.Tensor
    ) -> torch.Tensor: ...

    def per_sample_projections(self, w: torch.Tensor, directions: torch.Tensor) -> torch.Tensor: ...

    def per_sample_losses_along(
        self, w0: torch.Tensor, directions: torch.Tensor, amplitudes: torch.Tensor
    ) -> torch.Tensor: ...

    def per_sample_slopes_along(
        self, w0: torch.Tensor, directions: torch.Tensor, amplitudes: torch.Tensor
    ) -> torch.Tensor: ...
