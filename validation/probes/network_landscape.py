"""A real network restricted to one probed parameter, as a :class:`sgdyn.landscape.Landscape`.

Only the probed layer moves (the paper perturbs the 50x50 weights between the hidden
layers), so everything before it is computed once: the activations ``h`` entering the
probed module are cached for the whole training set, and a loss at a probe value ``w`` only
re-runs the module and the network's *tail* (what comes after it).

The tail is cut out of the model automatically with :mod:`torch.fx`: the model is traced,
the probed module's call is found, and the nodes after it become a small module
``tail(z) -> logits``, provided they depend on nothing computed before the probe except its
output (a "sequential continuation": the MLP at any depth and layer, the LeNets, any
``nn.Sequential``). Models where that fails (residual connections around the probe,
untraceable control flow) fall back to perturbing the model and running it whole, which is
also kept as :meth:`NetworkLandscape.losses_along_reference`, the reference the tests
compare the fast path against.

Batched profiles (Eq 6). For a linear or conv2d probe the module output is linear in the
weight, ``z(w0 + a p_k) = z0 + a D_k`` with ``D_k = module(h; weight=p_k, no bias)``. The
evaluator caches ``z0`` and, while they fit in ``cache_bytes``, all ``D_k``; a call then
evaluates many (direction, amplitude) pairs in one pass: ``z = z0 + a D_k`` stacked over
pairs, the tail run once on the (pairs x samples) batch, the loss reduced per pair.

Any loss (``loss_fn``: cross-entropy by default, MSE, ...; :mod:`.losses`), any input shape
(tensors in the model's own shape, a ``Dataset`` or ``DataLoader``). Every evaluation runs
with the model in eval mode (dropout off, batch-norm running statistics: the landscape is
a deterministic function of the weights) and restores each module's ``training`` flag.
Which evaluator runs is the public attribute ``evaluator`` (with ``evaluator_reason``).
"""

from __future__ import annotations

import contextlib
import functools
import logging

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sgdyn.kernels.memory import available_bytes, check_fits, own_storage
from sgdyn.theory.flatness import EWidthResult, flatness_e_width
from sgdyn.validation.data.tensors import as_tensors

from .losses import per_sample_loss, stable_cross_entropy

log = logging.getLogger(__name__)
_LOGGED_EVALUATORS: set[tuple[str, str]] = set()  # (probe, evaluator) already logged at INFO


def _as_amplitudes(amplitudes, K: int) -> torch.Tensor:
    """Amplitudes as float64 (K, A); an (A,) row is shared by all K directions."""
    a = torch.as_tensor(amplitudes, dtype=torch.float64)
    if a.ndim == 1:
        a = a[None].expand(K, -1)
    if a.ndim != 2 or a.shape[0] != K:
        raise ValueError(f"amplitudes must be (K, A) with K={K}, got {tuple(a.shape)}")
    return a


__all__ = [
    "NetworkLandscape",
    "ProfileEvaluator",
    "batched_tail",
    "eval_mode",
    "extract_tail",
]

# Elements per batched tail evaluation (pairs x samples x activation width), ~4 MB float32:
# small enough to stay in cache (the tail is memory-bound), large enough to amortise calls.
_TAIL_ELEMS = 1 << 20


def _ce_sum_rows(logits: torch.Tensor, y: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """Per-pair sums of cross-entropy for logits (pairs * samples, C), float64 (n_pairs,).

    One logsumexp over all pairs at once, in the form of
    :func:`~sgdyn.validation.probes.losses.stable_cross_entropy` (no underflow to 0 for
    well-classified samples).
    """
    return stable_cross_entropy(logits, y).view(n_pairs, -1).sum(1, dtype=torch.float64)


def _linear_t(x: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """``F.linear`` as ``(W @ x^T)^T`` for 2-d ``x``: the same numbers, returned as a
    transposed view. On CPU it is 2-4x faster for the few-output layers of a network's tail
    (e.g. 50 -> 10) and does not slow down on the transposed inputs it produces itself."""
    if x.ndim != 2:
        return F.linear(x, weight, bias)
    if bias is None:
        return (weight @ x.T).T
    return torch.addmm(bias[:, None], weight, x.T).T


class _LinearT(nn.Module):
    """A view of an ``nn.Linear`` (same parameters, not copied) evaluated by :func:`_linear_t`."""

    def __init__(self, lin: nn.Linear):
        super().__init__()
        self.lin = lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear_t(x, self.lin.weight, self.lin.bias)


def batched_tail(tail: nn.Module) -> nn.Module:
    """``tail`` with its ``nn.Linear`` calls (and ``F.linear`` calls) replaced by
    :func:`_linear_t`; parameters are shared. For inference on (pairs x samples) batches."""
    import torch.fx as fx

    if not isinstance(tail, fx.GraphModule):
        return tail
    graph = fx.Graph()
    graph.output(graph.graph_copy(tail.graph, {}))
    root: dict = {}
    for node in graph.nodes:
        if node.op == "call_module":
            mod = tail.get_submodule(node.target)
            root[node.target] = _LinearT(mod) if type(mod) is nn.Linear else mod
        elif node.op == "get_attr":
            root[node.target] = _getattr_path(tail, node.target)
        elif node.op == "call_function" and node.target is F.linear:
            node.target = _linear_t
    # no .eval() here: the submodules are the model's own (shared); NetworkLandscape runs the
    # tail inside eval_mode(model), which restores every flag afterwards
    return fx.GraphModule(root, graph)


def _getattr_path(mod: nn.Module, target: str):
    obj = mod
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def extract_tail(model: nn.Module, module_name: str) -> nn.Module | None:
    """The part of ``model`` after the submodule ``module_name`` as ``tail(z) -> output``.

    Returns None when the model cannot be traced, the module is called more than once, or
    a later node uses a value computed before the probe other than the probe's output
    (e.g. a skip connection around it).
    """
    import torch.fx as fx

    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # untraceable control flow
        log.info("torch.fx could not trace %s (%s): using whole-model passes", type(model), e)
        return None
    nodes = list(gm.graph.nodes)
    calls = [n for n in nodes if n.op == "call_module" and n.target == module_name]
    if len(calls) != 1:
        return None
    pn = calls[0]
    idx = nodes.index(pn)
    before = set(nodes[:idx])
    new = fx.Graph()
    env = {pn: new.placeholder("z")}
    for n in nodes[idx + 1 :]:
        for a in n.all_input_nodes:
            if a in before:
                if a.op != "get_attr":
                    return None
                if a not in env:
                    env[a] = new.node_copy(a)
        env[n] = new.node_copy(n, lambda a: env[a])
    tail = fx.GraphModule(gm, new)
    return tail


def _module_forward(module: nn.Module, h: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return F.linear(h, weight, bias)
    if isinstance(module, nn.Conv2d):
        return module._conv_forward(h, weight, bias)
    raise TypeError(type(module).__name__)


def _elem_size(t: torch.Tensor, float_dtype: torch.dtype) -> int:
    if t.is_floating_point():
        return torch.empty((), dtype=float_dtype).element_size()
    return t.element_size()


class _EvalModeModule(nn.Module):
    """Runs ``inner`` with every module of ``owner`` in eval mode and restores each
    module's ``training`` flag afterwards (the tail is evaluated through this)."""

    def __init__(self, inner: nn.Module, owner: nn.Module):
        super().__init__()
        self.inner = inner
        object.__setattr__(self, "_owner", owner)  # not a submodule: no double registration

    def forward(self, *args, **kwargs):
        with eval_mode(self._owner):
            return self.inner(*args, **kwargs)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """Put ``modules`` (and all their submodules) in eval mode; restore every flag on exit.

    Dropout then passes activations through and batch-norm uses its running statistics, so
    a landscape is a deterministic function of the weights; the user's model leaves the
    context exactly in the modes it entered it (even if some submodules differed).
    """
    flags = [(m, m.training) for mod in modules for m in mod.modules()]
    try:
        for mod in modules:
            mod.train(False)
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _in_eval_mode(method):
    """Decorator: run a NetworkLandscape method with the model in eval mode (flags restored)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with eval_mode(self.model):
            return method(self, *args, **kwargs)

    return wrapper


class NetworkLandscape:
    """``Landscape`` of ``model``'s parameter ``probe_name`` on ``data`` (Eq 1, any loss).

    Parameters
    ----------
    model : the trained network; every parameter except the probe stays at its value. It is
        evaluated in eval mode (dropout off, batch-norm running statistics) inside every
        call, and each module's ``training`` flag is restored afterwards.
    probe_name : name of the parameter that moves (e.g. ``"layers.1.weight"``).
    data : the training set; losses are means over all of it. An
        :class:`~sgdyn.validation.data.ArrayDataset` (its flat ``x``), a pair ``(x, y)`` in
        the model's own input shape (e.g. ``(ds.images(), ds.y)`` for a conv net), a torch
        ``Dataset`` of ``(x, y)`` items or a ``DataLoader`` (read once into memory on the
        probe's device: :func:`sgdyn.validation.data.as_tensors`).
    loss_fn : the per-sample loss l(output, target) (default cross-entropy on logits, any
        number of classes); a torch loss module, a function taking ``reduction=`` or one
        returning per-sample values (:func:`sgdyn.validation.probes.losses.per_sample_loss`).
    batch_size, seed : define the minibatches ``mu`` of :meth:`minibatch_loss_and_grad`
        (one seeded epoch: a permutation cut into ``n // batch_size`` batches; None:
        ``min(50, n)``).
    cache_bytes : memory allowed for cached per-direction module outputs ``D_k``.
    fast : False forces the whole-model path everywhere (for checks and benchmarks).

    Attributes
    ----------
    evaluator : ``"cached-tail"`` (inputs of the probed module cached, only the tail re-run)
        or ``"whole-model"`` (perturb the probe and run the whole model), and
        ``evaluator_reason`` why (``mode`` is the same choice under its 0.1 name:
        ``"cached-tail"`` / ``"whole"``).
    loss_fn : the :class:`~sgdyn.validation.probes.losses.PerSampleLoss` in use.

    The cached tail is a snapshot: build the landscape after training (the activations
    entering the probe are computed once, at construction).
    """

    def __init__(
        self,
        model: nn.Module,
        probe_name: str,
        data,
        *,
        loss_fn=None,
        batch_size: int | None = None,
        seed: int = 0,
        cache_bytes: int = 256 << 20,
        fast: bool = True,
    ):
        params = dict(model.named_parameters())
        if probe_name not in params:
            raise KeyError(f"model has no parameter {probe_name!r}; available: {list(params)}")
        self.model = model
        self.probe_name = probe_name
        self.param = params[probe_name]
        self.shape = tuple(self.param.shape)
        self.n_params = self.param.numel()
        self.device = self.param.device
        self.dtype = self.param.dtype
        self.loss_fn = per_sample_loss(loss_fn)
        x, y = as_tensors(data, max_bytes=available_bytes("cpu"))
        need = x.numel() * _elem_size(x, self.dtype) + y.numel() * _elem_size(y, self.dtype)
        check_fits(need, self.device, "the probe's data", "probe a subset of the samples")
        self.x = x.to(self.device, self.dtype) if x.is_floating_point() else x.to(self.device)
        self.y = y.to(self.device, self.dtype) if y.is_floating_point() else y.to(self.device)
        self.n_samples = int(self.x.shape[0])
        if batch_size is None:
            batch_size = min(50, self.n_samples)
        if not 1 <= batch_size <= self.n_samples:
            raise ValueError(f"batch_size must be in 1..{self.n_samples}, got {batch_size}")
        self.batch_size = int(batch_size)
        self.n_minibatches = self.n_samples // self.batch_size
        g = torch.Generator().manual_seed(int(seed))
        self._perm = torch.randperm(self.n_samples, generator=g).to(self.device)
        self.cache_bytes = int(cache_bytes)
        mod_name, _, pname = probe_name.rpartition(".")
        self.module = model.get_submodule(mod_name) if mod_name else model
        self.linear_in_weight = pname == "weight" and isinstance(
            self.module, (nn.Linear, nn.Conv2d)
        )
        tail = extract_tail(model, mod_name) if (fast and mod_name) else None
        if not fast:
            reason = "fast=False"
        elif not self.linear_in_weight:
            reason = (
                f"the probe {probe_name} is not the weight of a Linear/Conv2d module "
                f"({type(self.module).__name__})"
            )
        elif tail is None:
            reason = (
                f"the part of {type(model).__name__} after {mod_name!r} could not be cut out "
                "with torch.fx (untraceable control flow, a skip connection around the probe, "
                "or the module is called more than once)"
            )
        else:
            reason = f"the tail after {mod_name!r} was cut out with torch.fx"
        self.mode = "cached-tail" if (tail is not None and self.linear_in_weight) else "whole"
        self.evaluator_reason = reason
        self.tail = _EvalModeModule(tail, model) if self.mode == "cached-tail" else None
        self._btail = (
            _EvalModeModule(batched_tail(tail), model) if self.mode == "cached-tail" else None
        )
        self._h = None
        self._check_loss()
        if self.mode == "cached-tail":
            self._h = self._capture_inputs()
        # once per (probe, evaluator) at INFO; studies build one landscape per checkpoint
        key = (probe_name, self.evaluator)
        level = logging.DEBUG if key in _LOGGED_EVALUATORS else logging.INFO
        _LOGGED_EVALUATORS.add(key)
        log.log(
            level, "NetworkLandscape(%s): %s evaluator (%s)", probe_name, self.evaluator, reason
        )

    @property
    def evaluator(self) -> str:
        """``"cached-tail"`` or ``"whole-model"``: which evaluator runs (see the class doc)."""
        return "cached-tail" if self.mode == "cached-tail" else "whole-model"

    def evaluation(self):
        """Context manager: the model in eval mode, every ``training`` flag restored on exit.
        Methods appended to this class that run the model should run inside it."""
        return eval_mode(self.model)

    # -- helpers ---------------------------------------------------------------------------
    @_in_eval_mode
    def _check_loss(self) -> None:
        """Run the model and the loss on a few samples: clear errors before any long work."""
        k = min(self.n_samples, 4)
        with torch.no_grad():
            try:
                out = self.model(self.x[:k])
            except Exception as e:
                raise ValueError(
                    f"the model cannot run on the data's inputs of shape "
                    f"{tuple(self.x.shape[1:])} ({type(e).__name__}: {e}); give the inputs in "
                    "the model's own shape, e.g. (dataset.images(), dataset.y) for a conv net"
                ) from e
            try:
                vals = self.loss_fn(out, self.y[:k])
            except ValueError:
                raise
            except Exception as e:
                raise ValueError(
                    f"loss_fn {self.loss_fn.name} fails on the model's output "
                    f"{tuple(out.shape)} and targets {tuple(self.y[:k].shape)} "
                    f"({type(e).__name__}: {e})"
                ) from e
        if not torch.isfinite(vals).all():
            raise ValueError(f"loss_fn {self.loss_fn.name} gives non-finite losses at the model")

    @_in_eval_mode
    @torch.no_grad()
    def _capture_inputs(self) -> torch.Tensor:
        """Run the model once over the data and keep what enters the probed module."""
        chunks = []
        hook = self.module.register_forward_pre_hook(lambda m, inp: chunks.append(inp[0]))
        try:
            for s in range(0, self.n_samples, 4096):
                self.model(self.x[s : s + 4096])
        finally:
            hook.remove()
        return torch.cat(chunks)

    def as_point(self, w, name: str = "w") -> torch.Tensor:
        """``w`` as a flat probe value on the probe's device/dtype (checks its size); a view
        into a larger tensor (e.g. one snapshot of a captured trajectory) is copied out:
        forward-mode AD (:meth:`hvp`) allocates every tangent with the size of the primal's
        whole storage (a (12000, 2500) window made each HVP chunk fill 360 MB of zeros)."""
        w = torch.as_tensor(w, device=self.device, dtype=self.dtype).reshape(-1)
        if w.numel() != self.n_params:
            raise ValueError(
                f"{name} has {w.numel()} entries but the probe {self.probe_name} has "
                f"{self.n_params}"
            )
        return own_storage(w)

    def as_directions(self, directions) -> torch.Tensor:
        """``directions`` as (K, n_params) on the probe's device/dtype (checks shape, finite)."""
        d = torch.as_tensor(directions, device=self.device, dtype=self.dtype)
        if d.ndim == 1:
            d = d[None]
        if d.ndim != 2 or d.shape[1] != self.n_params:
            raise ValueError(
                f"directions must be (K, {self.n_params}) for probe {self.probe_name} "
                f"{self.shape}, got {tuple(d.shape)}"
            )
        if not torch.isfinite(d).all():
            raise ValueError("directions contain NaN/Inf")
        return d

    _flat = as_point  # 0.1 names
    _dirs = as_directions

    def _out(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        bias = getattr(self.module, "bias", None)
        return _module_forward(self.module, h, w.reshape(self.shape), bias)

    def current(self) -> torch.Tensor:
        """The model's present probe value, flat (the natural w0: the last SGD snapshot)."""
        return self.param.detach().reshape(-1).clone()

    def _forward(self, w: torch.Tensor, idx) -> torch.Tensor:
        """Model output at probe value ``w`` on samples ``idx`` (slice or index tensor);
        differentiable in ``w``. Call inside :meth:`evaluation` for the whole-model path."""
        if self.mode == "cached-tail":
            return self.tail(self._out(self._h[idx], w))
        return torch.func.functional_call(
            self.model, {self.probe_name: w.reshape(self.shape)}, (self.x[idx],)
        )

    @_in_eval_mode
    def _sample_losses(self, w: torch.Tensor, idx) -> torch.Tensor:
        """Per-sample losses l_s(w) on samples ``idx``, differentiable in ``w`` (loss_fn)."""
        return self.loss_fn(self._forward(w, idx), self.y[idx])

    @_in_eval_mode
    def outputs(self, w, idx=None) -> torch.Tensor:
        """Model outputs (e.g. logits) at probe value ``w`` for samples ``idx`` (all: None),
        no gradient; in eval mode."""
        w = self.as_point(w)
        if idx is None:
            idx = slice(None)
        with torch.no_grad():
            return self._forward(w, idx)

    @_in_eval_mode
    @torch.no_grad()
    def _whole_loss(self, w: torch.Tensor, idx=None) -> torch.Tensor:
        """Reference: put ``w`` into the model, run it whole, restore the parameter."""
        old = self.param.detach().clone()
        try:
            self.param.copy_(w.reshape(self.shape))
            x = self.x if idx is None else self.x[idx]
            y = self.y if idx is None else self.y[idx]
            total = torch.zeros((), device=self.device, dtype=torch.float64)
            for s in range(0, x.shape[0], 4096):
                out = self.model(x[s : s + 4096])
                total += self.loss_fn(out, y[s : s + 4096]).sum(dtype=torch.float64)
            return total / x.shape[0]
        finally:
            self.param.copy_(old)

    # -- the Landscape protocol -----------------------------------------------------------
    @_in_eval_mode
    def full_loss(self, w) -> torch.Tensor:
        """L(w) over the whole training set (Eq 1), float64 0-d tensor."""
        w = self.as_point(w)
        if self.mode == "whole":
            return self._whole_loss(w)
        with torch.no_grad():
            z = self._out(self._h, w)
            total = torch.zeros((), device=self.device, dtype=torch.float64)
            for s in range(0, self.n_samples, 4096):
                out = self._btail(z[s : s + 4096])
                total += self.loss_fn(out, self.y[s : s + 4096]).sum(dtype=torch.float64)
        return total / self.n_samples

    def minibatch_indices(self, mu: int) -> torch.Tensor:
        if not 0 <= mu < self.n_minibatches:
            raise IndexError(f"minibatch index {mu} outside 0..{self.n_minibatches - 1}")
        return self._perm[mu * self.batch_size : (mu + 1) * self.batch_size]

    @_in_eval_mode
    def minibatch_loss_and_grad(self, w, mu: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mini loss L^mu(w) (Eq 3) and its gradient (flat) for minibatch ``mu``."""
        w = self.as_point(w).detach().requires_grad_(True)
        idx = self.minibatch_indices(mu)
        with torch.enable_grad():
            loss = self._sample_losses(w, idx).mean()
            (g,) = torch.autograd.grad(loss, w)
        return loss.detach(), g.detach()

    @_in_eval_mode
    def full_loss_and_grad(self, w) -> tuple[torch.Tensor, torch.Tensor]:
        """L(w) and its gradient over the whole set (used by the Langevin sampler, Eq 16)."""
        w = self.as_point(w).detach().requires_grad_(True)
        total_l = torch.zeros((), device=self.device, dtype=torch.float64)
        grad = torch.zeros_like(w)
        with torch.enable_grad():
            for s in range(0, self.n_samples, 4096):
                loss = self._sample_losses(w, slice(s, s + 4096)).sum()
                (g,) = torch.autograd.grad(loss, w)
                grad += g
                total_l += loss.detach().double()
        return total_l / self.n_samples, grad / self.n_samples

    @_in_eval_mode
    def hvp(self, w, directions, *, chunk_dirs: int = 16, chunk_samples: int = 4096):
        """Hessian-vector products H v_k of the full loss L (Eq 1) w.r.t. the probe, at ``w``,
        for directions (K, N) (or one (N,)): returns (K, N) in the probe's dtype.

        Forward-over-reverse with :mod:`torch.func` (``jvp`` of ``grad``), vmapped over the
        directions, summed over chunks of samples (H is linear in the data).
        """
        w = self.as_point(w).detach()
        V = self.as_directions(directions)
        out = torch.zeros_like(V)

        def grad_on(sl):
            return torch.func.grad(lambda u: self._sample_losses(u, sl).sum())

        for s in range(0, self.n_samples, chunk_samples):
            g = grad_on(slice(s, s + chunk_samples))

            def hv(v, g=g):
                return torch.func.jvp(g, (w,), (v,))[1]

            if V.shape[0] == 1:  # Lanczos' matvecs: vmap costs 2x for one direction
                out[0] += hv(V[0]).detach()
                continue
            for k0 in range(0, V.shape[0], chunk_dirs):
                out[k0 : k0 + chunk_dirs] += torch.func.vmap(hv)(V[k0 : k0 + chunk_dirs]).detach()
        return out / self.n_samples

    @_in_eval_mode
    def per_sample_projections(self, w, directions) -> torch.Tensor:
        """g_s . p_k for every training sample s and direction k, (n_samples, K).

        g_s is the gradient of sample s's own loss w.r.t. the probe; computed from the
        module's input a_s and output gradient delta_s (:mod:`sgdyn.kernels.per_sample`),
        never materialising a per-sample gradient.
        """
        from sgdyn.kernels.per_sample import conv2d_projections, linear_projections

        w = self.as_point(w)
        P = self.as_directions(directions)
        if not self.linear_in_weight:
            raise ValueError(
                "per-sample projections need a Linear or Conv2d weight as the probe, got "
                f"{self.probe_name} of {type(self.module).__name__}"
            )
        out = []
        for s in range(0, self.n_samples, 2048):
            sl = slice(s, s + 2048)
            h, dz = self._io_grads(w, sl)
            if isinstance(self.module, nn.Linear):
                out.append(linear_projections(h, dz, P))
            else:
                out.append(conv2d_projections(self.module, h, dz, P))
        return torch.cat(out)

    @_in_eval_mode
    def _io_grads(self, w: torch.Tensor, sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Probe-module input and per-sample output gradient dl_s/dz_s on samples ``sl``."""
        if self.mode == "cached-tail":
            h = self._h[sl]
            with torch.enable_grad():
                z = self._out(h, w).detach().requires_grad_(True)
                loss = self.loss_fn(self.tail(z), self.y[sl]).sum()
                (dz,) = torch.autograd.grad(loss, z)
            return h, dz
        saved = {}

        def fwd(m, inp, outp):
            saved["h"] = inp[0].detach()
            outp.retain_grad()
            saved["z"] = outp

        hook = self.module.register_forward_hook(fwd)
        try:
            with torch.enable_grad():
                out = torch.func.functional_call(
                    self.model, {self.probe_name: w.reshape(self.shape)}, (self.x[sl],)
                )
                self.loss_fn(out, self.y[sl]).sum().backward(inputs=[saved["z"]])
        finally:
            hook.remove()
        return saved["h"], saved["z"].grad

    @_in_eval_mode
    def losses_along(self, w0, directions, amplitudes) -> torch.Tensor:
        """Loss profiles L(w0 + a_kj p_k) (Eq 6) for directions (K, N), amplitudes (K, A)."""
        P = self.as_directions(directions)
        a = _as_amplitudes(amplitudes, P.shape[0])
        out = torch.empty(a.shape, dtype=torch.float64)
        for k0, ev in self.evaluators(w0, P):
            K = ev.n_dirs
            kk = torch.arange(K).repeat_interleave(a.shape[1])
            vals = ev.pairs(kk, a[k0 : k0 + K].reshape(-1))
            out[k0 : k0 + K] = vals.reshape(K, a.shape[1])
        return out

    @_in_eval_mode
    def per_sample_losses_along(self, w0, directions, amplitudes) -> torch.Tensor:
        """Per-sample losses l_s(w0 + a_kj p_k) for directions (K, N) and amplitudes (K, A)
        (or (A,) shared), float64 (n_samples, K, A): the profiles of every minibatch (its
        mean over its samples), batched like :meth:`losses_along` (cached tail)."""
        P = self.as_directions(directions)
        a = _as_amplitudes(amplitudes, P.shape[0])
        out = torch.empty((self.n_samples, *a.shape), dtype=torch.float64)
        for k0, ev in self.evaluators(w0, P):
            K = ev.n_dirs
            kk = torch.arange(K).repeat_interleave(a.shape[1])
            vals = ev.pairs(kk, a[k0 : k0 + K].reshape(-1), per_sample=True)  # (pairs, n)
            out[:, k0 : k0 + K] = vals.T.reshape(self.n_samples, K, a.shape[1])
        return out

    @_in_eval_mode
    def per_sample_slopes_along(self, w0, directions, amplitudes) -> torch.Tensor:
        """Per-sample slopes d l_s(w0 + a p_k) / da = g_s(w0 + a_kj p_k) . p_k for directions
        (K, N) and amplitudes (K, A) (or (A,)), float64 (n_samples, K, A): the active
        temperature's profiles (Eq 17), many (direction, amplitude) pairs per tail pass."""
        P = self.as_directions(directions)
        a = _as_amplitudes(amplitudes, P.shape[0])
        if not self.linear_in_weight:
            raise ValueError(
                "per-sample slopes need a Linear or Conv2d weight as the probe, got "
                f"{self.probe_name} of {type(self.module).__name__}"
            )
        out = torch.empty((self.n_samples, *a.shape), dtype=torch.float64)
        for k0, ev in self.evaluators(w0, P):
            K = ev.n_dirs
            kk = torch.arange(K).repeat_interleave(a.shape[1])
            vals = ev.slopes(kk, a[k0 : k0 + K].reshape(-1))  # (pairs, n)
            out[:, k0 : k0 + K] = vals.T.reshape(self.n_samples, K, a.shape[1])
        return out

    @_in_eval_mode
    def losses_along_reference(self, w0, directions, amplitudes) -> torch.Tensor:
        """Same as :meth:`losses_along` by perturbing the model and running it whole."""
        w0 = self.as_point(w0, "w0")
        P = self.as_directions(directions)
        a = torch.as_tensor(amplitudes, dtype=torch.float64)
        if a.ndim == 1:
            a = a[None].expand(P.shape[0], -1)
        out = torch.empty(a.shape, dtype=torch.float64)
        for k in range(P.shape[0]):
            for j in range(a.shape[1]):
                out[k, j] = self._whole_loss(w0 + float(a[k, j]) * P[k])
        return out

    # -- batched profiles and flatness -----------------------------------------------------
    def evaluators(self, w0, directions):
        """Yield ``(k0, ProfileEvaluator)`` over chunks of directions that fit the cache."""
        w0 = self.as_point(w0, "w0")
        P = self.as_directions(directions)
        per_dir = 1
        if self.mode == "cached-tail":
            per_dir = max(1, self._out_elems() * self.n_samples * self._h.element_size())
        chunk = max(1, min(P.shape[0], self.cache_bytes // per_dir))
        for k0 in range(0, P.shape[0], chunk):
            yield k0, ProfileEvaluator(self, w0, P[k0 : k0 + chunk])

    def _out_elems(self) -> int:
        with torch.no_grad():
            return int(self._out(self._h[:1], self.param.detach()).numel())

    @_in_eval_mode
    def flatness(self, w0, directions, *, L0=None, **kwargs) -> EWidthResult:
        """e-width flatness F_k of every direction (:func:`flatness_e_width`), batched."""
        w0 = self.as_point(w0, "w0")
        P = self.as_directions(directions)
        if L0 is None:
            L0 = float(self.full_loss(w0))
        parts = []
        for _, ev in self.evaluators(w0, P):
            parts.append(flatness_e_width(ev, ev.n_dirs, L0=L0, **kwargs))
        if len(parts) == 1:
            return parts[0]
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        return EWidthResult(
            width=cat("width"),
            left=cat("left"),
            right=cat("right"),
            converged=cat("converged"),
            tol=parts[0].tol,
            factor=parts[0].factor,
            n_evals=sum(p.n_evals for p in parts),
            message="; ".join(p.message for p in parts if p.message),
        )


class ProfileEvaluator:
    """Losses at (direction, amplitude) pairs around ``w0`` for a fixed set of directions.

    ``ev(amplitudes)`` with a (K,) array evaluates direction k at ``amplitudes[k]`` (the
    ``profile_fn`` of :func:`sgdyn.theory.flatness.flatness_e_width`); ``ev.pairs(k, a)``
    evaluates arbitrary pairs. Returns float64 numpy / tensors of the mean loss.
    """

    def __init__(self, land: NetworkLandscape, w0: torch.Tensor, P: torch.Tensor):
        self.land = land
        self.w0 = w0
        self.P = P
        self.n_dirs = int(P.shape[0])
        self.n_calls = 0
        self.n_pairs = 0
        self._memo: list[dict[float, float]] = [{} for _ in range(self.n_dirs)]
        if land.mode == "cached-tail":
            with torch.no_grad():
                self.z0 = land._out(land._h, w0)  # (n, *out)
                # D_k = module(h; weight=p_k, no bias): (K, n, *out), written in place
                h = land._h
                self.D = torch.empty((self.n_dirs, *self.z0.shape), device=h.device, dtype=h.dtype)
                for i, p in enumerate(P):
                    if isinstance(land.module, nn.Linear) and h.ndim == 2:
                        torch.mm(h, p.view(land.shape).T, out=self.D[i])
                    else:
                        self.D[i] = _module_forward(land.module, h, p.view(land.shape), None)
            self.out_elems = int(self.z0[0].numel())

    def __call__(self, amplitudes: np.ndarray) -> np.ndarray:
        a = np.asarray(amplitudes, dtype=np.float64)
        if a.shape != (self.n_dirs,):
            raise ValueError(f"expected {self.n_dirs} amplitudes, got {tuple(a.shape)}")
        # memo: root finders re-ask for already evaluated (direction, amplitude) pairs
        out = np.empty(self.n_dirs)
        todo = []
        for k in range(self.n_dirs):
            hit = self._memo[k].get(float(a[k]))
            if hit is None:
                todo.append(k)
            else:
                out[k] = hit
        if todo:
            kk = torch.as_tensor(todo, dtype=torch.long)
            vals = self.pairs(kk, torch.as_tensor(a[todo])).numpy()
            out[todo] = vals
            for k, v in zip(todo, vals, strict=True):
                memo = self._memo[k]
                if len(memo) > 8:
                    memo.clear()
                memo[float(a[k])] = float(v)
        return out

    def slopes(self, k: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Per-sample slopes d l_s / da at w0 + a[j] P[k[j]], float64 (n_pairs, n_samples).

        Cached tail: z = z0 + a D_k, so d l_s / da = (d l_s / d z_s) . D_k,s; the tail runs
        forward and backward once per chunk of pairs. Whole-model path: one per-sample
        projection pass per pair."""
        land = self.land
        k = torch.as_tensor(k, dtype=torch.long)
        a = torch.as_tensor(a, dtype=torch.float64)
        n_pairs, n = int(k.shape[0]), land.n_samples
        out = torch.empty((n_pairs, n), dtype=torch.float64)
        if land.mode == "whole":
            for j in range(n_pairs):
                p = self.P[k[j]]
                w = self.w0 + float(a[j]) * p
                out[j] = land.per_sample_projections(w, p[None])[:, 0].double().cpu()
            return out
        rows = max(1, _TAIL_ELEMS // max(self.out_elems, 16))
        pc = max(1, min(n_pairs, rows // n)) if rows >= n else 1
        sc = n if rows >= n else rows
        ks, As = k.tolist(), a.tolist()
        shape = self.z0.shape[1:]
        with eval_mode(land.model), torch.enable_grad():
            for p0 in range(0, n_pairs, pc):
                npc = min(pc, n_pairs - p0)
                for s0 in range(0, n, sc):
                    ns = min(sc, n - s0)
                    z0 = self.z0[s0 : s0 + ns].detach()
                    z = torch.stack(
                        [z0 + As[p0 + i] * self.D[ks[p0 + i], s0 : s0 + ns] for i in range(npc)]
                    ).requires_grad_(True)
                    logits = land._btail.inner(z.reshape(npc * ns, *shape))
                    y = land.y[s0 : s0 + ns]
                    y = y.repeat(npc, *([1] * (y.ndim - 1)))
                    (dz,) = torch.autograd.grad(land.loss_fn(logits, y).sum(), z)
                    Dk = self.D[ks[p0 : p0 + npc], s0 : s0 + ns]  # (npc, ns, *out)
                    sl = (dz * Dk).reshape(npc, ns, -1).sum(-1, dtype=torch.float64)
                    out[p0 : p0 + npc, s0 : s0 + ns] = sl.cpu()
        return out

    @torch.no_grad()
    def pairs(self, k: torch.Tensor, a: torch.Tensor, *, per_sample: bool = False) -> torch.Tensor:
        with eval_mode(self.land.model):  # once per call, not per tail batch (hot path)
            return self._pairs(k, a, per_sample)

    def _pairs(self, k: torch.Tensor, a: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        """Mean losses (float64, (n_pairs,)) at w0 + a[j] P[k[j]]; ``per_sample``: every
        sample's loss instead, (n_pairs, n_samples).

        Pairs go through the tail in chunks of about ``_TAIL_ELEMS`` activations: each
        pair's z = z0 + a D_k is written into a reused buffer (``torch.add`` with a scalar
        ``alpha``: no gathered copy of D_k, no broadcast multiply), the tail runs once on
        the chunk, and one logsumexp gives every pair's cross-entropy.
        """
        self.n_calls += 1
        land = self.land
        k = torch.as_tensor(k, dtype=torch.long)
        a = torch.as_tensor(a, dtype=torch.float64)
        n_pairs = int(k.shape[0])
        self.n_pairs += n_pairs
        n = land.n_samples
        out = torch.empty((n_pairs, n) if per_sample else n_pairs, dtype=torch.float64)
        if land.mode == "whole":
            for j in range(n_pairs):
                w = self.w0 + float(a[j]) * self.P[k[j]]
                if per_sample:
                    for s0 in range(0, n, 4096):
                        sl = slice(s0, s0 + 4096)
                        out[j, sl] = land._sample_losses(w, sl).double().cpu()
                else:
                    out[j] = land._whole_loss(w)
            return out
        # pairs x samples per tail batch, bounded by the activation budget
        rows = max(1, _TAIL_ELEMS // max(self.out_elems, 16))
        pc = max(1, min(n_pairs, rows // n)) if rows >= n else 1
        sc = n if rows >= n else rows
        ks, As = k.tolist(), a.tolist()
        shape = self.z0.shape[1:]
        buf = torch.empty((pc, sc, *shape), device=land.device, dtype=land.dtype)
        y_rep = {}
        for p0 in range(0, n_pairs, pc):
            npc = min(pc, n_pairs - p0)
            tot = torch.zeros(npc, device=land.device, dtype=torch.float64)
            for s0 in range(0, n, sc):
                ns = min(sc, n - s0)
                z0 = self.z0[s0 : s0 + ns]
                z = buf[:npc, :ns]
                for i in range(npc):
                    torch.add(z0, self.D[ks[p0 + i], s0 : s0 + ns], alpha=As[p0 + i], out=z[i])
                logits = land._btail.inner(z.reshape(npc * ns, *shape))
                key = (npc, s0, ns)
                if key not in y_rep:
                    y = land.y[s0 : s0 + ns]
                    y_rep[key] = y.repeat(npc, *([1] * (y.ndim - 1)))
                if per_sample:
                    per = land.loss_fn(logits, y_rep[key]).view(npc, ns)
                    out[p0 : p0 + npc, s0 : s0 + ns] = per.double().cpu()
                elif land.loss_fn.is_cross_entropy and logits.ndim == 2:
                    tot += _ce_sum_rows(logits, y_rep[key], npc)
                else:
                    per = land.loss_fn(logits, y_rep[key])
                    tot += per.view(npc, -1).sum(1, dtype=torch.float64)
            if not per_sample:
                out[p0 : p0 + npc] = (tot / n).cpu()
        return out
