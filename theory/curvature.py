"""Curvature beside flatness: the exact link between F_i and the Hessian, and alignment nulls.

Eq 7 fits ``ln L_i(a) = ln L0 + 4 a^2 / F_i^2`` near a = 0, so F_i is set by the curvature
of **ln L**, not of L. Along a unit direction p with gradient g and Hessian H of L at w0,

    d/da ln L   = (g.p) / L,
    d2/da2 ln L = (p.H.p) / L - ((g.p) / L)^2,

so matching the second derivative at a = 0 gives, exactly,

    F^2 = 8 / [ (p.H.p) / L0 - (g.p)^2 / L0^2 ]                          (*)

which is the issue's ``F^2 = 8 L0 / (p.H.p)`` at a stationary point along p (g.p = 0), and
larger than it (flatter) wherever the loss is tilted along p (PC1's drift). For a profile of
exactly Eq 7's form the e-width equals (*); the ratio e-width / (*) measures how far a real
profile is from it (the e-width is non-local: it reaches e L0).

Alignment (the Langevin contrast, Eq 16, assumes PCA directions are Hessian eigenvectors):

- ``eigvec_cosine``: cos(p, H p) = p.H.p / |H p|, 1 exactly for an eigenvector; the null is
  the same number for random unit directions (measured with the same code);
- ``subspace_overlap``: the mean squared projection of one orthonormal set onto the span of
  another, ||A B^T||_F^2 / k_B, 1 when B lies in span(A); its null for a uniformly random
  k_A-dimensional span in R^N is exactly k_A / N (:func:`random_overlap_null`).

Numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "eigvec_cosine",
    "flatness_from_curvature",
    "lnL_curvature",
    "random_overlap_null",
    "subspace_overlap",
]


def lnL_curvature(L0, pHp, gp=0.0) -> np.ndarray:
    """d^2 ln L / da^2 at a = 0 along unit directions: pHp / L0 - (gp / L0)^2 (module doc)."""
    L0 = float(L0)
    if not (np.isfinite(L0) and L0 > 0):
        raise ValueError(f"L0 must be a positive finite loss, got {L0}")
    pHp = np.asarray(pHp, dtype=np.float64)
    gp = np.broadcast_to(np.asarray(gp, dtype=np.float64), pHp.shape)
    return pHp / L0 - (gp / L0) ** 2


def flatness_from_curvature(L0, pHp, gp=0.0) -> np.ndarray:
    """F_i from the local curvature of ln L (equation (*) of the module doc, Eq 7 exactly).

    ``pHp``: p_i.H.p_i of the loss L (not ln L) for unit p_i; ``gp``: g.p_i (0: the
    issue's form 8 L0 / pHp). NaN where ln L is not convex along p_i (no quadratic minimum
    to fit: Eq 7 does not apply there).
    """
    k = lnL_curvature(L0, pHp, gp)
    out = np.full(k.shape, np.nan)
    ok = k > 0
    out[ok] = np.sqrt(8.0 / k[ok])
    return out


def eigvec_cosine(P, HP) -> np.ndarray:
    """cos(p_k, H p_k) for rows of ``P`` (K, N) and ``HP`` (K, N): 1 for eigenvectors
    (the sign says whether the curvature is positive)."""
    P = np.asarray(P, dtype=np.float64)
    HP = np.asarray(HP, dtype=np.float64)
    if P.shape != HP.shape or P.ndim != 2:
        raise ValueError(f"P and HP must both be (K, N), got {P.shape} and {HP.shape}")
    num = (P * HP).sum(1)
    den = np.linalg.norm(P, axis=1) * np.linalg.norm(HP, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def subspace_overlap(A, B) -> np.ndarray:
    """Fraction of each row of ``B`` (k_B, N) inside span(rows of ``A``) (k_A, N): ||A b||^2
    for orthonormal rows of A and unit rows b. Mean it for the subspace overlap."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise ValueError(f"A and B must be (k, N) with the same N, got {A.shape}, {B.shape}")
    gram = A @ A.T
    if not np.allclose(gram, np.eye(A.shape[0]), atol=1e-6):
        raise ValueError("rows of A must be orthonormal (e.g. PCA components)")
    bn = np.linalg.norm(B, axis=1)
    if np.any(bn == 0):
        raise ValueError("rows of B must be non-zero")
    return ((A @ B.T) ** 2).sum(0) / bn**2


def random_overlap_null(k_span: int, n: int) -> float:
    """Expected fraction of a fixed unit vector inside a uniformly random k-dim span of R^n
    (equivalently of a random unit vector in a fixed span): exactly k / n."""
    if not 0 <= k_span <= n or n < 1:
        raise ValueError(f"need 0 <= k_span <= n, n >= 1; got k_span={k_span}, n={n}")
    return k_span / n
