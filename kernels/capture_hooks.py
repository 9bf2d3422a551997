"""Collect a layer's inputs a_s and output gradients delta_s from a normal forward/backward.

BackPACK style: forward and full-backward hooks on the named ``nn.Linear`` / ``nn.Conv2d``
record what the layer saw during one ordinary ``loss.backward()``. The output gradient is
rescaled so that the per-sample gradients built from (a, delta) are the gradients of each
sample's *own* loss l_s: with a mean-reduced loss L = S^-1 sum_s l_s the hook sees
dL/dz_s = S^-1 dl_s/dz_s, so delta is multiplied by S; with a sum-reduced or per-sample
(vector) loss no rescaling is needed.

Models that mix samples in the forward pass (batch norm in training mode) have no per-sample
gradients in this sense; evaluate them in ``eval()`` mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .per_sample import (
    conv2d_flatten_grad,
    conv2d_unfold_input,
    linear_grad_norms,
    linear_per_sample_grads,
    linear_projections,
)


def find_layer(model: nn.Module, layer_name: str) -> nn.Module:
    """The module called ``layer_name``; a parameter name such as ``layers.1.weight`` also
    works (its module is used)."""
    modules = dict(model.named_modules())
    name = layer_name
    if name not in modules and name.endswith(".weight"):
        name = name[: -len(".weight")]
    if name not in modules:
        linear = [n for n, m in modules.items() if isinstance(m, (nn.Linear, nn.Conv2d))]
        raise KeyError(f"model has no layer {layer_name!r}; linear/conv layers are {linear}")
    layer = modules[name]
    if not isinstance(layer, (nn.Linear, nn.Conv2d)):
        raise TypeError(
            f"layer {layer_name!r} is a {type(layer).__name__}; only nn.Linear and nn.Conv2d "
            "have per-sample gradient kernels"
        )
    return layer


def _loss_scale(loss: torch.Tensor, loss_fn, reduction: str | None, S: int) -> float:
    if loss.ndim == 1:
        if loss.shape[0] != S:
            raise ValueError(f"per-sample loss has {loss.shape[0]} entries for {S} samples")
        return 1.0
    if loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar or a (S,) vector, got {tuple(loss.shape)}")
    red = reduction or getattr(loss_fn, "reduction", None) or "mean"
    if red == "mean":
        return float(S)
    if red == "sum":
        return 1.0
    raise ValueError(f"reduction must be 'mean' or 'sum', got {red!r}")


def collect_layer_io(
    model: nn.Module,
    layer_name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    reduction: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward/backward of ``model`` on (x, y); returns ``(a, delta)`` for the layer.

    Linear layer: a (S, d_in), delta (S, d_out) (inputs with extra dimensions, e.g.
    sequences, give (S, L, d)). Conv2d: im2col input (S, L, C_in kh kw) and output gradient
    (S, L, C_out). delta is dl_s/dz_s of each sample's own loss (see module docstring).

    ``loss_fn(output, y)`` defaults to cross-entropy. It may return per-sample losses (S,)
    or a scalar; a scalar is taken as mean-reduced unless ``reduction='sum'`` is passed or
    ``loss_fn.reduction`` says so. Parameter ``.grad`` fields are left untouched.
    """
    layer = find_layer(model, layer_name)
    S = x.shape[0]
    if S == 0:
        raise ValueError("empty batch: pass at least one sample")
    if loss_fn is None:

        def loss_fn(out, target):
            return F.cross_entropy(out, target, reduction="none")

    store: dict[str, torch.Tensor] = {}

    def fwd(_m, inputs, out):
        store["a"] = inputs[0].detach()
        # a tensor hook on the output fires whenever dL/d(output) is computed, which any
        # gradient of this layer's weight needs (a full backward hook would also need the
        # gradient w.r.t. the layer *input*)
        out.register_hook(lambda g: store.__setitem__("g", g.detach()))

    handle = layer.register_forward_hook(fwd)
    try:
        with torch.enable_grad():
            out = model(x)
            loss = loss_fn(out, y)
            scale = _loss_scale(loss, loss_fn, reduction, S)
            if layer.weight.requires_grad:
                params = [layer.weight]  # backprop only as far as this layer
            else:
                params = [p for p in model.parameters() if p.requires_grad]
            if not params:
                raise ValueError("model has no parameters that require grad")
            # autograd.grad, not backward(): leaves every .grad untouched
            torch.autograd.grad(loss.sum(), params, allow_unused=True)
    finally:
        handle.remove()
    if "a" not in store or "g" not in store:
        raise RuntimeError(f"layer {layer_name!r} was not used in the forward/backward pass")
    a, g = store["a"], store["g"]
    if scale != 1.0:
        g = g * scale
    if isinstance(layer, nn.Conv2d):
        return conv2d_unfold_input(layer, a), conv2d_flatten_grad(g)
    if a.ndim > 2:
        return a.reshape(S, -1, a.shape[-1]), g.reshape(S, -1, g.shape[-1])
    return a, g


def _collect_chunks(model, layer_name, x, y, loss_fn, reduction, batch_size):
    S = x.shape[0]
    step = S if batch_size is None else int(batch_size)
    if step < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for s in range(0, S, step):
        yield collect_layer_io(
            model, layer_name, x[s : s + step], y[s : s + step], loss_fn, reduction=reduction
        )


def per_sample_projections(
    model: nn.Module,
    layer_name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: torch.Tensor,
    loss_fn=None,
    *,
    reduction: str | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """g_s . p_k for every sample and direction, (S, K); directions (K, *weight.shape) or
    (K, weight.numel()). ``batch_size`` bounds memory by running the pass in chunks."""
    outs = [
        linear_projections(a, d, directions)
        for a, d in _collect_chunks(model, layer_name, x, y, loss_fn, reduction, batch_size)
    ]
    return torch.cat(outs)


def per_sample_grad_norms(
    model, layer_name, x, y, loss_fn=None, *, reduction=None, batch_size=None
) -> torch.Tensor:
    """||g_s|| for every sample, (S,)."""
    outs = [
        linear_grad_norms(a, d)
        for a, d in _collect_chunks(model, layer_name, x, y, loss_fn, reduction, batch_size)
    ]
    return torch.cat(outs)


def per_sample_grads(
    model, layer_name, x, y, loss_fn=None, *, reduction=None, batch_size=None
) -> torch.Tensor:
    """Explicit per-sample weight gradients, (S, *weight.shape)."""
    shape = find_layer(model, layer_name).weight.shape
    outs = [
        linear_per_sample_grads(a, d).reshape(a.shape[0], *shape)
        for a, d in _collect_chunks(model, layer_name, x, y, loss_fn, reduction, batch_size)
    ]
    return torch.cat(outs)
