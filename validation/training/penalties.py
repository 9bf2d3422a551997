"""Constraints against catastrophic forgetting, as penalties for :func:`train_epoch` (Sec V).

A penalty is a callable ``penalty(model) -> scalar tensor`` added to the minibatch loss of
every step (``train_epoch(..., penalty=...)``), so every method trains through the same loop.
It acts on the named parameters of the model (flattened and concatenated in the given order,
e.g. the 2,500 weights of the MLP's ``layers.1.weight``).

- :class:`LDCPenalty` -- landscape-dependent constraints, Eq 15:
  ``lam * sum_{i <= Nc} ((w - w1) . p_1i)^2 / F_1i^2`` with the PCA directions ``p_1i`` of
  task 1's exploration window and their flatness ``F_1i`` (Eq 8 or measured). One
  (Nc, N) x (N,) matmul per step (and one for its gradient).
- :class:`EWCPenalty` -- elastic weight consolidation (Kirkpatrick et al. 2017):
  ``(lam / 2) * sum_k F_k (w_k - w1_k)^2`` with the diagonal Fisher ``F_k`` of task 1
  (:func:`diagonal_fisher`, ``kind="empirical"`` or ``"expected"``).
- :class:`PenaltySum` -- the constraints of several previous tasks, summed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _names(params) -> tuple[str, ...]:
    names = (params,) if isinstance(params, str) else tuple(params)
    if not names:
        raise ValueError("name at least one parameter to constrain, e.g. 'layers.1.weight'")
    return names


def flat_params(model: nn.Module, names: Sequence[str]) -> torch.Tensor:
    """The named parameters flattened and concatenated (a view for a single parameter)."""
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"model has no parameter {missing}; available: {list(params)}")
    if len(names) == 1:
        return params[names[0]].reshape(-1)
    return torch.cat([params[n].reshape(-1) for n in names])


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"the constraint strength lambda must be a finite number >= 0, got {lam}")
    return lam


def _check_lr(lr) -> float | None:
    if lr is None:
        return None
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"the step-stable penalty needs the SGD learning rate > 0, got {lr}")
    return lr


def _anchor(w1) -> torch.Tensor:
    w1 = torch.as_tensor(w1).detach().reshape(-1).clone()
    if not torch.isfinite(w1).all():
        raise ValueError("the task-1 solution w1 has NaN/Inf entries; retrain task 1")
    return w1


class LDCPenalty:
    """Eq 15: ``lam * sum_i ((w - w1) . p_i)^2 / F_i^2`` over the rows of ``P`` (Nc, N).

    ``P`` holds task 1's PCA directions ``p_1i`` as rows (orthonormal for a PCA; not
    required), ``F`` (Nc,) their flatness. ``n_components`` keeps the first Nc rows and must
    not exceed the number of rows given (the PCA's components). The penalty's value and
    gradient cost one small matmul each: ``q = P (w - w1)``, ``grad = 2 lam P^T (q / F^2)``.

    ``lr`` (optional, plain SGD's learning rate alpha): step-stable form. An explicit SGD
    step on a mode of curvature k_i = 2 lam / F_i^2 diverges once alpha k_i > 2 (sharp
    modes, large lam). With ``lr`` each curvature is replaced by k_i / (1 + alpha k_i), i.e.
    F_i^2 -> F_i^2 + 2 alpha lam: the explicit step then equals the implicit (backward-Euler)
    step of Eq 15's penalty, stable for every lam, identical to Eq 15 where alpha k_i << 1,
    and for lam -> inf it returns the constrained coordinates to w1 at every step.
    ``value`` is then that of the step-stable quadratic; ``eq15_value`` is always Eq 15's.
    """

    def __init__(
        self, w1, P, F, lam: float, *, params="layers.1.weight", n_components=None, lr=None
    ):
        self.names = _names(params)
        self.lam = _check_lam(lam)
        self.w1 = _anchor(w1)
        P = torch.as_tensor(P).detach()
        Fv = torch.as_tensor(F).detach().reshape(-1)
        if P.ndim != 2 or P.shape[1] != self.w1.numel():
            raise ValueError(
                f"the directions P must be (Nc, N) with N = {self.w1.numel()} weights, "
                f"got {tuple(P.shape)}"
            )
        nc = P.shape[0] if n_components is None else int(n_components)
        if not 1 <= nc <= P.shape[0]:
            raise ValueError(
                f"Nc = {nc} constrained modes but only {P.shape[0]} PCA components are "
                f"available; choose Nc between 1 and {P.shape[0]} (or record a longer window)"
            )
        if Fv.numel() < nc:
            raise ValueError(
                f"need a flatness F_i for each of the Nc = {nc} modes, got {Fv.numel()}"
            )
        Fv = Fv[:nc].to(self.w1.dtype)
        if not (torch.isfinite(Fv).all() and (Fv > 0).all()):
            raise ValueError(
                "every flatness F_i must be finite and > 0 (a NaN/Inf/0 F_i came from an "
                "unbounded or failed flatness measurement); drop those modes (smaller Nc) or "
                "use --flatness variance"
            )
        self.P = P[:nc].to(self.w1.dtype).contiguous()
        self.F = Fv
        self.lr = _check_lr(lr)
        self.inv_F2_eq15 = 1.0 / Fv**2
        # step-stable: F^2 + 2 alpha lam (module doc); Eq 15 itself without lr
        self.inv_F2 = 1.0 / (Fv**2 + 2.0 * self.lr * self.lam) if self.lr else self.inv_F2_eq15
        self.n_components = nc

    def to(self, device) -> LDCPenalty:
        for k in ("w1", "P", "F", "inv_F2", "inv_F2_eq15"):
            setattr(self, k, getattr(self, k).to(device))
        return self

    def projections(self, w: torch.Tensor) -> torch.Tensor:
        """``(w - w1) . p_i`` for every constrained mode (signed; q_i is its absolute value)."""
        return self.P @ (w.reshape(-1).to(self.P.dtype) - self.w1)

    def value(self, w: torch.Tensor) -> torch.Tensor:
        q = self.projections(w)
        return self.lam * torch.dot(q * q, self.inv_F2)

    def eq15_value(self, w: torch.Tensor) -> torch.Tensor:
        """Eq 15's penalty ``lam sum_i q_i^2 / F_i^2`` (whatever ``lr``)."""
        q = self.projections(w)
        return self.lam * torch.dot(q * q, self.inv_F2_eq15)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        return self.value(flat_params(model, self.names))


class EWCPenalty:
    """EWC: ``(lam / 2) * sum_k F_k (w_k - w1_k)^2`` with the diagonal Fisher ``F_k`` of
    task 1 (flattened like the named parameters). ``top_k`` keeps only the k weights of
    largest Fisher (the others unconstrained): Fig 4F's number of constrained weights.
    ``lr``: the step-stable form as in :class:`LDCPenalty` (curvature lam F_k ->
    lam F_k / (1 + alpha lam F_k), the implicit step of the penalty)."""

    def __init__(self, w1, fisher, lam: float, *, params="layers.1.weight", top_k=None, lr=None):
        self.names = _names(params)
        self.lam = _check_lam(lam)
        self.w1 = _anchor(w1)
        fisher = torch.as_tensor(fisher).detach().reshape(-1).to(self.w1.dtype)
        if fisher.numel() != self.w1.numel():
            raise ValueError(
                f"the Fisher has {fisher.numel()} entries but w1 has {self.w1.numel()}; "
                "compute it on the same parameters"
            )
        if not (torch.isfinite(fisher).all() and (fisher >= 0).all()):
            raise ValueError(
                "the diagonal Fisher must be finite and >= 0; recompute it (a NaN loss on "
                "task 1's data, or a wrongly signed input)"
            )
        if top_k is not None:
            k = int(top_k)
            if not 1 <= k <= fisher.numel():
                raise ValueError(
                    f"top_k = {k} constrained weights, but there are {fisher.numel()}; "
                    f"choose 1..{fisher.numel()}"
                )
            mask = torch.zeros_like(fisher)
            mask[torch.topk(fisher, k).indices] = 1
            fisher = fisher * mask
        self.fisher_raw = fisher
        self.lr = _check_lr(lr)
        self.fisher = fisher / (1.0 + self.lr * self.lam * fisher) if self.lr else fisher
        self.top_k = top_k

    def to(self, device) -> EWCPenalty:
        self.w1, self.fisher = self.w1.to(device), self.fisher.to(device)
        self.fisher_raw = self.fisher_raw.to(device)
        return self

    def value(self, w: torch.Tensor) -> torch.Tensor:
        d = w.reshape(-1).to(self.w1.dtype) - self.w1
        return 0.5 * self.lam * torch.dot(self.fisher, d * d)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        return self.value(flat_params(model, self.names))


class PenaltySum:
    """The sum of several penalties (constraints accumulated from every previous task)."""

    def __init__(self, penalties=()):
        self.penalties = list(penalties)

    def append(self, penalty) -> None:
        self.penalties.append(penalty)

    def __len__(self) -> int:
        return len(self.penalties)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        if not self.penalties:
            p = next(model.parameters())
            return torch.zeros((), device=p.device, dtype=p.dtype)
        total = self.penalties[0](model)
        for pen in self.penalties[1:]:
            total = total + pen(model)
        return total


def diagonal_fisher(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    params="layers.1.weight",
    kind: str = "empirical",
    chunk: int = 256,
) -> torch.Tensor:
    """Diagonal Fisher information of the named parameters on ``(x, y)``, flattened.

    ``kind="empirical"``: ``mean_n (d/dw_k ln p(y_n | x_n))^2`` at the true labels.
    ``kind="expected"``: ``mean_n sum_c p(c | x_n) (d/dw_k ln p(c | x_n))^2``, the exact sum
    over the classes weighted by the model's predictive distribution (no label sampling).
    Per-sample gradients by ``torch.func`` (vmap of grad), in chunks of ``chunk`` samples;
    the model is evaluated in eval mode and its flags restored.
    """
    if kind not in ("empirical", "expected"):
        raise ValueError(f"Fisher kind must be 'empirical' or 'expected', got {kind!r}")
    from torch.func import functional_call, grad, vmap

    names = _names(params)
    all_params = dict(model.named_parameters())
    missing = [n for n in names if n not in all_params]
    if missing:
        raise KeyError(f"model has no parameter {missing}; available: {list(all_params)}")
    fixed = {k: v.detach() for k, v in all_params.items() if k not in names}
    buffers = dict(model.named_buffers())
    theta = {n: all_params[n].detach() for n in names}

    def logp(th, xi):
        out = functional_call(model, ({**fixed, **th}, buffers), (xi.unsqueeze(0),))
        return F.log_softmax(out, dim=-1)[0]

    def logp_c(th, xi, c):
        return torch.gather(logp(th, xi), 0, c.reshape(1))[0]

    g_fn = vmap(grad(logp_c), in_dims=(None, 0, 0))
    total = torch.zeros(sum(theta[n].numel() for n in names), device=x.device, dtype=torch.float64)
    was = model.training
    model.eval()
    try:
        for s in range(0, x.shape[0], chunk):
            xb, yb = x[s : s + chunk], y[s : s + chunk]
            if kind == "empirical":
                g = g_fn(theta, xb, yb)
                flat = torch.cat([g[n].reshape(xb.shape[0], -1) for n in names], 1)
                total += (flat.double() ** 2).sum(0)
            else:
                with torch.no_grad():
                    p = torch.softmax(model(xb), dim=-1).double()  # (b, C)
                for c in range(p.shape[1]):
                    cc = torch.full_like(yb, c)
                    g = g_fn(theta, xb, cc)
                    flat = torch.cat([g[n].reshape(xb.shape[0], -1) for n in names], 1)
                    total += (p[:, c : c + 1] * flat.double() ** 2).sum(0)
    finally:
        model.train(was)
    return (total / x.shape[0]).to(next(iter(theta.values())).dtype)
