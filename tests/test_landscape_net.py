"""NetworkLandscape: cached-tail batched evaluator vs perturbing the model and running it whole."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sgdyn.landscape import Landscape
from sgdyn.theory.flatness import flatness_e_width
from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import MLP, LeNetCIFAR, LeNetMNIST
from sgdyn.validation.probes.network_landscape import (
    NetworkLandscape,
    ProfileEvaluator,
    batched_tail,
    extract_tail,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=400)


def _unit(K, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(K, N, generator=g, dtype=torch.float64)
    return P / P.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("layer", [0, 1, 3])
def test_mlp_any_depth_and_layer_matches_whole_model(digits, layer):
    torch.manual_seed(layer)
    m = MLP((64, 20, 16, 12, 10)).double()
    L = NetworkLandscape(m, f"layers.{layer}.weight", digits)
    assert L.mode == "cached-tail" and isinstance(L, Landscape)
    w0 = L.current()
    P = _unit(4, L.n_params, seed=layer)
    amps = torch.tensor([[-3.0, -0.5, 0.0, 0.7, 2.0]] * 4) * torch.tensor([1, 2, 0.5, 1])[:, None]
    fast = L.losses_along(w0, P, amps)
    ref = L.losses_along_reference(w0, P, amps)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(L.full_loss(w0), L._whole_loss(w0))
    ref_ce = F.cross_entropy(m(digits.x.double()), digits.y).double()
    torch.testing.assert_close(L.full_loss(w0), ref_ce)


def test_lenet_conv_probe_matches_whole_model_and_autograd():
    d = load_dataset("mnist5k", limit=32)
    torch.manual_seed(0)
    m = LeNetMNIST().double()
    L = NetworkLandscape(m, "conv2.weight", d, batch_size=16)
    assert L.mode == "cached-tail"
    w0 = L.current()
    P = _unit(2, L.n_params)
    a = torch.tensor([-1.0, 0.0, 1.5])
    torch.testing.assert_close(
        L.losses_along(w0, P, a), L.losses_along_reference(w0, P, a), rtol=1e-10, atol=1e-12
    )
    # per-sample projections = autograd gradient of each sample's loss . p_k
    proj = L.per_sample_projections(w0, P)
    for s in (0, 5):
        m.zero_grad()
        F.cross_entropy(m(d.x[s : s + 1].double()), d.y[s : s + 1]).backward()
        torch.testing.assert_close(proj[s], m.conv2.weight.grad.reshape(-1) @ P.T)
    # minibatch gradient = mean of its per-sample projections (Eq 3)
    loss, g = L.minibatch_loss_and_grad(w0, 1)
    idx = L.minibatch_indices(1)
    torch.testing.assert_close(g @ P.T, proj[idx].mean(0))


def test_mlp_per_sample_projections_and_full_grad_against_autograd(digits):
    torch.manual_seed(1)
    m = MLP((64, 20, 20, 10)).double()
    L = NetworkLandscape(m, "layers.1.weight", digits)
    w0 = L.current() + 0.01
    P = _unit(3, L.n_params)
    proj = L.per_sample_projections(w0, P)
    loss, grad = L.full_loss_and_grad(w0)
    torch.testing.assert_close(grad @ P.T, proj.mean(0))
    wt = w0.clone().requires_grad_(True)
    out = torch.func.functional_call(m, {"layers.1.weight": wt.view(20, 20)}, (digits.x.double(),))
    (ga,) = torch.autograd.grad(F.cross_entropy(out, digits.y), wt)
    torch.testing.assert_close(grad, ga)


def test_flatness_on_network_matches_scalar_bisection_on_whole_model(digits):
    torch.manual_seed(2)
    m = MLP((64, 20, 20, 10)).double()
    L = NetworkLandscape(m, "layers.1.weight", digits)
    w0 = L.current()
    P = _unit(3, L.n_params, seed=3)
    res = L.flatness(w0, P, init_step=1.0, tol=1e-6, max_amplitude=1e5)
    assert res.converged.all()
    L0 = float(L._whole_loss(w0))
    for k in range(3):  # independent check: the crossing really is at e*L0 on each side
        for x in (res.left[k], res.right[k]):
            val = float(L._whole_loss(w0 + float(x) * P[k]))
            assert abs(val / (np.e * L0) - 1) < 1e-4


def test_skip_connection_falls_back_to_whole_model(digits):
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(64, 20)
            self.b = nn.Linear(20, 20)
            self.c = nn.Linear(20, 10)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.c(torch.relu(self.b(h)) + h)

    m = Skip().double()
    assert extract_tail(m, "b") is None
    L = NetworkLandscape(m, "b.weight", digits)
    assert L.mode == "whole"
    P = _unit(2, L.n_params)
    a = torch.tensor([-0.5, 0.5])
    torch.testing.assert_close(
        L.losses_along(L.current(), P, a), L.losses_along_reference(L.current(), P, a)
    )
    proj = L.per_sample_projections(L.current(), P)
    m.zero_grad()
    F.cross_entropy(m(digits.x[:1].double()), digits.y[:1]).backward()
    torch.testing.assert_close(proj[0], m.b.weight.grad.reshape(-1) @ P.T)


def test_bad_inputs(digits):
    m = MLP((64, 20, 20, 10))
    with pytest.raises(KeyError, match="no parameter"):
        NetworkLandscape(m, "layers.9.weight", digits)
    L = NetworkLandscape(m, "layers.1.weight", digits)
    with pytest.raises(ValueError, match=r"directions must be \(K, 400\)"):
        L.losses_along(L.current(), torch.randn(2, 399), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="w0 has 10 entries"):
        L.flatness(torch.zeros(10), torch.randn(1, 400))
    with pytest.raises(IndexError, match="minibatch index"):
        L.minibatch_loss_and_grad(L.current(), 10_000)
    # a direction along which the loss is exactly constant never reaches e*L0
    mz = MLP((64, 20, 20, 10))
    with torch.no_grad():
        mz.layers[2].weight.zero_()  # the tail ignores the probe: flat in every direction
    Lz = NetworkLandscape(mz, "layers.1.weight", digits)
    with pytest.raises(ValueError, match="never reached"):
        Lz.flatness(Lz.current(), _unit(2, 400).float(), max_amplitude=100.0)
    # a landscape producing NaN along the profile gives a clear error
    mn = MLP((64, 20, 20, 10))
    Ln = NetworkLandscape(mn, "layers.1.weight", digits)
    P = torch.full((1, 400), float("inf"))
    with pytest.raises(ValueError, match="NaN/Inf"):
        Ln.flatness(Ln.current(), P)


class _Functional(nn.Module):
    """Tail written with F.linear calls (call_function nodes, not modules)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 20)
        self.w2 = nn.Parameter(torch.randn(12, 20))
        self.b2 = nn.Parameter(torch.randn(12))
        self.w3 = nn.Parameter(torch.randn(10, 12))

    def forward(self, x):
        h = torch.tanh(self.a(x))
        return F.linear(torch.relu(F.linear(h, self.w2, self.b2)), self.w3)


@pytest.mark.parametrize(
    "make, name, zshape",
    [
        (lambda: MLP((64, 20, 16, 12, 10)), "layers.0", (37, 20)),
        (LeNetCIFAR, "conv2", (9, 16, 10, 10)),
        (_Functional, "a", (23, 20)),
    ],
)
def test_batched_tail_equals_tail(make, name, zshape):
    # the transposed-product linears give the same logits as the traced tail (float64)
    torch.manual_seed(0)
    m = make().double()
    tail = extract_tail(m, name)
    fast = batched_tail(tail)
    z = torch.randn(*zshape, dtype=torch.float64)
    torch.testing.assert_close(fast(z), tail(z), rtol=1e-12, atol=1e-12)
    n_lin = sum(type(mod) is nn.Linear for mod in tail.modules())
    n_fun = sum(n.target is F.linear for n in tail.graph.nodes)
    assert n_lin + n_fun >= 1
    assert not any(n.target is F.linear for n in fast.graph.nodes)
    assert not any(type(mod) is nn.Linear for _, mod in fast.named_children())


def _trained_mlp(data, steps=150, seed=0):
    torch.manual_seed(seed)
    m = MLP((64, 24, 24, 10))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(m(data.x), data.y).backward()
        opt.step()
    return m


def _whole_model_bisection(L, w0, P, L0, init_step, tol):
    """The baseline: per direction and side, doubling then bisection, each probe a
    whole-model forward pass over the data (NetworkLandscape._whole_loss)."""
    thr, widths, n = np.e * L0, [], 0
    for p in P:
        ends = []
        for sgn in (-1.0, 1.0):
            lo, hi = 0.0, init_step
            while True:
                n += 1
                if float(L._whole_loss(w0 + sgn * hi * p)) >= thr:
                    break
                lo, hi = hi, 2 * hi
            while hi - lo > tol * hi:
                mid = 0.5 * (lo + hi)
                n += 1
                if float(L._whole_loss(w0 + sgn * mid * p)) >= thr:
                    hi = mid
                else:
                    lo = mid
            ends.append(0.5 * (lo + hi))
        widths.append(ends[0] + ends[1])
    return np.array(widths), n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flatness_matches_whole_model_bisection_baseline_with_fewer_evaluations(digits, dtype):
    m = _trained_mlp(digits).to(dtype)
    L = NetworkLandscape(m, "layers.1.weight", digits)
    w0 = L.current()
    L0 = float(L.full_loss(w0))
    P = _unit(6, L.n_params, seed=5).to(dtype)
    P[0] = -torch.func.grad(  # a drift-like direction: the loss is tilted along it
        lambda w: F.cross_entropy(
            torch.func.functional_call(m, {"layers.1.weight": w.view(24, 24)}, (L.x,)),
            digits.y,
        )
    )(w0.clone())
    P[0] /= P[0].norm()
    tol = 1e-3
    res = L.flatness(w0, P, L0=L0, init_step=0.05, tol=tol)
    ref, n_base = _whole_model_bisection(L, w0, P, L0, 0.05, tol)
    assert res.converged.all()
    # both are within tol of the true crossings: the widths agree to ~1.5 tol
    np.testing.assert_allclose(res.width, ref, rtol=1.5 * tol)
    assert abs(res.right[0] + res.left[0]) > 0.05 * res.width[0]  # direction 0 is tilted
    ev = ProfileEvaluator(L, w0, P)
    flatness_e_width(ev, 6, L0=L0, init_step=0.05, tol=tol)
    ev_b = ProfileEvaluator(L, w0, P)
    res_b = flatness_e_width(ev_b, 6, L0=L0, init_step=0.05, tol=tol, method="bisect")
    np.testing.assert_allclose(res_b.width, ref, rtol=1e-6)  # same algorithm as the baseline
    assert ev.n_pairs < 0.6 * ev_b.n_pairs and ev_b.n_pairs <= n_base
