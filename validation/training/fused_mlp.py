"""One fused SGD step of R stacked ReLU MLPs with the cross-entropy loss (issue 11, item 1).

The general replica step (:class:`~sgdyn.validation.training.replicas.Replicas`) runs a
``vmap``-ed forward and autograd backward, materialises the (R, out, in) gradient of every
layer and then updates the weights in a second pass. For sgdyn's :class:`MLP` (linear layers,
ReLU between them, softmax cross-entropy) the backward pass is written out by hand:

* forward: one batched matmul per layer, z_l = h_{l-1} W_l^T (+ b_l), h_l = relu(z_l);
* output error of the mean cross-entropy, dL^mu/dz_L = (softmax(z_L) - onehot(y)) / B, scaled
  at once by -alpha_r (0 for a replica that does not train): every later quantity is linear
  in it, so D_l = -alpha_r dL^mu/dz_l and the SGD step of Eq 2 is W_l <- W_l + D_l^T h_{l-1};
* backward: D_{l-1} = (D_l W_l) * [h_{l-1} > 0] with the weights before their update, then the
  update itself as one in-place ``baddbmm_`` (the weight-gradient GEMM accumulates into W_l:
  the (R, out, in) gradient is never formed and the weights are read and written once);
  no input gradient for the first layer.

The numbers equal R separate runs up to float rounding (``tests/test_replicas.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


def mlp_step(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor | None],
    xb: torch.Tensor,
    yb: torch.Tensor,
    scale: torch.Tensor,
    loss_out: torch.Tensor | None = None,
    rows: Sequence[int] | None = None,
) -> None:
    """One SGD step of R MLPs, in place.

    ``weights[l]``: (R, out, in) stacked weights of layer l, ``biases[l]``: (R, out) or None;
    ``xb`` (R, B, ...) and ``yb`` (R, B): the replicas' minibatches; ``scale`` (R,): -alpha_r / B
    (the factor of softmax - onehot in the update). ``rows``: update only these replicas (the
    others are left bit for bit, even non-finite ones); None: all. ``loss_out`` (R,) receives the
    minibatch losses (on the device, no host synchronisation).
    """
    R, B = yb.shape
    # activations kept transposed, (R, width, B): the softmax then runs over a strided dim
    # (~15x faster on the CPU than over a last dim of size C = 10) and the ReLU masks of the
    # backward pass have the layout of the errors
    x = xb.reshape(R, B, -1)
    h = [x.mT]
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = torch.bmm(w, h[-1]) if b is None else torch.baddbmm(b.unsqueeze(2), w, h[-1])
        h.append(z if i == last else z.relu_())
    logp = F.log_softmax(h.pop(), dim=1)  # (R, C, B)
    label = yb.unsqueeze(1)
    if loss_out is not None:
        loss_out.copy_(logp.gather(1, label).view(R, B).mean(dim=1).neg_())
    # D_L = -alpha_r / B (softmax - onehot): exp(log p) - 1 at the label, times the scale
    d = logp.exp_().scatter_add_(1, label, _minus_one(logp, R, B))
    d.mul_(scale.view(R, 1, 1))
    for i in range(last, -1, -1):  # d: (R, out, B), the transposed error of layer i
        w, b, h_in = weights[i], biases[i], h[i]
        d_in = None
        if i > 0:  # error of the layer below, with the weights before this step's update
            d_in = torch.ops.aten.threshold_backward(torch.bmm(w.mT, d), h_in, 0)
        if rows is None:
            w.baddbmm_(d, h_in.mT)
            if b is not None:
                b.add_(d.sum(dim=2))
        else:
            for r in rows:
                w[r].addmm_(d[r], h_in[r].T)
                if b is not None:
                    b[r].add_(d[r].sum(dim=1))
        d = d_in


def _minus_one(like: torch.Tensor, R: int, B: int) -> torch.Tensor:
    return torch.full((1, 1, 1), -1.0, dtype=like.dtype, device=like.device).expand(R, 1, B)
