"""Per-sample gradient projections, norms and gradients of one linear or conv2d layer.

For a linear layer z = W a, sample s's gradient of its own loss is the outer product
g_s = delta_s a_s^T (delta_s = dl_s/dz_s), so its projection on a direction P_k (same shape
as W) is

    g_s . P_k = delta_s^T P_k a_s = sum_ij delta_si P_kij a_sj,

and no per-sample gradient ever needs to exist in memory. With *positions* (a conv2d layer
after im2col, or a linear layer applied to a sequence) the gradient sums over positions,
g_s = sum_p delta_sp a_sp^T.

Layouts (all functions):

- ``a``: (S, d_in) or, with positions, (S, L, d_in);
- ``delta``: (S, d_out) or (S, L, d_out);
- ``P``: (K, d_out, d_in) or flat (K, d_out * d_in) (row-major flattening of the weight, i.e.
  ``weight.reshape(-1)``; a conv weight (C_out, C_in, kh, kw) flattens to d_out = C_out,
  d_in = C_in kh kw, matching :func:`conv2d_unfold_input`).

Dispatch (:mod:`sgdyn.kernels.dispatch`): 2-D inputs go to the fused Triton kernel
(:mod:`sgdyn.kernels.per_sample_triton`) on CUDA and to the plain-torch twin elsewhere. Inputs
with positions use the twin on every device (per-sample gradients in bounded chunks with one
batched GEMM, then one GEMM against the directions: fewer FLOPs than any position-wise fused
form, and cuBLAS already runs both at peak).

Dtypes: float32 and float64 (mixed inputs are promoted); float16/bfloat16 are computed in
float32; integer inputs are rejected.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .dispatch import backend_for

# Per-sample gradients are built in chunks of at most this many elements (~64 MB in float32).
_CHUNK_ELEMS = 1 << 24


def _as_float(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    return t


def _check_io(a: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = _as_float(a, "a")
    delta = _as_float(delta, "delta")
    if a.ndim not in (2, 3) or delta.ndim != a.ndim:
        raise ValueError(
            "a and delta must both be (S, d) or both (S, L, d) tensors, got shapes "
            f"{tuple(a.shape)} and {tuple(delta.shape)}"
        )
    if a.shape[0] != delta.shape[0]:
        raise ValueError(
            f"a has {a.shape[0]} samples but delta has {delta.shape[0]}: pass the same batch"
        )
    if a.ndim == 3 and a.shape[1] != delta.shape[1]:
        raise ValueError(
            f"a has {a.shape[1]} positions but delta has {delta.shape[1]} (layout is (S, L, d))"
        )
    if a.device != delta.device:
        raise ValueError(f"a is on {a.device} but delta on {delta.device}")
    dtype = torch.promote_types(a.dtype, delta.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return a.to(dtype), delta.to(dtype)


def flat_directions(P: torch.Tensor, d_out: int, d_in: int) -> torch.Tensor:
    """Directions as a (K, d_out * d_in) matrix; accepts (K, d_out, d_in), (K, D) or (K, *w)."""
    P = _as_float(P, "P")
    D = d_out * d_in
    if P.ndim >= 2 and P.shape[1:].numel() == D and (P.ndim == 2 or P.shape[1] == d_out):
        return P.reshape(P.shape[0], D)
    raise ValueError(
        f"directions must be (K, {d_out}, {d_in}) or (K, {D}) for this layer, got "
        f"{tuple(P.shape)}; for a single direction use P[None]"
    )


def _chunk_rows(S: int, per_row: int) -> int:
    return max(1, min(S, _CHUNK_ELEMS // max(per_row, 1)))


# -- projections ---------------------------------------------------------------------------
def linear_projections(a: torch.Tensor, delta: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """All per-sample gradient projections g_s . P_k, shape (S, K) (dispatching).

    The building block of the MLF-ensemble statistics: a minibatch gradient's projection is
    the mean of its samples' projections.
    """
    a, delta = _check_io(a, delta)
    Pf = flat_directions(P, delta.shape[-1], a.shape[-1]).to(device=a.device, dtype=a.dtype)
    if a.ndim == 2 and backend_for(a) == "triton":
        from .per_sample_triton import linear_projections_triton

        return linear_projections_triton(a, delta, Pf)
    return linear_projections_torch(a, delta, Pf)


def linear_projections_torch(a: torch.Tensor, delta: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Plain-torch twin. Many directions: per-sample gradients in bounded chunks, then one
    GEMM with P^T. Few directions (2 K min(d_in, d_out) <= d_out d_in, no positions):
    (delta @ P_k) . a through one GEMM and one batched dot, no per-sample gradients."""
    a, delta = _check_io(a, delta)
    S, d_in, d_out = a.shape[0], a.shape[-1], delta.shape[-1]
    Pt = flat_directions(P, d_out, d_in).to(device=a.device, dtype=a.dtype).T
    K = Pt.shape[1]
    out = torch.empty(S, K, device=a.device, dtype=a.dtype)
    d_min = min(d_in, d_out)
    if a.ndim == 2 and 2 * K * d_min <= d_out * d_in:
        # few directions: contract one side first, (S, K, min(d_in, d_out)) intermediate,
        # cheaper in memory traffic than the (S, d_out d_in) per-sample gradients
        P3 = Pt.T.reshape(K, d_out, d_in)
        if d_in <= d_out:
            left, right, Pm = delta, a, P3.permute(1, 0, 2).reshape(d_out, K * d_in)
        else:
            left, right, Pm = a, delta, P3.permute(2, 0, 1).reshape(d_in, K * d_out)
        step = _chunk_rows(S, K * d_min)
        for s in range(0, S, step):
            t = (left[s : s + step] @ Pm).view(-1, K, d_min)
            out[s : s + step] = torch.bmm(t, right[s : s + step, :, None])[:, :, 0]
        return out
    step = _chunk_rows(S, d_out * d_in)
    for s in range(0, S, step):
        g = _grads_chunk(a[s : s + step], delta[s : s + step])
        torch.mm(g.reshape(g.shape[0], -1), Pt, out=out[s : s + step])
    return out


def _grads_chunk(a: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    if a.ndim == 2:
        return delta[:, :, None] * a[:, None, :]
    return torch.bmm(delta.transpose(1, 2), a)  # (S, d_out, L) @ (S, L, d_in)


# -- norms and explicit gradients ---------------------------------------------------------
def linear_grad_norms(a: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient norms ||g_s||_F, shape (S,).

    Without positions ||delta_s a_s^T|| = ||a_s|| ||delta_s||. With positions the cheaper of
    the explicit chunked gradients and the Gram identity
    ||g_s||^2 = sum_pq (delta_sp . delta_sq)(a_sp . a_sq) is used.
    """
    a, delta = _check_io(a, delta)
    if a.ndim == 2:
        return torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(delta, dim=1)
    S, L, d_in, d_out = a.shape[0], a.shape[1], a.shape[2], delta.shape[2]
    out = torch.empty(S, device=a.device, dtype=a.dtype)
    if L * L * (d_in + d_out) < L * d_in * d_out:
        step = _chunk_rows(S, L * L)
        for s in range(0, S, step):
            aa = torch.bmm(a[s : s + step], a[s : s + step].transpose(1, 2))
            dd = torch.bmm(delta[s : s + step], delta[s : s + step].transpose(1, 2))
            out[s : s + step] = (aa * dd).sum(dim=(1, 2)).clamp_min(0).sqrt()
        return out
    step = _chunk_rows(S, d_out * d_in)
    for s in range(0, S, step):
        g = _grads_chunk(a[s : s + step], delta[s : s + step])
        out[s : s + step] = torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1)
    return out


def linear_per_sample_grads(a: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Explicit per-sample gradients (S, d_out, d_in): S times the weight's memory."""
    a, delta = _check_io(a, delta)
    return _grads_chunk(a, delta)


# -- conv2d ----------------------------------------------------------------------------------
def _check_conv(layer: nn.Conv2d) -> None:
    if not isinstance(layer, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d, got {type(layer).__name__}")
    if layer.groups != 1:
        raise ValueError(f"grouped convolutions (groups={layer.groups}) are not supported")
    if layer.padding_mode != "zeros":
        raise ValueError(f"padding_mode={layer.padding_mode!r} is not supported (only 'zeros')")
    if isinstance(layer.padding, str):
        raise ValueError(
            f"padding={layer.padding!r} is not supported; give explicit integer padding"
        )


def conv2d_unfold_input(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """im2col of the layer input: (S, C_in, H, W) -> (S, L, C_in kh kw), L output positions."""
    _check_conv(layer)
    cols = F.unfold(
        x,
        layer.kernel_size,
        dilation=layer.dilation,
        padding=layer.padding,
        stride=layer.stride,
    )
    return cols.transpose(1, 2)


def conv2d_flatten_grad(grad_output: torch.Tensor) -> torch.Tensor:
    """Output gradient (S, C_out, H_out, W_out) -> (S, L, C_out)."""
    if grad_output.ndim != 4:
        raise ValueError(
            f"conv2d output gradient must be (S, C_out, H, W), got {tuple(grad_output.shape)}"
        )
    return grad_output.flatten(2).transpose(1, 2)


def conv2d_projections(
    layer: nn.Conv2d, inputs: torch.Tensor, grad_outputs: torch.Tensor, P: torch.Tensor
) -> torch.Tensor:
    """Per-sample projections (S, K) of a conv2d weight gradient; P is (K, *weight.shape) or
    (K, weight.numel()). ``inputs`` is the layer input, ``grad_outputs`` dl_s/d(output)."""
    a = conv2d_unfold_input(layer, inputs)
    return linear_projections(a, conv2d_flatten_grad(grad_outputs), P)


def conv2d_per_sample_grads(
    layer: nn.Conv2d, inputs: torch.Tensor, grad_outputs: torch.Tensor
) -> torch.Tensor:
    """Explicit per-sample conv weight gradients, (S, *layer.weight.shape)."""
    a = conv2d_unfold_input(layer, inputs)
    g = linear_per_sample_grads(a, conv2d_flatten_grad(grad_outputs))
    return g.reshape(g.shape[0], *layer.weight.shape)
