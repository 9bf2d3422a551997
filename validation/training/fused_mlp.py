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
    h = [xb.reshape(R, B, -1)]
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        wt = w.transpose(1, 2)
        z = torch.bmm(h[-1], wt) if b is None else torch.baddbmm(b.unsqueeze(1), h[-1], wt)
        h.append(z if i == last else z.relu_())
    logits = h.pop()
    logp = F.log_softmax(logits, dim=-1)
    picked = logp.gather(2, yb.unsqueeze(2))
    if loss_out is not None:
        loss_out.copy_(picked.view(R, B).mean(dim=1).neg_())
    # D_L = -alpha_r / B (softmax - onehot): exp(log p) - 1 at the label, times the scale
    d = logp.exp_().scatter_add_(2, yb.unsqueeze(2), _minus_one(d_like=logp, R=R, B=B))
    d.mul_(scale.view(R, 1, 1))
    for i in range(last, -1, -1):
        w, b, h_in = weights[i], biases[i], h[i]
        d_in = None
        if i > 0:  # error of the layer below, with the weights before this step's update
            d_in = torch.ops.aten.threshold_backward(torch.bmm(d, w), h_in, 0)
        if rows is None:
            w.baddbmm_(d.transpose(1, 2), h_in)
            if b is not None:
                b.add_(d.sum(dim=1))
        else:
            for r in rows:
                w[r].addmm_(d[r].t(), h_in[r])
                if b is not None:
                    b[r].add_(d[r].sum(dim=0))
        d = d_in


def _minus_one(d_like: torch.Tensor, R: int, B: int) -> torch.Tensor:
    return torch.full((1, 1, 1), -1.0, dtype=d_like.dtype, device=d_like.device).expand(R, B, 1)
