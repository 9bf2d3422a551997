"""The paper's architectures: the bias-free ReLU MLP and the two LeNets."""

from .architectures import MLP, LeNetCIFAR, LeNetMNIST, build_model, default_probe_param

__all__ = ["MLP", "LeNetCIFAR", "LeNetMNIST", "build_model", "default_probe_param"]
