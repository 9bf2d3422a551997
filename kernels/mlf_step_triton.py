"""Triton kernel: matrix-free products with the random MLF Hessians M^mu (Sec IV, Eq 9).

Each program owns one replica r and a block of rows i. The entries of M^{mu_r} are generated
tile by tile from Philox (``tl.randn(key_r, offset)``) with ``offset = min(i,j) N + max(i,j)``,
so M is symmetric by construction, reproducible from (seed, mu), and never stored: memory is
O(N) per replica. ``key_r`` packs (seed, mu_r) (see :func:`sgdyn.kernels.mlf_step.philox_keys`).

    M_ii = M0_i + sigma_M,i Z_ii,   M_ij = s_i s_j Z_ij (i != j).

Outputs U = M X for the C = 2 right-hand sides X = (theta, theta^mu) of one step.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch_guard import check_launch, contiguous


@triton.jit
def _mlf_matvec2_kernel(
    keys_ptr, x_ptr, y_ptr, m0_ptr, sm_ptr, s_ptr, ux_ptr, uy_ptr,
    N,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0)
    pid_i = tl.program_id(1)
    key = tl.load(keys_ptr + r)
    rows = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    rmask = rows < N
    s_i = tl.load(s_ptr + rows, mask=rmask, other=0.0)
    m0_i = tl.load(m0_ptr + rows, mask=rmask, other=0.0)
    sm_i = tl.load(sm_ptr + rows, mask=rmask, other=0.0)
    acc_x = tl.zeros((BLOCK_I,), dtype=ux_ptr.dtype.element_ty)
    acc_y = tl.zeros((BLOCK_I,), dtype=ux_ptr.dtype.element_ty)
    base = r.to(tl.int64) * N
    for j0 in range(0, N, BLOCK_J):
        cols = j0 + tl.arange(0, BLOCK_J)
        cmask = cols < N
        xj = tl.load(x_ptr + base + cols, mask=cmask, other=0.0)
        yj = tl.load(y_ptr + base + cols, mask=cmask, other=0.0)
        s_j = tl.load(s_ptr + cols, mask=cmask, other=0.0)
        ii = rows[:, None].to(tl.int64)
        jj = cols[None, :].to(tl.int64)
        lo = tl.minimum(ii, jj)
        hi = tl.maximum(ii, jj)
        z = tl.randn(key, lo * N + hi).to(ux_ptr.dtype.element_ty)  # float32 draw
        m = tl.where(ii == jj, m0_i[:, None] + sm_i[:, None] * z, s_i[:, None] * s_j[None, :] * z)
        m = tl.where(rmask[:, None] & cmask[None, :], m, 0.0)
        acc_x += tl.sum(m * xj[None, :], axis=1)
        acc_y += tl.sum(m * yj[None, :], axis=1)
    tl.store(ux_ptr + base + rows, acc_x, mask=rmask)
    tl.store(uy_ptr + base + rows, acc_y, mask=rmask)


def mlf_matvec2_triton(keys, x, y, M0, sigma_M, s, block_i: int = 32, block_j: int = 64):
    """(M^mu_r x_r, M^mu_r y_r) for every replica r; x, y (R, N), M0, sigma_M, s (N,).

    float32 or float64, one dtype for all (checked by :func:`check_launch`, never cast):
    the Philox normals are float32 either way; float64 products and sums are in float64.
    ``keys`` (R,) int64 on the same device."""
    R, N = x.shape
    if y.shape != x.shape or keys.shape != (R,):
        raise ValueError(f"need x, y (R, N) and keys (R,), got {x.shape}, {y.shape}, {keys.shape}")
    for name, t in (("M0", M0), ("sigma_M", sigma_M), ("s", s)):
        if t.shape != (N,):
            raise ValueError(f"{name} must be ({N},), got {tuple(t.shape)}")
    check_launch(
        "mlf_matvec2_triton",
        {"x": x, "y": y, "M0": M0, "sigma_M": sigma_M, "s": s},
        {"keys": keys},
    )
    x, y, keys = contiguous(x), contiguous(y), contiguous(keys)
    ux = torch.empty_like(x)
    uy = torch.empty_like(y)
    grid = (R, triton.cdiv(N, block_i))
    _mlf_matvec2_kernel[grid](
        keys, x, y, contiguous(M0), contiguous(sigma_M), contiguous(s), ux, uy, N,
        BLOCK_I=block_i, BLOCK_J=block_j,
    )  # fmt: skip
    return ux, uy


@triton.jit
def _philox_randn_kernel(keys_ptr, off_ptr, out_ptr, n, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    pid = tl.program_id(1)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    key = tl.load(keys_ptr + r)
    off = tl.load(off_ptr + idx, mask=mask, other=0)
    tl.store(out_ptr + r.to(tl.int64) * n + idx, tl.randn(key, off), mask=mask)


def philox_randn_triton(keys, offsets, block: int = 256):
    """tl.randn(key_r, offsets) for each key: (R, n) float32 (for twin tests)."""
    check_launch("philox_randn_triton", {}, {"keys": keys, "offsets": offsets})
    offsets = contiguous(offsets)
    n = offsets.numel()
    out = torch.empty(keys.numel(), n, dtype=torch.float32, device=offsets.device)
    _philox_randn_kernel[(keys.numel(), triton.cdiv(n, block))](
        keys.contiguous(), offsets, out, n, BLOCK=block
    )
    return out
