"""A finite MLF ensemble as a :class:`sgdyn.landscape.Landscape` (Eq 9 minibatch losses).

K minibatches mu = 0..K-1, each with its Philox-keyed Hessian M^mu (``seed``, mu), its
minimum theta^mu and level L^mu_0 (tables drawn once from the mean-field law). The overall
loss is their average, L = <L^mu>_mu (Eq 10 is its mean-field, second-order approximation),
so the same flatness / PCA estimators that probe a real network probe it.

The M^mu are the ones the Triton kernel generates (the twin reproduces them on the CPU);
for K N^2 below ``cache_limit`` they are materialised once and reused.
"""

from __future__ import annotations

import torch

from ..kernels.mlf_step import mlf_dense_twin, mlf_matvec2, philox_keys
from ..theory.flatness import EWidthResult, flatness_e_width
from .ensemble import MLFEnsembleSpec, sample_minima_and_levels


class MLFLandscape:
    """Finite MLF ensemble of ``n_minibatches`` Eq 9 losses in the mode basis (w = theta).

    ``per_sample_projections`` treats each minibatch as one sample: it returns the K
    minibatch gradients projected on the directions (K, n_dirs), exactly what minibatch
    statistics need.
    """

    def __init__(
        self,
        spec: MLFEnsembleSpec,
        n_minibatches: int,
        *,
        seed: int = 0,
        device=None,
        dtype=torch.float32,
        cache_limit: int = 50_000_000,
    ):
        if n_minibatches < 1:
            raise ValueError(f"n_minibatches must be >= 1, got {n_minibatches}")
        self.spec = spec
        self.n_params = spec.N
        self.n_minibatches = int(n_minibatches)
        self.seed = int(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        g = torch.Generator().manual_seed(self.seed)
        self.theta_mu, self.L0mu = sample_minima_and_levels(
            spec, self.n_minibatches, g, device=self.device, dtype=dtype
        )
        self.keys = philox_keys(self.seed, torch.arange(self.n_minibatches)).to(self.device)
        t = spec.tensors(device=self.device)
        self.M0, self.sigma_M, self.s = t["M0"], t["sigma_M"], t["s"]
        self.impl = "triton" if self.device.type == "cuda" else "twin"
        self.M_cache = None
        if self.impl == "twin" or self.n_minibatches * spec.N**2 <= cache_limit:
            if self.n_minibatches * spec.N**2 > cache_limit:
                spec.check_dense("the cached finite ensemble")
                raise ValueError(
                    f"K N^2 = {self.n_minibatches * spec.N**2} exceeds cache_limit="
                    f"{cache_limit} on {self.device}; use fewer minibatches or a CUDA device"
                )
            self.M_cache = torch.cat(
                [
                    mlf_dense_twin(self.keys[i : i + 256], self.M0, self.sigma_M, self.s)
                    for i in range(0, self.n_minibatches, 256)
                ]
            ).to(dtype)

    # -- core: M^mu x and M^mu theta^mu for pairs (mu_r, x_r) ---------------------------------
    def matvec2(self, mu: torch.Tensor, x: torch.Tensor):
        """(M^{mu_r} x_r, M^{mu_r} theta^{mu_r}) for r = 0..R-1."""
        mu = mu.to(self.device)
        if self.M_cache is not None:
            M = self.M_cache[mu]
            return (
                torch.einsum("rij,rj->ri", M, x.to(self.dtype)),
                torch.einsum("rij,rj->ri", M, self.theta_mu[mu]),
            )
        return mlf_matvec2(
            self.keys[mu], x.float(), self.theta_mu[mu].float(), self.M0, self.sigma_M, self.s,
            impl=self.impl,
        )  # fmt: skip

    def loss_and_grad_pairs(self, mu: torch.Tensor, x: torch.Tensor):
        """L^{mu_r}(x_r) (Eq 9) and its gradient L^mu M^mu (x - theta^mu), for R pairs."""
        u, v = self.matvec2(mu, x)
        x = x.to(u.dtype)
        X = (x * (0.5 * u - v)).sum(-1)
        L = self.L0mu[mu.to(self.device)].to(u.dtype) * torch.exp(X)
        return L, L[:, None] * (u - v)

    def _mean_loss(self, P: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """<L^mu(p)>_mu for points P (n, N)."""
        P = P.to(self.device, self.dtype)
        n = P.shape[0]
        acc = torch.zeros(n, dtype=torch.float64, device=self.device)
        for a in range(0, self.n_minibatches, chunk):
            mu = torch.arange(a, min(a + chunk, self.n_minibatches), device=self.device)
            m = mu.numel()
            Lm, _ = self.loss_and_grad_pairs(mu.repeat_interleave(n), P.repeat(m, 1))  # (m * n,)
            acc += Lm.double().reshape(m, n).sum(0)
        return acc / self.n_minibatches

    # -- Landscape protocol ------------------------------------------------------------------
    def full_loss(self, w: torch.Tensor) -> torch.Tensor:
        return self._mean_loss(w.reshape(1, -1))[0]

    def minibatch_loss_and_grad(self, w: torch.Tensor, mu: int):
        if not 0 <= mu < self.n_minibatches:
            raise ValueError(f"minibatch index {mu} out of range [0, {self.n_minibatches})")
        L, g = self.loss_and_grad_pairs(torch.tensor([mu]), w.reshape(1, -1))
        return L[0], g[0]

    def losses_along(self, w0, directions, amplitudes) -> torch.Tensor:
        d = torch.as_tensor(directions, dtype=self.dtype, device=self.device)
        a = torch.as_tensor(amplitudes, dtype=self.dtype, device=self.device)
        if d.dim() != 2 or d.shape[1] != self.n_params or a.shape[0] != d.shape[0]:
            raise ValueError(f"directions must be (K, {self.n_params}) and amplitudes (K, A)")
        P = w0.to(self.device, self.dtype)[None, None, :] + a[:, :, None] * d[:, None, :]
        return self._mean_loss(P.reshape(-1, self.n_params)).reshape(a.shape)

    def per_sample_projections(self, w, directions) -> torch.Tensor:
        mu = torch.arange(self.n_minibatches, device=self.device)
        _, g = self.loss_and_grad_pairs(mu, w.reshape(1, -1).expand(self.n_minibatches, -1))
        return g @ torch.as_tensor(directions, dtype=g.dtype, device=self.device).T

    def as_directions(self, directions) -> torch.Tensor:
        """``directions`` as finite (K, n_params) on this landscape's device/dtype ((N,): one)."""
        d = torch.as_tensor(directions, dtype=self.dtype, device=self.device)
        if d.dim() == 1:
            d = d[None]
        if d.dim() != 2 or d.shape[1] != self.n_params or not torch.isfinite(d).all():
            raise ValueError(
                f"directions must be finite (K, {self.n_params}), got {tuple(d.shape)}"
            )
        return d

    def _profile_points(self, w0, directions, amplitudes):
        """Checked directions d (K, N), amplitudes a (K, A) (an (A,) row shared) and the
        points w0 + a_kj p_k, (K * A, N), of the per-minibatch profiles."""
        d = self.as_directions(directions)
        a = torch.as_tensor(amplitudes, dtype=self.dtype, device=self.device)
        if a.dim() == 1:
            a = a[None].expand(d.shape[0], -1)
        if a.dim() != 2 or a.shape[0] != d.shape[0]:
            raise ValueError(f"amplitudes must be (K, A) with K={d.shape[0]}, got {tuple(a.shape)}")
        w0 = torch.as_tensor(w0, dtype=self.dtype, device=self.device).reshape(-1)
        P = (w0[None, None, :] + a[:, :, None] * d[:, None, :]).reshape(-1, self.n_params)
        return d, a, P

    def per_sample_losses_along(self, w0, directions, amplitudes) -> torch.Tensor:
        """L^mu(w0 + a_kj p_k) for every minibatch mu (this landscape's "samples"),
        float64 (n_minibatches, K, A); amplitudes (K, A) or (A,) shared."""
        _, a, P = self._profile_points(w0, directions, amplitudes)
        n = P.shape[0]
        out = torch.empty((self.n_minibatches, n), dtype=torch.float64)
        for s in range(0, self.n_minibatches, 64):
            mu = torch.arange(s, min(s + 64, self.n_minibatches), device=self.device)
            m = mu.numel()
            Lm, _ = self.loss_and_grad_pairs(mu.repeat_interleave(n), P.repeat(m, 1))
            out[s : s + m] = Lm.double().reshape(m, n).cpu()
        return out.reshape(self.n_minibatches, *a.shape)

    def per_sample_slopes_along(self, w0, directions, amplitudes) -> torch.Tensor:
        """dL^mu(w0 + a p_k)/da = grad L^mu . p_k at every (direction, amplitude) for every
        minibatch mu, float64 (n_minibatches, K, A) (the active temperature, Eq 17)."""
        d, a, P = self._profile_points(w0, directions, amplitudes)
        K, A = a.shape
        dirs = d[:, None, :].expand(K, A, -1).reshape(-1, self.n_params)
        n = P.shape[0]
        out = torch.empty((self.n_minibatches, n), dtype=torch.float64)
        for s in range(0, self.n_minibatches, 64):
            mu = torch.arange(s, min(s + 64, self.n_minibatches), device=self.device)
            m = mu.numel()
            _, g = self.loss_and_grad_pairs(mu.repeat_interleave(n), P.repeat(m, 1))
            out[s : s + m] = (g.reshape(m, n, -1) * dirs.to(g.dtype)).sum(-1).double().cpu()
        return out.reshape(self.n_minibatches, K, A)

    @property
    def n_samples(self) -> int:
        """Each minibatch counts as one sample (see :meth:`per_sample_projections`)."""
        return self.n_minibatches

    def flatness(self, w0, directions, *, L0=None, **kwargs) -> EWidthResult:
        """e-width flatness F_k of every direction (:func:`~sgdyn.theory.flatness.flatness_e_width`,
        keyword arguments passed on), as :meth:`NetworkLandscape.flatness`: the width of the
        region around ``w0`` where the averaged loss <L^mu> stays below e * L0 (``L0``
        defaults to ``full_loss(w0)``); all directions advance together, one batched loss
        evaluation per root-finding step."""
        d = self.as_directions(directions)
        w0 = torch.as_tensor(w0, dtype=self.dtype, device=self.device).reshape(-1)
        if w0.numel() != self.n_params:
            raise ValueError(f"w0 has {w0.numel()} entries, the landscape {self.n_params}")
        if L0 is None:
            L0 = float(self.full_loss(w0))

        def profile(amps):
            a = torch.as_tensor(amps, dtype=self.dtype, device=self.device)
            return self._mean_loss(w0[None] + a[:, None] * d).cpu().numpy()

        return flatness_e_width(profile, d.shape[0], L0=L0, **kwargs)
