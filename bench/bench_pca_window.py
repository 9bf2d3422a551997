"""Streaming PCA of a real captured window vs scikit-learn PCA and IncrementalPCA.

"streaming" feeds the window in 4 chunks through ``partial_fit`` (Chan merge of N x N moments)
then eigendecomposes; "window_fit" is ``StreamingPCA.fit`` on the kept window (exact thin SVD,
what the recorder does when it keeps the trajectory). The window: 1,000 snapshots x 2,500
weights (784-50-50-10 MLP on the embedded MNIST, B=50, alpha=0.1, 10 epochs from epoch 20).
Reports time ratios and the subspace agreement of the top-50 components (mean squared
cosine of the principal angles; 1 = identical).
    pytest bench/bench_pca_window.py -q -s
"""

import numpy as np
import pytest
import torch
from _ratios import record, report
from sklearn.decomposition import PCA, IncrementalPCA

from sgdyn.kernels import StreamingPCA
from sgdyn.validation.studies.capture import CaptureConfig, capture_window

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
K = 50
RESULTS = {}


@pytest.fixture(scope="module")
def window():
    res = capture_window(CaptureConfig(device=DEVICE, window_start=20), progress=False)
    return res.trajectory


def _subspace_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cos^2 of the principal angles between the row spaces of a and b (k x N)."""
    qa, _ = np.linalg.qr(a.T)
    qb, _ = np.linalg.qr(b.T)
    s = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return float(np.mean(s**2))


def _stream(traj):
    est = StreamingPCA()
    for chunk in traj.split(250):
        est.partial_fit(chunk)
    est.finalize()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return est


def test_streaming(benchmark, window):
    est = benchmark.pedantic(_stream, args=(window,), rounds=3, warmup_rounds=1)
    record("streaming", benchmark)
    RESULTS["streaming"] = est.components_[:K].cpu().numpy()


def _window_fit(traj):
    est = StreamingPCA().fit(traj)  # what the recorder does with a kept window (thin SVD)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return est


def test_window_fit(benchmark, window):
    est = benchmark.pedantic(_window_fit, args=(window,), rounds=3, warmup_rounds=1)
    record("window_fit", benchmark)
    RESULTS["window_fit"] = est.components_[:K].cpu().numpy()


def test_sklearn_pca(benchmark, window):
    X = window.cpu().numpy().astype(np.float64)
    pca = benchmark.pedantic(lambda: PCA(svd_solver="full").fit(X), rounds=3, warmup_rounds=1)
    record("sklearn_PCA", benchmark)
    RESULTS["PCA"] = pca.components_[:K]


def test_sklearn_incremental(benchmark, window):
    X = window.cpu().numpy().astype(np.float64)

    def fit():
        ipca = IncrementalPCA(n_components=K, batch_size=250)
        for chunk in np.array_split(X, 4):
            ipca.partial_fit(chunk)
        return ipca

    ipca = benchmark.pedantic(fit, rounds=2, warmup_rounds=0)
    record("sklearn_IncrementalPCA", benchmark)
    RESULTS["IPCA"] = ipca.components_[:K]


def test_report(capsys):
    extra = {"device": DEVICE, "window": "1000 x 2500"}
    if "streaming" in RESULTS and "PCA" in RESULTS:
        extra["top50_agreement_streaming_vs_PCA"] = _subspace_agreement(
            RESULTS["streaming"], RESULTS["PCA"]
        )
    if "window_fit" in RESULTS and "PCA" in RESULTS:
        extra["top50_agreement_window_fit_vs_PCA"] = _subspace_agreement(
            RESULTS["window_fit"], RESULTS["PCA"]
        )
    if "IPCA" in RESULTS and "PCA" in RESULTS:
        extra["top50_agreement_IPCA_vs_PCA"] = _subspace_agreement(RESULTS["IPCA"], RESULTS["PCA"])
    report(
        capsys,
        "streaming PCA window",
        [
            ("speed-up vs sklearn PCA", "streaming", "sklearn_PCA"),
            ("recorder window fit (thin SVD) vs sklearn PCA", "window_fit", "sklearn_PCA"),
            (
                "recorder window fit vs sklearn IncrementalPCA",
                "window_fit",
                "sklearn_IncrementalPCA",
            ),
            ("speed-up vs sklearn IncrementalPCA", "streaming", "sklearn_IncrementalPCA"),
        ],
        extra,
    )
