"""The fast training step equals the eager loop (train_epoch + torch.optim.SGD)."""

import copy

import pytest
import torch

from sgdyn.validation.models import build_model
from sgdyn.validation.training.fast_step import FastSGD, flop_bound_s, step_flops
from sgdyn.validation.training.loop import OptimConfig, make_optimizer, train_epoch


def _setup(n=200):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)
    torch.manual_seed(0)
    return build_model("mlp", 64, (20, 20)), x, y


def _reference(model, x, y, epochs=2):
    m = copy.deepcopy(model)
    opt = make_optimizer(m, OptimConfig("sgd", 0.1, 20))
    g = torch.Generator().manual_seed(1)
    return m, torch.cat([train_epoch(m, opt, x, y, 20, g) for _ in range(epochs)])


def _fast(model, x, y, epochs=2, **kw):
    m = copy.deepcopy(model)
    f, g = FastSGD(m, 0.1, **kw), torch.Generator().manual_seed(1)
    return m, torch.cat([f.train_epoch(x, y, 20, g) for _ in range(epochs)])


def test_eager_step_is_bit_identical_to_the_optimizer_loop():
    model, x, y = _setup()
    m_ref, l_ref = _reference(model, x, y)
    m, losses = _fast(model, x, y, mode="eager")
    assert torch.equal(losses, l_ref)
    for a, b in zip(m.parameters(), m_ref.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_step_equals_the_eager_loop(backend):
    model, x, y = _setup()
    m_ref, l_ref = _reference(model, x, y)
    m, losses = _fast(model, x, y, mode="compile", backend=backend)
    torch.testing.assert_close(losses, l_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(m.parameters(), m_ref.parameters(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_flop_bound_and_refusals():
    model = build_model("mlp", 784)
    assert step_flops(model, 50) == 6 * (784 * 50 + 50 * 50 + 50 * 10) * 50
    assert flop_bound_s(model, 50, rate=1e9) == pytest.approx(step_flops(model, 50) / 1e9)
    with pytest.raises(ValueError, match="CUDA device"):
        FastSGD(model, 0.1, mode="graph")
    with pytest.raises(ValueError, match="mode must be"):
        FastSGD(model, 0.1, mode="fast")
