"""Products with the random MLF Hessians M^mu without storing them (Sec IV, Eq 9).

One SGD step on the MLF of Eq 9 needs u = M^mu theta and v = M^mu theta^mu for each replica
(gradient M^mu (theta - theta^mu), exponent theta.(u/2 - v)). Implementations:

- ``triton``: :mod:`sgdyn.kernels.mlf_step_triton`, M^mu generated in-kernel from Philox keyed
  by (seed, mu, min(i,j), max(i,j)); O(N) memory per replica; CUDA or ``TRITON_INTERPRET=1``.
- ``twin``: the plain-torch twin; the same Philox4x32-10 + Box-Muller as ``tl.randn``
  reimplemented in int64 torch ops, M materialised densely (small N; for tests and for
  reproducing a kernel run exactly).
- ``blocked``: the fast CPU path; the upper triangle is drawn in row blocks from torch's own
  generator (keyed by (seed, mu) through ``manual_seed``), so memory is O(block N) and half
  the random numbers of a dense draw are needed. Same law, different random numbers than
  Philox.

:func:`mlf_matvec2` dispatches: Triton on CUDA tensors (``backend_for``), ``blocked`` elsewhere.
"""

from __future__ import annotations

import torch

from .dispatch import backend_for

_M32 = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85
MAX_TWIN_N = 4096


def philox_keys(seed: int, mu: torch.Tensor) -> torch.Tensor:
    """Pack (seed, mu) into the 64-bit Philox key: low 32 bits seed, high bits mu."""
    mu = torch.as_tensor(mu, dtype=torch.int64)
    if (mu < 0).any() or (mu >= 2**31).any():
        raise ValueError("minibatch ids mu must be in [0, 2^31) to form a Philox key")
    return (int(seed) & _M32) | (mu << 32)


def _philox4x32(k: torch.Tensor, off: torch.Tensor, n_rounds: int = 10):
    """Triton's ``randint4x(seed=k, offset=off)`` in int64 torch ops (first two outputs)."""
    k0 = k & _M32
    k1 = (k >> 32) & _M32
    c0 = off & _M32
    c1 = (off >> 32) & _M32
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    for _ in range(n_rounds):
        pb = _ROUND_B * c2  # wraps mod 2^64; bits 32..63 are the unsigned high word
        pa = _ROUND_A * c0
        n0 = ((pb >> 32) & _M32) ^ c1 ^ k0
        n2 = ((pa >> 32) & _M32) ^ c3 ^ k1
        c1 = pb & _M32
        c3 = pa & _M32
        c0, c2 = n0, n2
        k0 = (k0 + _KEY_A) & _M32
        k1 = (k1 + _KEY_B) & _M32
    return c0, c1


def _uint_to_uniform(x: torch.Tensor) -> torch.Tensor:
    x = torch.where(x >= 2**31, x - 2**32, x)  # bitcast to int32
    x = torch.where(x < 0, -x - 1, x)  # ~x
    return x.to(torch.float32) * torch.tensor(4.6566127342e-10, dtype=torch.float32)


def philox_randn_torch(keys: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Twin of ``tl.randn(key_r, offsets)``: (R, *offsets.shape) float32."""
    k = torch.as_tensor(keys, dtype=torch.int64).reshape(-1, *([1] * offsets.dim()))
    i1, i2 = _philox4x32(k, offsets.to(torch.int64)[None])
    u1 = torch.clamp(_uint_to_uniform(i1), min=1.0e-7)
    u2 = _uint_to_uniform(i2)
    th = torch.tensor(6.283185307179586, dtype=torch.float32) * u2
    r = torch.sqrt(torch.tensor(-2.0, dtype=torch.float32) * torch.log(u1))
    return r * torch.cos(th)


def mlf_dense_twin(keys, M0, sigma_M, s) -> torch.Tensor:
    """The matrices M^mu (R, N, N) that the Triton kernel generates for ``keys``, in M0's
    dtype (float32 Philox normals, products in float32 or float64 as the kernel does)."""
    N = M0.shape[0]
    if N > MAX_TWIN_N:
        raise ValueError(
            f"N={N} is too large for the dense twin (limit {MAX_TWIN_N}); use the matrix-free "
            "Triton kernel (CUDA) or the blocked path"
        )
    dev = M0.device
    i = torch.arange(N, device=dev, dtype=torch.int64)
    off = torch.minimum(i[:, None], i[None, :]) * N + torch.maximum(i[:, None], i[None, :])
    dt = M0.dtype if M0.dtype in (torch.float32, torch.float64) else torch.float32
    Z = philox_randn_torch(keys.to(dev), off).to(dt)
    s = s.to(dt)
    M = Z * (s[:, None] * s[None, :])
    diag = M0.to(dt) + sigma_M.to(dt) * torch.diagonal(Z, dim1=1, dim2=2)
    eye = torch.eye(N, dtype=torch.bool, device=dev)
    return torch.where(eye, torch.diag_embed(diag), M)


def mlf_matvec2_twin(keys, x, y, M0, sigma_M, s):
    """Dense twin of the Triton kernel: (M^mu_r x_r, M^mu_r y_r)."""
    M = mlf_dense_twin(keys, M0.to(x.dtype), sigma_M, s)
    return torch.einsum("rij,rj->ri", M, x), torch.einsum("rij,rj->ri", M, y)


def _blocked_apply(Zfn, X, M0, sigma_M, s, block):
    """U = M X with M's upper triangle drawn block row by block row; X (B, N, C)."""
    Bn, N, C = X.shape
    U = torch.zeros_like(X)
    dt = X.dtype
    s = s.to(dt)
    M0, sigma_M = M0.to(dt), sigma_M.to(dt)
    for a in range(0, N, block):
        b = min(a + block, N)
        Z = Zfn(b - a, N - a).to(dt)  # (B or 1, b-a, N-a): rows a..b, cols a..N
        dvals = M0[a:b] + sigma_M[a:b] * torch.diagonal(Z, dim1=-2, dim2=-1)  # (B|1, b-a)
        strict = torch.triu(Z * (s[a:b, None] * s[None, a:]), 1)  # j > i only
        U[:, a:b] += torch.matmul(strict, X[:, a:]) + dvals[..., None] * X[:, a:b]
        U[:, a:] += torch.matmul(strict.transpose(-1, -2), X[:, a:b])
    return U


def mlf_matvec2_blocked(keys, x, y, M0, sigma_M, s, *, fresh_generator=None, block=256):
    """Blocked CPU path (see module docstring). O(block N) memory.

    With ``fresh_generator`` (a torch.Generator, or an object whose ``randn(m, n, dtype=)``
    returns (R, m, n) normals, e.g. :class:`sgdyn.simulator.rng.ReplicaStreams`) every
    replica gets an independent matrix drawn on x's device in x's dtype (fresh-draw mode,
    keys unused); otherwise
    replicas sharing a key share M^mu, drawn from a generator seeded by the key.
    """
    X = torch.stack([x, y], dim=-1)
    dev = x.device
    if fresh_generator is not None:
        R = X.shape[0]

        def Zfn(m, n):
            if hasattr(fresh_generator, "randn"):  # per-replica streams (simulator.rng)
                return fresh_generator.randn(m, n, dtype=X.dtype)
            return torch.randn(R, m, n, generator=fresh_generator, device=dev, dtype=X.dtype)

        U = _blocked_apply(Zfn, X, M0, sigma_M, s, block)
        return U[..., 0], U[..., 1]
    U = torch.empty_like(X)
    uniq, inv = torch.unique(keys.cpu(), return_inverse=True)
    inv = inv.to(dev)
    for q, key in enumerate(uniq.tolist()):
        idx = (inv == q).nonzero().squeeze(1)
        g = torch.Generator(device=dev).manual_seed(int(key) & 0x7FFFFFFFFFFFFFFF)

        def Zfn(m, n, g=g):
            return torch.randn(1, m, n, generator=g, device=dev)

        U[idx] = _blocked_apply(Zfn, X[idx], M0, sigma_M, s, block)
    return U[..., 0], U[..., 1]


def mlf_matvec2(keys, x, y, M0, sigma_M, s, *, impl: str = "auto", fresh_generator=None):
    """(M^mu_r x_r, M^mu_r y_r) for all replicas; ``impl`` in auto|triton|twin|blocked.

    The state's dtype (float32 or float64, the same for x and y) is the precision of the
    step: results come back in it, and the O(N) ensemble parameters are taken in it."""
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"x and y must both be (R, N), got {tuple(x.shape)}, {tuple(y.shape)}")
    if x.dtype != y.dtype or x.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"x and y must share one dtype, float32 or float64, got {x.dtype} and {y.dtype}"
        )
    M0, sigma_M, s = (t.to(device=x.device, dtype=x.dtype) for t in (M0, sigma_M, s))
    if impl == "auto":
        impl = "triton" if backend_for(x) == "triton" else "blocked"
    if impl == "triton":
        from .mlf_step_triton import mlf_matvec2_triton

        return mlf_matvec2_triton(keys.to(x.device, torch.int64), x, y, M0, sigma_M, s)
    if impl == "twin":
        return mlf_matvec2_twin(keys.to(x.device), x, y, M0, sigma_M, s)
    if impl == "blocked":
        return mlf_matvec2_blocked(keys, x, y, M0, sigma_M, s, fresh_generator=fresh_generator)
    raise ValueError(f"impl must be auto, triton, twin or blocked, got {impl!r}")
