"""Random-landscape (MLF-ensemble) theory of Section IV: Eqs 9-14 and the equilibrium Eq 16.

Mean-field ensemble (Sec IV): for each minibatch mu, independent Normal parameters

    M^mu_ii ~ N(M0_ii, sigma_M,i^2),  M^mu_ij ~ N(0, sigma_ij^2) (i != j, symmetric),
    theta^mu_i ~ N(0, sigma_theta,i^2) for i >= 2,  theta^mu_1 ~ N(theta1_0, sigma_theta,1^2),

and an independent L^mu_0 > 0 with mean L0 and second moment <(L^mu_0)^2>. The MLF is
(Eq 9)  L^mu(theta) = L^mu_0 exp[theta^T M^mu theta / 2 - theta^T M^mu theta^mu].

Off-diagonal scales ``sigma_ij`` may be given as a scalar (the same for every pair), a vector
``r`` (N,) meaning the separable form sigma_ij = r_i r_j (O(N) storage, used by the simulator),
or a full symmetric (N, N) matrix (its diagonal is ignored). Mode 1 is index 0.

Arrays from any array-API library (numpy, torch on any device, cupy) are accepted; the
closed forms compute in the caller's namespace and return its array type, so torch autograd
flows through them (e.g. d F_i / d M0_jj). :func:`ou_window_variance` (a stable per-mode sum)
computes on the host and returns the caller's type without a gradient. Inputs are checked
at the boundary: negative curvatures, rates, temperatures or spreads raise a ValueError.
"""

from __future__ import annotations

import numpy as np

from ._arrays import Caller, caller_of, check_array, xp_array
from .flatness import VarianceFlatnessFit, variance_flatness_exponent

__all__ = [
    "averaged_curvature",
    "averaged_loss",
    "averaged_loss_minimum",
    "curvature_from_flatness",
    "diffusion_constant",
    "drift_velocity",
    "equilibrium_variance",
    "exact_mode_profile",
    "flatness_from_curvature",
    "min_position_variance",
    "offdiag_weighted_sum",
    "ou_window_variance",
    "predicted_psi",
    "relaxation_time",
    "theta_mu_second_moment",
    "window_variances",
]

_POS = "positive"
_NONNEG = "nonnegative"


def _x(x, name: str, c: Caller, sign=None, hint: str = ""):
    return xp_array(x, name, c, sign=sign, hint=hint)


def _onehot(c: Caller, n: int, i: int = 0):
    e = c.xp.zeros(n, dtype=c.dtype, device=c.device)
    e[i] = 1.0
    return e


def _scalar_out(c: Caller, v):
    """Scalar inputs give a Python float for numpy callers; arrays stay arrays (caller's type)."""
    return float(v) if c.is_numpy and getattr(v, "ndim", 0) == 0 else v


def offdiag_weighted_sum(sigma_ij, w):
    """sum_{j != i} sigma_ij^2 w_j for every i (the sums in Eqs 10, 11, 14).

    ``sigma_ij``: scalar, separable profile r (N,) with sigma_ij = r_i r_j, or (N, N).
    """
    c = caller_of(sigma_ij, w)
    return _offdiag(c, _x(sigma_ij, "sigma_ij", c), xp_array(w, "w", c, min_ndim=1))


def _offdiag(c: Caller, s, w):
    xp = c.xp
    n = w.shape[-1]
    if s.ndim == 0:
        return s**2 * (xp.sum(w, axis=-1, keepdims=True) - w)
    if s.ndim == 1:
        if s.shape[0] != n:
            raise ValueError(f"separable sigma_ij profile has length {s.shape[0]}, expected {n}")
        r2 = s**2
        return r2 * (xp.sum(r2 * w, axis=-1, keepdims=True) - r2 * w)
    if tuple(s.shape) != (n, n):
        raise ValueError(f"sigma_ij matrix must be ({n}, {n}), got {tuple(s.shape)}")
    s2 = s**2
    return xp.matmul(w, xp.matrix_transpose(s2)) - xp.linalg.diagonal(s2) * w


def theta_mu_second_moment(sigma_theta, theta1_0: float = 0.0):
    """<(theta^mu_j)^2> = sigma_theta,j^2 + delta_j1 (theta1^(0))^2."""
    c = caller_of(sigma_theta, theta1_0)
    sT = _x(sigma_theta, "sigma_theta", c, _NONNEG)
    return _m2(c, sT, _x(theta1_0, "theta1_0", c))


def _m2(c: Caller, sT, t10):
    return sT**2 + _onehot(c, sT.shape[-1]) * t10**2


def averaged_curvature(M0, sigma_M, sigma_ij, sigma_theta, theta1_0: float = 0.0, *, paper=True):
    """M_ii of the averaged loss, Eq 10 (second-order cumulant expansion in theta).

    M_ii = M0_ii + sigma_theta,i^2 (M0_ii)^2 + sigma_theta,i^2 sigma_M,i^2
           + sum_{j != i} sigma_ij^2 [sigma_theta,j^2 + delta_j1 (theta1^(0))^2].

    ``paper=False`` adds the term sigma_M,1^2 (theta1^(0))^2 for i = 1 that the exact
    expansion also gives (Var(M^mu_11 theta^mu_1)); the paper's Eq 10 omits it.
    """
    c = caller_of(M0, sigma_M, sigma_ij, sigma_theta, theta1_0)
    M0 = _x(M0, "M0", c, _POS, "mean curvatures M0_ii must be positive")
    sM = _x(sigma_M, "sigma_M", c, _NONNEG)
    sT = _x(sigma_theta, "sigma_theta", c, _NONNEG)
    t10 = _x(theta1_0, "theta1_0", c)
    M = M0 + sT**2 * M0**2 + sT**2 * sM**2
    M = M + _offdiag(c, _x(sigma_ij, "sigma_ij", c), _m2(c, sT, t10))
    if not paper:
        M = M + _onehot(c, M.shape[-1]) * (sM * t10) ** 2
    return M


def flatness_from_curvature(M):
    """F_i = (8 / M_ii)^(1/2) (Eq 10; the e-width of exp(M_ii theta^2 / 2), Eq 7)."""
    c = caller_of(M)
    M = _x(M, "M", c, _POS, "curvatures M_ii must be positive to define a flatness")
    return c.xp.sqrt(8.0 / M)


def curvature_from_flatness(F):
    """Inverse of :func:`flatness_from_curvature`: M_ii = 8 / F_i^2."""
    c = caller_of(F)
    F = _x(F, "F", c, _POS, "flatness values must be positive")
    return 8.0 / F**2


def averaged_loss(theta, L0, M0, M, theta1_0: float = 0.0):
    """Eq 10: L(theta) = L0 exp(-M0_11 theta1^(0) theta_1 + sum_i M_ii theta_i^2 / 2).

    ``theta`` (..., N); ``M`` from :func:`averaged_curvature`.
    """
    c = caller_of(theta, L0, M0, M, theta1_0)
    th = _x(theta, "theta", c, hint="theta is (..., N)")
    L0 = _x(L0, "L0", c, _POS)
    M0, M = _x(M0, "M0", c, _POS), _x(M, "M", c, _POS)
    t10 = _x(theta1_0, "theta1_0", c)
    expo = -M0[0] * t10 * th[..., 0] + 0.5 * c.xp.sum(M * th**2, axis=-1)
    return L0 * c.xp.exp(expo)


def averaged_loss_minimum(L0, M0_11, M_11, theta1_0: float = 0.0):
    """Minimum of Eq 10's L: L0 exp(-(M0_11 theta1^(0))^2 / (2 M_11)), at theta_1 =
    M0_11 theta1^(0) / M_11 (the linear PC1 term shifts the minimum off w0 = 0)."""
    c = caller_of(L0, M0_11, M_11, theta1_0)
    L0 = _x(L0, "L0", c, _POS)
    m0, m = _x(M0_11, "M0_11", c, _POS), _x(M_11, "M_11", c, _POS)
    t10 = _x(theta1_0, "theta1_0", c)
    return _scalar_out(c, L0 * c.xp.exp(-((m0 * t10) ** 2) / (2 * m)))


def exact_mode_profile(
    amplitudes, i: int, L0, M0, sigma_M, sigma_ij, sigma_theta, theta1_0: float = 0.0
):
    """Exact mean-field average <L^mu(t e_i)> along mode i (no expansion in t).

    Along theta = t e_i the exponent of Eq 9 is M^mu_ii y - t sum_{j != i} M^mu_ij theta^mu_j
    with y = t^2/2 - t theta^mu_i; Gaussian M gives exp(M0 y + sigma_M^2 y^2 / 2 +
    t^2 sum_j sigma_ij^2 (theta^mu_j)^2 / 2), and the Gaussian theta^mu average is closed
    form: <exp(c x^2)> = (1 - 2 c s^2)^(-1/2) exp(c m^2 / (1 - 2 c s^2)) for x ~ N(m, s^2) and
    <exp(a y + c y^2)> = (1 - 2cv)^(-1/2) exp((a ybar + c ybar^2 + a^2 v / 2) / (1 - 2cv)).
    Returns +inf where the average diverges (1 - 2 c s^2 <= 0: the heavy tail of the
    ensemble). Its log matches Eq 10 to second order in t; the difference beyond measures
    the expansion's error.
    """
    cl = caller_of(amplitudes, L0, M0, sigma_M, sigma_ij, sigma_theta, theta1_0)
    xp = cl.xp
    t = _x(amplitudes, "amplitudes", cl)
    L0 = _x(L0, "L0", cl, _POS)
    M0 = _x(M0, "M0", cl, _POS)
    sM = _x(sigma_M, "sigma_M", cl, _NONNEG)
    sT = _x(sigma_theta, "sigma_theta", cl, _NONNEG)
    t10 = _x(theta1_0, "theta1_0", cl)
    s = _x(sigma_ij, "sigma_ij", cl)
    n = M0.shape[0]
    if not 0 <= int(i) < n:
        raise ValueError(f"mode index {i} out of range for N={n}")
    i = int(i)
    mean = _onehot(cl, n) * t10
    # sigma_ij^2 for j != i
    if s.ndim == 0:
        sij2 = s**2 * xp.ones(n, dtype=cl.dtype, device=cl.device)
    elif s.ndim == 1:
        sij2 = s[i] ** 2 * s**2
    else:
        sij2 = s[i] ** 2
    sij2 = sij2 * (1.0 - _onehot(cl, n, i))
    # off-diagonal j terms: c_j = sij2_j t^2 / 2, x = theta^mu_j ~ N(mean_j, sT_j^2)
    tc = xp.reshape(t, (-1, 1))
    cj = 0.5 * sij2[None, :] * tc**2
    den = 1.0 - 2.0 * cj * sT[None, :] ** 2
    bad = xp.reshape(xp.any(den <= 0, axis=-1), t.shape)
    den = xp.where(den > 0, den, xp.ones_like(den))
    log_out = xp.reshape(
        xp.sum(-0.5 * xp.log(den) + cj * mean[None, :] ** 2 / den, axis=-1), t.shape
    )
    # diagonal term: y = t^2/2 - t u, u ~ N(mean_i, sT_i^2)
    ybar = 0.5 * t**2 - t * mean[i]
    v = t**2 * sT[i] ** 2
    a, cc = M0[i], 0.5 * sM[i] ** 2
    d2 = 1.0 - 2.0 * cc * v
    bad = bad | (d2 <= 0)
    d2 = xp.where(d2 > 0, d2, xp.ones_like(d2))
    log_out = log_out - 0.5 * xp.log(d2) + (a * ybar + cc * ybar**2 + 0.5 * a**2 * v) / d2
    out = L0 * xp.exp(log_out)
    return xp.where(bad, xp.asarray(float("inf"), dtype=cl.dtype, device=cl.device), out)


def min_position_variance(
    M0, sigma_ij, sigma_theta, theta1_0: float = 0.0, sigma_M=None, *, paper=True
):
    """sigma~^2_theta,i = <(theta~^mu_i)^2> of the per-MLF profile minima, Eq 11.

    theta~^mu_i = theta^mu_i + sum_{j != i} M^mu_ij theta^mu_j / M^mu_ii. The paper uses
    <(M^mu_ii)^-2> ~ (M0_ii)^-2 and leaves out the mean of theta^mu_1 in the sum
    (``paper=True``). ``paper=False`` keeps delta_j1 (theta1^(0))^2 and the second-order
    delta-method factor (1 + 3 sigma_M^2 / M0^2) for <(M^mu_ii)^-2> (needs ``sigma_M``).
    The returned value for i = 1 is the variance about theta1^(0) plus nothing else.
    """
    c = caller_of(M0, sigma_ij, sigma_theta, theta1_0, sigma_M)
    M0 = _x(M0, "M0", c, _POS)
    sT = _x(sigma_theta, "sigma_theta", c, _NONNEG)
    s = _x(sigma_ij, "sigma_ij", c)
    if paper:
        w = sT**2
        inv2 = 1.0 / M0**2
    else:
        if sigma_M is None:
            raise ValueError("paper=False needs sigma_M for <(M_ii)^-2>")
        w = _m2(c, sT, _x(theta1_0, "theta1_0", c))
        inv2 = (1.0 + 3.0 * _x(sigma_M, "sigma_M", c, _NONNEG) ** 2 / M0**2) / M0**2
    return sT**2 + inv2 * _offdiag(c, s, w)


def drift_velocity(alpha, L0, M0_11, theta1_0):
    """PC1 net drift velocity v1^(0) = alpha L0 M0_11 theta1^(0) per step (Eq 13)."""
    c = caller_of(alpha, L0, M0_11, theta1_0)
    a = _x(alpha, "alpha", c, _POS, "the learning rate must be positive")
    v = a * _x(L0, "L0", c, _POS) * _x(M0_11, "M0_11", c, _POS) * _x(theta1_0, "theta1_0", c)
    return _scalar_out(c, v)


def diffusion_constant(
    alpha,
    L0_sq_mean,
    M0,
    sigma_ij,
    sigma_theta,
    theta1_0: float = 0.0,
    sigma_M=None,
    L0=None,
    *,
    paper=True,
):
    """D_i = <v_i^2> per step of the short-time velocity v_i of Eq 13 (Eq 14).

    Paper (``paper=True``): D_i = alpha^2 <(L^mu_0)^2> [(M0_ii)^2 sigma_theta,i^2 +
    sum_{j != i} sigma_ij^2 sigma_theta,j^2]. ``paper=False`` is the exact variance of
    v_i = alpha L^mu_0 sum_j M^mu_ij theta^mu_j under the mean-field law: it adds
    sigma_M,i^2 sigma_theta,i^2, the delta_j1 (theta1^(0))^2 terms and, for i = 1, the
    drift-subtracted variance (needs ``sigma_M`` and ``L0``).
    """
    c = caller_of(alpha, L0_sq_mean, M0, sigma_ij, sigma_theta, theta1_0, sigma_M, L0)
    al = _x(alpha, "alpha", c, _POS, "the learning rate must be positive")
    M0 = _x(M0, "M0", c, _POS)
    sT = _x(sigma_theta, "sigma_theta", c, _NONNEG)
    s = _x(sigma_ij, "sigma_ij", c)
    a2 = al**2 * _x(L0_sq_mean, "L0_sq_mean", c, _POS)
    if paper:
        return a2 * (M0**2 * sT**2 + _offdiag(c, s, sT**2))
    if sigma_M is None or L0 is None:
        raise ValueError("paper=False needs sigma_M and L0")
    sM = _x(sigma_M, "sigma_M", c, _NONNEG)
    L0 = _x(L0, "L0", c, _POS)
    if bool(c.xp.any(L0**2 > _x(L0_sq_mean, "L0_sq_mean", c) * (1 + 1e-12))):
        raise ValueError("L0_sq_mean = <(L^mu_0)^2> cannot be smaller than L0^2")
    t10 = _x(theta1_0, "theta1_0", c)
    m2 = _m2(c, sT, t10)
    D = a2 * ((M0**2 + sM**2) * m2 + _offdiag(c, s, m2))
    return D - _onehot(c, D.shape[-1]) * (al * L0 * M0[..., 0] * t10) ** 2


def relaxation_time(alpha, L0, M):
    """tau_i = 1 / (alpha L0 M_ii) in steps (Sec IV).

    With M = M_ii of Eq 10 (the paper's definition) it is the relaxation time of gradient
    descent on the averaged loss; the linearised dynamics of Eq 12 relaxes at the mean rate
    alpha L0 M0_ii instead (pass M0).
    """
    c = caller_of(alpha, L0, M)
    al = _x(alpha, "alpha", c, _POS, "the learning rate must be positive")
    L0 = _x(L0, "L0", c, _POS)
    M = _x(M, "M", c, _POS, "curvatures must be positive for a finite relaxation time")
    return 1.0 / (al * L0 * M)


def ou_window_variance(D, tau, T: int, *, start="stationary", burn_in: int = 0, ddof: int = 0):
    """Expected PCA variance (mean removed within the window) of a discrete OU process.

    Model (the linear dynamics of Eq 12 for one mode): x_{t+1} = rho x_t + xi_t with
    rho = 1 - 1/tau and white noise of variance D per step (D of Eq 14); tau = inf is a random
    walk (pass ``np.inf``; NaN is refused). The window holds T consecutive samples; the result
    is E[(1/(T - ddof)) sum_t (x_t - xbar)^2], exact (no continuum limit):

    - ``start="stationary"``: (1/T^2) sum_{h=1}^{T-1} (T - h) gamma(h) with the variogram
      gamma(h) = 2 D (1 - rho^h) / (1 - rho^2);
    - ``start="origin"``: x = 0 at step 0 and the window begins after ``burn_in`` steps.

    Limits: T << tau gives D (T^2 - 1) / (6T) (diffusive, ~ D T / 6); T >> tau gives the
    stationary variance D / (1 - rho^2) ~ D tau / 2.
    """
    caller = caller_of(D, tau)
    D = check_array(D, "D", ndim=None, sign=_NONNEG, hint="D is a diffusion constant per step")
    tau = check_array(
        tau, "tau", ndim=None, finite="allow_inf",
        hint="tau is a relaxation time in steps (>= 1; np.inf for a random walk)",
    )  # fmt: skip
    T = int(T)
    if T < 2:
        raise ValueError(f"a window needs T >= 2 samples, got {T}")
    if np.any(tau < 1):
        raise ValueError("need tau >= 1 step (rho = 1 - 1/tau in [0, 1)); np.inf: random walk")
    if not (0 <= int(burn_in) and 0 <= int(ddof) < T):
        raise ValueError(f"need burn_in >= 0 and 0 <= ddof < T, got {burn_in}, {ddof}")
    if start not in ("stationary", "origin"):
        raise ValueError(f"start must be 'stationary' or 'origin', got {start!r}")
    D, tau = np.broadcast_arrays(D, tau)
    shape = D.shape
    D, tau = D.ravel(), tau.ravel()
    out = np.empty_like(D)
    h = np.arange(1, T, dtype=np.float64)
    for k in range(D.size):
        finite = np.isfinite(tau[k])
        lr = np.log1p(-1.0 / tau[k]) if finite and tau[k] > 1 else (-np.inf if finite else 0.0)
        if start == "stationary":
            if not finite:
                out[k] = D[k] * (T**2 - 1) / (6.0 * T)
                continue
            ratio = _ratio(h * lr, 2 * lr, h / 2.0)
            out[k] = np.sum((T - h) * 2.0 * D[k] * ratio) / T**2
        elif start == "origin":
            out[k] = _origin_window_var(D[k], lr, T, int(burn_in), finite)
        else:
            raise ValueError(f"start must be 'stationary' or 'origin', got {start!r}")
    return caller.wrap((out * T / (T - ddof)).reshape(shape))


def _ratio(num_log, den_log, limit):
    """(1 - e^num_log) / (1 - e^den_log), stable; ``limit`` where den_log == 0."""
    if den_log == 0:
        return limit
    return np.expm1(num_log) / np.expm1(den_log)


def _origin_window_var(D, lr, T, b, finite) -> float:
    s = np.arange(1, T + 1, dtype=np.float64)
    if not finite:  # random walk from 0, window steps b+1..b+T
        # x_{b+s} = x_b + y_s: the constant x_b drops out of the window variance
        return D * (T**2 - 1) / (6.0 * T)
    rho = np.exp(lr)
    one_m_rho = -np.expm1(lr)
    # y_s: origin-started within the window
    ex2 = D * _ratio(2 * s * lr, 2 * lr, s)  # Var(y_s)
    g = _ratio(s * lr, lr, s)  # sum_{m=0}^{s-1} rho^m  (weights of xi in sum y)
    var_sum = D * np.sum(g[::-1] ** 2) if one_m_rho > 0 else D * np.sum(s**2)
    e_origin = ex2.mean() - var_sum / T**2
    var_b = D * (_ratio(2 * b * lr, 2 * lr, b) if b > 0 else 0.0)
    ps = rho**s
    wv = np.mean(ps**2) - np.mean(ps) ** 2
    return float(e_origin + var_b * wv)


def window_variances(D, tau, T: int, **kw) -> dict:
    """Predicted window variance per mode: exact OU value and both regime limits.

    ``diffusive`` = D (T^2 - 1) / (6 T) (T << tau), ``stationary`` = D / (1 - rho^2)
    (T >> tau), ``exact`` = :func:`ou_window_variance` (kwargs passed on). The two limits
    are computed in the caller's namespace (autograd flows); ``exact`` on the host.
    """
    exact = ou_window_variance(D, tau, T, **kw)  # validates D, tau, T
    c = caller_of(D, tau)
    Dx, taux = _x(D, "D", c, _NONNEG), xp_array(tau, "tau", c, finite="allow_inf")
    Dx, taux = c.xp.broadcast_arrays(Dx, taux)
    rho = 1.0 - 1.0 / taux
    T = int(T)
    return {
        "exact": exact,
        "diffusive": Dx * (T**2 - 1) / (6.0 * T),
        "stationary": Dx / (1.0 - rho**2),
    }


def predicted_psi(variances, F, **kw) -> VarianceFlatnessFit:
    """Exponent psi of sigma_i^2 ~ F_i^-psi (Eq 8) from predicted variances.

    The same fit and the same result type as :func:`~sgdyn.theory.flatness.
    variance_flatness_exponent` (``.psi``, ``.psi_err``, ``.psi_err_boot``, ``.fit``), so a
    prediction and a measurement read alike; kwargs are passed on to it.
    """
    return variance_flatness_exponent(variances, F, **kw)


def equilibrium_variance(temperature, L0, M, *, alpha=None):
    """Eq 16: Boltzmann variance of theta_i in L = L0 (1 + M_ii theta_i^2 / 2 + ...).

    sigma_i^2 = T / (L0 M_ii) = T F_i^2 / (8 L0), proportional to T F_i^2. ``L0`` is the
    loss at the minimum (:func:`averaged_loss_minimum` when theta1^(0) != 0). With ``alpha``
    the exact stationary variance of the discrete Langevin update theta <- theta - alpha
    grad L + sqrt(2 alpha T) xi is returned, T / (L0 M_ii (1 - alpha L0 M_ii / 2)); it needs
    alpha L0 M_ii < 2 (a stable update).
    """
    c = caller_of(temperature, L0, M, alpha)
    T = _x(temperature, "temperature", c, _NONNEG, "a temperature cannot be negative")
    L0 = _x(L0, "L0", c, _POS)
    M = _x(M, "M", c, _POS, "curvatures must be positive for a Boltzmann variance")
    var = T / (L0 * M)
    if alpha is not None:
        al = _x(alpha, "alpha", c, _POS, "the step size must be positive")
        gain = 1.0 - al * L0 * M / 2.0
        if not bool(c.xp.all(gain > 0)):
            raise ValueError(
                "alpha L0 M_ii >= 2 for some mode: the discrete Langevin update is unstable "
                "there and has no stationary variance; lower alpha"
            )
        var = var / gain
    return var
