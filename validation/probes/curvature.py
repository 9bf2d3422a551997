"""Curvature of the probed layer beside its flatness: what PyHessian users expect.

All of it runs on Hessian-vector products of the *full* loss L (Eq 1) restricted to the
probed parameter, ``land.hvp(w, V)`` (torch.func forward-over-reverse, never an N x N
matrix):

- :func:`directional_curvature`: p_i.H.p_i and H p_i along given directions (the PCA p_i);
- :func:`hessian_eigenpairs`: the top eigenpairs of H by Lanczos (``scipy.sparse.linalg.eigsh``
  on a ``LinearOperator`` over HVPs, seeded start vector);
- :func:`curvature_analysis`: both, plus how F_i relates to the curvature along p_i (the
  exact relation F_i^2 = 8 / (pHp / L0 - (g.p / L0)^2) of :mod:`sgdyn.theory.curvature`)
  and how well the p_i align with Hessian eigenvectors, each beside its null from random
  directions measured with the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from sgdyn.theory.curvature import (
    eigvec_cosine,
    flatness_from_curvature,
    random_overlap_null,
    subspace_overlap,
)

__all__ = [
    "CurvatureResult",
    "curvature_analysis",
    "directional_curvature",
    "hessian_eigenpairs",
]


def directional_curvature(land, w0, directions) -> tuple[np.ndarray, torch.Tensor]:
    """``(pHp, HP)``: p_k.H.p_k / |p_k|^2 (float64 (K,)) and H p_k ((K, N)) at ``w0``."""
    P = land.as_directions(directions)
    HP = land.hvp(w0, P)
    pHp = (P.double() * HP.double()).sum(1) / (P.double() ** 2).sum(1)
    return pHp.cpu().numpy(), HP


def hessian_eigenpairs(
    land,
    w0,
    k: int = 20,
    *,
    which: str = "LA",
    tol: float = 1e-6,
    maxiter: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top-``k`` eigenpairs of the probe's Hessian at ``w0`` by Lanczos.

    ``which``: ``"LA"`` largest algebraic (the stiffest directions, default), ``"SA"``
    smallest, ``"LM"`` largest magnitude (as PyHessian's power iteration). ``tol`` is
    eigsh's relative accuracy (float32 models give HVPs to ~1e-6, so do not ask for less).
    Returns ``(eigenvalues (k,) descending, eigenvectors (k, N) float64, n_matvec)``.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = land.n_params
    if not 1 <= k < n:
        raise ValueError(f"k must be in 1..{n - 1} for a {n}-parameter probe, got {k}")
    w0 = land.as_point(w0, "w0")
    count = [0]

    def matvec(v):
        count[0] += 1
        v = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(-1))
        return land.hvp(w0, v[None])[0].double().cpu().numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    vals, vecs = eigsh(op, k=k, which=which, tol=tol, maxiter=maxiter, v0=v0)
    order = np.argsort(vals)[::-1]
    return vals[order], vecs[:, order].T.copy(), count[0]


@dataclass
class CurvatureResult:
    """Curvature along the given directions and the top of the Hessian spectrum.

    Per direction k (rows of the probed ``directions``): ``pHp``, ``grad_proj`` (g.p_k),
    ``F_hessian`` (F from the curvature of ln L, exact relation), ``F_hessian_min`` (the
    minimum form 8 L0 / pHp), ``eig_cosine`` (cos(p_k, H p_k)); ``null_eig_cosine`` the
    same for ``n_null`` random unit directions. ``eigenvalues`` / ``eigenvectors`` the top
    Hessian eigenpairs (Lanczos), ``top_in_span`` the fraction of each top eigenvector
    inside the span of the directions (null: ``span_null`` = K / N), ``best_match`` its
    largest squared overlap with a single direction (and ``best_match_index``).
    """

    L0: float
    pHp: np.ndarray
    grad_proj: np.ndarray
    F_hessian: np.ndarray
    F_hessian_min: np.ndarray
    eig_cosine: np.ndarray
    null_eig_cosine: np.ndarray
    null_pHp: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    top_in_span: np.ndarray
    span_null: float
    best_match: np.ndarray
    best_match_index: np.ndarray
    n_matvec: int
    timings: dict = field(default_factory=dict)

    def relation(self, F, first: int = 2) -> dict:
        """How measured flatness ``F`` (per direction) relates to the curvature prediction:
        median and 5-95 % of F / F_hessian over directions ``first``.. (1-based), and the
        power-law slope of F vs pHp (Eq 7 near a minimum: -1/2)."""
        F = np.asarray(F, dtype=np.float64)
        sel = np.zeros(F.shape, bool)
        sel[first - 1 :] = True
        r = F / self.F_hessian
        ok = sel & np.isfinite(r) & (r > 0)
        out = {"n": int(ok.sum())}
        if ok.sum() >= 1:
            out.update(
                median_ratio=float(np.median(r[ok])),
                p05_ratio=float(np.percentile(r[ok], 5)),
                p95_ratio=float(np.percentile(r[ok], 95)),
            )
        pos = sel & np.isfinite(F) & (F > 0) & (self.pHp > 0)
        if pos.sum() >= 3:
            slope, _ = np.polyfit(np.log(self.pHp[pos]), np.log(F[pos]), 1)
            out["loglog_slope_F_vs_pHp"] = float(slope)
        return out

    def summary(self, F_ewidth=None, F_quadratic=None, first: int = 2) -> dict:
        """JSON-able numbers (the ``curvature.*`` keys of the reproduce summary)."""
        sel = slice(first - 1, None)
        cos = self.eig_cosine[sel]
        out = {
            "L0": self.L0,
            "n_directions": int(self.pHp.shape[0]),
            "pHp": self.pHp.tolist(),
            "grad_proj": self.grad_proj.tolist(),
            "F_hessian": self.F_hessian.tolist(),
            "n_nonconvex_lnL": int((~np.isfinite(self.F_hessian)).sum()),
            "hessian_top_eigenvalues": self.eigenvalues.tolist(),
            "lanczos_n_matvec": self.n_matvec,
            "pHp_max_over_lambda_max": float(np.max(self.pHp) / self.eigenvalues[0])
            if self.eigenvalues.size and self.eigenvalues[0] > 0
            else float("nan"),
            "alignment": {
                "eig_cosine_median": float(np.nanmedian(cos)) if cos.size else float("nan"),
                "eig_cosine_p95": float(np.nanpercentile(cos, 95)) if cos.size else float("nan"),
                "null_eig_cosine_median": float(np.nanmedian(self.null_eig_cosine)),
                "null_eig_cosine_p95": float(np.nanpercentile(self.null_eig_cosine, 95)),
                "top_eigvec_in_span_mean": float(np.mean(self.top_in_span)),
                "span_null": self.span_null,
                "top_eigvec_best_match_median": float(np.median(self.best_match)),
                "first_direction_index": first,
            },
            "timings": self.timings,
        }
        if F_ewidth is not None:
            out["relation_ewidth"] = self.relation(F_ewidth, first)
        if F_quadratic is not None:
            out["relation_quadratic"] = self.relation(F_quadratic, first)
        return out


def curvature_analysis(
    land,
    w0,
    directions,
    *,
    L0: float | None = None,
    n_eig: int = 20,
    n_null: int = 32,
    tol: float = 1e-6,
    seed: int = 0,
) -> CurvatureResult:
    """Curvature along ``directions`` (K, N; e.g. PCA components), the top-``n_eig``
    Hessian eigenpairs and the alignment numbers with their random-direction nulls."""
    t0 = time.perf_counter()
    w0 = land.as_point(w0, "w0")
    P = land.as_directions(directions)
    P = P / P.norm(dim=1, keepdim=True)
    loss, grad = land.full_loss_and_grad(w0)
    L0 = float(loss) if L0 is None else float(L0)
    pHp, HP = directional_curvature(land, w0, P)
    gp = (P.double() @ grad.double()).cpu().numpy()
    g = torch.Generator().manual_seed(int(seed) + 12345)
    R = torch.randn(n_null, land.n_params, generator=g, dtype=torch.float64)
    R = (R / R.norm(dim=1, keepdim=True)).to(land.device, land.dtype)
    null_pHp, HR = directional_curvature(land, w0, R)
    t1 = time.perf_counter()
    k = min(n_eig, land.n_params - 1)
    evals, evecs, n_mv = hessian_eigenpairs(land, w0, k, tol=tol, seed=seed)
    t2 = time.perf_counter()
    Pn = P.double().cpu().numpy()
    q, _ = np.linalg.qr(Pn.T)  # orthonormal basis of span(P) (P may be only nearly so)
    in_span = subspace_overlap(q.T, evecs)
    sq = (Pn @ evecs.T) ** 2  # (K, k)
    return CurvatureResult(
        L0=L0,
        pHp=pHp,
        grad_proj=gp,
        F_hessian=flatness_from_curvature(L0, pHp, gp),
        F_hessian_min=flatness_from_curvature(L0, pHp),
        eig_cosine=eigvec_cosine(Pn, HP.double().cpu().numpy()),
        null_eig_cosine=eigvec_cosine(R.double().cpu().numpy(), HR.double().cpu().numpy()),
        null_pHp=null_pHp,
        eigenvalues=evals,
        eigenvectors=evecs,
        top_in_span=in_span,
        span_null=random_overlap_null(min(P.shape[0], land.n_params), land.n_params),
        best_match=sq.max(0),
        best_match_index=sq.argmax(0) + 1,
        n_matvec=n_mv,
        timings={"directional_s": t1 - t0, "lanczos_s": t2 - t1},
    )
