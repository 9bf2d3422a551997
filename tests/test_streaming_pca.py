"""The streaming PCA estimator against scikit-learn's PCA on the same snapshots."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from sgdyn.kernels import StreamingPCA
from sgdyn.kernels.pca_base import NotFittedError


def _snapshots(T=300, N=40, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.arange(1, N + 1) ** 1.2
    X = rng.standard_normal((T, N)) * scales @ np.linalg.qr(rng.standard_normal((N, N)))[0]
    X += np.linspace(0, 3, T)[:, None] * rng.standard_normal(N)  # a drift, like PC1
    return X + offset


def _align(a, b):
    return a * np.sign(np.sum(a * b, axis=1, keepdims=True))


@pytest.mark.parametrize("chunks", [1, 7, 300])
def test_matches_sklearn_pca(chunks):
    X = _snapshots()
    ref = PCA().fit(X)
    est = StreamingPCA()
    for part in np.array_split(X, chunks):
        est.partial_fit(torch.from_numpy(part))
    est.finalize()
    var = est.explained_variance_.numpy()
    assert np.allclose(var, ref.explained_variance_, rtol=1e-9, atol=1e-14)
    k = 20
    comps = est.components_.numpy()[:k]
    assert np.allclose(comps, ref.components_[:k], atol=1e-7)  # signs included
    assert np.allclose(est.mean_.numpy(), ref.mean_)
    theta = est.transform(torch.from_numpy(X)).numpy()[:, :k]
    assert np.allclose(theta, ref.transform(X)[:, :k], atol=1e-7)


def test_large_offset_float32_stays_accurate():
    """Weights far from zero (offset 1e3) in float32: the centred merge keeps precision."""
    X = _snapshots(offset=1e3).astype(np.float32)
    ref = PCA().fit(X.astype(np.float64))
    est = StreamingPCA()
    for part in np.array_split(X, 10):
        est.partial_fit(torch.from_numpy(part))
    est.finalize()
    top = est.explained_variance_.numpy()[:10]
    assert np.allclose(top, ref.explained_variance_[:10], rtol=1e-4)


def test_signs_equal_sklearn_components_without_realignment():
    """Independent reference: scikit-learn's own components_, signs included (its svd_flip
    convention), for both the moment path (n > N) and the Gram path (n < N)."""
    for T, N in ((300, 40), (30, 80)):
        X = _snapshots(T=T, N=N, seed=3)
        ref = PCA(n_components=5, svd_solver="full").fit(X)
        est = StreamingPCA(n_components=5).fit(torch.from_numpy(X))
        np.testing.assert_allclose(est.components_.numpy(), ref.components_, atol=1e-8)
        np.testing.assert_allclose(
            est.transform(torch.from_numpy(X)).numpy(), ref.transform(X), atol=1e-8
        )


def test_bad_inputs():
    est = StreamingPCA()
    with pytest.raises(ValueError, match="2-D"):
        est.partial_fit(torch.zeros(5))
    est.partial_fit(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(torch.full((2, 4), float("nan")))
    with pytest.raises(ValueError, match="at least 2"):
        StreamingPCA().partial_fit(torch.zeros(1, 4)).finalize()
    with pytest.raises(NotFittedError, match="not fitted"):
        StreamingPCA().transform(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="float64"):
        StreamingPCA(dtype=torch.float32)


def test_wide_window_fit_matches_sklearn_and_keeps_moments():
    """n < N (a window shorter than the weight count): Gram path, exact, and mergeable."""
    X = _snapshots(T=60, N=200, seed=5)
    ref = PCA().fit(X)
    est = StreamingPCA().fit(torch.from_numpy(X))
    r = 59  # rank after centring
    assert est.components_.shape == (r, 200)
    assert np.allclose(est.explained_variance_.numpy(), ref.explained_variance_[:r], rtol=1e-8)
    comps = est.components_.numpy()[:30]
    assert np.allclose(_align(comps, ref.components_[:30]), ref.components_[:30], atol=1e-7)
    # merging more snapshots after a window fit equals fitting everything by moments
    Y = _snapshots(T=40, N=200, seed=6)
    est.partial_fit(torch.from_numpy(Y)).finalize()
    both = PCA().fit(np.vstack([X, Y]))
    top = est.explained_variance_.numpy()[:20]
    assert np.allclose(top, both.explained_variance_[:20], rtol=1e-8)
