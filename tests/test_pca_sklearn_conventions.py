"""StreamingPCA and SketchPCA follow scikit-learn's PCA interface, checked against
``sklearn.decomposition.PCA`` on the same data (its own numbers, signs included)."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA

from sgdyn.kernels import SketchPCA, StreamingPCA
from sgdyn.kernels.pca_base import NotFittedError
from sgdyn.kernels.streaming_pca import _thin_svd_gram

FITTED = (
    "mean_",
    "components_",
    "explained_variance_",
    "explained_variance_ratio_",
    "singular_values_",
    "noise_variance_",
    "n_components_",
    "n_samples_seen_",
    "n_features_in_",
)


def _data(T, N, seed=0):
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.arange(1, N + 1) ** 0.8
    Q = np.linalg.qr(rng.standard_normal((N, N)))[0]
    return (rng.standard_normal((T, N)) * scales) @ Q.T + 3.0 + np.linspace(0, 1, T)[:, None]


def _make(kind, k):
    # a sketch larger than the data never shrinks: exact, so it must match sklearn too
    return StreamingPCA(n_components=k) if kind == "exact" else SketchPCA(k, sketch_size=128)


@pytest.mark.parametrize("kind", ["exact", "sketch"])
@pytest.mark.parametrize("T,N,chunks", [(120, 30, 1), (120, 30, 7), (25, 60, 1), (25, 60, 3)])
def test_fitted_attributes_and_methods_match_sklearn(kind, T, N, chunks):
    X = _data(T, N, seed=T + N + chunks)
    k = 6
    ref = PCA(n_components=k, svd_solver="full").fit(X)
    est = _make(kind, k)
    for a in FITTED:
        assert not hasattr(est, a)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.components_  # noqa: B018
    if chunks == 1:
        est.fit(torch.from_numpy(X))
    else:
        for part in np.array_split(X, chunks):
            est.partial_fit(torch.from_numpy(part))
    Xt = torch.from_numpy(X)
    got = {a: getattr(est, a) for a in FITTED}
    np.testing.assert_allclose(got["mean_"].numpy(), ref.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["components_"].numpy(), ref.components_, atol=1e-8)
    for a in ("explained_variance_", "explained_variance_ratio_", "singular_values_"):
        np.testing.assert_allclose(got[a].numpy(), getattr(ref, a), rtol=1e-9)
    assert got["noise_variance_"] == pytest.approx(ref.noise_variance_, rel=1e-9)
    assert got["n_components_"] == ref.n_components_ and got["n_features_in_"] == N
    assert got["n_samples_seen_"] == T
    np.testing.assert_allclose(est.transform(Xt).numpy(), ref.transform(X), atol=1e-8)
    Z = ref.transform(X)
    np.testing.assert_allclose(
        est.inverse_transform(torch.from_numpy(Z)).numpy(), ref.inverse_transform(Z), atol=1e-8
    )
    np.testing.assert_allclose(est.get_covariance().numpy(), ref.get_covariance(), atol=1e-9)
    np.testing.assert_allclose(
        _make(kind, k).fit_transform(Xt).numpy(), ref.fit_transform(X), atol=1e-8
    )


def test_all_components_covariance_is_the_sample_covariance():
    X = _data(80, 12)
    est = StreamingPCA().fit(torch.from_numpy(X))
    np.testing.assert_allclose(est.get_covariance().numpy(), np.cov(X.T), atol=1e-12)
    np.testing.assert_allclose(est.covariance().numpy(), np.cov(X.T), atol=1e-12)
    Xr = est.inverse_transform(est.transform(torch.from_numpy(X))).numpy()
    np.testing.assert_allclose(Xr, X, atol=1e-10)  # all components: lossless


def test_partial_fit_invalidates_and_recomputes_lazily():
    X = _data(90, 20, seed=4)
    est = StreamingPCA(n_components=4)
    est.partial_fit(torch.from_numpy(X[:50]))
    first = est.components_.clone()  # computed on first access
    est.partial_fit(torch.from_numpy(X[50:]))
    assert "components_" not in vars(est)  # dropped by the new data
    ref = PCA(n_components=4, svd_solver="full").fit(X)
    np.testing.assert_allclose(est.components_.numpy(), ref.components_, atol=1e-8)
    assert not torch.allclose(first, est.components_)
    assert est.n_samples_seen_ == 90
    est.reset()
    assert not hasattr(est, "n_samples_seen_")


@pytest.mark.parametrize("cls", [StreamingPCA, SketchPCA])
def test_get_params_set_params_clone(cls):
    est = cls(n_components=3)
    p = est.get_params()
    assert p["n_components"] == 3 and p["dtype"] == torch.float64
    c = clone(est)
    assert type(c) is cls and c.get_params() == p
    est.fit(torch.from_numpy(_data(30, 10)))
    est.set_params(n_components=2)
    assert est.n_components == 2 and not hasattr(est, "components_")
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(whiten=True)
    assert "n_components=2" in repr(est)


def test_float32_accumulation_is_refused_and_float64_keeps_an_sgd_like_spectrum():
    """Issue 12: var1/var2 = 200, gamma = 3, 400 snapshots. float64 keeps every component up
    to rank 200 (sklearn as the reference); float32 accumulation is refused with the reason."""
    rng = np.random.default_rng(0)
    T, N = 400, 600
    i = np.arange(1, T)
    lam = i**-3.0
    lam[0] = 200 * lam[1]
    Q = np.linalg.qr(rng.standard_normal((N, T - 1)))[0]
    X = (rng.standard_normal((T, T - 1)) * np.sqrt(lam)) @ Q.T
    ref = PCA(svd_solver="full").fit(X)
    est = StreamingPCA().fit(torch.from_numpy(X.astype(np.float32)))
    # float32 snapshots, float64 accumulation: rank 200 within the float32 rounding of input
    assert est.components_.shape[0] >= 300
    rel = abs(float(est.explained_variance_[199]) / ref.explained_variance_[199] - 1)
    assert rel < 1e-3
    with pytest.raises(ValueError, match="float64.*spectrum"):
        StreamingPCA(dtype=torch.float32)
    with pytest.raises(ValueError, match="float64"):
        SketchPCA(dtype=torch.float16)
    # what float32 accumulation gave before it was refused: the Gram path keeps only the
    # eigenvalues above ~N eps32 lambda_1 (8 of 399 here; the issue saw 7)
    Xf = torch.from_numpy(X).float()
    S, _ = _thin_svd_gram(Xf - Xf.mean(0))
    assert S.shape[0] < 20
