"""MLF ensemble specification and the mean-field sampler (Sec IV, Eq 9).

An :class:`MLFEnsembleSpec` holds the per-mode profiles of the paper's mean-field law:

    M^mu_ii ~ N(M0_i, sigma_M,i^2),   M^mu_ij = s_i s_j Z_ij (i != j), Z_ij ~ N(0, 1) symmetric,
    theta^mu_i ~ N(delta_i1 theta1_0, sigma_theta,i^2),   L^mu_0 ~ LogNormal(mean L0, cv L0_cv).

The off-diagonal scale is separable, sigma_ij = s_i s_j with ``s = sigma_off * off_profile``
(``off_profile`` defaults to ones), so every sum of Eqs 10, 11, 14 costs O(N) and the
matrix-free kernel needs only O(N) parameters. M^mu itself is keyed by (seed, mu) through
Philox (:mod:`sgdyn.kernels.mlf_step`), never stored by the integrators.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

MAX_DENSE_N = 4096  # largest N for which the torch twin / sampler may materialise M^mu


@dataclass
class MLFEnsembleSpec:
    """Validated mean-field MLF ensemble; arrays are per mode (mode 1 = index 0)."""

    M0: np.ndarray
    sigma_M: np.ndarray
    sigma_theta: np.ndarray
    sigma_off: float = 0.0
    off_profile: np.ndarray | None = None
    theta1_0: float = 0.0
    L0: float = 1e-2
    L0_cv: float = 0.3
    name: str = "custom"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.M0 = np.asarray(self.M0, dtype=np.float64).ravel()
        self.sigma_M = np.asarray(self.sigma_M, dtype=np.float64).ravel()
        self.sigma_theta = np.asarray(self.sigma_theta, dtype=np.float64).ravel()
        n = self.M0.size
        if self.off_profile is None:
            self.off_profile = np.ones(n)
        self.off_profile = np.asarray(self.off_profile, dtype=np.float64).ravel()
        self.validate()

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        n = self.M0.size
        if n < 2:
            raise ValueError(f"an MLF ensemble needs N >= 2 modes, got {n}")
        for name in ("sigma_M", "sigma_theta", "off_profile"):
            arr = getattr(self, name)
            if arr.size != n:
                raise ValueError(
                    f"profile {name} has length {arr.size} but M0 has {n}: every per-mode "
                    "profile must have one entry per mode"
                )
        for name in ("M0", "sigma_M", "sigma_theta", "off_profile"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"profile {name} has non-finite entries")
        if np.any(self.M0 <= 0):
            raise ValueError("M0 (mean MLF curvatures M0_ii) must be positive (Sec IV: M0_ii > 0)")
        for name in ("sigma_M", "sigma_theta"):
            if np.any(getattr(self, name) < 0):
                raise ValueError(f"{name} holds standard deviations and must be >= 0")
        if not (np.isfinite(self.sigma_off) and self.sigma_off >= 0):
            raise ValueError(
                f"sigma_off must be a finite standard deviation >= 0, got {self.sigma_off}"
            )
        if not (np.isfinite(self.L0) and self.L0 > 0):
            raise ValueError(f"L0 must be positive, got {self.L0}")
        if not (np.isfinite(self.L0_cv) and self.L0_cv >= 0):
            raise ValueError(f"L0_cv must be >= 0, got {self.L0_cv}")
        if not np.isfinite(self.theta1_0):
            raise ValueError("theta1_0 must be finite")

    @property
    def N(self) -> int:
        return int(self.M0.size)

    @property
    def s(self) -> np.ndarray:
        """Separable off-diagonal profile: sigma_ij = s_i s_j."""
        return self.sigma_off * self.off_profile

    @property
    def L0_sq_mean(self) -> float:
        """<(L^mu_0)^2> = L0^2 (1 + cv^2) for the log-normal law."""
        return self.L0**2 * (1.0 + self.L0_cv**2)

    def theory_kwargs(self) -> dict:
        """Keyword arguments for :mod:`sgdyn.theory.mlf` functions."""
        return dict(
            M0=self.M0,
            sigma_M=self.sigma_M,
            sigma_ij=self.s,
            sigma_theta=self.sigma_theta,
            theta1_0=self.theta1_0,
        )

    def check_dense(self, what: str = "the dense torch twin") -> None:
        if self.N > MAX_DENSE_N:
            raise ValueError(
                f"N={self.N} is too large for {what} (N x N matrices, limit {MAX_DENSE_N}); "
                "use the matrix-free step (Triton on CUDA, the blocked CPU path otherwise)"
            )

    def as_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                d[k] = v.tolist()
        return d

    # -- tensors for the kernels -----------------------------------------------------------
    def tensors(self, device=None, dtype=torch.float32) -> dict:
        f = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        return {"M0": f(self.M0), "sigma_M": f(self.sigma_M), "s": f(self.s)}


def lognormal_params(L0: float, cv: float) -> tuple[float, float]:
    """(mu, sigma) of log L^mu_0 for a log-normal with mean L0 and coefficient of variation."""
    s2 = np.log1p(cv**2)
    return float(np.log(L0) - s2 / 2), float(np.sqrt(s2))


@dataclass
class MLFSample:
    """n sampled MLFs: M (n, N, N) (dense, optional), theta_mu (n, N), L0mu (n,)."""

    theta_mu: torch.Tensor
    L0mu: torch.Tensor
    M: torch.Tensor | None = None


def sample_minima_and_levels(
    spec: MLFEnsembleSpec, n: int, generator: torch.Generator, device=None, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """theta^mu (n, N) and L^mu_0 (n,) from the mean-field law."""
    N = spec.N
    z = torch.randn(n, N, generator=generator, dtype=torch.float64)
    th = z * torch.as_tensor(spec.sigma_theta)
    th[:, 0] += spec.theta1_0
    m, s = lognormal_params(spec.L0, spec.L0_cv)
    L = torch.exp(m + s * torch.randn(n, generator=generator, dtype=torch.float64))
    return th.to(device=device, dtype=dtype), L.to(device=device, dtype=dtype)


def sample_dense(
    spec: MLFEnsembleSpec, n: int, seed: int = 0, device=None, dtype=torch.float64
) -> MLFSample:
    """Draw n MLFs with dense M^mu (small N; plain torch RNG, for Monte-Carlo checks)."""
    spec.check_dense("sample_dense")
    g = torch.Generator().manual_seed(int(seed))
    N = spec.N
    Z = torch.randn(n, N, N, generator=g, dtype=torch.float64)
    Z = torch.triu(Z, 1)
    Z = Z + Z.transpose(1, 2)
    s = torch.as_tensor(spec.s)
    M = Z * (s[:, None] * s[None, :])
    diag = torch.as_tensor(spec.M0) + torch.as_tensor(spec.sigma_M) * torch.randn(
        n, N, generator=g, dtype=torch.float64
    )
    M = M + torch.diag_embed(diag)
    th, L = sample_minima_and_levels(spec, n, g, dtype=torch.float64)
    return MLFSample(
        theta_mu=th.to(device=device, dtype=dtype),
        L0mu=L.to(device=device, dtype=dtype),
        M=M.to(device=device, dtype=dtype),
    )


def mlf_loss_dense(M, theta_mu, L0mu, theta):
    """Eq 9 for dense samples: L^mu(theta) = L^mu_0 exp(theta^T M theta / 2 - theta^T M theta^mu).

    ``M`` (n, N, N), ``theta_mu`` (n, N), ``L0mu`` (n,), ``theta`` (..., n, N) -> (..., n).
    """
    Mt = torch.einsum("nij,...nj->...ni", M, theta)
    Mtm = torch.einsum("nij,nj->ni", M, theta_mu)
    X = (theta * (0.5 * Mt - Mtm)).sum(-1)
    return L0mu * torch.exp(X)


class MinibatchSchedule:
    """Which minibatch mu each replica uses at each step.

    ``n_minibatches=None``: fresh draws, a new mu = step * R + r every step (never reused).
    ``n_minibatches=K``: a finite ensemble; each replica walks through its own random
    permutation of the K minibatches per epoch (sampling without replacement, like SGD);
    with ``replacement=True`` each step draws mu uniformly from the K (an ablation).
    """

    def __init__(
        self, n_replicas: int, n_minibatches: int | None, seed: int = 0, replacement: bool = False
    ):
        if n_replicas < 1:
            raise ValueError(f"n_replicas must be >= 1, got {n_replicas}")
        if n_minibatches is not None and n_minibatches < 1:
            raise ValueError(f"n_minibatches must be >= 1 or None, got {n_minibatches}")
        self.R, self.K = n_replicas, n_minibatches
        self.replacement = bool(replacement)
        self.g = torch.Generator().manual_seed(int(seed) + 7919)
        self.step = 0
        self._perm = None
        self._pos = 0

    def next(self) -> torch.Tensor:
        R = self.R
        if self.K is None:
            mu = torch.arange(R, dtype=torch.int64) + self.step * R
        elif self.replacement:
            mu = torch.randint(self.K, (R,), generator=self.g)
        else:
            if self._perm is None or self._pos >= self.K:
                self._perm = torch.argsort(torch.rand(R, self.K, generator=self.g), dim=1)
                self._pos = 0
            mu = self._perm[:, self._pos].clone()
            self._pos += 1
        self.step += 1
        return mu
