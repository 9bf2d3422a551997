"""Device loops make no per-step host round-trip: the training epoch with the trajectory
recorder attached, counted with HostSyncCounter (and checked to count a known sync)."""

import torch

from sgdyn.kernels.host_sync import HostSyncCounter
from sgdyn.validation.models import build_model
from sgdyn.validation.probes.recorder import TrajectoryRecorder
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch


def test_counter_sees_item_float_and_cpu():
    t = torch.ones(3)
    with HostSyncCounter() as c:
        t.sum().item()
        float(t[0])
        t.cpu()
    assert c.calls["item"] == 1 and c.calls["__float__"] == 1 and c.calls["cpu"] == 1
    assert torch.Tensor.item is not None and c.total == 3
    with HostSyncCounter() as c2:
        pass
    assert c2.total == 0  # methods restored, nothing counted outside


def test_training_with_capture_has_no_per_step_host_sync():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 784, generator=g), torch.randint(0, 10, (200,), generator=g)
    model = build_model("mlp", 784)
    opt = make_optimizer(model, OptimConfig())
    rec = TrajectoryRecorder(model, "layers.1.weight", 70, keep_trajectory=True)
    rec.attach(opt)
    counts = []
    for n_epochs in (2, 4):  # 20 and 40 recorded SGD steps
        with HostSyncCounter() as c:
            for _ in range(n_epochs):
                train_epoch(model, opt, x, y, 20, g)
        counts.append(c.total)
    assert counts[1] - counts[0] == 0  # 20 more steps, no more host reads
