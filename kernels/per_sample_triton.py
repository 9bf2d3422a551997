"""Fused Triton kernel for all per-sample gradient projections of a linear layer.

out[s, k] = sum_f G[s, f] P[k, f] with G[s, f] = delta[s, f // d_in] a[s, f % d_in]: a GEMM
whose left operand (the per-sample gradients) is formed tile by tile in registers from a and
delta and never written to memory. One program computes a (BLOCK_S, BLOCK_K) tile of the
output, looping over the flattened weight index f in steps of BLOCK_F.

Precision: ``tl.dot`` on float32 defaults to TF32 on Ampere+ GPUs (10-bit mantissa). The
default here is ``precision="ieee"`` (true float32 products, float32 accumulation), so the
kernel agrees with the torch twin to float32 rounding; ``precision="tf32"`` is faster on
GPUs with relative error ~1e-3. float64 inputs accumulate in float64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch_guard import check_launch


@triton.jit
def _projections_kernel(
    a_ptr,
    d_ptr,
    p_ptr,
    o_ptr,
    S,
    K,
    D_IN,
    D,
    sa_s,
    sa_j,
    sd_s,
    sd_i,
    sp_k,
    sp_f,
    so_s,
    so_k,
    BLOCK_S: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_F: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_s = tl.program_id(0)
    pid_k = tl.program_id(1)
    rs = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    ms = rs < S
    mk = rk < K
    acc = tl.zeros((BLOCK_S, BLOCK_K), dtype=o_ptr.dtype.element_ty)
    for f0 in range(0, D, BLOCK_F):
        rf = f0 + tl.arange(0, BLOCK_F)
        mf = rf < D
        i = rf // D_IN
        j = rf - i * D_IN
        m_sf = ms[:, None] & mf[None, :]
        dv = tl.load(d_ptr + rs[:, None] * sd_s + i[None, :] * sd_i, mask=m_sf, other=0.0)
        av = tl.load(a_ptr + rs[:, None] * sa_s + j[None, :] * sa_j, mask=m_sf, other=0.0)
        g = dv * av  # (BLOCK_S, BLOCK_F) tile of per-sample gradients, registers only
        pv = tl.load(
            p_ptr + rk[:, None] * sp_k + rf[None, :] * sp_f,
            mask=mk[:, None] & mf[None, :],
            other=0.0,
        )
        acc = tl.dot(g, tl.trans(pv), acc, input_precision=PRECISION)
    tl.store(o_ptr + rs[:, None] * so_s + rk[None, :] * so_k, acc, mask=ms[:, None] & mk[None, :])


def _pow2_clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(n, 1))))


def linear_projections_triton(
    a: torch.Tensor,
    delta: torch.Tensor,
    P: torch.Tensor,
    *,
    precision: str = "ieee",
    block_s: int | None = None,
    block_k: int | None = None,
    block_f: int | None = None,
) -> torch.Tensor:
    """Triton version of :func:`sgdyn.kernels.per_sample.linear_projections` (2-D inputs).

    ``a`` (S, d_in), ``delta`` (S, d_out), ``P`` (K, d_out * d_in) or (K, d_out, d_in); any
    strides (the kernel reads through them). Returns (S, K) in the inputs' dtype.
    """
    if precision not in ("ieee", "tf32", "tf32x3"):
        raise ValueError(f"precision must be 'ieee', 'tf32' or 'tf32x3', got {precision!r}")
    if a.ndim != 2 or delta.ndim != 2:
        raise ValueError(
            f"the Triton kernel takes 2-D a (S, d_in) and delta (S, d_out), got "
            f"{tuple(a.shape)} and {tuple(delta.shape)}"
        )
    S, d_in = a.shape
    d_out = delta.shape[1]
    if delta.shape[0] != S:
        raise ValueError(f"a has {S} samples but delta has {delta.shape[0]}")
    D = d_in * d_out
    if P.ndim == 3:
        if tuple(P.shape[1:]) != (d_out, d_in):
            raise ValueError(f"P must be (K, {d_out}, {d_in}), got {tuple(P.shape)}")
        P = P.reshape(P.shape[0], D)
    if P.ndim != 2 or P.shape[1] != D:
        raise ValueError(f"P must be (K, {D}) or (K, {d_out}, {d_in}), got {tuple(P.shape)}")
    _, dtype = check_launch("linear_projections_triton", {"a": a, "delta": delta, "P": P})
    K = P.shape[0]
    out = torch.empty(S, K, device=a.device, dtype=dtype)
    if S == 0 or K == 0:
        return out
    if D == 0:
        return out.zero_()
    bs = block_s or _pow2_clamp(S, 16, 64)
    bk = block_k or _pow2_clamp(K, 16, 64)
    bf = block_f or _pow2_clamp(D, 16, 64 if dtype == torch.float32 else 32)
    grid = (triton.cdiv(S, bs), triton.cdiv(K, bk))
    _projections_kernel[grid](
        a,
        delta,
        P,
        out,
        S,
        K,
        d_in,
        D,
        a.stride(0),
        a.stride(1),
        delta.stride(0),
        delta.stride(1),
        P.stride(0),
        P.stride(1),
        out.stride(0),
        out.stride(1),
        BLOCK_S=bs,
        BLOCK_K=bk,
        BLOCK_F=bf,
        PRECISION=precision if dtype == torch.float32 else "ieee",
    )
    return out
