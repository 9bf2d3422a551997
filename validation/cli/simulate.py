"""Simulate the paper's random-landscape (MLF ensemble) theory and check it (Sec IV).

Writes DIR/summary.json (sim.psi, theory.psi, equilibrium.psi, checks, config),
DIR/arrays.npz, PNG figures and DIR/report.md. A finished run with other settings is never
overwritten unless --force; the same settings are reported as already done.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .common import add_common_options

NAME = "simulate"
HELP = "simulate the random-landscape (MLF) theory: SGD/Langevin replicas, theory vs simulation"


def add_arguments(p) -> None:
    add_common_options(p, seed_default=0, device_default="cpu")
    p.add_argument("--preset", default="paper-like", choices=["paper-like"])
    p.add_argument("--N", type=int, default=30, help="number of modes")
    p.add_argument("--F-min", type=float, default=1.0, help="flatness of the sharpest mode")
    p.add_argument("--F-max", type=float, default=10.0, help="flatness of the flattest mode")
    p.add_argument("--replicas", type=int, default=64)
    p.add_argument("--alpha", type=float, default=0.25, help="SGD learning rate")
    p.add_argument("--window", type=int, default=0,
                   help="diffusive PCA window in steps (0: tau_min / 5)")  # fmt: skip
    p.add_argument("--alpha-stationary", type=float, default=1.0,
                   help="learning rate of the stationary (Eq 12) and Langevin runs")  # fmt: skip
    p.add_argument("--window-stationary", type=int, default=0,
                   help="stationary window in steps (0: 20 tau_max)")  # fmt: skip
    p.add_argument("--temperature", type=float, default=1e-4, help="Langevin temperature")
    p.add_argument("--minibatches", type=int, default=512,
                   help="K of the finite ensemble probed for the flatness")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="small fast run for tests/CI (~20 s)")


def _config(args):
    from sgdyn.validation.studies.simulate import QUICK, SimStudyConfig

    cfg = SimStudyConfig(
        preset=args.preset, N=args.N, F_min=args.F_min, F_max=args.F_max,
        replicas=args.replicas, alpha=args.alpha, window_diffusive=args.window,
        alpha_stationary=args.alpha_stationary, window_stationary=args.window_stationary,
        temperature=args.temperature, minibatches=args.minibatches, seed=args.seed,
        device=args.device, quick=args.quick,
    )  # fmt: skip
    if args.quick:
        for k, v in QUICK.items():
            setattr(cfg, k, v)
    if cfg.N < 3 or cfg.replicas < 2:
        raise ValueError("need --N >= 3 and --replicas >= 2")
    if cfg.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but no CUDA device is available")
    return cfg


def run(args) -> int:
    from sgdyn.validation.io.rundir import prepare_out_dir, write_json, write_npz
    from sgdyn.validation.studies.simulate import make_figures, report_markdown, run_study

    cfg = _config(args)
    out = Path(args.out)
    if prepare_out_dir(out, cfg.as_dict(), args.force):
        print(f"{out} already holds this finished run (summary.json); nothing to do")
        return 0
    t0 = time.time()
    summary, arrays = run_study(cfg, progress=not args.no_progress)
    summary["wall_seconds"] = time.time() - t0
    write_npz(out / "arrays.npz", arrays)
    figs = make_figures(out, arrays, summary)
    (out / "report.md").write_text(report_markdown(summary, figs))
    write_json(out / "summary.json", summary)  # last: marks the run finished
    s = summary
    print(json.dumps({"sim.psi": s["sim"]["psi"], "sim.psi_stationary": s["sim"]["psi_stationary"],
                      "theory.psi": s["theory"]["psi"],
                      "theory.psi_stationary": s["theory"]["psi_stationary"],
                      "equilibrium.psi": s["equilibrium"]["psi"]}, indent=1))  # fmt: skip
    print(f"wrote {out}/summary.json, report.md, arrays.npz and {len(figs)} figures")
    return 0
