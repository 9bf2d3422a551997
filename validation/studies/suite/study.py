"""``sgdyn validate``: run a suite of cells and evaluate the paper's claims on them.

From Python::

    from sgdyn.validation.studies.suite.study import ValidateConfig, run_validate
    summary = run_validate(ValidateConfig(suite="quick"), "runs/validate", jobs=2)

Each cell (:mod:`.suites`: dataset x model x optimizer x B x alpha x seed) runs through
:func:`sgdyn.validation.sweeps.run_cells` (parallel processes, resumable: a finished cell's
``cells/<key>/result.json`` is reused; a failing cell is recorded with its reason and the
others finish) with :func:`.cell.run_cell`. Then :mod:`.claims` evaluates every claim on the
cell records. Files: ``summary.json`` (one record per cell with its wall time, and the
``claims`` table), ``report.md`` / ``report.html`` (claims table, psi_real vs psi_sim vs 2
per cell, the ablations, one figure per claim, sigma^2 vs F panels), ``arrays.npz``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgdyn.validation.io.config import StudyConfig

from . import claims as claims_mod
from .sim_network import PRIMARY, VARIANTS
from .suites import expand, load_suite, select

log = logging.getLogger(__name__)

NAME = "validate"

#: what ``--quick`` changes in every cell: a reduced protocol for tests and CI (seconds/cell)
REDUCED = dict(window_epochs=2, max_epochs=30, landscape_modes=12, langevin_steps=200,
               n_theta_saved=16, rank_range=[2, 15], ensemble_modes=8, replicas=8,
               sim_max_steps=2000, quick=True)  # fmt: skip


@dataclass
class ValidateConfig(StudyConfig):
    """Settings of one ``sgdyn validate`` run (recorded in summary.json's ``config``)."""

    suite: str = "quick"  # a shipped suite (quick, paper, full) or a .toml file
    cells: tuple[str, ...] | None = None  # None: every cell of the suite
    data_root: str | None = None
    seed: int = 0  # added to every cell's seed
    device: str = "auto"
    quick: bool = False  # the reduced protocol (REDUCED) in every cell

    def validate(self) -> None:
        load_suite(self.suite)  # an unknown suite is refused with the list
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")
        self.cell_list()  # unknown cell keys refused here, before any folder exists

    def cell_list(self):
        from sgdyn.validation.sweeps import Cell

        cells = expand(load_suite(self.suite), data_root=self.data_root)
        cells = select(cells, self.cells)
        out = []
        for c in cells:
            p = dict(c.params)
            if self.quick:
                p.update(REDUCED)
            p["seed"] = int(p["seed"]) + int(self.seed)
            p["device"] = self.device
            out.append(Cell(c.key, p))
        return out


QUICK = dict(quick=True)


def run_validate(
    cfg: ValidateConfig,
    out,
    *,
    force: bool = False,
    progress: bool = False,
    jobs: int = 1,
    threads: int = 1,
    engine: str = "local",
    batch: bool = True,
    **engine_options,
) -> dict:
    """Run the suite into ``out`` (module docstring) and return the summary. ``batch``: the
    SGD cells that share B, model, data and window protocol train together as replicas
    (:func:`.cell.run_group`; the paper and full suites' seeds); False: one run per cell.
    ``engine`` / ``engine_options``: the sweep runner's (local processes or Ray)."""
    from sgdyn.validation.io.rundir import RunDir
    from sgdyn.validation.sweeps import cell_resources, run_cells

    cfg.validate()
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    cells = cfg.cell_list()
    res = cell_resources(cfg.device, threads)  # cfg.device is resolved (never "auto")
    cells = [type(c)(c.key, c.params, res) for c in cells]
    rd = RunDir(out, cfg.as_dict(), command=NAME, force=force)
    if rd.start():
        return rd.summary()
    t0 = time.perf_counter()
    from .cell import cell_group

    results = run_cells(
        "sgdyn.validation.studies.suite.cell:run_cell", cells, rd.path, engine=engine,
        jobs=jobs, threads=threads, force=force, progress=progress,
        group_by=cell_group if batch else None,
        group_fn="sgdyn.validation.studies.suite.cell:run_group" if batch else None,
        **engine_options,
    )  # fmt: skip
    suite = load_suite(cfg.suite)
    records, rows = {}, []
    for r in results:
        row = {"key": r.key, "status": r.status, "wall_s": r.wall_s, "params": r.params}
        if r.status == "failed":
            row["error"] = r.error
            records[r.key] = {"failed": True, "error": r.error}
        else:
            row["record"] = r.result
            records[r.key] = r.result
        rows.append(row)
    table = claims_mod.evaluate(records)
    psi_rows = [_psi_row(k, rec) for k, rec in records.items()]
    for row in psi_rows:
        row.update(spectrum_top_k(rd.path / "cells" / row["key"] / "suite_arrays.npz"))
    summary = {
        "suite": cfg.suite,
        "description": suite.get("description", ""),
        "n_cells": len(cells),
        "n_failed": sum(r.status == "failed" for r in results),
        "cells": rows,
        "claims": table,
        "psi_table": psi_rows,
        "timings": {
            "total_s": time.perf_counter() - t0,
            "cell_wall_s_sum": float(sum(r.wall_s or 0.0 for r in results)),
            "jobs": jobs,
            "threads_per_job": threads,
        },
        "sweep": {"engine": engine, "batched_replicas": bool(batch)},
    }
    figures = make_figures(rd, records, table)
    arrays = {
        "psi_real": np.array([_nan(r["psi_real"]) for r in psi_rows]),
        "psi_real_err": np.array([_nan(r["psi_real_err"]) for r in psi_rows]),
        "psi_sim": np.array([_nan(r["psi_sim"]) for r in psi_rows]),
        "psi_sim_err": np.array([_nan(r["psi_sim_err"]) for r in psi_rows]),
    }
    return rd.finish(summary, arrays=arrays, report=report_markdown(summary, figures),
                     title=f"sgdyn validate: suite {cfg.suite}")  # fmt: skip


def spectrum_top_k(path) -> dict:
    """gamma over ranks 2..K of the network's PCA variances and of the simulator's (the
    ``network`` variant's per-mode window variances, sorted: its modes are its principal axes
    up to the weak cross-mode terms), so the two spectra compare over the same ranks."""
    from sgdyn.theory import fit_power_law

    out = {"gamma_network_topk": None, "gamma_sim_topk": None}
    if not Path(path).is_file():
        return out
    with np.load(path, allow_pickle=False) as z:
        arrs = {k: z[k] for k in z.files}
    K = int(arrs["ensemble_M"].shape[1]) if "ensemble_M" in arrs else 0
    for name, key in (("gamma_network_topk", "var_network"),
                      ("gamma_sim_topk", f"sim_var_{PRIMARY}")):  # fmt: skip
        v = arrs.get(key)
        if v is None or K < 5:
            continue
        v = np.sort(np.asarray(v, float)[:K])[::-1]
        ok = np.isfinite(v) & (v > 0)
        ranks = np.arange(1, v.size + 1)
        if ok[1:].sum() >= 3:
            out[name] = float(-fit_power_law(ranks[1:][ok[1:]], v[1:][ok[1:]], n_boot=0).slope)
    return out


def _nan(x):
    return np.nan if x is None else float(x)


def _psi_row(key, rec) -> dict:
    if rec.get("failed"):
        return {"key": key, "psi_real": None, "psi_real_err": None, "psi_sim": None,
                "psi_sim_err": None, "theory_diffusive": None, "theory_window": None,
                "variants": {}, "error": rec.get("error")}  # fmt: skip
    sim = rec.get("sim") or {}
    var = sim.get("variants") or {}
    th = sim.get("theory") or {}
    prim = var.get(PRIMARY) or {}
    return {
        "key": key,
        "optimizer": rec.get("optimizer"),
        "psi_real": rec.get("psi"),
        "psi_real_err": rec.get("psi_err"),
        "psi_sim": prim.get("psi"),
        "psi_sim_err": prim.get("psi_err"),
        "theory_diffusive": (th.get("psi_diffusive_limit") or {}).get("psi"),
        "theory_window": (th.get("psi_exact_window") or {}).get("psi"),
        "psi_eq": rec.get("psi_eq"),
        "gamma": rec.get("gamma"),
        "variants": {v: (var.get(v) or {}).get("psi") for v in VARIANTS},
        "variant_errors": {
            v: (var.get(v) or {}).get("error") for v in VARIANTS if (var.get(v) or {}).get("error")
        },  # fmt: skip
        "sim_error": sim.get("error"),
    }


# -- figures ---------------------------------------------------------------------------------
def make_figures(rd, records: dict, table: dict) -> list[tuple[str, str]]:
    figs = []
    try:
        figs.append(_fig_psi(rd, records))
        figs.append(_fig_ablations(rd, records))
        for name in table:
            figs.append(_fig_claim(rd, name, table[name]))
        p = _fig_panels(rd, records)
        if p:
            figs.append(p)
    except Exception as e:  # noqa: BLE001 - a figure never sinks a finished suite
        log.warning("figure failed: %s", e)
    return figs


def _ok(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _fig_psi(rd, records):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    lo, hi = 0.0, 4.0
    for k, rec in records.items():
        r = _psi_row(k, rec)
        if _ok(r["psi_real"]) and _ok(r["psi_sim"]):
            ax.errorbar(r["psi_real"], r["psi_sim"], xerr=r["psi_real_err"] or 0,
                        yerr=r["psi_sim_err"] or 0, fmt="o", ms=4, label=k)  # fmt: skip
            lo = min(lo, r["psi_real"], r["psi_sim"])
            hi = max(hi, r["psi_real"], r["psi_sim"])
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="psi_sim = psi_real")
    ax.axhline(2.0, color="C3", lw=0.8, ls=":", label="mean-field theory: 2")
    ax.set(xlabel="psi_real (network)", ylabel="psi_sim (simulator-from-network)",
           title="simulator-from-network vs network")  # fmt: skip
    ax.legend(fontsize=6)
    return rd.save_figure(fig, "fig_psi_real_vs_sim.png"), (
        "psi of each network against psi of the simulator built from its own minibatch "
        "ensemble (error bars: bootstrap); dotted: the mean-field value 2."
    )


def _fig_ablations(rd, records):
    from matplotlib.figure import Figure

    keys = [k for k, r in records.items() if not r.get("failed")]
    fig = Figure(figsize=(max(5, 1.2 * len(VARIANTS) + 2), 4))
    ax = fig.subplots()
    x = np.arange(len(VARIANTS) + 1)
    for j, k in enumerate(keys):
        r = _psi_row(k, records[k])
        ys = [r["psi_real"]] + [r["variants"].get(v) for v in VARIANTS]
        ys = [np.nan if not _ok(y) else y for y in ys]
        ax.plot(x + 0.05 * j, ys, "o", ms=4, label=k)
    ax.axhline(2.0, color="C3", lw=0.8, ls=":")
    ax.set_xticks(x, ["network (real)", *VARIANTS], rotation=30, fontsize=7)
    ax.set(ylabel="psi", title="ablations: one mean-field assumption switched at a time")
    if keys:
        ax.legend(fontsize=6)
    return rd.save_figure(fig, "fig_ablations.png"), (
        "psi of the real network and of each simulator variant (module sim_network): "
        "network = the from-network mean-field law; each other variant changes one assumption."
    )


def _fig_claim(rd, name, claim):
    from matplotlib.figure import Figure

    cells = claim["cells"]
    keys = list(cells)
    fig = Figure(figsize=(max(4.5, 0.6 * len(keys) + 2), 3.2))
    ax = fig.subplots()
    colors = {"holds": "C2", "fails": "C3", "not measured": "0.6", "not applicable": "0.8"}
    for i, k in enumerate(keys):
        c = cells[k]
        v = c["value"]
        y = float(v) if _ok(v) else 0.0
        ax.plot(i, y, "o" if _ok(v) else "x", color=colors[c["status"]], ms=6)
    for s, col in colors.items():
        ax.plot([], [], "o", color=col, label=s)
    ax.set_xticks(range(len(keys)), keys, rotation=30, ha="right", fontsize=6)
    ax.set_title(f"{name}: {claim['status']}", fontsize=9)
    ax.set_ylabel("measured value")
    ax.legend(fontsize=6, loc="best")
    return rd.save_figure(fig, f"claim_{name}.png"), f"{claim['description']}: per cell."


def _fig_panels(rd, records):
    from matplotlib.figure import Figure

    keys = [k for k, r in records.items() if not r.get("failed")]
    if not keys:
        return None
    n = len(keys)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4 * cols, 3.3 * rows))
    axs = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, k in zip(axs, keys, strict=False):
        f = rd.path / "cells" / k / "suite_arrays.npz"
        if not f.is_file():
            continue
        with np.load(f, allow_pickle=False) as z:
            a = {name: z[name] for name in z.files}
        ax.loglog(a["F_network"][1:], a["var_network"][1:], "o", ms=3, label="network")
        if f"sim_var_{PRIMARY}" in a:
            ax.loglog(a[f"sim_F_{PRIMARY}"][1:], a[f"sim_var_{PRIMARY}"][1:], "s", ms=3,
                      mfc="none", label="simulator-from-network")  # fmt: skip
        ax.set_title(k, fontsize=7)
        ax.set_xlabel("F_i", fontsize=7)
        ax.set_ylabel("sigma_i^2", fontsize=7)
        ax.legend(fontsize=6)
    for ax in axs[n:]:
        ax.set_visible(False)
    return rd.save_figure(fig, "fig_panels_variance_flatness.png"), (
        "Fig S3-style panels: window variance sigma_i^2 against flatness F_i (i >= 2) per "
        "cell, the network and its simulator."
    )


# -- report ----------------------------------------------------------------------------------
def _f(x, nd=2):
    return "n/a" if not _ok(x) else f"{x:.{nd}f}"


def report_markdown(summary: dict, figures) -> str:
    L = [f"# sgdyn validate: suite `{summary['suite']}`", "", summary.get("description", ""), ""]
    t = summary["timings"]
    L += [f"{summary['n_cells']} cells, {summary['n_failed']} failed; total {t['total_s']:.0f} s "
          f"wall ({t['jobs']} jobs x {t['threads_per_job']} threads), cells' wall times sum to "
          f"{t['cell_wall_s_sum']:.0f} s.", ""]  # fmt: skip
    L += ["## Claims", "", "| claim | suite | holds | fails (by how much) | not measured |",
          "|---|---|---|---|---|"]  # fmt: skip
    for c in summary["claims"].values():
        fails = "; ".join(f"{k}: {c['cells'][k]['detail']}" for k in c["fails"]) or "-"
        nm = ", ".join(c["not_measured"]) or "-"
        L.append(f"| {c['description']} | **{c['status']}** | {len(c['holds'])} | {fails} | "
                 f"{nm} |")  # fmt: skip
    L += ["", "## psi per cell: network, simulator-from-network, mean-field theory", "",
          "| cell | psi_real | psi_sim (network variant) | theory: diffusive limit (2) | "
          "theory: exact window | psi_eq (Langevin) | gamma | gamma top-K: network / sim | "
          "wall s |",
          "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    walls = {c["key"]: c.get("wall_s") for c in summary["cells"]}
    for r in summary["psi_table"]:
        if r.get("error"):
            L.append(f"| {r['key']} | failed: {r['error']} | | | | | | | "
                     f"{_f(walls[r['key']], 0)} |")  # fmt: skip
            continue
        L.append(
            f"| {r['key']} | {_f(r['psi_real'])} ± {_f(r['psi_real_err'])} | "
            f"{_f(r['psi_sim'])} ± {_f(r['psi_sim_err'])} | {_f(r['theory_diffusive'])} | "
            f"{_f(r['theory_window'])} | {_f(r.get('psi_eq'))} | {_f(r.get('gamma'))} | "
            f"{_f(r.get('gamma_network_topk'))} / {_f(r.get('gamma_sim_topk'))} | "
            f"{_f(walls[r['key']], 0)} |"
        )
    L += ["", "## Ablations (psi of each simulator variant)", "",
          "| cell | real | " + " | ".join(VARIANTS) + " |",
          "|---|---|" + "---|" * len(VARIANTS)]  # fmt: skip
    for r in summary["psi_table"]:
        if r.get("error"):
            continue
        vals = []
        for v in VARIANTS:
            x = r["variants"].get(v)
            vals.append(_f(x) if _ok(x) else ("diverged" if v in r["variant_errors"] else "-"))
        L.append(f"| {r['key']} | {_f(r['psi_real'])} | " + " | ".join(vals) + " |")
    L += ["", "Variants: `network` = the from-network mean-field law (diagonal, the network's "
          "minibatches per epoch without replacement, its window); `cross-separable` adds the "
          "measured cross-mode scale as Gaussian off-diagonals; `cross-measured` uses the "
          "network's own K x K minibatch matrices; `measured-diagonal` their diagonals; "
          "`replacement` draws minibatches with replacement; `fresh` an infinite ensemble; "
          "`relaxed` a window long against every relaxation time.", ""]  # fmt: skip
    L += ["## Figures", ""]
    for name, cap in figures:
        L += [f"![{name}]({name})", "", cap, ""]
    return "\n".join(L) + "\n"
