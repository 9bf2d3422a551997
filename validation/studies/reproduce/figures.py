"""Figures: Fig 1 A-D and Fig S1 (``matplotlib.figure.Figure``: no pyplot, no global backend;
written atomically into the run directory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sgdyn.validation.io.rundir import save_figure


def _subplots(figsize):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig, path: Path) -> str:
    return save_figure(fig, Path(path))


def fig1a_spectrum(path, variances, gamma, intercept, rank_range) -> str:
    v = np.asarray(variances)
    i = np.arange(1, v.size + 1)
    fig, ax = _subplots(figsize=(4.2, 3.4))
    ax.loglog(i, v, ".", ms=3, label=r"$\sigma_i^2$")
    lo, hi = rank_range
    hi = min(hi, v.size)
    xf = np.array([lo, hi], dtype=float)
    ax.loglog(
        xf,
        np.exp(intercept) * xf ** (-gamma),
        "r-",
        lw=2,
        label=rf"$i^{{-\gamma}}$, $\gamma$={gamma:.2f}",
    )
    ax.set_xlabel("rank i")
    ax.set_ylabel(r"variance $\sigma_i^2$")
    ax.set_title("A  PCA spectrum")
    ax.legend(fontsize=8)
    return _save(fig, path)


def fig1b_cumulative(path, cumulative, n90) -> str:
    c = np.asarray(cumulative)
    n = np.arange(2, c.size + 2)
    fig, ax = _subplots(figsize=(4.2, 3.4))
    ax.semilogx(n, c, "-")
    ax.axhline(0.9, color="gray", ls=":")
    ax.axvline(n90, color="r", ls="--", label=f"90% at n={n90}")
    ax.set_xlabel("n")
    ax.set_ylabel(r"$\sum_{i=2}^{n}\sigma_i^2 / \sum_{i\geq2}\sigma_i^2$")
    ax.set_title("B  cumulative variance (excl. PC1)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def fig_trajectory(path, theta_a, theta_b, label_a, label_b, title, steps_per_epoch) -> str:
    t = np.arange(len(theta_a)) / steps_per_epoch
    fig, ax = _subplots(figsize=(4.2, 3.6))
    sc = ax.scatter(theta_a, theta_b, c=t, s=2, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="epoch in window")
    ax.set_xlabel(label_a)
    ax.set_ylabel(label_b)
    ax.set_title(title)
    return _save(fig, path)


def figs1_phases(path, loss_curve, transition_epoch, region, window) -> str:
    L = np.asarray(loss_curve)
    fig, ax = _subplots(figsize=(5.0, 3.4))
    ax.semilogy(np.arange(L.size), L, "k.-", ms=3)
    if region is not None:
        ax.axvspan(region[0], region[1], color="orange", alpha=0.3, label="transition")
    if transition_epoch is not None:
        ax.axvline(transition_epoch, color="orange", ls="--")
    ax.axvspan(window[0] - 1, window[1], color="tab:blue", alpha=0.15, label="PCA window")
    ax.set_xlabel("epoch")
    ax.set_ylabel("full training loss L")
    ax.set_title("S1  fast learning, then exploration")
    ax.legend(fontsize=8)
    return _save(fig, path)
