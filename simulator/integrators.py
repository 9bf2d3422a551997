"""Batched integrators for many independent replicas at once (any torch device).

- ``sgd``: SGD on the full nonlinear MLF of Eq 9,
  theta <- theta - alpha L^mu(theta) M^mu (theta - theta^mu), a new mu every step;
- ``linear``: the linearised dynamics of Eq 12, theta <- theta - alpha L^mu_0 M^mu (theta -
  theta^mu);
- ``langevin``: the equilibrium baseline on the averaged loss of Eq 10 at constant temperature
  Temp: theta <- theta - alpha grad L(theta) + sqrt(2 alpha Temp) xi (Boltzmann exp(-L/Temp)).

Minibatches are fresh draws (a new M^mu, theta^mu, L^mu_0 per replica and step) or a finite
ensemble (:class:`~sgdyn.simulator.landscape.MLFLandscape`, K minibatches visited without
replacement per epoch). Snapshots go through :class:`sgdyn.kernels.TrajectoryBuffer`.
A diverging run raises :class:`SimulationDiverged`; no NaN is ever returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..kernels.mlf_step import mlf_matvec2
from ..kernels.trajectory import TrajectoryBuffer
from ..theory.mlf import averaged_curvature
from .ensemble import MinibatchSchedule, MLFEnsembleSpec, lognormal_params
from .landscape import MLFLandscape
from .rng import ReplicaStreams

DYNAMICS = ("sgd", "linear", "langevin")


class SimulationDiverged(RuntimeError):
    """The integration blew up (step too large); the message says where and what to do."""


@dataclass
class SimResult:
    """Recorded trajectory ``theta`` (n_records, R, n_modes) and run metadata."""

    theta: np.ndarray
    record_every: int
    modes: np.ndarray
    dynamics: str
    alpha: float
    n_steps: int
    info: dict = field(default_factory=dict)


STREAM_MINIMA, STREAM_LEVELS, STREAM_MATRICES, STREAM_NOISE = 1, 2, 3, 4
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype) -> torch.dtype:
    """torch.float32 / torch.float64 from a dtype or its name; anything else is refused."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


def simulate(
    spec: MLFEnsembleSpec,
    *,
    dynamics: str = "sgd",
    alpha: float,
    n_steps: int,
    n_replicas: int = 16,
    record_every: int = 1,
    record_modes=None,
    landscape: MLFLandscape | None = None,
    temperature: float | None = None,
    seed: int = 0,
    device=None,
    impl: str = "auto",
    theta0=None,
    check_every: int = 50,
    max_exponent: float = 50.0,
    progress: bool = False,
    dtype="float32",
    replica_offset: int = 0,
    total_replicas: int | None = None,
    replacement: bool = False,
) -> SimResult:
    """Integrate ``n_replicas`` independent replicas for ``n_steps`` steps.

    ``dtype`` ("float32" or "float64", or the torch dtype) is the precision of the state and
    of every product (float64 for theory checks at small N). Every random draw happens on
    ``device`` from per-replica streams keyed by (seed, global replica index)
    (:class:`~sgdyn.simulator.rng.ReplicaStreams`, fresh minibatch ids mu = step *
    total_replicas + global index): a shard ``replica_offset .. replica_offset + n_replicas``
    of ``total_replicas`` (one rank under torchrun) reproduces those replicas of the full run.

    ``landscape`` given: finite ensemble (its K minibatches); otherwise fresh draws.
    ``replacement=True`` (finite ensemble only): each step draws mu uniformly from the K
    minibatches instead of walking a per-epoch permutation.
    ``theta0`` (N,) or (R, N) start (default 0 = the ensemble's reference point w0).
    Every ``check_every`` steps the state is checked: non-finite values or an MLF exponent
    above ``max_exponent`` (L^mu > e^50 L^mu_0) raise :class:`SimulationDiverged`.
    """
    if dynamics not in DYNAMICS:
        raise ValueError(f"dynamics must be one of {DYNAMICS}, got {dynamics!r}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive learning rate, got {alpha}")
    if n_steps < 1 or record_every < 1 or n_replicas < 1:
        raise ValueError("n_steps, record_every and n_replicas must be >= 1")
    if dynamics == "langevin" and not (temperature is not None and temperature >= 0):
        raise ValueError("langevin dynamics needs a temperature >= 0")
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = resolve_dtype(dtype)
    N, R = spec.N, int(n_replicas)
    R_all = R if total_replicas is None else int(total_replicas)
    if not 0 <= replica_offset <= R_all - R:
        raise ValueError(f"replicas {replica_offset}..{replica_offset + R} lie outside 0..{R_all}")
    if landscape is not None and landscape.dtype != dtype:
        raise ValueError(
            f"the finite-ensemble landscape holds {landscape.dtype} but dtype={dtype}: build "
            "MLFLandscape(..., dtype=) with the run's dtype"
        )
    if landscape is not None and R_all != R:
        raise ValueError("sharded replicas (total_replicas) need fresh draws, not a landscape")
    modes = np.arange(N) if record_modes is None else np.asarray(record_modes, dtype=np.int64)
    modes_t = torch.as_tensor(modes, device=device)

    def streams(k):
        return ReplicaStreams(seed, k, R, device, offset=replica_offset)

    rng_th, rng_L, rng_M, rng_xi = (
        streams(k) for k in (STREAM_MINIMA, STREAM_LEVELS, STREAM_MATRICES, STREAM_NOISE)
    )
    pars = spec.tensors(device=device, dtype=dtype)
    sig_th = torch.as_tensor(spec.sigma_theta, device=device, dtype=dtype)
    ln_m, ln_s = lognormal_params(spec.L0, spec.L0_cv)
    theta = torch.zeros(R, N, device=device, dtype=dtype)
    if theta0 is not None:
        theta0 = torch.as_tensor(theta0, device=device, dtype=dtype)
        if theta0.dim() == 2 and theta0.shape[0] == R_all and R_all != R:
            theta0 = theta0[replica_offset : replica_offset + R]
        theta += theta0
    n_rec = n_steps // record_every
    buf = TrajectoryBuffer(max(n_rec, 1), R * modes.size, device=device, dtype=dtype)
    sched = MinibatchSchedule(
        R, None if landscape is None else landscape.n_minibatches, seed, replacement=replacement
    )
    glob = torch.arange(replica_offset, replica_offset + R, device=device, dtype=torch.int64)
    if landscape is not None and landscape.spec is not spec:
        raise ValueError("the finite-ensemble landscape was built from a different spec")
    if dynamics == "langevin":
        Mbar = torch.as_tensor(averaged_curvature(**spec.theory_kwargs()), device=device,
                               dtype=dtype)  # fmt: skip
        lin = torch.zeros(N, device=device, dtype=dtype)
        lin[0] = -float(spec.M0[0]) * spec.theta1_0
        noise = float(np.sqrt(2.0 * alpha * temperature))
    if dynamics == "langevin":
        stiffness = alpha * spec.L0 * float(Mbar.max())
    else:
        stiffness = alpha * spec.L0 * float(np.max(spec.M0))
    if impl == "auto" and device.type != "cuda":
        impl = "blocked"
    max_x = torch.full((), -float("inf"), device=device, dtype=dtype)
    it = range(n_steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"{dynamics} N={N} R={R}", unit="step", leave=False)
    for t in it:
        if dynamics == "langevin":
            X = (theta * lin).sum(-1) + 0.5 * (Mbar * theta**2).sum(-1)
            grad = spec.L0 * torch.exp(X)[:, None] * (Mbar * theta + lin)
            xi = rng_xi.randn(N, dtype=dtype)
            theta = theta - alpha * grad + noise * xi
        else:
            if landscape is not None:
                mu = sched.next()
                u, v = landscape.matvec2(mu, theta)
                th_mu = landscape.theta_mu[mu.to(landscape.device)].to(device, dtype)
                L0mu = landscape.L0mu[mu.to(landscape.device)].to(device, dtype)
                u, v = u.to(device, dtype), v.to(device, dtype)
            else:  # fresh draws, all on the device: no host copy in the step
                th_mu = rng_th.randn(N, dtype=dtype) * sig_th
                th_mu[:, 0] += spec.theta1_0
                L0mu = torch.exp(ln_m + ln_s * rng_L.randn(dtype=dtype))
                keys = (int(seed) & 0xFFFFFFFF) | ((glob + t * R_all) << 32)  # philox_keys
                u, v = mlf_matvec2(
                    keys, theta, th_mu, pars["M0"], pars["sigma_M"], pars["s"], impl=impl,
                    fresh_generator=rng_M if impl == "blocked" else None,
                )  # fmt: skip
            grad_dir = u - v  # M^mu (theta - theta^mu)
            if dynamics == "sgd":
                X = (theta * (0.5 * u - v)).sum(-1)
                max_x = torch.maximum(max_x, X.max())
                theta = theta - alpha * (L0mu * torch.exp(X))[:, None] * grad_dir
            else:
                theta = theta - alpha * L0mu[:, None] * grad_dir
        if (t + 1) % record_every == 0 and buf.n < n_rec:
            buf.append(theta[:, modes_t])
        if (t + 1) % check_every == 0 or t == n_steps - 1:
            _check(theta, max_x, max_exponent, t, alpha, dynamics, stiffness)
    traj = buf.view().reshape(-1, R, modes.size).cpu().numpy().astype(np.float64)
    return SimResult(
        theta=traj, record_every=record_every, modes=modes, dynamics=dynamics, alpha=alpha,
        n_steps=n_steps,
        info={"n_replicas": R, "impl": impl, "finite_K": None if landscape is None
              else landscape.n_minibatches, "temperature": temperature, "seed": seed,
              "max_exponent_seen": float(max_x), "dtype": str(dtype).removeprefix("torch."),
              "replica_offset": replica_offset, "total_replicas": R_all},
    )  # fmt: skip


def _check(theta, max_x, max_exponent, t, alpha, dynamics, stiffness):
    """Raise :class:`SimulationDiverged` naming the condition that failed.

    ``stiffness`` = alpha L0 max_i M_ii (M0 for SGD and Eq 12, the averaged M of Eq 10 for
    Langevin): the linearised step is stable only below 2."""
    bad = ~torch.isfinite(theta).all(dim=1)
    if not bool(bad.any() | (max_x > max_exponent)):  # one host read per check
        return
    nonfinite = bool(bad.any())
    too_big = float(max_x) > max_exponent
    if nonfinite:
        r = int(bad.nonzero()[0, 0])
        what = f"theta of replica {r} became non-finite (inf/NaN)"
    else:
        what = (
            f"the MLF exponent reached {float(max_x):.3g} > max_exponent={max_exponent:g} "
            f"(a minibatch loss above e^{max_exponent:g} L0^mu)"
        )
    if stiffness >= 2:
        advice = (
            f"alpha L0 max M_ii = {stiffness:.3g} >= 2, so the step overshoots the sharpest "
            f"mode: lower alpha below {2 * alpha / stiffness:.3g}"
        )
    else:
        advice = (
            f"alpha L0 max M_ii = {stiffness:.3g} < 2 (the mean step is stable), so a "
            "fluctuation drove a replica far out on the exponential MLF: lower alpha"
            + (" or raise max_exponent" if too_big else "")
        )
    raise SimulationDiverged(
        f"{dynamics} integration diverged by step {t + 1} with alpha={alpha:g}: {what}; {advice}"
    )
