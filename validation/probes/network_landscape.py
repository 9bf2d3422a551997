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
pairs, the tail run once on the (pairs x samples) batch, the cross-entropy reduced per pair.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sgdyn.theory.flatness import EWidthResult, flatness_e_width
from sgdyn.validation.data import ArrayDataset

log = logging.getLogger(__name__)

__all__ = ["NetworkLandscape", "ProfileEvaluator", "batched_tail", "extract_tail"]

# Elements per batched tail evaluation (pairs x samples x activation width), ~4 MB float32:
# small enough to stay in cache (the tail is memory-bound), large enough to amortise calls.
_TAIL_ELEMS = 1 << 20


def _ce_sum_rows(logits: torch.Tensor, y: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """Per-pair sums of cross-entropy for logits (pairs * samples, C), float64 (n_pairs,).

    One logsumexp over all pairs at once (any memory layout of ``logits``: the transposed
    one from :func:`_linear_t` reduces faster), minus the gathered true-class logit.
    """
    ce = torch.logsumexp(logits, 1) - logits.gather(1, y[:, None])[:, 0]
    return ce.view(n_pairs, -1).sum(1, dtype=torch.float64)


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
    out = fx.GraphModule(root, graph)
    out.eval()
    return out


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


class NetworkLandscape:
    """``Landscape`` of ``model``'s parameter ``probe_name`` on ``data`` (cross-entropy, Eq 1).

    Parameters
    ----------
    model : the trained network; every parameter except the probe stays at its value.
    probe_name : name of the parameter that moves (e.g. ``"layers.1.weight"``).
    data : the training set (:class:`ArrayDataset`); losses are means over all of it.
    batch_size, seed : define the minibatches ``mu`` of :meth:`minibatch_loss_and_grad`
        (one seeded epoch: a permutation cut into ``n // batch_size`` batches).
    cache_bytes : memory allowed for cached per-direction module outputs ``D_k``.
    fast : False forces the whole-model path everywhere (for checks and benchmarks).
    """

    def __init__(
        self,
        model: nn.Module,
        probe_name: str,
        data: ArrayDataset,
        *,
        batch_size: int = 50,
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
        self.x = data.x.to(self.device, self.dtype)
        self.y = data.y.to(self.device)
        self.n_samples = int(self.x.shape[0])
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
        self.tail = extract_tail(model, mod_name) if (fast and mod_name) else None
        self.mode = "cached-tail" if (self.tail is not None and self.linear_in_weight) else "whole"
        self._btail = batched_tail(self.tail) if self.mode == "cached-tail" else None
        self._h = None
        if self.mode == "cached-tail":
            self._h = self._capture_inputs()

    # -- helpers ---------------------------------------------------------------------------
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

    def _flat(self, w, name="w") -> torch.Tensor:
        w = torch.as_tensor(w, device=self.device, dtype=self.dtype).reshape(-1)
        if w.numel() != self.n_params:
            raise ValueError(
                f"{name} has {w.numel()} entries but the probe {self.probe_name} has "
                f"{self.n_params}"
            )
        return w

    def _dirs(self, directions) -> torch.Tensor:
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

    def _out(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        bias = getattr(self.module, "bias", None)
        return _module_forward(self.module, h, w.reshape(self.shape), bias)

    def current(self) -> torch.Tensor:
        """The model's present probe value, flat (the natural w0: the last SGD snapshot)."""
        return self.param.detach().reshape(-1).clone()

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
                total += F.cross_entropy(out, y[s : s + 4096], reduction="sum").double()
            return total / x.shape[0]
        finally:
            self.param.copy_(old)

    # -- the Landscape protocol -----------------------------------------------------------
    def full_loss(self, w) -> torch.Tensor:
        """L(w) over the whole training set (Eq 1), float64 0-d tensor."""
        w = self._flat(w)
        if self.mode == "whole":
            return self._whole_loss(w)
        with torch.no_grad():
            z = self._out(self._h, w)
            total = torch.zeros((), device=self.device, dtype=torch.float64)
            for s in range(0, self.n_samples, 4096):
                out = self._btail(z[s : s + 4096])
                total += F.cross_entropy(out, self.y[s : s + 4096], reduction="sum").double()
        return total / self.n_samples

    def minibatch_indices(self, mu: int) -> torch.Tensor:
        if not 0 <= mu < self.n_minibatches:
            raise IndexError(f"minibatch index {mu} outside 0..{self.n_minibatches - 1}")
        return self._perm[mu * self.batch_size : (mu + 1) * self.batch_size]

    def minibatch_loss_and_grad(self, w, mu: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mini loss L^mu(w) (Eq 3) and its gradient (flat) for minibatch ``mu``."""
        w = self._flat(w).detach().requires_grad_(True)
        idx = self.minibatch_indices(mu)
        with torch.enable_grad():
            if self.mode == "whole":
                out = torch.func.functional_call(
                    self.model, {self.probe_name: w.reshape(self.shape)}, (self.x[idx],)
                )
            else:
                out = self.tail(self._out(self._h[idx], w))
            loss = F.cross_entropy(out, self.y[idx])
            (g,) = torch.autograd.grad(loss, w)
        return loss.detach(), g.detach()

    def full_loss_and_grad(self, w) -> tuple[torch.Tensor, torch.Tensor]:
        """L(w) and its gradient over the whole set (used by the Langevin sampler, Eq 16)."""
        w = self._flat(w).detach().requires_grad_(True)
        total_l = torch.zeros((), device=self.device, dtype=torch.float64)
        grad = torch.zeros_like(w)
        with torch.enable_grad():
            for s in range(0, self.n_samples, 4096):
                sl = slice(s, s + 4096)
                if self.mode == "whole":
                    out = torch.func.functional_call(
                        self.model, {self.probe_name: w.reshape(self.shape)}, (self.x[sl],)
                    )
                else:
                    out = self.tail(self._out(self._h[sl], w))
                loss = F.cross_entropy(out, self.y[sl], reduction="sum")
                (g,) = torch.autograd.grad(loss, w)
                grad += g
                total_l += loss.detach().double()
        return total_l / self.n_samples, grad / self.n_samples

    def per_sample_projections(self, w, directions) -> torch.Tensor:
        """g_s . p_k for every training sample s and direction k, (n_samples, K).

        g_s is the gradient of sample s's own loss w.r.t. the probe; computed from the
        module's input a_s and output gradient delta_s (:mod:`sgdyn.kernels.per_sample`),
        never materialising a per-sample gradient.
        """
        from sgdyn.kernels.per_sample import conv2d_projections, linear_projections

        w = self._flat(w)
        P = self._dirs(directions)
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

    def _io_grads(self, w: torch.Tensor, sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Probe-module input and per-sample output gradient dl_s/dz_s on samples ``sl``."""
        if self.mode == "cached-tail":
            h = self._h[sl]
            with torch.enable_grad():
                z = self._out(h, w).detach().requires_grad_(True)
                loss = F.cross_entropy(self.tail(z), self.y[sl], reduction="sum")
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
                F.cross_entropy(out, self.y[sl], reduction="sum").backward(inputs=[saved["z"]])
        finally:
            hook.remove()
        return saved["h"], saved["z"].grad

    def losses_along(self, w0, directions, amplitudes) -> torch.Tensor:
        """Loss profiles L(w0 + a_kj p_k) (Eq 6) for directions (K, N), amplitudes (K, A)."""
        P = self._dirs(directions)
        a = torch.as_tensor(amplitudes, dtype=torch.float64)
        if a.ndim == 1:
            a = a[None].expand(P.shape[0], -1)
        if a.ndim != 2 or a.shape[0] != P.shape[0]:
            raise ValueError(f"amplitudes must be (K, A) with K={P.shape[0]}, got {tuple(a.shape)}")
        out = torch.empty(a.shape, dtype=torch.float64)
        for k0, ev in self.evaluators(w0, P):
            K = ev.n_dirs
            kk = torch.arange(K).repeat_interleave(a.shape[1])
            vals = ev.pairs(kk, a[k0 : k0 + K].reshape(-1))
            out[k0 : k0 + K] = vals.reshape(K, a.shape[1])
        return out

    def losses_along_reference(self, w0, directions, amplitudes) -> torch.Tensor:
        """Same as :meth:`losses_along` by perturbing the model and running it whole."""
        w0 = self._flat(w0, "w0")
        P = self._dirs(directions)
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
        w0 = self._flat(w0, "w0")
        P = self._dirs(directions)
        per_dir = 1
        if self.mode == "cached-tail":
            per_dir = max(1, self._out_elems() * self.n_samples * self.x.element_size())
        chunk = max(1, min(P.shape[0], self.cache_bytes // per_dir))
        for k0 in range(0, P.shape[0], chunk):
            yield k0, ProfileEvaluator(self, w0, P[k0 : k0 + chunk])

    def _out_elems(self) -> int:
        with torch.no_grad():
            return int(self._out(self._h[:1], self.param.detach()).numel())

    def flatness(self, w0, directions, *, L0=None, **kwargs) -> EWidthResult:
        """e-width flatness F_k of every direction (:func:`flatness_e_width`), batched."""
        w0 = self._flat(w0, "w0")
        P = self._dirs(directions)
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
    evaluates arbitrary pairs. Returns float64 numpy / tensors of mean cross-entropy.
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

    @torch.no_grad()
    def pairs(self, k: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Mean losses (float64, (n_pairs,)) at w0 + a[j] P[k[j]].

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
        out = torch.empty(n_pairs, dtype=torch.float64)
        if land.mode == "whole":
            for j in range(n_pairs):
                out[j] = land._whole_loss(self.w0 + float(a[j]) * self.P[k[j]])
            return out
        n = land.n_samples
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
                logits = land._btail(z.reshape(npc * ns, *shape))
                key = (npc, s0, ns)
                if key not in y_rep:
                    y_rep[key] = land.y[s0 : s0 + ns].repeat(npc)
                tot += _ce_sum_rows(logits, y_rep[key], npc)
            out[p0 : p0 + npc] = (tot / n).cpu()
        return out
