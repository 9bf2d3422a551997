"""Triton kernels for one batch of the exact streaming PCA: column means and the centred
scatter (X - mean)^T (X - mean).

Same contract as :func:`sgdyn.kernels.streaming_pca.batch_moments_torch`; the Chan merge of
batches stays in :class:`~sgdyn.kernels.streaming_pca.StreamingPCA` (O(N^2) elementwise).

The scatter kernel centres the tile as it loads it (no centred copy of X in memory) and,
the result being symmetric, computes only the tiles on and above the diagonal, writing each
off-diagonal tile twice (itself and its transpose): half the FLOPs of a full GEMM. float32
uses ``tl.dot(..., input_precision="ieee")`` (no TF32); float64 accumulates in float64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch_guard import check_launch


@triton.jit
def _col_mean_kernel(x_ptr, m_ptr, R, N, sx_r, sx_n, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    mn = rn < N
    acc = tl.zeros((BLOCK_N,), dtype=m_ptr.dtype.element_ty)
    for r0 in range(0, R, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R)
        x = tl.load(
            x_ptr + rr[:, None] * sx_r + rn[None, :] * sx_n,
            mask=(rr[:, None] < R) & mn[None, :],
            other=0.0,
        )
        acc += tl.sum(x, axis=0)
    tl.store(m_ptr + rn, acc / R, mask=mn)


@triton.jit
def _centred_scatter_kernel(
    x_ptr,
    m_ptr,
    c_ptr,
    R,
    N,
    sx_r,
    sx_n,
    sc_a,
    sc_b,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_a = tl.program_id(0)
    pid_b = tl.program_id(1)
    if pid_a > pid_b:  # lower tiles are the transposes of upper ones
        return
    ra = pid_a * BLOCK_N + tl.arange(0, BLOCK_N)
    rb = pid_b * BLOCK_N + tl.arange(0, BLOCK_N)
    ma = ra < N
    mb = rb < N
    mean_a = tl.load(m_ptr + ra, mask=ma, other=0.0)
    mean_b = tl.load(m_ptr + rb, mask=mb, other=0.0)
    acc = tl.zeros((BLOCK_N, BLOCK_N), dtype=c_ptr.dtype.element_ty)
    for r0 in range(0, R, BLOCK_R):
        rr = r0 + tl.arange(0, BLOCK_R)
        mr = rr < R
        m_ra = mr[:, None] & ma[None, :]
        m_rb = mr[:, None] & mb[None, :]
        xa = tl.load(x_ptr + rr[:, None] * sx_r + ra[None, :] * sx_n, mask=m_ra, other=0.0)
        xb = tl.load(x_ptr + rr[:, None] * sx_r + rb[None, :] * sx_n, mask=m_rb, other=0.0)
        xa = tl.where(m_ra, xa - mean_a[None, :], 0.0)
        xb = tl.where(m_rb, xb - mean_b[None, :], 0.0)
        acc = tl.dot(tl.trans(xa), xb, acc, input_precision=PRECISION)
    m_ab = ma[:, None] & mb[None, :]
    tl.store(c_ptr + ra[:, None] * sc_a + rb[None, :] * sc_b, acc, mask=m_ab)
    if pid_a != pid_b:
        tl.store(c_ptr + rb[None, :] * sc_a + ra[:, None] * sc_b, acc, mask=m_ab)


def batch_moments_triton(
    X: torch.Tensor, *, block_n: int | None = None, block_r: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (N,) and centred scatter (N, N) of a batch X (R, N) of float32/float64 snapshots
    (any strides)."""
    if X.ndim != 2:
        raise ValueError(f"X must be (n_snapshots, n_features), got {tuple(X.shape)}")
    check_launch("batch_moments_triton", {"X": X})
    R, N = X.shape
    if R == 0:
        raise ValueError("empty batch: the moments of zero snapshots are undefined")
    mean = torch.empty(N, device=X.device, dtype=X.dtype)
    scatter = torch.empty(N, N, device=X.device, dtype=X.dtype)
    if N == 0:
        return mean, scatter
    is64 = X.dtype == torch.float64
    bn = block_n or max(16, min(64 if not is64 else 32, triton.next_power_of_2(N)))
    br = block_r or max(16, min(32, triton.next_power_of_2(R)))
    _col_mean_kernel[(triton.cdiv(N, 128),)](
        X, mean, R, N, X.stride(0), X.stride(1), BLOCK_R=32, BLOCK_N=128
    )
    nt = triton.cdiv(N, bn)
    _centred_scatter_kernel[(nt, nt)](
        X,
        mean,
        scatter,
        R,
        N,
        X.stride(0),
        X.stride(1),
        scatter.stride(0),
        scatter.stride(1),
        BLOCK_R=br,
        BLOCK_N=bn,
        PRECISION="ieee",
    )
    return mean, scatter
