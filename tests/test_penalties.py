"""Penalties against forgetting (Sec V): LDC (Eq 15), EWC and its diagonal Fisher.

References are independent: the written formulas term by term in float64 with autograd, direct
per-direction dot products, the closed-form Fisher of softmax regression, and training runs.
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch
from sgdyn.validation.training.penalties import (
    EWCPenalty,
    LDCPenalty,
    PenaltySum,
    diagonal_fisher,
)


def _orthonormal(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q[:, :k].T.contiguous()  # (k, n) rows orthonormal


class Tiny(nn.Module):
    def __init__(self, d=6, h=5, c=3):
        super().__init__()
        self.a = nn.Linear(d, h, bias=False)
        self.b = nn.Linear(h, c, bias=False)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def test_ldc_value_and_gradient_match_formula():
    torch.manual_seed(0)
    N, nc = 20, 7
    P = _orthonormal(N, 10)
    Fv = torch.rand(10, dtype=torch.float64) + 0.5
    w1 = torch.randn(N, dtype=torch.float64)
    w = torch.randn(N, dtype=torch.float64, requires_grad=True)
    pen = LDCPenalty(w1, P, Fv, lam=3.0, n_components=nc)
    v = pen.value(w)
    (g,) = torch.autograd.grad(v, w)
    # the written formula, one mode at a time
    w_ref = w.detach().clone().requires_grad_(True)
    ref = sum(3.0 * torch.dot(w_ref - w1, P[i]) ** 2 / Fv[i] ** 2 for i in range(nc))
    (g_ref,) = torch.autograd.grad(ref, w_ref)
    assert torch.allclose(v, ref, rtol=1e-12)
    assert torch.allclose(g, g_ref, rtol=1e-10, atol=1e-12)


def test_ldc_projections_vs_direct_dot():
    N = 30
    P = _orthonormal(N, 12, seed=3)
    w1 = torch.randn(N, dtype=torch.float64)
    w = torch.randn(N, dtype=torch.float64)
    pen = LDCPenalty(w1, P, torch.ones(12), lam=1.0)
    q = pen.projections(w).abs()
    direct = torch.tensor([abs(float((w - w1) @ P[i])) for i in range(12)], dtype=torch.float64)
    assert torch.allclose(q, direct, rtol=1e-12)


def test_ldc_on_model_through_train_epoch_freezes_span():
    """lam -> inf along all N directions: the weights stay at w1 (span frozen); along a
    subset the displacement inside the span is tiny while outside it moves freely."""
    torch.manual_seed(1)
    x = torch.randn(64, 6)
    y = torch.randint(0, 3, (64,))
    name = "a.weight"

    def run(pen):
        torch.manual_seed(2)
        m = Tiny()
        w1 = m.a.weight.detach().reshape(-1).clone().double()
        opt = make_optimizer(m, OptimConfig("sgd", 5e-4, 16), params=[m.a.weight])
        g = torch.Generator().manual_seed(0)
        for _ in range(60):
            train_epoch(m, opt, x, y, 16, g, penalty=pen(w1) if pen else None)
        return w1, m.a.weight.detach().reshape(-1).double()

    N = 30
    w1, w_free = run(None)
    free = float((w_free - w1).norm())
    assert free > 1e-3
    Pall = _orthonormal(N, N, seed=4)
    # 2 lr lam / F^2 = 1: the penalty's step exactly cancels the displacement
    w1, w_all = run(lambda w1: LDCPenalty(w1, Pall, torch.ones(N), lam=1e3, params=name))
    assert float((w_all - w1).norm()) < 0.01 * free
    # step-stable form, lam -> inf: the constrained coordinates return to w1 at every step
    # (what is left is the last step's data-gradient move, not an accumulated drift)
    w1, w_inf = run(lambda w1: LDCPenalty(w1, Pall, torch.ones(N), lam=1e12, params=name, lr=5e-4))
    assert float((w_inf - w1).norm()) < 0.02 * free
    Psub = Pall[:10]
    w1, w_sub = run(lambda w1: LDCPenalty(w1, Psub, torch.ones(10), lam=1e3, params=name))
    d = w_sub - w1
    inside = float((Psub @ d).norm())
    outside = float((d - Psub.T @ (Psub @ d)).norm())
    assert inside < 0.02 * outside


def test_ewc_value_and_gradient_match_formula_and_top_k():
    N = 15
    w1 = torch.randn(N, dtype=torch.float64)
    fis = torch.rand(N, dtype=torch.float64)
    w = torch.randn(N, dtype=torch.float64, requires_grad=True)
    pen = EWCPenalty(w1, fis, lam=4.0)
    v = pen.value(w)
    (g,) = torch.autograd.grad(v, w)
    ref = sum(2.0 * fis[k] * (w[k] - w1[k]) ** 2 for k in range(N))
    assert torch.allclose(v, ref.detach(), rtol=1e-12)
    assert torch.allclose(g, 4.0 * fis * (w.detach() - w1), rtol=1e-12)
    top = EWCPenalty(w1, fis, lam=4.0, top_k=5)
    keep = sorted(range(N), key=lambda k: -float(fis[k]))[:5]
    ref5 = sum(2.0 * fis[k] * (w[k] - w1[k]) ** 2 for k in keep)
    assert torch.allclose(top.value(w), ref5.detach(), rtol=1e-12)


def test_penalty_sum_adds_constraints():
    m = Tiny()
    w1 = m.a.weight.detach().reshape(-1) + 0.1
    a = EWCPenalty(w1, torch.ones(30), 1.0, params="a.weight")
    b = LDCPenalty(w1, _orthonormal(30, 4), torch.ones(4), 2.0, params="a.weight")
    s = PenaltySum([a])
    s.append(b)
    assert torch.allclose(s(m), a(m) + b(m))
    assert float(PenaltySum()(m)) == 0.0


def _softmax_regression(d=5, c=4, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Linear(d, c, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.randn(c, d, generator=g, dtype=torch.float64))
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    return m, x, y


def test_fisher_closed_form_softmax_regression():
    """z = W x: d/dW ln p_c = (e_c - p) x^T, so the empirical Fisher is
    mean_n ((e_y - p) x^T)^2 and the expected one mean_n p_k (1 - p_k) x_j^2."""
    m, x, y = _softmax_regression()
    with torch.no_grad():
        p = torch.softmax(m(x), -1)
    e = F.one_hot(y, 4).double()
    emp = (((e - p)[:, :, None] * x[:, None, :]) ** 2).mean(0).reshape(-1)
    exp_ = ((p * (1 - p))[:, :, None] * (x**2)[:, None, :]).mean(0).reshape(-1)
    got_emp = diagonal_fisher(m, x, y, params="0.weight", kind="empirical", chunk=7)
    got_exp = diagonal_fisher(m, x, y, params="0.weight", kind="expected", chunk=7)
    assert torch.allclose(got_emp, emp, rtol=1e-10)
    assert torch.allclose(got_exp, exp_, rtol=1e-10)
    assert not torch.allclose(got_emp, got_exp, rtol=1e-3)  # the variants differ


def test_fisher_vs_per_sample_autograd_loop_on_mlp():
    torch.manual_seed(0)
    m = Tiny().double()
    x = torch.randn(9, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    ref = torch.zeros(30, dtype=torch.float64)
    for i in range(9):
        (g,) = torch.autograd.grad(F.cross_entropy(m(x[i : i + 1]), y[i : i + 1]), m.a.weight)
        ref += g.reshape(-1) ** 2 / 9
    got = diagonal_fisher(m, x, y, params="a.weight", kind="empirical", chunk=4)
    assert torch.allclose(got, ref, rtol=1e-10)


Z, E = torch.zeros(4), torch.eye(4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LDCPenalty(Z, E[:3], torch.ones(3), 1.0, n_components=5), "Nc = 5"),
        (lambda: LDCPenalty(Z, E, torch.ones(4), -1.0), "lambda"),
        (lambda: LDCPenalty(Z, E, torch.tensor([1, 0.0, 1, 1]), 1.0), "flatness"),
        (lambda: LDCPenalty(Z, E, torch.tensor([1, float("nan"), 1, 1]), 1.0), "flatness"),
        (lambda: EWCPenalty(torch.zeros(4), torch.ones(4), -2.0), "lambda"),
        (lambda: EWCPenalty(torch.zeros(4), torch.ones(3), 1.0), "Fisher"),
        (lambda: EWCPenalty(torch.zeros(4), torch.ones(4), 1.0, top_k=9), "top_k"),
    ],
)  # fmt: skip
def test_bad_input_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_fisher_kind_refused():
    m, x, y = _softmax_regression()
    with pytest.raises(ValueError, match="empirical"):
        diagonal_fisher(m, x, y, params="0.weight", kind="sampled")


def test_step_stable_form_equals_implicit_step_and_never_diverges():
    """With lr the explicit SGD step on the penalty alone equals the backward-Euler step of
    Eq 15 (solved directly), for any lam; explicit Eq 15 diverges where alpha k > 2."""
    N, lr = 12, 0.1
    P = _orthonormal(N, 5, seed=7)
    Fv = torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0], dtype=torch.float64)
    w1 = torch.zeros(N, dtype=torch.float64)
    w = torch.randn(N, dtype=torch.float64)
    for lam in (0.1, 10.0, 1e6):
        pen = LDCPenalty(w1, P, Fv, lam, lr=lr)
        x = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(pen.value(x), x)
        explicit = w - lr * g
        # implicit step: w' = w - lr * grad(Eq 15)(w'), solved as a linear system
        H = 2 * lam * P.T @ torch.diag(1 / Fv**2) @ P
        implicit = torch.linalg.solve(torch.eye(N, dtype=torch.float64) + lr * H, w)
        assert torch.allclose(explicit, implicit, rtol=1e-7, atol=1e-9), (
            lam,
            (explicit - implicit).abs().max(),
        )
        x = w.clone().requires_grad_(True)
        assert torch.allclose(pen.eq15_value(x), 0.5 * w @ H @ w, rtol=1e-12)
    stiff = LDCPenalty(w1, P, Fv, 10.0)  # alpha k_1 = 0.1 * 2000 >> 2
    x = w.clone()
    for _ in range(20):
        x = x.requires_grad_(True)
        (g,) = torch.autograd.grad(stiff.value(x), x)
        x = (x - lr * g).detach()
    assert float(x.norm()) > 1e6 * float(w.norm())
    e = EWCPenalty(w1, torch.tensor([0.0, 1.0, 1e3] + [1.0] * 9, dtype=torch.float64), 50.0, lr=lr)
    x = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(e.value(x), x)
    impl = w / (1 + lr * 50.0 * e.fisher_raw)
    assert torch.allclose(w - lr * g, impl, rtol=1e-9)
