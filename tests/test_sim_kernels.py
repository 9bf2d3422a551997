"""Matrix-free MLF step: Philox twin == Triton (interpreter), symmetry, reproducibility."""

import pytest
import torch

from sgdyn.kernels.mlf_step import (
    _blocked_apply,
    mlf_dense_twin,
    mlf_matvec2,
    philox_keys,
    philox_randn_torch,
)


@pytest.fixture()
def params(kernel_device):
    g = torch.Generator().manual_seed(0)
    N = 37
    return (
        N,
        (torch.rand(N, generator=g) + 1).to(kernel_device),
        (torch.rand(N, generator=g) * 0.2).to(kernel_device),
        (torch.rand(N, generator=g) * 0.3).to(kernel_device),
    )


def test_philox_twin_equals_tl_randn(kernel_device):
    from sgdyn.kernels.mlf_step_triton import philox_randn_triton

    keys = philox_keys(12345, torch.tensor([0, 7, 2**31 - 1])).to(kernel_device)
    off = (torch.arange(600, dtype=torch.int64) * 104729 + (3 << 32)).to(kernel_device)
    a = philox_randn_triton(keys, off)
    b = philox_randn_torch(keys, off)
    assert torch.allclose(a, b, atol=2e-6, rtol=0)
    assert abs(float(b.mean())) < 0.1 and abs(float(b.std()) - 1) < 0.1


def test_twin_matrices_symmetric_reproducible_and_distributed(params):
    N, M0, sM, s = params
    keys = philox_keys(3, torch.tensor([1, 1, 2]))
    M = mlf_dense_twin(keys, M0, sM, s)
    assert torch.equal(M, M.transpose(1, 2))
    assert torch.equal(M[0], M[1]) and not torch.equal(M[0], M[2])
    assert torch.equal(M, mlf_dense_twin(keys, M0, sM, s))
    # law: diag N(M0, sM^2), off-diagonal N(0, (s_i s_j)^2)
    many = mlf_dense_twin(philox_keys(9, torch.arange(400)), M0, sM, s)
    M0, sM, s = M0.cpu(), sM.cpu(), s.cpu()
    many = many.cpu()
    z_off = many / (s[:, None] * s[None, :])
    iu = torch.triu_indices(N, N, 1)
    z = z_off[:, iu[0], iu[1]].reshape(-1)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.var()) - 1) < 0.01
    zd = (torch.diagonal(many, dim1=1, dim2=2) - M0) / sM
    assert abs(float(zd.mean())) < 0.03 and abs(float(zd.var()) - 1) < 0.05


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_kernel_equals_twin(params, dtype):
    from sgdyn.kernels.mlf_step_triton import mlf_matvec2_triton

    N, M0, sM, s = (p if isinstance(p, int) else p.to(dtype) for p in params)
    dev = M0.device
    keys = philox_keys(5, torch.tensor([4, 11, 4])).to(dev)
    x, y = torch.randn(3, N, dtype=dtype, device=dev), torch.randn(3, N, dtype=dtype, device=dev)
    ux, uy = mlf_matvec2_triton(keys, x, y, M0, sM, s, block_i=16, block_j=16)
    assert ux.dtype == dtype and uy.dtype == dtype  # no silent cast to float32
    tx, ty = mlf_matvec2(keys, x, y, M0, sM, s, impl="twin")
    # The Philox normals are float32 in both (tl.randn vs its torch twin: equal to ~1 float32
    # ulp, not bitwise: the interpreter's numpy log/cos differ from torch's in the last bit),
    # so float64 agrees to the draw's precision, ~1e-7 relative, whatever the accumulation.
    tol = 1e-5 if dtype == torch.float32 else 1e-6
    assert torch.allclose(ux, tx, atol=tol) and torch.allclose(uy, ty, atol=tol)
    M = mlf_dense_twin(keys, M0, sM, s).double()
    assert torch.allclose(ux.double(), torch.einsum("rij,rj->ri", M, x.double()), atol=1e-5)


def test_every_launcher_refuses_bad_launches(params, monkeypatch):
    from sgdyn.kernels.mlf_step_triton import mlf_matvec2_triton
    from sgdyn.kernels.per_sample_triton import linear_projections_triton
    from sgdyn.kernels.streaming_pca_triton import batch_moments_triton

    N, M0, sM, s = params
    dev = M0.device
    keys = philox_keys(5, torch.tensor([4, 11])).to(dev)
    x = torch.randn(2, N, device=dev)
    with pytest.raises(TypeError, match="no silent cast"):
        mlf_matvec2_triton(keys, x.half(), x.half(), M0, sM, s)
    with pytest.raises(TypeError, match="share one dtype"):
        mlf_matvec2_triton(keys, x.double(), x.double(), M0, sM, s)
    with pytest.raises(TypeError, match="int64"):
        mlf_matvec2_triton(keys.int(), x, x, M0, sM, s)
    with pytest.raises(ValueError, match="one device"):
        mlf_matvec2_triton(keys, x, x.to("meta"), M0, sM, s)
    a = torch.randn(4, 3, device=dev)
    with pytest.raises(ValueError, match="one device"):
        linear_projections_triton(a, a.to("meta"), torch.randn(2, 9, device=dev))
    with pytest.raises(TypeError, match="no silent cast"):
        batch_moments_triton(torch.zeros(3, 3, dtype=torch.float16, device=dev))
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # CPU tensors without the interpreter
    cpu = torch.randn(2, N)
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        mlf_matvec2_triton(keys.cpu(), cpu, cpu, M0.cpu(), sM.cpu(), s.cpu())
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        batch_moments_triton(cpu)
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        linear_projections_triton(a.cpu(), a.cpu(), torch.randn(2, 9))


def test_matvec2_refuses_mixed_state_dtypes(params):
    N, M0, sM, s = params
    x = torch.randn(2, N, device=M0.device)
    with pytest.raises(TypeError, match="share one dtype"):
        mlf_matvec2(torch.tensor([1, 2]), x, x.double(), M0, sM, s, impl="twin")


def test_blocked_product_equals_dense_for_the_same_numbers(params):
    N, M0, sM, s = params
    g = torch.Generator().manual_seed(1)
    Z = torch.randn(N, N, generator=g, dtype=torch.float64)
    Zs = torch.triu(Z) + torch.triu(Z, 1).T
    M0, sM, s = M0.cpu(), sM.cpu(), s.cpu()
    sd = s.double()
    M = Zs * (sd[:, None] * sd[None, :])
    M.diagonal().copy_(M0.double() + sM.double() * Zs.diagonal())
    X = torch.randn(2, N, 3, dtype=torch.float64)
    pos = [0]

    def Zfn(m, n):  # hands out the upper-triangle rows block by block
        a = pos[0]
        pos[0] += m
        return Z[a : a + m, a : a + n][None]

    U = _blocked_apply(Zfn, X, M0.double(), sM.double(), s.double(), block=8)
    assert torch.allclose(U, torch.einsum("ij,rjc->ric", M, X), atol=1e-10)


def test_blocked_keyed_path_reproducible_and_shared_by_key(params):
    N, M0, sM, s = params
    keys = philox_keys(2, torch.tensor([3, 3, 8]))
    x = torch.randn(3, N, device=M0.device)
    x[1] = x[0]
    u1, _ = mlf_matvec2(keys, x, x, M0, sM, s, impl="blocked")
    u2, _ = mlf_matvec2(keys, x, x, M0, sM, s, impl="blocked")
    assert torch.equal(u1, u2) and torch.allclose(u1[0], u1[1])


def test_twin_refuses_large_n():
    n = 5000
    with pytest.raises(ValueError, match="too large for the dense twin"):
        mlf_dense_twin(torch.tensor([1]), torch.ones(n), torch.ones(n), torch.ones(n))


def test_bad_keys_and_impl():
    with pytest.raises(ValueError, match="2\\^31"):
        philox_keys(0, torch.tensor([2**31]))
    with pytest.raises(ValueError, match="impl"):
        mlf_matvec2(torch.tensor([1]), torch.ones(1, 3), torch.ones(1, 3), torch.ones(3),
                    torch.ones(3), torch.ones(3), impl="nope")  # fmt: skip
