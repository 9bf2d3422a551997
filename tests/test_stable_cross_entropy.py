"""The landscape's default per-sample cross-entropy keeps its precision for well-classified
samples (float32 logsumexp - z_y rounds to 0 past a margin of ~16, and Eq 9 needs ln L)."""

import numpy as np
import torch
from torch.nn import functional as F

from sgdyn.validation.models import build_model
from sgdyn.validation.probes.losses import per_sample_loss, stable_cross_entropy
from sgdyn.validation.probes.network_landscape import NetworkLandscape


def test_equals_cross_entropy_on_ordinary_logits():
    g = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(500, 10, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, 10, (500,), generator=g)
    a, b = stable_cross_entropy(z, y), F.cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    (ga,) = torch.autograd.grad(a.sum(), z)
    (gb,) = torch.autograd.grad(b.sum(), z)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-14)
    assert per_sample_loss().fn is stable_cross_entropy


def test_keeps_relative_precision_at_large_margins():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(200, 10, generator=g)
    y = torch.randint(0, 10, (200,), generator=g)
    z[torch.arange(200), y] += torch.linspace(20, 60, 200)  # margins 17-63
    plain = F.cross_entropy(z, y, reduction="none")
    assert (plain == 0).float().mean() > 0.9  # what the float32 form gives: no ln L
    # closed form for large margins: CE = ln(1 + s) = s - s^2/2 + ..., s = sum_{c!=y} e^{d_c}
    zd = z.double()
    d = zd - zd.gather(1, y[:, None])
    s = torch.exp(d).scatter(1, y[:, None], 0.0).sum(1)  # the classes c != y
    ref = s - s**2 / 2
    got = stable_cross_entropy(z, y).double()
    assert (got > 0).all()
    # float32 rounding of z_c - z_y (~4e-6 absolute at |d| ~ 50) bounds the relative error
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=2e-5)


def test_minibatch_losses_of_a_confident_network_are_positive():
    """A network trained to near-zero loss: the landscape's minibatch losses stay > 0."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 5, generator=g)
    y = (x[:, 0] > 0).long()
    model = build_model("mlp", 5, (8,))
    with torch.no_grad():  # a huge-margin classifier on feature 0
        model.layers[0].weight.zero_()
        model.layers[0].weight[0, 0], model.layers[0].weight[1, 0] = 20.0, -20.0
        model.layers[1].weight.zero_()
        model.layers[1].weight[1, 0], model.layers[1].weight[0, 1] = 1.0, 1.0
    land = NetworkLandscape(model, "layers.1.weight", (x, y), batch_size=16)
    w0 = land.as_point(model.layers[1].weight.detach().reshape(-1))
    assert float(land.full_loss(w0)) > 0
    P = torch.eye(w0.numel(), dtype=w0.dtype)[:2]
    prof = np.asarray(land.per_sample_losses_along(w0, P, np.array([[-0.01, 0.0, 0.01]] * 2)))
    logits = model(x)
    assert (F.cross_entropy(logits, y, reduction="none") == 0).sum() > 5  # the plain form
    assert np.all(prof > 0)  # every sample, so every minibatch: ln L^mu exists
