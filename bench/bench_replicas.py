"""R = 16 replicas of the 784-50-50-10 MLP for one epoch with trajectory capture: trained
at once (:class:`sgdyn.validation.training.replicas.Replicas`, one (R, steps, N) capture
buffer) vs 16 sequential runs (train_epoch + TrajectoryRecorder). Three batched steps: the
general one (vmap over functional_call + autograd, ``fused=False``), the hand-fused MLP step
(:mod:`sgdyn.validation.training.fused_mlp`, the default for this model) and the general one
compiled (``compile=True``).

Target (issue 11): >= 4x on CPU, >= 10x on a GPU. One torch thread (pinned below). Run:
    python bench/bench_replicas.py          (prints the ratio)
    python bench/bench_replicas.py --alternatives   (+ the first-layer routes tried on the CPU)
    pytest bench/bench_replicas.py -q -s    (pytest-benchmark)
"""

from __future__ import annotations

import dataclasses
import sys
import time

import pytest
import torch

from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import build_model
from sgdyn.validation.probes.recorder import TrajectoryRecorder
from sgdyn.validation.training import OptimConfig, make_optimizer, train_epoch
from sgdyn.validation.training.replicas import ReplicaRecorder, Replicas

THREADS = 1
R, B, PROBE = 16, 50, "layers.1.weight"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _models(device):
    out = []
    for s in range(R):
        torch.manual_seed(s)
        out.append(build_model("mlp", 784).to(device))
    return out


def setup_data(device=DEVICE):
    torch.set_num_threads(THREADS)
    return load_dataset("mnist5k").to(device)


def sequential(data, with_pca=False):
    """16 separate runs, one after the other, each recording its epoch."""
    steps = len(data) // B
    for s, m in enumerate(_models(data.x.device)):
        opt = make_optimizer(m, OptimConfig("sgd", 0.05 + 0.01 * s, B))
        rec = TrajectoryRecorder(m, PROBE, steps).attach(opt)
        train_epoch(m, opt, data.x, data.y, B, torch.Generator().manual_seed(s))
        if with_pca:
            rec.pca()
    _sync(data)


def batched(data, with_pca=False, compile=False, fused=None):
    """The same 16 runs at once (``compile``: the general step as one torch.compile graph;
    ``fused``: the hand-fused MLP step; None: the library's choice, fused for this MLP)."""
    steps = len(data) // B
    lrs = [0.05 + 0.01 * s for s in range(R)]
    rep = Replicas(_models(data.x.device), lrs, B, range(R), compile=compile, fused=fused)
    rec = ReplicaRecorder(R, steps, 2500, device=data.x.device)
    rep.train_epoch(data.x, data.y, on_step=lambda _s: rec.record(rep.snapshot(PROBE)))
    if with_pca:
        rec.pca()
    _sync(data)


def _sync(data):
    if data.x.device.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def data():
    return setup_data()


def test_sequential_16_runs(benchmark, data):
    from _ratios import record

    benchmark.pedantic(sequential, args=(data,), rounds=3, warmup_rounds=1)
    record("sequential", benchmark)


def test_batched_16_replicas(benchmark, data):
    from _ratios import record

    benchmark.pedantic(batched, args=(data, False, False, False), rounds=3, warmup_rounds=1)
    record("batched", benchmark)


def test_batched_16_replicas_fused(benchmark, data):
    from _ratios import record

    benchmark.pedantic(batched, args=(data, False, False, True), rounds=3, warmup_rounds=1)
    record("batched+fused", benchmark)


def test_batched_16_replicas_compiled(benchmark, data):
    from _ratios import record

    benchmark.pedantic(batched, args=(data, False, True), rounds=3, warmup_rounds=1)
    record("batched+compile", benchmark)


def test_report(capsys):
    from _ratios import report

    report(
        capsys,
        "replicas",
        [
            (
                "16 replicas batched (vmap) vs 16 sequential runs (1 epoch, capture)",
                "batched",
                "sequential",
            ),
            ("batched, fused MLP step vs 16 sequential runs", "batched+fused", "sequential"),
            ("batched + torch.compile vs 16 sequential runs", "batched+compile", "sequential"),
        ],
        {"device": DEVICE, "threads": THREADS, "R": R},
    )


def _best(fns, repeats=5):
    from _ratios import best_interleaved

    return best_interleaved(fns, repeats, warmup=True)


def gpu_cases(ctx):
    """GPU target (contract in bench/README.md): 16 replicas >= 10x 16 sequential runs."""

    def run():
        data = setup_data(ctx.device)
        n = ctx.size(len(data), 200)
        sub = dataclasses.replace(data, x=data.x[:n], y=data.y[:n])
        t_seq = ctx.timeit(lambda: sequential(sub), reps=3)
        t_bat = ctx.timeit(lambda: batched(sub), reps=3)  # the default: the fused step
        t_vmap = ctx.timeit(lambda: batched(sub, fused=False), reps=3)
        steps = R * (n // B)
        return {
            "ratio": t_seq / t_bat,
            "seconds": t_bat,
            "sequential_s": t_seq,
            "vmap_ratio": t_seq / t_vmap,
            "flops": 6.0 * 42200 * B * steps,
            "dtype": "float32",
        }

    return [{"name": "replicas_16_vs_sequential", "run": run, "target": ("ratio", ">=", 10),
             "timeout_s": 120}]  # fmt: skip


def needed_flops(model, batch_size=B) -> float:
    """FLOPs of one SGD step of one MLP as computed: forward and weight gradient 2 P B each,
    input gradients 2 P_l B for every layer but the first (its input needs none)."""
    ws = [p for n, p in model.named_parameters() if n.endswith("weight")]
    P = sum(w.numel() for w in ws)
    return 2.0 * batch_size * (2 * P + P - ws[0].numel())


def layer1_floor_s(repeats=20) -> float:
    """Measured time of the first layer's two batched GEMMs of one fused step alone (forward
    (R, B, 784) x (R, 784, 50) and the in-place weight update (R, 50, B) x (R, B, 784))."""
    x, w, d = torch.randn(R, B, 784), torch.randn(R, 50, 784), torch.randn(R, B, 50) * 1e-6
    best = float("inf")
    for _ in range(repeats + 2):
        t = time.perf_counter()
        torch.bmm(x, w.transpose(1, 2))
        w.baddbmm_(d.transpose(1, 2), x)
        best = min(best, time.perf_counter() - t)
    return best


def alternatives(data, steps=60) -> None:
    """The first layer's CPU routes tried against the fused step's batched one (issue 11),
    each timed per step of all R replicas, best of 5 interleaved: (a) update of step t, gather
    and forward of step t+1 one replica at a time (its 157 KB of W1 stays in cache) vs the same
    three as batched calls; (b) the forward on a block-diagonal CSR minibatch (MKL sparse; the
    pixels are ~80 % zero) vs dense bmm, and the cost of building that CSR; (c) the whole
    fused step under torch.compile vs eager (gather included)."""
    from sgdyn.validation.training.fused_mlp import mlp_step

    x, y = data.x.reshape(len(data), -1), data.y
    g = torch.Generator().manual_seed(0)
    perms = torch.stack([torch.randperm(len(x), generator=g) for _ in range(R)])
    w1, d1 = torch.randn(R, 50, 784) * 0.03, torch.randn(R, 50, B) * 1e-6
    xbuf, z = torch.empty(R, B, 784), torch.empty(R, 50, B)
    ms = 1e3 / steps

    def layer1(per_replica):
        for s in range(steps):
            p = perms[:, s * B : (s + 1) * B]
            if per_replica:
                for r in range(R):
                    w1[r].addmm_(d1[r], xbuf[r])
                    torch.index_select(x, 0, p[r], out=xbuf[r])
                    torch.mm(w1[r], xbuf[r].T, out=z[r])
            else:
                w1.baddbmm_(d1, xbuf)
                torch.index_select(x, 0, p.reshape(-1), out=xbuf.view(R * B, 784))
                torch.bmm(w1, xbuf.mT, out=z)

    bat, inter = _best([lambda: layer1(False), lambda: layer1(True)])
    print(
        f"(a) first-layer update + gather + forward, batched {bat * ms:.2f} ms vs one replica "
        f"at a time {inter * ms:.2f} ms per step ({bat / inter:.2f}x)"
    )

    def block_csr(xb):
        nz = xb.nonzero()
        cols = nz[:, 0] * xb.shape[2] + nz[:, 2]
        crow = torch.zeros(R * B + 1, dtype=torch.int64)
        crow[1:] = torch.bincount(nz[:, 0] * B + nz[:, 1], minlength=R * B).cumsum(0)
        return torch.sparse_csr_tensor(crow, cols, xb[nz.unbind(1)], (R * B, R * xb.shape[2]))

    torch.index_select(x, 0, perms[:, :B].reshape(-1), out=xbuf.view(R * B, 784))
    csr, w1t = block_csr(xbuf), w1.mT.contiguous()
    torch.testing.assert_close(csr @ w1t.view(R * 784, 50), torch.bmm(xbuf, w1t).view(-1, 50))
    dt, flat = d1.mT.contiguous(), w1t.view(R * 784, 50)  # update: W1^T += X^T D^T
    dense, sparse, build, up_dense, up_sparse = _best(
        [lambda: torch.bmm(xbuf, w1t), lambda: csr @ flat, lambda: block_csr(xbuf),
         lambda: w1t.baddbmm_(xbuf.mT, dt), lambda: flat.addmm_(csr.t(), dt.view(R * B, 50))],
        repeats=20,
    )  # fmt: skip
    print(
        f"(b) first-layer forward: dense bmm {1e3 * dense:.2f} ms, block-diagonal CSR "
        f"({csr.values().numel() / xbuf.numel():.0%} non-zero) {1e3 * sparse:.2f} ms "
        f"+ {1e3 * build:.2f} ms to build it; update: dense {1e3 * up_dense:.2f} ms, "
        f"with the CSR's transpose {1e3 * up_sparse:.2f} ms"
    )
    (one,) = _best([lambda: torch.mm(xbuf.view(R * B, 784), w1t[0])], repeats=20)
    print(
        f"    one ({R * B} x 784)(784 x 50) GEMM with a shared weight: "
        f"{2 * R * B * 784 * 50 / one / 1e9:.0f} GFLOP/s (the forward's shape in one call)"
    )
    models = _models("cpu")
    weights = [torch.stack([m.layers[i].weight.detach() for m in models]) for i in range(3)]
    biases = [None] * 3  # sgdyn's MLP has no bias by default
    scale, loss, ybuf = torch.full((R,), -0.1 / B), torch.empty(R), torch.empty(R * B).long()

    def epoch(step):
        for s in range(steps):
            idx = perms[:, s * B : (s + 1) * B].reshape(-1)
            xb = torch.index_select(x, 0, idx, out=xbuf.view(R * B, 784))
            yb = torch.index_select(y, 0, idx, out=ybuf).view(R, B)
            step(weights, biases, xb.view(R, B, 784), yb, scale, loss)

    compiled = torch.compile(mlp_step, dynamic=False)
    eager, comp = _best([lambda: epoch(mlp_step), lambda: epoch(compiled)])
    print(
        f"(c) fused step with its gather: eager {eager * ms:.2f} ms, torch.compile "
        f"{comp * ms:.2f} ms per step ({eager / comp:.2f}x)"
    )


def main():
    import os

    from sgdyn.validation.training.fast_step import matmul_flop_rate

    data = setup_data()
    load = "/".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"R={R} replicas of 784-50-50-10, B={B}, one epoch of mnist5k with capture; "
        f"{DEVICE}, torch threads = {torch.get_num_threads()}; best of 5, interleaved; "
        f"load average {load}"
    )
    steps = len(data) // B
    for pca in (False, True):
        seq, vmap_, fus, comp = _best(
            [
                lambda pca=pca: sequential(data, pca),
                lambda pca=pca: batched(data, pca, fused=False),
                lambda pca=pca: batched(data, pca, fused=True),
                lambda pca=pca: batched(data, pca, True),
            ]
        )
        tag = " + PCA" if pca else ""
        print(
            f"epoch{tag}: sequential {seq:.3f} s; batched vmap {vmap_:.3f} s -> "
            f"{seq / vmap_:.2f}x, fused {fus:.3f} s -> {seq / fus:.2f}x, "
            f"vmap + torch.compile {comp:.3f} s -> {seq / comp:.2f}x"
        )
        if not pca and DEVICE == "cpu":
            rate = matmul_flop_rate()
            need = R * needed_flops(_models("cpu")[0])
            bound, floor = need / rate, layer1_floor_s()
            print(
                f"per step of all {R} replicas: sequential {1e3 * seq / steps:.2f} ms, vmap "
                f"{1e3 * vmap_ / steps:.2f} ms, fused {1e3 * fus / steps:.2f} ms; FLOP bound "
                f"{1e3 * bound:.2f} ms ({need / 1e6:.0f} MFLOP at the 512^3 matmul rate "
                f"{rate / 1e9:.0f} GFLOP/s); first layer's two GEMMs alone {1e3 * floor:.2f} ms"
                f" -> best possible ratio {seq / steps / bound:.2f}x at the bound, "
                f"{seq / steps / floor:.2f}x with nothing but the first layer"
            )
    if "--alternatives" in sys.argv and DEVICE == "cpu":
        alternatives(data)
    print(f"load average {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
