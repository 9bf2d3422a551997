"""R replicas of one architecture trained at once in one process (issue 11, item 1).

The replicas differ in seed (initialisation and data order) and learning rate alpha but share
the minibatch size B and the architecture. Their parameters are stacked along a leading
replica axis (:func:`torch.func.stack_module_state`) and one step of plain SGD (Eq 2,
w <- w - alpha_r grad L^mu(w)) is ``vmap`` over :func:`torch.func.functional_call`: one
batched matmul per layer instead of R small ones. Each replica draws its own minibatches
without replacement from its own generator (keyed by its seed), exactly as
:func:`~sgdyn.validation.training.loop.train_epoch` does for one run, so the numbers equal R
separate runs with the same seeds (``tests/test_replicas.py``).

For sgdyn's :class:`~sgdyn.validation.models.architectures.MLP` with the default cross-entropy
loss the step is fused by hand instead (:func:`~sgdyn.validation.training.fused_mlp.mlp_step`:
batched matmuls, the backward written out, the weight-gradient GEMM accumulating into the
weights in place); ``fused=False`` forces the general path.

:class:`ReplicaRecorder` keeps the trajectories of the probed parameter of every replica in
one (R, steps, N) buffer on the device; :meth:`ReplicaRecorder.pca` fits the R PCAs batched
(:meth:`sgdyn.kernels.StreamingPCA.fit_batched`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.nn import functional as F

from sgdyn.kernels import StreamingPCA
from sgdyn.validation.models.architectures import MLP
from sgdyn.validation.training.fused_mlp import mlp_step


class Replicas:
    """R models of one architecture, trained together with plain SGD.

    ``models``: R modules of the same architecture (their current weights are the starting
    points); ``lrs``: one learning rate per replica; ``batch_size``: B, one int or one per
    replica (they must all be equal: replicas with different B take different numbers of
    steps per epoch and are refused); ``seeds``: one per replica, keying its data order
    (``torch.Generator().manual_seed(seed)``, the generator of a single run). ``compile``:
    forward and gradient of all replicas as one :func:`torch.compile` graph (a one-off
    compilation of seconds; then ~1.3x faster steps on the CPU; a string names the
    backend). ``fused``: the hand-fused step of :mod:`.fused_mlp` (None: chosen when the
    models are sgdyn's ``MLP`` with the default loss and no ``compile``; True: required).
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        lrs: Sequence[float],
        batch_size: int | Sequence[int],
        seeds: Sequence[int],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        compile: bool | str = False,
        fused: bool | None = None,
    ):
        models = list(models)
        R = len(models)
        if R < 1:
            raise ValueError("Replicas needs at least one model")
        bs = [batch_size] * R if isinstance(batch_size, int) else [int(b) for b in batch_size]
        if len(bs) != R or len(lrs) != R or len(seeds) != R:
            raise ValueError(
                f"give one learning rate, batch size and seed per replica ({R} models; got "
                f"{len(lrs)} lrs, {len(bs)} batch sizes, {len(seeds)} seeds)"
            )
        if len(set(bs)) != 1:
            raise ValueError(
                f"replicas must share the minibatch size B, got {sorted(set(bs))}: group the "
                "runs by B (one Replicas per B) or train them separately"
            )
        shapes = [[(n, tuple(p.shape)) for n, p in m.named_parameters()] for m in models]
        if any(
            s != shapes[0] or type(m) is not type(models[0])
            for m, s in zip(models, shapes, strict=True)
        ):
            raise ValueError("replicas must share one architecture (same module type and shapes)")
        if not all(float(a) > 0 for a in lrs):
            raise ValueError(f"learning rates must be positive, got {list(lrs)}")
        self.R, self.batch_size = R, bs[0]
        self.seeds = [int(s) for s in seeds]
        self.params, self.buffers = stack_module_state(models)
        self.params = {k: v.detach() for k, v in self.params.items()}
        self.device = next(iter(self.params.values())).device
        dtype = next(iter(self.params.values())).dtype
        self.lrs = torch.tensor([float(a) for a in lrs], device=self.device, dtype=dtype)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.base = copy.deepcopy(models[0]).to("meta")
        self.loss_fn = loss_fn
        fusable = type(models[0]) is MLP and loss_fn is None and not compile
        if fused and not fusable:
            raise ValueError(
                "fused=True needs sgdyn's MLP with the default cross-entropy loss and "
                "compile=False; pass fused=None (auto) or False for this model/loss"
            )
        self.fused = fusable if fused is None else bool(fused)
        if self.fused:
            n_layers = len(models[0].layers)
            self._weights = [self.params[f"layers.{i}.weight"] for i in range(n_layers)]
            self._biases = [self.params.get(f"layers.{i}.bias") for i in range(n_layers)]
            self._scale = -self.lrs / self.batch_size  # D_L = -alpha_r / B (softmax - onehot)

        def loss_one(p, b, xb, yb):
            return self.loss_fn(functional_call(self.base, (p, b), (xb,)), yb)

        def ce_all(p, b, xb, yb):  # cross-entropy of all replicas in one call (no vmap rule)
            logits = vmap(logits_one, in_dims=(0, 0, 0))(p, b, xb)
            R, Bn = yb.shape
            ce = F.cross_entropy(logits.reshape(R * Bn, -1), yb.reshape(-1), reduction="none")
            return ce.view(R, Bn).mean(dim=1)

        def logits_one(p, b, x):
            return functional_call(self.base, (p, b), (x,))

        # the forward pass is vmapped, the backward is plain autograd on the stacked
        # parameters (the replicas' losses are independent, so the gradient of their sum is
        # each replica's own gradient): 1.4x faster on the CPU than vmap(grad(...))
        self._losses = ce_all if loss_fn is None else vmap(loss_one)
        self._logits = vmap(logits_one, in_dims=(0, 0, None))
        self._compiled = None
        if compile:  # forward + gradient as one torch.compile graph (update stays eager)

            def grads_and_losses(p, b, xb, yb, lrs):
                def total(q):
                    losses = self._losses(q, b, xb, yb)
                    return (losses * lrs).sum(), losses

                g, (_, losses) = grad_and_value(total, has_aux=True)(p)
                return g, losses

            backend = compile if isinstance(compile, str) else "inductor"
            self._compiled = torch.compile(grads_and_losses, dynamic=False, backend=backend)

    # -- training ---------------------------------------------------------------------------
    def epoch_perms(self, n: int, active: Sequence[bool] | None = None) -> torch.Tensor:
        """(R, n) data orders of the next epoch; an inactive replica's generator does not
        advance (its row is the identity, unused)."""
        rows = []
        for r, g in enumerate(self.generators):
            on = True if active is None else bool(active[r])
            rows.append(torch.randperm(n, generator=g) if on else torch.arange(n))
        return torch.stack(rows).to(self.device)

    @torch.no_grad()
    def train_epoch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        active: Sequence[bool] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """One epoch of minibatch SGD for every replica (the last partial batch dropped, as
        :func:`~sgdyn.validation.training.loop.train_epoch`). ``active`` (R bools): replicas
        that train; the others keep their weights and data order. Returns the (R, steps)
        minibatch losses on the device (no host synchronisation per step)."""
        n, B = x.shape[0], self.batch_size
        if not 1 <= B <= n:
            raise ValueError(f"batch size {B} must be between 1 and the number of samples {n}")
        perms = self.epoch_perms(n, active)
        mask = rows = None
        if active is not None and not all(active):
            mask = torch.tensor([bool(a) for a in active], device=self.device)
            rows = [r for r in range(self.R) if active[r]]
        steps = n // B
        losses = torch.empty(self.R, steps, device=self.device, dtype=self.lrs.dtype)
        # one minibatch buffer for the epoch (a fresh 2.5 MB tensor per step costs page faults)
        xbuf = torch.empty(self.R * B, *x.shape[1:], device=x.device, dtype=x.dtype)
        ybuf = torch.empty(self.R * B, device=y.device, dtype=y.dtype)
        for s in range(steps):
            idx = perms[:, s * B : (s + 1) * B].reshape(-1)
            xb = torch.index_select(x, 0, idx, out=xbuf).view(self.R, B, *x.shape[1:])
            yb = torch.index_select(y, 0, idx, out=ybuf).view(self.R, B)
            if self.fused:
                mlp_step(self._weights, self._biases, xb, yb, self._scale, losses[:, s], rows)
            else:
                self.step(xb, yb, mask, losses[:, s])
            if on_step is not None:
                on_step(s)
        return losses

    @torch.no_grad()
    def step(self, xb: torch.Tensor, yb: torch.Tensor, mask=None, loss_out=None) -> None:
        """One SGD step of every replica on its own minibatch ``xb`` (R, B, ...); ``mask``
        (R,) bools: the replicas that move (default all); ``loss_out`` (R,) receives the
        minibatch losses."""
        if self.fused:
            rows = None
            if mask is not None and not bool(mask.all()):
                rows = torch.nonzero(mask).flatten().tolist()
            mlp_step(self._weights, self._biases, xb, yb, self._scale, loss_out, rows)
            return
        # the gradient of sum_r alpha_r L_r is alpha_r grad L_r: the step (Eq 2) is then one
        # fused foreach subtraction of the gradients (no per-replica multiply over the weights)
        names = list(self.params)
        if self._compiled is not None:
            g, loss = self._compiled(self.params, self.buffers, xb, yb, self.lrs)
            grads = [g[k] for k in names]
        else:
            with torch.enable_grad():
                leaves = {k: self.params[k].requires_grad_(True) for k in names}
                loss = self._losses(leaves, self.buffers, xb, yb)
                grads = torch.autograd.grad((loss * self.lrs).sum(), [leaves[k] for k in names])
        ps = [self.params[k].requires_grad_(False) for k in names]
        if mask is None:
            torch._foreach_sub_(ps, list(grads))
        else:
            for p, g in zip(ps, grads, strict=True):
                p.copy_(torch.where(mask.view(-1, *([1] * (p.ndim - 1))), p - g, p))
        if loss_out is not None:
            loss_out.copy_(loss.detach())

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def full_loss(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 10000) -> torch.Tensor:
        """Mean loss over the whole set for every replica (Eq 1), (R,) on the device."""
        total = torch.zeros(self.R, device=self.device, dtype=torch.float64)
        for s in range(0, x.shape[0], chunk):
            logits = self._logits(self.params, self.buffers, x[s : s + chunk])
            yy = y[s : s + chunk]
            for r in range(self.R):
                total[r] += F.cross_entropy(logits[r], yy, reduction="sum").double()
        return total / x.shape[0]

    def snapshot(self, names: str | Sequence[str]) -> torch.Tensor:
        """(R, N) flat values of the parameters ``names`` of every replica."""
        names = [names] if isinstance(names, str) else list(names)
        return torch.cat([self.params[n].reshape(self.R, -1) for n in names], dim=1)

    def model(self, r: int, template: nn.Module) -> nn.Module:
        """Replica ``r`` as a stand-alone module (a copy of ``template`` with its weights)."""
        m = copy.deepcopy(template)
        state = {k: v[r].clone() for k, v in {**self.params, **self.buffers}.items()}
        m.load_state_dict(state)
        return m


class ReplicaRecorder:
    """Trajectories of R replicas in one (R, n_steps, N) buffer on the device.

    :meth:`record` writes the snapshot of the replicas ``rows`` at their own positions (a
    replica may start its window later than another); :meth:`pca` fits the R windows batched.
    """

    def __init__(self, R: int, n_steps: int, n_features: int, device=None, dtype=torch.float32):
        if n_steps < 2:
            raise ValueError(f"a PCA window needs at least 2 steps, got {n_steps}")
        self.data = torch.empty(R, n_steps, n_features, device=device, dtype=dtype)
        self.n_recorded = [0] * R
        self.n_steps = n_steps

    @torch.no_grad()
    def record(self, snap: torch.Tensor, rows: Sequence[int] | None = None) -> None:
        """Append ``snap[r]`` to the window of every replica r in ``rows`` (default all)."""
        rows = list(range(len(self.n_recorded))) if rows is None else list(rows)
        if not rows:
            return
        if any(self.n_recorded[r] >= self.n_steps for r in rows):
            raise RuntimeError("a replica's window is already full")
        if len(rows) == len(self.n_recorded) and len(set(self.n_recorded)) == 1:
            self.data[:, self.n_recorded[0]].copy_(snap)  # every replica at one position
        elif len(set(self.n_recorded[r] for r in rows)) == 1:
            self.data[rows, self.n_recorded[rows[0]]] = snap[rows].to(self.data.dtype)
        else:
            pos = torch.tensor([self.n_recorded[r] for r in rows], device=self.data.device)
            self.data[torch.tensor(rows, device=self.data.device), pos] = snap[rows].to(
                self.data.dtype
            )
        for r in rows:
            self.n_recorded[r] += 1

    def trajectory(self, r: int) -> torch.Tensor:
        return self.data[r, : self.n_recorded[r]]

    def pca(self, rows: Sequence[int] | None = None) -> list[StreamingPCA]:
        """Exact PCA of the windows of ``rows`` (default all; full windows only), batched."""
        rows = list(range(len(self.n_recorded))) if rows is None else list(rows)
        if any(self.n_recorded[r] != self.n_steps for r in rows):
            raise ValueError("pca() needs full windows for every replica asked for")
        # in groups of 4 windows: the float64 centred copies of 16 windows of 100 x 2500 are
        # 64 MB, out of cache (batched PCA of 16 such windows 158 ms at once, 115 ms by 4s)
        out = []
        for i in range(0, len(rows), 4):
            out += StreamingPCA.fit_batched(self.data[rows[i : i + 4]])
        return out
