"""Per-sample gradient projections: torch twin and Triton kernel (interpreted on the CPU)
against torch.func vmap(grad) and explicit einsum references."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from sgdyn.kernels import dispatch, per_sample
from sgdyn.kernels.capture_hooks import (
    collect_layer_io,
    per_sample_grad_norms,
    per_sample_grads,
    per_sample_projections,
)
from sgdyn.kernels.per_sample import (
    conv2d_per_sample_grads,
    linear_grad_norms,
    linear_per_sample_grads,
    linear_projections,
    linear_projections_torch,
)
from sgdyn.validation.models import MLP, LeNetMNIST

needs_triton = pytest.mark.skipif(
    not (dispatch.interpreter_on() or torch.cuda.is_available()),
    reason="Triton needs CUDA or TRITON_INTERPRET=1 (set by tests/conftest.py)",
)

# float32 tolerances: the kernel uses input_precision="ieee" (no TF32), so it differs from
# the twin only by summation order over d_out*d_in terms.
TOL32 = {"rtol": 1e-5, "atol": 1e-5}


def tol32(ref):
    """float32 rounding over many terms: absolute error relative to the output scale."""
    return {"rtol": 1e-5, "atol": 2e-6 * float(ref.abs().max())}


TOL64 = {"rtol": 1e-12, "atol": 1e-12}


def ref_projections(a, delta, P):
    """Independent reference: explicit per-sample outer products, then contraction."""
    g = torch.einsum("si,sj->sij", delta.double(), a.double())
    return torch.einsum("sij,kij->sk", g, P.double().reshape(P.shape[0], *g.shape[1:]))


def func_per_sample_grads(model, param_name, x, y):
    """torch.func reference: gradient of each sample's own cross-entropy."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(w, xs, ys):
        p = dict(params)
        p[param_name] = w
        out = functional_call(model, p, (xs[None],))
        return F.cross_entropy(out, ys[None])

    return vmap(grad(loss_one), in_dims=(None, 0, 0))(params[param_name], x, y)


# -- twin vs reference ------------------------------------------------------------------------
@pytest.mark.parametrize("S,d_out,d_in,K", [(1, 3, 4, 1), (37, 5, 7, 3), (64, 50, 50, 20)])
def test_twin_matches_reference(S, d_out, d_in, K):
    g = torch.Generator().manual_seed(S + K)
    a, d = torch.randn(S, d_in, generator=g), torch.randn(S, d_out, generator=g)
    P = torch.randn(K, d_out, d_in, generator=g)
    ref = ref_projections(a, d, P)
    torch.testing.assert_close(linear_projections_torch(a, d, P).double(), ref, **tol32(ref))
    flat = linear_projections_torch(a, d, P.reshape(K, -1))
    torch.testing.assert_close(flat.double(), ref, **tol32(ref))
    norms = linear_grad_norms(a, d).double()
    explicit = torch.einsum("si,sj->sij", d.double(), a.double()).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, explicit, **TOL32)


def test_twin_chunking(monkeypatch):
    """Chunked per-sample gradients give the same result as one chunk."""
    monkeypatch.setattr(per_sample, "_CHUNK_ELEMS", 7 * 6 * 3)  # 3 samples per chunk
    g = torch.Generator().manual_seed(0)
    a, d, P = torch.randn(20, 6, generator=g), torch.randn(20, 7, generator=g), torch.randn(4, 42)
    ref = ref_projections(a, d, P)
    torch.testing.assert_close(linear_projections_torch(a, d, P).double(), ref, **TOL32)
    a3, d3 = torch.randn(20, 5, 6, generator=g), torch.randn(20, 5, 7, generator=g)
    g3 = torch.einsum("slo,sli->soi", d3, a3)
    ref3 = torch.einsum("soi,koi->sk", g3, P.reshape(4, 7, 6))
    torch.testing.assert_close(linear_projections_torch(a3, d3, P), ref3, **TOL32)
    torch.testing.assert_close(linear_grad_norms(a3, d3), g3.flatten(1).norm(dim=1), **TOL32)


def test_positions_gram_norm_route():
    """Few positions, wide layer: the Gram identity route equals explicit gradients."""
    g = torch.Generator().manual_seed(1)
    a, d = torch.randn(5, 2, 30, generator=g), torch.randn(5, 2, 40, generator=g)
    explicit = linear_per_sample_grads(a, d).flatten(1).norm(dim=1)
    torch.testing.assert_close(linear_grad_norms(a, d), explicit, **TOL32)


# -- Triton kernel vs twin ------------------------------------------------------------------
@needs_triton
@pytest.mark.parametrize(
    "S,d_out,d_in,K",
    [(1, 1, 1, 1), (1, 3, 5, 1), (37, 5, 7, 3), (70, 9, 13, 17), (33, 50, 50, 2)],
)
def test_triton_matches_twin_float32(S, d_out, d_in, K, kernel_device):
    from sgdyn.kernels.per_sample_triton import linear_projections_triton

    g = torch.Generator().manual_seed(S * K + d_in)
    a = torch.randn(S, d_in, generator=g).to(kernel_device)
    d = torch.randn(S, d_out, generator=g).to(kernel_device)
    P = torch.randn(K, d_out, d_in, generator=g).to(kernel_device)
    got = linear_projections_triton(a, d, P)
    assert got.shape == (S, K) and got.dtype == torch.float32
    ref = ref_projections(a, d, P).cpu()
    torch.testing.assert_close(got, linear_projections_torch(a, d, P), **tol32(ref))
    torch.testing.assert_close(got.double().cpu(), ref, **tol32(ref))


@needs_triton
def test_triton_float64_and_small_blocks(kernel_device):
    from sgdyn.kernels.per_sample_triton import linear_projections_triton

    g = torch.Generator().manual_seed(3)
    a = torch.randn(45, 11, generator=g, dtype=torch.float64).to(kernel_device)
    d = torch.randn(45, 6, generator=g, dtype=torch.float64).to(kernel_device)
    P = torch.randn(19, 66, generator=g, dtype=torch.float64).to(kernel_device)
    got = linear_projections_triton(a, d, P, block_s=16, block_k=16, block_f=16)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got.cpu(), ref_projections(a, d, P).cpu(), **TOL64)


@needs_triton
def test_triton_non_contiguous_inputs(kernel_device):
    from sgdyn.kernels.per_sample_triton import linear_projections_triton

    g = torch.Generator().manual_seed(4)
    a = torch.randn(40, 18, generator=g).to(kernel_device)[::2, ::2]  # (20, 9), strided
    d = torch.randn(7, 20, generator=g).to(kernel_device).T  # (20, 7), transposed
    P = torch.randn(63, 5, generator=g).to(kernel_device).T  # (5, 63), column-major
    assert not (a.is_contiguous() or d.is_contiguous() or P.is_contiguous())
    got = linear_projections_triton(a, d, P)
    torch.testing.assert_close(got.cpu().double(), ref_projections(a, d, P).cpu(), **TOL32)


@needs_triton
def test_dispatch_forces_triton(monkeypatch, kernel_device):
    from sgdyn.kernels import per_sample_triton

    calls = []
    orig = per_sample_triton.linear_projections_triton

    def spy(*args, **kw):
        calls.append(1)
        return orig(*args, **kw)

    monkeypatch.setattr(per_sample_triton, "linear_projections_triton", spy)
    a, d, P = (torch.randn(*sh).to(kernel_device) for sh in ((9, 4), (9, 3), (2, 3, 4)))
    with dispatch.use_backend("torch"):
        ref = linear_projections(a, d, P)
    assert not calls
    with dispatch.use_backend("triton"):
        got = linear_projections(a, d, P)
    assert calls
    torch.testing.assert_close(got, ref, **TOL32)
    monkeypatch.setenv("SGDYN_BACKEND", "triton")
    linear_projections(a, d, P)
    assert len(calls) == 2


def test_triton_rejected_without_interpreter(monkeypatch):
    """Forcing Triton on CPU tensors without the interpreter is a clear error."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    a, d, P = torch.randn(3, 2), torch.randn(3, 2), torch.randn(1, 4)
    with dispatch.use_backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        linear_projections(a, d, P)


# -- input validation ------------------------------------------------------------------------
def test_bad_inputs_are_rejected():
    a, d = torch.randn(4, 3), torch.randn(4, 2)
    with pytest.raises(ValueError, match="directions must be"):
        linear_projections(a, d, torch.randn(2, 3, 2))  # transposed weight shape
    with pytest.raises(ValueError, match="same batch"):
        linear_projections(a, torch.randn(5, 2), torch.randn(1, 6))
    with pytest.raises(TypeError, match="floating-point"):
        linear_projections(a.long(), d, torch.randn(1, 6))
    with pytest.raises(ValueError, match=r"\(S, d\)"):
        linear_projections(a[0], d[0], torch.randn(1, 6))


def test_mixed_and_half_dtypes_promote():
    a, d, P = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2), torch.randn(2, 6)
    out = linear_projections(a, d, P)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref_projections(a, d, P), **TOL32)
    # half inputs: computed in float32 (never accumulated in half). Reference: autograd of
    # each sample's own loss d_s . (W a_s) in float64 on the half-rounded inputs, W's
    # gradient projected on P (independent of the kernel's einsum formulation)
    g = torch.Generator().manual_seed(3)
    a, d = torch.randn(40, 30, generator=g) * 8, torch.randn(40, 20, generator=g) * 8
    P = torch.randn(3, 20 * 30, generator=g)
    out16 = linear_projections(a.half(), d.half(), P)
    assert out16.dtype == torch.float32
    ref = torch.empty(40, 3, dtype=torch.float64)
    W = torch.zeros(20, 30, dtype=torch.float64, requires_grad=True)
    for s in range(40):
        (gw,) = torch.autograd.grad(d[s].half().double() @ (W @ a[s].half().double()), W)
        ref[s] = P.double() @ gw.reshape(-1)
    torch.testing.assert_close(out16.double(), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    # half accumulation over 600 terms would be off by ~1e-2 relative: the test can tell
    half_acc = torch.einsum("si,sj,kij->sk", d.half(), a.half(), P.half().view(3, 20, 30))
    assert float((half_acc.double() - ref).abs().max()) > 1e-4 * float(ref.abs().max())


# -- hooks vs torch.func ---------------------------------------------------------------------
def _mnist_like(S, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(S, 784, generator=g), torch.randint(0, 10, (S,), generator=g)


@pytest.mark.parametrize("param", ["layers.0.weight", "layers.1.weight", "layers.2.weight"])
def test_mlp_matches_torch_func(param):
    torch.manual_seed(0)
    model = MLP()
    x, y = _mnist_like(24)
    ref = func_per_sample_grads(model, param, x, y)  # (S, d_out, d_in)
    w = dict(model.named_parameters())[param]
    before = None if w.grad is None else w.grad.clone()
    torch.testing.assert_close(per_sample_grads(model, param, x, y), ref, rtol=1e-4, atol=1e-6)
    assert w.grad is before  # parameter .grad untouched
    P = torch.randn(5, *w.shape)
    want = torch.einsum("sij,kij->sk", ref, P)
    got = per_sample_projections(model, param, x, y, P)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    got_b = per_sample_projections(model, param, x, y, P, batch_size=7)
    torch.testing.assert_close(got_b, want, rtol=1e-4, atol=1e-5)
    norms = per_sample_grad_norms(model, param, x, y)
    torch.testing.assert_close(norms, ref.flatten(1).norm(dim=1), rtol=1e-4, atol=1e-6)


@needs_triton
def test_mlp_projections_through_triton(kernel_device):
    torch.manual_seed(1)
    model = MLP().to(kernel_device)
    x, y = (t.to(kernel_device) for t in _mnist_like(19, seed=1))
    ref = func_per_sample_grads(model, "layers.1.weight", x, y)
    P = torch.randn(3, 50, 50, device=kernel_device)
    with dispatch.use_backend("triton"):
        got = per_sample_projections(model, "layers.1.weight", x, y, P)
    torch.testing.assert_close(got, torch.einsum("sij,kij->sk", ref, P), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("param", ["conv1.weight", "conv2.weight", "fc.weight"])
def test_lenet_matches_torch_func(param):
    torch.manual_seed(0)
    model = LeNetMNIST()
    x, y = _mnist_like(6, seed=2)
    ref = func_per_sample_grads(model, param, x, y)
    got = per_sample_grads(model, param, x, y)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)
    w = dict(model.named_parameters())[param]
    P = torch.randn(4, *w.shape)
    want = torch.einsum("sf,kf->sk", ref.flatten(1), P.flatten(1))
    torch.testing.assert_close(
        per_sample_projections(model, param, x, y, P), want, rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        per_sample_grad_norms(model, param, x, y), ref.flatten(1).norm(dim=1), rtol=1e-4, atol=1e-6
    )


def test_conv_stride_dilation_padding():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
        nn.Flatten(),
        nn.LazyLinear(4),
    )
    x = torch.randn(5, 2, 9, 8)
    model(x)  # materialise the lazy layer
    y = torch.randint(0, 4, (5,))
    ref = func_per_sample_grads(model, "0.weight", x, y)
    torch.testing.assert_close(per_sample_grads(model, "0", x, y), ref, rtol=1e-4, atol=1e-6)
    a, d = collect_layer_io(model, "0", x, y)
    layer = model[0]
    grads = conv2d_per_sample_grads(layer, x, d.transpose(1, 2).reshape(5, 3, *_out_hw(layer, x)))
    torch.testing.assert_close(grads, ref, rtol=1e-4, atol=1e-6)


def _out_hw(layer, x):
    return layer(x).shape[-2:]


@pytest.mark.parametrize(
    "loss_fn,reduction",
    [
        (nn.CrossEntropyLoss(), None),  # mean, read from .reduction
        (nn.CrossEntropyLoss(reduction="sum"), None),
        (lambda o, t: F.cross_entropy(o, t), "mean"),
        (lambda o, t: F.cross_entropy(o, t, reduction="sum"), "sum"),
    ],
)
def test_loss_reduction_scaling(loss_fn, reduction):
    torch.manual_seed(0)
    model = MLP((20, 8, 8, 3))
    x, y = torch.randn(10, 20), torch.randint(0, 3, (10,))
    ref = func_per_sample_grads(model, "layers.1.weight", x, y)
    got = per_sample_grads(model, "layers.1.weight", x, y, loss_fn, reduction=reduction)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)


def test_sequence_linear_sums_over_positions():
    torch.manual_seed(0)

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 5, bias=False)
            self.head = nn.Linear(5, 3)

        def forward(self, x):
            return self.head(torch.tanh(self.lin(x)).mean(1))

    model = Seq()
    x, y = torch.randn(7, 4, 6), torch.randint(0, 3, (7,))
    ref = func_per_sample_grads(model, "lin.weight", x, y)
    a, d = collect_layer_io(model, "lin", x, y)
    assert a.shape == (7, 4, 6) and d.shape == (7, 4, 5)
    torch.testing.assert_close(linear_per_sample_grads(a, d), ref, rtol=1e-4, atol=1e-6)


def test_hook_errors():
    model = MLP((20, 8, 8, 3))
    x, y = torch.randn(4, 20), torch.randint(0, 3, (4,))
    with pytest.raises(KeyError, match="linear/conv layers are"):
        collect_layer_io(model, "nope", x, y)
    with pytest.raises(TypeError, match="only nn.Linear and nn.Conv2d"):
        collect_layer_io(model, "layers", x, y)
    with pytest.raises(ValueError, match="empty batch"):
        collect_layer_io(model, "layers.1", x[:0], y[:0])
    with pytest.raises(ValueError, match="reduction"):
        collect_layer_io(model, "layers.1", x, y, lambda o, t: F.cross_entropy(o, t), reduction="x")
    grouped = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="grouped"):
        collect_layer_io(grouped, "0", torch.randn(2, 2, 3, 3), torch.tensor([0, 1]))


def test_inplace_activation_after_layer():
    """An in-place ReLU on the layer output does not corrupt the captured gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 5, bias=False), nn.ReLU(inplace=True), nn.Linear(5, 3, bias=False)
    )
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    ref = func_per_sample_grads(model, "0.weight", x, y)
    torch.testing.assert_close(per_sample_grads(model, "0", x, y), ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("d_out,d_in", [(20, 6), (6, 20)])
@pytest.mark.parametrize("K", [1, 2, 40])
def test_twin_routes_agree(d_out, d_in, K, monkeypatch):
    """Both twin routes (few / many directions, either side contracted first) and chunking."""
    monkeypatch.setattr(per_sample, "_CHUNK_ELEMS", 97)
    g = torch.Generator().manual_seed(K)
    a, d = torch.randn(23, d_in, generator=g), torch.randn(23, d_out, generator=g)
    P = torch.randn(K, d_out, d_in, generator=g)
    ref = ref_projections(a, d, P)
    torch.testing.assert_close(linear_projections_torch(a, d, P).double(), ref, **tol32(ref))
