"""Sketched streaming PCA (Frequent Directions) for trajectories where N x N does not fit.

The exact estimator (:class:`~sgdyn.kernels.StreamingPCA`) keeps the N x N centred scatter
M2. Here M2 is only ever touched as a sum of row outer products: by Chan's pairwise update
a batch b adds its own centred rows (x - mean_b) plus one rank-one correction row
sqrt(n_a n_b / n) (mean_b - mean_a), so M2 = A^T A for the stacked matrix A of those rows.
Frequent Directions (Liberty 2013; Ghashami, Liberty, Phillips & Woodruff 2016) streams A
into an ``sketch_size`` x N matrix B (memory 2 ell N; each shrink an O(ell^2 N) SVD) with

    0  <=  A^T A - B^T B  <=  Delta I,    Delta = sum of the shrinkage values
                                                <= ||A - A_k||_F^2 / (ell - k) for all k < ell,

where ||A - A_k||_F^2 = sum_{i>k} lambda_i(M2) is the scatter outside the top k directions.
Delta is tracked exactly (``error_bound_``, in scatter units; divide by n - 1 for covariance
units), so every eigenvalue satisfies lambda_i - Delta <= lambda_i(B^T B) <= lambda_i, and
the captured variance of each sketched component is within Delta of the exact one. A
trajectory's PCA spectrum decays fast (the paper's sigma_i^2 follow a power law), so an ell
a few times the number of wanted components gives near-exact leading components.
"""

from __future__ import annotations

import torch

from .pca_base import BasePCA


class SketchPCA(BasePCA):
    """Frequent-Directions streaming PCA with :class:`StreamingPCA`'s interface.

    Parameters
    ----------
    n_components : components kept (None: ``sketch_size``; at most ``sketch_size``).
    sketch_size : ell, the number of sketch rows (default ``max(64, 4 n_components)``).
    dtype : accumulation dtype; float64 only (:mod:`sgdyn.kernels.pca_base`).

    Fitted attributes (scikit-learn names, :class:`~sgdyn.kernels.pca_base.BasePCA`):
    ``mean_``, ``components_`` (k, N), ``explained_variance_`` (k,),
    ``explained_variance_ratio_``, ``total_variance_`` (exact: the trace is tracked
    separately), ``n_samples_seen_``; plus ``error_bound_`` (Delta, in scatter units) and
    ``variance_error_bound_`` = Delta / (n - 1).
    """

    _extra_fitted = ("error_bound_", "variance_error_bound_")

    def __init__(
        self,
        n_components: int | None = None,
        sketch_size: int | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        if n_components is not None and n_components < 1:
            raise ValueError(f"n_components must be >= 1 or None, got {n_components}")
        ell = sketch_size if sketch_size is not None else max(64, 4 * (n_components or 0))
        if ell < 1:
            raise ValueError(f"sketch_size must be >= 1, got {sketch_size}")
        if n_components is not None and n_components > ell:
            raise ValueError(
                f"n_components={n_components} exceeds sketch_size={ell}; raise sketch_size"
            )
        self.n_components = n_components
        self.sketch_size = sketch_size
        self.dtype = self._check_dtype(dtype)
        self._ell = ell
        self.reset()

    @property
    def sketch_rows(self) -> int:
        """ell, the sketch size in use (``sketch_size`` or its default)."""
        return self._ell

    def reset(self) -> SketchPCA:
        """Forget everything seen (parameters stay)."""
        self._clear_fit(all_state=True)
        self._mean: torch.Tensor | None = None
        self._B: torch.Tensor | None = None  # (2 ell, N) buffer, rows [0, _fill) in use
        self._fill = 0
        self._delta = 0.0
        self._trace = 0.0
        return self

    def _running_mean(self) -> torch.Tensor:
        return self._mean

    # -- streaming ----------------------------------------------------------------------------
    def _partial_fit(self, X: torch.Tensor) -> None:
        nb = X.shape[0]
        mean_b = X.mean(dim=0)
        if self._mean is None:
            self._mean = mean_b
            self._B = torch.zeros(2 * self._ell, X.shape[1], dtype=self.dtype, device=X.device)
        else:
            na = self.__dict__.get("n_samples_seen_", 0)
            n = na + nb
            delta = mean_b - self._mean
            self._append((delta * (na * nb / n) ** 0.5)[None])
            self._mean = self._mean + delta * (nb / n)
        if nb > 1:
            self._append(X - mean_b)

    def _append(self, rows: torch.Tensor) -> None:
        self._trace += float((rows * rows).sum())
        i = 0
        cap = self._B.shape[0]
        while i < rows.shape[0]:
            if self._fill == cap:
                self._shrink()
            take = min(cap - self._fill, rows.shape[0] - i)
            self._B[self._fill : self._fill + take] = rows[i : i + take]
            self._fill += take
            i += take

    def _shrink(self) -> None:
        """One Frequent-Directions step: keep ell rows, subtract the ell-th squared singular
        value from every squared singular value (adds it to the error bound Delta)."""
        ell = self._ell
        s, vt = _svd_rows(self._B[: self._fill])
        s2 = s * s
        shrink = float(s2[ell]) if s2.shape[0] > ell else 0.0
        keep = min(ell, s2.shape[0])
        new_s = (s2[:keep] - shrink).clamp_min(0).sqrt()
        self._B.zero_()
        self._B[:keep] = new_s[:, None] * vt[:keep]
        self._fill = keep
        self._delta += shrink

    # -- results ------------------------------------------------------------------------------
    def _decompose(self):
        n = self.n_samples_seen_
        s, vt = _svd_rows(self._B[: self._fill])
        k = min(self.n_components or self._ell, vt.shape[0])
        extra = {"error_bound_": self._delta, "variance_error_bound_": self._delta / (n - 1)}
        return (s[:k] ** 2) / (n - 1), vt[:k], self._trace / (n - 1), extra

    def covariance(self) -> torch.Tensor:
        """The sketched covariance B^T B / (n - 1), (N, N): only for small N (diagnostics)."""
        n = self.__dict__.get("n_samples_seen_", 0)
        if n < 2:
            raise ValueError(f"PCA needs at least 2 snapshots, got {n}")
        B = self._B[: self._fill]
        return B.T @ B / (n - 1)


def _svd_rows(B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values and right singular vectors of a short-wide B (r, N), r << N, through
    the r x r Gram matrix: one GEMM + a small eigh, ~10x faster than an SVD of B. In float64
    the eigenvalue error is ~eps * s_max^2, far below the sketch's own error Delta."""
    if B.shape[0] == 0:
        return B.new_zeros(0), B.new_zeros(0, B.shape[1])
    gram = B @ B.T
    evals, u = torch.linalg.eigh(gram)
    evals, u = evals.flip(0).clamp_min(0), u.flip(1)
    tol = float(evals[0]) * B.shape[0] * torch.finfo(B.dtype).eps * 10
    r = int((evals > tol).sum())
    s = evals.sqrt()
    vt = (u[:, :r].T @ B) / s[:r, None]
    return s[:r], vt
