"""The paper's networks (Methods): MLP without bias, LeNet for MNIST, LeNet for CIFAR-10.

Layer names are stable so probes can name a parameter: in the MLP, ``layers.1.weight`` is
the 50x50 matrix between the two hidden layers that the paper analyses (2,500 weights).
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected ReLU network, no bias (784-50-50-10 by default; softmax in the loss)."""

    def __init__(self, sizes=(784, 50, 50, 10), bias: bool = False):
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"MLP sizes must be >= 2 positive widths, got {sizes}")
        self.sizes = sizes
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class LeNetMNIST(nn.Module):
    """Conv 1x3x3x16 (pad 1) - pool - conv 16x5x5x32 (pad 2) - pool - fc 1568x10."""

    image_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.image_shape)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class LeNetCIFAR(nn.Module):
    """Conv 3x5x5x6 - pool - conv 6x5x5x16 - pool - fc 400x120 - 120x84 - 84x10 (no padding)."""

    image_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.image_shape)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def build_model(name: str, n_features: int, hidden=(50, 50), n_classes: int = 10) -> nn.Module:
    """``mlp`` (n_features-hidden...-n_classes), ``lenet-mnist`` or ``lenet-cifar``."""
    name = name.lower()
    if name == "mlp":
        return MLP((n_features, *hidden, n_classes))
    if name == "lenet-mnist":
        if n_features != 784:
            raise ValueError(
                f"lenet-mnist takes 28x28 images (784 features), data has {n_features}"
            )
        return LeNetMNIST()
    if name == "lenet-cifar":
        if n_features != 3072:
            raise ValueError(
                f"lenet-cifar takes 32x32 RGB images (3072 features), data has {n_features}"
            )
        return LeNetCIFAR()
    raise ValueError(f"unknown model {name!r}; choose mlp, lenet-mnist or lenet-cifar")


def default_probe_param(model: nn.Module) -> str:
    """The parameter the paper's PCA looks at: the weights between the first two hidden layers."""
    if isinstance(model, MLP):
        if len(model.layers) < 3:
            raise ValueError("the MLP needs at least 2 hidden layers for the default probe")
        return "layers.1.weight"
    if isinstance(model, LeNetMNIST):
        return "conv2.weight"
    if isinstance(model, LeNetCIFAR):
        return "conv2.weight"
    raise ValueError("no default probe for this model; name a parameter explicitly")
