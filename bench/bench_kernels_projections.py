"""Per-sample gradient projections for the paper's 50x50 layer (``layers.1.weight`` of the
784-50-50-10 MLP), all 5,000 mnist5k samples x K directions, K in {1, 50, 200}.

End to end (model, x, y, directions -> (S, K)):
- ours: one batched forward/backward with hooks + the projection kernel (Triton on CUDA,
  torch twin on CPU);
- torch.func: vmap(grad) of each sample's loss w.r.t. the layer weight only, then einsum (the
  strongest baseline), and the tutorial recipe (per-sample gradients of all parameters);
- loop: one backward per sample, then the same einsum.
Kernel only (a, delta precomputed): the dispatching kernel vs explicit per-sample gradients +
einsum, with achieved FLOP rate / bandwidth (roofline figures on a GPU).

Targets (issue 4): >= 3x torch.func on CPU, >= 10x on GPU. Run:
    pytest bench/bench_kernels_projections.py -q -s   (not --benchmark-only: it skips the report)
"""

from __future__ import annotations

import pytest
import torch
from _ratios import record, report
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from sgdyn.kernels import collect_layer_io, linear_projections, per_sample_projections
from sgdyn.validation.data import load_dataset
from sgdyn.validation.models import MLP

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LAYER = "layers.1.weight"
KS = (1, 50, 200)
LOOP_SAMPLES = 1000  # the per-sample loop is timed on 1,000 samples and scaled to 5,000


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def setup():
    data = load_dataset("mnist5k").to(DEVICE)
    torch.manual_seed(0)
    model = MLP().to(DEVICE)
    dirs = {}
    for K in KS:
        q = torch.linalg.qr(torch.randn(2500, K, device=DEVICE))[0]
        dirs[K] = q.T.reshape(K, 50, 50).contiguous()
    return model, data.x, data.y, dirs


def ours(model, x, y, P):
    out = per_sample_projections(model, LAYER, x, y, P)
    _sync()
    return out


def torch_func(model, x, y, P):
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(w, xs, ys):
        p = dict(params)
        p[LAYER] = w
        return F.cross_entropy(functional_call(model, p, (xs[None],)), ys[None])

    g = vmap(grad(loss_one), in_dims=(None, 0, 0))(params[LAYER], x, y)
    out = torch.einsum("sij,kij->sk", g, P)
    _sync()
    return out


def torch_func_all(model, x, y, P):
    """The torch.func tutorial recipe: per-sample gradients of *all* parameters, then the
    probed layer's are projected (materialises S x 42,200 gradients)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xs, ys):
        return F.cross_entropy(functional_call(model, p, (xs[None],)), ys[None])

    g = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)[LAYER]
    out = torch.einsum("sij,kij->sk", g, P)
    _sync()
    return out


def loop(model, x, y, P):
    w = dict(model.named_parameters())[LAYER]
    grads = []
    for s in range(x.shape[0]):
        loss = F.cross_entropy(model(x[s : s + 1]), y[s : s + 1])
        grads.append(torch.autograd.grad(loss, w)[0])
    out = torch.einsum("sij,kij->sk", torch.stack(grads), P)
    _sync()
    return out


@pytest.mark.parametrize("K", KS)
def test_proj_ours(benchmark, setup, K):
    model, x, y, dirs = setup
    got = benchmark.pedantic(ours, args=(model, x, y, dirs[K]), rounds=7, warmup_rounds=1)
    want = torch_func(model, x, y, dirs[K])
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * float(want.abs().max()))
    record(f"proj_ours_K{K}", benchmark)


@pytest.mark.parametrize("K", KS)
def test_proj_torch_func(benchmark, setup, K):
    model, x, y, dirs = setup
    benchmark.pedantic(torch_func, args=(model, x, y, dirs[K]), rounds=5, warmup_rounds=1)
    record(f"proj_torch_func_K{K}", benchmark)


@pytest.mark.parametrize("K", KS)
def test_proj_torch_func_all_params(benchmark, setup, K):
    model, x, y, dirs = setup
    benchmark.pedantic(torch_func_all, args=(model, x, y, dirs[K]), rounds=3, warmup_rounds=1)
    record(f"proj_torch_func_all_K{K}", benchmark)


@pytest.mark.parametrize("K", KS)
def test_proj_loop(benchmark, setup, K):
    model, x, y, dirs = setup
    n = LOOP_SAMPLES
    benchmark.pedantic(loop, args=(model, x[:n], y[:n], dirs[K]), rounds=1, warmup_rounds=0)
    record(f"proj_loop1000_K{K}", benchmark)


# -- kernel only --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def io(setup):
    model, x, y, dirs = setup
    a, d = collect_layer_io(model, LAYER, x, y)
    return a.contiguous(), d.contiguous(), dirs


def explicit(a, d, P):
    out = torch.einsum("sij,kij->sk", torch.einsum("si,sj->sij", d, a), P)
    _sync()
    return out


def kernel(a, d, P):
    out = linear_projections(a, d, P)
    _sync()
    return out


@pytest.mark.parametrize("K", KS)
def test_proj_kernel(benchmark, io, K):
    a, d, dirs = io
    benchmark.pedantic(kernel, args=(a, d, dirs[K]), rounds=20, warmup_rounds=2)
    record(f"proj_kernel_K{K}", benchmark)


@pytest.mark.parametrize("K", KS)
def test_proj_explicit_einsum(benchmark, io, K):
    a, d, dirs = io
    benchmark.pedantic(explicit, args=(a, d, dirs[K]), rounds=10, warmup_rounds=1)
    record(f"proj_explicit_K{K}", benchmark)


def test_proj_zz_report(capsys, io):
    from _ratios import MEDIANS

    a, d, _ = io
    S, D = a.shape[0], 2500
    rows, extra = [], {"device": _device_name(), "S": S, "layer": LAYER}
    for K in KS:
        loop_key = f"proj_loop1000_K{K}"
        if loop_key in MEDIANS:  # scale the 1,000-sample loop to all samples
            MEDIANS[f"proj_loop_K{K}"] = MEDIANS[loop_key] * S / LOOP_SAMPLES
        rows += [
            (f"K={K} ours vs torch.func vmap(grad)", f"proj_ours_K{K}", f"proj_torch_func_K{K}"),
            (
                f"K={K} ours vs torch.func all-params recipe",
                f"proj_ours_K{K}",
                f"proj_torch_func_all_K{K}",
            ),
            (f"K={K} ours vs per-sample loop", f"proj_ours_K{K}", f"proj_loop_K{K}"),
            (f"K={K} kernel vs explicit grads+einsum", f"proj_kernel_K{K}", f"proj_explicit_K{K}"),
        ]
        t = MEDIANS.get(f"proj_kernel_K{K}")
        if t:
            flops = 2.0 * S * K * D
            nbytes = 4.0 * (S * 100 + K * D + S * K)  # a, delta, P read once; out written
            extra[f"kernel_K{K}"] = {
                "seconds": t,
                "flops": flops,
                "bytes": nbytes,
                "GFLOP_s": flops / t / 1e9,
                "GB_s": nbytes / t / 1e9,
                "frac_H100_fp32_67TF": flops / t / 67e12,
                "frac_H100_bw_3.35TB": nbytes / t / 3.35e12,
            }
    report(capsys, "kernels per-sample projections", rows, extra)


def _device_name() -> str:
    if DEVICE == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads)"


def gpu_cases(ctx):
    """GPU target (bench/gpu_run.py): projections >= 10x torch.func vmap(grad), K = 50, with
    the kernel's achieved FLOP rate / bandwidth."""

    def run():
        dev, K = ctx.device, 50
        data = load_dataset("mnist5k")
        n = ctx.size(len(data), 64)
        x, y = data.x[:n].to(dev), data.y[:n].to(dev)
        torch.manual_seed(0)
        model = MLP().to(dev)
        P = torch.linalg.qr(torch.randn(2500, K, device=dev))[0].T.reshape(K, 50, 50)
        P = P.contiguous()
        t_ours = ctx.timeit(lambda: per_sample_projections(model, LAYER, x, y, P), reps=7)
        t_func = ctx.timeit(lambda: torch_func(model, x, y, P), reps=5)
        got, want = per_sample_projections(model, LAYER, x, y, P), torch_func(model, x, y, P)
        a, d = collect_layer_io(model, LAYER, x, y)
        a, d = a.contiguous(), d.contiguous()
        t_k = ctx.timeit(lambda: linear_projections(a, d, P), reps=20)
        return {"S": n, "K": K, "ours_s": t_ours, "torch_func_s": t_func,
                "ratio": t_func / t_ours,
                "max_rel_err_vs_torch_func": float((got - want).abs().max() / want.abs().max()),
                "seconds": t_k, "flops": 2.0 * n * K * 2500,
                "bytes": 4.0 * (n * 100 + K * 2500 + n * K), "dtype": "float32"}  # fmt: skip

    return [{"name": "projections_vs_torch_func", "run": run, "target": ("ratio", ">=", 10)}]
