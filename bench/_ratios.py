"""Tiny helper for benchmarks: keep medians measured in this run and print ratios."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

MEDIANS: dict[str, float] = {}


def record(name: str, benchmark) -> float:
    med = float(benchmark.stats.stats.median)
    MEDIANS[name] = med
    return med


def report(capsys, title: str, rows: list[tuple[str, str, str]], extra: dict | None = None) -> dict:
    """Print ``baseline / candidate`` speed ratios (>1: candidate faster) and save JSON."""
    out = {"title": title, "ratios": {}, "medians_s": dict(MEDIANS), **(extra or {})}
    lines = [f"\n== {title} =="]
    for label, cand, base in rows:
        if cand in MEDIANS and base in MEDIANS:
            r = MEDIANS[base] / MEDIANS[cand]
            out["ratios"][label] = r
            lines.append(
                f"{label}: {r:.3g}x  ({base} {MEDIANS[base]:.4g}s / {cand} {MEDIANS[cand]:.4g}s)"
            )
    for k, v in (extra or {}).items():
        lines.append(f"{k}: {v}")
    with capsys.disabled():
        print("\n".join(lines))
    dest = os.environ.get("SGDYN_BENCH_JSON_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        slug = title.lower().replace(" ", "_").replace("/", "_")
        (Path(dest) / f"{slug}.json").write_text(json.dumps(out, indent=2))
    return out


def best_interleaved(fns, repeats: int = 5, warmup: bool = True) -> list[float]:
    """Best-of-``repeats`` seconds of each callable, measured interleaved (a shared machine's
    load then hits every candidate alike); ``warmup``: one untimed call of each first."""
    if warmup:
        for f in fns:
            f()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    return best
