"""sgdyn.theory against the library that does the same job (issue 13.4): which one to keep.

1. Theil-Sen loss rate (Fig S1 phases): ``theory.phases.loss_rate`` (all trailing windows
   at once, vectorised median of pairwise slopes) vs ``scipy.stats.theilslopes`` per window.
2. Power-law fit with a bootstrap (gamma, psi): ``theory.fit_power_law`` (now
   ``scipy.stats.linregress`` + ``scipy.stats.bootstrap``, vectorised) vs the hand-written
   OLS + Python-loop bootstrap it replaced (kept here as the baseline).
3. e-width root finder (flatness, Eq 7): ``theory.flatness_e_width`` (secant / regula-falsi
   on ln L vs a^2, batched over directions) vs ``scipy.optimize.elementwise.bracket_root`` +
   ``find_root`` (Chandrupatla, elementwise, same variable a^2, same relative tolerance:
   ``xrtol = 2 tol`` on a^2 is ``tol`` on a), on analytic profiles and on the real MLP of
   ``bench_flatness.py`` (200 PCA directions, cached-tail evaluator). Cost on a network is
   the number of batched calls and (direction, amplitude) pairs evaluated.

Everything runs with ``torch.set_num_threads(1)`` and one BLAS thread (``--threads``).

    python bench/bench_theory_libs.py                 # all three, prints ratios
    python bench/bench_theory_libs.py --skip-network  # analytic parts only (seconds)
    pytest bench/bench_theory_libs.py --benchmark-only -s
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats
from scipy.optimize import brentq
from scipy.optimize import elementwise as sew

from sgdyn.theory import fit_power_law
from sgdyn.theory.flatness import flatness_e_width
from sgdyn.theory.phases import loss_rate


def _best(fn, repeats=5):
    ts = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), out


# -- 1. Theil-Sen --------------------------------------------------------------------------
def theilsen_scipy(losses, window=5):
    y = np.log(np.asarray(losses, float))
    r = np.full(y.size, np.nan)
    x = np.arange(window + 1)
    for e in range(window, y.size):
        r[e] = -stats.theilslopes(y[e - window : e + 1], x).slope
    return r


def loss_curve(n):
    e = np.arange(n, dtype=float)
    rng = np.random.default_rng(0)
    return (2 * np.exp(-e / 6) + 0.01 * np.exp(-0.01 * e)) * np.exp(0.02 * rng.standard_normal(n))


def compare_theilsen(n_epochs=(80, 500)):
    rows = []
    for n in n_epochs:
        L = loss_curve(n)
        t_ours, r1 = _best(lambda L=L: loss_rate(L))
        t_sp, r2 = _best(lambda L=L: theilsen_scipy(L), repeats=3)
        rows.append((n, t_ours, t_sp, float(np.nanmax(np.abs(r1 - r2)))))
    return rows


# -- 2. power law --------------------------------------------------------------------------
def _ols(lx, ly):
    xm, ym = lx.mean(), ly.mean()
    sxx = np.sum((lx - xm) ** 2)
    slope = np.sum((lx - xm) * (ly - ym)) / sxx
    resid = ly - (ym - slope * xm + slope * lx)
    return slope, np.sqrt(np.sum(resid**2) / (lx.size - 2) / sxx)


def power_law_hand(x, y, n_boot=200, seed=0):
    """The hand-written fit that theory.powerlaw used before (baseline)."""
    lx, ly = np.log(x), np.log(y)
    slope, err = _ols(lx, ly)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, lx.size, lx.size)
        if np.ptp(lx[idx]) > 0:
            boot.append(_ols(lx[idx], ly[idx])[0])
    return slope, err, float(np.std(boot, ddof=1))


def compare_power_law():
    rng = np.random.default_rng(0)
    i = np.arange(20, 201, dtype=float)
    v = i**-2.6 * np.exp(0.05 * rng.standard_normal(i.size))
    t_lib, fit = _best(lambda: fit_power_law(i, v))
    t_hand, (s, e, eb) = _best(lambda: power_law_hand(i, v))
    return t_lib, t_hand, fit, (s, e, eb)


# -- 3. e-width root finder ----------------------------------------------------------------
def ewidth_scipy(pairs, n, L0, *, factor=np.e, init_step=0.05, max_amplitude=1e3, tol=1e-3):
    """Both crossings of L = factor L0 with scipy's elementwise bracket_root + find_root.

    ``pairs(k, a)`` evaluates direction k[j] at amplitude a[j] (any number of pairs). Works
    on g(x) = ln L(+-sqrt(x)) - ln(factor L0) against x = a^2, like the theory root finder.
    Returns (left, right, n_calls).
    """
    lnthr = np.log(factor * L0)
    calls = 0
    out = []
    k_all = np.arange(n, dtype=np.float64)
    for sign in (-1.0, 1.0):

        def g(x, k, sign=sign):
            nonlocal calls
            calls += 1
            kk = k.astype(np.int64)
            with np.errstate(over="ignore"):
                return np.log(pairs(kk, sign * np.sqrt(x))) - lnthr

        br = sew.bracket_root(g, init_step**2, (2 * init_step) ** 2, xmin=0.0,
                              xmax=max_amplitude**2, factor=4.0, args=(k_all,))  # fmt: skip
        res = sew.find_root(g, br.bracket, args=(k_all,),
                            tolerances=dict(xrtol=2 * tol, xatol=0.0))  # fmt: skip
        if not (br.success.all() and res.success.all()):
            raise RuntimeError("scipy root finder did not converge everywhere")
        out.append(sign * np.sqrt(res.x))
    return out[0], out[1], calls


def analytic_profiles(n=200, seed=0):
    """ln L - ln L0 of the test suite's non-quadratic families (linear + quartic term,
    saturating, steep), n directions; returns (pairs, reference crossings by brentq)."""
    rng = np.random.default_rng(seed)
    b, c = rng.uniform(-3, 3, n), rng.uniform(0.05, 20, n)
    q = rng.uniform(0, 2, n) * (np.arange(n) % 2)
    fam = np.arange(n) % 3
    s = 0.1 + 0.3 * rng.random(n)

    def lnrel(k, a):
        return np.select(
            [fam[k] == 0, fam[k] == 1],
            [b[k] * a + c[k] * a**2 + q[k] * a**4, np.log1p(c[k] * a**2)],
            (a / s[k]) ** 6 - 0.5 * b[k] * a,
        )

    ref = np.empty((n, 2))
    for k in range(n):
        for j, sg in enumerate((-1.0, 1.0)):
            gk = lambda a, sg=sg, k=k: float(lnrel(np.array([k]), np.array([sg * a]))[0]) - 1  # noqa: E731
            grid = np.geomspace(1e-4, 1e3, 4000)
            i = int(np.flatnonzero([gk(x) >= 0 for x in grid])[0])
            ref[k, j] = sg * brentq(gk, grid[i - 1], grid[i], xtol=1e-14, rtol=1e-14)
    return (lambda k, a: 0.3 * np.exp(lnrel(k, a))), ref


def compare_root_finders_analytic(n=200, tol=1e-3):
    pairs, ref = analytic_profiles(n)
    count = {"pairs": 0}

    def counted(k, a):
        count["pairs"] += np.size(k)
        return pairs(k, a)

    idx = np.arange(n)
    fn = lambda a: counted(idx, a)  # noqa: E731
    with np.errstate(over="ignore"):
        t_ours, res = _best(lambda: flatness_e_width(fn, n, L0=0.3, init_step=0.05, tol=tol))
        p_ours = count["pairs"] // 5
        count["pairs"] = 0
        t_sp, (left, right, calls) = _best(
            lambda: ewidth_scipy(counted, n, 0.3, init_step=0.05, tol=tol)
        )
    p_sp = count["pairs"] // 5
    rel = lambda lo, hi: max(np.max(np.abs(lo / ref[:, 0] - 1)), np.max(np.abs(hi / ref[:, 1] - 1)))  # noqa: E731, E501
    return dict(t_ours=t_ours, t_scipy=t_sp, calls_ours=res.n_evals, calls_scipy=calls,
                pairs_ours=p_ours, pairs_scipy=p_sp, err_ours=rel(res.left, res.right),
                err_scipy=rel(left, right))  # fmt: skip


def compare_root_finders_network(K=200, tol=1e-3, repeats=3):
    import torch
    from bench_flatness import pca_directions, trained_mlp

    from sgdyn.validation.probes.network_landscape import NetworkLandscape

    model, data = trained_mlp(15)
    P = pca_directions(model, data, 300, K)
    land = NetworkLandscape(model, "layers.1.weight", data)
    w0 = land.current()
    L0 = float(land.full_loss(w0))
    ((_, ev),) = list(land.evaluators(w0, P))  # one chunk: cache built once, outside timing
    ev_pairs = lambda k, a: ev.pairs(torch.as_tensor(k), torch.as_tensor(a)).numpy()  # noqa: E731
    t_ours, t_sp, res, sp = [], [], None, None
    n0 = ev.n_pairs
    for _ in range(repeats):
        ev._memo = [{} for _ in range(ev.n_dirs)]  # cold memo: every run pays its pairs
        n0 = ev.n_pairs
        t0 = time.perf_counter()
        res = flatness_e_width(ev, ev.n_dirs, L0=L0, init_step=0.05, tol=tol)
        t_ours.append(time.perf_counter() - t0)
        pairs_ours = ev.n_pairs - n0
        n0 = ev.n_pairs
        t0 = time.perf_counter()
        sp = ewidth_scipy(ev_pairs, ev.n_dirs, L0, init_step=0.05, tol=tol)
        t_sp.append(time.perf_counter() - t0)
        pairs_sp = ev.n_pairs - n0
    left, right, calls = sp
    width_sp = right - left
    ref = flatness_e_width(ev, ev.n_dirs, L0=L0, init_step=0.05, tol=1e-9, method="bisect")
    return dict(t_ours=float(np.median(t_ours)), t_scipy=float(np.median(t_sp)),
                calls_ours=res.n_evals, calls_scipy=calls, pairs_ours=pairs_ours,
                pairs_scipy=pairs_sp,
                err_ours=float(np.max(np.abs(res.width / ref.width - 1))),
                err_scipy=float(np.max(np.abs(width_sp / ref.width - 1))),
                t_ours_all=t_ours, t_scipy_all=t_sp)  # fmt: skip


# -- pytest-benchmark entry points (small sizes) ------------------------------------------
def test_bench_theilsen_ours(benchmark):
    benchmark(lambda: loss_rate(loss_curve(80)))


def test_bench_theilsen_scipy(benchmark):
    benchmark(lambda: theilsen_scipy(loss_curve(80)))


def test_bench_power_law_scipy(benchmark):
    i = np.arange(20, 201, dtype=float)
    benchmark(lambda: fit_power_law(i, i**-2.6))


def test_bench_power_law_hand(benchmark):
    i = np.arange(20, 201, dtype=float)
    benchmark(lambda: power_law_hand(i, i**-2.6))


def test_bench_root_finders_agree():
    r = compare_root_finders_analytic(n=30)
    assert r["err_ours"] <= 1e-3 and r["err_scipy"] <= 1e-3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dirs", type=int, default=200)
    ap.add_argument("--skip-network", action="store_true")
    a = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(a.threads)
    with threadpool_limits(a.threads):
        print(f"== 1. Theil-Sen loss rate ({a.threads} thread) ==")
        for n, t1, t2, d in compare_theilsen():
            print(f"  {n} epochs: ours {t1 * 1e3:.2f} ms, scipy.stats.theilslopes per window "
                  f"{t2 * 1e3:.2f} ms: ours {t2 / t1:.1f}x faster; max |diff| {d:.1e}")  # fmt: skip
        t_lib, t_hand, fit, hand = compare_power_law()
        print("== 2. power law + 200-resample bootstrap (181 points) ==")
        print(f"  scipy linregress + bootstrap (BCa, vectorised) {t_lib * 1e3:.2f} ms, hand OLS "
              f"+ loop {t_hand * 1e3:.2f} ms: scipy {t_hand / t_lib:.1f}x faster; slope "
              f"{fit.slope:.6f} vs {hand[0]:.6f}, OLS err {fit.slope_err:.3g} vs {hand[1]:.3g}, "
              f"bootstrap err {fit.slope_err_boot:.3g} vs {hand[2]:.3g}")  # fmt: skip
        r = compare_root_finders_analytic(a.dirs)
        print(f"== 3a. e-width root finder, {a.dirs} analytic non-quadratic profiles, tol 1e-3 ==")
        print(f"  theory: {r['t_ours'] * 1e3:.1f} ms, {r['calls_ours']} batched calls, "
              f"{r['pairs_ours']} pairs, max rel err {r['err_ours']:.1e}\n"
              f"  scipy bracket_root + find_root: {r['t_scipy'] * 1e3:.1f} ms, "
              f"{r['calls_scipy']} calls, {r['pairs_scipy']} pairs, max rel err "
              f"{r['err_scipy']:.1e}\n  theory {r['t_scipy'] / r['t_ours']:.1f}x faster, "
              f"{r['calls_scipy'] / r['calls_ours']:.1f}x fewer calls")  # fmt: skip
        if not a.skip_network:
            r = compare_root_finders_network(a.dirs)
            print(f"== 3b. e-width on the MNIST MLP, {a.dirs} PCA directions, tol 1e-3 ==")
            print(  # fmt: skip
                  f"  theory: {r['t_ours']:.2f} s median {r['t_ours_all']}, {r['calls_ours']} "
                  f"batched calls, {r['pairs_ours']} pairs, max rel err {r['err_ours']:.1e}\n"
                  f"  scipy: {r['t_scipy']:.2f} s median {r['t_scipy_all']}, "
                  f"{r['calls_scipy']} calls, {r['pairs_scipy']} pairs, max rel err "
                  f"{r['err_scipy']:.1e}\n  theory {r['t_scipy'] / r['t_ours']:.2f}x faster"
            )  # fmt: skip


if __name__ == "__main__":
    main()
