"""Streaming PCA kernels: the Triton batch-moment kernel (interpreted on the CPU) against its
torch twin and scikit-learn; the Frequent-Directions sketch against exact PCA and its bound;
the recorder with either estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from torch import nn

from sgdyn.kernels import SketchPCA, StreamingPCA, dispatch
from sgdyn.kernels.pca_base import NotFittedError
from sgdyn.kernels.streaming_pca import batch_moments, batch_moments_torch
from sgdyn.validation.probes.recorder import TrajectoryRecorder, make_estimator

needs_triton = pytest.mark.skipif(
    not (dispatch.interpreter_on() or torch.cuda.is_available()),
    reason="Triton needs CUDA or TRITON_INTERPRET=1 (set by tests/conftest.py)",
)


def trajectory(T=200, N=30, seed=0, alpha=1.5, offset=5.0):
    """Snapshots with a power-law PCA spectrum (like SGD's), a drift and a large mean."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.arange(1, N + 1) ** alpha
    Q = np.linalg.qr(rng.standard_normal((N, N)))[0]
    X = (rng.standard_normal((T, N)) * scales) @ Q.T
    X += np.linspace(0, 2, T)[:, None] * Q[:, 0]
    return X + offset * rng.standard_normal(N)


# -- Triton batch moments --------------------------------------------------------------------
@needs_triton
@pytest.mark.parametrize("R,N", [(1, 1), (2, 3), (7, 5), (33, 70), (64, 16)])
def test_triton_moments_match_twin_float32(R, N, kernel_device):
    from sgdyn.kernels.streaming_pca_triton import batch_moments_triton

    X = torch.from_numpy(trajectory(R, N, seed=R + N)).float().to(kernel_device)
    mean, m2 = batch_moments_triton(X)
    rmean, rm2 = batch_moments_torch(X.double())
    # float32: centring in float32 then ieee products; error relative to the scatter scale
    torch.testing.assert_close(mean.double(), rmean, rtol=1e-6, atol=1e-5)
    scale = float(rm2.abs().max()) + 1e-30
    torch.testing.assert_close(m2.double(), rm2, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(m2, m2.T)  # both triangles written


@needs_triton
def test_triton_moments_float64_non_contiguous(kernel_device):
    from sgdyn.kernels.streaming_pca_triton import batch_moments_triton

    big = torch.from_numpy(trajectory(90, 2 * 37, seed=5)).to(kernel_device)
    X = big[::3, ::2]  # (30, 37), strided
    assert not X.is_contiguous()
    mean, m2 = batch_moments_triton(X, block_n=16, block_r=16)
    rmean, rm2 = batch_moments_torch(X.contiguous())
    torch.testing.assert_close(mean, rmean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m2, rm2, rtol=1e-10, atol=1e-10)
    XT = torch.from_numpy(trajectory(37, 30, seed=6)).to(kernel_device)
    XT = XT.T.contiguous().T  # column-major
    torch.testing.assert_close(batch_moments_triton(XT)[1], batch_moments_torch(XT)[1])


@needs_triton
def test_triton_moments_reject_bad_input(kernel_device):
    from sgdyn.kernels.streaming_pca_triton import batch_moments_triton

    with pytest.raises(ValueError, match="empty batch"):
        batch_moments_triton(torch.zeros(0, 3, device=kernel_device))
    with pytest.raises(TypeError, match="float32 or float64"):
        batch_moments_triton(torch.zeros(3, 3, dtype=torch.int32, device=kernel_device))
    with pytest.raises(ValueError, match="n_features"):
        batch_moments_triton(torch.zeros(3, device=kernel_device))


@needs_triton
@pytest.mark.parametrize("chunks", [1, 4, 50])
def test_streaming_pca_on_triton_matches_sklearn(chunks, kernel_device):
    X = trajectory(100, 24, seed=chunks)
    ref = PCA().fit(X)
    est = StreamingPCA()
    with dispatch.use_backend("triton"):
        assert dispatch.backend_for(torch.zeros(1)) == "triton"
        for part in np.array_split(X, chunks):
            est.partial_fit(torch.from_numpy(part).to(kernel_device))
    est.finalize()
    np.testing.assert_allclose(est.mean_.cpu().numpy(), ref.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        est.explained_variance_.cpu().numpy(), ref.explained_variance_, rtol=1e-8, atol=1e-14
    )
    k = 5  # leading, well-separated components
    comps = est.components_[:k].cpu().numpy()
    np.testing.assert_allclose(comps, ref.components_[:k], atol=1e-7)  # signs: sklearn's own


def test_dispatch_routes_batch_moments(monkeypatch, kernel_device):
    from sgdyn.kernels import streaming_pca

    X = torch.randn(6, 4, dtype=torch.float64)
    with dispatch.use_backend("torch"):
        m, s = batch_moments(X)
    torch.testing.assert_close(s, torch.cov(X.T) * 5)
    if dispatch.interpreter_on() or torch.cuda.is_available():
        import sgdyn.kernels.streaming_pca_triton as spt

        calls = []
        orig = spt.batch_moments_triton
        monkeypatch.setattr(spt, "batch_moments_triton", lambda X: calls.append(1) or orig(X))
        with dispatch.use_backend("triton"):
            streaming_pca.batch_moments(X.to(kernel_device))
        assert calls


# -- Frequent Directions sketch --------------------------------------------------------------
def test_sketch_without_shrink_is_exact():
    """While the 2 ell buffer never fills, the sketch holds the scatter exactly."""
    X = trajectory(40, 50, seed=1)
    ref = PCA().fit(X)
    est = SketchPCA(n_components=10, sketch_size=32)
    for part in np.array_split(X, 5):
        est.partial_fit(torch.from_numpy(part))
    est.finalize()
    assert est.error_bound_ == 0.0
    np.testing.assert_allclose(est.mean_.numpy(), ref.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        est.explained_variance_.numpy(), ref.explained_variance_[:10], rtol=1e-9
    )
    np.testing.assert_allclose(est.total_variance_, ref.explained_variance_.sum(), rtol=1e-10)
    comps = est.components_.numpy()
    np.testing.assert_allclose(comps[:5], ref.components_[:5], atol=1e-7)  # signs included
    Z = est.transform(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(Z[:, :5], ref.transform(X)[:, :5], atol=1e-7)


@pytest.mark.parametrize("chunks,ell", [(1, 12), (9, 12), (400, 20)])
def test_sketch_error_bound(chunks, ell):
    """0 <= A^T A - B^T B <= Delta I and Delta <= tail_k / (ell - k) (Ghashami et al. 2016)."""
    X = trajectory(400, 80, seed=chunks, alpha=1.0)
    est = SketchPCA(sketch_size=ell)
    for part in np.array_split(X, chunks):
        est.partial_fit(torch.from_numpy(part))
    est.finalize()
    n = X.shape[0]
    Xc = X - X.mean(0)
    M2 = Xc.T @ Xc
    diff = M2 - est.covariance().numpy() * (n - 1)
    ev = np.linalg.eigvalsh(diff)
    delta = est.error_bound_
    assert delta > 0  # the test exercises shrinking
    assert ev.min() >= -1e-9 * np.abs(M2).max()
    assert ev.max() <= delta * (1 + 1e-9)
    lam = np.linalg.eigvalsh(M2)[::-1]
    for k in range(ell):
        assert delta <= lam[k:].sum() / (ell - k) * (1 + 1e-9)
    # eigenvalue sandwich, in covariance units
    exact_var = lam[:ell] / (n - 1)
    got = est.explained_variance_.numpy()
    assert np.all(got <= exact_var[: got.size] * (1 + 1e-9))
    assert np.all(got >= exact_var[: got.size] - est.variance_error_bound_ * (1 + 1e-9))
    np.testing.assert_allclose(est.total_variance_, np.trace(M2) / (n - 1), rtol=1e-10)


def test_sketch_recovers_leading_components():
    """Power-law spectrum: with ell = 8 k the top-k subspace is near-exact."""
    X = trajectory(600, 120, seed=3, alpha=1.5)
    ref = PCA(n_components=4).fit(X)
    est = SketchPCA(n_components=4, sketch_size=32).fit(torch.from_numpy(X))
    assert est.error_bound_ > 0
    overlap = np.abs(np.sum(est.components_.numpy() * ref.components_, axis=1))
    assert overlap.min() > 0.999
    np.testing.assert_allclose(est.explained_variance_.numpy(), ref.explained_variance_, rtol=1e-2)


def test_sketch_input_validation():
    with pytest.raises(ValueError, match="exceeds sketch_size"):
        SketchPCA(n_components=10, sketch_size=5)
    with pytest.raises(ValueError, match="n_components"):
        SketchPCA(n_components=0)
    est = SketchPCA(sketch_size=4)
    with pytest.raises(ValueError, match="at least 2"):
        est.partial_fit(torch.zeros(1, 3)).finalize()
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(torch.full((2, 3), float("nan")))
    with pytest.raises(NotFittedError, match="not fitted"):
        SketchPCA().transform(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="float64"):
        SketchPCA(dtype=torch.float32)


def test_sketch_constant_snapshots():
    est = SketchPCA(sketch_size=4).fit(torch.ones(5, 3))
    assert float(est.explained_variance_.abs().max()) == 0.0


# -- recorder ----------------------------------------------------------------------------------
def _train(rec_kwargs, steps=60):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = TrajectoryRecorder(model, "0.weight", n_steps=steps, **rec_kwargs).attach(opt)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(4, 6, generator=g), torch.randint(0, 2, (4,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return rec


@pytest.mark.parametrize("keep", [True, False])
def test_recorder_sketch_matches_exact(keep):
    exact = _train({"keep_trajectory": keep, "chunk": 7}).pca()
    rec = _train({"keep_trajectory": keep, "chunk": 7, "estimator": "sketch", "sketch_size": 48})
    sk = rec.pca()
    assert isinstance(rec.estimator, SketchPCA) and isinstance(exact, StreamingPCA)
    k = 3
    np.testing.assert_allclose(
        sk.explained_variance_[:k].numpy(), exact.explained_variance_[:k].numpy(), rtol=1e-8
    )
    overlap = (sk.components_[:k] * exact.components_[:k]).sum(1).abs()
    assert float(overlap.min()) > 1 - 1e-8


def test_recorder_estimator_choice():
    assert isinstance(make_estimator("auto", 2500), StreamingPCA)
    assert isinstance(make_estimator("auto", 100_000), SketchPCA)
    assert make_estimator("sketch", 10, 16).sketch_size == 16
    mine = SketchPCA(sketch_size=8)
    assert make_estimator(mine, 10) is mine
    with pytest.raises(ValueError, match="estimator must be"):
        make_estimator("fast", 10)
    with pytest.raises(TypeError, match="lacks"):
        make_estimator(object(), 10)
