"""Curvature beside flatness: HVPs, Lanczos eigenpairs and the F-curvature relation against an
explicit Hessian (torch.autograd.functional.hessian), finite differences of ln L, an exact
exp-of-quadratic landscape, Monte Carlo nulls, and PyHessian when it is installed."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sgdyn.theory.curvature import (
    eigvec_cosine,
    flatness_from_curvature,
    lnL_curvature,
    random_overlap_null,
    subspace_overlap,
)
from sgdyn.validation.probes.curvature import (
    curvature_analysis,
    directional_curvature,
    hessian_eigenpairs,
)
from sgdyn.validation.probes.network_landscape import NetworkLandscape


def _data(n=80, d=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


class Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 5), nn.Linear(5, 5), nn.Linear(5, 4)

    def forward(self, z):
        h = torch.tanh(self.a(z))
        return self.c(torch.tanh(self.b(h)) + h)


def _explicit_hessian(model, name, w, x, y, loss=F.cross_entropy):
    shape = model.get_parameter(name).shape

    def L(u):
        return loss(torch.func.functional_call(model, {name: u.view(shape)}, (x,)), y)

    return torch.autograd.functional.hessian(L, w.detach().clone())


@pytest.fixture(params=["cached-tail", "whole-model"])
def case(request):
    torch.manual_seed(0)
    x, y = _data()
    if request.param == "cached-tail":
        m = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 4))
        name = "2.weight"
    else:
        m, name = Skip(), "b.weight"
    m = m.double()
    L = NetworkLandscape(m, name, (x, y), batch_size=None)
    assert L.evaluator == request.param
    w0 = L.current() + 0.05  # off the trained point: a non-zero gradient
    H = _explicit_hessian(m, name, w0, x, y)
    return L, w0, H


def test_hvp_matches_explicit_hessian(case):
    L, w0, H = case
    V = torch.randn(7, L.n_params, dtype=torch.float64)
    torch.testing.assert_close(L.hvp(w0, V, chunk_dirs=3, chunk_samples=30), V @ H)
    pHp, HP = directional_curvature(L, w0, V)
    np.testing.assert_allclose(pHp, ((V @ H) * V).sum(1).numpy() / (V**2).sum(1).numpy())


def test_lanczos_top_eigenpairs_match_explicit_hessian(case):
    L, w0, H = case
    ev, U = np.linalg.eigh(H.numpy())
    vals, vecs, n_mv = hessian_eigenpairs(L, w0, 3, tol=1e-10)
    np.testing.assert_allclose(vals, ev[::-1][:3], rtol=1e-8)
    overlap = np.abs((vecs * U[:, ::-1][:, :3].T).sum(1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-6)
    assert n_mv >= 3
    lo, _, _ = hessian_eigenpairs(L, w0, 1, which="SA", tol=1e-10)
    np.testing.assert_allclose(lo, ev[:1], rtol=1e-7, atol=1e-10)


def test_lnL_curvature_relation_against_finite_differences(case):
    """(ln L)'' = pHp / L0 - (g.p / L0)^2 along unit p, checked by central differences of
    the measured profile; the gradient term is not negligible here (so dropping it fails)."""
    L, w0, _ = case
    P = torch.randn(4, L.n_params, dtype=torch.float64)
    P /= P.norm(dim=1, keepdim=True)
    L0, grad = L.full_loss_and_grad(w0)
    L0 = float(L0)
    gp = (P @ grad).numpy()
    pHp, _ = directional_curvature(L, w0, P)
    h = 1e-3
    prof = L.losses_along(w0, P, torch.tensor([-h, 0.0, h])).numpy()
    fd = (np.log(prof[:, 0]) - 2 * np.log(prof[:, 1]) + np.log(prof[:, 2])) / h**2
    pred = lnL_curvature(L0, pHp, gp)
    np.testing.assert_allclose(fd, pred, rtol=1e-5, atol=1e-8)
    assert np.max(np.abs(pHp / L0 - pred) / np.abs(pred)) > 1e-2  # the (g.p)^2 term matters
    np.testing.assert_allclose(flatness_from_curvature(L0, pHp, gp), np.sqrt(8 / fd), rtol=1e-5)


def test_ewidth_equals_curvature_flatness_on_exact_exp_quadratic_landscape():
    """L(W) = exp(|W x - t|^2) with t = W0 x: ln L is exactly quadratic, so at W0 the e-width
    F_i equals sqrt(8 L0 / pHp) and H = 2 L0 (I (x) x x^T) in closed form."""
    torch.manual_seed(1)
    x = torch.randn(1, 4, dtype=torch.float64)
    m = nn.Linear(4, 3, bias=False).double()
    t = m(x).detach()
    L = NetworkLandscape(
        m, "weight", (x, t), loss_fn=lambda out, tt: torch.exp(((out - tt) ** 2).sum(1))
    )
    w0 = L.current()
    H_closed = 2.0 * torch.kron(torch.eye(3, dtype=torch.float64), x.T @ x)
    V = torch.randn(5, 12, dtype=torch.float64)
    torch.testing.assert_close(L.hvp(w0, V), V @ H_closed)
    P = V / V.norm(dim=1, keepdim=True)
    res = L.flatness(w0, P, init_step=0.05, tol=1e-9)
    cur = curvature_analysis(L, w0, P, n_eig=2, n_null=4, tol=1e-10)
    np.testing.assert_allclose(res.width, cur.F_hessian, rtol=1e-8)
    np.testing.assert_allclose(cur.F_hessian, cur.F_hessian_min, rtol=1e-12)  # g = 0 here
    rel = cur.relation(res.width, first=1)
    assert abs(rel["median_ratio"] - 1) < 1e-8


def test_alignment_numbers_and_their_nulls():
    torch.manual_seed(2)
    x, y = _data(seed=2)
    m = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 4))
    L = NetworkLandscape(m.double(), "2.weight", (x, y), batch_size=None)
    w0 = L.current()
    H = _explicit_hessian(L.model, "2.weight", w0, x, y).numpy()
    ev, U = np.linalg.eigh(H)
    top = U[:, ::-1][:, :3].T.copy()
    # directions = exact eigenvectors: cosine 1, top eigenvectors inside their span
    cur = curvature_analysis(L, w0, torch.as_tensor(top), n_eig=3, n_null=200, tol=1e-10)
    np.testing.assert_allclose(cur.eig_cosine, 1.0, atol=1e-8)
    np.testing.assert_allclose(cur.top_in_span, 1.0, atol=1e-6)
    np.testing.assert_allclose(cur.pHp, ev[::-1][:3], rtol=1e-8)
    assert cur.span_null == 3 / 25
    # random directions: their cosine is far from 1, by an explicit computation
    R = np.random.default_rng(0).standard_normal((50, 25))
    cos_ref = eigvec_cosine(R, R @ H)
    assert np.median(cur.null_eig_cosine) < 0.9
    assert abs(np.median(cur.null_eig_cosine) - np.median(cos_ref)) < 0.15
    s = cur.summary(F_ewidth=np.ones(3), first=1)
    assert s["alignment"]["top_eigvec_in_span_mean"] > 0.999
    assert s["hessian_top_eigenvalues"][0] == pytest.approx(ev[-1], rel=1e-8)


def test_random_overlap_null_by_monte_carlo():
    rng = np.random.default_rng(0)
    N, k = 40, 6
    fr = []
    b = rng.standard_normal((1, N))
    for _ in range(2000):
        A = np.linalg.qr(rng.standard_normal((N, k)))[0].T
        fr.append(subspace_overlap(A, b)[0])
    assert abs(np.mean(fr) - random_overlap_null(k, N)) < 0.01
    with pytest.raises(ValueError, match="orthonormal"):
        subspace_overlap(2 * np.eye(3), np.ones((1, 3)))


def test_flatness_from_curvature_refuses_and_flags():
    with pytest.raises(ValueError, match="positive"):
        flatness_from_curvature(0.0, [1.0])
    out = flatness_from_curvature(1.0, [2.0, -1.0, 1.0], [0.0, 0.0, 2.0])
    assert out[0] == pytest.approx(2.0) and np.isnan(out[1]) and np.isnan(out[2])


def test_conv_probe_with_batchnorm_hvp_matches_explicit_hessian():
    torch.manual_seed(3)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 2, 3)
            self.bn = nn.BatchNorm2d(2)
            self.c2 = nn.Conv2d(2, 2, 3)
            self.fc = nn.Linear(2 * 2 * 2, 3)

        def forward(self, z):
            z = torch.relu(self.bn(self.c1(z)))
            return self.fc(torch.tanh(self.c2(z)).flatten(1))

    x = torch.randn(12, 1, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    m = Net().double()
    m.train()
    with torch.no_grad():
        m(x)  # running statistics
    L = NetworkLandscape(m, "c2.weight", (x, y), batch_size=None)
    w0 = L.current()
    m.eval()
    H = _explicit_hessian(m, "c2.weight", w0, x, y)
    m.train()
    V = torch.randn(3, L.n_params, dtype=torch.float64)
    torch.testing.assert_close(L.hvp(w0, V), V @ H)
    assert m.training and m.bn.training


def test_top_eigenvalue_matches_pyhessian():
    pyhessian = pytest.importorskip("pyhessian")
    torch.manual_seed(4)
    x, y = _data(n=64, seed=4)
    m = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))
    m = m.float()
    x = x.float()
    for name, p in m.named_parameters():
        p.requires_grad_(name == "2.weight")
    L = NetworkLandscape(m, "2.weight", (x, y), batch_size=None)
    vals, _, _ = hessian_eigenpairs(L, L.current(), 1, which="LM", tol=1e-6)
    torch.manual_seed(0)
    hc = pyhessian.hessian(m, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    top, _ = hc.eigenvalues(maxIter=2000, tol=1e-7, top_n=1)
    assert abs(vals[0] / top[0] - 1) < 1e-3


def test_hvp_at_a_snapshot_view_allocates_no_window_sized_tangents(case):
    """A point that is one row of a captured window (a view into its storage) gives the same
    HVPs as a compact copy, and forward-mode AD does not allocate tangents the size of the
    whole window (it did: one (12000, 2500) window made each HVP chunk fill 360 MB)."""
    from torch.profiler import ProfilerActivity, profile

    L, w0, H = case
    window = torch.randn(400, L.n_params, dtype=torch.float64)
    window[-1] = w0
    V = torch.randn(3, L.n_params, dtype=torch.float64)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        HV = L.hvp(window[-1], V)
    torch.testing.assert_close(HV, V @ H)
    biggest = max(
        (int(np.prod(e.input_shapes[0])) for e in prof.events()
         if e.name in ("aten::fill_", "aten::zero_", "aten::zeros") and e.input_shapes
         and e.input_shapes[0]),
        default=0,
    )  # fmt: skip
    assert biggest < window.numel() // 10, biggest
