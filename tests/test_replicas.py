"""Replicas (vmap over functional_call) equal R separate runs with the same seeds."""

import pytest
import torch

from sgdyn.kernels import StreamingPCA
from sgdyn.validation.models import build_model
from sgdyn.validation.probes.recorder import TrajectoryRecorder
from sgdyn.validation.training.loop import OptimConfig, make_optimizer, train_epoch
from sgdyn.validation.training.replicas import ReplicaRecorder, Replicas


def _data(n=120, d=20, dtype=torch.float64):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def _model(seed, dtype=torch.float64):
    torch.manual_seed(seed)
    return build_model("mlp", 20, (12, 8)).to(dtype)


SEEDS, LRS, B, EPOCHS = [0, 1, 2], [0.05, 0.1, 0.2], 10, 2


def test_replicas_equal_separate_runs_with_the_same_seeds():
    x, y = _data()
    spe = x.shape[0] // B
    # R separate runs: the single-run loop and recorder
    ref_w, ref_loss, ref_traj = [], [], []
    for s, a in zip(SEEDS, LRS, strict=True):
        m = _model(s)
        opt = make_optimizer(m, OptimConfig("sgd", a, B))
        rec = TrajectoryRecorder(m, "layers.1.weight", EPOCHS * spe, dtype=torch.float64)
        rec.attach(opt)
        g = torch.Generator().manual_seed(s)
        ls = torch.cat([train_epoch(m, opt, x, y, B, g) for _ in range(EPOCHS)])
        ref_w.append(m.layers[1].weight.detach().clone())
        ref_loss.append(ls)
        ref_traj.append(rec.trajectory().clone())
    # the same R runs at once
    rep = Replicas([_model(s) for s in SEEDS], LRS, B, SEEDS)
    rr = ReplicaRecorder(3, EPOCHS * spe, 12 * 8, dtype=torch.float64)
    losses = []
    for _ in range(EPOCHS):
        losses.append(
            rep.train_epoch(x, y, on_step=lambda s: rr.record(rep.snapshot("layers.1.weight")))
        )
    losses = torch.cat(losses, dim=1)
    for r in range(3):
        torch.testing.assert_close(
            rep.params["layers.1.weight"][r], ref_w[r], rtol=1e-12, atol=1e-12
        )
        torch.testing.assert_close(losses[r].float(), ref_loss[r].float(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(rr.trajectory(r), ref_traj[r], rtol=1e-12, atol=1e-12)
    # batched PCA equals one PCA per window
    for r, est in enumerate(rr.pca()):
        ref = StreamingPCA().fit(ref_traj[r])
        torch.testing.assert_close(est.explained_variance_, ref.explained_variance_)
        torch.testing.assert_close(est.components_, ref.components_, rtol=1e-7, atol=1e-7)
    # a replica left inactive keeps its weights and its data order
    before = rep.params["layers.0.weight"][1].clone()
    rep.train_epoch(x, y, active=[True, False, True])
    torch.testing.assert_close(rep.params["layers.0.weight"][1], before, rtol=0, atol=0)


def test_full_loss_matches_each_model():
    from sgdyn.validation.training.loop import full_loss

    x, y = _data()
    models = [_model(s) for s in SEEDS]
    rep = Replicas(models, LRS, B, SEEDS)
    got = rep.full_loss(x, y)
    for r, m in enumerate(models):
        assert abs(float(got[r]) - full_loss(m, x, y)) < 1e-10
        back = rep.model(r, m)
        assert torch.equal(back.layers[0].weight, m.layers[0].weight)


def test_mismatched_batch_sizes_and_architectures_are_refused():
    with pytest.raises(ValueError, match="share the minibatch size B"):
        Replicas([_model(0), _model(1)], [0.1, 0.1], [10, 20], [0, 1])
    other = build_model("mlp", 20, (12, 9)).double()
    with pytest.raises(ValueError, match="architecture"):
        Replicas([_model(0), other], [0.1, 0.1], 10, [0, 1])


@pytest.mark.parametrize("kind", ["loss_fn", "compile"])
def test_custom_loss_and_compiled_step_equal_the_default(kind):
    x, y = _data()
    ref = Replicas([_model(s) for s in SEEDS], LRS, B, SEEDS)
    if kind == "loss_fn":
        other = Replicas(
            [_model(s) for s in SEEDS], LRS, B, SEEDS,
            loss_fn=lambda z, t: torch.nn.functional.cross_entropy(z, t),
        )  # fmt: skip
    else:
        other = Replicas([_model(s) for s in SEEDS], LRS, B, SEEDS, compile="aot_eager")
    la, lb = ref.train_epoch(x, y), other.train_epoch(x, y)
    torch.testing.assert_close(la, lb, rtol=1e-10, atol=1e-10)
    for k in ref.params:
        torch.testing.assert_close(ref.params[k], other.params[k], rtol=1e-10, atol=1e-10)
