"""NetworkLandscape on a user's own model, data and loss: image-shaped conv nets, Dataset /
DataLoader inputs, MSE regression, a 3-class problem, batch-norm/dropout models (eval-mode
numbers, flags restored). References: explicit autograd loops and whole-model passes."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from sgdyn.validation.data import DataError
from sgdyn.validation.probes.network_landscape import NetworkLandscape, eval_mode


def _unit(K, N, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(K, N, generator=g, dtype=dtype)
    return P / P.norm(dim=1, keepdim=True)


class SmallCNN(nn.Module):
    """A user's CNN: takes (n, 3, 12, 12) images (no internal reshape), batch-norm, dropout."""

    def __init__(self, n_classes=10, bn=True, dropout=0.3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4) if bn else nn.Identity()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6) if bn else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(6 * 3 * 3, n_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.drop(x.flatten(1)))


def _images(n=40, n_classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 12, 12, generator=g), torch.randint(0, n_classes, (n,), generator=g)


def _warm_bn(model, x):
    """Give batch-norm non-trivial running statistics (a few train-mode passes)."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x * 1.7 + 0.2)
    return model


def _explicit_loss(model, name, w, x, y, loss=F.cross_entropy):
    """Reference: the model in eval mode, probe replaced, the loss's own mean reduction."""
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            out = torch.func.functional_call(
                model, {name: w.view_as(model.get_parameter(name))}, (x,)
            )
            return float(loss(out, y))
    finally:
        for m, f in was:
            m.training = f


@pytest.mark.parametrize("probe", ["conv2.weight", "conv1.weight", "fc.weight"])
def test_cnn_image_input_bn_dropout_eval_mode_and_flags_restored(probe):
    torch.manual_seed(0)
    x, y = _images()
    m = _warm_bn(SmallCNN().double(), x.double())
    m.train()
    m.bn2.eval()  # a mixed state the landscape must hand back as it found it
    flags = {n: mod.training for n, mod in m.named_modules()}
    L = NetworkLandscape(m, probe, (x, y), batch_size=None)
    assert L.evaluator == "cached-tail" and "torch.fx" in L.evaluator_reason
    w0 = L.current()
    P = _unit(3, L.n_params)
    a = torch.tensor([[-0.4, 0.0, 0.3]] * 3)
    prof = L.losses_along(w0, P, a)
    for k in range(3):
        for j in range(3):
            ref = _explicit_loss(m, probe, w0 + a[k, j] * P[k], x.double(), y)
            assert abs(float(prof[k, j]) - ref) < 1e-10 * max(1, ref)
    # repeated calls give the same numbers (no dropout noise, no batch statistics)
    torch.testing.assert_close(L.losses_along(w0, P, a), prof, rtol=0, atol=0)
    torch.testing.assert_close(L.losses_along_reference(w0, P, a), prof, rtol=1e-10, atol=1e-12)
    L.full_loss(w0), L.full_loss_and_grad(w0), L.per_sample_projections(w0, P)
    L.flatness(w0, P[:1], init_step=0.5, max_amplitude=1e4, on_unbounded="flag")
    L.hvp(w0, P[:2])
    assert {n: mod.training for n, mod in m.named_modules()} == flags
    # running statistics untouched by the probe's passes
    bn_mean = m.bn1.running_mean.clone()
    L.full_loss(w0 + 0.1)
    torch.testing.assert_close(m.bn1.running_mean, bn_mean, rtol=0, atol=0)


def test_per_sample_projections_on_image_cnn_match_autograd():
    torch.manual_seed(1)
    x, y = _images(16)
    m = _warm_bn(SmallCNN().double(), x.double())
    L = NetworkLandscape(m, "conv2.weight", (x, y), batch_size=4)
    w0 = L.current()
    P = _unit(2, L.n_params)
    proj = L.per_sample_projections(w0, P)
    m.eval()
    for s in (0, 7):
        m.zero_grad()
        F.cross_entropy(m(x[s : s + 1].double()), y[s : s + 1]).backward()
        torch.testing.assert_close(proj[s], m.conv2.weight.grad.reshape(-1) @ P.T)


def test_dataset_and_dataloader_inputs_give_the_same_landscape():
    torch.manual_seed(2)
    x, y = _images(30)
    m = SmallCNN(bn=False).double()
    w, P = None, _unit(2, 6 * 4 * 9)
    vals = []
    for data in (
        (x, y),
        TensorDataset(x, y),
        DataLoader(TensorDataset(x, y), batch_size=7, shuffle=False),
        (x.numpy(), y.numpy()),
    ):
        L = NetworkLandscape(m, "conv2.weight", data, batch_size=10)
        w = L.current()
        vals.append(L.losses_along(w, P, torch.tensor([-0.2, 0.5])))
    for v in vals[1:]:
        torch.testing.assert_close(v, vals[0], rtol=1e-12, atol=0)


def test_mse_regression_matches_explicit_loss_and_gradient():
    torch.manual_seed(3)
    x = torch.randn(50, 5, dtype=torch.float64)
    t = torch.stack([x[:, 0] - 2 * x[:, 1], x[:, 2] * x[:, 3]], 1)
    m = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 2))
    m = m.double()
    for loss_fn in (nn.MSELoss(), F.mse_loss, lambda out, tt: ((out - tt) ** 2).mean(1)):
        L = NetworkLandscape(m, "2.weight", (x, t), loss_fn=loss_fn, batch_size=10)
        assert L.evaluator == "cached-tail"
        w0 = L.current()
        P = _unit(2, L.n_params)
        a = torch.tensor([-1.0, 0.5])
        prof = L.losses_along(w0, P, a)
        for k in range(2):
            for j in range(2):
                ref = _explicit_loss(m, "2.weight", w0 + a[j] * P[k], x, t, F.mse_loss)
                assert abs(float(prof[k, j]) - ref) < 1e-12
        # gradient against autograd of the loss's own mean reduction
        wt = w0.clone().requires_grad_(True)
        out = torch.func.functional_call(m, {"2.weight": wt.view(6, 8)}, (x,))
        (ga,) = torch.autograd.grad(F.mse_loss(out, t), wt)
        torch.testing.assert_close(L.full_loss_and_grad(w0)[1], ga)
        proj = L.per_sample_projections(w0, P)
        torch.testing.assert_close(proj.mean(0), ga @ P.T)
    # last layer: L(a) = L0 + b a + c a^2 exactly, so the e-width has a closed form
    L = NetworkLandscape(m, "4.weight", (x, t), loss_fn=nn.MSELoss())
    w0, P = L.current(), _unit(3, 12, seed=9)
    with torch.no_grad():
        h = m[:4](x)  # what enters the last layer
        r = m(x) - t
    n_el = t.numel()
    res = L.flatness(w0, P, init_step=0.1, tol=1e-8)
    for k in range(3):
        Ph = h @ P[k].view(2, 6).T
        c = float((Ph**2).sum()) / n_el
        b = float(2 * (r * Ph).sum()) / n_el
        L0 = float((r**2).sum()) / n_el
        width = np.sqrt(b**2 - 4 * c * (1 - np.e) * L0) / c
        assert abs(res.width[k] / width - 1) < 1e-7


def test_three_class_problem_and_whole_model_path():
    torch.manual_seed(4)
    x = torch.randn(60, 4, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # 3 classes

    class Skip(nn.Module):  # skip connection: whole-model evaluator
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 7), nn.Linear(7, 7), nn.Linear(7, 3)

        def forward(self, z):
            h = torch.relu(self.a(z))
            return self.c(torch.relu(self.b(h)) + h)

    for model, name, ev in (
        (nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 3)).double(), "0.weight", "c"),
        (Skip().double(), "b.weight", "w"),
    ):
        L = NetworkLandscape(model, name, (x, y), loss_fn=nn.CrossEntropyLoss(), batch_size=None)
        assert L.evaluator == ("cached-tail" if ev == "c" else "whole-model")
        w0 = L.current()
        ref = _explicit_loss(model, name, w0, x, y)
        assert abs(float(L.full_loss(w0)) - ref) < 1e-12
        P = _unit(2, L.n_params)
        torch.testing.assert_close(
            L.losses_along(w0, P, torch.tensor([0.3])),
            L.losses_along_reference(w0, P, torch.tensor([0.3])),
        )
    assert "skip connection" in L.evaluator_reason


def test_bad_loss_and_input_shapes_fail_clearly():
    x, y = _images(8)
    m = SmallCNN()
    with pytest.raises(ValueError, match="one loss per sample"):
        NetworkLandscape(
            m,
            "conv2.weight",
            (x, y),
            loss_fn=lambda out, t: F.cross_entropy(out, t),
            batch_size=None,
        )
    with pytest.raises(ValueError, match="model's own shape"):
        NetworkLandscape(m, "conv2.weight", (x.reshape(8, -1), y), batch_size=None)
    with pytest.raises(DataError, match="8 inputs but 5 targets"):
        NetworkLandscape(m, "conv2.weight", (x, y[:5]))
    with pytest.raises(TypeError, match="data must be"):
        NetworkLandscape(m, "conv2.weight", {"x": x})


def test_eval_mode_context_restores_flags_on_error():
    m = SmallCNN()
    m.train()
    m.drop.eval()
    with pytest.raises(RuntimeError), eval_mode(m):
        assert not any(mod.training for mod in m.modules())
        raise RuntimeError
    assert m.training and m.conv1.training and not m.drop.training
