"""The trajectory recorder on a toy model: it records exactly what the optimizer produced."""

import pytest
import torch
from torch import nn

from sgdyn.kernels.memory import InsufficientMemoryError
from sgdyn.validation.probes.recorder import TrajectoryRecorder


def _toy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    return model, opt, x, y


def _step(model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def test_records_every_step_then_detaches():
    model, opt, x, y = _toy()
    rec = TrajectoryRecorder(model, ["0.weight", "2.bias"], n_steps=5).attach(opt)
    expected = []
    for _ in range(8):
        _step(model, opt, x, y)
        if len(expected) < 5:
            expected.append(torch.cat([model[0].weight.reshape(-1), model[2].bias]).clone())
    traj = rec.trajectory()
    assert traj.shape == (5, 14)
    assert torch.equal(traj, torch.stack(expected))
    assert rec.done


def test_streaming_mode_matches_kept_trajectory():
    model, opt, x, y = _toy()
    keep = TrajectoryRecorder(model, "0.weight", n_steps=23).attach(opt)
    stream = TrajectoryRecorder(model, "0.weight", n_steps=23, keep_trajectory=False, chunk=5)
    stream.attach(opt)
    for _ in range(23):
        _step(model, opt, x, y)
    a, b = keep.pca(), stream.pca()
    assert b.n_samples_seen_ == 23
    assert torch.allclose(a.explained_variance_, b.explained_variance_, rtol=1e-6, atol=1e-14)
    with pytest.raises(RuntimeError, match="keep_trajectory"):
        stream.trajectory()


def test_bad_parameter_name():
    model, *_ = _toy()
    with pytest.raises(KeyError, match="available"):
        TrajectoryRecorder(model, "fc9.weight", n_steps=10)


def test_memory_is_estimated_and_refused_before_allocating():
    """Issue 12: an 11 GiB buffer was allocated although the sketch was chosen."""
    big = nn.Linear(1000, 1000, bias=False)  # 1e6 weights
    # sketch: streams in chunks by default, never holds the window
    rec = TrajectoryRecorder(
        big, "weight", n_steps=100_000, estimator="sketch", sketch_size=8, chunk=16
    )
    assert not rec.keep_trajectory and rec.buffer.capacity == 16
    est = rec.memory_estimate()
    assert est["buffer"] == 16 * 1_000_000 * 4
    # the same window kept: 100,000 x 1e6 float32 = 373 GiB, refused with the number
    with pytest.raises(InsufficientMemoryError, match=r"372.53 GiB") as e:
        TrajectoryRecorder(big, "weight", n_steps=100_000, estimator="sketch", keep_trajectory=True)
    assert "keep_trajectory=False" in str(e.value) and isinstance(e.value, ValueError)
    # exact moments of 1e6 weights: 3 x (1e6)^2 x 8 bytes, refused although no window is kept
    with pytest.raises(InsufficientMemoryError, match="StreamingPCA"):
        TrajectoryRecorder(big, "weight", n_steps=10, estimator="exact", keep_trajectory=False)
    # an explicit budget is honoured
    small = nn.Linear(10, 10)
    with pytest.raises(InsufficientMemoryError, match="max_memory"):
        TrajectoryRecorder(small, "weight", n_steps=50, max_memory=1000)
    ok = TrajectoryRecorder(small, "weight", n_steps=50, max_memory=10**6)
    assert ok.memory_estimate()["buffer"] == 50 * 100 * 4
