"""The human-readable report (markdown) of a run: figures and numbers beside the paper's."""

from __future__ import annotations

from .null_models import null_table_markdown


def _fmt(x, nd=3):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}g}"
    return str(x)


def report_markdown(summary: dict, figures: list, sections: list[str]) -> str:
    """The report's markdown (the run directory also renders it to report.html)."""
    cfg = summary.get("config", {})
    p = summary["pca"]
    ph = summary["phases"]
    dyn = summary["dynamics"]
    paper = summary.get("paper", {})
    lines = [
        "# sgdyn reproduce: SGD trajectory PCA (Feng & Tu, Fig 1, Fig S1)",
        "",
        f"Data: {summary['data']['source']} ({summary['data']['n_samples']} samples). "
        f"Model: {cfg.get('model')} hidden={cfg.get('hidden')}, optimizer {cfg.get('optimizer')}, "
        f"alpha={cfg.get('lr')}, B={cfg.get('batch_size')}, seed={cfg.get('seed')}. "
        f"Probe: `{p['probe']}` (N={p['n_features']} weights), window of "
        f"{cfg.get('window_epochs')} epochs = {p['n_snapshots']} snapshots, "
        f"epochs {ph['window_start_epoch']}-{ph['window_end_epoch']}.",
        "",
        f"Window choice: {ph['window_reason']}.",
        "",
        "| quantity | measured | paper |",
        "|---|---|---|",
        f"| gamma (sigma_i^2 ~ i^-gamma, ranks {p['rank_range'][0]}-{p['rank_range'][1]}) | "
        f"{_fmt(p['gamma'])} +- {_fmt(p['gamma_err_boot'], 2)} (bootstrap; OLS "
        f"{_fmt(p['gamma_err'], 2)}, R^2 {_fmt(p['gamma_r2'])}) | {paper.get('gamma')} |",
        f"| n90 (PCs 2..n carry 90% of the variance beyond PC1) | {p['n90_excl_pc1']} | "
        f"{paper.get('n90_excl_pc1')} |",
        f"| var1 / var2 | {_fmt(p['var1_over_var2'])} | {paper.get('var1_over_var2')} |",
        f"| PC1 share of total variance | {_fmt(p['fraction_pc1'])} | |",
        f"| transition epoch (loss falls < {_fmt(ph['max_slow_rate'])} per epoch) | "
        f"{ph['transition_epoch']} (region {ph['transition_region']}) | Fig S1 |",
        f"| PC1 drift ratio (|net displacement| / rms path) | "
        f"{_fmt(dyn['pc1']['drift_ratio'])} | persistent drift |",
        f"| PC1 velocity correlation time (epochs) | "
        f"{_fmt(dyn['pc1']['corr_time_epochs'])}"
        f"{' (>= window: never decorrelates)' if dyn['pc1']['corr_time_censored'] else ''} "
        "| much longer than 1 epoch |",
        f"| modes 2..{dyn['modes_2_to_k']['k']}: median drift ratio | "
        f"{_fmt(dyn['modes_2_to_k']['median_drift_ratio'])} | small (a random walk's PCA "
        "gives ~0.1 here, not 1: see the null models) |",
        f"| modes 2..{dyn['modes_2_to_k']['k']}: median velocity correlation time (epochs) | "
        f"{_fmt(dyn['modes_2_to_k']['median_corr_time_epochs'])} | shorter than 1 epoch |",
        "",
        f"Velocities are averaged over blocks of {dyn['block_steps']} steps; the correlation time "
        "is the first lag where the (non-centred) velocity autocorrelation drops below 1/e.",
        "",
    ]
    if "nulls" in summary:
        lines += [null_table_markdown(summary["nulls"])]
    for name, caption in figures:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    for sec in sections:
        lines += [sec, ""]
    t = summary.get("timings", {})
    lines += [
        "## Run",
        "",
        f"Total {_fmt(t.get('total_s'))} s "
        f"(training to window {_fmt(t.get('train_to_window_s'))} s, "
        f"window {_fmt(t.get('window_s'))} s, PCA {_fmt(t.get('pca_s'))} s)"
        f"{' - capture resumed from capture.pt' if t.get('resumed') else ''}. "
        f"Environment: {summary.get('environment')}.",
        "",
    ]
    return "\n".join(lines)
