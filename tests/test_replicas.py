"""Replicas equal R separate runs with the same seeds, on both steps: the general one (vmap over
functional_call + autograd) and the hand-fused MLP step (``fused=True``)."""

import pytest
import torch

from sgdyn.kernels import StreamingPCA
from sgdyn.validation.models import build_model
from sgdyn.validation.models.architectures import MLP
from sgdyn.validation.probes.recorder import TrajectoryRecorder
from sgdyn.validation.training.loop import OptimConfig, make_optimizer, train_epoch
from sgdyn.validation.training.replicas import ReplicaRecorder, Replicas


def _data(n=120, d=20, dtype=torch.float64):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def _model(seed, dtype=torch.float64, bias=False):
    torch.manual_seed(seed)
    if bias:
        return MLP((20, 12, 8, 10), bias=True).to(dtype)
    return build_model("mlp", 20, (12, 8)).to(dtype)


SEEDS, LRS, B, EPOCHS = [0, 1, 2], [0.05, 0.1, 0.2], 10, 2


FUSED = pytest.mark.parametrize("fused", [False, True], ids=["vmap", "fused"])


@FUSED
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_replicas_equal_separate_runs_with_the_same_seeds(fused, bias):
    x, y = _data()
    spe = x.shape[0] // B
    # R separate runs: the single-run loop and recorder
    ref_m, ref_loss, ref_traj = [], [], []
    for s, a in zip(SEEDS, LRS, strict=True):
        m = _model(s, bias=bias)
        opt = make_optimizer(m, OptimConfig("sgd", a, B))
        rec = TrajectoryRecorder(m, "layers.1.weight", EPOCHS * spe, dtype=torch.float64)
        rec.attach(opt)
        g = torch.Generator().manual_seed(s)
        ls = torch.cat([train_epoch(m, opt, x, y, B, g) for _ in range(EPOCHS)])
        ref_m.append(m)
        ref_loss.append(ls)
        ref_traj.append(rec.trajectory().clone())
    # the same R runs at once
    rep = Replicas([_model(s, bias=bias) for s in SEEDS], LRS, B, SEEDS, fused=fused)
    assert rep.fused is fused
    rr = ReplicaRecorder(3, EPOCHS * spe, 12 * 8, dtype=torch.float64)
    losses = []
    for _ in range(EPOCHS):
        losses.append(
            rep.train_epoch(x, y, on_step=lambda s: rr.record(rep.snapshot("layers.1.weight")))
        )
    losses = torch.cat(losses, dim=1)
    for r in range(3):
        for k, v in rep.model(r, _model(0, bias=bias)).state_dict().items():
            torch.testing.assert_close(v, ref_m[r].state_dict()[k], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(losses[r].float(), ref_loss[r].float(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(rr.trajectory(r), ref_traj[r], rtol=1e-12, atol=1e-12)
    # batched PCA equals one PCA per window
    for r, est in enumerate(rr.pca()):
        ref = StreamingPCA().fit(ref_traj[r])
        torch.testing.assert_close(est.explained_variance_, ref.explained_variance_)
        torch.testing.assert_close(est.components_, ref.components_, rtol=1e-7, atol=1e-7)
    # a replica left inactive keeps its weights (even non-finite ones) and its data order;
    # the others move as in a separate run
    with torch.no_grad():
        rep.params["layers.2.weight"][1, 0, 0] = float("nan")
    before = {k: v[1].clone() for k, v in rep.params.items()}
    gen1 = rep.generators[1].get_state()
    m0 = rep.model(0, _model(0, bias=bias))
    g0 = torch.Generator()
    g0.set_state(rep.generators[0].get_state())
    train_epoch(m0, make_optimizer(m0, OptimConfig("sgd", LRS[0], B)), x, y, B, g0)
    rep.train_epoch(x, y, active=[True, False, True])
    for k, v in rep.params.items():
        torch.testing.assert_close(v[1], before[k], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(v[0], m0.state_dict()[k], rtol=1e-12, atol=1e-12)
    assert torch.equal(rep.generators[1].get_state(), gen1)


@FUSED
def test_full_loss_matches_each_model(fused):
    from sgdyn.validation.training.loop import full_loss

    x, y = _data()
    models = [_model(s) for s in SEEDS]
    rep = Replicas(models, LRS, B, SEEDS, fused=fused)
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


@FUSED
@pytest.mark.parametrize("kind", ["loss_fn", "compile"])
def test_custom_loss_and_compiled_step_equal_the_default(kind, fused):
    x, y = _data()
    ref = Replicas([_model(s) for s in SEEDS], LRS, B, SEEDS, fused=fused)
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


def test_fused_float32_equals_separate_runs_to_rounding():
    x, y = _data(dtype=torch.float32)
    rep = Replicas([_model(s, torch.float32) for s in SEEDS], LRS, B, SEEDS)
    assert rep.fused  # chosen automatically for sgdyn's MLP with the default loss
    losses = rep.train_epoch(x, y)
    for r, (s, a) in enumerate(zip(SEEDS, LRS, strict=True)):
        m = _model(s, torch.float32)
        ref = train_epoch(m, make_optimizer(m, OptimConfig("sgd", a, B)), x, y, B,
                          torch.Generator().manual_seed(s))  # fmt: skip
        torch.testing.assert_close(losses[r], ref, rtol=1e-5, atol=1e-6)
        for k, v in m.state_dict().items():
            torch.testing.assert_close(rep.params[k][r], v, rtol=1e-5, atol=1e-6)


def test_fused_is_chosen_only_where_it_applies():
    models = [_model(s) for s in SEEDS]
    assert Replicas(models, LRS, B, SEEDS).fused
    assert not Replicas(models, LRS, B, SEEDS, fused=False).fused
    ce = torch.nn.functional.cross_entropy
    assert not Replicas(models, LRS, B, SEEDS, loss_fn=ce).fused
    with pytest.raises(ValueError, match="fused=True needs sgdyn's MLP"):
        Replicas(models, LRS, B, SEEDS, loss_fn=ce, fused=True)
    lenet = [build_model("lenet-mnist", 784) for _ in range(2)]
    assert not Replicas(lenet, [0.1, 0.1], B, [0, 1]).fused


def test_recorder_pca_of_many_windows_equals_one_pca_per_window():
    g = torch.Generator().manual_seed(3)
    rr = ReplicaRecorder(6, 8, 30, dtype=torch.float64)
    for _ in range(8):
        rr.record(torch.randn(6, 30, generator=g, dtype=torch.float64))
    rows = [5, 0, 2, 3, 4, 1]
    for r, est in zip(rows, rr.pca(rows), strict=True):
        ref = StreamingPCA().fit(rr.trajectory(r))
        torch.testing.assert_close(est.explained_variance_, ref.explained_variance_)


@pytest.mark.parametrize("sizes", [(20, 10), (20, 16, 12, 8, 10)], ids=["depth1", "depth4"])
def test_fused_equals_the_vmap_step_at_other_depths(sizes):
    x, y = _data()

    def models():
        out = []
        for s in SEEDS:
            torch.manual_seed(s)
            out.append(MLP(sizes, bias=True).double())
        return out

    a = Replicas(models(), LRS, B, SEEDS, fused=True)
    b = Replicas(models(), LRS, B, SEEDS, fused=False)
    torch.testing.assert_close(a.train_epoch(x, y), b.train_epoch(x, y), rtol=1e-12, atol=1e-12)
    for k in a.params:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mask", [None, [True, True, True], [True, False, True]])
def test_step_with_a_mask_is_the_same_on_both_paths(mask):
    x, y = _data()
    xb, yb = x[: 3 * B].view(3, B, -1), y[: 3 * B].view(3, B)
    m = None if mask is None else torch.tensor(mask)
    reps = [Replicas([_model(s) for s in SEEDS], LRS, B, SEEDS, fused=f) for f in (True, False)]
    before = {k: v.clone() for k, v in reps[0].params.items()}
    losses = [torch.empty(3, dtype=torch.float64) for _ in reps]
    for rep, lo in zip(reps, losses, strict=True):
        rep.step(xb, yb, m, lo)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=1e-12)
    for k, v in reps[0].params.items():
        torch.testing.assert_close(v, reps[1].params[k], rtol=1e-12, atol=1e-12)
        for r in range(3):
            moved = not torch.equal(v[r], before[k][r])
            assert moved is (mask is None or mask[r])


def test_conv_replicas_equal_separate_runs():
    """The general (vmap) path on a conv net, as `sgdyn validate` now trains its lone LeNet
    cells: 2 LeNet replicas with their own seeds and learning rates equal 2 separate runs."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(40, 784, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (40,), generator=g)
    seeds, lrs, b = [0, 1], [0.05, 0.1], 10

    def lenet(s):
        torch.manual_seed(s)
        return build_model("lenet-mnist", 784).double()

    ref = []
    for s, a in zip(seeds, lrs, strict=True):
        m = lenet(s)
        opt = make_optimizer(m, OptimConfig("sgd", a, b))
        gen = torch.Generator().manual_seed(s)
        for _ in range(2):
            train_epoch(m, opt, x, y, b, gen)
        ref.append(m)
    rep = Replicas([lenet(s) for s in seeds], lrs, b, seeds)
    assert not rep.fused
    for _ in range(2):
        rep.train_epoch(x, y)
    for r in range(2):
        got = rep.model(r, lenet(0)).state_dict()
        for k, v in ref[r].state_dict().items():
            torch.testing.assert_close(got[k], v, rtol=1e-12, atol=1e-12)
