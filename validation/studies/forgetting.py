"""Landscape-dependent constraints (LDC, Eq 15) against catastrophic forgetting, beside EWC
(Sec V, Fig 4, Methods "Multi-task learning").

Protocol, per seed (``build_base``, cached in ``out/base/seed<s>.pt``):

1. the 784-50-50-10 MLP (no bias) is trained on all tasks together (``pretrain_epochs``);
2. the probed hidden layer (``layers.1.weight``, the 50x50 = 2,500 weights between the two
   hidden layers, as in ``sgdyn reproduce``) is re-initialised and every other layer frozen;
3. task 1 is trained until its exploration phase (:func:`sgdyn.theory.detect_transition` on
   the per-epoch full loss), then a window of at least ``window_epochs`` epochs and
   ``min_window_steps`` steps is recorded and its PCA (:class:`sgdyn.kernels.StreamingPCA`,
   through :class:`~sgdyn.validation.probes.TrajectoryRecorder`) gives the directions p_1i
   and variances sigma_1i^2; w1 is the weight at the end of the window;
4. the flatness F_1i: ``flatness="variance"`` (default, the paper's cheap route) inverts
   Eq 8, F_i = C sigma_i^(-2/psi), with psi (default 4) and the prefactor C calibrated on
   ``n_calibrate`` directions whose e-width is measured by
   :meth:`~sgdyn.validation.probes.NetworkLandscape.flatness`; ``flatness="landscape"``
   measures the e-width of every constrained direction;
5. the diagonal Fisher of task 1 at w1 (``fisher="empirical"`` or ``"expected"``) for EWC.

Then task 2 is trained from w1 (``task2_epochs``) with no constraint, LDC
(:class:`~sgdyn.validation.training.penalties.LDCPenalty`), EWC
(:class:`~sgdyn.validation.training.penalties.EWCPenalty`), or -- the null -- LDC along
random orthonormal directions with the same F, all through the one training loop
(``train_epoch(..., penalty=...)``). Every (method, lambda, Nc / k, seed) point is a cell of
:func:`sgdyn.validation.sweeps.run_cells` (resumable, ``--jobs`` processes). The five-task
sequence trains every pair in turn with the constraints of all previous tasks summed
(:class:`~sgdyn.validation.training.penalties.PenaltySum`), each task into its exploration
phase and window, and reports the accuracy matrix and the average forgetting.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sgdyn.validation.io.config import StudyConfig
from sgdyn.validation.io.rundir import RunDir, write_npz
from sgdyn.validation.io.tensors import owned_tree
from sgdyn.validation.sweeps import Cell, raise_if_failed, run_cells
from sgdyn.validation.sweeps.runner import cell_dir as _cell_dir

from .forgetting_tasks import PAIRS, Task, load_tasks, union

log = logging.getLogger(__name__)

NAME = "forgetting"
PROBE = "layers.1.weight"
METHODS = ("none", "ldc", "ldc_random", "ewc")


@dataclass
class ForgettingConfig(StudyConfig):
    """Settings of the forgetting study (all recorded in summary.json)."""

    dataset: str = "mnist5k"
    data_root: str | None = None
    n_tasks: int = 5
    test_fraction: float = 0.2
    per_class: int | None = None
    hidden: tuple[int, ...] = (50, 50)
    lr: float = 0.1
    batch_size: int = 50
    seed: int = 0
    n_seeds: int = 3
    pretrain_epochs: int = 20
    min_epochs: int = 6
    max_epochs: int = 100
    window_epochs: int = 10
    min_window_steps: int = 1000
    task2_epochs: int = 30
    lam: float = 10.0
    nc: int = 200
    lams: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    ewc_lams: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
    ncs: tuple[int, ...] = (10, 25, 50, 100, 200, 400, 800)
    ewc_ks: tuple[int, ...] = (10, 50, 100, 250, 500, 1000, 2500)
    fisher: str = "empirical"
    penalty_step: str = "implicit"
    flatness: str = "variance"
    psi: float = 4.0
    n_calibrate: int = 8
    xi_factor: float = 0.008
    sequence: bool = True
    device: str = "auto"
    quick: bool = False

    def validate(self) -> None:
        if self.dataset not in ("mnist5k", "mnist", "digits"):
            raise ValueError(f"--dataset must be mnist5k, mnist or digits, got {self.dataset!r}")
        if not 2 <= self.n_tasks <= len(PAIRS):
            raise ValueError(f"--n-tasks must be 2..{len(PAIRS)} class pairs, got {self.n_tasks}")
        if self.fisher not in ("empirical", "expected"):
            raise ValueError(f"--fisher must be empirical or expected, got {self.fisher!r}")
        if self.penalty_step not in ("implicit", "explicit"):
            raise ValueError(
                f"--penalty-step must be implicit or explicit, got {self.penalty_step!r}"
            )
        if self.flatness not in ("variance", "landscape"):
            raise ValueError(f"--flatness must be variance or landscape, got {self.flatness!r}")
        if len(self.hidden) != 2 or min(self.hidden) < 1:
            raise ValueError(f"--hidden must be two positive widths, got {self.hidden}")
        n = self.hidden[0] * self.hidden[1]
        for name, vals in (
            ("--lam", (self.lam,)),
            ("--lams", self.lams),
            ("--ewc-lams", self.ewc_lams),
        ):
            if not vals or any(not (math.isfinite(v) and v >= 0) for v in vals):
                raise ValueError(f"{name} must be finite numbers >= 0, got {list(vals)}")
        for name, vals in (("--nc", (self.nc,)), ("--ncs", self.ncs), ("--ewc-ks", self.ewc_ks)):
            if not vals or any(not 1 <= v <= n for v in vals):
                raise ValueError(
                    f"{name} must be between 1 and the {n} weights of the probed layer, "
                    f"got {list(vals)}"
                )
        if not (math.isfinite(self.lr) and self.lr > 0) or self.batch_size < 1:
            raise ValueError("--lr must be > 0 and --batch-size >= 1")
        if self.n_seeds < 1 or self.task2_epochs < 1 or self.pretrain_epochs < 0:
            raise ValueError("--n-seeds and --task2-epochs must be >= 1, --pretrain-epochs >= 0")
        if self.max_epochs < self.min_epochs or self.min_epochs < 6:
            raise ValueError(
                "--min-epochs must be >= 6 (the transition detector needs a loss curve) and "
                "<= --max-epochs"
            )
        if not self.psi > 0 or self.n_calibrate < 2:
            raise ValueError("--psi must be > 0 and --n-calibrate >= 2")

    @property
    def max_modes(self) -> int:
        return max(self.nc, *self.ncs)

    def task_pairs(self):
        return [list(p) for p in PAIRS[: self.n_tasks]]

    def data_spec(self) -> dict:
        return {
            "dataset": self.dataset,
            "data_root": self.data_root,
            "tasks": self.task_pairs(),
            "test_fraction": self.test_fraction,
            "per_class": self.per_class,
            "split_seed": self.seed,
        }

    def train_spec(self) -> dict:
        keys = (
            "hidden",
            "lr",
            "batch_size",
            "min_epochs",
            "max_epochs",
            "window_epochs",
            "min_window_steps",
            "flatness",
            "penalty_step",
            "psi",
            "n_calibrate",
            "fisher",
            "device",
        )
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in self.as_dict().items()
            if k in keys
        }


# --quick: 8x8 digits, one seed, short windows and sweeps (runs in well under a minute)
QUICK = dict(
    dataset="digits",
    n_seeds=1,
    pretrain_epochs=5,
    min_epochs=6,
    max_epochs=12,
    window_epochs=2,
    min_window_steps=60,
    task2_epochs=4,
    nc=20,
    lams=(1.0, 10.0),
    ewc_lams=(10.0, 1000.0),
    ncs=(5, 20, 50),
    ewc_ks=(100, 2500),
    n_calibrate=4,
    n_tasks=3,
)


# ---------------------------------------------------------------------------------------------
# data (cached per process: every cell of a worker reuses it)
_TASKS: dict[str, list[Task]] = {}


def get_tasks(spec: dict, device: str = "cpu") -> list[Task]:
    key = json.dumps(spec, sort_keys=True) + device
    if key not in _TASKS:
        tasks = load_tasks(
            spec["dataset"],
            spec["data_root"],
            spec["tasks"],
            test_fraction=spec["test_fraction"],
            per_class=spec["per_class"],
            seed=spec["split_seed"],
        )
        _TASKS.clear()
        _TASKS[key] = [t.to(device) for t in tasks]
    return _TASKS[key]


def n_window_steps(n_train: int, spec: dict) -> tuple[int, int]:
    """(window epochs, window steps) for a task with ``n_train`` samples."""
    spe = n_train // spec["batch_size"]
    if spe < 1:
        raise ValueError(
            f"a task has {n_train} training samples, fewer than --batch-size "
            f"{spec['batch_size']}; lower the batch size"
        )
    epochs = max(spec["window_epochs"], math.ceil(spec["min_window_steps"] / spe))
    return epochs, epochs * spe


# ---------------------------------------------------------------------------------------------
# training pieces (one loop for every method: train_epoch(..., penalty=))
def probe_optimizer(model, spec):
    from sgdyn.validation.training import OptimConfig, make_optimizer

    p = dict(model.named_parameters())[PROBE]
    return make_optimizer(model, OptimConfig("sgd", spec["lr"], spec["batch_size"]), params=[p])


def freeze_all_but_probe(model) -> None:
    for n, p in model.named_parameters():
        p.requires_grad_(n == PROBE)


def probe_vector(model) -> torch.Tensor:
    return dict(model.named_parameters())[PROBE].detach().reshape(-1).clone()


def test_errors(model, tasks: list[Task]) -> list[float]:
    from sgdyn.validation.training import accuracy

    return [1.0 - accuracy(model, t.x_test, t.y_test) for t in tasks]


def train_into_window(model, task: Task, spec: dict, gen, penalty=None) -> dict:
    """Train the probe on ``task`` until the exploration phase, then record the window and fit
    its PCA. Returns components P (K, N), variances, the loss curve and the window's start."""
    from sgdyn.theory import detect_transition
    from sgdyn.validation.probes.recorder import TrajectoryRecorder
    from sgdyn.validation.training import check_finite, full_loss, train_epoch

    opt = probe_optimizer(model, spec)
    B = spec["batch_size"]
    losses = [full_loss(model, task.x, task.y)]
    epoch, reason = 0, ""
    while True:
        if epoch >= spec["min_epochs"]:
            ph = detect_transition(losses)
            if ph.confirmed:
                reason = f"exploration phase: transition at epoch {ph.transition_epoch}"
                break
            if epoch >= spec["max_epochs"]:
                reason = f"no transition within {spec['max_epochs']} epochs; window starts there"
                break
        train_epoch(model, opt, task.x, task.y, B, gen, penalty=penalty)
        epoch += 1
        losses.append(full_loss(model, task.x, task.y))
        check_finite(losses[-1], epoch, spec["lr"], losses[0])
    n_ep, n_steps = n_window_steps(len(task.x), spec)
    # the window is kept (T x N) so the PCA runs on its T x T Gram matrix (T < N)
    rec = TrajectoryRecorder(model, PROBE, n_steps, keep_trajectory=True)
    rec.attach(opt)
    for _ in range(n_ep):
        train_epoch(model, opt, task.x, task.y, B, gen, penalty=penalty)
        losses.append(full_loss(model, task.x, task.y))
    rec.detach()
    check_finite(losses[-1], len(losses) - 1, spec["lr"], losses[0])
    pca = rec.pca()
    return {
        "P": pca.components_.to(torch.float32),
        "var": pca.explained_variance_.to(torch.float64),
        "losses": np.asarray(losses),
        "window_start_epoch": epoch + 1,
        "window_epochs": n_ep,
        "window_steps": n_steps,
        "reason": reason,
    }


def flatness_of(model, task: Task, w1, P, var, n_modes: int, spec: dict) -> tuple:
    """F_1i of the first ``n_modes`` directions (Eq 8 calibrated, or measured) and a record
    of how they were obtained."""
    from sgdyn.validation.probes.network_landscape import NetworkLandscape

    land = NetworkLandscape(model, PROBE, (task.x, task.y), batch_size=spec["batch_size"])
    w1 = w1.to(land.dtype)
    var = var[:n_modes].double()
    psi = float(spec["psi"])
    if spec["flatness"] == "landscape":
        idx = np.arange(n_modes)
    else:  # log-spaced calibration modes, skipping the drifting first one
        idx = np.unique(np.geomspace(2, n_modes, spec["n_calibrate"]).astype(int) - 1)
    res = land.flatness(w1, P[idx].to(land.dtype), tol=1e-3, on_unbounded="flag")
    Fm = np.asarray(res.width, dtype=np.float64)
    ok = np.isfinite(Fm) & (Fm > 0)
    v = var.cpu().numpy()
    if ok.sum() < 2:
        raise RuntimeError(
            f"only {int(ok.sum())} of {len(idx)} calibration directions have a bounded "
            "flatness; train task 1 longer (--max-epochs) or use more --n-calibrate modes"
        )
    lF, lv = np.log(Fm[ok]), np.log(v[idx][ok])
    logC = float(np.mean(lF + lv / psi))
    slope = float(np.polyfit(lF, lv, 1)[0]) if ok.sum() >= 3 else float("nan")
    F_eq8 = np.exp(logC) * v ** (-1.0 / psi)
    if spec["flatness"] == "landscape":
        F = np.where(ok, Fm, F_eq8)  # unbounded directions: the Eq 8 value
    else:
        F = F_eq8
    info = {
        "mode": spec["flatness"],
        "psi_used": psi,
        "prefactor_C": float(np.exp(logC)),
        "psi_fit_on_measured": -slope,
        "n_measured": int(len(idx)),
        "n_bounded": int(ok.sum()),
        "measured_modes": (idx + 1).tolist(),
        "measured_F": [float(f) for f in Fm],
        "L0": float(land.full_loss(w1)),
    }
    return torch.as_tensor(F, dtype=torch.float64), info


def _random_orthonormal(k: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return q.T.contiguous().to(torch.float32)


def base_path(out: Path, seed: int) -> Path:
    return Path(out) / "base" / f"seed{seed}.pt"


def build_base(cfg: ForgettingConfig, seed: int, out: Path, force: bool = False) -> dict:
    """Pre-train, re-initialise the probe, train task 1 into its window, PCA, F, Fisher; cached
    in ``out/base/seed<s>.pt`` (keyed on the settings; recomputed when they differ)."""
    from sgdyn.validation.models import build_model
    from sgdyn.validation.training import OptimConfig, diagonal_fisher, make_optimizer, train_epoch

    path = base_path(out, seed)
    key = json.dumps(
        {
            "data": cfg.data_spec(),
            "train": cfg.train_spec(),
            "seed": seed,
            "pretrain": cfg.pretrain_epochs,
            "modes": cfg.max_modes,
        },
        sort_keys=True,
    )
    if path.exists() and not force:
        b = torch.load(path, weights_only=True)
        if b.get("key") == key:
            return b
    t0 = time.perf_counter()
    spec = cfg.train_spec()
    tasks = get_tasks(cfg.data_spec(), cfg.device)
    torch.manual_seed(seed)
    model = build_model("mlp", tasks[0].x.shape[1], cfg.hidden).to(cfg.device)
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, OptimConfig("sgd", cfg.lr, cfg.batch_size))
    xa, ya = union(tasks)
    for _ in range(cfg.pretrain_epochs):
        train_epoch(model, opt, xa, ya, cfg.batch_size, gen)
    pre_err = test_errors(model, tasks)
    model.get_submodule(PROBE.rpartition(".")[0]).reset_parameters()
    freeze_all_but_probe(model)
    state0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    t1 = time.perf_counter()
    win = train_into_window(model, tasks[0], spec, gen)
    K = int(win["P"].shape[0])
    if K < cfg.nc:
        raise ValueError(
            f"task 1's window gave {K} PCA components (the rank of the recorded window), "
            f"fewer than Nc = {cfg.nc}; lower --nc or raise --min-window-steps (now "
            f"{cfg.min_window_steps})"
        )
    n_modes = min(K, cfg.max_modes)
    w1 = probe_vector(model)
    P = win["P"][:n_modes]
    t2 = time.perf_counter()
    F, finfo = flatness_of(model, tasks[0], w1, P, win["var"], n_modes, spec)
    t3 = time.perf_counter()
    fisher = diagonal_fisher(model, tasks[0].x, tasks[0].y, params=PROBE, kind=cfg.fisher)
    t4 = time.perf_counter()
    info = {
        "seed": seed,
        "pretrain_test_error": pre_err,
        "task1_test_error_at_w1": test_errors(model, tasks[:1])[0],
        "window_start_epoch": win["window_start_epoch"],
        "window_epochs": win["window_epochs"],
        "window_steps": win["window_steps"],
        "window_reason": win["reason"],
        "n_components": K,
        "flatness": finfo,
        "fisher_kind": cfg.fisher,
        "fisher_sum": float(fisher.sum()),
        "timings": {
            "pretrain_s": t1 - t0,
            "task1_s": t2 - t1,
            "flatness_s": t3 - t2,
            "fisher_s": t4 - t3,
        },
    }
    b = {
        "key": key,
        "info": json.dumps(info),
        "state0": {k: v.cpu() for k, v in state0.items()},
        "state1": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "w1": w1.cpu(),
        "P": P.cpu(),
        "P_random": _random_orthonormal(n_modes, w1.numel(), 10_000 + seed),
        "var": win["var"][:n_modes].cpu(),
        "F": F.cpu(),
        "fisher": fisher.cpu(),
        "task1_losses": torch.as_tensor(win["losses"]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(owned_tree(b), tmp)
    tmp.replace(path)
    return b


def _model_from(state: dict, n_features: int, hidden, device):
    from sgdyn.validation.models import build_model

    model = build_model("mlp", n_features, tuple(hidden)).to(device)
    model.load_state_dict(state)
    freeze_all_but_probe(model)
    return model


def step_lr(spec: dict):
    """The learning rate of the step-stable penalty form (None: Eq 15 / EWC as written)."""
    return spec["lr"] if spec.get("penalty_step", "implicit") == "implicit" else None


def make_penalty(method: str, base: dict, lam: float, nc=None, top_k=None, device="cpu", lr=None):
    from sgdyn.validation.training.penalties import EWCPenalty, LDCPenalty

    if method == "none":
        return None
    if method in ("ldc", "ldc_random"):
        P = base["P"] if method == "ldc" else base["P_random"]
        return LDCPenalty(base["w1"], P, base["F"], lam, params=PROBE, n_components=nc, lr=lr).to(
            device
        )
    if method == "ewc":
        return EWCPenalty(base["w1"], base["fisher"], lam, params=PROBE, top_k=top_k, lr=lr).to(
            device
        )
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


# ---------------------------------------------------------------------------------------------
# cells (top-level functions: the sweep runner's workers import them)
def task2_cell(params: dict, cell_dir: Path) -> dict:
    """Train task 2 from w1 with one constraint; eps1, eps2 per epoch, q_i at the end."""
    from sgdyn.validation.training import DivergenceError, train_epoch

    spec = params["train"]
    device = spec["device"]
    tasks = get_tasks(params["data"], device)[:2]
    base = torch.load(Path(cell_dir).parent.parent / params["base"], weights_only=True)
    model = _model_from(base["state1"], tasks[0].x.shape[1], spec["hidden"], device)
    pen = make_penalty(
        params["method"],
        base,
        params["lam"],
        params.get("nc"),
        params.get("top_k"),
        device,
        step_lr(spec),
    )
    opt = probe_optimizer(model, spec)
    gen = torch.Generator().manual_seed(params["seed"] + 1)
    curve = [test_errors(model, tasks)]
    diverged = False
    for _ in range(params["epochs"]):
        try:
            losses = train_epoch(
                model, opt, tasks[1].x, tasks[1].y, spec["batch_size"], gen, penalty=pen
            )
        except DivergenceError:
            diverged = True
            break
        if not torch.isfinite(losses).all() or float(losses.max()) > 1e6:
            diverged = True
            break
        curve.append(test_errors(model, tasks))
    w2 = probe_vector(model).to(base["w1"].dtype)
    d = w2 - base["w1"].to(w2.device)
    q = (base["P"].to(d.device) @ d).abs()
    q_rand = (base["P_random"].to(d.device) @ d).abs()
    c = np.asarray(curve)
    tail = max(1, (len(c) - 1) // 5)
    if diverged:
        eps1 = eps2 = float("nan")
    else:
        eps1, eps2 = (float(v) for v in c[-tail:].mean(0))
    write_npz(
        Path(cell_dir) / "arrays.npz",
        {
            "curve": c,
            "q": q.cpu().numpy(),
            "q_random": q_rand.cpu().numpy(),
            "w2": w2.cpu().numpy(),
        },
    )
    return {
        "method": params["method"],
        "lam": params["lam"],
        "nc": params.get("nc"),
        "top_k": params.get("top_k"),
        "seed": params["seed"],
        "eps1": eps1,
        "eps2": eps2,
        "diverged": diverged,
        "displacement_norm": float(d.norm()),
    }


def sequence_cell(params: dict, cell_dir: Path) -> dict:
    """Train every task in turn with the constraints of all previous tasks summed; the
    accuracy matrix R[k, j] (accuracy on task j after training task k)."""
    from sgdyn.validation.training.penalties import (
        EWCPenalty,
        LDCPenalty,
        PenaltySum,
        diagonal_fisher,
    )

    spec = params["train"]
    device = spec["device"]
    tasks = get_tasks(params["data"], device)
    base = torch.load(Path(cell_dir).parent.parent / params["base"], weights_only=True)
    model = _model_from(base["state0"], tasks[0].x.shape[1], spec["hidden"], device)
    gen = torch.Generator().manual_seed(params["seed"])
    method, lam, nc = params["method"], params["lam"], params.get("nc")
    constraints = PenaltySum()
    # step-stable form for a sum of up to T - 1 constraints: each built for alpha (T - 1), so
    # their summed curvature stays below 1 / alpha along any direction
    lr0 = step_lr(spec)
    seq_lr = None if lr0 is None else lr0 * (len(tasks) - 1)
    R = np.zeros((len(tasks), len(tasks)))
    for k, task in enumerate(tasks):
        win = train_into_window(model, task, spec, gen, penalty=constraints if k else None)
        R[k] = 1.0 - np.asarray(test_errors(model, tasks))
        if k == len(tasks) - 1 or method == "none":
            continue
        w = probe_vector(model)
        if method == "ldc":
            m = min(nc, int(win["P"].shape[0]))
            F, _ = flatness_of(model, task, w, win["P"][:m], win["var"], m, spec)
            pen = LDCPenalty(w, win["P"][:m], F, lam, params=PROBE, lr=seq_lr)
            constraints.append(pen.to(device))
        elif method == "ewc":
            fis = diagonal_fisher(model, task.x, task.y, params=PROBE, kind=spec["fisher"])
            pen = EWCPenalty(w, fis, lam, params=PROBE, lr=seq_lr)
            constraints.append(pen.to(device))
    write_npz(Path(cell_dir) / "arrays.npz", {"R": R})
    T = len(tasks)
    forgetting = [float(R[j : T - 1, j].max() - R[T - 1, j]) for j in range(T - 1)]
    return {
        "method": method,
        "seed": params["seed"],
        "R": R.tolist(),
        "avg_forgetting": float(np.mean(forgetting)),
        "avg_accuracy": float(R[T - 1].mean()),
    }


# ---------------------------------------------------------------------------------------------
def usable_ncs(cfg: ForgettingConfig, bases: dict) -> tuple[int, ...]:
    """The Nc sweep values that every seed's window can give (its PCA rank)."""
    k = min(int(b["P"].shape[0]) for b in bases.values())
    return tuple(n for n in cfg.ncs if n <= k)


def _cells(cfg: ForgettingConfig, seeds, ewc_lam_best=None, ncs=None) -> list[Cell]:
    common = {"data": cfg.data_spec(), "train": cfg.train_spec(), "epochs": cfg.task2_epochs}
    cells = []

    def add(key, **p):
        s = p["seed"]
        cells.append(Cell(f"{key}_s{s}", {**common, "base": f"base/seed{s}.pt", **p}))

    for s in seeds:
        if ewc_lam_best is None:  # stage 1: main point and lambda sweeps
            add("none", method="none", lam=0.0, seed=s)
            for lam in sorted({*cfg.lams, cfg.lam}):
                add(f"ldc_lam{lam:g}_nc{cfg.nc}", method="ldc", lam=lam, nc=cfg.nc, seed=s)
                add(
                    f"ldcrand_lam{lam:g}_nc{cfg.nc}",
                    method="ldc_random",
                    lam=lam,
                    nc=cfg.nc,
                    seed=s,
                )
            for lam in cfg.ewc_lams:
                add(f"ewc_lam{lam:g}", method="ewc", lam=lam, seed=s)
        else:  # stage 2: number of constraints
            for nc in cfg.ncs if ncs is None else ncs:
                if nc != cfg.nc:
                    add(f"ldc_lam{cfg.lam:g}_nc{nc}", method="ldc", lam=cfg.lam, nc=nc, seed=s)
            for k in cfg.ewc_ks:
                add(
                    f"ewc_lam{ewc_lam_best:g}_k{k}", method="ewc", lam=ewc_lam_best, top_k=k, seed=s
                )
    return cells


def _run(fn, cells, out, *, jobs, threads, force, progress, engine="local", **engine_options):
    done = run_cells(
        fn,
        cells,
        out,
        engine=engine,
        jobs=jobs,
        threads=max(1, threads),
        force=force,
        progress=progress,
        **engine_options,
    )
    raise_if_failed(done, out)
    rows = []
    for r in done:
        with np.load(_cell_dir(Path(out), r.key) / "arrays.npz") as z:
            rows.append({**r.result, "key": r.key, **{k: z[k] for k in z.files}})
    return rows


def _agg(rows, **match) -> dict:
    sel = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    e1 = np.array([r["eps1"] for r in sel], dtype=float)
    e2 = np.array([r["eps2"] for r in sel], dtype=float)
    s = e1 + e2
    n = len(sel)
    sem = lambda a: float(np.nanstd(a, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")  # noqa: E731
    nan_all = lambda a: float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")  # noqa: E731
    return {
        **match,
        "n_seeds": n,
        "n_diverged": int(sum(r["diverged"] for r in sel)),
        "eps1": nan_all(e1),
        "eps1_sem": sem(e1),
        "eps2": nan_all(e2),
        "eps2_sem": sem(e2),
        "eps_sum": nan_all(s),
        "eps_sum_sem": sem(s),
    }


def _best(points: list[dict]) -> dict:
    ok = [p for p in points if math.isfinite(p["eps_sum"]) and p["n_diverged"] == 0]
    if not ok:
        return {"eps_sum": float("nan")}
    return min(ok, key=lambda p: p["eps_sum"])


def run_forgetting(
    cfg: ForgettingConfig,
    out,
    *,
    force: bool = False,
    progress: bool = False,
    jobs: int = 1,
    threads: int = 1,
    engine: str = "local",
    **engine_options,
) -> dict:
    """The whole study into the run directory ``out`` (summary.json, arrays.npz, figures,
    report); finished bases and cells are reused on a rerun. ``engine`` / ``engine_options``
    (``address``, ``gpus_per_cell`` for ``"ray"``) go to
    :func:`sgdyn.validation.sweeps.run_cells`."""
    from .forgetting_report import make_figures, make_report

    cfg.validate()
    if jobs < 1:
        raise ValueError("--jobs must be >= 1")
    # data and window size checked before anything is created or trained
    tasks = get_tasks(cfg.data_spec(), cfg.device)
    _, steps = n_window_steps(len(tasks[0].x), {**cfg.train_spec()})
    n_weights = cfg.hidden[0] * cfg.hidden[1]
    if min(steps - 1, n_weights) < cfg.max_modes:
        raise ValueError(
            f"task 1's window has {steps} steps, so its PCA has at most "
            f"{min(steps - 1, n_weights)} components, fewer than Nc = {cfg.max_modes}; "
            "raise --min-window-steps or lower --nc / --ncs"
        )
    rd = RunDir(out, cfg.as_dict(), command=NAME, force=force)
    if rd.start():
        return rd.summary()
    t0 = time.perf_counter()
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    bases = {s: build_base(cfg, s, rd.path, force=force) for s in seeds}
    t_base = time.perf_counter()
    kw = dict(
        jobs=jobs, threads=threads, force=force, progress=progress, engine=engine, **engine_options
    )
    rows1 = _run(task2_cell, _cells(cfg, seeds), rd.path, **kw)
    ewc_sweep = [_agg(rows1, method="ewc", lam=lam, top_k=None) for lam in cfg.ewc_lams]
    ewc_lam_best = _best(ewc_sweep).get("lam", cfg.ewc_lams[len(cfg.ewc_lams) // 2])
    ncs = usable_ncs(cfg, bases)
    dropped = [n for n in cfg.ncs if n not in ncs]
    if dropped:
        log.warning("Nc %s dropped: above the rank of a task-1 window", dropped)
    rows2 = _run(task2_cell, _cells(cfg, seeds, ewc_lam_best, ncs), rd.path, **kw)
    rows = rows1 + rows2
    t_sweep = time.perf_counter()
    ldc_sweep = [
        _agg(rows, method="ldc", lam=lam, nc=cfg.nc) for lam in sorted({*cfg.lams, cfg.lam})
    ]
    rand_sweep = [
        _agg(rows, method="ldc_random", lam=lam, nc=cfg.nc) for lam in sorted({*cfg.lams, cfg.lam})
    ]
    nc_sweep = [_agg(rows, method="ldc", lam=cfg.lam, nc=nc) for nc in sorted({*ncs, cfg.nc})]
    k_sweep = [_agg(rows, method="ewc", lam=ewc_lam_best, top_k=k) for k in cfg.ewc_ks]
    none = _agg(rows, method="none")
    main = _agg(rows, method="ldc", lam=cfg.lam, nc=cfg.nc)
    main_rand = _agg(rows, method="ldc_random", lam=cfg.lam, nc=cfg.nc)
    ldc_best = _best(ldc_sweep + nc_sweep)
    ewc_best = _best(ewc_sweep + k_sweep)
    nc_star = _best(nc_sweep).get("nc")
    # q_i against xi_i = 0.008 F_1i (Fig 4B/D)
    xi = {s: cfg.xi_factor * bases[s]["F"].numpy() for s in seeds}

    def frac_below(method, **m):
        out_ = []
        for r in rows:
            if r["method"] == method and all(r.get(k) == v for k, v in m.items()):
                n = cfg.nc
                out_.append(float(np.mean(r["q"][:n] <= xi[r["seed"]][:n])))
        return float(np.mean(out_)) if out_ else float("nan")

    q_stats = {
        "none": frac_below("none"),
        "ldc": frac_below("ldc", lam=cfg.lam, nc=cfg.nc),
        "ldc_random": frac_below("ldc_random", lam=cfg.lam, nc=cfg.nc),
    }
    # five-task sequence
    seq = {}
    if cfg.sequence:
        common = {"data": cfg.data_spec(), "train": cfg.train_spec()}
        ldc_lam_seq = cfg.lam
        cells = []
        for s in seeds:
            for method, lam in (("none", 0.0), ("ewc", ewc_lam_best), ("ldc", ldc_lam_seq)):
                cells.append(
                    Cell(
                        f"seq_{method}_lam{lam:g}_s{s}",
                        {
                            **common,
                            "base": f"base/seed{s}.pt",
                            "method": method,
                            "lam": lam,
                            "nc": cfg.nc,
                            "seed": s,
                        },
                    )
                )
        seq_rows = _run(sequence_cell, cells, rd.path, **kw)
        for method in ("none", "ewc", "ldc"):
            sel = [r for r in seq_rows if r["method"] == method]
            f = np.array([r["avg_forgetting"] for r in sel])
            a = np.array([r["avg_accuracy"] for r in sel])
            seq[method] = {
                "lam": sel[0]["lam"] if "lam" in sel[0] else None,
                "avg_forgetting": float(f.mean()),
                "avg_forgetting_sem": float(f.std(ddof=1) / math.sqrt(len(f)))
                if len(f) > 1
                else float("nan"),
                "avg_accuracy": float(a.mean()),
                "R_mean": np.mean([r["R"] for r in sel], axis=0).tolist(),
            }
        seq_lams = {"none": 0.0, "ewc": ewc_lam_best, "ldc": ldc_lam_seq}
        for m in seq:
            seq[m]["lam"] = seq_lams[m]
    t_seq = time.perf_counter()
    infos = {s: json.loads(bases[s]["info"]) for s in seeds}
    summary = {
        "no_constraint": none,
        "ldc": {
            "main": main,
            "best": ldc_best,
            "nc_star": nc_star,
            "lam_sweep": ldc_sweep,
            "nc_sweep": nc_sweep,
            "nc_star_at_edge": nc_star is not None and nc_star == max(p["nc"] for p in nc_sweep),
            "nc_dropped_above_window_rank": dropped,
            "window_rank_min": min(int(b["P"].shape[0]) for b in bases.values()),
        },
        "ldc_random_null": {"main": main_rand, "lam_sweep": rand_sweep},
        "ewc": {
            "fisher": cfg.fisher,
            "best": ewc_best,
            "lam_best_all_weights": ewc_lam_best,
            "lam_sweep": ewc_sweep,
            "k_sweep": k_sweep,
        },
        "q_below_xi_fraction_top_nc": q_stats,
        "sequence": {
            "avg_forgetting": {m: seq[m]["avg_forgetting"] for m in seq},
            "avg_accuracy": {m: seq[m]["avg_accuracy"] for m in seq},
            "methods": seq,
            "tasks": [list(p) for p in PAIRS[: cfg.n_tasks]],
        },
        "base": {str(s): infos[s] for s in seeds},
        "seeds": seeds,
        "timings": {
            "base_s": t_base - t0,
            "sweeps_s": t_sweep - t_base,
            "sequence_s": t_seq - t_sweep,
            "total_s": time.perf_counter() - t0,
            "jobs": jobs,
            "threads": threads,
        },
    }
    arrays = {}
    for s in seeds:
        arrays[f"F_s{s}"] = bases[s]["F"].numpy()
        arrays[f"var_s{s}"] = bases[s]["var"].numpy()
        arrays[f"fisher_s{s}"] = bases[s]["fisher"].numpy()
    for r in rows:
        arrays[f"curve_{r['key']}"] = r["curve"]
        arrays[f"q_{r['key']}"] = r["q"]
    for m in seq:
        arrays[f"sequence_R_{m}"] = np.asarray(seq[m]["R_mean"])
    figs = make_figures(rd, cfg, summary, rows, bases, seeds)
    summary["timings"]["total_s"] = time.perf_counter() - t0
    report = make_report(cfg, summary, figs)
    return rd.finish(
        summary, arrays=arrays, report=report, title="sgdyn forgetting: LDC (Eq 15) vs EWC"
    )
