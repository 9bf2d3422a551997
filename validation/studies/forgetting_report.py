"""Figures (Fig 4A-F, the five-task accuracy matrices) and the report of ``sgdyn forgetting``.

Every number is shown beside its nulls: no constraint, and LDC along random orthonormal
directions with the same flatness values (what Eq 15 gives without task 1's landscape).
"""

from __future__ import annotations

import numpy as np


def _curves(rows, **m):
    sel = [r for r in rows if all(r.get(k) == v for k, v in m.items())]
    c = [r["curve"] for r in sel if not r["diverged"]]
    if not c:
        return None, None
    n = min(len(x) for x in c)
    a = np.stack([x[:n] for x in c])  # (seeds, epochs+1, 2)
    sd = a.std(0, ddof=1) / np.sqrt(len(c)) if len(c) > 1 else np.zeros_like(a[0])
    return a.mean(0), sd


def _fig_curves(rd, cfg, rows):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axs = fig.subplots(1, 2, sharey=True)
    panels = (
        ("A: no constraint (lambda = 0)", {"method": "none"}),
        (
            f"C: LDC lambda = {cfg.lam:g}, Nc = {cfg.nc}",
            {"method": "ldc", "lam": cfg.lam, "nc": cfg.nc},
        ),
    )
    for ax, (title, m) in zip(axs, panels, strict=True):
        mean, sd = _curves(rows, **m)
        if mean is None:
            continue
        t = np.arange(mean.shape[0])
        for j, (name, col) in enumerate((("eps1 (task 1)", "C0"), ("eps2 (task 2)", "C3"))):
            ax.plot(t, mean[:, j], color=col, label=name)
            ax.fill_between(t, mean[:, j] - sd[:, j], mean[:, j] + sd[:, j], color=col, alpha=0.2)
        if m["method"] == "ldc":
            nm, _ = _curves(rows, method="ldc_random", lam=cfg.lam, nc=cfg.nc)
            if nm is not None:
                ax.plot(t[: nm.shape[0]], nm[:, 0], "C0--", label="eps1, null: random directions")
        ax.set(title=title, xlabel="task-2 training time (epochs)")
        ax.legend(fontsize=7)
    axs[0].set_ylabel("test error")
    return rd.save_figure(fig, "fig4ac_errors_vs_time.png")


def _fig_q(rd, cfg, rows, bases, seed):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axs = fig.subplots(1, 2, sharey=True)
    xi = cfg.xi_factor * bases[seed]["F"].numpy()
    i = np.arange(1, len(xi) + 1)
    for ax, (title, m) in zip(
        axs,
        (
            ("B: no constraint", {"method": "none"}),
            (
                f"D: LDC lambda = {cfg.lam:g}, Nc = {cfg.nc}",
                {"method": "ldc", "lam": cfg.lam, "nc": cfg.nc},
            ),
        ),
        strict=True,
    ):
        sel = [r for r in rows if r["seed"] == seed and all(r.get(k) == v for k, v in m.items())]
        if sel:
            ax.loglog(i, sel[0]["q"], ".", ms=3, label="q_i = |(w2 - w1) . p_1i|")
            ax.loglog(
                i, sel[0]["q_random"], ".", ms=2, color="0.6", label="null: random directions"
            )
        ax.loglog(i, xi, "r:", label=f"xi_i = {cfg.xi_factor:g} F_1i")
        ax.axvline(cfg.nc, color="k", lw=0.6)
        ax.set(title=title, xlabel="PCA mode i of task 1")
        ax.legend(fontsize=7)
    axs[0].set_ylabel("q_i")
    return rd.save_figure(fig, "fig4bd_q.png")


def _fig_tradeoff(rd, summary):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    series = (
        ("LDC", summary["ldc"]["lam_sweep"], "o", "C0"),
        ("EWC", summary["ewc"]["lam_sweep"], "s", "C3"),
        ("null: LDC on random directions", summary["ldc_random_null"]["lam_sweep"], "^", "0.5"),
    )
    for name, pts, mk, col in series:
        pts = [p for p in pts if np.isfinite(p["eps1"])]
        if not pts:
            continue
        ax.errorbar(
            [p["eps1"] for p in pts],
            [p["eps2"] for p in pts],
            xerr=[p["eps1_sem"] for p in pts],
            yerr=[p["eps2_sem"] for p in pts],
            fmt=mk + "-",
            color=col,
            ms=5,
            label=name,
        )
        for p in pts:
            ax.annotate(f"{p['lam']:g}", (p["eps1"], p["eps2"]), fontsize=6, color=col)
    n = summary["no_constraint"]
    ax.plot([n["eps1"]], [n["eps2"]], "k*", ms=10, label="no constraint")
    ax.set(
        xlabel="eps1 (task 1 test error)",
        ylabel="eps2 (task 2 test error)",
        title="E: trade-off over lambda (labels)",
    )
    ax.legend(fontsize=7)
    return rd.save_figure(fig, "fig4e_tradeoff.png")


def _fig_nc(rd, summary):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    for name, pts, key, mk, col in (
        ("LDC: Nc PCA modes", summary["ldc"]["nc_sweep"], "nc", "o", "C0"),
        ("EWC: top-k Fisher weights", summary["ewc"]["k_sweep"], "top_k", "s", "C3"),
    ):
        pts = [p for p in pts if np.isfinite(p["eps_sum"])]
        if pts:
            ax.errorbar(
                [p[key] for p in pts],
                [p["eps_sum"] for p in pts],
                yerr=[p["eps_sum_sem"] for p in pts],
                fmt=mk + "-",
                color=col,
                label=name,
            )
    n = summary["no_constraint"]
    ax.axhline(n["eps_sum"], color="k", ls=":", label="no constraint")
    if summary["ldc"]["nc_star"] is not None:
        ax.axvline(summary["ldc"]["nc_star"], color="C0", ls="--", lw=0.8, label="N*_c")
    ax.set(
        xscale="log",
        xlabel="number of constraints",
        ylabel="eps1 + eps2",
        title="F: overall error vs number of constraints",
    )
    ax.legend(fontsize=7)
    return rd.save_figure(fig, "fig4f_nc.png")


def _fig_sequence(rd, summary):
    from matplotlib.figure import Figure

    meth = summary["sequence"]["methods"]
    if not meth:
        return None
    fig = Figure(figsize=(4 * len(meth), 3.8))
    axs = np.atleast_1d(fig.subplots(1, len(meth)))
    for ax, (m, d) in zip(axs, meth.items(), strict=True):
        R = np.asarray(d["R_mean"])
        ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
        for k in range(R.shape[0]):
            for j in range(R.shape[1]):
                ax.text(j, k, f"{R[k, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
        ax.set(
            title=f"{m}: avg forgetting {d['avg_forgetting']:.3f}",
            xlabel="evaluated task j",
            ylabel="after training task k",
        )
    return rd.save_figure(fig, "fig_sequence_accuracy.png")


def make_figures(rd, cfg, summary, rows, bases, seeds) -> list[str]:
    figs = [
        _fig_curves(rd, cfg, rows),
        _fig_q(rd, cfg, rows, bases, seeds[0]),
        _fig_tradeoff(rd, summary),
        _fig_nc(rd, summary),
        _fig_sequence(rd, summary),
    ]
    return [f for f in figs if f]


def _pm(p, key):
    v, e = p.get(key, float("nan")), p.get(key + "_sem", float("nan"))
    return f"{v:.4f}" + (f" +- {e:.4f}" if np.isfinite(e) else "")


def make_report(cfg, s, figs) -> str:
    n, main, rnd = s["no_constraint"], s["ldc"]["main"], s["ldc_random_null"]["main"]
    lb, eb = s["ldc"]["best"], s["ewc"]["best"]
    b0 = next(iter(s["base"].values()))
    fl = b0["flatness"]
    L = [
        "# Landscape-dependent constraints vs EWC against catastrophic forgetting (Sec V, Fig 4)",
        "",
        f"Data {cfg.dataset}, tasks {cfg.task_pairs()} (task 1 = (0,1), "
        f"task 2 = (2,3)); MLP in-{cfg.hidden[0]}-{cfg.hidden[1]}-10 pre-trained on all tasks "
        f"({cfg.pretrain_epochs} epochs; input size from the data), probed layer layers.1.weight "
        f"({cfg.hidden[0] * cfg.hidden[1]} weights) re-initialised, others frozen; "
        + f"SGD lr {cfg.lr:g}, B {cfg.batch_size}; "
        f"{s['timings'].get('jobs', 1)} process(es). Seeds {s['seeds']} (mean +- s.e.m.). "
        f"Task 1 window: {b0['window_epochs']} epochs = {b0['window_steps']} steps "
        f"({b0['window_reason']}), {b0['n_components']} PCA components. Task 2: "
        f"{cfg.task2_epochs} epochs; eps = test error averaged over the last fifth of them.",
        "",
        f"Flatness F_1i: `{fl['mode']}` (Eq 8 with psi = {fl['psi_used']:g}, prefactor "
        f"calibrated on {fl['n_bounded']} measured e-widths at modes {fl['measured_modes']}; "
        f"psi fitted on those: {fl['psi_fit_on_measured']:.2f}). EWC Fisher: "
        f"`{s['ewc']['fisher']}` diagonal Fisher of task 1 at w1.",
        "",
        "## Two tasks (Fig 4A-D)",
        "",
        "| method | eps1 (task 1) | eps2 (task 2) | eps1 + eps2 |",
        "|---|---|---|---|",
        f"| no constraint (null) | {_pm(n, 'eps1')} | {_pm(n, 'eps2')} | {_pm(n, 'eps_sum')} |",
        f"| LDC lambda={cfg.lam:g}, Nc={cfg.nc} | {_pm(main, 'eps1')} | {_pm(main, 'eps2')} | "
        f"{_pm(main, 'eps_sum')} |",
        f"| null: LDC on random orthonormal directions, same F | {_pm(rnd, 'eps1')} | "
        f"{_pm(rnd, 'eps2')} | {_pm(rnd, 'eps_sum')} |",
        "",
        "Fraction of the top Nc modes with q_i <= xi_i = "
        f"{cfg.xi_factor:g} F_1i after task 2: "
        + ", ".join(f"{k} {v:.2f}" for k, v in s["q_below_xi_fraction_top_nc"].items()),
        "",
        "## Sweeps (Fig 4E, 4F)",
        "",
        f"- best LDC: eps1 + eps2 = {_pm(lb, 'eps_sum')} at lambda = {lb.get('lam')}, "
        f"Nc = {lb.get('nc')}",
        f"- best EWC: eps1 + eps2 = {_pm(eb, 'eps_sum')} at lambda = {eb.get('lam')}, "
        f"constrained weights = {eb.get('top_k') or 'all'}",
        f"- N*_c (LDC, lambda = {cfg.lam:g}) = {s['ldc']['nc_star']}"
        + (
            " -- the largest Nc tested (the window's PCA rank is "
            f"{s['ldc']['window_rank_min']}): an edge, not an interior optimum"
            if s["ldc"].get("nc_star_at_edge")
            else ""
        ),
        "",
        "| sweep | point | eps1 | eps2 | eps1 + eps2 | diverged |",
        "|---|---|---|---|---|---|",
    ]
    for name, pts, key in (
        ("LDC lambda", s["ldc"]["lam_sweep"], "lam"),
        ("null LDC-random lambda", s["ldc_random_null"]["lam_sweep"], "lam"),
        ("EWC lambda", s["ewc"]["lam_sweep"], "lam"),
        ("LDC Nc", s["ldc"]["nc_sweep"], "nc"),
        ("EWC top-k", s["ewc"]["k_sweep"], "top_k"),
    ):
        for p in pts:
            L.append(
                f"| {name} | {p[key]:g} | {_pm(p, 'eps1')} | {_pm(p, 'eps2')} | "
                f"{_pm(p, 'eps_sum')} | {p['n_diverged']}/{p['n_seeds']} |"
            )
    seq = s["sequence"]["methods"]
    if seq:
        L += [
            "",
            f"## {cfg.n_tasks}-task sequence (constraints of all previous tasks summed)",
            "",
            "Average forgetting = mean over tasks j < T of (best accuracy on j before the end) "
            "- (accuracy on j after the last task); no constraint is the null.",
            "",
            "| method | lambda | average forgetting | final average accuracy |",
            "|---|---|---|---|",
        ]
        for m, d in seq.items():
            L.append(
                f"| {m} | {d['lam']:g} | {_pm(d, 'avg_forgetting')} | {d['avg_accuracy']:.4f} |"
            )
    t = s["timings"]
    L += [
        "",
        f"Run time {t['total_s']:.0f} s (bases {t['base_s']:.0f} s, sweeps {t['sweeps_s']:.0f} s, "
        f"sequence {t['sequence_s']:.0f} s).",
        "",
    ]
    L += [f"![]({f})" for f in figs]
    return "\n".join(L) + "\n"
